//! Authentication: bearer tokens and client certificates verified by the
//! cluster CA. Authorization is not enforced yet: every authenticated user
//! may do everything (RBAC is a later issue).

use rustls_pki_types::CertificateDer;
use x509_cert::der::{Decode, asn1::PrintableStringRef, asn1::Utf8StringRef};

pub use crate::registry::UserInfo;

/// The identities the server accepts.
#[derive(Clone)]
pub struct Authenticator {
    tokens: Vec<(String, UserInfo)>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

const CN: &str = "2.5.4.3";
const O: &str = "2.5.4.10";

impl Authenticator {
    /// An authenticator with no tokens (client certificates only).
    pub fn new() -> Self {
        Authenticator { tokens: Vec::new() }
    }

    /// Accepts `token` as `user`.
    #[must_use]
    pub fn with_token(mut self, token: impl Into<String>, user: UserInfo) -> Self {
        self.tokens.push((token.into(), user));
        self
    }

    /// The user of an `Authorization` header value, if it carries a known bearer token.
    pub fn bearer(&self, header: &str) -> Option<UserInfo> {
        let token = header.strip_prefix("Bearer ")?.trim();
        self.tokens
            .iter()
            .find(|(t, _)| constant_time_eq(t.as_bytes(), token.as_bytes()))
            .map(|(_, u)| u.clone())
    }

    /// The user of a client certificate the TLS layer already verified
    /// against the cluster CA: CN is the name, O entries the groups.
    pub fn client_certificate(cert: &CertificateDer<'_>) -> Option<UserInfo> {
        let c = x509_cert::Certificate::from_der(cert.as_ref()).ok()?;
        let mut name = None;
        let mut groups = Vec::new();
        for rdn in c.tbs_certificate.subject.0.iter() {
            for atv in rdn.0.iter() {
                let value = atv
                    .value
                    .decode_as::<Utf8StringRef<'_>>()
                    .map(|s| s.as_str().to_string())
                    .or_else(|_| {
                        atv.value
                            .decode_as::<PrintableStringRef<'_>>()
                            .map(|s| s.as_str().to_string())
                    })
                    .ok();
                match (atv.oid.to_string().as_str(), value) {
                    (CN, Some(v)) => name = Some(v),
                    (O, Some(v)) => groups.push(v),
                    _ => {}
                }
            }
        }
        Some(UserInfo {
            name: name.filter(|n| !n.is_empty())?,
            groups,
        })
    }
}

impl Default for Authenticator {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::pki::DevPki;
    use rustls_pki_types::pem::PemObject;

    #[test]
    fn tokens_and_certificates() {
        let admin = UserInfo {
            name: "admin".into(),
            groups: vec!["system:masters".into()],
        };
        let a = Authenticator::new().with_token("s3cret", admin.clone());
        assert_eq!(a.bearer("Bearer s3cret"), Some(admin.clone()));
        assert_eq!(a.bearer("Bearer wrong"), None);
        assert_eq!(a.bearer("Basic s3cret"), None);
        let pki = DevPki::generate(&[]).unwrap();
        let der = CertificateDer::from_pem_slice(pki.admin_cert_pem.as_bytes()).unwrap();
        assert_eq!(Authenticator::client_certificate(&der), Some(admin));
        let (node_pem, _key) = pki
            .issue_client_certificate("system:node:w1", &["system:nodes"])
            .unwrap();
        let der = CertificateDer::from_pem_slice(node_pem.as_bytes()).unwrap();
        assert_eq!(
            Authenticator::client_certificate(&der),
            Some(UserInfo {
                name: "system:node:w1".into(),
                groups: vec!["system:nodes".into()],
            })
        );
    }
}
