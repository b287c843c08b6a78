//! Feeds the [`ClusterModel`] from the API server: every `period`, one list per kind, and a kind
//! is replaced only when its objects changed (their namespace, name and resourceVersion), so the
//! route, proxy, DNS and policy loops wake only on real changes.
//!
//! Polling lists is the first seam to the API: our client (`crate::client`) has no streaming
//! watch yet. A list+watch feeder (list, [`ClusterModel::replace`], then `apply`/`delete` per
//! watch event, re-list on 410 Gone) can replace [`run`] without touching the readers.
//!
//! The identity the lists run as must be allowed to list all six kinds cluster-wide: Nodes,
//! Services, EndpointSlices, Pods, Namespaces and NetworkPolicies (kube-proxy, flannel, CoreDNS
//! and k3s's policy controller have these rights; the node authorizer alone does not grant them).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio_util::sync::CancellationToken;

use super::model::{ClusterModel, ClusterObject, ObjectKind};
use crate::client::KubeClient;

/// Every kind the networking reads, in the order they are listed.
pub const ALL_KINDS: [ObjectKind; 6] = [
    ObjectKind::Node,
    ObjectKind::Namespace,
    ObjectKind::Service,
    ObjectKind::EndpointSlice,
    ObjectKind::Pod,
    ObjectKind::NetworkPolicy,
];

/// The API path listing every object of `kind`.
pub fn list_path(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Node => "/api/v1/nodes",
        ObjectKind::Service => "/api/v1/services",
        ObjectKind::EndpointSlice => "/apis/discovery.k8s.io/v1/endpointslices",
        ObjectKind::Pod => "/api/v1/pods",
        ObjectKind::Namespace => "/api/v1/namespaces",
        ObjectKind::NetworkPolicy => "/apis/networking.k8s.io/v1/networkpolicies",
    }
}

/// Where the objects come from: the API server ([`KubeClient`]) or a test's fake.
pub trait ObjectSource: Send {
    /// Every object of `kind`, or why not (logged, retried next period).
    fn list(
        &mut self,
        kind: ObjectKind,
    ) -> impl Future<Output = Result<Vec<ClusterObject>, String>> + Send;
}

async fn list_as<T>(
    client: &mut KubeClient,
    kind: ObjectKind,
    wrap: fn(T) -> ClusterObject,
) -> Result<Vec<ClusterObject>, String>
where
    T: k8s_openapi::ListableResource + serde::de::DeserializeOwned + Send,
{
    let path = list_path(kind);
    match client.get::<k8s_openapi::List<T>>(path).await {
        Ok(Some(list)) => Ok(list.items.into_iter().map(wrap).collect()),
        Ok(None) => Err(format!("GET {path}: not found")),
        Err(e) => Err(format!("GET {path}: {e}")),
    }
}

impl ObjectSource for KubeClient {
    async fn list(&mut self, kind: ObjectKind) -> Result<Vec<ClusterObject>, String> {
        match kind {
            ObjectKind::Node => list_as::<Node>(self, kind, ClusterObject::Node).await,
            ObjectKind::Service => list_as::<Service>(self, kind, ClusterObject::Service).await,
            ObjectKind::EndpointSlice => {
                list_as::<EndpointSlice>(self, kind, ClusterObject::EndpointSlice).await
            }
            ObjectKind::Pod => list_as::<Pod>(self, kind, ClusterObject::Pod).await,
            ObjectKind::Namespace => {
                list_as::<Namespace>(self, kind, ClusterObject::Namespace).await
            }
            ObjectKind::NetworkPolicy => {
                list_as::<NetworkPolicy>(self, kind, ClusterObject::NetworkPolicy).await
            }
        }
    }
}

fn metadata(object: &ClusterObject) -> &ObjectMeta {
    match object {
        ClusterObject::Node(o) => &o.metadata,
        ClusterObject::Service(o) => &o.metadata,
        ClusterObject::EndpointSlice(o) => &o.metadata,
        ClusterObject::Pod(o) => &o.metadata,
        ClusterObject::Namespace(o) => &o.metadata,
        ClusterObject::NetworkPolicy(o) => &o.metadata,
    }
}

/// What identifies a list's content: (namespace, name) -> resourceVersion.
type Fingerprint = BTreeMap<(String, String), String>;

fn fingerprint(objects: &[ClusterObject]) -> Fingerprint {
    objects
        .iter()
        .map(|o| {
            let m = metadata(o);
            (
                (
                    m.namespace.clone().unwrap_or_default(),
                    m.name.clone().unwrap_or_default(),
                ),
                m.resource_version.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// Lists `kinds` from `source` into `model` now and then every `period`, until `cancel`.
/// A failed list keeps the kind's previous objects (a kind never listed stays unsynced, so the
/// loops that need it wait).
pub async fn run(
    mut source: impl ObjectSource,
    model: ClusterModel,
    kinds: &[ObjectKind],
    period: Duration,
    cancel: CancellationToken,
) {
    let mut seen: BTreeMap<ObjectKind, Fingerprint> = BTreeMap::new();
    loop {
        for &kind in kinds {
            match source.list(kind).await {
                Ok(objects) => {
                    let print = fingerprint(&objects);
                    if seen.get(&kind) != Some(&print) {
                        tracing::debug!(?kind, count = objects.len(), "network model: replaced");
                        model.replace(kind, objects);
                        seen.insert(kind, print);
                    }
                }
                Err(e) => tracing::warn!(?kind, error = %e, "network model: list failed"),
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
    }
}

#[cfg(test)]
mod tests;
