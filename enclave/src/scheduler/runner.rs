//! The scheduler's loop: it applies watch events to the cache, the
//! listers and the queue, and schedules one pod at a time (upstream's
//! `ScheduleOne`), handing binds and status writes to the [`Writer`].
//! It runs alone on its own thread, so the cache needs no locks.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::cache::Cache;
use super::framework::{Ctx, CycleState, events};
use super::informer::{Event, Kind, Object};
use super::listers::Listers;
use super::metrics::{AttemptResult, SchedulerMetrics};
use super::node_info::{NodeData, NodeInfo};
use super::plugins::{node_affinity, node_ports, resources_fit, taint_toleration};
use super::pod_info::PodInfo;
use super::preemption::preempt;
use super::queue::{QueuedPod, SchedulingQueue};
use super::schedule_one::{Algorithm, FilterEnv};
use super::writer::{BindResult, Writer};

/// How often stale unschedulable pods are flushed (upstream: 30 s).
const FLUSH_INTERVAL: Duration = Duration::from_secs(30);

/// The loop's state.
pub(crate) struct Runner {
    pub(crate) alg: Algorithm,
    pub(crate) cache: Cache,
    pub(crate) listers: Listers,
    pub(crate) queue: SchedulingQueue,
    pub(crate) events: mpsc::Receiver<Event>,
    pub(crate) results: mpsc::UnboundedReceiver<BindResult>,
    pub(crate) writer: Writer,
    pub(crate) metrics: Arc<SchedulerMetrics>,
    /// The kinds whose first list arrived; scheduling waits for pods and nodes.
    pub(crate) synced: HashSet<Kind>,
    /// Ends the loop.
    pub(crate) stop: CancellationToken,
}

/// upstream's `preCheckForNode`: whether `pod` could fit `node` at all
/// (resources, node name and affinity, ports, `NoSchedule` taints).
fn could_fit(pod: &PodInfo, node: &NodeInfo) -> bool {
    resources_fit::insufficient(pod, node).0.is_empty()
        && (pod.node_name.is_empty() || pod.node_name == node.name())
        && node_affinity::required_matches(pod, node)
        && node_ports::fits(pod, node)
        && taint_toleration::untolerated(&node.node.taints, &pod.tolerations, |t| {
            t.effect == "NoSchedule"
        })
        .is_none()
}

/// The events a node change amounts to (upstream's `nodeSchedulingPropertiesChange`).
fn node_change(old: &NodeData, new: &NodeData) -> u32 {
    let mut e = 0;
    if old.allocatable != new.allocatable {
        e |= events::NODE_ALLOCATABLE;
    }
    if old.labels != new.labels {
        e |= events::NODE_LABEL;
    }
    if old.taints != new.taints || old.unschedulable != new.unschedulable {
        e |= events::NODE_TAINT;
    }
    e
}

/// Whether a pod event concerns `q` (upstream's
/// `getUnschedulablePodsWithCrossTopologyTerm`): it was rejected by
/// PodTopologySpread, or has an affinity term matching `other`.
fn cross_topology(q: &QueuedPod, spread_bit: u64, other: &PodInfo) -> bool {
    let p = &q.pod;
    q.rejected_by & spread_bit != 0
        || p.required_affinity.iter().any(|t| t.matches(other, None))
        || p.required_anti_affinity
            .iter()
            .any(|t| t.matches(other, None))
        || p.preferred_affinity
            .iter()
            .any(|t| t.term.matches(other, None))
        || p.preferred_anti_affinity
            .iter()
            .any(|t| t.term.matches(other, None))
}

impl Runner {
    /// Runs until `stop`.
    pub(crate) async fn run(mut self) {
        let mut flush = tokio::time::interval(FLUSH_INTERVAL);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.stop.is_cancelled() {
                break;
            }
            while let Ok(ev) = self.events.try_recv() {
                self.handle(ev);
            }
            while let Ok(r) = self.results.try_recv() {
                self.on_bound(r);
            }
            let now = Instant::now();
            let next_backoff = self.queue.flush_backoff(now);
            let ready = self.synced.contains(&Kind::Pods) && self.synced.contains(&Kind::Nodes);
            if ready && self.queue.has_active() {
                self.schedule_one(now);
                self.metrics.set_pending(self.queue.pending());
                continue;
            }
            self.metrics.set_pending(self.queue.pending());
            let sleep = async {
                match next_backoff {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.stop.cancelled() => break,
                ev = self.events.recv() => match ev {
                    Some(ev) => self.handle(ev),
                    None => break,
                },
                Some(r) = self.results.recv() => self.on_bound(r),
                () = sleep => {}
                _ = flush.tick() => self.queue.flush_unschedulable(Instant::now()),
            }
        }
        tracing::debug!("scheduler stopped");
    }

    fn spread_bit(&self) -> u64 {
        self.alg
            .profile
            .plugins
            .iter()
            .position(|p| p.name() == "PodTopologySpread")
            .map_or(0, |i| 1 << i)
    }

    fn handle(&mut self, ev: Event) {
        let now = Instant::now();
        match ev {
            Event::Synced(kind, objects) => {
                self.synced.insert(kind);
                self.resync(kind, objects, now);
            }
            Event::Upsert(_, Object::Pod(p)) => self.pod_changed(p, now),
            Event::Deleted(_, Object::Pod(p)) => self.pod_deleted(&p, now),
            Event::Upsert(_, Object::Node(n)) => self.node_changed(n, now),
            Event::Deleted(_, Object::Node(n)) => {
                self.cache.remove_node(&n.name);
                self.queue.on_event(events::NODE_DELETE, now, |_| true);
            }
            Event::Upsert(
                Kind::Lister(k),
                Object::Lister {
                    namespace,
                    name,
                    value,
                },
            ) => {
                self.listers.apply(k, &namespace, &name, value);
                self.lister_event(k, now);
            }
            Event::Deleted(
                Kind::Lister(k),
                Object::Lister {
                    namespace, name, ..
                },
            ) => {
                self.listers.apply(k, &namespace, &name, None);
                self.lister_event(k, now);
            }
            Event::Upsert(..) | Event::Deleted(..) => {}
        }
    }

    fn lister_event(&mut self, kind: super::listers::ListerKind, now: Instant) {
        use super::listers::ListerKind;
        let e = match kind {
            ListerKind::Claims => events::CLAIM,
            ListerKind::Volumes => events::VOLUME,
            ListerKind::Classes => events::STORAGE_CLASS,
            ListerKind::Namespaces => events::NAMESPACE,
            _ => return,
        };
        self.queue.on_event(e, now, |_| true);
    }

    /// Replaces everything of `kind` with a fresh list.
    fn resync(&mut self, kind: Kind, objects: Vec<Object>, now: Instant) {
        match kind {
            Kind::Pods => {
                let seen: HashSet<String> = objects
                    .iter()
                    .filter_map(|o| match o {
                        Object::Pod(p) => Some(p.uid.clone()),
                        _ => None,
                    })
                    .collect();
                let mut known = self.cache.pod_uids();
                known.extend(self.queue.uids());
                let stale: Vec<String> = known.into_iter().filter(|u| !seen.contains(u)).collect();
                for uid in stale {
                    if let Some(p) = self.cache.remove_pod(&uid) {
                        self.pod_deleted(&p, now);
                    }
                    self.queue.remove(&uid);
                }
                for o in objects {
                    if let Object::Pod(p) = o {
                        self.pod_changed(p, now);
                    }
                }
            }
            Kind::Nodes => {
                let seen: HashSet<String> = objects
                    .iter()
                    .filter_map(|o| match o {
                        Object::Node(n) => Some(n.name.clone()),
                        _ => None,
                    })
                    .collect();
                self.cache.refresh();
                let gone: Vec<String> = self
                    .cache
                    .nodes()
                    .map(|n| n.name().to_string())
                    .filter(|n| !seen.contains(n))
                    .collect();
                for n in gone {
                    self.cache.remove_node(&n);
                }
                for o in objects {
                    if let Object::Node(n) = o {
                        self.node_changed(n, now);
                    }
                }
            }
            Kind::Lister(k) => {
                self.listers.clear(k);
                for o in objects {
                    if let Object::Lister {
                        namespace,
                        name,
                        value,
                    } = o
                    {
                        self.listers.apply(k, &namespace, &name, value);
                    }
                }
                self.lister_event(k, now);
            }
        }
    }

    fn node_changed(&mut self, node: Arc<NodeData>, now: Instant) {
        let old = self
            .cache
            .node(&node.name)
            .filter(|n| n.present)
            .map(|n| n.node.clone());
        let event = match &old {
            None => events::NODE_ADD,
            Some(o) => node_change(o, &node),
        };
        self.cache.upsert_node((*node).clone());
        if event == 0 || !self.queue.has_unschedulable() {
            return;
        }
        if let Some(info) = self.cache.node(&node.name) {
            let info = info.clone();
            self.queue
                .on_event(event, now, |q| could_fit(&q.pod, &info));
        }
    }

    fn pod_changed(&mut self, pod: Arc<PodInfo>, now: Instant) {
        if pod.is_assigned() {
            self.queue.remove(&pod.uid);
            let was = self.cache.has_pod(&pod.uid) && !self.cache.is_assumed(&pod.uid);
            let old_labels = self.cache.node(&pod.node_name).and_then(|n| {
                n.pods
                    .iter()
                    .find(|p| p.uid == pod.uid)
                    .map(|p| p.labels.clone())
            });
            self.cache.add_pod(pod.clone());
            let event = if !was {
                events::POD_ADD
            } else if old_labels.as_ref() != Some(&pod.labels) {
                events::POD_LABEL
            } else {
                return;
            };
            let spread = self.spread_bit();
            self.queue
                .on_event(event, now, |q| cross_topology(q, spread, &pod));
            return;
        }
        if self.cache.is_assumed(&pod.uid) {
            // Our bind is in flight; this is an older version.
            return;
        }
        if pod.scheduler_name != super::DEFAULT_SCHEDULER_NAME || pod.deleting {
            self.queue.remove(&pod.uid);
            return;
        }
        self.queue.add_or_update(pod, now);
    }

    fn pod_deleted(&mut self, pod: &PodInfo, now: Instant) {
        let nominated = self.queue.nomination_of(&pod.uid).is_some();
        self.queue.remove(&pod.uid);
        let counted = self.cache.remove_pod(&pod.uid).is_some();
        if counted || nominated || pod.is_assigned() {
            self.queue.on_event(events::POD_DELETE, now, |_| true);
        }
    }

    fn on_bound(&mut self, r: BindResult) {
        let uid = r.pod.uid.clone();
        match r.error {
            None => {
                self.metrics
                    .observe_attempt(AttemptResult::Scheduled, r.started.elapsed());
            }
            Some(err) => {
                self.metrics
                    .observe_attempt(AttemptResult::Error, r.started.elapsed());
                if self.cache.is_assumed(&uid) {
                    self.cache.remove_pod(&uid);
                }
                let now = Instant::now();
                self.queue.on_event(events::POD_DELETE, now, |_| true);
                if r.settled {
                    tracing::debug!(pod = %r.pod.key(), error = %err, "bind not needed any more");
                    return;
                }
                tracing::info!(pod = %r.pod.key(), error = %err, "bind failed; retrying after backoff");
                let mut pending = (*r.pod).clone();
                pending.node_name.clear();
                let pending = Arc::new(pending);
                self.queue.add_or_update(pending.clone(), now);
                self.queue.requeue_failed(&uid, 0, 0, true, now);
                let msg = format!("running Bind plugin \"DefaultBinder\": {err}");
                self.writer.failed(pending, "SchedulerError", msg, None);
            }
        }
    }

    fn schedule_one(&mut self, now: Instant) {
        let Some(queued) = self.queue.pop(now) else {
            return;
        };
        self.cache.refresh();
        let pod = queued.pod.clone();
        if pod.deleting || self.cache.has_pod(&pod.uid) {
            self.queue.done(&pod.uid);
            return;
        }
        let started = Instant::now();
        let _span = tracing::debug_span!("schedule", object.ref = %pod.key()).entered();
        if self.cache.num_nodes() == 0 {
            self.queue.requeue_failed(&pod.uid, 0, 0, false, now);
            self.metrics
                .observe_attempt(AttemptResult::Unschedulable, started.elapsed());
            self.writer.failed(
                pod,
                "Unschedulable",
                "no nodes available to schedule pods".into(),
                None,
            );
            return;
        }
        match self
            .alg
            .schedule(&pod, &self.cache, &self.listers, &self.queue)
        {
            Ok(placement) => {
                let mut assumed = (*pod).clone();
                assumed.node_name = placement.node;
                let assumed = Arc::new(assumed);
                self.cache.assume_pod(assumed.clone());
                self.queue.done(&pod.uid);
                self.writer.bind(assumed, started);
            }
            Err(mut diagnosis) => {
                let num_nodes = self.cache.num_nodes();
                let cx = Ctx {
                    pod: &pod,
                    cache: &self.cache,
                    listers: &self.listers,
                };
                let state = self
                    .alg
                    .pre_filter(&cx)
                    .map(|(s, _, _)| s)
                    .unwrap_or_else(|_| CycleState::default());
                let random = self.alg.next_random();
                let env = FilterEnv {
                    profile: &self.alg.profile,
                    cx,
                    queue: &self.queue,
                };
                let outcome = preempt(&env, &state, &diagnosis, random);
                diagnosis.postfilter_msg =
                    outcome.message.as_ref().map(|m| format!("preemption: {m}"));
                let message = diagnosis.message(num_nodes);
                tracing::debug!(pod = %pod.key(), %message, "unschedulable");
                if let Some(node) = &outcome.nominate {
                    self.queue.nominate(&pod, node);
                    if !node.is_empty() {
                        self.writer.preempt(
                            pod.clone(),
                            node.clone(),
                            outcome.victims,
                            outcome.displaced,
                        );
                    }
                }
                let wake = if diagnosis.rejected_by == 0 {
                    0
                } else {
                    self.alg.profile.events_of(diagnosis.rejected_by)
                };
                self.queue
                    .requeue_failed(&pod.uid, diagnosis.rejected_by, wake, false, now);
                self.metrics
                    .observe_attempt(AttemptResult::Unschedulable, started.elapsed());
                self.writer
                    .failed(pod, "Unschedulable", message, outcome.nominate);
            }
        }
    }
}
