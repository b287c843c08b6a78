//! `/metrics`, and the labels each request is counted under in
//! `apiserver_request_total` (see [`crate::metrics::apiserver`]).

use hyper::{Method, Response, header};

use super::UserInfo;
use super::http::{self, Body};
use super::route::{self, Route};
use crate::metrics::apiserver::RequestLabels;
use crate::metrics::{OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE, registry};
use crate::registry::ResourceTable;

/// Groups whose members may read `/metrics`. RBAC does not exist yet:
/// when it does, this check becomes an authorization of `get` on the
/// non-resource URL `/metrics` (upstream's `system:monitoring` group is
/// bound to it by the bootstrap ClusterRole `system:monitoring`).
const METRICS_READERS: [&str; 2] = ["system:masters", "system:monitoring"];

/// Non-resource paths counted by their own name; any other is `other`
/// (unbounded paths would make unbounded series).
const KNOWN_PATHS: [&str; 10] = [
    "/healthz",
    "/livez",
    "/readyz",
    "/version",
    "/metrics",
    "/api",
    "/apis",
    "/openapi/v2",
    "/openapi/v3",
    "/attestation",
];

/// What `apiserver_request_total` calls a request of `method` to `path`.
pub(super) fn request_labels(
    method: &Method,
    path: &str,
    query: &str,
    content_type: &str,
    table: &ResourceTable,
) -> RequestLabels {
    let Route::Resource(target) = route::parse(path, table) else {
        let known = KNOWN_PATHS
            .iter()
            .find(|p| **p == path || (p.len() > 4 && path.starts_with(**p)));
        return RequestLabels {
            verb: method.as_str().to_string(),
            subresource: known.map_or("other", |p| p).to_string(),
            ..Default::default()
        };
    };
    let pairs = route::query_pairs(query);
    let has = |k: &str, v: Option<&str>| {
        pairs
            .iter()
            .any(|(pk, pv)| pk == k && v.is_none_or(|v| pv == v))
    };
    let named = target.name.is_some();
    let watch = has("watch", Some("true")) || has("watch", Some("1"));
    let apply =
        content_type.split(';').next().map(str::trim) == Some("application/apply-patch+yaml");
    let verb = match *method {
        Method::GET if named => "GET",
        Method::GET if watch => "WATCH",
        Method::GET => "LIST",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH if apply => "APPLY",
        Method::PATCH => "PATCH",
        Method::DELETE if named => "DELETE",
        Method::DELETE => "DELETECOLLECTION",
        ref other => other.as_str(),
    };
    let scope = if named {
        "resource"
    } else if target.namespace.is_some() {
        "namespace"
    } else {
        "cluster"
    };
    RequestLabels {
        verb: verb.to_string(),
        dry_run: if has("dryRun", Some("All")) {
            "All".into()
        } else {
            String::new()
        },
        group: target.info.group.to_string(),
        version: target.info.version.to_string(),
        resource: target.info.resource.to_string(),
        subresource: target.subresource.unwrap_or_default(),
        scope: scope.into(),
        component: "apiserver".into(),
    }
}

/// `GET /metrics` for `user`, in Prometheus text (OpenMetrics when the
/// client asks for it).
pub(super) fn serve(user: Option<&UserInfo>, accept: &str) -> Response<Body> {
    let allowed = user.is_some_and(|u| {
        u.groups
            .iter()
            .any(|g| METRICS_READERS.contains(&g.as_str()))
    });
    if !allowed {
        let name = user.map_or("system:anonymous", |u| u.name.as_str());
        return http::status(
            403,
            "Forbidden",
            &format!("forbidden: User {name:?} cannot get path \"/metrics\""),
        );
    }
    let metrics = registry();
    let (body, content_type) = if accept.contains("application/openmetrics-text") {
        (metrics.encode_openmetrics(), OPENMETRICS_CONTENT_TYPE)
    } else {
        (metrics.encode_prometheus(), PROMETHEUS_CONTENT_TYPE)
    };
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, content_type)
        .body(http::full(body))
        .unwrap_or_else(|_| http::path_not_found())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::kinds::builtin;

    #[test]
    fn labels_of_requests() {
        let t = ResourceTable::new(builtin());
        let l = request_labels(
            &Method::GET,
            "/api/v1/namespaces/d/pods",
            "watch=true",
            "",
            &t,
        );
        assert_eq!(
            (l.verb.as_str(), l.scope.as_str(), l.resource.as_str()),
            ("WATCH", "namespace", "pods")
        );
        let l = request_labels(
            &Method::POST,
            "/api/v1/namespaces/d/pods/p/eviction",
            "dryRun=All",
            "",
            &t,
        );
        assert_eq!(
            (
                l.verb.as_str(),
                l.subresource.as_str(),
                l.scope.as_str(),
                l.dry_run.as_str()
            ),
            ("POST", "eviction", "resource", "All")
        );
        let l = request_labels(
            &Method::PATCH,
            "/apis/apps/v1/namespaces/d/deployments/x",
            "",
            "application/apply-patch+yaml",
            &t,
        );
        assert_eq!((l.verb.as_str(), l.group.as_str()), ("APPLY", "apps"));
        let l = request_labels(&Method::GET, "/api/v1/nodes", "", "", &t);
        assert_eq!((l.verb.as_str(), l.scope.as_str()), ("LIST", "cluster"));
        let l = request_labels(&Method::GET, "/healthz/ping", "", "", &t);
        assert_eq!(
            (l.subresource.as_str(), l.component.as_str()),
            ("/healthz", "")
        );
        let l = request_labels(&Method::GET, "/nonsense/x", "", "", &t);
        assert_eq!(l.subresource, "other");
    }
}
