//! RBAC escalation prevention (upstream's `pkg/registry/rbac/*/policybased`):
//! a user may create or update a Role or ClusterRole only with permissions
//! they hold themselves, unless they may `escalate` it; and may bind a role
//! only if they hold its permissions, unless they may `bind` it. Members of
//! `system:masters` and the control plane's own writers are exempt. Runs as
//! the admission chain's [`Slot::RbacEscalation`](crate::admission::Slot).

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;

use super::rbac::rules::{compact, compact_string, covers};
use super::rbac::{GROUP, PolicyRule, RbacAuthorizer, RoleRef};
use super::{Attributes, AuthorizerChain, SYSTEM_MASTERS};
use crate::admission::{Operation, Outcome, Plugin, Request};
use crate::registry::{Error, ObjectStore, Result, UserInfo};

/// The admission step that prevents escalation through RBAC objects.
#[derive(Debug, Clone)]
pub struct Escalation {
    chain: Arc<AuthorizerChain>,
    rbac: RbacAuthorizer,
}

/// Everything, as upstream's `fullAuthority`.
fn full_authority() -> Vec<PolicyRule> {
    vec![
        PolicyRule::resource(&["*"], &["*"], &["*"]),
        PolicyRule::non_resource(&["*"], &["*"]),
    ]
}

/// Go's `%q` of a string slice.
fn go_quoted(xs: &[String]) -> String {
    let q: Vec<String> = xs.iter().map(|x| format!("{x:?}")).collect();
    format!("[{}]", q.join(" "))
}

/// Whether only fields the garbage collector may change differ (upstream's
/// `IsOnlyMutatingGCFields`: ownerReferences and finalizers).
fn only_gc_fields_changed(new: &Value, old: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in [
                "ownerReferences",
                "finalizers",
                "managedFields",
                "resourceVersion",
                "generation",
            ] {
                m.remove(f);
            }
        }
        v
    };
    strip(new) == strip(old)
}

impl Escalation {
    /// Checks writes with `chain` (for `escalate` and `bind`) and the
    /// rules `rbac` resolves.
    pub fn new(chain: Arc<AuthorizerChain>, rbac: RbacAuthorizer) -> Self {
        Escalation { chain, rbac }
    }

    /// Upstream's `ConfirmNoEscalation`: `user` holds every rule of `rules` in `namespace`.
    ///
    /// # Errors
    /// The message upstream puts after `... is forbidden: `.
    pub async fn confirm_no_escalation(
        &self,
        user: &UserInfo,
        namespace: &str,
        rules: &[PolicyRule],
    ) -> std::result::Result<(), String> {
        let (owned, errors) = self.rbac.rules(user, namespace).await;
        let (ok, missing) = covers(&owned, rules);
        if ok {
            return Ok(());
        }
        let mut lines: Vec<String> = compact(missing).iter().map(compact_string).collect();
        lines.sort();
        lines.dedup();
        let mut msg = format!(
            "user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
            user.name,
            go_quoted(&user.groups),
            lines.join("\n")
        );
        if !errors.is_empty() {
            msg.push_str(&format!("; resolution errors: [{}]", errors.join(" ")));
        }
        Err(msg)
    }

    async fn allowed(
        &self,
        user: &UserInfo,
        verb: &str,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> bool {
        let a = Attributes::resource(user.clone(), verb, namespace, GROUP, resource, "", name);
        self.chain.authorize(&a).await.allowed()
    }

    async fn check_role(&self, req: &Request<'_>, user: &UserInfo, obj: &Value) -> Result<()> {
        let ns = req.namespace.unwrap_or("");
        let resource: &str = &req.info.resource;
        if self.allowed(user, "escalate", resource, ns, req.name).await {
            return Ok(());
        }
        let rules = PolicyRule::all_from_json(obj.get("rules"));
        if let Err(e) = self.confirm_no_escalation(user, ns, &rules).await {
            return Err(Error::forbidden(GROUP, resource, req.name, &e));
        }
        let aggregated = obj
            .pointer("/aggregationRule/clusterRoleSelectors")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if aggregated
            && self
                .confirm_no_escalation(user, ns, &full_authority())
                .await
                .is_err()
        {
            return Err(Error::forbidden(
                GROUP,
                resource,
                req.name,
                "must have cluster-admin privileges to use the aggregationRule",
            ));
        }
        Ok(())
    }

    async fn check_binding(&self, req: &Request<'_>, user: &UserInfo, obj: &Value) -> Result<()> {
        let ns = req.namespace.unwrap_or("");
        let resource: &str = &req.info.resource;
        let role_ref = RoleRef {
            kind: obj
                .pointer("/roleRef/kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            name: obj
                .pointer("/roleRef/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        };
        let role_resource = match role_ref.kind.as_str() {
            "ClusterRole" => Some("clusterroles"),
            "Role" => Some("roles"),
            _ => None,
        };
        if let Some(r) = role_resource
            && self.allowed(user, "bind", r, ns, &role_ref.name).await
        {
            return Ok(());
        }
        let policy = self.rbac.cache().policy().await;
        let rules = policy
            .role_ref_rules(&role_ref, ns)
            .map_err(|e| Error::forbidden(GROUP, resource, req.name, &e))?;
        self.confirm_no_escalation(user, ns, &rules)
            .await
            .map_err(|e| Error::forbidden(GROUP, resource, req.name, &e))
    }
}

impl Plugin for Escalation {
    fn validate<'a>(
        &'a self,
        _objects: &'a ObjectStore,
        req: &'a Request<'a>,
        obj: &'a Value,
        _out: &'a mut Outcome,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let Some(user) = req.user else {
                return Ok(());
            };
            if req.info.group != GROUP || req.subresource.is_some() || user.in_group(SYSTEM_MASTERS)
            {
                return Ok(());
            }
            match req.operation {
                Operation::Create => {}
                Operation::Update => {
                    if req.old.is_some_and(|old| only_gc_fields_changed(obj, old)) {
                        return Ok(());
                    }
                }
                Operation::Delete => return Ok(()),
            }
            match req.info.resource.as_str() {
                "roles" | "clusterroles" => self.check_role(req, user, obj).await,
                "rolebindings" | "clusterrolebindings" => self.check_binding(req, user, obj).await,
                _ => Ok(()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn gc_only_changes_are_recognised() {
        let old = json!({"metadata": {"name": "r", "resourceVersion": "1"}, "rules": []});
        let gc = json!({"metadata": {"name": "r", "finalizers": ["x"]}, "rules": []});
        let other = json!({"metadata": {"name": "r", "labels": {"a": "b"}}, "rules": []});
        assert!(only_gc_fields_changed(&gc, &old));
        assert!(!only_gc_fields_changed(&other, &old));
        assert_eq!(
            go_quoted(&["system:authenticated".into(), "a".into()]),
            r#"["system:authenticated" "a"]"#
        );
    }
}
