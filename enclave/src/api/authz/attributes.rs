//! What a request asks to do, as an authorizer sees it: upstream's
//! `RequestInfoFactory.NewRequestInfo` (path and method to verb, API group,
//! version, namespace, resource, subresource and name) and
//! `authorizer.AttributesRecord`. Parsing needs no resource table: a request
//! for a resource nothing serves is authorized (and then answered 404) like
//! upstream's.

use crate::registry::UserInfo;

/// The path prefixes of resource requests; `api` has no group segment.
const API_PREFIXES: [&str; 2] = ["api", "apis"];

/// Subresources of a namespace that keep `namespaces` the resource
/// (`/api/v1/namespaces/x/status`).
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

/// What an authorizer decides about (upstream's `authorizer.Attributes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    /// Who asks.
    pub user: UserInfo,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`, `impersonate`, ...; for non-resource requests the
    /// lowercased HTTP method.
    pub verb: String,
    /// The namespace ("" for cluster scope; a namespace's own name for
    /// requests on `namespaces/NAME`).
    pub namespace: String,
    /// The API group ("" for core).
    pub api_group: String,
    /// The API version.
    pub api_version: String,
    /// The resource (plural).
    pub resource: String,
    /// The subresource, e.g. `status`, `log`.
    pub subresource: String,
    /// The object's name ("" for collections).
    pub name: String,
    /// Whether this is a resource request (else a non-resource URL).
    pub resource_request: bool,
    /// The request path (what non-resource rules match).
    pub path: String,
    /// The raw field selector of a list or watch ("" otherwise); the Node
    /// authorizer reads `spec.nodeName` from it.
    pub field_selector: String,
}

impl Attributes {
    /// A resource request.
    pub fn resource(
        user: UserInfo,
        verb: &str,
        namespace: &str,
        api_group: &str,
        resource: &str,
        subresource: &str,
        name: &str,
    ) -> Self {
        Attributes {
            user,
            verb: verb.to_string(),
            namespace: namespace.to_string(),
            api_group: api_group.to_string(),
            api_version: String::new(),
            resource: resource.to_string(),
            subresource: subresource.to_string(),
            name: name.to_string(),
            resource_request: true,
            path: String::new(),
            field_selector: String::new(),
        }
    }

    /// A non-resource request: `verb` on `path`.
    pub fn non_resource(user: UserInfo, verb: &str, path: &str) -> Self {
        Attributes {
            user,
            verb: verb.to_string(),
            namespace: String::new(),
            api_group: String::new(),
            api_version: String::new(),
            resource: String::new(),
            subresource: String::new(),
            name: String::new(),
            resource_request: false,
            path: path.to_string(),
            field_selector: String::new(),
        }
    }

    /// `resource/subresource`, or `resource`.
    pub fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// The request's attributes: `method` on `path` with the decoded `query`
/// pairs, by `user`.
pub fn from_request(
    user: UserInfo,
    method: &str,
    path: &str,
    query: &[(String, String)],
) -> Attributes {
    let mut a = Attributes::non_resource(user, &method.to_ascii_lowercase(), path);
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    if parts.len() < 3 || !API_PREFIXES.contains(&parts[0]) {
        return a;
    }
    let mut rest = &parts[1..];
    if parts[0] == "apis" {
        if rest.len() < 3 {
            return a;
        }
        a.api_group = rest[0].to_string();
        rest = &rest[1..];
    }
    a.resource_request = true;
    a.api_version = rest[0].to_string();
    rest = &rest[1..];
    let mut by_method = true;
    match rest.first() {
        Some(&("watch" | "proxy")) if rest.len() >= 2 => {
            a.verb = rest[0].to_string();
            rest = &rest[1..];
            by_method = false;
        }
        _ => {
            a.verb = match method {
                "POST" => "create",
                "GET" | "HEAD" => "get",
                "PUT" => "update",
                "PATCH" => "patch",
                "DELETE" => "delete",
                _ => "",
            }
            .to_string();
        }
    }
    if rest.first() == Some(&"namespaces")
        && let Some(ns) = rest.get(1)
    {
        a.namespace = (*ns).to_string();
        if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
            rest = &rest[2..];
        }
    }
    if rest.len() >= 3 && a.verb != "proxy" {
        a.subresource = rest[2].to_string();
    }
    if rest.len() >= 2 {
        a.name = rest[1].to_string();
    }
    if let Some(r) = rest.first() {
        a.resource = (*r).to_string();
    }
    // kubectl's WebSocket exec, attach and port-forward are GETs; upstream authorizes them as
    // `create`, as the SPDY POSTs (AuthorizePodWebsocketUpgradeCreatePermission).
    if a.verb == "get"
        && a.resource == "pods"
        && matches!(a.subresource.as_str(), "exec" | "attach" | "portforward")
    {
        a.verb = "create".into();
    }
    if by_method && a.name.is_empty() {
        match a.verb.as_str() {
            "delete" => a.verb = "deletecollection".into(),
            "get" => {
                let watch = query
                    .iter()
                    .any(|(k, v)| k == "watch" && (v == "true" || v == "1"));
                a.verb = if watch { "watch" } else { "list" }.into();
                // A list or watch of one object by field selector is
                // authorized as that object (kubectl wait, rollout status).
                if let Some((_, selector)) = query.iter().find(|(k, _)| k == "fieldSelector") {
                    if let Some(name) = exact_name(selector) {
                        a.name = name;
                    }
                    a.field_selector.clone_from(selector);
                }
            }
            _ => {}
        }
    }
    a
}

/// The name a field selector requires exactly (`metadata.name=x` or
/// `metadata.name==x`, alone or among other terms), if it is a valid path
/// segment.
fn exact_name(selector: &str) -> Option<String> {
    selector.split(',').find_map(|term| {
        let (k, v) = term
            .split_once("==")
            .or_else(|| term.split_once('='))
            .filter(|(k, _)| !k.ends_with('!'))?;
        (k.trim() == "metadata.name" && valid_path_segment(v.trim())).then(|| v.trim().to_string())
    })
}

/// Upstream's `path.IsValidPathSegmentName`.
fn valid_path_segment(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('%')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(method: &str, path: &str, query: &[(&str, &str)]) -> String {
        let q: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        let a = from_request(UserInfo::new("u", &[]), method, path, &q);
        if !a.resource_request {
            return format!("nonresource {} {}", a.verb, a.path);
        }
        format!(
            "{} ns={} g={} v={} r={} sub={} name={}",
            a.verb, a.namespace, a.api_group, a.api_version, a.resource, a.subresource, a.name
        )
    }

    #[test]
    fn request_info_as_upstream() {
        assert_eq!(parse("GET", "/api", &[]), "nonresource get /api");
        assert_eq!(parse("GET", "/api/v1", &[]), "nonresource get /api/v1");
        assert_eq!(
            parse("GET", "/apis/apps/v1", &[]),
            "nonresource get /apis/apps/v1"
        );
        assert_eq!(parse("GET", "/version", &[]), "nonresource get /version");
        assert_eq!(
            parse("GET", "/api/v1/namespaces/d/pods", &[]),
            "list ns=d g= v=v1 r=pods sub= name="
        );
        assert_eq!(
            parse("GET", "/api/v1/namespaces/d/pods", &[("watch", "true")]),
            "watch ns=d g= v=v1 r=pods sub= name="
        );
        assert_eq!(
            parse(
                "GET",
                "/api/v1/namespaces/d/pods",
                &[("fieldSelector", "metadata.name=p1"), ("watch", "1")]
            ),
            "watch ns=d g= v=v1 r=pods sub= name=p1"
        );
        assert_eq!(
            parse("GET", "/api/v1/namespaces/d/pods/p/log", &[]),
            "get ns=d g= v=v1 r=pods sub=log name=p"
        );
        assert_eq!(
            parse("DELETE", "/apis/apps/v1/namespaces/d/deployments", &[]),
            "deletecollection ns=d g=apps v=v1 r=deployments sub= name="
        );
        assert_eq!(
            parse("GET", "/api/v1/namespaces/x", &[]),
            "get ns=x g= v=v1 r=namespaces sub= name=x"
        );
        assert_eq!(
            parse("PUT", "/api/v1/namespaces/x/finalize", &[]),
            "update ns=x g= v=v1 r=namespaces sub=finalize name=x"
        );
        assert_eq!(
            parse("GET", "/api/v1/namespaces", &[]),
            "list ns= g= v=v1 r=namespaces sub= name="
        );
        assert_eq!(
            parse("POST", "/api/v1/namespaces/d/serviceaccounts/sa/token", &[]),
            "create ns=d g= v=v1 r=serviceaccounts sub=token name=sa"
        );
        assert_eq!(
            parse("PATCH", "/api/v1/nodes/n1/status", &[]),
            "patch ns= g= v=v1 r=nodes sub=status name=n1"
        );
        assert_eq!(
            parse("GET", "/api/v1/watch/namespaces/d/pods", &[]),
            "watch ns=d g= v=v1 r=pods sub= name="
        );
        assert_eq!(
            parse("GET", "/api/v1/namespaces/d/services/s:80/proxy/x/y", &[]),
            "get ns=d g= v=v1 r=services sub=proxy name=s:80"
        );
    }

    #[test]
    fn field_selector_names() {
        assert_eq!(exact_name("metadata.name=a"), Some("a".into()));
        assert_eq!(exact_name("a=b,metadata.name==c"), Some("c".into()));
        assert_eq!(exact_name("metadata.name!=c"), None);
        assert_eq!(exact_name("metadata.name=a/b"), None);
    }
}
