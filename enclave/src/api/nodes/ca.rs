//! The node CA: an Ed25519 key derived from the cluster's root secret (purpose "node CA"), so
//! it is the same after every restart and never stored; it signs the short-lived client
//! certificates of joined nodes (`CN=system:node:NAME`, `O=system:nodes`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use attestation::{Purpose, PurposeKey};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SignatureAlgorithm,
};
use rustls_pki_types::PrivatePkcs8KeyDer;

use crate::api::ServeError;

/// DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1), before the
/// 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// PKCS#8 v1 prefix of an Ed25519 private key, before the 32-byte seed (RFC 8410).
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Subject CN of the node CA.
pub const NODE_CA_NAME: &str = "k3s-daas node CA";

/// A node's public key: an ECDSA P-256 point, from its SubjectPublicKeyInfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePublicKey {
    point: Vec<u8>,
}

impl NodePublicKey {
    /// Reads a P-256 SubjectPublicKeyInfo (DER), the only kind nodes join with.
    ///
    /// # Errors
    ///
    /// A message when `spki_der` is anything else.
    pub fn from_spki(spki_der: &[u8]) -> Result<Self, &'static str> {
        let point = spki_der
            .strip_prefix(&P256_SPKI_PREFIX[..])
            .ok_or("the node public key must be an ECDSA P-256 SubjectPublicKeyInfo (DER)")?;
        if point.len() != 65 || point.first() != Some(&0x04) {
            return Err("the node public key must be an uncompressed P-256 point");
        }
        Ok(Self {
            point: point.to_vec(),
        })
    }
}

impl PublicKeyData for NodePublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// A certificate the CA issued.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// PEM.
    pub pem: String,
    /// Expiry, ms since the UNIX epoch.
    pub not_after_ms: u64,
}

/// The node CA.
pub struct NodeCa {
    issuer: Issuer<'static, KeyPair>,
    cert_der: Vec<u8>,
}

impl std::fmt::Debug for NodeCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCa").finish_non_exhaustive()
    }
}

fn cert_error(e: rcgen::Error) -> ServeError {
    ServeError::Certificate(format!("node CA: {e}"))
}

fn ca_params() -> Result<CertificateParams, ServeError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
    params
        .distinguished_name
        .push(DnType::CommonName, NODE_CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2125, 1, 1);
    Ok(params)
}

fn offset(t: SystemTime) -> time::OffsetDateTime {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

impl NodeCa {
    /// The CA whose Ed25519 seed is `key` (derive it with [`Purpose::NodeCa`]).
    ///
    /// # Errors
    ///
    /// [`ServeError::Config`] for a key of another purpose, [`ServeError::Certificate`] if the
    /// certificate cannot be made.
    pub fn from_key(key: &PurposeKey) -> Result<Self, ServeError> {
        if key.purpose() != Purpose::NodeCa {
            return Err(ServeError::Config(
                "the node CA needs the key derived for the node CA purpose".into(),
            ));
        }
        let mut pkcs8 = zeroize::Zeroizing::new(Vec::with_capacity(48));
        pkcs8.extend_from_slice(&ED25519_PKCS8_PREFIX);
        pkcs8.extend_from_slice(key.expose_secret_bytes());
        let pair = KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(pkcs8.as_slice()),
            &rcgen::PKCS_ED25519,
        )
        .map_err(cert_error)?;
        let params = ca_params()?;
        let cert = params.self_signed(&pair).map_err(cert_error)?;
        Ok(Self {
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, pair),
        })
    }

    /// The CA certificate (DER): what the API server's client verifier trusts for nodes.
    #[must_use]
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// A client certificate for `node_name`'s `key`, valid from five minutes before `now`
    /// (clock skew) until `now + lifetime`.
    ///
    /// # Errors
    ///
    /// [`ServeError::Certificate`] if signing fails.
    pub fn issue(
        &self,
        node_name: &str,
        key: &NodePublicKey,
        now: SystemTime,
        lifetime: Duration,
    ) -> Result<IssuedCertificate, ServeError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
        params.distinguished_name.push(
            DnType::CommonName,
            format!("{}{node_name}", protocol::join::NODE_USER_PREFIX),
        );
        params
            .distinguished_name
            .push(DnType::OrganizationName, protocol::join::NODES_GROUP);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let not_after = now + lifetime;
        params.not_before = offset(now - Duration::from_secs(300));
        params.not_after = offset(not_after);
        let cert = params.signed_by(key, &self.issuer).map_err(cert_error)?;
        let not_after_ms = not_after
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs().saturating_mul(1000))
            .unwrap_or(0);
        Ok(IssuedCertificate {
            pem: cert.pem(),
            not_after_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attestation::{Mode, RootSecret};

    fn ca(secret: u8) -> NodeCa {
        let root = RootSecret::from_bytes([secret; 32]);
        NodeCa::from_key(&root.derive(Purpose::NodeCa, Mode::Dev)).unwrap()
    }

    #[test]
    fn the_ca_is_the_same_after_a_restart_and_issues_verifiable_certificates() {
        let first = ca(1);
        let again = ca(1);
        assert_eq!(first.cert_der(), again.cert_der());
        assert_ne!(first.cert_der(), ca(2).cert_der());

        let node_key = KeyPair::generate().unwrap();
        let key = NodePublicKey::from_spki(&node_key.subject_public_key_info()).unwrap();
        let now = SystemTime::now();
        let issued = again
            .issue("node-a", &key, now, Duration::from_secs(3600))
            .unwrap();
        use rustls_pki_types::pem::PemObject as _;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(issued.pem.as_bytes()).unwrap();
        let user = crate::api::Authenticator::client_certificate(&der).unwrap();
        assert_eq!(user.name, "system:node:node-a");
        assert_eq!(user.groups, vec!["system:nodes".to_owned()]);

        // Issued by the first instance's certificate: a restarted enclave's CA verifies it.
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls_pki_types::CertificateDer::from(
                first.cert_der().to_vec(),
            ))
            .unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .unwrap();
        let at =
            rustls_pki_types::UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap());
        verifier.verify_client_cert(&der, &[], at).unwrap();
        let expired = rustls_pki_types::UnixTime::since_unix_epoch(
            (now + Duration::from_secs(3601))
                .duration_since(UNIX_EPOCH)
                .unwrap(),
        );
        assert!(verifier.verify_client_cert(&der, &[], expired).is_err());
    }

    #[test]
    fn only_p256_keys() {
        let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        assert!(NodePublicKey::from_spki(&ed.subject_public_key_info()).is_err());
        assert!(NodePublicKey::from_spki(&[]).is_err());
        let p256 = KeyPair::generate().unwrap();
        let mut der = p256.subject_public_key_info();
        der.push(0);
        assert!(NodePublicKey::from_spki(&der).is_err());
    }
}
