//! kube-scheduler's metrics, with its names and labels:
//! `scheduler_schedule_attempts_total{profile,result}`,
//! `scheduler_scheduling_attempt_duration_seconds{profile,result}` (histogram, upstream's
//! buckets) and `scheduler_pending_pods{queue}`.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `profile` and `result`.
type AttemptLabels = [(&'static str, &'static str); 2];
/// `queue`.
type QueueLabel = [(&'static str, &'static str); 1];

fn attempt_buckets() -> Histogram {
    // kube-scheduler's: 1 ms doubling, fifteen buckets.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The scheduler families.
#[derive(Debug)]
pub struct SchedulerFamilies {
    attempts: Family<AttemptLabels, Counter>,
    durations: Family<AttemptLabels, Histogram>,
    pending: Family<QueueLabel, Gauge>,
}

impl SchedulerFamilies {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let m = SchedulerFamilies {
            attempts: Family::default(),
            durations: Family::new_with_constructor(attempt_buckets),
            pending: Family::default(),
        };
        registry.register(
            "scheduler_schedule_attempts",
            "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem.",
            m.attempts.clone(),
        );
        registry.register(
            "scheduler_scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
            m.durations.clone(),
        );
        registry.register(
            "scheduler_pending_pods",
            "Number of pending pods, by the queue type. 'active' means number of pods in activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means number of pods in unschedulablePods that the scheduler attempted to schedule and failed; 'gated' is the number of unschedulable pods that the scheduler never attempted to schedule because they are gated.",
            m.pending.clone(),
        );
        m
    }

    /// Counts one attempt of `profile` with `result` (`scheduled`, `unschedulable`, `error`)
    /// that took `took`.
    pub fn observe_attempt(&self, profile: &'static str, result: &'static str, took: Duration) {
        let labels = [("profile", profile), ("result", result)];
        self.attempts.get_or_create(&labels).inc();
        self.durations
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Sets the number of pods waiting in `queue` (`active`, `backoff`, `unschedulable`,
    /// `gated`).
    pub fn set_pending(&self, queue: &'static str, pods: usize) {
        self.pending
            .get_or_create(&[("queue", queue)])
            .set(i64::try_from(pods).unwrap_or(i64::MAX));
    }
}
