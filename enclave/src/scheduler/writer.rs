//! The scheduler's writes, run as tasks on the API server's runtime so the
//! scheduling loop never waits for the store: binds (VolumeBinding's PreBind, then the
//! same registry path as `POST pods/{name}/binding`), the `PodScheduled=False`
//! condition and `nominatedNodeName`, preemption's evictions, and events
//! (`Scheduled`, `FailedScheduling`, `Preempted`) with client-go's
//! correlation. Events are written one at a time from a queue of 1000 and
//! dropped when it is full, as client-go's event broadcaster does
//! (`maxQueuedEvents`, `DropIfChannelFull`), so a burst of scheduling
//! never waits for, or is slowed by, its events.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::plugins::volume_binding::VolumeAccess;
use super::pod_info::PodInfo;
use crate::controllers::client::Api;
use crate::controllers::events::{EventRecorder, EventType};
use crate::registry::generic::Endpoint;
use crate::registry::kinds::update_pod_condition;
use crate::registry::{DeleteOptions, Error, ObjectStore, ResourceInfo, WriteOptions, meta};

/// The field manager of the scheduler's writes (its user agent's name upstream).
const FIELD_MANAGER: &str = "kube-scheduler";

/// The longest event or condition message (upstream's `truncateMessage`).
const MAX_MESSAGE: usize = 1024;

/// Events queued for writing before new ones are dropped (client-go's `maxQueuedEvents`).
const MAX_QUEUED_EVENTS: usize = 1000;

/// One event to record.
#[derive(Debug)]
struct EventJob {
    about: Value,
    ty: EventType,
    reason: &'static str,
    message: String,
}

/// How a bind went.
#[derive(Debug)]
pub(crate) struct BindResult {
    /// The pod as assumed (with its node).
    pub(crate) pod: Arc<PodInfo>,
    /// When its scheduling attempt started.
    pub(crate) started: Instant,
    /// `None` on success; the failure otherwise.
    pub(crate) error: Option<String>,
    /// The pod is gone or already bound: nothing to retry.
    pub(crate) settled: bool,
}

/// Issues the writes.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    runtime: tokio::runtime::Handle,
    objects: ObjectStore,
    pods: Arc<ResourceInfo>,
    events: mpsc::Sender<EventJob>,
    results: mpsc::UnboundedSender<BindResult>,
    /// VolumeBinding's PreBind writes (`None` when claims are not served).
    volumes: Option<VolumeAccess>,
}

/// `message` cut to upstream's limit with ` ...`.
pub(crate) fn truncate(message: &str) -> String {
    if message.len() <= MAX_MESSAGE {
        return message.to_string();
    }
    let mut end = MAX_MESSAGE - 4;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} ...", &message[..end])
}

/// The object events are about.
fn reference(pod: &PodInfo) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": pod.name, "namespace": pod.namespace, "uid": pod.uid,
        "resourceVersion": pod.resource_version}})
}

fn opts() -> WriteOptions {
    WriteOptions {
        manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    }
}

impl Writer {
    /// Writes through `objects` (pods resource `pods`, events `events`) on
    /// `runtime`, reporting binds on `results`.
    pub(crate) fn new(
        runtime: tokio::runtime::Handle,
        objects: ObjectStore,
        pods: Arc<ResourceInfo>,
        events: Arc<ResourceInfo>,
        results: mpsc::UnboundedSender<BindResult>,
    ) -> Self {
        let recorder = EventRecorder::new(
            Api::new(objects.clone(), events),
            super::DEFAULT_SCHEDULER_NAME,
        );
        let (tx, mut rx) = mpsc::channel::<EventJob>(MAX_QUEUED_EVENTS);
        runtime.spawn(async move {
            while let Some(job) = rx.recv().await {
                recorder
                    .record(&job.about, job.ty, job.reason, &job.message)
                    .await;
            }
        });
        Writer {
            runtime,
            volumes: VolumeAccess::new(&objects),
            objects,
            pods,
            events: tx,
            results,
        }
    }

    /// Queues an event about `pod`; drops it when the queue is full.
    fn event(&self, pod: &PodInfo, ty: EventType, reason: &'static str, message: String) {
        let job = EventJob {
            about: reference(pod),
            ty,
            reason,
            message,
        };
        if self.events.try_send(job).is_err() {
            tracing::debug!(pod = %pod.key(), reason, "event queue full; event dropped");
        }
    }

    /// Binds `pod` to `pod.node_name`, then records `Scheduled`.
    pub(crate) fn bind(&self, pod: Arc<PodInfo>, started: Instant) {
        let w = self.clone();
        self.runtime.spawn(async move {
            if let (Some(volumes), false) = (&w.volumes, pod.claims.is_empty())
                && let Err(e) = volumes.pre_bind(&pod).await
            {
                let error = Some(format!("running PreBind plugin \"VolumeBinding\": {e}"));
                let _ = w.results.send(BindResult {
                    pod,
                    started,
                    error,
                    settled: false,
                });
                return;
            }
            let body = json!({"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": pod.node_name}});
            let outcome = w
                .objects
                .bind(&w.pods, Some(&pod.namespace), &pod.name, body, false)
                .await;
            let (error, settled) = match &outcome {
                Ok(_) => (None, false),
                Err(e @ Error::NotFound { .. }) => (Some(e.message()), true),
                Err(e @ Error::Conflict { .. }) => {
                    let m = e.message();
                    let settled = m.contains("already assigned") || m.contains("being deleted");
                    (Some(m), settled)
                }
                Err(e) => (Some(e.message()), false),
            };
            let _ = w.results.send(BindResult {
                pod: pod.clone(),
                started,
                error,
                settled,
            });
            if outcome.is_ok() {
                let msg = format!(
                    "Successfully assigned {}/{} to {}",
                    pod.namespace, pod.name, pod.node_name
                );
                w.event(&pod, EventType::Normal, "Scheduled", msg);
            }
        });
    }

    /// Records `FailedScheduling` and, when it changes anything, writes the
    /// `PodScheduled=False` condition with `reason` and `nominatedNodeName`
    /// (`Some("")` clears it).
    pub(crate) fn failed(
        &self,
        pod: Arc<PodInfo>,
        reason: &'static str,
        message: String,
        nominate: Option<String>,
    ) {
        let w = self.clone();
        self.runtime.spawn(async move {
            let message = truncate(&message);
            w.event(
                &pod,
                EventType::Warning,
                "FailedScheduling",
                message.clone(),
            );
            let want = ("False".to_string(), reason.to_string(), message.clone());
            let nominate = nominate.filter(|n| *n != pod.nominated_node);
            if pod.scheduled_condition.as_ref() == Some(&want) && nominate.is_none() {
                return;
            }
            w.patch_status(&pod, move |cur| {
                if cur
                    .pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .is_some_and(|n| !n.is_empty())
                {
                    return false;
                }
                let mut changed = update_pod_condition(
                    cur,
                    "PodScheduled",
                    "False",
                    Some(reason),
                    Some(&message),
                );
                if let Some(n) = &nominate {
                    changed |= set_nominated(cur, n);
                }
                changed
            })
            .await;
        });
    }

    /// Evicts `victims` to make room for `preemptor` on `node`, and clears
    /// the nomination of lower-priority pods `displaced` from it.
    pub(crate) fn preempt(
        &self,
        preemptor: Arc<PodInfo>,
        node: String,
        victims: Vec<Arc<PodInfo>>,
        displaced: Vec<Arc<PodInfo>>,
    ) {
        let w = self.clone();
        self.runtime.spawn(async move {
            for v in victims {
                let message = format!("{}: preempting to accommodate a higher priority pod", preemptor.scheduler_name);
                w.patch_status(&v, |cur| {
                    update_pod_condition(cur, "DisruptionTarget", "True", Some("PreemptionByScheduler"), Some(&message))
                })
                .await;
                let opts = DeleteOptions {
                    uid: Some(v.uid.clone()),
                    grace_period_seconds: v.grace_period,
                    ..Default::default()
                };
                match w.objects.delete(&w.pods, Some(&v.namespace), &v.name, &opts).await {
                    Ok(_) | Err(Error::NotFound { .. }) => {}
                    Err(e) => {
                        tracing::warn!(pod = %v.key(), error = %e, "could not delete a preemption victim");
                        continue;
                    }
                }
                let msg = format!("Preempted by pod {} on node {node}", preemptor.uid);
                w.event(&v, EventType::Normal, "Preempted", msg);
            }
            for d in displaced {
                w.patch_status(&d, |cur| set_nominated(cur, "")).await;
            }
        });
    }

    /// Read-modify-writes `pod`'s status with `edit` (which returns whether
    /// it changed anything), if the pod is still the same one.
    async fn patch_status(&self, pod: &PodInfo, edit: impl Fn(&mut Value) -> bool) {
        let uid = pod.uid.clone();
        let result = self
            .objects
            .patch_at(
                Endpoint::Status,
                &self.pods,
                Some(&pod.namespace),
                &pod.name,
                &opts(),
                |cur| {
                    let mut next = cur.clone();
                    if meta::meta_str(cur, "uid") != Some(uid.as_str()) || !edit(&mut next) {
                        return Ok(cur.clone());
                    }
                    Ok(next)
                },
            )
            .await;
        match result {
            Ok(_) | Err(Error::NotFound { .. }) => {}
            Err(e) => {
                tracing::debug!(pod = %pod.key(), error = %e, "could not update the pod's status")
            }
        }
    }
}

/// Sets (or with "" removes) `status.nominatedNodeName`; whether it changed.
fn set_nominated(pod: &mut Value, node: &str) -> bool {
    let Some(st) = pod.get_mut("status").and_then(Value::as_object_mut) else {
        return false;
    };
    let cur = st
        .get("nominatedNodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if cur == node {
        return false;
    }
    if node.is_empty() {
        st.remove("nominatedNodeName");
    } else {
        st.insert("nominatedNodeName".into(), Value::String(node.to_string()));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_as_upstream() {
        let long = "x".repeat(2000);
        let t = truncate(&long);
        assert_eq!(t.len(), 1024);
        assert!(t.ends_with(" ..."));
        assert_eq!(truncate("short"), "short");
    }

    #[test]
    fn nominated_node_is_set_and_cleared() {
        let mut p = json!({"status": {"phase": "Pending"}});
        assert!(set_nominated(&mut p, "n1"));
        assert!(!set_nominated(&mut p, "n1"));
        assert!(set_nominated(&mut p, ""));
        assert!(p["status"].get("nominatedNodeName").is_none());
    }
}
