//! The client-certificate CA: a P-256 key derived from the root secret
//! (purpose `client-ca`), whose certificates the API server accepts, and
//! which signs the approved CertificateSigningRequests of the
//! `kubernetes.io/kube-apiserver-client` signer (upstream's
//! `--cluster-signing-kube-apiserver-client-*` CA). The CA certificate is
//! deterministic in everything but its signature, so certificates it issued
//! stay valid across restarts.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SignatureAlgorithm,
};
use x509_cert::der::{Decode, Encode};

use super::keys::DerivedKey;

/// The CA certificate's subject common name.
const CA_NAME: &str = "k3s-daas client CA";

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
    public_key: Vec<u8>,
    algorithm: &'static SignatureAlgorithm,
}

impl PublicKeyData for ParsedCsr {
    fn der_bytes(&self) -> &[u8] {
        &self.public_key
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.algorithm
    }
}

const OID_CN: &str = "2.5.4.3";
const OID_O: &str = "2.5.4.10";
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
                &rcgen::PKCS_ECDSA_P256_SHA256,
            ),
            (OID_EC, Some(OID_P384), OID_ECDSA_SHA384) => (
                &ring::signature::ECDSA_P384_SHA384_ASN1,
                &rcgen::PKCS_ECDSA_P384_SHA384,
            ),
            (OID_RSA, _, OID_RSA_SHA256) => (
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                &rcgen::PKCS_RSA_SHA256,
            ),
            (OID_ED25519, _, OID_ED25519) => (&ring::signature::ED25519, &rcgen::PKCS_ED25519),
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

/// The client CA.
pub struct ClientCa {
    key: KeyPair,
    params: CertificateParams,
    cert_pem: String,
}

impl std::fmt::Debug for ClientCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCa").finish_non_exhaustive()
    }
}

fn dn_type(oid: &str) -> DnType {
    match oid {
        OID_CN => DnType::CommonName,
        OID_O => DnType::OrganizationName,
        "2.5.4.11" => DnType::OrganizationalUnitName,
        "2.5.4.6" => DnType::CountryName,
        "2.5.4.7" => DnType::LocalityName,
        "2.5.4.8" => DnType::StateOrProvinceName,
        other => DnType::CustomDnType(
            other
                .split('.')
                .filter_map(|x| x.parse::<u64>().ok())
                .collect(),
        ),
    }
}

impl ClientCa {
    /// The CA of `key` (derived from the root secret).
    ///
    /// # Errors
    /// [`CsrError::Signing`] if the certificate cannot be made.
    pub fn new(key: &DerivedKey) -> Result<Self, CsrError> {
        let sign_err = |e: rcgen::Error| CsrError::Signing(e.to_string());
        let pair = KeyPair::try_from(key.pkcs8_der()).map_err(sign_err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(sign_err)?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, CA_NAME);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(rcgen::SerialNumber::from(vec![1]));
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2124, 1, 1);
        let cert = params.self_signed(&pair).map_err(sign_err)?;
        Ok(ClientCa {
            cert_pem: cert.pem(),
            key: pair,
            params,
        })
    }

    /// The CA certificate (what the TLS layer trusts for client certificates).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Signs `csr` as a client certificate valid for `seconds` (capped at
    /// one year, upstream's `--cluster-signing-duration`), backdated five
    /// minutes as upstream's signer does. Returns the PEM certificate.
    ///
    /// # Errors
    /// [`CsrError::Signing`].
    pub fn sign_client(&self, csr: &ParsedCsr, seconds: i64) -> Result<String, CsrError> {
        let sign_err = |e: rcgen::Error| CsrError::Signing(e.to_string());
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(sign_err)?;
        let mut dn = DistinguishedName::new();
        for (oid, value) in &csr.subject {
            dn.push(dn_type(oid), DnValue::Utf8String(value.clone()));
        }
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if csr.algorithm == &rcgen::PKCS_RSA_SHA256 {
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        let mut serial = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial)
            .map_err(|_| CsrError::Signing("no randomness".into()))?;
        serial[0] &= 0x7f;
        params.serial_number = Some(rcgen::SerialNumber::from(serial.to_vec()));
        let now = time::OffsetDateTime::now_utc();
        let secs = seconds.clamp(600, 365 * 24 * 3600);
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::seconds(secs);
        params.use_authority_key_identifier_extension = true;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(csr, &issuer).map_err(sign_err)?;
        Ok(cert.pem())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_and_signed() {
        let ca = ClientCa::new(&DerivedKey::derive(&[9; 32]).unwrap()).unwrap();
        let again = ClientCa::new(&DerivedKey::derive(&[9; 32]).unwrap()).unwrap();
        let user_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, "alice");
        p.distinguished_name.push(DnType::OrganizationName, "dev");
        let csr_pem = p.serialize_request(&user_key).unwrap().pem().unwrap();
        let csr = parse_csr(csr_pem.as_bytes()).unwrap();
        assert_eq!(csr.common_name, "alice");
        assert_eq!(csr.organizations, vec!["dev".to_string()]);
        let cert = ca.sign_client(&csr, 3600).unwrap();
        // Issued by one instance, verified against the other (a restart).
        let der =
            rustls_pki_types::CertificateDer::from(pem::parse(&cert).unwrap().into_contents());
        let ca_der = pem::parse(again.cert_pem()).unwrap().into_contents();
        let ca_cert = rustls_pki_types::CertificateDer::from(ca_der.as_slice());
        let anchor = webpki::anchor_from_trusted_cert(&ca_cert).unwrap();
        let ee = webpki::EndEntityCert::try_from(&der).unwrap();
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            &[],
            rustls_pki_types::UnixTime::now(),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .unwrap();
        assert_eq!(parse_csr(b"nonsense").unwrap_err(), CsrError::NotPem);
        let mut tampered = pem::parse(csr_pem.as_bytes()).unwrap().into_contents();
        let n = tampered.len();
        tampered[n - 3] ^= 1;
        let tampered = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", tampered));
        assert!(parse_csr(tampered.as_bytes()).is_err());
    }
}
