//! Deployment status (upstream `deployment/sync.go` and `progress.go`):
//! replica counts summed over the ReplicaSets, and the `Available` and
//! `Progressing` conditions with upstream's reasons and messages.

use std::time::Duration;

use serde_json::{Value, json};

use super::strategy::{max_unavailable, replicas};
use crate::controllers::client::{int, text};
use crate::registry::meta;

/// `Progressing` reasons.
pub(crate) const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub(crate) const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub(crate) const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub(crate) const RS_UPDATED: &str = "ReplicaSetUpdated";
pub(crate) const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub(crate) const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
pub(crate) const PAUSED: &str = "DeploymentPaused";
pub(crate) const RESUMED: &str = "DeploymentResumed";

/// A condition of `status`, by type.
pub(crate) fn condition<'a>(status: &'a Value, kind: &str) -> Option<&'a Value> {
    status
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

/// A new condition stamped now.
pub(crate) fn new_condition(kind: &str, status: &str, reason: &str, message: &str) -> Value {
    let now = meta::format_time(meta::now());
    json!({
        "type": kind, "status": status, "lastUpdateTime": now, "lastTransitionTime": now,
        "reason": reason, "message": message,
    })
}

fn remove_condition(status: &mut Value, kind: &str) {
    if let Some(cs) = status.get_mut("conditions").and_then(Value::as_array_mut) {
        cs.retain(|c| c.get("type").and_then(Value::as_str) != Some(kind));
    }
}

/// upstream's `SetDeploymentCondition`: nothing changes if the status and
/// reason are the same; the transition time is kept if the status is.
pub(crate) fn set_condition(status: &mut Value, mut cond: Value) {
    let kind = text(&cond, "/type").to_string();
    if let Some(cur) = condition(status, &kind) {
        if cur.get("status") == cond.get("status") && cur.get("reason") == cond.get("reason") {
            return;
        }
        if cur.get("status") == cond.get("status")
            && let Some(t) = cur.get("lastTransitionTime")
        {
            cond["lastTransitionTime"] = t.clone();
        }
    }
    remove_condition(status, &kind);
    if !status.is_object() {
        *status = json!({});
    }
    if let Some(o) = status.as_object_mut() {
        let cs = o.entry("conditions").or_insert_with(|| json!([]));
        if let Some(a) = cs.as_array_mut() {
            a.push(cond);
        }
    }
}

/// upstream's `calculateStatus`.
pub(crate) fn calculate(d: &Value, all: &[&Value], new: Option<&Value>) -> Value {
    let sum = |ptr: &str| all.iter().map(|rs| int(rs, ptr)).sum::<i64>();
    let available = sum("/status/availableReplicas");
    let total = sum("/spec/replicas");
    let mut status = d.get("status").cloned().unwrap_or_else(|| json!({}));
    if !status.is_object() {
        status = json!({});
    }
    if let Some(o) = status.as_object_mut() {
        o.insert(
            "observedGeneration".into(),
            json!(int(d, "/metadata/generation")),
        );
        o.insert("replicas".into(), json!(sum("/status/replicas")));
        o.insert(
            "updatedReplicas".into(),
            json!(new.map_or(0, |rs| int(rs, "/status/replicas"))),
        );
        o.insert("readyReplicas".into(), json!(sum("/status/readyReplicas")));
        o.insert("availableReplicas".into(), json!(available));
        o.insert(
            "unavailableReplicas".into(),
            json!((total - available).max(0)),
        );
    }
    if available >= replicas(d) - max_unavailable(d) {
        set_condition(
            &mut status,
            new_condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            ),
        );
    } else {
        set_condition(
            &mut status,
            new_condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            ),
        );
    }
    status
}

/// upstream's `HasProgressDeadline`.
pub(crate) fn has_progress_deadline(d: &Value) -> bool {
    d.pointer("/spec/progressDeadlineSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|s| s != i64::from(i32::MAX))
}

/// upstream's `DeploymentComplete`.
pub(crate) fn is_complete(d: &Value, status: &Value) -> bool {
    let want = replicas(d);
    int(status, "/updatedReplicas") == want
        && int(status, "/replicas") == want
        && int(status, "/availableReplicas") == want
        && int(status, "/observedGeneration") >= int(d, "/metadata/generation")
}

/// upstream's `DeploymentProgressing`: more updated, ready or available
/// replicas, or fewer old ones, than the stored status says.
fn is_progressing(d: &Value, new: &Value) -> bool {
    let old = d.get("status").cloned().unwrap_or(Value::Null);
    let old_old = int(&old, "/replicas") - int(&old, "/updatedReplicas");
    let new_old = int(new, "/replicas") - int(new, "/updatedReplicas");
    int(new, "/updatedReplicas") > int(&old, "/updatedReplicas")
        || new_old < old_old
        || int(new, "/readyReplicas") > int(&old, "/readyReplicas")
        || int(new, "/availableReplicas") > int(&old, "/availableReplicas")
}

/// How long until the Progressing condition's deadline passes (`None`
/// when it has no deadline to watch).
fn until_deadline(d: &Value, status: &Value) -> Option<Duration> {
    let cond = condition(status, "Progressing")?;
    let reason = text(cond, "/reason");
    if reason == NEW_RS_AVAILABLE || reason == TIMED_OUT || !has_progress_deadline(d) {
        return None;
    }
    let from: jiff::Timestamp = text(cond, "/lastUpdateTime").parse().ok()?;
    let deadline = from.as_second() + int(d, "/spec/progressDeadlineSeconds");
    let left = deadline - meta::now().as_second();
    Some(Duration::from_secs(u64::try_from(left).unwrap_or(0)))
}

/// upstream's `DeploymentTimedOut`, on the status being computed (whose
/// conditions are the stored ones).
fn timed_out(d: &Value, status: &Value) -> bool {
    let Some(cond) = condition(status, "Progressing") else {
        return false;
    };
    match text(cond, "/reason") {
        NEW_RS_AVAILABLE => false,
        TIMED_OUT => true,
        _ => until_deadline(d, status).is_some_and(|l| l.is_zero()),
    }
}

/// upstream's `syncRolloutStatus` computation: the status with the
/// Progressing condition moved on, and when to look again for the
/// progress deadline.
pub(crate) fn rollout_status(
    d: &Value,
    all: &[&Value],
    new: Option<&Value>,
) -> (Value, Option<Duration>) {
    let mut status = calculate(d, all, new);
    if !has_progress_deadline(d) {
        remove_condition(&mut status, "Progressing");
    }
    let complete_before = condition(&status, "Progressing")
        .is_some_and(|c| text(c, "/reason") == NEW_RS_AVAILABLE)
        && int(&status, "/replicas") == int(&status, "/updatedReplicas");
    if has_progress_deadline(d) && !complete_before {
        let name = new.map(meta::name).unwrap_or("");
        if is_complete(d, &status) {
            set_condition(
                &mut status,
                new_condition(
                    "Progressing",
                    "True",
                    NEW_RS_AVAILABLE,
                    &format!("ReplicaSet {name:?} has successfully progressed."),
                ),
            );
        } else if is_progressing(d, &status) {
            let message = if new.is_some() {
                format!("ReplicaSet {name:?} is progressing.")
            } else {
                String::new()
            };
            let mut cond = new_condition("Progressing", "True", RS_UPDATED, &message);
            if let Some(cur) = condition(&status, "Progressing")
                && text(cur, "/status") == "True"
                && let Some(t) = cur.get("lastTransitionTime")
            {
                cond["lastTransitionTime"] = t.clone();
            }
            remove_condition(&mut status, "Progressing");
            set_condition(&mut status, cond);
        } else if timed_out(d, &status) {
            set_condition(
                &mut status,
                new_condition(
                    "Progressing",
                    "False",
                    TIMED_OUT,
                    &format!("ReplicaSet {name:?} has timed out progressing."),
                ),
            );
        }
    }
    let requeue = if is_complete(d, &status) {
        None
    } else {
        until_deadline(d, &status).map(|l| l.max(Duration::from_secs(1)))
    };
    (status, requeue)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(replicas: i64) -> Value {
        json!({"metadata": {"generation": 2}, "spec": {"replicas": replicas, "progressDeadlineSeconds": 600,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}})
    }

    #[test]
    fn unavailable_pods_leave_the_deployment_unavailable_but_progressing() {
        let d = deployment(2);
        let rs = json!({"metadata": {"name": "d-abc"}, "spec": {"replicas": 2}, "status": {"replicas": 2}});
        let (st, requeue) = rollout_status(&d, &[&rs], Some(&rs));
        assert_eq!(st["observedGeneration"], 2);
        assert_eq!(st["updatedReplicas"], 2);
        assert_eq!(st["unavailableReplicas"], 2);
        let avail = condition(&st, "Available").unwrap();
        assert_eq!(avail["reason"], "MinimumReplicasUnavailable");
        let prog = condition(&st, "Progressing").unwrap();
        assert_eq!(prog["reason"], RS_UPDATED);
        assert_eq!(prog["message"], "ReplicaSet \"d-abc\" is progressing.");
        assert!(requeue.is_some());
    }

    #[test]
    fn zero_replicas_complete_at_once() {
        let d = deployment(0);
        let rs = json!({"metadata": {"name": "d-abc"}, "spec": {"replicas": 0}, "status": {"replicas": 0}});
        let (st, requeue) = rollout_status(&d, &[&rs], Some(&rs));
        assert_eq!(
            condition(&st, "Available").unwrap()["reason"],
            "MinimumReplicasAvailable"
        );
        assert_eq!(
            condition(&st, "Progressing").unwrap()["reason"],
            NEW_RS_AVAILABLE
        );
        assert!(requeue.is_none());
    }
}
