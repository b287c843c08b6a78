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
pub use registry::csr::{CsrError, KeyAlgorithm, ParsedCsr, parse_csr};
use registry::csr::{OID_CN, OID_O};

use super::keys::DerivedKey;

/// The CA certificate's subject common name.
const CA_NAME: &str = "k3s-daas client CA";

/// A request's public key as rcgen signs for it.
struct RequestKey<'a>(&'a ParsedCsr);

impl PublicKeyData for RequestKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.0.public_key
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        match self.0.algorithm {
            KeyAlgorithm::EcdsaP256Sha256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::EcdsaP384Sha384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyAlgorithm::RsaSha256 => &rcgen::PKCS_RSA_SHA256,
            KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }
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
        if csr.algorithm == KeyAlgorithm::RsaSha256 {
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
        let cert = params
            .signed_by(&RequestKey(csr), &issuer)
            .map_err(sign_err)?;
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
