//! Authentication: client certificates verified by the TLS layer against
//! the cluster's client CAs, static bearer tokens (the admin's), and
//! service-account tokens ([`crate::auth::serviceaccount`]). Every
//! authenticated user is in `system:authenticated`, as upstream's
//! authenticators make it. What the user may do is decided afterwards by
//! [`super::authz`].

use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use x509_cert::der::{Decode, asn1::PrintableStringRef, asn1::Utf8StringRef};

use super::authz::impersonation::AUTHENTICATED;
use crate::auth::serviceaccount::{ServiceAccountTokens, TokenError};
use crate::registry::ObjectStore;
pub use crate::registry::UserInfo;

/// The identities the server accepts.
#[derive(Clone)]
pub struct Authenticator {
    tokens: Vec<(String, UserInfo)>,
    /// Tokens known only by their SHA-256 (production: the digest is part of the
    /// measured enclave arguments, the token stays with the operator).
    token_digests: Vec<([u8; 32], UserInfo)>,
    service_accounts: Option<Arc<ServiceAccountTokens>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("tokens", &self.tokens.len())
            .field("token_digests", &self.token_digests.len())
            .field("service_accounts", &self.service_accounts.is_some())
            .finish()
    }
}

/// What a bearer token turned out to be.
#[derive(Debug, Clone)]
pub enum BearerOutcome {
    /// A valid token of this user, valid for these audiences.
    User(UserInfo, Vec<String>),
    /// A token nothing accepts (the reason is logged, never sent).
    Invalid(String),
}

/// Adds `system:authenticated` unless present.
pub fn with_authenticated(mut user: UserInfo) -> UserInfo {
    if !user.in_group(AUTHENTICATED) {
        user.groups.push(AUTHENTICATED.into());
    }
    user
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
        Authenticator {
            tokens: Vec::new(),
            token_digests: Vec::new(),
            service_accounts: None,
        }
    }

    /// Also accepts the service-account tokens of `tokens`.
    #[must_use]
    pub fn with_service_accounts(mut self, tokens: Arc<ServiceAccountTokens>) -> Self {
        self.service_accounts = Some(tokens);
        self
    }

    /// The service-account token issuer, if configured.
    pub fn service_accounts(&self) -> Option<&Arc<ServiceAccountTokens>> {
        self.service_accounts.as_ref()
    }

    /// Authenticates a bearer `token` (static tokens first, then
    /// service-account tokens, whose objects are looked up in `objects`).
    pub async fn token(&self, objects: &ObjectStore, token: &str) -> BearerOutcome {
        if let Some(u) = self.static_token(token) {
            let auds = self
                .service_accounts
                .as_ref()
                .map(|t| t.api_audiences().to_vec())
                .unwrap_or_default();
            return BearerOutcome::User(with_authenticated(u), auds);
        }
        let Some(sa) = &self.service_accounts else {
            return BearerOutcome::Invalid("invalid bearer token".into());
        };
        match sa.authenticate(objects, token).await {
            Ok(a) => BearerOutcome::User(with_authenticated(a.user), a.audiences),
            Err(TokenError::NotOurs) => BearerOutcome::Invalid("invalid bearer token".into()),
            Err(e) => BearerOutcome::Invalid(e.to_string()),
        }
    }

    fn static_token(&self, token: &str) -> Option<UserInfo> {
        if let Some((_, user)) = self
            .tokens
            .iter()
            .find(|(t, _)| constant_time_eq(t.as_bytes(), token.as_bytes()))
        {
            return Some(user.clone());
        }
        if self.token_digests.is_empty() {
            return None;
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        self.token_digests
            .iter()
            .find(|(d, _)| constant_time_eq(d, digest.as_ref()))
            .map(|(_, u)| u.clone())
    }

    /// Accepts `token` as `user`.
    #[must_use]
    pub fn with_token(mut self, token: impl Into<String>, user: UserInfo) -> Self {
        self.tokens.push((token.into(), user));
        self
    }

    /// Accepts as `user` any bearer token whose SHA-256 is `digest`: the
    /// server never holds the token itself.
    #[must_use]
    pub fn with_token_sha256(mut self, digest: [u8; 32], user: UserInfo) -> Self {
        self.token_digests.push((digest, user));
        self
    }

    /// The user of an `Authorization` header value, if it carries a known
    /// static bearer token.
    pub fn bearer(&self, header: &str) -> Option<UserInfo> {
        let token = header.strip_prefix("Bearer ")?.trim();
        self.static_token(token)
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
        Some(with_authenticated(UserInfo {
            name: name.filter(|n| !n.is_empty())?,
            groups,
            ..Default::default()
        }))
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
        let admin = UserInfo::new("admin", &["system:masters"]);
        let a = Authenticator::new().with_token("s3cret", admin.clone());
        assert_eq!(a.bearer("Bearer s3cret"), Some(admin.clone()));
        assert_eq!(a.bearer("Bearer wrong"), None);
        assert_eq!(a.bearer("Basic s3cret"), None);
        let pki = DevPki::generate(&[]).unwrap();
        let der = CertificateDer::from_pem_slice(pki.admin_cert_pem.as_bytes()).unwrap();
        assert_eq!(
            Authenticator::client_certificate(&der),
            Some(UserInfo::new("admin", &["system:masters", AUTHENTICATED]))
        );
        let (node_pem, _key) = pki
            .issue_client_certificate("system:node:w1", &["system:nodes"])
            .unwrap();
        let der = CertificateDer::from_pem_slice(node_pem.as_bytes()).unwrap();
        assert_eq!(
            Authenticator::client_certificate(&der),
            Some(UserInfo::new(
                "system:node:w1",
                &["system:nodes", AUTHENTICATED]
            ))
        );
    }

    #[test]
    fn tokens_known_by_digest_authenticate_and_others_do_not() {
        let admin = UserInfo::new("admin", &["system:masters"]);
        let digest = ring::digest::digest(&ring::digest::SHA256, b"s3cret-token");
        let mut d = [0u8; 32];
        d.copy_from_slice(digest.as_ref());
        let auth = Authenticator::new().with_token_sha256(d, admin.clone());
        assert_eq!(auth.bearer("Bearer s3cret-token"), Some(admin));
        assert_eq!(auth.bearer("Bearer s3cret-tokeN"), None);
        assert_eq!(auth.bearer(&format!("Bearer {}", hex::encode(d))), None);
        assert_eq!(auth.bearer("s3cret-token"), None);
    }
}
