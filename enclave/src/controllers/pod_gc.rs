//! Pod garbage collection (upstream `pkg/controller/podgc`), every
//! `gc_period` (20 s):
//!
//! - terminated pods (Succeeded or Failed) beyond
//!   `--terminated-pod-gc-threshold` (12500; 0 disables this part) are
//!   deleted, oldest first;
//! - pods bound to a node that no longer exists are marked Failed with a
//!   `DisruptionTarget` condition (`DeletionByPodGC`) and force-deleted,
//!   once the node has been missing for a quarantine of two periods (40 s,
//!   upstream's `quarantineTime`: a node being re-registered is not lost);
//! - terminating pods that were never scheduled, and terminating pods on
//!   a NotReady node tainted `node.kubernetes.io/out-of-service`, are
//!   force-deleted.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::time::Instant;

use super::Error;
use super::runtime::{Action, Reconciler};
use super::typed::Typed;
use crate::registry::generic::DeleteOptions;
use crate::registry::{WatchEvent, meta};

/// upstream's default `--terminated-pod-gc-threshold`.
pub(crate) const DEFAULT_TERMINATED_POD_GC_THRESHOLD: usize = 12_500;

/// upstream's `gcCheckPeriod`.
pub(crate) const DEFAULT_POD_GC_PERIOD: Duration = Duration::from_secs(20);

/// The taint that lets pods on a dead node go (non-graceful node shutdown).
const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

fn key(p: &Pod) -> (String, String) {
    (
        p.metadata.namespace.clone().unwrap_or_default(),
        p.metadata.name.clone().unwrap_or_default(),
    )
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn node_of(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// The pod garbage collector; one key, the pass.
#[derive(Debug)]
pub(crate) struct PodGc {
    pods: Typed<Pod>,
    nodes: Typed<Node>,
    threshold: usize,
    period: Duration,
    /// node name → when its absence was first seen.
    missing_since: HashMap<String, Instant>,
}

impl PodGc {
    /// Watches 0: nodes (a deletion starts the quarantine at once).
    pub(crate) fn new(
        pods: Typed<Pod>,
        nodes: Typed<Node>,
        threshold: usize,
        period: Duration,
    ) -> Self {
        PodGc {
            pods,
            nodes,
            threshold,
            period,
            missing_since: HashMap::new(),
        }
    }

    /// Force-deletes a pod (grace period 0), first marking it Failed with
    /// `reason` if it has not finished.
    async fn force_delete(&self, pod: &Pod, message: Option<&str>) -> Result<(), Error> {
        let (ns, name) = key(pod);
        let uid = pod.metadata.uid.clone();
        if let Some(message) = message
            && !matches!(phase(pod), "Succeeded" | "Failed")
        {
            let now = meta::now();
            let marked = self
                .pods
                .edit_status(&ns, &name, |p| {
                    if p.metadata.uid != uid || matches!(phase(p), "Succeeded" | "Failed") {
                        return false;
                    }
                    let status = p.status.get_or_insert_with(Default::default);
                    status.phase = Some("Failed".into());
                    let conditions = status.conditions.get_or_insert_with(Vec::new);
                    conditions.retain(|c| c.type_ != "DisruptionTarget");
                    conditions.push(PodCondition {
                        type_: "DisruptionTarget".into(),
                        status: "True".into(),
                        reason: Some("DeletionByPodGC".into()),
                        message: Some(message.to_string()),
                        last_transition_time: Some(Time(now)),
                        ..Default::default()
                    });
                    true
                })
                .await;
            match marked {
                Ok(_) => {}
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        let opts = DeleteOptions {
            uid,
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        tracing::info!(pod = %format!("{ns}/{name}"), "pod garbage collector: force-deleting");
        self.pods.delete(&ns, &name, &opts).await
    }
}

impl Reconciler for PodGc {
    type Key = ();
    const NAME: &'static str = "pod_garbage_collector";

    fn initial_keys(&mut self) -> Vec<()> {
        vec![()]
    }

    async fn keys_for(&mut self, _kind: usize, event: &WatchEvent) -> Vec<()> {
        if let WatchEvent::Deleted(o) = event {
            self.missing_since
                .entry(meta::name(o).to_string())
                .or_insert_with(Instant::now);
        }
        Vec::new()
    }

    async fn reconcile(&mut self, _key: &()) -> Result<Action, Error> {
        let pods = self.pods.list("").await?;
        let nodes = self.nodes.list("").await?;
        let by_name: HashMap<&str, &Node> = nodes
            .iter()
            .filter_map(|n| Some((n.metadata.name.as_deref()?, n)))
            .collect();
        let mut deleted: HashSet<(String, String)> = HashSet::new();

        // Terminated pods over the threshold, oldest first.
        if self.threshold > 0 {
            let mut terminated: Vec<&Pod> = pods
                .iter()
                .filter(|p| {
                    matches!(phase(p), "Succeeded" | "Failed")
                        && p.metadata.deletion_timestamp.is_none()
                })
                .collect();
            if terminated.len() > self.threshold {
                terminated
                    .sort_by_key(|p| (p.metadata.creation_timestamp.as_ref().map(|t| t.0), key(p)));
                let surplus = terminated.len() - self.threshold;
                for p in terminated.into_iter().take(surplus) {
                    self.force_delete(p, None).await?;
                    deleted.insert(key(p));
                }
            }
        }

        // Pods on nodes that are gone, after the quarantine.
        let quarantine = self.period * 2;
        let now = Instant::now();
        let bound: HashSet<&str> = pods.iter().map(node_of).filter(|n| !n.is_empty()).collect();
        self.missing_since
            .retain(|n, _| !by_name.contains_key(n.as_str()) && bound.contains(n.as_str()));
        for n in &bound {
            if !by_name.contains_key(n) {
                self.missing_since.entry((*n).to_string()).or_insert(now);
            }
        }
        for p in &pods {
            let node = node_of(p);
            if node.is_empty() || by_name.contains_key(node) || deleted.contains(&key(p)) {
                continue;
            }
            let lost = self
                .missing_since
                .get(node)
                .is_some_and(|t| now.duration_since(*t) >= quarantine);
            // Checked once more against the store: it may have come back.
            if lost && self.nodes.get("", node).await?.is_none() {
                self.force_delete(p, Some("PodGC: node no longer exists"))
                    .await?;
                deleted.insert(key(p));
            }
        }

        // Terminating pods that can never finish.
        for p in &pods {
            if p.metadata.deletion_timestamp.is_none() || deleted.contains(&key(p)) {
                continue;
            }
            let node = node_of(p);
            let out_of_service = by_name.get(node).is_some_and(|n| {
                let not_ready = n
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                    .is_none_or(|c| c.status != "True");
                let tainted = n
                    .spec
                    .as_ref()
                    .and_then(|s| s.taints.as_ref())
                    .is_some_and(|t| t.iter().any(|t| t.key == OUT_OF_SERVICE));
                not_ready && tainted
            });
            if node.is_empty() {
                self.force_delete(p, Some("PodGC: pod is terminating and unscheduled"))
                    .await?;
            } else if out_of_service {
                self.force_delete(p, Some("PodGC: node is out-of-service"))
                    .await?;
            }
        }
        Ok(Action::requeue(self.period))
    }
}
