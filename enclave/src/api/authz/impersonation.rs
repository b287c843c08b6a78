//! Impersonation (upstream's `WithImpersonation` filter): the
//! `Impersonate-User`, `Impersonate-Group`, `Impersonate-Uid` and
//! `Impersonate-Extra-<key>` headers (kubectl's `--as`, `--as-group`,
//! `--as-uid`) make the request act as another user, after the requester
//! was allowed to `impersonate` each of them.

use hyper::HeaderMap;

use super::{Attributes, AuthorizerChain};
use crate::auth::serviceaccount;
use crate::registry::UserInfo;

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";

/// Every authenticated user's group.
pub const AUTHENTICATED: &str = "system:authenticated";
/// Every anonymous user's group.
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
/// The anonymous user.
pub const ANONYMOUS: &str = "system:anonymous";

/// Why impersonation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the headers do not make sense (`requested [...] without impersonating a user`).
    BadRequest(String),
    /// 403 for these attributes, with the chain's reason.
    Forbidden(Box<Attributes>, String),
}

/// One thing to impersonate (upstream's `ObjectReference` requests).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wanted {
    User(String),
    ServiceAccount(String, String),
    Group(String),
    Extra(String, String),
    Uid(String),
}

impl Wanted {
    /// How upstream prints the request list (`%v` of ObjectReferences).
    fn describe(&self) -> String {
        match self {
            Wanted::User(n) => format!("{{User  {n}    }}"),
            Wanted::ServiceAccount(ns, n) => format!("{{ServiceAccount {ns} {n}    }}"),
            Wanted::Group(n) => format!("{{Group  {n}    }}"),
            Wanted::Extra(k, v) => format!("{{UserExtra  {v}  authentication.k8s.io/v1  {k}}}"),
            Wanted::Uid(u) => format!("{{UID  {u}  authentication.k8s.io/v1  }}"),
        }
    }

    /// The `impersonate` check for this request by `requester`.
    fn attributes(&self, requester: &UserInfo) -> Attributes {
        let (ns, group, resource, sub, name) = match self {
            Wanted::User(n) => ("", "", "users", "", n.as_str()),
            Wanted::ServiceAccount(ns, n) => (ns.as_str(), "", "serviceaccounts", "", n.as_str()),
            Wanted::Group(n) => ("", "", "groups", "", n.as_str()),
            Wanted::Extra(k, v) => (
                "",
                "authentication.k8s.io",
                "userextras",
                k.as_str(),
                v.as_str(),
            ),
            Wanted::Uid(u) => ("", "authentication.k8s.io", "uids", "", u.as_str()),
        };
        let mut a = Attributes::resource(
            requester.clone(),
            "impersonate",
            ns,
            group,
            resource,
            sub,
            name,
        );
        a.api_version = "v1".to_string();
        a
    }
}

/// Upstream's `unescapeExtraKey`: percent-decoding of an extra key.
fn unescape(key: &str) -> String {
    let mut out = Vec::with_capacity(key.len());
    let b = key.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%'
            && let Some(v) = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(c);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn requests(headers: &HeaderMap) -> Result<Vec<Wanted>, Refusal> {
    let text = |v: &hyper::header::HeaderValue| v.to_str().unwrap_or("").to_string();
    let mut out = Vec::new();
    let user = headers.get(USER).map(text).unwrap_or_default();
    if !user.is_empty() {
        let sa = user
            .strip_prefix(serviceaccount::USER_PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .filter(|(ns, n)| !ns.is_empty() && !n.is_empty() && !n.contains(':'));
        out.push(match sa {
            Some((ns, n)) => Wanted::ServiceAccount(ns.into(), n.into()),
            None => Wanted::User(user.clone()),
        });
    }
    let mut others = false;
    for g in headers.get_all(GROUP) {
        others = true;
        out.push(Wanted::Group(text(g)));
    }
    let mut extra_keys: Vec<&str> = headers
        .keys()
        .map(hyper::header::HeaderName::as_str)
        .filter(|k| k.starts_with(EXTRA_PREFIX))
        .collect();
    extra_keys.sort_unstable();
    for k in extra_keys {
        others = true;
        let key = unescape(&k[EXTRA_PREFIX.len()..]);
        for v in headers.get_all(k) {
            out.push(Wanted::Extra(key.clone(), text(v)));
        }
    }
    let uid = headers.get(UID).map(text).unwrap_or_default();
    if !uid.is_empty() {
        others = true;
        out.push(Wanted::Uid(uid));
    }
    if others && user.is_empty() {
        let list: Vec<String> = out.iter().map(Wanted::describe).collect();
        return Err(Refusal::BadRequest(format!(
            "requested [{}] without impersonating a user",
            list.join(" ")
        )));
    }
    Ok(out)
}

/// Whether the request asks for impersonation at all.
pub fn requested(headers: &HeaderMap) -> bool {
    headers.contains_key(USER)
        || headers.contains_key(GROUP)
        || headers.contains_key(UID)
        || headers.keys().any(|k| k.as_str().starts_with(EXTRA_PREFIX))
}

/// The user `requester` acts as, after checking `impersonate` for each
/// impersonated attribute with `chain`.
///
/// # Errors
/// [`Refusal`].
pub async fn impersonate(
    chain: &AuthorizerChain,
    requester: &UserInfo,
    headers: &HeaderMap,
) -> Result<UserInfo, Refusal> {
    let wanted = requests(headers)?;
    let mut user = UserInfo::default();
    let mut groups_given = false;
    for w in &wanted {
        let a = w.attributes(requester);
        let v = chain.authorize(&a).await;
        if !v.allowed() {
            return Err(Refusal::Forbidden(Box::new(a), v.reason));
        }
        match w {
            Wanted::User(n) => user.name.clone_from(n),
            Wanted::ServiceAccount(ns, n) => user.name = serviceaccount::username(ns, n),
            Wanted::Group(g) => {
                groups_given = true;
                user.groups.push(g.clone());
            }
            Wanted::Extra(k, v) => user.extra.entry(k.clone()).or_default().push(v.clone()),
            Wanted::Uid(u) => user.uid.clone_from(u),
        }
    }
    if !groups_given && let Some(Wanted::ServiceAccount(ns, _)) = wanted.first() {
        user.groups = serviceaccount::groups(ns);
    }
    if user.name != ANONYMOUS {
        if !user
            .groups
            .iter()
            .any(|g| g == AUTHENTICATED || g == UNAUTHENTICATED)
        {
            user.groups.push(AUTHENTICATED.to_string());
        }
    } else if !user.groups.iter().any(|g| g == UNAUTHENTICATED) {
        user.groups.push(UNAUTHENTICATED.to_string());
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[tokio::test]
    async fn impersonation_as_upstream() {
        let chain = AuthorizerChain::new().with(Arc::new(super::super::PrivilegedGroup::new(
            "system:masters",
        )));
        let admin = UserInfo::new("admin", &["system:masters"]);
        let u = impersonate(
            &chain,
            &admin,
            &headers(&[("Impersonate-User", "bob"), ("Impersonate-Group", "g")]),
        )
        .await
        .unwrap();
        assert_eq!(u.name, "bob");
        assert_eq!(u.groups, vec!["g", AUTHENTICATED]);
        let sa = impersonate(
            &chain,
            &admin,
            &headers(&[("Impersonate-User", "system:serviceaccount:ns:sa")]),
        )
        .await
        .unwrap();
        assert_eq!(
            sa.groups,
            vec![
                "system:serviceaccounts",
                "system:serviceaccounts:ns",
                AUTHENTICATED
            ]
        );
        let extra = impersonate(
            &chain,
            &admin,
            &headers(&[
                ("Impersonate-User", "x"),
                ("Impersonate-Extra-Scopes%2Fa", "v"),
                ("Impersonate-Uid", "1"),
            ]),
        )
        .await
        .unwrap();
        assert_eq!(extra.extra.get("scopes/a"), Some(&vec!["v".to_string()]));
        assert_eq!(extra.uid, "1");
        assert_eq!(
            impersonate(&chain, &admin, &headers(&[("Impersonate-Group", "g")])).await,
            Err(Refusal::BadRequest(
                "requested [{Group  g    }] without impersonating a user".into()
            ))
        );
        let bob = UserInfo::new("bob", &[AUTHENTICATED]);
        match impersonate(&chain, &bob, &headers(&[("Impersonate-User", "alice")])).await {
            Err(Refusal::Forbidden(a, _)) => {
                assert_eq!(
                    super::super::forbidden::message(&a),
                    r#"User "bob" cannot impersonate resource "users" in API group "" at the cluster scope"#
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
