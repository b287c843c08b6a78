//! Request paths, parsed against the resource table.

use std::sync::Arc;

use crate::registry::{ResourceInfo, ResourceTable, Scope};

/// What a request path names.
#[derive(Debug, Clone)]
pub enum Route {
    /// `/version`.
    Version,
    /// `/healthz`, `/livez`, `/readyz` (and their sub-paths).
    Health,
    /// `/attestation`: attested first contact.
    Attestation,
    /// `/unseal`: the operator's root secret (see [`super::sealed`]); only
    /// the sealed phase takes it.
    Unseal,
    /// `/daas/v1/tunnel`: a worker opens its node tunnel (see [`super::streams::tunnel`]).
    Tunnel,
    /// `/join/v1/...`: nodes joining with stake tickets (see [`super::nodes`]).
    Join,
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    Groups,
    /// `/apis/{group}`.
    Group(String),
    /// `/api/v1` or `/apis/{group}/{version}`.
    GroupVersion(String, String),
    /// `/openapi/v2` (and the legacy `/swagger-2.0.0.pb-v1`).
    OpenApiV2,
    /// `/openapi/v3`.
    OpenApiV3Index,
    /// `/openapi/v3/{api/v1|apis/g/v}`.
    OpenApiV3(String, String),
    /// `/.well-known/openid-configuration`: OIDC discovery of the
    /// service-account token issuer.
    OidcConfiguration,
    /// `/openid/v1/jwks`: the service-account token verification keys.
    Jwks,
    /// `/audit/events`: the sealed audit log.
    AuditEvents,
    /// `/metrics`.
    Metrics,
    /// A resource collection or object.
    Resource(ResourceTarget),
    /// Nothing we serve.
    NotFound,
}

/// A resource request target.
#[derive(Debug, Clone)]
pub struct ResourceTarget {
    /// The resource.
    pub info: Arc<ResourceInfo>,
    /// The namespace from the path, if any.
    pub namespace: Option<String>,
    /// The object name, if any.
    pub name: Option<String>,
    /// The subresource, if any.
    pub subresource: Option<String>,
}

/// Parses `path` (without query).
pub fn parse(path: &str, table: &ResourceTable) -> Route {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz", ..] => Route::Health,
        ["attestation"] => Route::Attestation,
        ["unseal"] => Route::Unseal,
        ["daas", "v1", "tunnel"] => Route::Tunnel,
        ["metrics"] => Route::Metrics,
        ["join", "v1", ..] => Route::Join,
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["apis", g] => Route::Group((*g).to_string()),
        ["api", v] => Route::GroupVersion(String::new(), (*v).to_string()),
        ["apis", g, v] => Route::GroupVersion((*g).to_string(), (*v).to_string()),
        ["openapi", "v2"] | ["swagger-2.0.0.pb-v1"] => Route::OpenApiV2,
        [".well-known", "openid-configuration"] => Route::OidcConfiguration,
        ["openid", "v1", "jwks"] => Route::Jwks,
        ["audit", "events"] => Route::AuditEvents,
        ["openapi", "v3"] => Route::OpenApiV3Index,
        ["openapi", "v3", "api", v] => Route::OpenApiV3(String::new(), (*v).to_string()),
        ["openapi", "v3", "apis", g, v] => Route::OpenApiV3((*g).to_string(), (*v).to_string()),
        ["api", v, rest @ ..] => resource("", v, rest, table),
        ["apis", g, v, rest @ ..] => resource(g, v, rest, table),
        _ => Route::NotFound,
    }
}

fn target(
    info: Arc<ResourceInfo>,
    ns: Option<&str>,
    name: Option<&str>,
    sub: Option<&str>,
) -> Route {
    Route::Resource(ResourceTarget {
        info,
        namespace: ns.map(str::to_string),
        name: name.map(str::to_string),
        subresource: sub.map(str::to_string),
    })
}

fn resource(g: &str, v: &str, rest: &[&str], table: &ResourceTable) -> Route {
    let lookup = |r: &str| table.lookup(g, v, r);
    let namespaced = |r: &str| lookup(r).filter(|i| i.scope == Scope::Namespaced);
    match rest {
        ["namespaces", ns, r, tail @ ..] if namespaced(r).is_some() && !ns.is_empty() => {
            let Some(info) = namespaced(r) else {
                return Route::NotFound;
            };
            match tail {
                [] => target(info, Some(ns), None, None),
                [name] => target(info, Some(ns), Some(name), None),
                [name, sub] => target(info, Some(ns), Some(name), Some(sub)),
                _ => Route::NotFound,
            }
        }
        [r, tail @ ..] => {
            let Some(info) = lookup(r) else {
                return Route::NotFound;
            };
            match (info.scope, tail) {
                (_, []) => target(info, None, None, None),
                (Scope::Cluster, [name]) => target(info, None, Some(name), None),
                (Scope::Cluster, [name, sub]) => target(info, None, Some(name), Some(sub)),
                _ => Route::NotFound,
            }
        }
        [] => Route::NotFound,
    }
}

/// Decodes `application/x-www-form-urlencoded` query pairs.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::kinds::builtin;

    #[test]
    fn paths() {
        let t = ResourceTable::new(builtin());
        let r = |p| match parse(p, &t) {
            Route::Resource(t) => format!(
                "{}|{:?}|{:?}|{:?}",
                t.info.resource, t.namespace, t.name, t.subresource
            ),
            other => format!("{other:?}"),
        };
        assert_eq!(r("/api/v1/namespaces"), "namespaces|None|None|None");
        assert_eq!(
            r("/api/v1/namespaces/x"),
            "namespaces|None|Some(\"x\")|None"
        );
        assert_eq!(
            r("/api/v1/namespaces/x/status"),
            "namespaces|None|Some(\"x\")|Some(\"status\")"
        );
        assert_eq!(
            r("/api/v1/namespaces/d/configmaps/c"),
            "configmaps|Some(\"d\")|Some(\"c\")|None"
        );
        assert_eq!(r("/api/v1/pods"), "pods|None|None|None");
        assert_eq!(
            r("/apis/apps/v1/namespaces/d/deployments"),
            "deployments|Some(\"d\")|None|None"
        );
        assert_eq!(r("/api/v1/configmaps/c"), "NotFound");
        assert_eq!(r("/api/v1/bogus"), "NotFound");
        assert_eq!(
            query_pairs("fieldSelector=metadata.name%3Dx&a=b+c"),
            vec![
                ("fieldSelector".into(), "metadata.name=x".into()),
                ("a".into(), "b c".into())
            ]
        );
    }
}
