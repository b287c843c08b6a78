//! The ClusterRole aggregation controller (upstream's
//! `pkg/controller/clusterroleaggregation`): a ClusterRole with an
//! `aggregationRule` gets, as its rules, the union of the rules of every
//! other ClusterRole its selectors match, in name order, without
//! duplicates. Any change to any ClusterRole re-reconciles every
//! aggregated one, so chains (`view` into `edit` into `admin`) converge.

use std::sync::Arc;

use serde_json::Value;

use super::Error;
use super::client::Api;
use super::runtime::{Action, Reconciler};
use crate::registry::kinds::selector_matches;
use crate::registry::{ObjectStore, ResourceInfo, WatchEvent, meta};

/// The aggregation controller.
#[derive(Debug)]
pub(crate) struct ClusterRoleAggregation {
    roles: Api,
}

fn selectors(role: &Value) -> Option<&Vec<Value>> {
    role.pointer("/aggregationRule/clusterRoleSelectors")
        .and_then(Value::as_array)
}

/// The rules `role` aggregates from `all` (upstream's `syncClusterRole`).
fn aggregated_rules(role: &Value, all: &[Value]) -> Option<Vec<Value>> {
    let sels = selectors(role)?;
    let name = meta::name(role);
    let mut matched: Vec<&Value> = Vec::new();
    for sel in sels {
        for r in all {
            if meta::name(r) == name || matched.iter().any(|m| meta::name(m) == meta::name(r)) {
                continue;
            }
            if selector_matches(sel, meta::labels(r)) {
                matched.push(r);
            }
        }
    }
    matched.sort_by(|a, b| meta::name(a).cmp(meta::name(b)));
    let mut rules: Vec<Value> = Vec::new();
    for r in matched {
        for rule in r
            .get("rules")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if !rules.contains(rule) {
                rules.push(rule.clone());
            }
        }
    }
    Some(rules)
}

/// The roles whose aggregated rules differ from what they hold, with the
/// rules they should hold, computed to a fixed point over `all` (so that
/// `admin` gets what `edit` gets from `view` in one pass).
fn pending_updates(all: &[Value]) -> Vec<(String, Vec<Value>)> {
    let mut roles: Vec<Value> = all.to_vec();
    let mut changed: Vec<String> = Vec::new();
    for _ in 0..8 {
        let mut any = false;
        for i in 0..roles.len() {
            let Some(rules) = aggregated_rules(&roles[i], &roles) else {
                continue;
            };
            let current = roles[i]
                .get("rules")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if current != rules {
                roles[i]["rules"] = Value::Array(rules);
                let name = meta::name(&roles[i]).to_string();
                if !changed.contains(&name) {
                    changed.push(name);
                }
                any = true;
            }
        }
        if !any {
            break;
        }
    }
    changed
        .into_iter()
        .filter_map(|n| {
            let r = roles.iter().find(|r| meta::name(r) == n)?;
            Some((
                n,
                r.get("rules")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            ))
        })
        .collect()
}

/// Brings every aggregated ClusterRole up to date at once; how many changed.
///
/// # Errors
/// A failed read or write of `clusterroles`.
pub async fn aggregate_all(objects: &ObjectStore) -> Result<usize, Error> {
    let info = objects
        .table()
        .lookup("rbac.authorization.k8s.io", "v1", "clusterroles")
        .ok_or(Error::MissingResource("clusterroles"))?;
    ClusterRoleAggregation::new(objects.clone(), info)
        .sync()
        .await
}

impl ClusterRoleAggregation {
    /// The controller over `clusterroles`.
    pub(crate) fn new(objects: ObjectStore, clusterroles: Arc<ResourceInfo>) -> Self {
        ClusterRoleAggregation {
            roles: Api::new(objects, clusterroles),
        }
    }

    async fn sync(&self) -> Result<usize, Error> {
        let all = self.roles.list("").await?;
        let updates = pending_updates(&all);
        for (name, rules) in &updates {
            match self
                .roles
                .edit("", name, |cur| {
                    let mut out = cur.clone();
                    out["rules"] = Value::Array(rules.clone());
                    Some(out)
                })
                .await
            {
                Ok(_) => tracing::debug!(clusterrole = %name, rules = rules.len(), "aggregated"),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(updates.len())
    }
}

impl Reconciler for ClusterRoleAggregation {
    /// One key for all: any role may feed any aggregated one, and a burst
    /// of changes coalesces into one pass.
    type Key = ();

    const NAME: &'static str = "clusterrole-aggregation";

    async fn keys_for(&mut self, _kind: usize, event: &WatchEvent) -> Vec<()> {
        match event {
            WatchEvent::Bookmark(_) | WatchEvent::Error(_) => Vec::new(),
            _ => vec![()],
        }
    }

    async fn reconcile(&mut self, _key: &()) -> Result<Action, Error> {
        self.sync().await?;
        Ok(Action::await_change())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules_are_the_deduplicated_union_in_name_order() {
        let view = json!({"metadata": {"name": "view"}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"v": "true"}}]}});
        let b = json!({"metadata": {"name": "b", "labels": {"v": "true"}}, "rules": [{"verbs": ["get"]}, {"verbs": ["list"]}]});
        let a = json!({"metadata": {"name": "a", "labels": {"v": "true"}}, "rules": [{"verbs": ["list"]}]});
        let other = json!({"metadata": {"name": "c"}, "rules": [{"verbs": ["*"]}]});
        let all = vec![view.clone(), b, a, other];
        assert_eq!(
            aggregated_rules(&view, &all),
            Some(vec![json!({"verbs": ["list"]}), json!({"verbs": ["get"]})])
        );
        assert_eq!(
            aggregated_rules(&json!({"metadata": {"name": "x"}}), &all),
            None
        );
    }
}
