//! Metrics of the sealed store: our own names for its reads and writes (upstream's etcd
//! metrics do not map onto a store inside the API server), and upstream's
//! `apiserver_storage_objects` per resource.

use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = [(&'static str, &'static str); 2];

/// The store families.
#[derive(Debug)]
pub struct StoreMetrics {
    writes: Family<Labels, Counter>,
    write_duration: Family<[(&'static str, &'static str); 1], Histogram>,
    reads: Family<[(&'static str, &'static str); 1], Counter>,
    revision: Gauge,
    compacted: Gauge,
}

impl StoreMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let m = StoreMetrics {
            writes: Family::default(),
            write_duration: Family::new_with_constructor(|| {
                // 100 µs to about 26 s.
                Histogram::new(exponential_buckets(1e-4, 2.0, 19))
            }),
            reads: Family::default(),
            revision: Gauge::default(),
            compacted: Gauge::default(),
        };
        registry.register(
            "daas_store_writes",
            "Writes submitted to the sealed store, by operation (put, delete) and outcome (committed, failed: a compare did not hold, error)",
            m.writes.clone(),
        );
        registry.register(
            "daas_store_write_duration_seconds",
            "Time from submitting a write to its durable commit (sealed journal record included), by operation",
            m.write_duration.clone(),
        );
        registry.register(
            "daas_store_reads",
            "Reads of the sealed store, by operation (get, range)",
            m.reads.clone(),
        );
        registry.register(
            "daas_store_revision",
            "The store's highest committed revision",
            m.revision.clone(),
        );
        registry.register(
            "daas_store_compacted_revision",
            "The store's compaction point",
            m.compacted.clone(),
        );
        m
    }

    /// A write `operation` ended with `outcome` after `took`.
    pub fn write(&self, operation: &'static str, outcome: &'static str, took: Duration) {
        self.writes
            .get_or_create(&[("operation", operation), ("outcome", outcome)])
            .inc();
        self.write_duration
            .get_or_create(&[("operation", operation)])
            .observe(took.as_secs_f64());
    }

    /// A read `operation`.
    pub fn read(&self, operation: &'static str) {
        self.reads.get_or_create(&[("operation", operation)]).inc();
    }

    /// The highest committed revision is now `r`.
    pub fn set_revision(&self, r: u64) {
        self.revision.set(i64::try_from(r).unwrap_or(i64::MAX));
    }

    /// The compaction point is now `r`.
    pub fn set_compacted(&self, r: u64) {
        self.compacted.set(i64::try_from(r).unwrap_or(i64::MAX));
    }
}

/// upstream's `apiserver_storage_objects{resource}`: the objects stored per resource
/// (`pods`, `deployments.apps`, custom resources included), counted at each scrape in the
/// store's resident copy (a resource it does not cover is left out, as upstream leaves out
/// a count that failed).
#[derive(Debug)]
pub struct StorageObjects {
    objects: crate::registry::ObjectStore,
}

impl StorageObjects {
    /// Counts the resources of `objects`' table in its store.
    pub fn new(objects: crate::registry::ObjectStore) -> Self {
        StorageObjects { objects }
    }
}

impl Collector for StorageObjects {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let family = Family::<Vec<(&'static str, String)>, Gauge>::default();
        let mut seen = std::collections::HashSet::new();
        for info in self.objects.table().iter() {
            // Versions of one resource share its keys.
            if !seen.insert((info.group.clone(), info.resource.clone())) {
                continue;
            }
            let Some(n) = self.objects.store().count_resident(&info.key_prefix(None)) else {
                continue;
            };
            let resource = if info.group.is_empty() {
                info.resource.to_string()
            } else {
                format!("{}.{}", info.resource, info.group)
            };
            family
                .get_or_create(&vec![("resource", resource)])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let metric = encoder.encode_descriptor(
            "apiserver_storage_objects",
            "Number of stored objects at the time of last check split by kind.",
            None,
            family.metric_type(),
        )?;
        family.encode(metric)
    }
}

/// Reports the store's work into the process's [`registry`](super::registry) (hand it to
/// `StoreOptions::with_observer`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RegistryObserver;

impl ::store::StoreObserver for RegistryObserver {
    fn write(&self, operation: &'static str, outcome: &'static str, took: Duration, revision: u64) {
        let metrics = super::registry().store();
        metrics.write(operation, outcome, took);
        metrics.set_revision(revision);
    }

    fn read(&self, operation: &'static str) {
        super::registry().store().read(operation);
    }

    fn compacted(&self, revision: u64) {
        super::registry().store().set_compacted(revision);
    }
}
