//! The taints the node lifecycle controller keeps, and its zones' states
//! and tainting rate limits (upstream `pkg/controller/nodelifecycle`).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::time::Instant;

use crate::registry::admission::tolerations::{TAINT_NOT_READY, TAINT_UNREACHABLE};

/// The NoExecute taint of a node whose Ready condition is False.
pub(crate) const TAINT_NOT_READY_KEY: &str = TAINT_NOT_READY;
/// The NoExecute taint of a node whose Ready condition is Unknown.
pub(crate) const TAINT_UNREACHABLE_KEY: &str = TAINT_UNREACHABLE;

/// NoSchedule taints by condition (upstream's `nodeConditionToTaintKeyStatusMap`).
const CONDITION_TAINTS: [(&str, &str, &str); 6] = [
    ("Ready", "False", TAINT_NOT_READY),
    ("Ready", "Unknown", TAINT_UNREACHABLE),
    (
        "MemoryPressure",
        "True",
        "node.kubernetes.io/memory-pressure",
    ),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    (
        "NetworkUnavailable",
        "True",
        "node.kubernetes.io/network-unavailable",
    ),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
];

/// The taint of a node whose `spec.unschedulable` is set.
const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// The node's condition of `ty`.
pub(crate) fn condition<'a>(node: &'a Node, ty: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == ty)
}

/// The status of the node's Ready condition (`None` when it has none).
pub(crate) fn ready_status(node: &Node) -> Option<&str> {
    condition(node, "Ready").map(|c| c.status.as_str())
}

/// The NoSchedule taint keys the node's conditions call for.
fn wanted_no_schedule(node: &Node) -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = CONDITION_TAINTS
        .iter()
        .filter(|(ty, st, _)| condition(node, ty).is_some_and(|c| c.status == *st))
        .map(|(_, _, key)| *key)
        .collect();
    if node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        keys.push(TAINT_UNSCHEDULABLE);
    }
    keys
}

/// Brings the node's controller-owned NoSchedule taints in line with its
/// conditions (upstream's `doNoScheduleTaintingPass`); whether it changed.
pub(crate) fn sync_no_schedule(node: &mut Node) -> bool {
    let wanted = wanted_no_schedule(node);
    let controlled =
        |k: &str| CONDITION_TAINTS.iter().any(|(_, _, key)| *key == k) || k == TAINT_UNSCHEDULABLE;
    let spec = node.spec.get_or_insert_with(Default::default);
    let taints = spec.taints.get_or_insert_with(Vec::new);
    let before = taints.len();
    taints.retain(|t| {
        t.effect != "NoSchedule" || !controlled(&t.key) || wanted.contains(&t.key.as_str())
    });
    let mut changed = taints.len() != before;
    for key in wanted {
        if !taints
            .iter()
            .any(|t| t.key == key && t.effect == "NoSchedule")
        {
            taints.push(Taint {
                key: key.to_string(),
                effect: "NoSchedule".into(),
                time_added: None,
                value: None,
            });
            changed = true;
        }
    }
    if taints.is_empty() {
        spec.taints = None;
    }
    changed
}

/// The NoExecute taint the Ready condition's status calls for.
pub(crate) fn wanted_no_execute(ready: Option<&str>) -> Option<&'static str> {
    match ready {
        Some("False") => Some(TAINT_NOT_READY),
        Some("Unknown") => Some(TAINT_UNREACHABLE),
        _ => None,
    }
}

/// Sets the node's controller NoExecute taint to `want` (removing the
/// other one); whether it changed.
pub(crate) fn set_no_execute(node: &mut Node, want: Option<&str>, now: jiff::Timestamp) -> bool {
    let spec = node.spec.get_or_insert_with(Default::default);
    let taints = spec.taints.get_or_insert_with(Vec::new);
    let before = taints.len();
    taints.retain(|t| {
        t.effect != "NoExecute"
            || !(t.key == TAINT_NOT_READY || t.key == TAINT_UNREACHABLE)
            || Some(t.key.as_str()) == want
    });
    let mut changed = taints.len() != before;
    if let Some(key) = want
        && !taints
            .iter()
            .any(|t| t.key == key && t.effect == "NoExecute")
    {
        taints.push(Taint {
            key: key.to_string(),
            effect: "NoExecute".into(),
            time_added: Some(Time(now)),
            value: None,
        });
        changed = true;
    }
    if taints.is_empty() {
        spec.taints = None;
    }
    changed
}

/// Whether the node carries the controller NoExecute taint `key`.
pub(crate) fn has_no_execute(node: &Node, key: &str) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| t.iter().any(|t| t.key == key && t.effect == "NoExecute"))
}

/// A zone's health (upstream's `ZoneState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ZoneState {
    /// Few or no nodes are NotReady.
    Normal,
    /// Many nodes are NotReady.
    PartialDisruption,
    /// No node is Ready.
    FullDisruption,
}

/// upstream's `ComputeZoneState` over the Ready statuses of a zone's nodes.
pub(crate) fn zone_state(statuses: &[Option<&str>], unhealthy_threshold: f64) -> ZoneState {
    let not_ready = statuses.iter().filter(|s| **s != Some("True")).count();
    let ready = statuses.len() - not_ready;
    #[allow(clippy::cast_precision_loss)]
    let ratio = not_ready as f64 / statuses.len().max(1) as f64;
    if ready == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && ratio >= unhealthy_threshold {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// upstream's zone key: region and zone labels.
pub(crate) fn zone_of(node: &Node) -> String {
    let labels = node.metadata.labels.as_ref();
    let get = |k: &str| labels.and_then(|l| l.get(k)).map_or("", String::as_str);
    format!(
        "{}:\u{0}:{}",
        get("topology.kubernetes.io/region"),
        get("topology.kubernetes.io/zone")
    )
}

/// A token bucket per zone, as upstream's rate-limited tainting queues
/// (burst 1).
#[derive(Debug, Default)]
pub(crate) struct ZoneLimiter {
    buckets: HashMap<String, (f64, Instant)>,
}

impl ZoneLimiter {
    /// Takes a token for `zone` at `qps` (0: none is ever given).
    pub(crate) fn try_take(&mut self, zone: &str, qps: f64) -> bool {
        if qps <= 0.0 {
            return false;
        }
        let now = Instant::now();
        let (tokens, last) = self.buckets.entry(zone.to_string()).or_insert((1.0, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * qps).min(1.0);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(conditions: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "n"}, "spec": {"taints": taints}, "status": {"conditions": conditions}})).unwrap()
    }

    #[test]
    fn no_schedule_follows_conditions() {
        let mut n = node(
            json!([{"type": "Ready", "status": "Unknown"}, {"type": "DiskPressure", "status": "True"}]),
            json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}, {"key": "user", "effect": "NoSchedule"}]),
        );
        assert!(sync_no_schedule(&mut n));
        let keys: Vec<String> = n
            .spec
            .unwrap()
            .taints
            .unwrap()
            .into_iter()
            .map(|t| t.key)
            .collect();
        assert_eq!(
            keys,
            [
                "user",
                TAINT_UNREACHABLE,
                "node.kubernetes.io/disk-pressure"
            ]
        );
    }

    #[test]
    fn no_execute_swaps() {
        let mut n = node(
            json!([]),
            json!([{"key": TAINT_UNREACHABLE, "effect": "NoExecute"}]),
        );
        assert!(set_no_execute(
            &mut n,
            Some(TAINT_NOT_READY),
            jiff::Timestamp::now()
        ));
        assert!(has_no_execute(&n, TAINT_NOT_READY) && !has_no_execute(&n, TAINT_UNREACHABLE));
        assert!(!set_no_execute(
            &mut n,
            Some(TAINT_NOT_READY),
            jiff::Timestamp::now()
        ));
        assert!(set_no_execute(&mut n, None, jiff::Timestamp::now()));
        assert!(n.spec.unwrap().taints.is_none());
    }

    #[test]
    fn zone_states() {
        assert_eq!(
            zone_state(&[Some("True"), Some("Unknown")], 0.55),
            ZoneState::Normal
        );
        assert_eq!(
            zone_state(&[Some("Unknown"), None], 0.55),
            ZoneState::FullDisruption
        );
        assert_eq!(
            zone_state(
                &[Some("True"), Some("False"), Some("False"), Some("Unknown")],
                0.55
            ),
            ZoneState::PartialDisruption
        );
    }
}
