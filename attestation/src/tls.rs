//! Attested TLS identity: the enclave's TLS key is bound into an attestation
//! document by putting the SHA-256 of the certificate's SubjectPublicKeyInfo
//! in the document's `public_key`; a client checks that the certificate its
//! TLS connection presented is the one the document binds.

use rustls_pki_types::CertificateDer;

use crate::error::{Error, Result};
use crate::nsm::{AttestationRequest, Nsm};
use crate::verify::VerifiedDocument;

/// SHA-256 of a DER certificate's SubjectPublicKeyInfo (the whole SEQUENCE).
///
/// # Errors
///
/// [`Error::Certificate`] when `cert_der` is not an X.509 certificate.
pub fn spki_sha256(cert_der: &[u8]) -> Result<[u8; 32]> {
    let der = CertificateDer::from(cert_der);
    let cert = webpki::EndEntityCert::try_from(&der).map_err(Error::Certificate)?;
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        cert.subject_public_key_info().as_ref(),
    );
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    Ok(out)
}

/// Asks `nsm` for a document that binds `cert_der`'s key and carries the
/// caller's `nonce`: what `GET /attestation?nonce=<hex>` serves.
///
/// # Errors
///
/// [`Error::Certificate`] for a malformed certificate, or the NSM's error
/// (including [`Error::NsmRequestTooLarge`] for a nonce over 512 bytes).
pub async fn attest_certificate<N: Nsm>(
    nsm: &N,
    cert_der: &[u8],
    nonce: Vec<u8>,
) -> Result<Vec<u8>> {
    let binding = spki_sha256(cert_der)?;
    nsm.attestation(
        AttestationRequest::new()
            .public_key(binding.to_vec())
            .nonce(nonce),
    )
    .await
}

/// Like [`attest_certificate`], and also binds the enclave's Ed25519 anchor
/// key (the key that signs state anchors) in `user_data`, as the registry's
/// `register_enclave` requires.
///
/// # Errors
///
/// As [`attest_certificate`].
pub async fn attest_enclave<N: Nsm>(
    nsm: &N,
    cert_der: &[u8],
    anchor_public_key: [u8; 32],
    nonce: Vec<u8>,
) -> Result<Vec<u8>> {
    let binding = spki_sha256(cert_der)?;
    nsm.attestation(
        AttestationRequest::new()
            .public_key(binding.to_vec())
            .user_data(anchor_public_key.to_vec())
            .nonce(nonce),
    )
    .await
}

/// Client side: confirms that `peer_cert_der` (the certificate the live TLS
/// connection presented) is the one `doc` binds. Verify the document (root,
/// policy with the caller's nonce, freshness) first; this only checks the
/// binding.
///
/// # Errors
///
/// [`Error::TlsBindingMissing`] when the document has no `public_key`,
/// [`Error::TlsBindingMismatch`] when it binds another key,
/// [`Error::Certificate`] when the peer certificate does not parse.
pub fn check_tls_binding(peer_cert_der: &[u8], doc: &VerifiedDocument) -> Result<()> {
    let bound = doc.public_key().ok_or(Error::TlsBindingMissing)?;
    let actual = spki_sha256(peer_cert_der)?;
    if bound == actual.as_slice() {
        Ok(())
    } else {
        Err(Error::TlsBindingMismatch)
    }
}
