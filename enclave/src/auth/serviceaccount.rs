//! Service-account tokens, as upstream's `pkg/serviceaccount`: ES256 JWTs
//! signed with a key derived from the root secret, issued by TokenRequest
//! (bound to a pod, secret or node, with audiences and an expiry) or, only
//! when a user asks for one with a `kubernetes.io/service-account-token`
//! Secret, as a legacy token that lives as long as its Secret.
//!
//! A token authenticates while its signature verifies, it is in date (60 s
//! leeway, as upstream's JWT library), one of its audiences is wanted, its
//! service account still exists with the same uid, and the object it is
//! bound to does too. The expensive part (signature, claims) is cached per
//! token; the lookups are cached until [`ServiceAccountTokens::revoke_cached`]
//! is called, which the API does on every write that could revoke a token
//! (deleting a pod, secret or service account) before it answers, and a
//! watch does for every other writer.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::jwt::{self, JwtError};
use super::keys::DerivedKey;
use crate::registry::{Error as ApiError, ObjectStore, UserInfo, meta};

/// The issuer of legacy (Secret-based) tokens.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";

/// The issuer kube-apiserver is usually configured with (`--service-account-issuer`).
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// A service account's user name prefix.
pub const USER_PREFIX: &str = "system:serviceaccount:";

/// Every service account's group.
pub const ALL_GROUP: &str = "system:serviceaccounts";

/// Extra keys of a service-account user.
pub const POD_NAME_KEY: &str = "authentication.kubernetes.io/pod-name";
/// The bound pod's uid.
pub const POD_UID_KEY: &str = "authentication.kubernetes.io/pod-uid";
/// The token's id (`JTI=<jti>`).
pub const CREDENTIAL_ID_KEY: &str = "authentication.kubernetes.io/credential-id";
/// The node the bound pod runs on, or the bound node.
pub const NODE_NAME_KEY: &str = "authentication.kubernetes.io/node-name";
/// That node's uid.
pub const NODE_UID_KEY: &str = "authentication.kubernetes.io/node-uid";

/// JWT clock leeway, as upstream's (go-jose's `DefaultLeeway`).
const LEEWAY_SECS: i64 = 60;

/// The most verified tokens kept before the cache starts over.
const MAX_CACHED: usize = 16_384;

/// `system:serviceaccount:NS:NAME`.
pub fn username(namespace: &str, name: &str) -> String {
    format!("{USER_PREFIX}{namespace}:{name}")
}

/// `[system:serviceaccounts, system:serviceaccounts:NS]`.
pub fn groups(namespace: &str) -> Vec<String> {
    vec![ALL_GROUP.to_string(), format!("{ALL_GROUP}:{namespace}")]
}

/// Why a token did not authenticate (logged; the client sees 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a JWT of an issuer this cluster accepts.
    #[error("not a service account token of this cluster")]
    NotOurs,
    /// Bad signature or form.
    #[error(transparent)]
    Jwt(#[from] JwtError),
    /// Past its expiry (or before its not-before).
    #[error("token has expired")]
    Expired,
    /// None of the token's audiences is wanted.
    #[error("token audiences {0:?} do not match the wanted audiences")]
    Audience(Vec<String>),
    /// The claims lack something a service-account token has.
    #[error("token lacks {0}")]
    Claims(&'static str),
    /// The service account, or the object the token is bound to, is gone
    /// or was recreated.
    #[error("service account token has been invalidated")]
    Invalidated,
    /// The objects could not be read.
    #[error("looking up the token's objects failed: {0}")]
    Lookup(String),
}

/// A token's binding, for [`ServiceAccountTokens::issue`].
#[derive(Debug, Clone, Default)]
pub struct Binding {
    /// A pod `(name, uid)`.
    pub pod: Option<(String, String)>,
    /// A secret `(name, uid)`.
    pub secret: Option<(String, String)>,
    /// A node `(name, uid)`: the bound node, or the bound pod's node.
    pub node: Option<(String, String)>,
}

/// A verified token.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// Who it stands for.
    pub user: UserInfo,
    /// The wanted audiences it is valid for.
    pub audiences: Vec<String>,
}

#[derive(Debug, Clone)]
struct Cached {
    /// The whole token: a hit must match it exactly, not only its signature.
    token: String,
    user: UserInfo,
    audiences: Vec<String>,
    not_before: i64,
    expiry: i64,
    generation: u64,
}

/// The cluster's token issuer and authenticator.
#[derive(Debug)]
pub struct ServiceAccountTokens {
    key: DerivedKey,
    issuer: String,
    audiences: Vec<String>,
    /// Verified tokens by their signature part (unique per token: ES256
    /// signatures are randomised), each holding the whole token.
    cache: Mutex<HashMap<String, Cached>>,
    generation: AtomicU64,
}

/// Seconds since the epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn str_claim<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// The `aud` claim as a list (a string or an array).
fn audiences_of(claims: &Value) -> Vec<String> {
    match claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

impl ServiceAccountTokens {
    /// Tokens signed with `key`, issued by `issuer`, accepted by the API for
    /// `audiences` (upstream's `--api-audiences`; defaults to the issuer).
    pub fn new(key: DerivedKey, issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        let issuer = issuer.into();
        let audiences = if audiences.is_empty() {
            vec![issuer.clone()]
        } else {
            audiences
        };
        ServiceAccountTokens {
            key,
            issuer,
            audiences,
            cache: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// The issuer (`iss` of new tokens, the OIDC discovery `issuer`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The audiences the API accepts (and gives tokens by default).
    pub fn api_audiences(&self) -> &[String] {
        &self.audiences
    }

    /// The signing key (its public JWK is served for OIDC discovery).
    pub fn key(&self) -> &DerivedKey {
        &self.key
    }

    /// Forgets every cached lookup: the next use of each token checks its
    /// objects again.
    pub fn revoke_cached(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Signs a token for service account `namespace/name` (uid `uid`), for
    /// `audiences`, valid `expiration_seconds` from now, bound to `binding`.
    /// Returns the token and its expiry (unix seconds).
    ///
    /// # Errors
    /// [`JwtError::Signing`].
    pub fn issue(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        audiences: &[String],
        expiration_seconds: i64,
        binding: &Binding,
    ) -> Result<(String, i64), JwtError> {
        let now = unix_now();
        let exp = now.saturating_add(expiration_seconds);
        let r = |(n, u): &(String, String)| json!({"name": n, "uid": u});
        let mut k8s = json!({
            "namespace": namespace,
            "serviceaccount": {"name": name, "uid": uid},
        });
        if let Some(p) = &binding.pod {
            k8s["pod"] = r(p);
        }
        if let Some(s) = &binding.secret {
            k8s["secret"] = r(s);
        }
        if let Some(n) = &binding.node {
            k8s["node"] = r(n);
        }
        let claims = json!({
            "iss": self.issuer,
            "sub": username(namespace, name),
            "aud": audiences,
            "exp": exp,
            "iat": now,
            "nbf": now,
            "jti": meta::new_uid(),
            "kubernetes.io": k8s,
        });
        Ok((jwt::sign(&self.key, &claims)?, exp))
    }

    /// A legacy token for the Secret `secret` of service account `name`.
    ///
    /// # Errors
    /// [`JwtError::Signing`].
    pub fn issue_legacy(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        secret: &str,
    ) -> Result<String, JwtError> {
        let claims = json!({
            "iss": LEGACY_ISSUER,
            "sub": username(namespace, name),
            "kubernetes.io/serviceaccount/namespace": namespace,
            "kubernetes.io/serviceaccount/secret.name": secret,
            "kubernetes.io/serviceaccount/service-account.name": name,
            "kubernetes.io/serviceaccount/service-account.uid": uid,
        });
        jwt::sign(&self.key, &claims)
    }

    /// Authenticates `token` for the API's audiences.
    ///
    /// # Errors
    /// [`TokenError`].
    pub async fn authenticate(
        &self,
        objects: &ObjectStore,
        token: &str,
    ) -> Result<Authenticated, TokenError> {
        let sig = token.rsplit_once('.').map_or(token, |(_, sig)| sig);
        let generation = self.generation.load(Ordering::Acquire);
        let now = unix_now();
        let hit = self
            .cache
            .lock()
            .ok()
            .and_then(|c| c.get(sig).filter(|c| c.token == token).cloned());
        if let Some(c) = hit {
            if now > c.expiry.saturating_add(LEEWAY_SECS)
                || now < c.not_before.saturating_sub(LEEWAY_SECS)
            {
                return Err(TokenError::Expired);
            }
            if c.generation == generation {
                return Ok(Authenticated {
                    user: c.user,
                    audiences: c.audiences,
                });
            }
        }
        let wanted = self.audiences.clone();
        let (auth, nbf, exp) = self.validate(objects, token, &wanted).await?;
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= MAX_CACHED {
                c.clear();
            }
            c.insert(
                sig.to_string(),
                Cached {
                    token: token.to_string(),
                    user: auth.user.clone(),
                    audiences: auth.audiences.clone(),
                    not_before: nbf,
                    expiry: exp,
                    generation,
                },
            );
        }
        Ok(auth)
    }

    /// Authenticates `token` for `audiences` without the cache (TokenReview).
    ///
    /// # Errors
    /// [`TokenError`].
    pub async fn review(
        &self,
        objects: &ObjectStore,
        token: &str,
        audiences: &[String],
    ) -> Result<Authenticated, TokenError> {
        let wanted = if audiences.is_empty() {
            self.audiences.clone()
        } else {
            audiences.to_vec()
        };
        self.validate(objects, token, &wanted)
            .await
            .map(|(a, _, _)| a)
    }

    /// Checks everything; returns the user and the token's not-before and
    /// expiry (`i64::MAX` for legacy tokens).
    async fn validate(
        &self,
        objects: &ObjectStore,
        token: &str,
        wanted: &[String],
    ) -> Result<(Authenticated, i64, i64), TokenError> {
        let unverified = jwt::peek_claims(token).map_err(|_| TokenError::NotOurs)?;
        let iss = str_claim(&unverified, "/iss");
        if iss != self.issuer && iss != LEGACY_ISSUER {
            return Err(TokenError::NotOurs);
        }
        let claims = jwt::verify(&self.key, token)?;
        let mut token_auds = audiences_of(&claims);
        if token_auds.is_empty() {
            // Legacy tokens carry no audience: they are for the API's.
            token_auds = self.audiences.clone();
        }
        let matched: Vec<String> = wanted
            .iter()
            .filter(|a| token_auds.contains(a))
            .cloned()
            .collect();
        if matched.is_empty() {
            return Err(TokenError::Audience(token_auds));
        }
        if iss == LEGACY_ISSUER {
            let user = self.validate_legacy(objects, token, &claims).await?;
            return Ok((
                Authenticated {
                    user,
                    audiences: matched,
                },
                i64::MIN,
                i64::MAX,
            ));
        }
        let now = unix_now();
        let num = |k: &str| claims.get(k).and_then(Value::as_i64);
        let exp = num("exp").ok_or(TokenError::Claims("exp"))?;
        let nbf = num("nbf").unwrap_or(i64::MIN);
        if now > exp.saturating_add(LEEWAY_SECS) || now < nbf.saturating_sub(LEEWAY_SECS) {
            return Err(TokenError::Expired);
        }
        if num("iat").is_some_and(|iat| iat > now.saturating_add(LEEWAY_SECS)) {
            return Err(TokenError::Expired);
        }
        let user = self.validate_bound(objects, &claims).await?;
        Ok((
            Authenticated {
                user,
                audiences: matched,
            },
            nbf,
            exp,
        ))
    }

    async fn validate_bound(
        &self,
        objects: &ObjectStore,
        claims: &Value,
    ) -> Result<UserInfo, TokenError> {
        let ns = str_claim(claims, "/kubernetes.io/namespace");
        let sa = str_claim(claims, "/kubernetes.io/serviceaccount/name");
        let sa_uid = str_claim(claims, "/kubernetes.io/serviceaccount/uid");
        if ns.is_empty() || sa.is_empty() {
            return Err(TokenError::Claims("kubernetes.io/serviceaccount"));
        }
        if str_claim(claims, "/sub") != username(ns, sa) {
            return Err(TokenError::Claims("a matching sub"));
        }
        let account = lookup(objects, "serviceaccounts", Some(ns), sa)
            .await?
            .ok_or(TokenError::Invalidated)?;
        let uid = uid_of(Some(&account)).unwrap_or("").to_string();
        if !sa_uid.is_empty() && uid != sa_uid {
            return Err(TokenError::Invalidated);
        }
        let mut extra = BTreeMap::new();
        let deleted_long_ago = |o: &Value| {
            meta::meta_str(o, "deletionTimestamp")
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .is_some_and(|t| t.as_second() < unix_now() - LEEWAY_SECS)
        };
        for (what, resource) in [("pod", "pods"), ("secret", "secrets")] {
            let name = str_claim(claims, &format!("/kubernetes.io/{what}/name"));
            if name.is_empty() {
                continue;
            }
            let want_uid = str_claim(claims, &format!("/kubernetes.io/{what}/uid"));
            let obj = lookup(objects, resource, Some(ns), name)
                .await?
                .ok_or(TokenError::Invalidated)?;
            if uid_of(Some(&obj)) != Some(want_uid) || deleted_long_ago(&obj) {
                return Err(TokenError::Invalidated);
            }
            if what == "pod" {
                extra.insert(POD_NAME_KEY.to_string(), vec![name.to_string()]);
                extra.insert(POD_UID_KEY.to_string(), vec![want_uid.to_string()]);
            }
        }
        let node = str_claim(claims, "/kubernetes.io/node/name");
        if !node.is_empty() {
            let node_uid = str_claim(claims, "/kubernetes.io/node/uid");
            let bound_to_node = str_claim(claims, "/kubernetes.io/pod/name").is_empty();
            if bound_to_node {
                let obj = lookup(objects, "nodes", None, node)
                    .await?
                    .ok_or(TokenError::Invalidated)?;
                if uid_of(Some(&obj)) != Some(node_uid) || deleted_long_ago(&obj) {
                    return Err(TokenError::Invalidated);
                }
            }
            extra.insert(NODE_NAME_KEY.to_string(), vec![node.to_string()]);
            if !node_uid.is_empty() {
                extra.insert(NODE_UID_KEY.to_string(), vec![node_uid.to_string()]);
            }
        }
        let jti = str_claim(claims, "/jti");
        if !jti.is_empty() {
            extra.insert(CREDENTIAL_ID_KEY.to_string(), vec![format!("JTI={jti}")]);
        }
        Ok(UserInfo {
            name: username(ns, sa),
            groups: groups(ns),
            uid,
            extra,
        })
    }

    async fn validate_legacy(
        &self,
        objects: &ObjectStore,
        token: &str,
        claims: &Value,
    ) -> Result<UserInfo, TokenError> {
        let c = |k: &str| str_claim(claims, &format!("/kubernetes.io~1serviceaccount~1{k}"));
        let (ns, sa, sa_uid, secret) = (
            c("namespace"),
            c("service-account.name"),
            c("service-account.uid"),
            c("secret.name"),
        );
        if ns.is_empty() || sa.is_empty() || secret.is_empty() {
            return Err(TokenError::Claims("legacy service account claims"));
        }
        if str_claim(claims, "/sub") != username(ns, sa) {
            return Err(TokenError::Claims("a matching sub"));
        }
        let s = lookup(objects, "secrets", Some(ns), secret)
            .await?
            .ok_or(TokenError::Invalidated)?;
        use base64::Engine;
        let stored = s
            .pointer("/data/token")
            .and_then(Value::as_str)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
        if stored.as_deref() != Some(token.as_bytes())
            || meta::meta_str(&s, "deletionTimestamp").is_some()
        {
            return Err(TokenError::Invalidated);
        }
        let account = lookup(objects, "serviceaccounts", Some(ns), sa)
            .await?
            .ok_or(TokenError::Invalidated)?;
        if uid_of(Some(&account)) != Some(sa_uid) {
            return Err(TokenError::Invalidated);
        }
        Ok(UserInfo {
            name: username(ns, sa),
            groups: groups(ns),
            uid: sa_uid.to_string(),
            extra: BTreeMap::new(),
        })
    }
}

fn uid_of(o: Option<&Value>) -> Option<&str> {
    o.and_then(|o| meta::meta_str(o, "uid"))
}

/// The object `resource` `ns/name`, or `None` if it does not exist.
async fn lookup(
    objects: &ObjectStore,
    resource: &str,
    ns: Option<&str>,
    name: &str,
) -> Result<Option<Value>, TokenError> {
    let info = objects
        .table()
        .lookup("", "v1", resource)
        .ok_or_else(|| TokenError::Lookup(format!("{resource} are not served")))?;
    match objects.get(&info, ns, name).await {
        Ok(o) => Ok(Some(o)),
        Err(ApiError::NotFound { .. }) => Ok(None),
        Err(e) => Err(TokenError::Lookup(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_as_upstream() {
        let t = ServiceAccountTokens::new(
            DerivedKey::derive(&[3; 32]).unwrap(),
            DEFAULT_ISSUER,
            vec![],
        );
        assert_eq!(t.api_audiences(), [DEFAULT_ISSUER.to_string()]);
        let binding = Binding {
            pod: Some(("p".into(), "pu".into())),
            node: Some(("n".into(), "nu".into())),
            ..Default::default()
        };
        let (tok, exp) = t
            .issue("ns", "sa", "u", &["a".into()], 600, &binding)
            .unwrap();
        let c = jwt::verify(t.key(), &tok).unwrap();
        assert_eq!(c["sub"], "system:serviceaccount:ns:sa");
        assert_eq!(c["aud"], json!(["a"]));
        assert_eq!(c["exp"], exp);
        assert_eq!(c["kubernetes.io"]["pod"], json!({"name": "p", "uid": "pu"}));
        assert_eq!(
            c["kubernetes.io"]["serviceaccount"],
            json!({"name": "sa", "uid": "u"})
        );
        assert!(c.get("jti").is_some());
        let legacy = t.issue_legacy("ns", "sa", "u", "s").unwrap();
        let c = jwt::verify(t.key(), &legacy).unwrap();
        assert_eq!(c["iss"], LEGACY_ISSUER);
        assert_eq!(c["kubernetes.io/serviceaccount/secret.name"], "s");
        assert_eq!(audiences_of(&json!({"aud": "x"})), vec!["x".to_string()]);
    }
}
