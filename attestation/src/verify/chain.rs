//! Certificate checks: root pin, chain order, validity, key usage, then
//! rustls-webpki path validation, and extraction of the leaf's P-384 key.

use std::time::Duration;

use rustls_pki_types::{CertificateDer, UnixTime};
use x509_cert::Certificate;
use x509_cert::der::Decode;
use x509_cert::ext::pkix::KeyUsage;

use crate::document::AttestationDocument;
use crate::error::{CertPosition, VerifyError};

/// What the chain check learned.
pub(super) struct ChainSummary {
    /// Subjects, root first, leaf last (RFC 4514 strings).
    pub(super) subjects: Vec<String>,
    /// The leaf's uncompressed P-384 point (0x04 || X || Y).
    pub(super) leaf_point: Vec<u8>,
}

/// OID 1.2.840.10045.2.1 (id-ecPublicKey).
const EC_PUBLIC_KEY: x509_cert::der::asn1::ObjectIdentifier =
    x509_cert::der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// OID 1.3.132.0.34 (secp384r1).
const SECP384R1: x509_cert::der::asn1::ObjectIdentifier =
    x509_cert::der::asn1::ObjectIdentifier::new_unwrap("1.3.132.0.34");

pub(super) fn verify_chain(
    doc: &AttestationDocument,
    root_sha256: &[u8; 32],
    at_ms: u64,
) -> Result<ChainSummary, VerifyError> {
    let root_der = doc.cabundle.first().ok_or(VerifyError::EmptyCabundle)?;
    let actual = ring::digest::digest(&ring::digest::SHA256, root_der);
    if actual.as_ref() != root_sha256 {
        let mut actual_sha256 = [0u8; 32];
        actual_sha256.copy_from_slice(actual.as_ref());
        return Err(VerifyError::UntrustedRoot { actual_sha256 });
    }

    // Root first, leaf last.
    let positions = (0..doc.cabundle.len())
        .map(CertPosition::Cabundle)
        .chain(std::iter::once(CertPosition::Leaf));
    let ders = doc.cabundle.iter().chain(std::iter::once(&doc.certificate));
    let mut parsed: Vec<(CertPosition, Certificate)> = Vec::with_capacity(doc.cabundle.len() + 1);
    for (position, der) in positions.zip(ders) {
        let cert = Certificate::from_der(der)
            .map_err(|source| VerifyError::CertificateParse { position, source })?;
        parsed.push((position, cert));
    }

    let mut issuer_subject = None;
    for (position, cert) in &parsed {
        let tbs = &cert.tbs_certificate;
        // The root issues itself; everyone else is issued by the previous entry.
        let expected = issuer_subject.unwrap_or(&tbs.subject);
        if &tbs.issuer != expected {
            return Err(VerifyError::ChainOrder {
                position: *position,
            });
        }
        issuer_subject = Some(&tbs.subject);
        check_validity(*position, cert, at_ms)?;
        check_key_usage(*position, cert)?;
    }

    let leaf_der = CertificateDer::from(doc.certificate.as_slice());
    let root_der = CertificateDer::from(root_der.as_slice());
    let anchor = webpki::anchor_from_trusted_cert(&root_der).map_err(VerifyError::Chain)?;
    let intermediates: Vec<CertificateDer<'_>> = doc
        .cabundle
        .iter()
        .skip(1)
        .map(|der| CertificateDer::from(der.as_slice()))
        .collect();
    let leaf = webpki::EndEntityCert::try_from(&leaf_der).map_err(VerifyError::Chain)?;
    leaf.verify_for_usage(
        &[webpki::ring::ECDSA_P384_SHA384],
        &[anchor],
        &intermediates,
        UnixTime::since_unix_epoch(Duration::from_millis(at_ms)),
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .map_err(VerifyError::Chain)?;

    let (_, leaf_cert) = parsed.last().ok_or(VerifyError::EmptyCabundle)?;
    let spki = &leaf_cert.tbs_certificate.subject_public_key_info;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<x509_cert::der::asn1::ObjectIdentifier>().ok());
    if spki.algorithm.oid != EC_PUBLIC_KEY || curve != Some(SECP384R1) {
        return Err(VerifyError::LeafKey);
    }
    let leaf_point = spki
        .subject_public_key
        .as_bytes()
        .filter(|p| p.len() == 97 && p.first() == Some(&0x04))
        .ok_or(VerifyError::LeafKey)?
        .to_vec();

    let subjects = parsed
        .iter()
        .map(|(_, c)| c.tbs_certificate.subject.to_string())
        .collect();
    Ok(ChainSummary {
        subjects,
        leaf_point,
    })
}

fn check_validity(
    position: CertPosition,
    cert: &Certificate,
    at_ms: u64,
) -> Result<(), VerifyError> {
    let validity = &cert.tbs_certificate.validity;
    let not_before_ms = millis(validity.not_before.to_unix_duration());
    let not_after_ms = millis(validity.not_after.to_unix_duration());
    // X.509 times have one-second resolution and notAfter is inclusive.
    if at_ms < not_before_ms || at_ms > not_after_ms.saturating_add(999) {
        return Err(VerifyError::CertificateTime {
            position,
            at_ms,
            not_before_ms,
            not_after_ms,
        });
    }
    Ok(())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn check_key_usage(position: CertPosition, cert: &Certificate) -> Result<(), VerifyError> {
    let usage = cert.tbs_certificate.get::<KeyUsage>().ok().flatten();
    let (ok, name) = match position {
        CertPosition::Leaf => (
            usage.is_some_and(|(_, ku)| ku.digital_signature()),
            "digitalSignature",
        ),
        CertPosition::Cabundle(_) => (
            usage.is_some_and(|(_, ku)| ku.key_cert_sign()),
            "keyCertSign",
        ),
    };
    if ok {
        Ok(())
    } else {
        Err(VerifyError::KeyUsage {
            position,
            usage: name,
        })
    }
}
