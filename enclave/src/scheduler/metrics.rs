//! What the scheduler records: attempts by result and their durations, and the pending pods by
//! queue, into the enclave's `scheduler_*` families ([`crate::metrics::scheduler`]), which
//! `/metrics` serves with upstream's names.

use std::time::Duration;

use crate::metrics::scheduler::SchedulerFamilies;

use super::queue::Pending;

/// The profile name in the labels (the only profile).
const PROFILE: &str = super::DEFAULT_SCHEDULER_NAME;

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
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            AttemptResult::Scheduled => "scheduled",
            AttemptResult::Unschedulable => "unschedulable",
            AttemptResult::Error => "error",
        }
    }
}

/// The scheduler's handle on its metric families (shared, `Arc`, between the scheduling loop
/// and readers).
#[derive(Debug)]
pub struct SchedulerMetrics {
    families: &'static SchedulerFamilies,
}

impl Default for SchedulerMetrics {
    fn default() -> Self {
        SchedulerMetrics {
            families: crate::metrics::registry().scheduler(),
        }
    }
}

impl SchedulerMetrics {
    /// Records one attempt and how long it took.
    pub fn observe_attempt(&self, result: AttemptResult, took: Duration) {
        self.families.observe_attempt(PROFILE, result.label(), took);
    }

    /// Sets `scheduler_pending_pods`.
    pub(crate) fn set_pending(&self, p: Pending) {
        for (queue, pods) in [
            ("active", p.active),
            ("backoff", p.backoff),
            ("unschedulable", p.unschedulable),
            ("gated", p.gated),
        ] {
            self.families.set_pending(queue, pods);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the one series `line_start` names in the Prometheus text.
    fn value(text: &str, line_start: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(line_start))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{line_start} missing in\n{text}"))
    }

    #[test]
    fn attempts_and_queues_reach_slash_metrics_with_upstream_names() {
        let before = crate::metrics::registry().encode_prometheus();
        let count = "scheduler_scheduling_attempt_duration_seconds_count{profile=\"default-scheduler\",result=\"unschedulable\"}";
        let had = before
            .lines()
            .find_map(|l| l.strip_prefix(count))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        let m = SchedulerMetrics::default();
        m.observe_attempt(AttemptResult::Scheduled, Duration::from_millis(3));
        m.observe_attempt(AttemptResult::Unschedulable, Duration::from_millis(1));
        m.set_pending(Pending {
            active: 2,
            backoff: 0,
            unschedulable: 1,
            gated: 3,
        });
        let text = crate::metrics::registry().encode_prometheus();
        assert!(
            text.contains("# TYPE scheduler_schedule_attempts_total counter"),
            "{text}"
        );
        assert!(
            value(
                &text,
                "scheduler_schedule_attempts_total{profile=\"default-scheduler\",result=\"scheduled\"}"
            ) >= 1.0
        );
        assert!(text.contains("scheduler_scheduling_attempt_duration_seconds_bucket{le=\"0.004\",profile=\"default-scheduler\",result=\"scheduled\"}")
            || text.contains("scheduler_scheduling_attempt_duration_seconds_bucket{profile=\"default-scheduler\",result=\"scheduled\",le=\"0.004\"}"), "{text}");
        assert!(value(&text, count) >= had + 1.0);
        // Other tests' schedulers in this process may set the gauge too: only its series is checked.
        value(&text, "scheduler_pending_pods{queue=\"gated\"}");
    }
}
