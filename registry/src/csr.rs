//! PKCS#10 certificate signing requests, as a CertificateSigningRequest's
//! `spec.request` carries them: parsed and their self-signature checked
//! (upstream's `ParseCSR` and `CheckSignature`). The enclave's client CA signs
//! what passes.

use x509_cert::der::{Decode, Encode};

/// Why a request could not be parsed or signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsrError {
    /// Not a PEM `CERTIFICATE REQUEST`.
    #[error("PEM block type must be CERTIFICATE REQUEST")]
    NotPem,
    /// Not a PKCS#10 request.
    #[error("x509: malformed certificate request: {0}")]
    Malformed(String),
    /// A key type or signature algorithm this signer does not support.
    #[error("x509: unsupported public key or signature algorithm")]
    Unsupported,
    /// The request's self-signature does not verify.
    #[error("x509: signature verification failure")]
    BadSignature,
    /// Building or signing the certificate failed.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// A parsed, signature-checked PKCS#10 request.
#[derive(Debug, Clone)]
pub struct ParsedCsr {
    /// Subject attributes `(OID, value)` in order.
    pub subject: Vec<(String, String)>,
    /// The subject common name.
    pub common_name: String,
    /// The subject organizations.
    pub organizations: Vec<String>,
    /// The subject public key (the SubjectPublicKeyInfo's key bits).
    pub public_key: Vec<u8>,
    /// The key's algorithm, as the request's signature used it.
    pub algorithm: KeyAlgorithm,
}

/// The key and signature algorithms a request may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// ECDSA P-256 with SHA-256.
    EcdsaP256Sha256,
    /// ECDSA P-384 with SHA-384.
    EcdsaP384Sha384,
    /// RSA PKCS#1 v1.5 with SHA-256.
    RsaSha256,
    /// Ed25519.
    Ed25519,
}

/// The common name attribute.
pub const OID_CN: &str = "2.5.4.3";
/// The organization attribute.
pub const OID_O: &str = "2.5.4.10";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_ED25519: &str = "1.3.101.112";
const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const OID_ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
const OID_RSA_SHA256: &str = "1.2.840.113549.1.1.11";

/// Parses a PEM CSR and checks its self-signature (upstream's `ParseCSR`
/// and `CheckSignature`).
///
/// # Errors
/// [`CsrError`].
pub fn parse_csr(pem_bytes: &[u8]) -> Result<ParsedCsr, CsrError> {
    let p = pem::parse(pem_bytes).map_err(|_| CsrError::NotPem)?;
    if p.tag() != "CERTIFICATE REQUEST" {
        return Err(CsrError::NotPem);
    }
    let req = x509_cert::request::CertReq::from_der(p.contents())
        .map_err(|e| CsrError::Malformed(e.to_string()))?;
    let info_der = req
        .info
        .to_der()
        .map_err(|e| CsrError::Malformed(e.to_string()))?;
    let spki = &req.info.public_key;
    let key_oid = spki.algorithm.oid.to_string();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<x509_cert::der::asn1::ObjectIdentifier>().ok())
        .map(|o| o.to_string());
    let sig_oid = req.algorithm.oid.to_string();
    let key = spki.subject_public_key.raw_bytes().to_vec();
    let sig = req.signature.raw_bytes();
    let (verify_alg, algorithm): (&'static dyn ring::signature::VerificationAlgorithm, _) =
        match (key_oid.as_str(), curve.as_deref(), sig_oid.as_str()) {
            (OID_EC, Some(OID_P256), OID_ECDSA_SHA256) => (
                &ring::signature::ECDSA_P256_SHA256_ASN1,
                KeyAlgorithm::EcdsaP256Sha256,
            ),
            (OID_EC, Some(OID_P384), OID_ECDSA_SHA384) => (
                &ring::signature::ECDSA_P384_SHA384_ASN1,
                KeyAlgorithm::EcdsaP384Sha384,
            ),
            (OID_RSA, _, OID_RSA_SHA256) => (
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                KeyAlgorithm::RsaSha256,
            ),
            (OID_ED25519, _, OID_ED25519) => (&ring::signature::ED25519, KeyAlgorithm::Ed25519),
            _ => return Err(CsrError::Unsupported),
        };
    ring::signature::UnparsedPublicKey::new(verify_alg, &key)
        .verify(&info_der, sig)
        .map_err(|_| CsrError::BadSignature)?;
    let mut subject = Vec::new();
    for rdn in req.info.subject.0.iter() {
        for atv in rdn.0.iter() {
            let value = atv
                .value
                .decode_as::<x509_cert::der::asn1::Utf8StringRef<'_>>()
                .map(|s| s.as_str().to_string())
                .or_else(|_| {
                    atv.value
                        .decode_as::<x509_cert::der::asn1::PrintableStringRef<'_>>()
                        .map(|s| s.as_str().to_string())
                })
                .unwrap_or_default();
            subject.push((atv.oid.to_string(), value));
        }
    }
    let common_name = subject
        .iter()
        .find(|(o, _)| o == OID_CN)
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let organizations = subject
        .iter()
        .filter(|(o, _)| o == OID_O)
        .map(|(_, v)| v.clone())
        .collect();
    Ok(ParsedCsr {
        subject,
        common_name,
        organizations,
        public_key: key,
        algorithm,
    })
}
