//! Authorization: every request, after authentication and impersonation, is
//! described by its [`Attributes`] (upstream's `authorizer.Attributes`, built
//! from the path and method by [`attributes::from_request`]) and offered to an
//! ordered [`AuthorizerChain`] (upstream's union authorizer): the privileged
//! group `system:masters`, then the [`NodeAuthorizer`] (for `system:node:*`
//! users in `system:nodes`), then [`rbac`].
//! The first authorizer that allows or denies decides; when every one has no
//! opinion the request is forbidden with upstream's message
//! ([`forbidden::response`]).
//!
//! The same chain answers SubjectAccessReviews and computes the rules of
//! SelfSubjectRulesReviews ([`reviews`]), checks `impersonate` for
//! [`impersonation`], and `escalate`/`bind` for RBAC writes ([`escalation`]).
//!
//! Node writes are also checked by [`restriction::NodeRestriction`],
//! upstream's NodeRestriction admission: a node may change only its own
//! Node (not its taints, nor restricted labels), its own Lease, and the
//! status of pods bound to it.

pub mod attributes;
pub mod bootstrap;
pub mod certificates;
pub mod escalation;
pub mod forbidden;
pub mod impersonation;
mod node;
pub mod rbac;
mod refs;
pub mod restriction;
pub mod reviews;

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

pub use attributes::Attributes;
pub use node::NodeAuthorizer;
pub(crate) use node::node_identity;
pub use rbac::PolicyRule;

use crate::registry::UserInfo;

/// The group whose members may do anything, without consulting RBAC
/// (upstream's `system:masters`, `user.SystemPrivilegedGroup`).
pub const SYSTEM_MASTERS: &str = "system:masters";

/// What an authorizer says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Allowed: the chain stops and the request proceeds.
    Allow,
    /// Denied outright: the chain stops and the request is forbidden.
    Deny,
    /// Neither: the next authorizer is asked.
    NoOpinion,
}

/// A decision and why (upstream's `(Decision, reason string)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The decision.
    pub decision: Decision,
    /// Why; empty when the authorizer has nothing to say.
    pub reason: String,
}

impl Verdict {
    /// Allowed because of `reason`.
    pub fn allow(reason: impl Into<String>) -> Self {
        Verdict {
            decision: Decision::Allow,
            reason: reason.into(),
        }
    }

    /// No opinion, with `reason` (often empty).
    pub fn no_opinion(reason: impl Into<String>) -> Self {
        Verdict {
            decision: Decision::NoOpinion,
            reason: reason.into(),
        }
    }

    /// Whether the request may proceed.
    pub fn allowed(&self) -> bool {
        self.decision == Decision::Allow
    }
}

/// The rules a user holds in a namespace, as a SelfSubjectRulesReview reports
/// them (upstream's `RuleResolver.RulesFor`).
#[derive(Debug, Clone, Default)]
pub struct UserRules {
    /// Resource rules (apiGroups, resources, resourceNames, verbs).
    pub resource_rules: Vec<PolicyRule>,
    /// Non-resource rules (nonResourceURLs, verbs).
    pub non_resource_rules: Vec<PolicyRule>,
    /// Whether some authorizer could not list everything it allows.
    pub incomplete: bool,
    /// Errors met while resolving (missing roles, ...), joined by the chain.
    pub errors: Vec<String>,
}

/// One authorizer of the chain. Implementations: [`PrivilegedGroup`],
/// [`NodeAuthorizer`] and [`rbac::RbacAuthorizer`].
pub trait Authorizer: Send + Sync + fmt::Debug {
    /// A short name for logs.
    fn name(&self) -> &'static str;

    /// Decides about `attrs`.
    fn authorize<'a>(&'a self, attrs: &'a Attributes) -> BoxFuture<'a, Verdict>;

    /// The rules `user` holds in `namespace` ("" for cluster-wide only).
    fn rules_for<'a>(&'a self, user: &'a UserInfo, namespace: &'a str) -> BoxFuture<'a, UserRules>;
}

/// Allows everything to members of one group (upstream's
/// `authorizerfactory.NewPrivilegedGroups`), with an empty reason.
#[derive(Debug, Clone)]
pub struct PrivilegedGroup {
    group: String,
}

impl PrivilegedGroup {
    /// Members of `group` may do anything.
    pub fn new(group: impl Into<String>) -> Self {
        PrivilegedGroup {
            group: group.into(),
        }
    }
}

impl Authorizer for PrivilegedGroup {
    fn name(&self) -> &'static str {
        "privileged-group"
    }

    fn authorize<'a>(&'a self, attrs: &'a Attributes) -> BoxFuture<'a, Verdict> {
        let v = if attrs.user.in_group(&self.group) {
            Verdict::allow("")
        } else {
            Verdict::no_opinion("")
        };
        Box::pin(std::future::ready(v))
    }

    fn rules_for<'a>(
        &'a self,
        user: &'a UserInfo,
        _namespace: &'a str,
    ) -> BoxFuture<'a, UserRules> {
        let rules = if user.in_group(&self.group) {
            UserRules {
                resource_rules: vec![PolicyRule::resource(&["*"], &["*"], &["*"])],
                non_resource_rules: vec![PolicyRule::non_resource(&["*"], &["*"])],
                ..Default::default()
            }
        } else {
            UserRules::default()
        };
        Box::pin(std::future::ready(rules))
    }
}

/// Authorizers asked in order (upstream's union authorizer): the first
/// `Allow` or `Deny` decides; otherwise no opinion, with every reason given
/// joined by newlines.
#[derive(Debug, Clone, Default)]
pub struct AuthorizerChain {
    authorizers: Vec<Arc<dyn Authorizer>>,
}

impl AuthorizerChain {
    /// An empty chain (it has no opinion on anything: everything is forbidden).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `a`.
    #[must_use]
    pub fn with(mut self, a: Arc<dyn Authorizer>) -> Self {
        self.authorizers.push(a);
        self
    }

    /// Decides about `attrs`.
    pub async fn authorize(&self, attrs: &Attributes) -> Verdict {
        let mut reasons = Vec::new();
        for a in &self.authorizers {
            let v = a.authorize(attrs).await;
            match v.decision {
                Decision::Allow | Decision::Deny => return v,
                Decision::NoOpinion => {
                    if !v.reason.is_empty() {
                        reasons.push(v.reason);
                    }
                }
            }
        }
        Verdict::no_opinion(reasons.join("\n"))
    }

    /// Every rule `user` holds in `namespace`, from every authorizer.
    pub async fn rules_for(&self, user: &UserInfo, namespace: &str) -> UserRules {
        let mut out = UserRules::default();
        for a in &self.authorizers {
            let r = a.rules_for(user, namespace).await;
            out.resource_rules.extend(r.resource_rules);
            out.non_resource_rules.extend(r.non_resource_rules);
            out.incomplete |= r.incomplete;
            out.errors.extend(r.errors);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed(Verdict);

    impl Authorizer for Fixed {
        fn name(&self) -> &'static str {
            "fixed"
        }
        fn authorize<'a>(&'a self, _: &'a Attributes) -> BoxFuture<'a, Verdict> {
            Box::pin(std::future::ready(self.0.clone()))
        }
        fn rules_for<'a>(&'a self, _: &'a UserInfo, _: &'a str) -> BoxFuture<'a, UserRules> {
            Box::pin(std::future::ready(UserRules::default()))
        }
    }

    fn attrs(groups: &[&str]) -> Attributes {
        Attributes::resource(UserInfo::new("u", groups), "get", "", "", "pods", "", "p")
    }

    #[tokio::test]
    async fn the_first_decision_wins_and_no_opinions_gather_reasons() {
        let chain = AuthorizerChain::new()
            .with(Arc::new(PrivilegedGroup::new(SYSTEM_MASTERS)))
            .with(Arc::new(Fixed(Verdict::no_opinion("first"))))
            .with(Arc::new(Fixed(Verdict::no_opinion(""))))
            .with(Arc::new(Fixed(Verdict::no_opinion("second"))));
        let v = chain.authorize(&attrs(&[])).await;
        assert_eq!(v, Verdict::no_opinion("first\nsecond"));
        assert!(chain.authorize(&attrs(&[SYSTEM_MASTERS])).await.allowed());
        let deny = AuthorizerChain::new()
            .with(Arc::new(Fixed(Verdict {
                decision: Decision::Deny,
                reason: "no".into(),
            })))
            .with(Arc::new(Fixed(Verdict::allow("yes"))));
        assert_eq!(deny.authorize(&attrs(&[])).await.decision, Decision::Deny);
        let rules = AuthorizerChain::new()
            .with(Arc::new(PrivilegedGroup::new(SYSTEM_MASTERS)))
            .rules_for(&UserInfo::new("a", &[SYSTEM_MASTERS]), "default")
            .await;
        assert_eq!(rules.resource_rules.len(), 1);
        assert_eq!(rules.non_resource_rules.len(), 1);
    }
}
