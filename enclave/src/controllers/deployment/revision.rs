//! Revision and replica annotations on a deployment's ReplicaSets
//! (upstream `deployment/util`): what `kubectl rollout history` and
//! `rollout undo` read.

use serde_json::Value;

use crate::controllers::client::{annotation, set_annotation};

/// The revision of a ReplicaSet (and the deployment's current one).
pub(crate) const REVISION: &str = "deployment.kubernetes.io/revision";
/// Revisions a ReplicaSet had before a rollback re-stamped it.
pub(crate) const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The deployment's `spec.replicas` when the ReplicaSet was last scaled.
pub(crate) const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// `spec.replicas + maxSurge` at that time.
pub(crate) const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// upstream's `MaxRevHistoryLengthInChars`.
const MAX_REVISION_HISTORY_CHARS: usize = 2000;

/// Deployment annotations never copied to a ReplicaSet.
const SKIPPED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// A ReplicaSet's revision; 0 when absent or malformed (as upstream's
/// `Revision` error path is treated by `MaxRevision`).
pub(crate) fn revision(rs: &Value) -> i64 {
    annotation(rs, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// upstream's `copyDeploymentAnnotationsToReplicaSet` (so that
/// `kubernetes.io/change-cause` shows in `rollout history`).
fn copy_annotations(d: &Value, rs: &mut Value) -> bool {
    let Some(from) = d
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    else {
        return false;
    };
    let mut changed = false;
    for (k, v) in from {
        let Some(v) = v.as_str() else { continue };
        if SKIPPED.contains(&k.as_str()) || annotation(rs, k) == Some(v) {
            continue;
        }
        set_annotation(rs, k, v);
        changed = true;
    }
    changed
}

/// upstream's `SetReplicasAnnotations`: true if anything changed.
pub(crate) fn set_replicas_annotations(rs: &mut Value, desired: i64, max: i64) -> bool {
    let mut changed = false;
    for (key, value) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let value = value.to_string();
        if annotation(rs, key) != Some(value.as_str()) {
            set_annotation(rs, key, &value);
            changed = true;
        }
    }
    changed
}

/// upstream's `ReplicasAnnotationsNeedUpdate`.
pub(crate) fn replicas_annotations_need_update(rs: &Value, desired: i64, max: i64) -> bool {
    annotation(rs, DESIRED_REPLICAS) != Some(desired.to_string().as_str())
        || annotation(rs, MAX_REPLICAS) != Some(max.to_string().as_str())
}

/// upstream's `SetNewReplicaSetAnnotations`: copies the deployment's
/// annotations, raises the revision to `new_revision` (keeping the
/// revisions it replaces in `revision-history`, which is how a rollback
/// shows), and for a ReplicaSet about to be created sets the replica
/// annotations. True if anything changed.
pub(crate) fn set_new_rs_annotations(
    d: &Value,
    rs: &mut Value,
    new_revision: i64,
    exists: bool,
    desired: i64,
    max: i64,
) -> bool {
    let mut changed = copy_annotations(d, rs);
    let old = annotation(rs, REVISION).map(str::to_string);
    let old_revision = match old.as_deref() {
        None | Some("") => 0,
        Some(s) => match s.parse::<i64>() {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!(revision = s, "malformed revision annotation left alone");
                return false;
            }
        },
    };
    if old_revision < new_revision {
        set_annotation(rs, REVISION, &new_revision.to_string());
        changed = true;
        if let Some(old) = old.filter(|o| !o.is_empty()) {
            let history = annotation(rs, REVISION_HISTORY).unwrap_or("").to_string();
            if history.is_empty() {
                set_annotation(rs, REVISION_HISTORY, &old);
            } else {
                // Drop the oldest entries until the list fits.
                let mut entries: Vec<&str> = history.split(',').collect();
                let mut total = history.len() + old.len() + 1;
                while total > MAX_REVISION_HISTORY_CHARS && !entries.is_empty() {
                    total -= entries.remove(0).len() + 1;
                }
                if total <= MAX_REVISION_HISTORY_CHARS {
                    entries.push(&old);
                    set_annotation(rs, REVISION_HISTORY, &entries.join(","));
                }
            }
        }
    }
    if !exists && set_replicas_annotations(rs, desired, max) {
        changed = true;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_rollback_restamps_and_keeps_history() {
        let d = json!({"metadata": {"annotations": {"kubernetes.io/change-cause": "undo", REVISION: "2"}}});
        let mut rs = json!({"metadata": {"annotations": {REVISION: "1"}}});
        assert!(set_new_rs_annotations(&d, &mut rs, 3, true, 1, 2));
        assert_eq!(annotation(&rs, REVISION), Some("3"));
        assert_eq!(annotation(&rs, REVISION_HISTORY), Some("1"));
        assert_eq!(annotation(&rs, "kubernetes.io/change-cause"), Some("undo"));
        assert_eq!(annotation(&rs, DESIRED_REPLICAS), None);
        assert!(!set_new_rs_annotations(&d, &mut rs, 3, true, 1, 2));
        assert!(set_new_rs_annotations(&d, &mut rs, 5, true, 1, 2));
        assert_eq!(annotation(&rs, REVISION_HISTORY), Some("1,3"));
    }

    #[test]
    fn a_new_replica_set_gets_replica_annotations() {
        let d = json!({"metadata": {}});
        let mut rs = json!({"metadata": {}});
        assert!(set_new_rs_annotations(&d, &mut rs, 1, false, 3, 4));
        assert_eq!(annotation(&rs, REVISION), Some("1"));
        assert_eq!(annotation(&rs, DESIRED_REPLICAS), Some("3"));
        assert_eq!(annotation(&rs, MAX_REPLICAS), Some("4"));
        assert_eq!(annotation(&rs, REVISION_HISTORY), None);
    }
}
