//! The endpointslice mirroring controller (upstream
//! `pkg/controller/endpointslicemirroring`): Endpoints that users manage
//! for a Service without a selector are mirrored into EndpointSlices
//! (`endpointslice.kubernetes.io/managed-by:
//! endpointslicemirroring-controller.k8s.io`, owned by the Endpoints):
//! `addresses` as ready endpoints, `notReadyAddresses` as not ready, at
//! most 1000 addresses per subset. Endpoints labelled
//! `endpointslice.kubernetes.io/skip-mirror: "true"` (as the API server's
//! own `default/kubernetes`) and those of Services with a selector are not
//! mirrored, and their mirrored slices go.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::slices::{self, Group, SliceOwner, add_to_group};
use super::{MANAGED_BY_LABEL, address_type, owned_slices};
use crate::controllers::Error;
use crate::controllers::kubernetes_service::{SERVICE_NAME_LABEL, SKIP_MIRROR};
use crate::controllers::runtime::{Action, ObjectKey, Reconciler};
use crate::controllers::typed::Typed;
use crate::registry::generic::DeleteOptions;
use crate::registry::{WatchEvent, meta};

/// This controller's managed-by value.
const MANAGED_BY: &str = "endpointslicemirroring-controller.k8s.io";

/// Addresses mirrored per subset (upstream's `--mirroring-max-endpoints-per-subset`).
const MAX_PER_SUBSET: usize = 1000;

fn endpoint(a: &EndpointAddress, ready: bool) -> Endpoint {
    Endpoint {
        addresses: vec![a.ip.clone()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            ..Default::default()
        }),
        hostname: a.hostname.clone().filter(|h| !h.is_empty()),
        node_name: a.node_name.clone(),
        target_ref: a.target_ref.clone(),
        ..Default::default()
    }
}

/// The mirroring controller.
#[derive(Debug)]
pub(crate) struct MirroringController {
    endpoints: Typed<Endpoints>,
    services: Typed<Service>,
    slices: Typed<EndpointSlice>,
    max_per_slice: usize,
}

impl MirroringController {
    /// Watches 0: endpoints, 1: services, 2: endpointslices.
    pub(crate) fn new(
        endpoints: Typed<Endpoints>,
        services: Typed<Service>,
        slices: Typed<EndpointSlice>,
        max_per_slice: usize,
    ) -> Self {
        MirroringController {
            endpoints,
            services,
            slices,
            max_per_slice,
        }
    }
}

/// The groups mirroring `ep`'s subsets.
fn desired(ep: &Endpoints) -> Vec<Group> {
    let mut groups = Vec::new();
    for subset in ep.subsets.iter().flatten() {
        let ports: Vec<EndpointPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| EndpointPort {
                name: p.name.clone(),
                port: Some(p.port),
                protocol: p.protocol.clone(),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        let ready = subset.addresses.iter().flatten().map(|a| (a, true));
        let not_ready = subset
            .not_ready_addresses
            .iter()
            .flatten()
            .map(|a| (a, false));
        for (a, is_ready) in ready.chain(not_ready).take(MAX_PER_SUBSET) {
            if let Some(family) = address_type(&a.ip) {
                add_to_group(&mut groups, family, ports.clone(), endpoint(a, is_ready));
            }
        }
    }
    groups
}

impl Reconciler for MirroringController {
    type Key = ObjectKey;
    const NAME: &'static str = "endpoint_slice_mirroring";

    async fn keys_for(&mut self, kind: usize, event: &WatchEvent) -> Vec<ObjectKey> {
        let obj = match event {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => o,
            _ => return Vec::new(),
        };
        if kind < 2 {
            return vec![ObjectKey::of(obj)];
        }
        let labels = meta::labels(obj);
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(|v| v.as_str());
        match (get(MANAGED_BY_LABEL), get(SERVICE_NAME_LABEL)) {
            (Some(MANAGED_BY), Some(name)) => vec![ObjectKey {
                namespace: meta::namespace(obj).to_string(),
                name: name.to_string(),
            }],
            _ => Vec::new(),
        }
    }

    async fn reconcile(&mut self, key: &ObjectKey) -> Result<Action, Error> {
        let (ns, name) = (key.namespace.as_str(), key.name.as_str());
        let ep = self.endpoints.get(ns, name).await?;
        let svc = self.services.get(ns, name).await?;
        let existing = owned_slices(self.slices.list(ns).await?, name, MANAGED_BY);
        let mirror = match (&ep, &svc) {
            (Some(ep), Some(svc)) => {
                let skip = ep
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SKIP_MIRROR))
                    .is_some_and(|v| v == "true");
                !skip
                    && svc
                        .spec
                        .as_ref()
                        .and_then(|s| s.selector.as_ref())
                        .is_none()
            }
            _ => false,
        };
        let Some(ep) = ep.filter(|_| mirror) else {
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
        let mut labels: BTreeMap<String, String> = ep.metadata.labels.clone().unwrap_or_default();
        labels.insert(SERVICE_NAME_LABEL.into(), name.into());
        labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
        let owner = SliceOwner {
            generate_name: format!("{name}-"),
            labels,
            owner: OwnerReference {
                api_version: "v1".into(),
                kind: "Endpoints".into(),
                name: name.into(),
                uid: ep.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
            placeholder_type: None,
        };
        match slices::reconcile(
            &self.slices,
            ns,
            existing,
            desired(&ep),
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
