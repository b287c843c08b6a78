//! client-go's work queue metrics, for the controllers' queues (the
//! `name` label is the controller's name).

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Name = [(&'static str, &'static str); 1];

fn buckets() -> Histogram {
    // client-go's: 10 ns to 10 s, ten buckets.
    Histogram::new(exponential_buckets(1e-8, 10.0, 10))
}

/// The work queue families.
#[derive(Debug)]
pub struct WorkqueueMetrics {
    adds: Family<Name, Counter>,
    depth: Family<Name, Gauge>,
    queue_duration: Family<Name, Histogram>,
    work_duration: Family<Name, Histogram>,
    retries: Family<Name, Counter>,
}

/// One queue's series.
#[derive(Debug, Clone)]
pub struct QueueMetrics {
    adds: Counter,
    depth: Gauge,
    queue_duration: Histogram,
    work_duration: Histogram,
    retries: Counter,
}

impl WorkqueueMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let m = WorkqueueMetrics {
            adds: Family::default(),
            depth: Family::default(),
            queue_duration: Family::new_with_constructor(buckets),
            work_duration: Family::new_with_constructor(buckets),
            retries: Family::default(),
        };
        registry.register(
            "workqueue_adds",
            "Total number of adds handled by workqueue",
            m.adds.clone(),
        );
        registry.register(
            "workqueue_depth",
            "Current depth of workqueue",
            m.depth.clone(),
        );
        registry.register(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested",
            m.queue_duration.clone(),
        );
        registry.register(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes",
            m.work_duration.clone(),
        );
        registry.register(
            "workqueue_retries",
            "Total number of retries handled by workqueue",
            m.retries.clone(),
        );
        m
    }

    /// The series of the queue `name`.
    pub fn queue(&self, name: &'static str) -> QueueMetrics {
        let l = [("name", name)];
        QueueMetrics {
            adds: self.adds.get_or_create(&l).clone(),
            depth: self.depth.get_or_create(&l).clone(),
            queue_duration: self.queue_duration.get_or_create(&l).clone(),
            work_duration: self.work_duration.get_or_create(&l).clone(),
            retries: self.retries.get_or_create(&l).clone(),
        }
    }
}

impl QueueMetrics {
    /// A key entered the queue.
    pub fn added(&self) {
        self.adds.inc();
    }

    /// The queue now holds `n` keys.
    pub fn set_depth(&self, n: usize) {
        self.depth.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A key was taken after waiting `waited`.
    pub fn taken(&self, waited: Duration) {
        self.queue_duration.observe(waited.as_secs_f64());
    }

    /// A key was processed in `took`.
    pub fn processed(&self, took: Duration) {
        self.work_duration.observe(took.as_secs_f64());
    }

    /// A key was put back after a failure.
    pub fn retried(&self) {
        self.retries.inc();
    }
}
