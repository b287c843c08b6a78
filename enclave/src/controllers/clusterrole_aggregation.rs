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

impl ClusterRoleAggregation {
    /// The controller over `clusterroles`.
    pub(crate) fn new(objects: ObjectStore, clusterroles: Arc<ResourceInfo>) -> Self {
        ClusterRoleAggregation {
            roles: Api::new(objects, clusterroles),
        }
    }
}

impl Reconciler for ClusterRoleAggregation {
    type Key = String;

    const NAME: &'static str = "clusterrole-aggregation";

    async fn keys_for(&mut self, _kind: usize, event: &WatchEvent) -> Vec<String> {
        if matches!(event, WatchEvent::Bookmark(_) | WatchEvent::Error(_)) {
            return Vec::new();
        }
        // Any role may feed any aggregated one: look at all of them.
        match self.roles.list("").await {
            Ok(all) => all
                .iter()
                .filter(|r| selectors(r).is_some())
                .map(|r| meta::name(r).to_string())
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e.one_line(), "listing cluster roles failed");
                Vec::new()
            }
        }
    }

    async fn reconcile(&mut self, name: &String) -> Result<Action, Error> {
        let Some(role) = self.roles.get("", name).await? else {
            return Ok(Action::await_change());
        };
        let all = self.roles.list("").await?;
        let Some(rules) = aggregated_rules(&role, &all) else {
            return Ok(Action::await_change());
        };
        let current = role
            .get("rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if current == rules {
            return Ok(Action::await_change());
        }
        self.roles
            .edit("", name, |cur| {
                let mut out = cur.clone();
                out["rules"] = Value::Array(rules.clone());
                Some(out)
            })
            .await?;
        tracing::debug!(clusterrole = %name, rules = rules.len(), "aggregated");
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
