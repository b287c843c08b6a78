//! The pod status patch, as the kubelet's status manager writes it: the new status with the
//! conditions the kubelet does not own kept from the server's, sent as a JSON merge patch
//! against the status the server last showed (so fields the new status drops are removed),
//! with the pod's UID as a precondition.

use k8s_openapi::api::core::v1::PodStatus;
use serde_json::{Map, Value};

/// The condition types the kubelet owns; others (PodScheduled, DisruptionTarget, readiness
/// gates) are kept as the server has them.
const KUBELET_CONDITIONS: &[&str] = &[
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
];

/// `new` with the server's conditions the kubelet does not own (and that `new` lacks) kept.
#[must_use]
pub(crate) fn merge_status(server: Option<&PodStatus>, new: &PodStatus) -> PodStatus {
    let mut merged = new.clone();
    let Some(theirs) = server.and_then(|s| s.conditions.as_ref()) else {
        return merged;
    };
    let conditions = merged.conditions.get_or_insert_with(Vec::new);
    for c in theirs {
        let owned = KUBELET_CONDITIONS.contains(&c.type_.as_str());
        if !owned && !conditions.iter().any(|m| m.type_ == c.type_) {
            conditions.push(c.clone());
        }
    }
    merged
}

/// The JSON merge patch (RFC 7386) that turns `old` into `new`; `None` when they are equal.
/// Objects are diffed key by key (a key `new` lacks becomes `null`), anything else replaced.
#[must_use]
pub(crate) fn merge_diff(old: &Value, new: &Value) -> Option<Value> {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut patch = Map::new();
            for (k, nv) in n {
                match o.get(k) {
                    Some(ov) => {
                        if let Some(d) = merge_diff(ov, nv) {
                            patch.insert(k.clone(), d);
                        }
                    }
                    None => {
                        patch.insert(k.clone(), nv.clone());
                    }
                }
            }
            for k in o.keys().filter(|k| !n.contains_key(*k)) {
                patch.insert(k.clone(), Value::Null);
            }
            (!patch.is_empty()).then_some(Value::Object(patch))
        }
        _ if old == new => None,
        _ => Some(new.clone()),
    }
}

/// The body of `PATCH pods/{name}/status`: `metadata.uid` (a precondition: the server refuses
/// a patch of another pod of the same name) and the status diff.
#[must_use]
pub(crate) fn status_patch(uid: &str, server: &Value, new: &Value) -> Value {
    let status = merge_diff(server, new).unwrap_or_else(|| Value::Object(Map::new()));
    serde_json::json!({ "metadata": { "uid": uid }, "status": status })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodCondition;
    use serde_json::json;

    use super::*;

    fn cond(kind: &str, status: &str) -> PodCondition {
        PodCondition {
            type_: kind.to_owned(),
            status: status.to_owned(),
            ..Default::default()
        }
    }

    #[test]
    fn diff_sets_changes_and_removes_dropped_keys() {
        let old = json!({"phase": "Pending", "reason": "X", "hostIP": "1.2.3.4",
                         "conditions": [{"type": "Ready", "status": "False"}]});
        let new = json!({"phase": "Running", "hostIP": "1.2.3.4",
                         "conditions": [{"type": "Ready", "status": "True"}], "podIP": "10.0.0.2"});
        let patch = merge_diff(&old, &new);
        assert_eq!(
            patch,
            Some(
                json!({"phase": "Running", "reason": null, "podIP": "10.0.0.2",
                        "conditions": [{"type": "Ready", "status": "True"}]})
            )
        );
        assert_eq!(merge_diff(&new, &new), None);
        assert_eq!(
            status_patch("u1", &new, &new),
            json!({"metadata": {"uid": "u1"}, "status": {}})
        );
    }

    #[test]
    fn keeps_conditions_the_kubelet_does_not_own() {
        let server = PodStatus {
            conditions: Some(vec![
                cond("PodScheduled", "True"),
                cond("DisruptionTarget", "True"),
                cond("Ready", "False"),
            ]),
            ..Default::default()
        };
        let new = PodStatus {
            conditions: Some(vec![cond("Ready", "True"), cond("PodScheduled", "True")]),
            ..Default::default()
        };
        let merged = merge_status(Some(&server), &new);
        let kinds: Vec<(&str, &str)> = merged
            .conditions
            .iter()
            .flatten()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("Ready", "True"),
                ("PodScheduled", "True"),
                ("DisruptionTarget", "True")
            ]
        );
    }
}
