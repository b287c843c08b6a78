//! The pod lifecycle as the kubelet runs it, on top of [`crate::runtime`]: one worker per pod
//! UID (syncing -> terminating -> terminated), a relister that wakes workers when the runtime
//! changes (the PLEG), status generation with upstream's phases, reasons and conditions,
//! volumes, probes, hooks and back-off.
//!
//! The API is reached only through the seams in [`api`]; start at [`PodRuntime::new`].
//!
//! ```no_run
//! # async fn example(sink: std::sync::Arc<dyn worker::pods::api::PodStatusSink>,
//! #                  objects: std::sync::Arc<dyn worker::pods::api::PodObjects>,
//! #                  pod: k8s_openapi::api::core::v1::Pod) -> Result<(), worker::runtime::Error> {
//! use worker::pods::{PodRuntime, PodRuntimeConfig};
//! use worker::runtime::{Containerd, ContainerdConfig};
//!
//! let containerd = Containerd::start(ContainerdConfig::new("/var/lib/daas-worker")).await?;
//! let config = PodRuntimeConfig::new("node-1", "10.0.0.2".parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()), "/var/lib/daas-worker");
//! let pods = PodRuntime::new(config, containerd.cri(), sink, objects);
//! pods.sync_pods(vec![pod]).await?; // the node's pods, as listed; then upsert/forget per watch event
//! # Ok(()) }
//! ```

pub mod api;
mod backoff;
mod config;
mod env;
mod expand;
#[cfg(any(test, feature = "testing"))]
pub mod fake;
mod handlers;
mod hosts;
mod images;
pub(crate) mod labels;
mod log_rotation;
mod objects;
mod observed;
mod probes;
mod pull_secrets;
mod quantity;
mod resources;
mod sandbox;
mod security;
mod start;
mod status;
mod stop;
mod sync;
mod volumes;
mod worker;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

pub use config::PodRuntimeConfig;

use self::api::{PodObjects, PodStatusSink};
use self::backoff::Backoff;
use self::worker::{Desired, PodWorker};
use crate::runtime::{Cri, Result};

/// What the pod workers share.
pub(crate) struct Ctx {
    pub(crate) config: PodRuntimeConfig,
    pub(crate) cri: Cri,
    pub(crate) objects: Arc<dyn PodObjects>,
    pub(crate) sink: Arc<dyn PodStatusSink>,
    crash_backoff: Mutex<Backoff>,
    image_backoff: Mutex<Backoff>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("node", &self.config.node_name)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    pub(crate) fn crash_backoff(&self) -> MutexGuard<'_, Backoff> {
        self.crash_backoff
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn image_backoff(&self) -> MutexGuard<'_, Backoff> {
        self.image_backoff
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn forget_backoff(&self, uid: &str) {
        self.image_backoff().forget_containing(uid);
        // Crash keys are `name_namespace_uid_container_hash`.
        self.crash_backoff().forget_containing(&format!("_{uid}_"));
    }
}

#[derive(Debug)]
struct WorkerHandle {
    desired: watch::Sender<Desired>,
    wake: Arc<Notify>,
    task: JoinHandle<()>,
}

type Workers = Arc<Mutex<HashMap<String, WorkerHandle>>>;

/// How [`PodRuntime::shutdown`] leaves the pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// The agent stops; pods keep running and the next agent adopts them.
    LeavePodsRunning,
    /// Every pod this runtime ran is stopped and removed (dev mode's exit).
    RemovePods,
}

/// The node's pods: feed it the pods bound to this node; it runs them and reports status.
/// Dropping it stops the workers but leaves the pods running (as a killed agent would).
#[derive(Debug)]
pub struct PodRuntime {
    ctx: Arc<Ctx>,
    workers: Workers,
    cancel: CancellationToken,
    background: Vec<JoinHandle<()>>,
}

impl PodRuntime {
    /// A runtime over `cri`, writing status to `sink` and reading configmaps, secrets,
    /// services and tokens through `objects`. Starts the relister. Call within a Tokio runtime.
    #[must_use]
    pub fn new(
        config: PodRuntimeConfig,
        cri: Cri,
        sink: Arc<dyn PodStatusSink>,
        objects: Arc<dyn PodObjects>,
    ) -> Self {
        let ctx = Arc::new(Ctx {
            config,
            cri,
            objects,
            sink,
            crash_backoff: Mutex::default(),
            image_backoff: Mutex::default(),
        });
        let workers: Workers = Arc::default();
        let cancel = CancellationToken::new();
        let pleg = tokio::spawn(relist_loop(
            Arc::clone(&ctx),
            Arc::clone(&workers),
            cancel.clone(),
        ));
        let log_rotation = tokio::spawn(log_rotation::rotation_loop(
            Arc::clone(&ctx),
            cancel.clone(),
        ));
        Self {
            ctx,
            workers,
            cancel,
            background: vec![pleg, log_rotation],
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, WorkerHandle>> {
        self.workers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn dispatch(&self, pod: Arc<Pod>, desired: Desired) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        let mut workers = self.lock();
        if let Some(handle) = workers.get(&uid) {
            if !handle.task.is_finished() {
                handle.desired.send_replace(desired);
                return;
            }
            if matches!(desired, Desired::Gone(_)) {
                workers.remove(&uid);
                return;
            }
        }
        let wake = Arc::new(Notify::new());
        let (tx, rx) = watch::channel(desired);
        let worker = PodWorker::new(Arc::clone(&self.ctx), pod.clone(), Arc::clone(&wake));
        let span = tracing::info_span!(
            "pod",
            object.ref = %format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or_default(), pod.metadata.name.as_deref().unwrap_or_default()),
            uid = %uid
        );
        let task = tokio::spawn(worker.run(rx, self.cancel.child_token()).instrument(span));
        workers.insert(
            uid,
            WorkerHandle {
                desired: tx,
                wake,
                task,
            },
        );
    }

    /// A pod bound to this node was added or changed (including `deletionTimestamp` set:
    /// the pod is then terminated with its grace period and its object deleted).
    pub fn upsert(&self, pod: Pod) {
        let pod = Arc::new(pod);
        self.dispatch(Arc::clone(&pod), Desired::Present(pod));
    }

    /// The pod's object is gone from the API: stop and remove whatever it runs.
    pub fn forget(&self, pod: Pod) {
        let pod = Arc::new(pod);
        self.dispatch(Arc::clone(&pod), Desired::Gone(pod));
    }

    /// The full list of this node's pods (after the agent's first list, or a relist): each is
    /// upserted, and pods the runtime holds that are not listed are stopped and removed.
    ///
    /// # Errors
    /// [`crate::runtime::Error::Cri`] when the runtime cannot be listed.
    pub async fn sync_pods(&self, pods: Vec<Pod>) -> Result<()> {
        let listed: std::collections::HashSet<String> =
            pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        for pod in pods {
            self.upsert(pod);
        }
        let held = observed::relist(&self.ctx.cri, &self.ctx.config.node_name).await?;
        for uid in held
            .keys()
            .filter(|uid| !listed.contains(*uid) && !uid.is_empty())
        {
            tracing::info!(uid = %uid, "removing an orphaned pod");
            let mut pod = Pod::default();
            pod.metadata.uid = Some(uid.clone());
            pod.metadata.deletion_grace_period_seconds = Some(1);
            pod.spec = Some(PodSpec::default());
            self.forget(pod);
        }
        Ok(())
    }

    /// How many pod workers are alive (pods not yet fully removed).
    #[must_use]
    pub fn live_pods(&self) -> usize {
        self.lock()
            .values()
            .filter(|h| !h.task.is_finished())
            .count()
    }

    /// Resource usage of the node and its pods, from CRI stats and `/proc`.
    ///
    /// # Errors
    /// [`crate::runtime::Error::Cri`] when the runtime's stats cannot be read.
    pub async fn usage(&self) -> Result<crate::runtime::ResourceUsage> {
        crate::runtime::usage(&self.ctx.cri, &self.ctx.config.node_name).await
    }

    /// Stops the runtime: the workers stop; with [`Shutdown::RemovePods`] they are aborted
    /// (even inside a grace period), then every pod of this node is stopped (grace period 0)
    /// and removed, and the emptied cgroup root with it.
    ///
    /// # Errors
    /// [`crate::runtime::Error::Cri`] when pods cannot be removed.
    pub async fn shutdown(mut self, mode: Shutdown) -> Result<()> {
        self.cancel.cancel();
        let handles: Vec<WorkerHandle> = self.lock().drain().map(|(_, h)| h).collect();
        for h in handles {
            // A worker may be inside a grace period (StopContainer waits for it); every pod is
            // removed with grace 0 below, so it need not finish.
            if mode == Shutdown::RemovePods {
                h.task.abort();
            }
            let _ = h.task.await;
        }
        for task in self.background.drain(..) {
            task.abort();
        }
        if mode == Shutdown::RemovePods {
            let held = observed::relist(&self.ctx.cri, &self.ctx.config.node_name).await?;
            for uid in held.keys() {
                let observed =
                    observed::observe(&self.ctx.cri, uid, &self.ctx.config.node_name).await?;
                stop::remove_pod(&self.ctx, &observed, uid).await?;
            }
            // The QoS cgroups under the root, and the root itself, once empty.
            resources::remove_pod_cgroups(&self.ctx.config.cgroup_root);
        }
        Ok(())
    }
}

impl Drop for PodRuntime {
    fn drop(&mut self) {
        self.cancel.cancel();
        for task in self.background.drain(..) {
            task.abort();
        }
        for h in self.lock().values() {
            h.task.abort();
        }
    }
}

/// The PLEG: relists the runtime and wakes the workers of pods whose containers changed.
async fn relist_loop(ctx: Arc<Ctx>, workers: Workers, cancel: CancellationToken) {
    let mut previous: BTreeMap<String, Vec<(String, i32)>> = BTreeMap::new();
    loop {
        tokio::select! {
            () = tokio::time::sleep(ctx.config.relist) => {}
            () = cancel.cancelled() => return,
        }
        let current = match observed::relist(&ctx.cri, &ctx.config.node_name).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "relisting the runtime failed");
                continue;
            }
        };
        let mut changed: Vec<&String> = current
            .iter()
            .filter(|(uid, v)| previous.get(*uid) != Some(v))
            .map(|(uid, _)| uid)
            .collect();
        changed.extend(previous.keys().filter(|uid| !current.contains_key(*uid)));
        if !changed.is_empty() {
            let workers = workers.lock().unwrap_or_else(PoisonError::into_inner);
            for uid in changed {
                if let Some(h) = workers.get(uid) {
                    h.wake.notify_one();
                }
            }
        }
        previous = current;
    }
}
