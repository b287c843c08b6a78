//! Watches feeding the scheduler (upstream's informers): one task per
//! resource lists it, then watches from the list's revision, decodes
//! each object into what the scheduler keeps (typed `k8s-openapi` objects
//! first, then [`PodInfo`], [`NodeData`] or a lister value) and sends it
//! to the scheduler's loop. After the watch ends (410 Gone after a
//! compaction, a store error) it lists again and sends the whole list, so
//! the loop can drop what disappeared meanwhile.
//!
//! Decoding happens here, on the API server's runtime, not on the
//! scheduler's thread.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::listers::{ListerKind, ListerValue};
use super::node_info::NodeData;
use super::pod_info::PodInfo;
use crate::registry::{ListOptions, ObjectStore, ResourceInfo, WatchEvent, WatchOptions, meta};

/// Which watch an event comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// Pods.
    Pods,
    /// Nodes.
    Nodes,
    /// A lister kind.
    Lister(ListerKind),
}

/// One decoded object.
#[derive(Debug, Clone)]
pub(crate) enum Object {
    /// A pod.
    Pod(Arc<PodInfo>),
    /// A node.
    Node(Arc<NodeData>),
    /// A lister object (`value` is `None` for a delete or an object that
    /// does not decode).
    Lister {
        /// Its namespace ("" for cluster-scoped).
        namespace: String,
        /// Its name.
        name: String,
        /// What the scheduler keeps of it.
        value: Option<ListerValue>,
    },
}

/// What a watch task tells the loop.
#[derive(Debug)]
pub(crate) enum Event {
    /// Every object of `kind` as of now (the first list, or a relist).
    Synced(Kind, Vec<Object>),
    /// An object was added or changed.
    Upsert(Kind, Object),
    /// An object was deleted (its last state).
    Deleted(Kind, Object),
}

/// A pod as the scheduler reads it: the metadata it uses, without `managedFields` (often
/// the largest part of a stored pod, and never read here).
#[derive(Deserialize)]
struct PodView {
    #[serde(default)]
    metadata: PodMeta,
    spec: Option<PodSpec>,
    status: Option<PodStatus>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PodMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    owner_references: Option<Vec<OwnerReference>>,
    deletion_timestamp: Option<Time>,
}

impl From<PodView> for Pod {
    fn from(v: PodView) -> Pod {
        let m = v.metadata;
        Pod {
            metadata: ObjectMeta {
                name: m.name,
                namespace: m.namespace,
                uid: m.uid,
                resource_version: m.resource_version,
                labels: m.labels,
                annotations: m.annotations,
                owner_references: m.owner_references,
                deletion_timestamp: m.deletion_timestamp,
                ..ObjectMeta::default()
            },
            spec: v.spec,
            status: v.status,
        }
    }
}

/// Decodes one stored object of `kind`.
fn decode(kind: Kind, v: &serde_json::Value) -> Option<Object> {
    match kind {
        Kind::Pods => {
            let pod = Pod::from(PodView::deserialize(v).ok()?);
            Some(Object::Pod(Arc::new(PodInfo::new(&pod, v))))
        }
        Kind::Nodes => {
            let node = Node::deserialize(v).ok()?;
            Some(Object::Node(Arc::new(NodeData::new(&node))))
        }
        Kind::Lister(k) => Some(Object::Lister {
            namespace: meta::namespace(v).to_string(),
            name: meta::name(v).to_string(),
            value: k.decode(v),
        }),
    }
}

fn warn_undecodable(kind: Kind, v: &serde_json::Value) {
    tracing::warn!(?kind, object = %format!("{}/{}", meta::namespace(v), meta::name(v)), "object does not decode; the scheduler ignores it");
}

/// Lists and watches `info` until `stop`, sending decoded events on `tx`.
pub(crate) async fn run(
    objects: ObjectStore,
    info: Arc<ResourceInfo>,
    kind: Kind,
    tx: mpsc::Sender<Event>,
    stop: CancellationToken,
) {
    loop {
        let page = match objects.list(&info, None, &ListOptions::default()).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(resource = %info.resource, error = %e, "scheduler list failed; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let mut items = Vec::with_capacity(page.items.len());
        for v in &page.items {
            match decode(kind, v) {
                Some(o) => items.push(o),
                None => warn_undecodable(kind, v),
            }
        }
        if tx.send(Event::Synced(kind, items)).await.is_err() {
            return;
        }
        let opts = WatchOptions {
            resource_version: Some(page.revision.to_string()),
            ..Default::default()
        };
        let mut stream = match objects.watch(info.clone(), None, opts).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(resource = %info.resource, error = %e, "scheduler watch failed; listing again");
                continue;
            }
        };
        loop {
            let event = tokio::select! {
                () = stop.cancelled() => return,
                ev = stream.next() => ev,
            };
            let out = match event {
                None => return,
                Some(WatchEvent::Error(status)) => {
                    let code = status.get("code").and_then(serde_json::Value::as_u64);
                    tracing::debug!(
                        resource = %info.resource,
                        ?code,
                        "scheduler watch ended; listing again"
                    );
                    break;
                }
                Some(WatchEvent::Bookmark(_)) => continue,
                Some(WatchEvent::Added(o) | WatchEvent::Modified(o)) => match decode(kind, &o) {
                    Some(obj) => Event::Upsert(kind, obj),
                    None => {
                        warn_undecodable(kind, &o);
                        continue;
                    }
                },
                Some(WatchEvent::Deleted(o)) => match decode(kind, &o) {
                    Some(obj) => Event::Deleted(kind, obj),
                    None => continue,
                },
            };
            if tx.send(out).await.is_err() {
                return;
            }
        }
    }
}
