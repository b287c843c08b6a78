//! Authorization: every resource request is described by [`Attributes`] (user, verb, group,
//! resource, subresource, namespace, name, field selector), as upstream's
//! `authorizer.Attributes`, and asked of an [`Authorizers`] chain. The first authorizer that
//! allows or denies decides; when none has an opinion the request is refused with upstream's
//! 403 message and the authorizers' reasons.
//!
//! The chain today is [`NodeAuthorizer`] (upstream's Node authorizer, with
//! `AuthorizeNodeWithSelectors`) then [`AllowAuthenticated`], the stand-in for RBAC that lets
//! every authenticated user except nodes do everything (today's behaviour). An RBAC authorizer
//! replaces `AllowAuthenticated` in [`Authorizers::standard`]; nothing else changes.
//!
//! Node writes are also checked by `restriction::admit`, upstream's NodeRestriction
//! admission: a node may change only its own Node (not its taints, nor restricted labels), its
//! own Lease, and the status of pods bound to it.

mod node;
mod refs;
pub mod restriction;

pub use node::NodeAuthorizer;
pub(crate) use node::node_identity;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hyper::{Method, Response};
use serde_json::json;

use super::http::{self, Body};
use super::query::Query;
use super::route::ResourceTarget;
use crate::registry::{ObjectStore, UserInfo};

/// What a resource request asks to do, as authorizers see it.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    /// Who asks (anonymous requests never reach resource authorization).
    pub user: &'a UserInfo,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: &'static str,
    /// API group (empty for core).
    pub group: &'a str,
    /// Resource, e.g. `pods`.
    pub resource: &'a str,
    /// Subresource, e.g. `status`, or empty.
    pub subresource: &'a str,
    /// Namespace, or empty for cluster scope and all-namespace lists.
    pub namespace: &'a str,
    /// Object name: from the path, or for a list or watch from a `metadata.name=` field
    /// selector, as upstream's request info does.
    pub name: String,
    /// The raw field selector.
    pub field_selector: &'a str,
}

/// The value a field selector requires `field` to equal exactly (`field=v` or `field==v`).
pub(crate) fn selector_value<'s>(selector: &'s str, field: &str) -> Option<&'s str> {
    selector.split(',').find_map(|term| {
        let term = term.trim();
        let rest = term.strip_prefix(field)?;
        rest.strip_prefix("==").or_else(|| rest.strip_prefix('='))
    })
}

impl<'a> Attributes<'a> {
    /// The attributes of a request `method` on `target` with `query`, by `user`.
    pub fn of(
        user: &'a UserInfo,
        method: &Method,
        target: &'a ResourceTarget,
        query: &'a Query,
    ) -> Self {
        let named = target.name.is_some();
        let verb = match *method {
            Method::GET | Method::HEAD if query.watch => "watch",
            Method::GET | Method::HEAD if named => "get",
            Method::GET | Method::HEAD => "list",
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE if named => "delete",
            Method::DELETE => "deletecollection",
            _ => "unknown",
        };
        let name = match &target.name {
            Some(n) => n.clone(),
            None if matches!(verb, "list" | "watch") => {
                selector_value(&query.field_selector, "metadata.name")
                    .unwrap_or("")
                    .to_owned()
            }
            None => String::new(),
        };
        Self {
            user,
            verb,
            group: target.info.group,
            resource: target.info.resource,
            subresource: target.subresource.as_deref().unwrap_or(""),
            namespace: target.namespace.as_deref().unwrap_or(""),
            name,
            field_selector: &query.field_selector,
        }
    }
}

/// An authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed; later authorizers are not asked.
    Allow,
    /// Refused; later authorizers are not asked.
    Deny(String),
    /// No opinion, with an optional reason shown if every authorizer abstains.
    NoOpinion(String),
}

/// A boxed authorization future.
pub type DecisionFuture<'a> = Pin<Box<dyn Future<Output = Decision> + Send + 'a>>;

/// One authorizer of the chain.
pub trait Authorizer: Send + Sync + fmt::Debug {
    /// Decides `attrs`.
    fn authorize<'a>(&'a self, attrs: &'a Attributes<'a>) -> DecisionFuture<'a>;
}

/// Allows every authenticated user except nodes, whose rights come from the
/// [`NodeAuthorizer`] alone: today's stand-in for RBAC. Nodes get only a part of what
/// upstream's `system:basic-user` role gives every authenticated user: `kubectl auth whoami`
/// (SelfSubjectReview). Access and rules reviews stay refused to nodes while they answer
/// "allowed" to everything; they can follow once they ask this chain.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAuthenticated;

/// `kubectl auth whoami`: creating a SelfSubjectReview.
fn is_self_review(attrs: &Attributes<'_>) -> bool {
    attrs.verb == "create"
        && attrs.group == "authentication.k8s.io"
        && attrs.resource == "selfsubjectreviews"
}

impl Authorizer for AllowAuthenticated {
    fn authorize<'a>(&'a self, attrs: &'a Attributes<'a>) -> DecisionFuture<'a> {
        let decision = if node::looks_like_node(attrs.user) && !is_self_review(attrs) {
            Decision::NoOpinion(String::new())
        } else {
            Decision::Allow
        };
        Box::pin(std::future::ready(decision))
    }
}

/// The authorizer chain.
#[derive(Debug, Clone)]
pub struct Authorizers {
    chain: Vec<Arc<dyn Authorizer>>,
}

impl Authorizers {
    /// A chain of `chain`, asked in order.
    pub fn new(chain: Vec<Arc<dyn Authorizer>>) -> Self {
        Self { chain }
    }

    /// Today's chain over `objects`: [`NodeAuthorizer`], then [`AllowAuthenticated`].
    pub fn standard(objects: ObjectStore) -> Self {
        Self::new(vec![
            Arc::new(NodeAuthorizer::new(objects)),
            Arc::new(AllowAuthenticated),
        ])
    }

    /// `None` when `attrs` is allowed; the 403 response otherwise.
    pub async fn check(&self, attrs: &Attributes<'_>) -> Option<Response<Body>> {
        let mut reasons = Vec::new();
        for authorizer in &self.chain {
            match authorizer.authorize(attrs).await {
                Decision::Allow => return None,
                Decision::Deny(reason) => {
                    reasons.push(reason);
                    break;
                }
                Decision::NoOpinion(reason) => reasons.push(reason),
            }
        }
        reasons.retain(|r| !r.is_empty());
        tracing::info!(
            user = %attrs.user.name, verb = attrs.verb, resource = attrs.resource,
            namespace = attrs.namespace, name = %attrs.name, "forbidden"
        );
        Some(forbidden(attrs, &reasons.join("\n")))
    }
}

/// `resource` or `resource.group`, as upstream's `GroupResource.String()`.
pub(crate) fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    }
}

/// Upstream's 403 for `attrs`: `<resource> "<name>" is forbidden: User "<user>" cannot <verb>
/// resource "<resource[/subresource]>" in API group "<group>" in the namespace "<ns>"` (or
/// `at the cluster scope`), then `: <reason>` when there is one.
pub fn forbidden(attrs: &Attributes<'_>, reason: &str) -> Response<Body> {
    let resource = if attrs.subresource.is_empty() {
        attrs.resource.to_owned()
    } else {
        format!("{}/{}", attrs.resource, attrs.subresource)
    };
    let scope = if attrs.namespace.is_empty() {
        "at the cluster scope".to_owned()
    } else {
        format!("in the namespace {:?}", attrs.namespace)
    };
    let mut cause = format!(
        "User {:?} cannot {} resource {resource:?} in API group {:?} {scope}",
        attrs.user.name, attrs.verb, attrs.group
    );
    if !reason.is_empty() {
        cause = format!("{cause}: {reason}");
    }
    forbidden_status(attrs.group, attrs.resource, &attrs.name, &cause)
}

/// A 403 `metav1.Status` as upstream's `NewForbidden(group resource, name, cause)`.
pub(crate) fn forbidden_status(
    group: &str,
    resource: &str,
    name: &str,
    cause: &str,
) -> Response<Body> {
    let what = qualified(group, resource);
    let message = if name.is_empty() {
        format!("{what} is forbidden: {cause}")
    } else {
        format!("{what} {name:?} is forbidden: {cause}")
    };
    let mut details = json!({"group": group, "kind": resource});
    if !name.is_empty() {
        details["name"] = json!(name);
    }
    http::json(
        403,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": "Forbidden", "details": details, "code": 403,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_selector_values() {
        assert_eq!(
            selector_value("metadata.name=a", "metadata.name"),
            Some("a")
        );
        assert_eq!(
            selector_value("spec.nodeName==n1,status.phase=Running", "spec.nodeName"),
            Some("n1")
        );
        assert_eq!(selector_value("spec.nodeName!=n1", "spec.nodeName"), None);
        assert_eq!(selector_value("", "spec.nodeName"), None);
        assert_eq!(selector_value("spec.nodeNameX=a", "spec.nodeName"), None);
    }
}
