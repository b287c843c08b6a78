//! The scheduler that runs inside the enclave, with kube-scheduler's
//! semantics: it assigns each pending pod whose `schedulerName` is
//! `default-scheduler` to a node, through the same registry path as
//! `POST pods/{name}/binding`.
//!
//! Start with [`spawn`]. The pieces, in upstream's terms:
//!
//! - `informer`: list+watch of pods, nodes and the objects the plugins
//!   read, decoded from `k8s-openapi`'s typed objects into `pod_info`,
//!   `node_info` and `listers`;
//! - `cache`: nodes with the pods on them; pods are *assumed* on their
//!   node the moment they are placed, before the bind's event returns;
//! - `queue`: activeQ / backoffQ / unschedulable / gated pods and the
//!   nominator, with upstream's backoff (1 s to 10 s), event-driven
//!   requeueing and the 5-minute flush;
//! - `framework` and `plugins`: the default profile's filter and score
//!   plugins with upstream's weights;
//! - `schedule_one`: one cycle (filter a rotating window of nodes, score,
//!   pick), and the `0/N nodes are available: ...` diagnosis;
//! - `preemption`: DefaultPreemption with PodDisruptionBudgets;
//! - `runner`: the loop, on its own thread; `writer`: binds, status
//!   conditions, evictions and events, on the API server's runtime;
//! - `metrics`: `scheduler_*` metrics in-process ([`SchedulerMetrics`]).
//!
//! Layering: `scheduler -> registry -> store`; it uses the controllers'
//! event recorder and nothing of the HTTP layer.

mod cache;
mod framework;
mod informer;
mod labels;
mod listers;
mod metrics;
mod node_info;
mod plugins;
mod pod_info;
mod preemption;
mod quantity;
mod queue;
mod resources;
mod runner;
mod schedule_one;
mod writer;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::registry::ObjectStore;

pub use metrics::{AttemptResult, SchedulerMetrics};

/// The scheduler name pods select this scheduler with (their
/// `spec.schedulerName`, defaulted by the API server).
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// Why the scheduler could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A resource the scheduler needs is not in the resource table.
    #[error("resource {0} is not served")]
    MissingResource(&'static str),
    /// The scheduler's thread could not be started.
    #[error("starting the scheduler thread")]
    Thread(#[source] std::io::Error),
}

/// A running scheduler; stop it with [`Scheduler::shutdown`].
#[derive(Debug)]
pub struct Scheduler {
    thread: Option<std::thread::JoinHandle<()>>,
    informers: JoinSet<()>,
    stop: CancellationToken,
    metrics: Arc<SchedulerMetrics>,
}

/// Starts the scheduler on `objects`: the watches on the current tokio
/// runtime, the scheduling loop on a thread of its own. It resumes from
/// the stored state after a restart: bound pods are counted where they
/// are, pending ones are queued again, and a pod is never bound twice
/// (the bind refuses a pod that already has a node).
///
/// # Errors
/// [`Error::MissingResource`] if pods, nodes, events, namespaces,
/// services, replicasets, statefulsets or poddisruptionbudgets are not
/// served; [`Error::Thread`] if the thread cannot be started.
///
/// # Panics
/// Outside a tokio runtime.
pub fn spawn(objects: &ObjectStore) -> Result<Scheduler, Error> {
    use informer::Kind;
    use listers::ListerKind;
    let table = objects.table();
    let lookup = |group: &str, resource: &'static str| {
        table
            .lookup(group, "v1", resource)
            .ok_or(Error::MissingResource(resource))
    };
    let pods = lookup("", "pods")?;
    let events = lookup("", "events")?;
    let mut watched = vec![
        (pods.clone(), Kind::Pods),
        (lookup("", "nodes")?, Kind::Nodes),
        (
            lookup("", "namespaces")?,
            Kind::Lister(ListerKind::Namespaces),
        ),
        (lookup("", "services")?, Kind::Lister(ListerKind::Services)),
        (
            lookup("apps", "replicasets")?,
            Kind::Lister(ListerKind::ReplicaSets),
        ),
        (
            lookup("apps", "statefulsets")?,
            Kind::Lister(ListerKind::StatefulSets),
        ),
        (
            lookup("policy", "poddisruptionbudgets")?,
            Kind::Lister(ListerKind::Budgets),
        ),
    ];
    let mut listers = listers::Listers::default();
    if let Ok(claims) = lookup("", "persistentvolumeclaims") {
        listers.serve_claims();
        watched.push((claims, Kind::Lister(ListerKind::Claims)));
        watched.push((
            lookup("", "persistentvolumes")?,
            Kind::Lister(ListerKind::Volumes),
        ));
        watched.push((
            lookup("storage.k8s.io", "storageclasses")?,
            Kind::Lister(ListerKind::Classes),
        ));
    }
    let stop = CancellationToken::new();
    let (events_tx, events_rx) = mpsc::channel(8192);
    let (results_tx, results_rx) = mpsc::unbounded_channel();
    let mut informers = JoinSet::new();
    for (info, kind) in watched {
        informers.spawn(informer::run(
            objects.clone(),
            info,
            kind,
            events_tx.clone(),
            stop.child_token(),
        ));
    }
    let runtime = tokio::runtime::Handle::current();
    let metrics = Arc::new(SchedulerMetrics::default());
    let seed = jiff::Timestamp::now().as_nanosecond() as u64;
    let runner = runner::Runner {
        alg: schedule_one::Algorithm::new(seed),
        cache: cache::Cache::new(),
        listers,
        queue: queue::SchedulingQueue::new(),
        events: events_rx,
        results: results_rx,
        writer: writer::Writer::new(runtime, objects.clone(), pods, events, results_tx),
        metrics: metrics.clone(),
        synced: HashSet::new(),
        stop: stop.child_token(),
    };
    let thread = std::thread::Builder::new()
        .name("scheduler".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            {
                Ok(rt) => rt.block_on(runner.run()),
                Err(e) => tracing::error!(error = %e, "the scheduler's runtime did not start"),
            }
        })
        .map_err(Error::Thread)?;
    tracing::info!(scheduler = DEFAULT_SCHEDULER_NAME, "scheduler started");
    Ok(Scheduler {
        thread: Some(thread),
        informers,
        stop,
        metrics,
    })
}

impl Scheduler {
    /// The scheduler's metrics (shared; they keep counting).
    pub fn metrics(&self) -> Arc<SchedulerMetrics> {
        self.metrics.clone()
    }

    /// Stops scheduling and the watches; binds already issued finish on
    /// their own.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        let drain = async { while self.informers.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(5), drain)
            .await
            .is_err()
        {
            self.informers.abort_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}
