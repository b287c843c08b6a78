//! Starting the cluster controllers (nodes, endpoints, service accounts,
//! the root CA, pod GC, disruption, quota, volume binding) and the API server's own
//! `default/kubernetes` reconciler, each behind its `--controllers` name.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::client::Api;
use super::endpointslice::{self, EndpointSliceController, mirroring::MirroringController};
use super::node_ipam::{CidrSet, ClusterCidr, NodeIpam};
use super::node_lifecycle::{NodeLifecycle, NodeLifecycleOptions};
use super::typed::Typed;
use super::{ControllerOptions, Error, runtime};
use crate::registry::{ObjectStore, ResourceInfo};

/// Settings of the cluster controllers (kube-controller-manager's and
/// kube-apiserver's flags).
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The CA the API server's serving certificate chains to (PEM), which
    /// the root CA publisher puts into every namespace; `None`: no publisher.
    pub root_ca_pem: Option<String>,
    /// The API server's advertised address, where `default/kubernetes`
    /// points; `None`: that Service is not kept.
    pub advertise: Option<SocketAddr>,
    /// `--cluster-cidr` (`10.42.0.0/16`).
    pub cluster_cidr: ClusterCidr,
    /// `--node-cidr-mask-size` (24).
    pub node_cidr_mask_size: u8,
    /// The node lifecycle controller's settings.
    pub node_lifecycle: NodeLifecycleOptions,
    /// `--max-endpoints-per-slice` (100).
    pub max_endpoints_per_slice: usize,
    /// `--terminated-pod-gc-threshold` (12500; 0 disables).
    pub terminated_pod_gc_threshold: usize,
    /// How often the pod garbage collector runs (20 s; orphaned pods are
    /// collected after twice that).
    pub pod_gc_period: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            root_ca_pem: None,
            advertise: None,
            cluster_cidr: ClusterCidr::DEFAULT,
            node_cidr_mask_size: 24,
            node_lifecycle: NodeLifecycleOptions::default(),
            max_endpoints_per_slice: endpointslice::DEFAULT_MAX_ENDPOINTS_PER_SLICE,
            terminated_pod_gc_threshold: super::pod_gc::DEFAULT_TERMINATED_POD_GC_THRESHOLD,
            pod_gc_period: super::pod_gc::DEFAULT_POD_GC_PERIOD,
        }
    }
}

/// Looks resources up in the table.
struct Lookup<'a> {
    objects: &'a ObjectStore,
}

impl Lookup<'_> {
    fn info(&self, group: &str, resource: &'static str) -> Result<Arc<ResourceInfo>, Error> {
        self.objects
            .table()
            .lookup(group, "v1", resource)
            .ok_or(Error::MissingResource(resource))
    }

    fn typed<K: Serialize + DeserializeOwned>(
        &self,
        group: &str,
        resource: &'static str,
    ) -> Result<Typed<K>, Error> {
        Ok(Typed::new(
            self.objects.clone(),
            self.info(group, resource)?,
        ))
    }

    fn api(&self, group: &str, resource: &'static str) -> Result<Api, Error> {
        Ok(Api::new(self.objects.clone(), self.info(group, resource)?))
    }
}

/// Starts the enabled cluster controllers; returns their names.
///
/// # Errors
/// [`Error::MissingResource`] when the table lacks a resource one needs;
/// [`Error::Config`] for an unusable cluster CIDR.
pub(crate) fn spawn(
    objects: &ObjectStore,
    options: &ControllerOptions,
    tasks: &mut JoinSet<()>,
    stop: &CancellationToken,
) -> Result<Vec<&'static str>, Error> {
    let opts = &options.cluster;
    let l = Lookup { objects };
    let mut started = Vec::new();
    macro_rules! start {
        ($name:expr, $reconciler:expr, $watched:expr) => {
            if options.enabled.is_enabled($name) {
                let r = $reconciler;
                tasks.spawn(runtime::run(
                    r,
                    objects.clone(),
                    $watched,
                    stop.child_token(),
                ));
                started.push($name);
            }
        };
    }
    let (nodes, pods, services, leases) = (
        l.info("", "nodes")?,
        l.info("", "pods")?,
        l.info("", "services")?,
        l.info("coordination.k8s.io", "leases")?,
    );
    let (endpoints, slices, namespaces) = (
        l.info("", "endpoints")?,
        l.info("discovery.k8s.io", "endpointslices")?,
        l.info("", "namespaces")?,
    );
    start!(
        "node-lifecycle-controller",
        NodeLifecycle::new(
            l.typed("", "nodes")?,
            l.typed("", "pods")?,
            l.api("", "events")?,
            opts.node_lifecycle.clone()
        ),
        vec![nodes.clone(), leases]
    );
    start!(
        "taint-eviction-controller",
        super::taint_eviction::TaintEviction::new(
            l.typed("", "nodes")?,
            l.typed("", "pods")?,
            l.api("", "events")?
        ),
        vec![nodes.clone(), pods.clone()]
    );
    if options.enabled.is_enabled("node-ipam-controller") {
        let cidrs = CidrSet::new(
            opts.cluster_cidr,
            opts.node_cidr_mask_size,
            objects.service_cidr(),
        )
        .map_err(Error::Config)?;
        start!(
            "node-ipam-controller",
            NodeIpam::new(l.typed("", "nodes")?, cidrs, l.api("", "events")?),
            vec![nodes.clone()]
        );
    }
    start!(
        "endpoints-controller",
        super::endpoints::EndpointsController::new(
            l.typed("", "services")?,
            l.typed("", "pods")?,
            l.typed("", "endpoints")?
        ),
        vec![services.clone(), pods.clone()]
    );
    start!(
        "endpointslice-controller",
        EndpointSliceController::new(
            l.typed("", "services")?,
            l.typed("", "pods")?,
            l.typed("", "nodes")?,
            l.typed("discovery.k8s.io", "endpointslices")?,
            opts.max_endpoints_per_slice
        ),
        vec![services.clone(), pods.clone(), slices.clone()]
    );
    start!(
        "endpointslice-mirroring-controller",
        MirroringController::new(
            l.typed("", "endpoints")?,
            l.typed("", "services")?,
            l.typed("discovery.k8s.io", "endpointslices")?,
            opts.max_endpoints_per_slice
        ),
        vec![endpoints.clone(), services.clone(), slices.clone()]
    );
    start!(
        "serviceaccount-controller",
        super::serviceaccounts::ServiceAccountController::new(
            l.typed("", "namespaces")?,
            l.typed("", "serviceaccounts")?
        ),
        vec![namespaces.clone(), l.info("", "serviceaccounts")?]
    );
    if let Some(ca) = &opts.root_ca_pem {
        start!(
            "root-ca-certificate-publisher-controller",
            super::root_ca::RootCaPublisher::new(
                l.typed("", "namespaces")?,
                l.typed("", "configmaps")?,
                ca.clone()
            ),
            vec![namespaces.clone(), l.info("", "configmaps")?]
        );
    }
    start!(
        "pod-garbage-collector-controller",
        super::pod_gc::PodGc::new(
            l.typed("", "pods")?,
            l.typed("", "nodes")?,
            opts.terminated_pod_gc_threshold,
            opts.pod_gc_period
        ),
        vec![nodes.clone()]
    );
    start!(
        "disruption-controller",
        super::disruption::DisruptionController::new(
            objects.clone(),
            l.typed("policy", "poddisruptionbudgets")?,
            l.typed("", "pods")?,
            l.api("", "events")?
        ),
        vec![
            l.info("policy", "poddisruptionbudgets")?,
            pods.clone(),
            l.info("apps", "replicasets")?,
            l.info("apps", "deployments")?,
            l.info("apps", "statefulsets")?,
        ]
    );
    start!(
        "persistentvolume-binder-controller",
        super::persistent_volume::PersistentVolumeBinder::new(
            l.typed("", "persistentvolumeclaims")?,
            l.typed("", "persistentvolumes")?,
            l.typed("storage.k8s.io", "storageclasses")?,
            l.typed("", "nodes")?,
            l.api("", "events")?
        ),
        vec![
            l.info("", "persistentvolumeclaims")?,
            l.info("", "persistentvolumes")?,
            l.info("storage.k8s.io", "storageclasses")?,
        ]
    );
    start!(
        "resourcequota-controller",
        super::resource_quota::ResourceQuotaController::new(
            objects.clone(),
            l.typed("", "resourcequotas")?
        ),
        vec![
            l.info("", "resourcequotas")?,
            pods.clone(),
            services.clone(),
            l.info("", "configmaps")?,
            l.info("", "secrets")?,
        ]
    );
    // kube-apiserver's own reconciler, not a kube-controller-manager controller: always on.
    if let Some(advertise) = opts.advertise {
        let cluster_ip = IpAddr::V4(objects.service_cidr().first_ip());
        let r = super::kubernetes_service::KubernetesService::new(
            l.typed("", "services")?,
            l.typed("", "endpoints")?,
            l.typed("discovery.k8s.io", "endpointslices")?,
            cluster_ip,
            advertise,
        );
        tasks.spawn(runtime::run(
            r,
            objects.clone(),
            vec![services.clone(), endpoints, slices],
            stop.child_token(),
        ));
        started.push("kubernetes-service");
    }
    // kube-apiserver's default ServiceCIDR controller and its allocator's IPAddresses: always on.
    let r = super::service_cidr::ServiceCidrController::new(
        l.typed("", "services")?,
        l.typed("networking.k8s.io", "ipaddresses")?,
        l.typed("networking.k8s.io", "servicecidrs")?,
        objects.service_cidr().to_string(),
    );
    tasks.spawn(runtime::run(
        r,
        objects.clone(),
        vec![
            services.clone(),
            l.info("networking.k8s.io", "ipaddresses")?,
            l.info("networking.k8s.io", "servicecidrs")?,
        ],
        stop.child_token(),
    ));
    started.push("service-cidr");
    Ok(started)
}
