//! 403 Forbidden answers worded and laid out as upstream's
//! (`responsewriters.Forbidden` and `apierrors.NewForbidden`): the message
//! names the user, verb, resource, group and scope, and the `metav1.Status`
//! body has upstream's field order, so clients that compare bodies see the
//! same bytes.

use hyper::{Response, StatusCode, header};
use serde::Serialize;

use super::Attributes;
use crate::api::http::{self, Body};

/// Upstream's `forbiddenMessage`: what the user may not do.
pub fn message(a: &Attributes) -> String {
    let user = &a.user.name;
    if !a.resource_request {
        return format!("User {user:?} cannot {} path {:?}", a.verb, a.path);
    }
    let resource = a.combined_resource();
    if a.namespace.is_empty() {
        format!(
            "User {user:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
            a.verb, a.api_group
        )
    } else {
        format!(
            "User {user:?} cannot {} resource {resource:?} in API group {:?} in the namespace {:?}",
            a.verb, a.api_group, a.namespace
        )
    }
}

/// Upstream's `NewForbidden(qualifiedResource, name, err)` message:
/// `resource.group "name" is forbidden: err`.
pub fn forbidden_message(group: &str, resource: &str, name: &str, err: &str) -> String {
    let qualified = if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    };
    match (qualified.is_empty(), name.is_empty()) {
        (true, _) => format!("forbidden: {err}"),
        (false, true) => format!("{qualified} is forbidden: {err}"),
        (false, false) => format!("{qualified} {name:?} is forbidden: {err}"),
    }
}

#[derive(Serialize)]
struct Details<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    group: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    kind: &'a str,
}

#[derive(Serialize)]
struct Meta {}

/// A `metav1.Status` in upstream's field order.
#[derive(Serialize)]
struct Status<'a> {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: Meta,
    status: &'static str,
    message: &'a str,
    reason: &'static str,
    details: Details<'a>,
    code: u16,
}

/// The 403 body for `message` about `name` of `group`'s `resource`.
pub fn status_body(group: &str, resource: &str, name: &str, message: &str) -> Vec<u8> {
    let s = Status {
        kind: "Status",
        api_version: "v1",
        metadata: Meta {},
        status: "Failure",
        message,
        reason: "Forbidden",
        details: Details {
            name,
            group,
            kind: resource,
        },
        code: 403,
    };
    serde_json::to_vec(&s).unwrap_or_default()
}

/// The 403 for a request the authorizers did not allow; `reason` (the
/// chain's) is appended to the message as upstream does.
pub fn response(a: &Attributes, reason: &str) -> Response<Body> {
    let mut msg = message(a);
    if !reason.is_empty() {
        msg.push_str(": ");
        msg.push_str(reason);
    }
    let full = forbidden_message(&a.api_group, &a.resource, &a.name, &msg);
    respond(&a.api_group, &a.resource, &a.name, &full)
}

/// A 403 with an already worded `message` about `name` of `group`'s `resource`.
pub fn respond(group: &str, resource: &str, name: &str, message: &str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::FORBIDDEN)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .header("X-Content-Type-Options", "nosniff")
        .body(http::full(status_body(group, resource, name, message)))
        .unwrap_or_else(|_| http::status(403, "Forbidden", message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::UserInfo;

    #[test]
    fn messages_and_bodies_as_upstream() {
        let u = UserInfo::new("alice", &[]);
        let a = Attributes::resource(u.clone(), "list", "x", "", "configmaps", "", "");
        assert_eq!(
            forbidden_message("", "configmaps", "", &message(&a)),
            r#"configmaps is forbidden: User "alice" cannot list resource "configmaps" in API group "" in the namespace "x""#
        );
        let a = Attributes::resource(u.clone(), "get", "", "apps", "deployments", "scale", "d");
        assert_eq!(
            forbidden_message("apps", "deployments", "d", &message(&a)),
            r#"deployments.apps "d" is forbidden: User "alice" cannot get resource "deployments/scale" in API group "apps" at the cluster scope"#
        );
        let a = Attributes::non_resource(u, "get", "/metrics");
        assert_eq!(
            forbidden_message("", "", "", &message(&a)),
            r#"forbidden: User "alice" cannot get path "/metrics""#
        );
        assert_eq!(
            String::from_utf8(status_body("", "pods", "p", "m")).unwrap(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"m","reason":"Forbidden","details":{"name":"p","kind":"pods"},"code":403}"#
        );
        assert_eq!(
            String::from_utf8(status_body("", "", "", "m")).unwrap(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"m","reason":"Forbidden","details":{},"code":403}"#
        );
    }
}
