//! The scheduling queue (upstream's `PriorityQueue`): pods ready to try
//! (activeQ, by priority then arrival), pods waiting out a backoff
//! (backoffQ: 1 s doubling to 10 s per attempt), pods that did not fit
//! (unschedulable, until a cluster event that could help them, or 5
//! minutes), and gated pods (`schedulingGates`, until their gates are
//! removed). It also keeps the nominator: pods nominated to a node by
//! preemption, which lower-priority pods must leave room for.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pod_info::PodInfo;

/// The first backoff (upstream's `podInitialBackoffDuration`).
pub(crate) const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// The longest backoff (upstream's `podMaxBackoffDuration`).
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a pod stays unschedulable without an event before it is
/// retried anyway (upstream's `podMaxInUnschedulablePodsDuration`).
pub(crate) const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);

/// A pod in the queue.
#[derive(Debug, Clone)]
pub(crate) struct QueuedPod {
    /// The pod.
    pub(crate) pod: Arc<PodInfo>,
    /// When it was (re-)queued: orders equal priorities and starts its backoff.
    pub(crate) timestamp: Instant,
    /// Scheduling attempts so far.
    pub(crate) attempts: u32,
    /// When it was first tried.
    pub(crate) initial_attempt: Option<Instant>,
    /// Plugins (profile bits) that rejected it last time.
    pub(crate) rejected_by: u64,
    /// The cluster events that could make it schedulable (all when 0).
    pub(crate) wake_on: u32,
}

/// Where a queued pod is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    Active,
    Backoff,
    Unschedulable,
    Gated,
    /// Popped and being scheduled.
    InFlight,
}

#[derive(Debug, PartialEq, Eq)]
struct ActiveKey {
    priority: i32,
    timestamp: Instant,
    seq: u64,
    uid: String,
}

impl Ord for ActiveKey {
    fn cmp(&self, other: &Self) -> Ordering {
        // Max-heap: higher priority first, then earlier timestamp.
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.timestamp.cmp(&self.timestamp))
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for ActiveKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug)]
struct Entry {
    queued: QueuedPod,
    place: Where,
    /// Matches the heap key that is current for this entry.
    seq: u64,
}

/// How many pods are in each part, for `scheduler_pending_pods`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Pending {
    /// activeQ.
    pub(crate) active: usize,
    /// backoffQ.
    pub(crate) backoff: usize,
    /// Unschedulable pods.
    pub(crate) unschedulable: usize,
    /// Gated pods.
    pub(crate) gated: usize,
}

/// The queue and the nominator.
#[derive(Debug, Default)]
pub(crate) struct SchedulingQueue {
    entries: HashMap<String, Entry>,
    active: BinaryHeap<ActiveKey>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    seq: u64,
    pending: Pending,
    /// The uids of the unschedulable pods (events and the flush scan
    /// these, not the whole queue).
    unschedulable: HashSet<String>,
    /// node → pods nominated to it.
    nominated: HashMap<String, Vec<Arc<PodInfo>>>,
}

/// The backoff after `attempts` attempts.
pub(crate) fn backoff_duration(attempts: u32) -> Duration {
    let mut d = INITIAL_BACKOFF;
    for _ in 1..attempts.max(1) {
        d = d.saturating_mul(2);
        if d >= MAX_BACKOFF {
            return MAX_BACKOFF;
        }
    }
    d
}

impl QueuedPod {
    fn backoff_expiry(&self) -> Instant {
        self.timestamp + backoff_duration(self.attempts)
    }
}

impl SchedulingQueue {
    /// An empty queue.
    pub(crate) fn new() -> Self {
        SchedulingQueue::default()
    }

    fn count(&mut self, place: Where, delta: isize) {
        let c = match place {
            Where::Active => &mut self.pending.active,
            Where::Backoff => &mut self.pending.backoff,
            Where::Unschedulable => &mut self.pending.unschedulable,
            Where::Gated => &mut self.pending.gated,
            Where::InFlight => return,
        };
        *c = c.saturating_add_signed(delta);
    }

    /// Puts an entry at `place` (pushing the heap key it needs).
    fn place(&mut self, uid: &str, place: Where) {
        self.seq += 1;
        let seq = self.seq;
        let Some(e) = self.entries.get_mut(uid) else {
            return;
        };
        let old = e.place;
        e.place = place;
        e.seq = seq;
        let key = (
            e.queued.pod.priority,
            e.queued.timestamp,
            e.queued.backoff_expiry(),
        );
        self.count(old, -1);
        self.count(place, 1);
        if old == Where::Unschedulable && place != Where::Unschedulable {
            self.unschedulable.remove(uid);
        } else if place == Where::Unschedulable && old != Where::Unschedulable {
            self.unschedulable.insert(uid.to_string());
        }
        match place {
            Where::Active => self.active.push(ActiveKey {
                priority: key.0,
                timestamp: key.1,
                seq,
                uid: uid.to_string(),
            }),
            Where::Backoff => self.backoff.push(Reverse((key.2, seq, uid.to_string()))),
            _ => {}
        }
    }

    /// Where a new or newly ready pod goes: gated pods wait for their gates.
    fn enqueue(&mut self, uid: &str, now: Instant) {
        let Some(e) = self.entries.get(uid) else {
            return;
        };
        let target = if e.queued.pod.gated {
            Where::Gated
        } else if e.queued.attempts > 0 && e.queued.backoff_expiry() > now {
            Where::Backoff
        } else {
            Where::Active
        };
        self.place(uid, target);
    }

    /// Adds a new unscheduled pod (or updates a queued one as upstream's
    /// `Update` does: a changed pod waiting as unschedulable is retried).
    pub(crate) fn add_or_update(&mut self, pod: Arc<PodInfo>, now: Instant) {
        self.update_nominated(&pod);
        let uid = pod.uid.clone();
        match self.entries.get_mut(&uid) {
            None => {
                self.entries.insert(
                    uid.clone(),
                    Entry {
                        queued: QueuedPod {
                            pod,
                            timestamp: now,
                            attempts: 0,
                            initial_attempt: None,
                            rejected_by: 0,
                            wake_on: 0,
                        },
                        place: Where::InFlight,
                        seq: 0,
                    },
                );
                self.enqueue(&uid, now);
            }
            Some(e) => {
                let changed = e.queued.pod.spec_hash != pod.spec_hash;
                e.queued.pod = pod;
                match e.place {
                    // The heap keys stay valid: priority cannot change.
                    Where::Active | Where::Backoff | Where::InFlight => {}
                    Where::Unschedulable | Where::Gated if changed => self.enqueue(&uid, now),
                    Where::Gated => {
                        if !self.entries.get(&uid).is_some_and(|e| e.queued.pod.gated) {
                            self.enqueue(&uid, now);
                        }
                    }
                    Where::Unschedulable => {}
                }
            }
        }
    }

    /// Removes a pod (deleted, bound, or no longer ours).
    pub(crate) fn remove(&mut self, uid: &str) {
        if let Some(e) = self.entries.remove(uid) {
            self.count(e.place, -1);
            if e.place == Where::Unschedulable {
                self.unschedulable.remove(uid);
            }
        }
        self.clear_nominated(uid);
    }

    /// Moves pods whose backoff is over to activeQ; returns when the
    /// next backoff ends.
    pub(crate) fn flush_backoff(&mut self, now: Instant) -> Option<Instant> {
        while let Some(Reverse((expiry, seq, uid))) = self.backoff.peek().cloned() {
            let current = self
                .entries
                .get(&uid)
                .is_some_and(|e| e.place == Where::Backoff && e.seq == seq);
            if !current {
                self.backoff.pop();
                continue;
            }
            if expiry > now {
                return Some(expiry);
            }
            self.backoff.pop();
            self.place(&uid, Where::Active);
        }
        None
    }

    /// Retries pods unschedulable for longer than [`MAX_UNSCHEDULABLE`].
    pub(crate) fn flush_unschedulable(&mut self, now: Instant) {
        let stale: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|u| {
                self.entries
                    .get(*u)
                    .is_some_and(|e| now.duration_since(e.queued.timestamp) > MAX_UNSCHEDULABLE)
            })
            .cloned()
            .collect();
        for uid in stale {
            self.enqueue(&uid, now);
        }
    }

    /// Pops the next pod to schedule (highest priority, then oldest).
    pub(crate) fn pop(&mut self, now: Instant) -> Option<QueuedPod> {
        while let Some(key) = self.active.pop() {
            let Some(e) = self.entries.get_mut(&key.uid) else {
                continue;
            };
            if e.place != Where::Active || e.seq != key.seq {
                continue;
            }
            e.queued.attempts += 1;
            e.queued.initial_attempt.get_or_insert(now);
            let q = e.queued.clone();
            self.place(&key.uid, Where::InFlight);
            return Some(q);
        }
        None
    }

    /// Requeues a pod whose attempt failed: unschedulable until an event
    /// in `wake_on` (any event when 0), or (`backoff_only`, an error)
    /// straight to backoff.
    pub(crate) fn requeue_failed(
        &mut self,
        uid: &str,
        rejected_by: u64,
        wake_on: u32,
        backoff_only: bool,
        now: Instant,
    ) {
        let Some(e) = self.entries.get_mut(uid) else {
            return;
        };
        e.queued.timestamp = now;
        e.queued.rejected_by = rejected_by;
        e.queued.wake_on = wake_on;
        if backoff_only {
            self.place(uid, Where::Backoff);
        } else {
            self.place(uid, Where::Unschedulable);
        }
    }

    /// Marks an in-flight pod as done (it was assumed; the bind is out).
    pub(crate) fn done(&mut self, uid: &str) {
        self.remove(uid);
    }

    /// A cluster event happened: unschedulable pods it could help (and
    /// that `admits`) go to activeQ, or to backoffQ while backing off.
    pub(crate) fn on_event(
        &mut self,
        event: u32,
        now: Instant,
        admits: impl Fn(&QueuedPod) -> bool,
    ) {
        if self.unschedulable.is_empty() {
            return;
        }
        let woken: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|u| {
                self.entries.get(*u).is_some_and(|e| {
                    (e.queued.wake_on == 0 || e.queued.wake_on & event != 0) && admits(&e.queued)
                })
            })
            .cloned()
            .collect();
        for uid in woken {
            self.enqueue(&uid, now);
        }
    }

    /// Whether activeQ has a pod.
    pub(crate) fn has_active(&self) -> bool {
        self.pending.active > 0
    }

    /// Counts per part.
    pub(crate) fn pending(&self) -> Pending {
        self.pending
    }

    /// Nominates `pod` to `node` ("" clears it), as the preemption result
    /// or the pod's `status.nominatedNodeName` says.
    pub(crate) fn nominate(&mut self, pod: &Arc<PodInfo>, node: &str) {
        self.clear_nominated(&pod.uid);
        if !node.is_empty() {
            self.nominated
                .entry(node.to_string())
                .or_default()
                .push(pod.clone());
        }
    }

    fn update_nominated(&mut self, pod: &Arc<PodInfo>) {
        if !pod.nominated_node.is_empty() {
            self.nominate(pod, &pod.nominated_node.clone());
        } else {
            // Keep a nomination made by this scheduler until the pod's
            // status catches up; refresh the pod it holds.
            for pods in self.nominated.values_mut() {
                for p in pods.iter_mut().filter(|p| p.uid == pod.uid) {
                    *p = pod.clone();
                }
            }
        }
    }

    fn clear_nominated(&mut self, uid: &str) {
        self.nominated.retain(|_, pods| {
            pods.retain(|p| p.uid != uid);
            !pods.is_empty()
        });
    }

    /// Whether any pod waits as unschedulable.
    pub(crate) fn has_unschedulable(&self) -> bool {
        !self.unschedulable.is_empty()
    }

    /// Whether any pod is nominated.
    pub(crate) fn has_nominations(&self) -> bool {
        !self.nominated.is_empty()
    }

    /// Pods nominated to `node`.
    pub(crate) fn nominated_to(&self, node: &str) -> &[Arc<PodInfo>] {
        self.nominated.get(node).map_or(&[], Vec::as_slice)
    }

    /// The node `uid` is nominated to, if any.
    pub(crate) fn nomination_of(&self, uid: &str) -> Option<&str> {
        self.nominated
            .iter()
            .find(|(_, pods)| pods.iter().any(|p| p.uid == uid))
            .map(|(n, _)| n.as_str())
    }

    /// The uids of every queued pod.
    pub(crate) fn uids(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// Every queued pod (for diagnostics and tests).
    #[cfg(test)]
    fn place_of(&self, uid: &str) -> Option<Where> {
        self.entries.get(uid).map(|e| e.place)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::pod_info::test_pods::pod;
    use serde_json::json;

    fn p(name: &str, priority: i32) -> Arc<PodInfo> {
        Arc::new(pod(
            json!({"metadata": {"name": name}, "spec": {"priority": priority}}),
        ))
    }

    #[test]
    fn priority_then_arrival() {
        let mut q = SchedulingQueue::new();
        let t = Instant::now();
        q.add_or_update(p("low", 0), t);
        q.add_or_update(p("high", 10), t + Duration::from_millis(1));
        q.add_or_update(p("low2", 0), t + Duration::from_millis(2));
        let order: Vec<String> =
            std::iter::from_fn(|| q.pop(t).map(|x| x.pod.name.clone())).collect();
        assert_eq!(order, ["high", "low", "low2"]);
        assert_eq!(q.pending(), Pending::default(), "in flight is not pending");
    }

    #[test]
    fn backoff_doubles_to_ten_seconds() {
        assert_eq!(backoff_duration(1), Duration::from_secs(1));
        assert_eq!(backoff_duration(2), Duration::from_secs(2));
        assert_eq!(backoff_duration(4), Duration::from_secs(8));
        assert_eq!(backoff_duration(5), Duration::from_secs(10));
        assert_eq!(backoff_duration(50), Duration::from_secs(10));
    }

    #[test]
    fn unschedulable_pods_wait_for_a_relevant_event_then_back_off() {
        let mut q = SchedulingQueue::new();
        let t = Instant::now();
        let pod = p("a", 0);
        q.add_or_update(pod.clone(), t);
        let popped = q.pop(t).unwrap();
        assert_eq!(popped.attempts, 1);
        q.requeue_failed(&pod.uid, 1, 0b10, false, t);
        assert_eq!(q.place_of(&pod.uid), Some(Where::Unschedulable));
        q.on_event(0b01, t, |_| true);
        assert_eq!(
            q.place_of(&pod.uid),
            Some(Where::Unschedulable),
            "irrelevant event"
        );
        q.on_event(0b10, t, |_| false);
        assert_eq!(
            q.place_of(&pod.uid),
            Some(Where::Unschedulable),
            "pre-check refused"
        );
        q.on_event(0b10, t + Duration::from_millis(100), |_| true);
        assert_eq!(
            q.place_of(&pod.uid),
            Some(Where::Backoff),
            "still backing off"
        );
        assert!(q.pop(t).is_none());
        assert_eq!(q.flush_backoff(t), Some(t + Duration::from_secs(1)));
        assert_eq!(q.flush_backoff(t + Duration::from_secs(1)), None);
        assert_eq!(q.pop(t).map(|x| x.attempts), Some(2));
    }

    #[test]
    fn stale_unschedulable_pods_are_flushed_after_five_minutes() {
        let mut q = SchedulingQueue::new();
        let t = Instant::now();
        let pod = p("a", 0);
        q.add_or_update(pod.clone(), t);
        q.pop(t);
        q.requeue_failed(&pod.uid, 1, 1, false, t);
        q.flush_unschedulable(t + Duration::from_secs(299));
        assert_eq!(q.pending().unschedulable, 1);
        q.flush_unschedulable(t + Duration::from_secs(301));
        assert_eq!(q.pending().active, 1);
    }

    #[test]
    fn gated_pods_wait_for_their_gates() {
        let mut q = SchedulingQueue::new();
        let t = Instant::now();
        let gated = Arc::new(pod(
            json!({"metadata": {"name": "g"}, "spec": {"schedulingGates": [{"name": "x"}]}}),
        ));
        q.add_or_update(gated.clone(), t);
        assert_eq!(q.pending().gated, 1);
        assert!(q.pop(t).is_none());
        q.on_event(u32::MAX, t, |_| true);
        assert_eq!(q.pending().gated, 1, "events do not ungate");
        let open = Arc::new(pod(json!({"metadata": {"name": "g"}})));
        q.add_or_update(open, t);
        assert_eq!(q.pop(t).map(|x| x.pod.name.clone()), Some("g".into()));
    }

    #[test]
    fn nominations() {
        let mut q = SchedulingQueue::new();
        let a = p("a", 5);
        q.nominate(&a, "n1");
        assert_eq!(q.nominated_to("n1").len(), 1);
        assert_eq!(q.nomination_of(&a.uid), Some("n1"));
        q.nominate(&a, "");
        assert!(q.nominated_to("n1").is_empty());
        q.nominate(&a, "n2");
        q.remove(&a.uid);
        assert!(q.nomination_of(&a.uid).is_none());
    }
}
