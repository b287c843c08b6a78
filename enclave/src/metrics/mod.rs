//! Prometheus metrics of the enclave, served on `/metrics` (kube-apiserver
//! and kube-controller-manager serve theirs there too), with upstream's
//! names where upstream has the metric:
//!
//! | family | labels | from |
//! |---|---|---|
//! | `apiserver_request_total` | verb, dry_run, group, version, resource, subresource, scope, component, code | [`apiserver`] |
//! | `apiserver_request_duration_seconds` (histogram) | the same without code | [`apiserver`] |
//! | `workqueue_adds_total`, `workqueue_depth`, `workqueue_queue_duration_seconds`, `workqueue_work_duration_seconds`, `workqueue_retries_total` | name (the controller) | [`workqueue`] |
//! | `scheduler_schedule_attempts_total`, `scheduler_scheduling_attempt_duration_seconds`, `scheduler_pending_pods` | profile, result / queue | [`scheduler`] |
//! | `daas_store_*` | operation, outcome | [`store`] |
//!
//! The registry is process-wide, as upstream's `legacyregistry`: every
//! component's families are registered once, here, and `/metrics` encodes
//! them all (two schedulers in one test process add to the same series).

pub mod apiserver;
pub mod scheduler;
pub mod store;
pub mod workqueue;

use std::sync::{Mutex, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::registry::{Metric, Registry};

/// The enclave's metrics (see the module docs).
pub struct Metrics {
    registry: Mutex<Registry>,
    apiserver: apiserver::ApiserverMetrics,
    workqueue: workqueue::WorkqueueMetrics,
    scheduler: scheduler::SchedulerFamilies,
    store: store::StoreMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The process's metrics, created with the built-in families on first use.
pub fn registry() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let apiserver = apiserver::ApiserverMetrics::register(&mut registry);
        let workqueue = workqueue::WorkqueueMetrics::register(&mut registry);
        let scheduler = scheduler::SchedulerFamilies::register(&mut registry);
        let store = store::StoreMetrics::register(&mut registry);
        Metrics {
            registry: Mutex::new(registry),
            apiserver,
            workqueue,
            scheduler,
            store,
        }
    }

    /// Registers another metric (family) under its full name, e.g. the
    /// scheduler's `scheduler_schedule_attempts` (counters get `_total`
    /// appended when encoded). Call once per name, at start.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        match self.registry.lock() {
            Ok(mut r) => r.register(name, help, metric),
            Err(poisoned) => poisoned.into_inner().register(name, help, metric),
        }
    }

    /// Registers a collector, whose metrics are produced at each scrape.
    pub fn register_collector(&self, collector: Box<dyn Collector>) {
        match self.registry.lock() {
            Ok(mut r) => r.register_collector(collector),
            Err(poisoned) => poisoned.into_inner().register_collector(collector),
        }
    }

    /// The API server's request metrics.
    pub fn apiserver(&self) -> &apiserver::ApiserverMetrics {
        &self.apiserver
    }

    /// The controllers' work queue metrics.
    pub fn workqueue(&self) -> &workqueue::WorkqueueMetrics {
        &self.workqueue
    }

    /// The scheduler's metrics.
    pub fn scheduler(&self) -> &scheduler::SchedulerFamilies {
        &self.scheduler
    }

    /// The store's metrics.
    pub fn store(&self) -> &store::StoreMetrics {
        &self.store
    }

    /// Every metric in the OpenMetrics text format.
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        let result = match self.registry.lock() {
            Ok(r) => prometheus_client::encoding::text::encode(&mut out, &r),
            Err(poisoned) => {
                prometheus_client::encoding::text::encode(&mut out, &poisoned.into_inner())
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }

    /// Every metric in Prometheus's text format 0.0.4 (what kube-apiserver
    /// serves): the OpenMetrics text with counters' `# HELP`/`# TYPE` lines
    /// naming the `_total` series, and without `# UNIT` and `# EOF`.
    pub fn encode_prometheus(&self) -> String {
        to_prometheus_text(&self.encode_openmetrics())
    }
}

/// The Content-Type of [`Metrics::encode_prometheus`].
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The Content-Type of [`Metrics::encode_openmetrics`].
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Rewrites OpenMetrics text as Prometheus text 0.0.4.
fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_names_counters_by_their_series() {
        let om = "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests_total 3\n# HELP d Depth.\n# TYPE d gauge\nd 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\na_requests_total 3\n# HELP d Depth.\n# TYPE d gauge\nd 1\n"
        );
    }
}
