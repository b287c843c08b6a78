//! Controllers that run inside the enclave, as kube-controller-manager's do
//! on a real cluster: the deployment and replicaset controllers, the
//! garbage collector, apiextensions-apiserver's CRD finalizer, and the
//! expiry of events that kube-apiserver gets from etcd leases.
//!
//! They sit above [`crate::registry`]: every read and write goes through
//! the same [`ObjectStore`] paths as API requests (validation, generation,
//! managedFields under the manager `kube-controller-manager`, optimistic
//! concurrency), so watches and kubectl see their work. `runtime` is the
//! small reconciler runtime they share; start with [`spawn`].
//!
//! Pods stay `Pending`: there are no nodes or kubelets yet, so no pod ever
//! becomes ready. The deployment controller's rolling-update arithmetic is
//! upstream's and counts a pod as available only when its ReplicaSet's
//! status says so; a rolling update therefore waits, as on a real cluster
//! whose pods never start, unless `maxUnavailable` allows old pods to go.

mod client;
mod clusterrole_aggregation;
mod crd_finalizer;
mod csr_signer;
mod deployment;
mod event_ttl;
mod events;
mod garbage_collector;
mod owner;
mod pod_template;
mod replicaset;
mod runtime;
mod sa_tokens;
mod serviceaccounts;

use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::registry::{self, ObjectStore};

pub use clusterrole_aggregation::aggregate_all as aggregate_cluster_roles;
pub use event_ttl::DEFAULT_EVENT_TTL;

/// Settings of the controllers, each standing for a flag of kube-apiserver or kube-controller-manager.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// How long an event lives after its last write (kube-apiserver's `--event-ttl`).
    pub event_ttl: Duration,
    /// The identity controllers' keys; `None` runs none of them.
    pub identity: Option<IdentityOptions>,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            event_ttl: DEFAULT_EVENT_TTL,
            identity: None,
        }
    }
}

/// What the identity controllers need: the default service account and
/// root CA of every namespace, legacy token Secrets, the
/// `kube-apiserver-client` signer; the ClusterRole aggregation controller
/// runs with them.
#[derive(Debug, Clone)]
pub struct IdentityOptions {
    /// The CA that signs the API server's certificate (`kube-root-ca.crt`).
    pub root_ca_pem: String,
    /// Signs legacy token Secrets.
    pub tokens: std::sync::Arc<crate::auth::serviceaccount::ServiceAccountTokens>,
    /// Signs approved client certificate requests.
    pub client_ca: std::sync::Arc<crate::auth::client_ca::ClientCa>,
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
        resource: &'static str,
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

/// Starts the deployment, replicaset, garbage-collector, CRD finalizer and event TTL controllers on
/// `objects`. Each lists and watches what it needs, so it resumes after a
/// restart from the stored state.
///
/// # Errors
/// [`Error::MissingResource`] if the resource table lacks pods,
/// replicasets, deployments, events or customresourcedefinitions.
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
    let rs = replicaset::ReplicaSetController::new(objects.clone(), kinds.clone());
    tasks.spawn(runtime::run(
        rs,
        objects.clone(),
        vec![kinds.replicasets.clone(), kinds.pods.clone()],
        stop.child_token(),
    ));
    let deploy = deployment::DeploymentController::new(objects.clone(), kinds.clone());
    tasks.spawn(runtime::run(
        deploy,
        objects.clone(),
        vec![kinds.deployments.clone(), kinds.replicasets.clone()],
        stop.child_token(),
    ));
    tasks.spawn(garbage_collector::run(objects.clone(), stop.child_token()));
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
    if let Some(id) = &options.identity {
        let rbac = |r: &'static str| {
            objects
                .table()
                .lookup("rbac.authorization.k8s.io", "v1", r)
                .ok_or(Error::MissingResource(r))
        };
        let clusterroles = rbac("clusterroles")?;
        tasks.spawn(runtime::run(
            clusterrole_aggregation::ClusterRoleAggregation::new(
                objects.clone(),
                clusterroles.clone(),
            ),
            objects.clone(),
            vec![clusterroles],
            stop.child_token(),
        ));
        let (namespaces, accounts, configmaps, secrets) = (
            lookup("", "namespaces")?,
            lookup("", "serviceaccounts")?,
            lookup("", "configmaps")?,
            lookup("", "secrets")?,
        );
        tasks.spawn(runtime::run(
            serviceaccounts::NamespaceDefaults::new(
                objects,
                [namespaces.clone(), accounts.clone(), configmaps.clone()],
                id.root_ca_pem.clone(),
            ),
            objects.clone(),
            vec![namespaces, accounts.clone(), configmaps],
            stop.child_token(),
        ));
        tasks.spawn(runtime::run(
            sa_tokens::LegacyTokens::new(
                objects,
                secrets.clone(),
                accounts.clone(),
                id.tokens.clone(),
                id.root_ca_pem.clone(),
            ),
            objects.clone(),
            vec![secrets, accounts],
            stop.child_token(),
        ));
        let csrs = objects
            .table()
            .lookup("certificates.k8s.io", "v1", "certificatesigningrequests")
            .ok_or(Error::MissingResource("certificatesigningrequests"))?;
        tasks.spawn(runtime::run(
            csr_signer::CsrSigner::new(objects, csrs.clone(), id.client_ca.clone()),
            objects.clone(),
            vec![csrs],
            stop.child_token(),
        ));
    }
    tracing::info!(
        event_ttl = ?options.event_ttl,
        identity = options.identity.is_some(),
        "controllers started: deployment, replicaset, garbagecollector, crd-finalizer, event-ttl{}",
        if options.identity.is_some() {
            ", clusterrole-aggregation, namespace-defaults, serviceaccount-tokens, csr-signer"
        } else {
            ""
        }
    );
    Ok(Controllers { tasks, stop })
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
