//! The node lifecycle controller (upstream `pkg/controller/nodelifecycle`):
//! every `--node-monitor-period` it checks each node's heartbeats — its
//! Ready condition's `lastHeartbeatTime` and its Lease in
//! `kube-node-lease` — and a node silent for `--node-monitor-grace-period`
//! (40 s; `--node-startup-grace-period` for a node that never reported)
//! gets its Ready, MemoryPressure, DiskPressure and PIDPressure conditions
//! set to Unknown (`NodeStatusUnknown`, "Kubelet stopped posting node
//! status."). When Ready leaves True this way, the node gets a
//! `NodeNotReady` event and its pods `Ready=False`.
//!
//! Taints follow the conditions: NoSchedule taints for not-ready,
//! unreachable, the pressures, network-unavailable and unschedulable at
//! once; the NoExecute `not-ready`/`unreachable` taint that makes
//! the taint eviction controller evict pods is added at most `--node-eviction-rate`
//! (0.1/s) per zone, not at all in a zone in partial disruption (unless it
//! is large), and not anywhere while every zone is fully disrupted (then the
//! problem is more likely the control plane's, as upstream reasons); it is
//! removed as soon as the node is Ready again.

mod taints;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;
use tokio::time::Instant;

use super::Error;
use super::client::Api;
use super::events::{EventRecorder, EventType};
use super::runtime::{Action, Reconciler};
use super::typed::Typed;
use crate::registry::{WatchEvent, meta};
use taints::{
    TAINT_NOT_READY_KEY, TAINT_UNREACHABLE_KEY, ZoneLimiter, ZoneState, condition, has_no_execute,
    ready_status, set_no_execute, sync_no_schedule, wanted_no_execute, zone_of, zone_state,
};

/// The namespace of the nodes' Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// The conditions set to Unknown when a node goes silent.
const MONITORED: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// Settings (kube-controller-manager's flags).
#[derive(Debug, Clone)]
pub struct NodeLifecycleOptions {
    /// `--node-monitor-period` (5 s).
    pub monitor_period: Duration,
    /// `--node-monitor-grace-period` (40 s).
    pub monitor_grace_period: Duration,
    /// `--node-startup-grace-period` (60 s).
    pub startup_grace_period: Duration,
    /// `--node-eviction-rate` (0.1 nodes per second and zone).
    pub eviction_rate: f64,
    /// `--secondary-node-eviction-rate` (0.01), in partially disrupted large zones.
    pub secondary_eviction_rate: f64,
    /// `--large-cluster-size-threshold` (50 nodes).
    pub large_cluster_threshold: usize,
    /// `--unhealthy-zone-threshold` (0.55).
    pub unhealthy_zone_threshold: f64,
}

impl Default for NodeLifecycleOptions {
    fn default() -> Self {
        NodeLifecycleOptions {
            monitor_period: Duration::from_secs(5),
            monitor_grace_period: Duration::from_secs(40),
            startup_grace_period: Duration::from_secs(60),
            eviction_rate: 0.1,
            secondary_eviction_rate: 0.01,
            large_cluster_threshold: 50,
            unhealthy_zone_threshold: 0.55,
        }
    }
}

/// What the controller last saw of a node's heartbeats.
#[derive(Debug)]
struct Health {
    /// When a heartbeat was last seen (local, monotonic).
    probe: Instant,
    heartbeat: Option<Timestamp>,
    lease: Option<Timestamp>,
    /// The Ready status after the last pass.
    ready: Option<String>,
    /// Marking its pods not ready failed; try again.
    retry_pods: bool,
}

/// The node lifecycle controller; one key, the monitor pass.
#[derive(Debug)]
pub(crate) struct NodeLifecycle {
    nodes: Typed<Node>,
    pods: Typed<Pod>,
    opts: NodeLifecycleOptions,
    healths: HashMap<String, Health>,
    leases: HashMap<String, Timestamp>,
    limiter: ZoneLimiter,
    all_disrupted: bool,
    events: EventRecorder,
}

fn renew_time(lease: &Value) -> Option<Timestamp> {
    lease.pointer("/spec/renewTime")?.as_str()?.parse().ok()
}

fn heartbeat(node: &Node) -> Option<Timestamp> {
    condition(node, "Ready")
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0)
}

fn value_of<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or_default()
}

/// Sets the monitored conditions of a silent node to Unknown (upstream's
/// `tryUpdateNodeHealth`); whether anything changed.
fn mark_unknown(node: &mut Node, now: Timestamp) -> bool {
    let created = node.metadata.creation_timestamp.clone();
    let status = node.status.get_or_insert_with(Default::default);
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let mut changed = false;
    for ty in MONITORED {
        match conditions.iter_mut().find(|c| c.type_ == ty) {
            Some(c) if c.status != "Unknown" => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            Some(_) => {}
            None => {
                conditions.push(NodeCondition {
                    type_: ty.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: created.clone(),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
        }
    }
    changed
}

impl NodeLifecycle {
    /// Watches 0: nodes, 1: leases.
    pub(crate) fn new(
        nodes: Typed<Node>,
        pods: Typed<Pod>,
        events: Api,
        opts: NodeLifecycleOptions,
    ) -> Self {
        NodeLifecycle {
            nodes,
            pods,
            opts,
            healths: HashMap::new(),
            leases: HashMap::new(),
            limiter: ZoneLimiter::default(),
            all_disrupted: false,
            events: EventRecorder::new(events, "node-controller"),
        }
    }

    /// upstream's `MarkPodsNotReady`: the Ready condition of the node's pods goes False.
    async fn mark_pods_not_ready(&self, node: &str) -> Result<(), Error> {
        let now = meta::now();
        for pod in self
            .pods
            .list_fields("", &format!("spec.nodeName={node}"))
            .await?
        {
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
            if ready.is_none_or(|c| c.status == "False") {
                continue;
            }
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let result = self
                .pods
                .edit_status(&ns, &name, |p| {
                    let Some(c) = p
                        .status
                        .as_mut()
                        .and_then(|s| s.conditions.as_mut())
                        .and_then(|c| c.iter_mut().find(|c| c.type_ == "Ready"))
                    else {
                        return false;
                    };
                    if c.status == "False" {
                        return false;
                    }
                    c.status = "False".into();
                    c.last_transition_time = Some(Time(now));
                    true
                })
                .await;
            match result {
                Ok(p) => {
                    self.events
                        .record(
                            &value_of(&p),
                            EventType::Warning,
                            "NodeNotReady",
                            "Node is not ready",
                        )
                        .await;
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// One node's health check; returns the node as it now is.
    async fn check(&mut self, node: Node) -> Result<Node, Error> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let now = Instant::now();
        let beat = heartbeat(&node);
        let lease = self.leases.get(&name).copied();
        let fresh = !self.healths.contains_key(&name);
        self.healths.entry(name.clone()).or_insert_with(|| Health {
            probe: now,
            heartbeat: beat,
            lease,
            ready: ready_status(&node).map(str::to_string),
            retry_pods: false,
        });
        if fresh {
            let message = format!("Registered Node {name} in Controller");
            self.events
                .record(
                    &value_of(&node),
                    EventType::Normal,
                    "RegisteredNode",
                    &message,
                )
                .await;
        }
        let h = self
            .healths
            .get_mut(&name)
            .ok_or(Error::MissingResource("nodes"))?;
        if beat != h.heartbeat {
            h.heartbeat = beat;
            h.probe = now;
        }
        if lease.is_some_and(|l| h.lease.is_none_or(|seen| l > seen)) {
            h.lease = lease;
            h.probe = now;
        }
        let grace = if condition(&node, "Ready").is_some() {
            self.opts.monitor_grace_period
        } else {
            self.opts.startup_grace_period
        };
        let observed = h.ready.clone();
        let silent = now.duration_since(h.probe) > grace;
        let mut node = node;
        if silent {
            let decided_on = beat;
            let ts = Timestamp::now();
            match self
                .nodes
                .edit_status("", &name, |n| {
                    heartbeat(n) == decided_on && mark_unknown(n, ts)
                })
                .await
            {
                Ok(n) => node = n,
                Err(e) if e.is_not_found() => return Ok(node),
                Err(e) => return Err(e),
            }
        }
        let current = ready_status(&node).map(str::to_string);
        let went_down = observed.as_deref() == Some("True") && current.as_deref() != Some("True");
        let retry = self.healths.get(&name).is_some_and(|h| h.retry_pods)
            && current.as_deref() != Some("True");
        if went_down {
            let message = format!("Node {name} status is now: NodeNotReady");
            self.events
                .record(
                    &value_of(&node),
                    EventType::Normal,
                    "NodeNotReady",
                    &message,
                )
                .await;
        }
        let mut retry_pods = false;
        if (went_down || retry)
            && let Err(e) = self.mark_pods_not_ready(&name).await
        {
            tracing::warn!(node = %name, error = %e.one_line(), "marking pods not ready failed; retrying next pass");
            retry_pods = true;
        }
        if let Some(h) = self.healths.get_mut(&name) {
            h.ready = current;
            h.retry_pods = retry_pods;
        }
        Ok(node)
    }

    /// Writes the node's taints: NoSchedule from its conditions, the
    /// NoExecute one as decided.
    async fn taint(&self, node: &Node, no_execute: Option<&'static str>) -> Result<(), Error> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let now = meta::now();
        let mut probe = node.clone();
        let a = sync_no_schedule(&mut probe);
        let b = set_no_execute(&mut probe, no_execute, now);
        if !(a || b) {
            return Ok(());
        }
        match self
            .nodes
            .edit("", &name, |n| {
                let a = sync_no_schedule(n);
                let b = set_no_execute(n, no_execute, now);
                a || b
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Reconciler for NodeLifecycle {
    type Key = ();
    const NAME: &'static str = "node_lifecycle_controller";

    fn initial_keys(&mut self) -> Vec<()> {
        vec![()]
    }

    async fn keys_for(&mut self, kind: usize, event: &WatchEvent) -> Vec<()> {
        match (kind, event) {
            (1, WatchEvent::Added(o) | WatchEvent::Modified(o))
                if meta::namespace(o) == NODE_LEASE_NAMESPACE =>
            {
                if let Some(t) = renew_time(o) {
                    self.leases.insert(meta::name(o).to_string(), t);
                }
                Vec::new()
            }
            (1, WatchEvent::Deleted(o)) if meta::namespace(o) == NODE_LEASE_NAMESPACE => {
                self.leases.remove(meta::name(o));
                Vec::new()
            }
            (0, WatchEvent::Added(o) | WatchEvent::Modified(o)) => {
                let ready = o
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .and_then(|c| {
                        c.iter()
                            .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
                    })
                    .and_then(|c| c.get("status"))
                    .and_then(Value::as_str);
                // A new node, or one whose readiness changed: look now.
                match self.healths.get(meta::name(o)) {
                    Some(h) if h.ready.as_deref() == ready => Vec::new(),
                    _ => vec![()],
                }
            }
            (0, WatchEvent::Deleted(_)) => vec![()],
            _ => Vec::new(),
        }
    }

    async fn reconcile(&mut self, _key: &()) -> Result<Action, Error> {
        let listed = self.nodes.list("").await?;
        let names: HashSet<String> = listed
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        self.healths.retain(|n, _| names.contains(n));
        let mut nodes = Vec::with_capacity(listed.len());
        for node in listed {
            nodes.push(self.check(node).await?);
        }
        let mut zones: HashMap<String, Vec<Option<&str>>> = HashMap::new();
        for n in &nodes {
            zones.entry(zone_of(n)).or_default().push(ready_status(n));
        }
        let states: HashMap<&String, (ZoneState, usize)> = zones
            .iter()
            .map(|(z, st)| {
                (
                    z,
                    (zone_state(st, self.opts.unhealthy_zone_threshold), st.len()),
                )
            })
            .collect();
        let all_disrupted = !states.is_empty()
            && states
                .values()
                .all(|(s, _)| *s == ZoneState::FullDisruption);
        if all_disrupted != self.all_disrupted {
            if all_disrupted {
                tracing::info!(
                    "Controller detected that all Nodes are not-Ready. Entering master disruption mode."
                );
            } else {
                tracing::info!(
                    "Controller detected that some Nodes are Ready. Exiting master disruption mode."
                );
            }
            self.all_disrupted = all_disrupted;
        }
        for n in &nodes {
            let want = if all_disrupted {
                None
            } else {
                wanted_no_execute(ready_status(n))
            };
            let current = [TAINT_NOT_READY_KEY, TAINT_UNREACHABLE_KEY]
                .into_iter()
                .find(|k| has_no_execute(n, k));
            let next = match (want, current) {
                (None, _) => None,
                // Kept, or swapped at once.
                (Some(w), Some(_)) => Some(w),
                // A new NoExecute taint is rate limited per zone.
                (Some(w), None) => {
                    let zone = zone_of(n);
                    let (state, size) =
                        states.get(&zone).copied().unwrap_or((ZoneState::Normal, 0));
                    let qps = match state {
                        ZoneState::Normal | ZoneState::FullDisruption => self.opts.eviction_rate,
                        ZoneState::PartialDisruption
                            if size > self.opts.large_cluster_threshold =>
                        {
                            self.opts.secondary_eviction_rate
                        }
                        ZoneState::PartialDisruption => 0.0,
                    };
                    self.limiter.try_take(&zone, qps).then_some(w)
                }
            };
            self.taint(n, next).await?;
        }
        Ok(Action::requeue(self.opts.monitor_period))
    }
}
