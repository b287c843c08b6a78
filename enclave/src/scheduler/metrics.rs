//! The scheduler's metrics, with upstream's names, kept in-process:
//! `scheduler_schedule_attempts_total{result,profile}`,
//! `scheduler_scheduling_attempt_duration_seconds{result,profile}` and
//! `scheduler_pending_pods{queue}`. The enclave has no metrics registry
//! yet; [`SchedulerMetrics::render`] writes them in the Prometheus text
//! format for whatever serves `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::queue::Pending;

/// The profile name in the labels (the only profile).
const PROFILE: &str = super::DEFAULT_SCHEDULER_NAME;

/// Upper bounds of the attempt-duration buckets, in seconds: upstream's
/// `ExponentialBuckets(0.001, 2, 15)`.
pub const DURATION_BUCKETS: [f64; 15] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192, 16.384,
];

/// The outcome of one scheduling attempt (the `result` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// The pod was bound.
    Scheduled,
    /// No node fit.
    Unschedulable,
    /// Something failed (a bind, the store).
    Error,
}

impl AttemptResult {
    const ALL: [AttemptResult; 3] = [
        AttemptResult::Scheduled,
        AttemptResult::Unschedulable,
        AttemptResult::Error,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            AttemptResult::Scheduled => "scheduled",
            AttemptResult::Unschedulable => "unschedulable",
            AttemptResult::Error => "error",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A histogram of attempt durations for one result.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; 15],
    count: AtomicU64,
    /// Sum in nanoseconds.
    sum_nanos: AtomicU64,
}

/// The metrics; shared (`Arc`) between the scheduler and readers.
#[derive(Debug, Default)]
pub struct SchedulerMetrics {
    attempts: [AtomicU64; 3],
    durations: [Histogram; 3],
    pending: [AtomicU64; 4],
}

impl SchedulerMetrics {
    /// Records one attempt and how long it took.
    pub fn observe_attempt(&self, result: AttemptResult, took: Duration) {
        let i = result.index();
        self.attempts[i].fetch_add(1, Ordering::Relaxed);
        let h = &self.durations[i];
        let secs = took.as_secs_f64();
        for (b, bound) in h.buckets.iter().zip(DURATION_BUCKETS) {
            if secs <= bound {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        h.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        h.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// `scheduler_schedule_attempts_total{result}`.
    pub fn attempts(&self, result: AttemptResult) -> u64 {
        self.attempts[result.index()].load(Ordering::Relaxed)
    }

    /// Sets `scheduler_pending_pods`.
    pub(crate) fn set_pending(&self, p: Pending) {
        for (slot, v) in self
            .pending
            .iter()
            .zip([p.active, p.backoff, p.unschedulable, p.gated])
        {
            slot.store(v as u64, Ordering::Relaxed);
        }
    }

    /// `scheduler_pending_pods{queue}` for `active`, `backoff`,
    /// `unschedulable` and `gated`, in that order.
    pub fn pending(&self) -> [u64; 4] {
        [0, 1, 2, 3].map(|i| self.pending[i].load(Ordering::Relaxed))
    }

    /// The metrics in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP scheduler_schedule_attempts_total Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem.\n");
        out.push_str("# TYPE scheduler_schedule_attempts_total counter\n");
        for r in AttemptResult::ALL {
            let _ = writeln!(
                out,
                "scheduler_schedule_attempts_total{{profile=\"{PROFILE}\",result=\"{}\"}} {}",
                r.label(),
                self.attempts(r)
            );
        }
        out.push_str("# HELP scheduler_scheduling_attempt_duration_seconds Scheduling attempt latency in seconds (scheduling algorithm + binding)\n");
        out.push_str("# TYPE scheduler_scheduling_attempt_duration_seconds histogram\n");
        for r in AttemptResult::ALL {
            let h = &self.durations[r.index()];
            let labels = format!("profile=\"{PROFILE}\",result=\"{}\"", r.label());
            for (b, bound) in h.buckets.iter().zip(DURATION_BUCKETS) {
                let _ = writeln!(
                    out,
                    "scheduler_scheduling_attempt_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {}",
                    b.load(Ordering::Relaxed)
                );
            }
            let count = h.count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "scheduler_scheduling_attempt_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
            );
            let sum = h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "scheduler_scheduling_attempt_duration_seconds_sum{{{labels}}} {sum}"
            );
            let _ = writeln!(
                out,
                "scheduler_scheduling_attempt_duration_seconds_count{{{labels}}} {count}"
            );
        }
        out.push_str("# HELP scheduler_pending_pods Number of pending pods, by the queue type. 'active' means number of pods in activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means number of pods in unschedulablePods that the scheduler attempted to schedule and failed; 'gated' is the number of unschedulable pods that the scheduler never attempted to schedule because they are gated.\n");
        out.push_str("# TYPE scheduler_pending_pods gauge\n");
        for (q, v) in ["active", "backoff", "unschedulable", "gated"]
            .iter()
            .zip(self.pending())
        {
            let _ = writeln!(out, "scheduler_pending_pods{{queue=\"{q}\"}} {v}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_upstream_names() {
        let m = SchedulerMetrics::default();
        m.observe_attempt(AttemptResult::Scheduled, Duration::from_millis(3));
        m.observe_attempt(AttemptResult::Unschedulable, Duration::from_millis(1));
        m.set_pending(Pending {
            active: 2,
            backoff: 0,
            unschedulable: 1,
            gated: 3,
        });
        let text = m.render();
        assert!(text.contains("scheduler_schedule_attempts_total{profile=\"default-scheduler\",result=\"scheduled\"} 1"));
        assert!(text.contains("scheduler_scheduling_attempt_duration_seconds_bucket{profile=\"default-scheduler\",result=\"scheduled\",le=\"0.002\"} 0"));
        assert!(text.contains("scheduler_scheduling_attempt_duration_seconds_bucket{profile=\"default-scheduler\",result=\"scheduled\",le=\"0.004\"} 1"));
        assert!(text.contains("scheduler_scheduling_attempt_duration_seconds_count{profile=\"default-scheduler\",result=\"unschedulable\"} 1"));
        assert!(text.contains("scheduler_pending_pods{queue=\"gated\"} 3"));
        assert_eq!(m.pending(), [2, 0, 1, 3]);
    }
}
