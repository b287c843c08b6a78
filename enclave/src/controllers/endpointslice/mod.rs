//! The endpointslice controller (upstream `pkg/controller/endpointslice`):
//! the EndpointSlices of every Service with a selector, labelled
//! `kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by:
//! endpointslice-controller.k8s.io` and owned by the Service. Each selected
//! pod with an IP is an endpoint with upstream's conditions: `serving` is
//! the pod's readiness, `terminating` its deletion, and `ready` serving and
//! not terminating (always true with `publishNotReadyAddresses`). Named
//! target ports are resolved per pod, so pods with different container
//! ports land in different slices; a slice holds at most
//! `--max-endpoints-per-slice` (100) endpoints. Services without a selector
//! are left to the mirroring controller ([`mirroring`]).

pub(crate) mod mirroring;
pub(crate) mod slices;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::Error;
use super::endpoints::{
    find_port, hostname_for, pod_ip, pod_ref, selected, service_labels, should_be_in_endpoints,
};
use super::kubernetes_service::SERVICE_NAME_LABEL;
use super::runtime::{Action, ObjectKey, Reconciler};
use super::service_index::ServiceIndex;
use super::typed::Typed;
use crate::registry::eviction::is_pod_ready;
use crate::registry::generic::DeleteOptions;
use crate::registry::{WatchEvent, meta};
use slices::{Group, SliceOwner, add_to_group};

/// The label naming the controller that manages a slice.
pub(crate) const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's managed-by value.
pub(crate) const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// upstream's default `--max-endpoints-per-slice`.
pub(crate) const DEFAULT_MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// The node label an endpoint's zone comes from.
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// `IPv4` or `IPv6` for an address, `None` if it is not one.
pub(crate) fn address_type(ip: &str) -> Option<&'static str> {
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(_) => Some("IPv4"),
        IpAddr::V6(_) => Some("IPv6"),
    }
}

/// The slices in `all` whose labels name `service` and `managed_by`.
pub(crate) fn owned_slices(
    all: Vec<EndpointSlice>,
    service: &str,
    managed_by: &str,
) -> Vec<EndpointSlice> {
    all.into_iter()
        .filter(|s| {
            let l = s.metadata.labels.as_ref();
            l.and_then(|l| l.get(SERVICE_NAME_LABEL))
                .map(String::as_str)
                == Some(service)
                && l.and_then(|l| l.get(MANAGED_BY_LABEL)).map(String::as_str) == Some(managed_by)
        })
        .collect()
}

/// The endpointslice controller.
#[derive(Debug)]
pub(crate) struct EndpointSliceController {
    services: Typed<Service>,
    pods: Typed<Pod>,
    nodes: Typed<Node>,
    slices: Typed<EndpointSlice>,
    max_per_slice: usize,
    index: ServiceIndex,
}

impl EndpointSliceController {
    /// Watches 0: services, 1: pods, 2: endpointslices.
    pub(crate) fn new(
        services: Typed<Service>,
        pods: Typed<Pod>,
        nodes: Typed<Node>,
        slices: Typed<EndpointSlice>,
        max_per_slice: usize,
    ) -> Self {
        EndpointSliceController {
            services,
            pods,
            nodes,
            slices,
            max_per_slice,
            index: ServiceIndex::default(),
        }
    }

    /// The endpoints of `svc`, grouped by resolved ports and address type.
    async fn desired(&self, svc: &Service, pods: &[&Pod]) -> Result<Vec<Group>, Error> {
        let spec = svc.spec.clone().unwrap_or_default();
        let publish = spec.publish_not_ready_addresses.unwrap_or(false);
        let mut zones: HashMap<String, Option<String>> = HashMap::new();
        let mut groups = Vec::new();
        for pod in pods {
            if !should_be_in_endpoints(pod, true) {
                continue;
            }
            let Some(ip) = pod_ip(pod) else { continue };
            let Some(family) = address_type(ip) else {
                continue;
            };
            let node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty());
            let zone = match &node {
                Some(n) => match zones.get(n) {
                    Some(z) => z.clone(),
                    None => {
                        let z = self
                            .nodes
                            .get("", n)
                            .await?
                            .and_then(|node| node.metadata.labels?.get(ZONE_LABEL).cloned());
                        zones.insert(n.clone(), z.clone());
                        z
                    }
                },
                None => None,
            };
            let serving = is_pod_ready(pod);
            let terminating = pod.metadata.deletion_timestamp.is_some();
            let e = Endpoint {
                addresses: vec![ip.to_string()],
                conditions: Some(EndpointConditions {
                    ready: Some(publish || (serving && !terminating)),
                    serving: Some(serving),
                    terminating: Some(terminating),
                }),
                hostname: hostname_for(pod, svc),
                node_name: node,
                target_ref: Some(pod_ref(pod)),
                zone,
                ..Default::default()
            };
            let ports: Vec<EndpointPort> = spec
                .ports
                .iter()
                .flatten()
                .filter_map(|sp| {
                    Some(EndpointPort {
                        name: Some(sp.name.clone().unwrap_or_default()),
                        port: Some(find_port(pod, sp)?),
                        protocol: sp.protocol.clone(),
                        app_protocol: sp.app_protocol.clone(),
                    })
                })
                .collect();
            add_to_group(&mut groups, family, ports, e);
        }
        Ok(groups)
    }
}

impl Reconciler for EndpointSliceController {
    type Key = ObjectKey;
    const NAME: &'static str = "endpoint_slice";

    async fn keys_for(&mut self, kind: usize, event: &WatchEvent) -> Vec<ObjectKey> {
        match (kind, event) {
            (0, _) => self.index.service_event(event),
            (1, _) => self.index.pod_event(event),
            (_, WatchEvent::Modified(o) | WatchEvent::Deleted(o)) => {
                let labels = meta::labels(o);
                let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(|v| v.as_str());
                match (get(MANAGED_BY_LABEL), get(SERVICE_NAME_LABEL)) {
                    (Some(MANAGED_BY), Some(svc)) => vec![ObjectKey {
                        namespace: meta::namespace(o).to_string(),
                        name: svc.to_string(),
                    }],
                    _ => Vec::new(),
                }
            }
            _ => Vec::new(),
        }
    }

    async fn reconcile(&mut self, key: &ObjectKey) -> Result<Action, Error> {
        let (ns, name) = (key.namespace.as_str(), key.name.as_str());
        let svc = self.services.get(ns, name).await?;
        let existing = owned_slices(self.slices.list(ns).await?, name, MANAGED_BY);
        let Some(svc) = svc else {
            self.index.set_members(key, &[]);
            for s in existing {
                let opts = DeleteOptions {
                    uid: s.metadata.uid.clone(),
                    ..Default::default()
                };
                self.slices
                    .delete(ns, s.metadata.name.as_deref().unwrap_or(""), &opts)
                    .await?;
            }
            return Ok(Action::await_change());
        };
        if svc
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .is_none()
        {
            self.index.set_members(key, &[]);
            return Ok(Action::await_change());
        }
        let all = self.pods.list(ns).await?;
        let pods = selected(&svc, &all);
        let members: Vec<String> = pods
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        self.index.set_members(key, &members);
        let desired = self.desired(&svc, &pods).await?;
        let mut labels: BTreeMap<String, String> = service_labels(&svc);
        labels.insert(SERVICE_NAME_LABEL.into(), name.into());
        labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
        let owner = SliceOwner {
            generate_name: format!("{name}-"),
            labels,
            owner: OwnerReference {
                api_version: "v1".into(),
                kind: "Service".into(),
                name: name.into(),
                uid: svc.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
            placeholder_type: Some("IPv4".into()),
        };
        match slices::reconcile(
            &self.slices,
            ns,
            existing,
            desired,
            &owner,
            self.max_per_slice,
        )
        .await
        {
            Ok(()) => Ok(Action::await_change()),
            Err(e) if e.is_namespace_terminating() => Ok(Action::await_change()),
            Err(e) => Err(e),
        }
    }
}
