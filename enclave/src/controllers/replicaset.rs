//! The ReplicaSet controller (upstream `pkg/controller/replicaset`): keeps
//! `spec.replicas` pods from the template, adopts matching orphans,
//! releases pods that stopped matching, deletes surplus pods in upstream's
//! preference order and reports status. The same code keeps ReplicationControllers, as
//! upstream's replication manager does ([`Replicated`] says what differs).

use std::cmp::Ordering;

use std::sync::Arc;

use futures::future::join_all;
use serde_json::{Value, json};

use super::Error;
use super::client::{Api, Kinds, annotation, int, is_deleting, text};
use super::events::{EventRecorder, EventType};
use super::owner::{self, claim};
use super::pod_template::pod_from_template;
use super::runtime::{Action, ObjectKey, Reconciler};
use crate::registry::generic::Propagation;
use crate::registry::{ObjectStore, ResourceInfo, WatchEvent, meta};

/// At most this many pods are created or deleted per reconcile, as
/// upstream's `BurstReplicas`.
const BURST_REPLICAS: usize = 500;

/// What differs between the kinds this controller keeps.
pub(crate) trait Replicated: std::fmt::Debug + Send + Sync + 'static {
    /// The owner's `apiVersion` in its pods' owner references.
    const API_VERSION: &'static str;
    /// The owner's kind.
    const KIND: &'static str;
    /// The component its events come from, as upstream's.
    const COMPONENT: &'static str;
    /// The queue's name, for logs.
    const QUEUE: &'static str;
    /// The owner's selector as a `metav1.LabelSelector`.
    fn selector(owner: &Value) -> Value;
}

/// apps/v1 ReplicaSets.
#[derive(Debug)]
pub(crate) struct ReplicaSets;

impl Replicated for ReplicaSets {
    const API_VERSION: &'static str = "apps/v1";
    const KIND: &'static str = "ReplicaSet";
    const COMPONENT: &'static str = "replicaset-controller";
    const QUEUE: &'static str = "replicaset";
    fn selector(owner: &Value) -> Value {
        owner
            .pointer("/spec/selector")
            .cloned()
            .unwrap_or(Value::Null)
    }
}

/// core/v1 ReplicationControllers, whose selector is a plain label map.
#[derive(Debug)]
pub(crate) struct ReplicationControllers;

impl Replicated for ReplicationControllers {
    const API_VERSION: &'static str = "v1";
    const KIND: &'static str = "ReplicationController";
    const COMPONENT: &'static str = "replication-controller";
    const QUEUE: &'static str = "replicationmanager";
    fn selector(owner: &Value) -> Value {
        json!({"matchLabels": owner.pointer("/spec/selector").cloned().unwrap_or_else(|| json!({}))})
    }
}

/// The ReplicaSet controller, for ReplicaSets or ReplicationControllers (`F`).
#[derive(Debug)]
pub(crate) struct ReplicaSetController<F: Replicated = ReplicaSets> {
    pods: Api,
    replicasets: Api,
    events: EventRecorder,
    flavor: std::marker::PhantomData<F>,
}

impl<F: Replicated> ReplicaSetController<F> {
    /// A controller over `objects` keeping the objects of `owners`.
    pub(crate) fn new(objects: ObjectStore, kinds: Kinds, owners: Arc<ResourceInfo>) -> Self {
        ReplicaSetController {
            pods: Api::new(objects.clone(), kinds.pods),
            replicasets: Api::new(objects.clone(), owners),
            events: EventRecorder::new(Api::new(objects, kinds.events), F::COMPONENT),
            flavor: std::marker::PhantomData,
        }
    }

    /// Creates or deletes pods so that `pods` (the active pods `rs`
    /// controls) number `spec.replicas`.
    async fn manage(&self, rs: &Value, pods: &[Value]) -> Result<(), Error> {
        let want = usize::try_from(
            rs.pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1),
        )
        .unwrap_or(0);
        let ns = meta::namespace(rs);
        if pods.len() < want {
            let missing = (want - pods.len()).min(BURST_REPLICAS);
            tracing::debug!(rs = meta::name(rs), missing, "creating pods");
            // upstream's slowStartBatch: 1, 2, 4, … so that a template the
            // API rejects fails once, not `missing` times.
            let mut done = 0usize;
            let mut batch = 1usize;
            while done < missing {
                let size = batch.min(missing - done);
                let results = join_all((0..size).map(|_| {
                    self.pods
                        .create(ns, pod_from_template(rs, F::API_VERSION, F::KIND))
                }))
                .await;
                let mut failed = None;
                for result in results {
                    self.record_create(rs, &result).await;
                    if let Err(e) = result {
                        failed.get_or_insert(e);
                    }
                }
                match failed {
                    // As upstream: a namespace being deleted refuses every create, and the replica set goes with it;
                    // nothing to retry.
                    Some(e) if e.is_namespace_terminating() => return Ok(()),
                    Some(e) => return Err(e),
                    None => {}
                }
                done += size;
                batch = batch.saturating_mul(2);
            }
        } else if pods.len() > want {
            let surplus = (pods.len() - want).min(BURST_REPLICAS);
            let mut ranked: Vec<&Value> = pods.iter().collect();
            ranked.sort_by(|a, b| deletion_order(a, b));
            tracing::debug!(rs = meta::name(rs), surplus, "deleting pods");
            let doomed: Vec<&Value> = ranked.into_iter().take(surplus).collect();
            let results = join_all(doomed.iter().map(|p| {
                self.pods.delete(
                    ns,
                    meta::name(p),
                    Some(super::client::uid(p)),
                    Propagation::Background,
                )
            }))
            .await;
            let mut failed = None;
            for (pod, result) in doomed.iter().zip(results) {
                match result {
                    Ok(()) => {
                        let message = format!("Deleted pod: {}", meta::name(pod));
                        self.events
                            .record(rs, EventType::Normal, "SuccessfulDelete", &message)
                            .await;
                    }
                    Err(e) => {
                        let message = format!("Error deleting: {}", e.api_message());
                        self.events
                            .record(rs, EventType::Warning, "FailedDelete", &message)
                            .await;
                        failed.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Ok(())
    }
}

impl<F: Replicated> ReplicaSetController<F> {
    /// upstream's `CreatePods` events: `SuccessfulCreate` per pod made,
    /// `FailedCreate` per refusal (none when the namespace is going away).
    async fn record_create(&self, rs: &Value, result: &Result<Value, Error>) {
        match result {
            Ok(pod) => {
                let message = format!("Created pod: {}", meta::name(pod));
                self.events
                    .record(rs, EventType::Normal, "SuccessfulCreate", &message)
                    .await;
            }
            Err(e) if e.is_namespace_terminating() => {}
            Err(e) => {
                let message = format!("Error creating: {}", e.api_message());
                self.events
                    .record(rs, EventType::Warning, "FailedCreate", &message)
                    .await;
            }
        }
    }
}

/// Whether the pod's `Ready` condition is `True`.
pub(crate) fn is_ready(pod: &Value) -> bool {
    ready_condition(pod).is_some_and(|c| c.get("status").and_then(Value::as_str) == Some("True"))
}

fn ready_condition(pod: &Value) -> Option<&Value> {
    pod.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
}

/// upstream's `IsPodAvailable`: ready for at least `min_ready_seconds`.
fn is_available(pod: &Value, min_ready_seconds: i64, now: jiff::Timestamp) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    let since = ready_condition(pod)
        .and_then(|c| c.get("lastTransitionTime"))
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    since.is_some_and(|t| t.as_second().saturating_add(min_ready_seconds) <= now.as_second())
}

/// upstream's `FilterActivePods`: not finished and not being deleted.
fn is_active(pod: &Value) -> bool {
    let phase = text(pod, "/status/phase");
    phase != "Succeeded" && phase != "Failed" && !is_deleting(pod)
}

/// upstream's `ActivePodsWithRanks` order: the pod to delete first sorts
/// first. Unscheduled before scheduled, Pending before Unknown before
/// Running, not ready before ready, lower `pod-deletion-cost` first, more
/// recently ready first, more restarts first, newer first.
fn deletion_order(a: &Value, b: &Value) -> Ordering {
    let scheduled = |p: &Value| !text(p, "/spec/nodeName").is_empty();
    let phase = |p: &Value| match text(p, "/status/phase") {
        "Pending" | "" => 0,
        "Unknown" => 1,
        _ => 2,
    };
    let cost = |p: &Value| {
        annotation(p, "controller.kubernetes.io/pod-deletion-cost")
            .and_then(|c| c.parse::<i32>().ok())
            .unwrap_or(0)
    };
    let ready_since = |p: &Value| {
        ready_condition(p)
            .and_then(|c| c.get("lastTransitionTime"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let restarts = |p: &Value| {
        p.pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .map_or(0, |cs| {
                cs.iter()
                    .map(|c| int(c, "/restartCount"))
                    .max()
                    .unwrap_or(0)
            })
    };
    let created = |p: &Value| text(p, "/metadata/creationTimestamp").to_string();
    scheduled(a)
        .cmp(&scheduled(b))
        .then_with(|| phase(a).cmp(&phase(b)))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        .then_with(|| cost(a).cmp(&cost(b)))
        .then_with(|| {
            if is_ready(a) && is_ready(b) {
                ready_since(b).cmp(&ready_since(a))
            } else {
                Ordering::Equal
            }
        })
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| created(b).cmp(&created(a)))
        .then_with(|| meta::name(a).cmp(meta::name(b)))
}

/// upstream's `calculateStatus`: counts over the controlled active pods,
/// and the `ReplicaFailure` condition for a failed create or delete.
fn calculate_status(rs: &Value, pods: &[Value], failure: Option<&Error>) -> Value {
    let now = meta::now();
    let min_ready = int(rs, "/spec/minReadySeconds");
    let template_labels = rs
        .pointer("/spec/template/metadata/labels")
        .and_then(Value::as_object);
    let fully_labeled = pods
        .iter()
        .filter(|p| {
            template_labels.is_none_or(|want| {
                let have = meta::labels(p);
                want.iter()
                    .all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v))
            })
        })
        .count();
    let ready = pods.iter().filter(|p| is_ready(p)).count();
    let available = pods
        .iter()
        .filter(|p| is_available(p, min_ready, now))
        .count();
    let mut status = rs.get("status").cloned().unwrap_or_else(|| json!({}));
    if !status.is_object() {
        status = json!({});
    }
    let mut conditions: Vec<Value> = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let existing = conditions
        .iter()
        .position(|c| c.get("type").and_then(Value::as_str) == Some("ReplicaFailure"));
    match (failure, existing) {
        (Some(e), None) => {
            let reason = if pods.len() < usize::try_from(int(rs, "/spec/replicas")).unwrap_or(0) {
                "FailedCreate"
            } else {
                "FailedDelete"
            };
            conditions.push(json!({
                "type": "ReplicaFailure",
                "status": "True",
                "lastTransitionTime": meta::format_time(now),
                "reason": reason,
                "message": e.one_line(),
            }));
        }
        (None, Some(i)) => {
            conditions.remove(i);
        }
        _ => {}
    }
    if let Some(o) = status.as_object_mut() {
        o.insert("replicas".into(), json!(pods.len()));
        o.insert("fullyLabeledReplicas".into(), json!(fully_labeled));
        o.insert("readyReplicas".into(), json!(ready));
        o.insert("availableReplicas".into(), json!(available));
        o.insert(
            "observedGeneration".into(),
            json!(int(rs, "/metadata/generation")),
        );
        if conditions.is_empty() {
            o.remove("conditions");
        } else {
            o.insert("conditions".into(), Value::Array(conditions));
        }
    }
    status
}

impl<F: Replicated> Reconciler for ReplicaSetController<F> {
    type Key = ObjectKey;
    const NAME: &'static str = F::QUEUE;

    async fn keys_for(&mut self, kind: usize, event: &WatchEvent) -> Vec<ObjectKey> {
        owner::keys_for(&self.replicasets, F::KIND, kind, event).await
    }

    async fn reconcile(&mut self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(rs) = self.replicasets.get(&key.namespace, &key.name).await? else {
            return Ok(Action::await_change());
        };
        let selector = F::selector(&rs);
        let active: Vec<Value> = self
            .pods
            .list(&key.namespace)
            .await?
            .into_iter()
            .filter(is_active)
            .collect();
        let pods = claim(&self.pods, &rs, &selector, F::API_VERSION, F::KIND, active).await?;
        let failure = if is_deleting(&rs) {
            None
        } else {
            self.manage(&rs, &pods).await.err()
        };
        let status = calculate_status(&rs, &pods, failure.as_ref());
        let mut next = rs.clone();
        next["status"] = status.clone();
        let next = self.replicasets.canonical(&next);
        if rs.get("status") != next.get("status") {
            match self.replicasets.replace_status(next).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => return Ok(Action::await_change()),
                Err(e) => return Err(failure.unwrap_or(e)),
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let min_ready = int(&rs, "/spec/minReadySeconds");
        if min_ready > 0 && int(&status, "/readyReplicas") != int(&status, "/availableReplicas") {
            // Pods become available by the clock alone: look again then.
            return Ok(Action::requeue(std::time::Duration::from_secs(
                u64::try_from(min_ready).unwrap_or(1),
            )));
        }
        Ok(Action::await_change())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, created: &str, node: &str, phase: &str) -> Value {
        json!({"metadata": {"name": name, "creationTimestamp": created},
            "spec": {"nodeName": node}, "status": {"phase": phase}})
    }

    #[test]
    fn surplus_pods_go_unscheduled_pending_and_newest_first() {
        let mut pods = [
            pod("old-running", "2026-01-01T00:00:00Z", "n1", "Running"),
            pod("old-pending", "2026-01-01T00:00:00Z", "", "Pending"),
            pod("new-pending", "2026-01-02T00:00:00Z", "", "Pending"),
            pod("scheduled-pending", "2026-01-03T00:00:00Z", "n1", "Pending"),
        ];
        pods.sort_by(deletion_order);
        let names: Vec<&str> = pods.iter().map(meta::name).collect();
        assert_eq!(
            names,
            [
                "new-pending",
                "old-pending",
                "scheduled-pending",
                "old-running"
            ]
        );
    }

    #[test]
    fn status_counts_and_generation() {
        let rs = json!({"metadata": {"generation": 3}, "spec": {"replicas": 2,
            "template": {"metadata": {"labels": {"app": "a"}}}}});
        let pods = vec![
            json!({"metadata": {"labels": {"app": "a"}}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            json!({"metadata": {"labels": {"other": "b"}}}),
        ];
        let st = calculate_status(&rs, &pods, None);
        assert_eq!(st["replicas"], 2);
        assert_eq!(st["fullyLabeledReplicas"], 1);
        assert_eq!(st["readyReplicas"], 1);
        assert_eq!(st["availableReplicas"], 1);
        assert_eq!(st["observedGeneration"], 3);
    }
}
