//! Controllers that run inside the enclave, as kube-controller-manager's do
//! on a real cluster: the deployment, replicaset, job, cronjob,
//! TTL-after-finished, daemonset and statefulset controllers, the garbage
//! collector, the cluster controllers started in [`cluster`] (node
//! lifecycle and IPAM, taint eviction, endpoints, endpointslices and their
//! mirroring, service accounts, the root CA publisher, pod GC, disruption,
//! resource quota, the PersistentVolume binder), apiextensions-apiserver's CRD finalizer, and what
//! kube-apiserver does itself: the expiry of events that it gets from etcd
//! leases and the `default/kubernetes` Service.
//!
//! The workload controllers written since the typed layer exists
//! (`typed`) read and write `k8s-openapi` objects; the deployment and
//! replicaset controllers still work on JSON.
//!
//! They sit above [`crate::registry`]: every read and write goes through
//! the same [`ObjectStore`] paths as API requests (validation, generation,
//! managedFields under the manager `kube-controller-manager`, optimistic
//! concurrency), so watches and kubectl see their work. `runtime` is the
//! small reconciler runtime they share; start with [`spawn`].
//!
//! Pods stay `Pending` unless something plays the kubelet (tests patch pod
//! and node status, and renew node Leases, as upstream's integration tests
//! do). The deployment controller's rolling-update arithmetic is
//! upstream's and counts a pod as available only when its ReplicaSet's
//! status says so; a rolling update therefore waits, as on a real cluster
//! whose pods never start, unless `maxUnavailable` allows old pods to go.

mod api_service_registration;
pub(crate) mod client;
pub mod cluster;
mod clusterrole_aggregation;
mod crd_finalizer;
mod cronjob;
mod csr_signer;
mod daemonset;
mod deployment;
mod disruption;
mod endpoints;
mod endpointslice;
mod event_ttl;
pub(crate) mod events;
mod flow_control_bootstrap;
mod garbage_collector;
mod history;
pub mod horizontal_pod_autoscaler;
mod identity;
mod job;
mod kubernetes_service;
pub mod node_ipam;
pub mod node_lifecycle;
mod owner;
pub(crate) mod persistent_volume;
mod pod_gc;
mod pod_template;
mod replicaset;
mod resource_quota;
mod root_ca;
mod runtime;
mod sa_tokens;
mod service_cidr;
mod service_index;
mod serviceaccounts;
mod statefulset;
mod taint_eviction;
mod ttl_after_finished;
pub(crate) mod typed;

use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::registry::{self, ObjectStore};

pub use cluster::ClusterOptions;
pub use clusterrole_aggregation::aggregate_all as aggregate_cluster_roles;
pub use event_ttl::DEFAULT_EVENT_TTL;
pub use identity::IdentityOptions;
pub use node_ipam::ClusterCidr;
pub use node_lifecycle::NodeLifecycleOptions;

/// Settings of the controllers, each standing for a flag of kube-apiserver or kube-controller-manager.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// How long an event lives after its last write (kube-apiserver's `--event-ttl`).
    pub event_ttl: Duration,
    /// Which controllers run (`--controllers`).
    pub enabled: Enabled,
    /// The cluster controllers' settings.
    pub cluster: ClusterOptions,
    /// The identity controllers' keys; `None` runs none of them.
    pub identity: Option<IdentityOptions>,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            event_ttl: DEFAULT_EVENT_TTL,
            enabled: Enabled::default(),
            cluster: ClusterOptions::default(),
            identity: None,
        }
    }
}

/// kube-controller-manager's `--controllers`: `*` for every controller on
/// by default, `name` to enable one, `-name` to disable one. Names are
/// upstream's (`node-lifecycle-controller`, …), and their older short
/// forms (`nodelifecycle`, …) are accepted too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enabled {
    items: Vec<String>,
}

impl Default for Enabled {
    fn default() -> Self {
        Enabled {
            items: vec!["*".into()],
        }
    }
}

/// upstream's aliases: the short names before kube-controller-manager 1.28.
const ALIASES: [(&str, &str); 18] = [
    ("deployment", "deployment-controller"),
    ("replicaset", "replicaset-controller"),
    ("garbagecollector", "garbage-collector-controller"),
    ("nodelifecycle", "node-lifecycle-controller"),
    ("nodeipam", "node-ipam-controller"),
    ("endpoint", "endpoints-controller"),
    ("endpointslice", "endpointslice-controller"),
    (
        "endpointslicemirroring",
        "endpointslice-mirroring-controller",
    ),
    ("serviceaccount", "serviceaccount-controller"),
    (
        "root-ca-cert-publisher",
        "root-ca-certificate-publisher-controller",
    ),
    ("podgc", "pod-garbage-collector-controller"),
    (
        "persistentvolume-binder",
        "persistentvolume-binder-controller",
    ),
    ("disruption", "disruption-controller"),
    ("resourcequota", "resourcequota-controller"),
    ("taint-eviction-controller", "taint-eviction-controller"),
    ("ttl-after-finished", "ttl-after-finished-controller"),
    ("replicationcontroller", "replicationcontroller-controller"),
    (
        "horizontalpodautoscaling",
        "horizontal-pod-autoscaler-controller",
    ),
];

fn canonical(name: &str) -> &str {
    ALIASES
        .iter()
        .find(|(a, _)| *a == name)
        .map_or(name, |(_, c)| c)
}

impl Enabled {
    /// From `--controllers` items (comma-separated on the command line).
    pub fn new(items: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Enabled {
            items: items.into_iter().map(Into::into).collect(),
        }
    }

    /// Whether the controller `name` (upstream's name) runs: the last item
    /// naming it decides, else `*`.
    pub fn is_enabled(&self, name: &str) -> bool {
        let name = canonical(name);
        let mut star = false;
        let mut decided = None;
        for item in &self.items {
            match item.strip_prefix('-') {
                Some(n) if canonical(n) == name => decided = Some(false),
                None if item == "*" => star = true,
                None if canonical(item) == name => decided = Some(true),
                _ => {}
            }
        }
        decided.unwrap_or(star)
    }
}

/// The field manager the controllers' writes are recorded under, as
/// upstream's kube-controller-manager (its User-Agent's first segment).
pub const FIELD_MANAGER: &str = "kube-controller-manager";

/// What went wrong in a reconcile. Every error is retried with backoff.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A read or write of `resource` `namespace/name` failed (a conflict
    /// with another writer is expected now and then and retried).
    #[error("{verb} {resource} {namespace}/{name}")]
    Api {
        /// `get`, `list`, `create`, `update`, `delete`.
        verb: &'static str,
        /// The resource (plural).
        resource: crate::registry::Name,
        /// The namespace.
        namespace: String,
        /// The object's name (empty for lists and generated names).
        name: String,
        /// The registry's error (boxed: it is large and rare).
        #[source]
        source: Box<registry::Error>,
    },
    /// A ReplicaSet with the new ReplicaSet's name exists but is not the
    /// deployment's with the same template; the collision count was raised.
    #[error("replica set {namespace}/{name} already exists with another template")]
    HashCollision {
        /// The namespace.
        namespace: String,
        /// The taken name.
        name: String,
    },
    /// A resource the controllers need is not in the resource table.
    #[error("resource {0} is not served")]
    MissingResource(&'static str),
    /// A stored object did not decode as its `k8s-openapi` type, or a
    /// typed object did not encode (neither happens to objects the
    /// registry has validated).
    #[error("{resource} {name}: not a valid object")]
    Codec {
        /// The resource (plural).
        resource: crate::registry::Name,
        /// The object's name.
        name: String,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// A ControllerRevision with the name of a DaemonSet's new revision
    /// exists with other data; the DaemonSet's collision count was raised
    /// (or had changed meanwhile) and the next sync hashes again.
    #[error("controller revision {namespace}/{name} already exists with other data")]
    RevisionCollision {
        /// The namespace.
        namespace: String,
        /// The taken name.
        name: String,
    },
    /// The controllers' settings are unusable (e.g. a cluster CIDR too
    /// small for its node mask).
    #[error("{0}")]
    Config(String),
    /// A StatefulSet pod's PersistentVolumeClaims could not be made, or one is being
    /// deleted: the pod waits for them.
    #[error("{0}")]
    Claims(String),
}

impl Error {
    /// The error and its causes on one line, for a condition's or event's message.
    pub(crate) fn one_line(&self) -> String {
        let mut s = self.to_string();
        let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(self);
        while let Some(c) = cause {
            s.push_str(": ");
            s.push_str(&c.to_string());
            cause = c.source();
        }
        s
    }

    /// Whether the cause is a 404 NotFound.
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, Error::Api { source, .. } if matches!(**source, registry::Error::NotFound { .. }))
    }

    /// Whether the cause is a 409 AlreadyExists.
    pub(crate) fn is_already_exists(&self) -> bool {
        matches!(self, Error::Api { source, .. } if matches!(**source, registry::Error::AlreadyExists { .. }))
    }

    /// Whether the cause is a 403 Forbidden (e.g. a terminating namespace).
    pub(crate) fn is_forbidden(&self) -> bool {
        matches!(self, Error::Api { source, .. } if matches!(**source, registry::Error::Forbidden { .. } | registry::Error::ForbiddenObject { .. }))
    }

    /// Whether the write was refused because its namespace is being
    /// deleted (upstream's `NamespaceTerminatingCause`): expected, and not
    /// worth an event.
    pub(crate) fn is_namespace_terminating(&self) -> bool {
        self.is_forbidden()
            && self
                .api_message()
                .contains("because it is being terminated")
    }

    /// What the API said, as a client would print it (the Status
    /// message); the error's own words for errors that are not the API's.
    pub(crate) fn api_message(&self) -> String {
        match self {
            Error::Api { source, .. } => source.message(),
            other => other.to_string(),
        }
    }
}

/// Running controllers; stop them with [`Controllers::shutdown`].
#[derive(Debug)]
pub struct Controllers {
    tasks: JoinSet<()>,
    stop: CancellationToken,
}

/// Starts the controllers `options` enables on `objects`, the workload
/// controllers (job, cronjob, TTL-after-finished, daemonset, statefulset),
/// plus the CRD finalizer and event TTL controllers (kube-apiserver's,
/// always on). Each lists and watches what it needs, so it resumes after a
/// restart from the stored state.
///
/// # Errors
/// [`Error::MissingResource`] if the resource table lacks a resource a
/// controller needs; [`Error::Config`] for unusable settings.
pub fn spawn(objects: &ObjectStore, options: &ControllerOptions) -> Result<Controllers, Error> {
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let lookup = |group, resource| {
        objects
            .table()
            .lookup(group, "v1", resource)
            .ok_or(Error::MissingResource(resource))
    };
    let kinds = client::Kinds {
        pods: lookup("", "pods")?,
        replicasets: lookup("apps", "replicasets")?,
        deployments: lookup("apps", "deployments")?,
        events: lookup("", "events")?,
    };
    let event_kinds = vec![kinds.events.clone(), lookup("events.k8s.io", "events")?];
    if options.enabled.is_enabled("replicaset-controller") {
        let rs = replicaset::ReplicaSetController::<replicaset::ReplicaSets>::new(
            objects.clone(),
            kinds.clone(),
            kinds.replicasets.clone(),
        );
        tasks.spawn(runtime::run(
            rs,
            objects.clone(),
            vec![kinds.replicasets.clone(), kinds.pods.clone()],
            stop.child_token(),
        ));
    }
    if options
        .enabled
        .is_enabled("replicationcontroller-controller")
    {
        let rcs = lookup("", "replicationcontrollers")?;
        let rc = replicaset::ReplicaSetController::<replicaset::ReplicationControllers>::new(
            objects.clone(),
            kinds.clone(),
            rcs.clone(),
        );
        tasks.spawn(runtime::run(
            rc,
            objects.clone(),
            vec![rcs, kinds.pods.clone()],
            stop.child_token(),
        ));
    }
    if options.enabled.is_enabled("deployment-controller") {
        let deploy = deployment::DeploymentController::new(objects.clone(), kinds.clone());
        tasks.spawn(runtime::run(
            deploy,
            objects.clone(),
            vec![kinds.deployments.clone(), kinds.replicasets.clone()],
            stop.child_token(),
        ));
    }
    // kube-apiserver's own work, not a controller one can turn off.
    tasks.spawn(flow_control_bootstrap::run(
        objects.clone(),
        stop.child_token(),
    ));
    tasks.spawn(api_service_registration::run(
        objects.clone(),
        stop.child_token(),
    ));
    if options.enabled.is_enabled("garbage-collector-controller") {
        tasks.spawn(garbage_collector::run(objects.clone(), stop.child_token()));
    }
    let cluster = cluster::spawn(objects, options, &mut tasks, &stop)?;
    let crds = {
        let (g, v, r) = crate::registry::kinds::CRD_GROUP_VERSION_RESOURCE;
        objects
            .table()
            .lookup(g, v, r)
            .ok_or(Error::MissingResource(r))?
    };
    let finalizer = crd_finalizer::CrdFinalizer::new(objects.clone(), crds.clone());
    tasks.spawn(runtime::run(
        finalizer,
        objects.clone(),
        vec![crds],
        stop.child_token(),
    ));
    let ttl = event_ttl::EventTtl::new(objects.clone(), event_kinds.clone(), options.event_ttl);
    tasks.spawn(runtime::run(
        ttl,
        objects.clone(),
        event_kinds,
        stop.child_token(),
    ));
    spawn_workloads(objects, &kinds, &lookup, &mut tasks, &stop)?;
    if let Some(id) = &options.identity {
        identity::spawn(objects, id, &options.enabled, &lookup, &mut tasks, &stop)?;
    }
    tracing::info!(
        event_ttl = ?options.event_ttl,
        cluster = ?cluster,
        identity = options.identity.is_some(),
        "controllers started: deployment, replicaset, replicationcontroller, job, cronjob, ttl-after-finished, daemonset, statefulset, garbagecollector, crd-finalizer, event-ttl and the cluster controllers{}",
        if options.identity.is_some() {
            ", clusterrole-aggregation, serviceaccount-token, csr-signing"
        } else {
            ""
        }
    );
    Ok(Controllers { tasks, stop })
}

/// Starts the job, cronjob, TTL-after-finished, daemonset and statefulset controllers.
fn spawn_workloads(
    objects: &ObjectStore,
    kinds: &client::Kinds,
    lookup: &dyn Fn(
        &'static str,
        &'static str,
    ) -> Result<std::sync::Arc<registry::ResourceInfo>, Error>,
    tasks: &mut JoinSet<()>,
    stop: &CancellationToken,
) -> Result<(), Error> {
    let jobs_info = lookup("batch", "jobs")?;
    let cronjobs_info = lookup("batch", "cronjobs")?;
    let jobs = typed::Typed::new(objects.clone(), jobs_info.clone());
    let job = job::JobController::new(objects, kinds, jobs.clone());
    tasks.spawn(runtime::run(
        job,
        objects.clone(),
        vec![jobs_info.clone(), kinds.pods.clone()],
        stop.child_token(),
    ));
    let cronjobs = typed::Typed::new(objects.clone(), cronjobs_info.clone());
    let cron = cronjob::CronJobController::new(objects, kinds, cronjobs, jobs.clone());
    tasks.spawn(runtime::run(
        cron,
        objects.clone(),
        vec![cronjobs_info, jobs_info.clone()],
        stop.child_token(),
    ));
    let ttl = ttl_after_finished::TtlAfterFinished::new(jobs);
    tasks.spawn(runtime::run(
        ttl,
        objects.clone(),
        vec![jobs_info],
        stop.child_token(),
    ));
    let ds_kinds = daemonset::DaemonSetKinds {
        daemonsets: lookup("apps", "daemonsets")?,
        nodes: lookup("", "nodes")?,
        revisions: lookup("apps", "controllerrevisions")?,
    };
    let ds = daemonset::DaemonSetController::new(objects, kinds, &ds_kinds);
    tasks.spawn(runtime::run(
        ds,
        objects.clone(),
        vec![
            ds_kinds.daemonsets.clone(),
            kinds.pods.clone(),
            ds_kinds.nodes.clone(),
            ds_kinds.revisions.clone(),
        ],
        stop.child_token(),
    ));
    let sets = lookup("apps", "statefulsets")?;
    let sts = statefulset::StatefulSetController::new(
        objects,
        kinds,
        sets.clone(),
        ds_kinds.revisions.clone(),
        lookup("", "persistentvolumeclaims")?,
    );
    tasks.spawn(runtime::run(
        sts,
        objects.clone(),
        vec![sets, kinds.pods.clone(), ds_kinds.revisions],
        stop.child_token(),
    ));
    Ok(())
}

impl Controllers {
    /// Stops taking work, lets reconciles in flight finish for up to 5 s,
    /// then aborts what is left.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(5), drain)
            .await
            .is_err()
        {
            tracing::warn!("controllers did not stop within 5 s; aborting them");
            self.tasks.abort_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Enabled;

    #[test]
    fn controllers_flag() {
        let all = Enabled::default();
        assert!(all.is_enabled("node-lifecycle-controller"));
        let some = Enabled::new(["*", "-nodelifecycle", "-podgc"]);
        assert!(!some.is_enabled("node-lifecycle-controller"));
        assert!(!some.is_enabled("pod-garbage-collector-controller"));
        assert!(some.is_enabled("endpointslice-controller"));
        let only = Enabled::new(["endpoint"]);
        assert!(only.is_enabled("endpoints-controller"));
        assert!(!only.is_enabled("deployment-controller"));
    }
}
