//! The worker's in-memory model of the cluster objects its network needs: Nodes, Services,
//! EndpointSlices, Pods, Namespaces and NetworkPolicies.
//!
//! This is the seam between the worker's API watch and the network: the watch (written elsewhere)
//! feeds objects in with [`ClusterModel::replace`] after each full list and [`ClusterModel::apply`] /
//! [`ClusterModel::delete`] for each watch event; the pod network, the service proxy, cluster DNS and
//! NetworkPolicy each read consistent [`ClusterState`] snapshots and re-sync when it changes. A kind
//! counts as *synced* once it has been listed ([`ClusterModel::replace`]): the service proxy does not
//! program rules before Services and EndpointSlices are synced, so a restarted worker does not wipe
//! live rules with an empty model.
//!
//! ```
//! use worker::network::model::{ClusterModel, ClusterObject, ObjectKind};
//! use k8s_openapi::api::core::v1::Namespace;
//!
//! let model = ClusterModel::new();
//! let mut ns = Namespace::default();
//! ns.metadata.name = Some("default".into());
//! model.replace(ObjectKind::Namespace, vec![ClusterObject::Namespace(ns)]);
//! assert!(model.snapshot().namespace("default").is_some());
//! model.delete(ObjectKind::Namespace, None, "default");
//! assert!(model.snapshot().namespace("default").is_none());
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use tokio::sync::watch;

/// The label an EndpointSlice names its Service with.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The kinds of object the model holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    /// core/v1 Node.
    Node,
    /// core/v1 Service.
    Service,
    /// discovery.k8s.io/v1 EndpointSlice.
    EndpointSlice,
    /// core/v1 Pod.
    Pod,
    /// core/v1 Namespace.
    Namespace,
    /// networking.k8s.io/v1 NetworkPolicy.
    NetworkPolicy,
}

impl ObjectKind {
    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// One object, as the API watch decoded it.
#[derive(Debug, Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "short-lived: each object moves into an Arc in the model at once"
)]
pub enum ClusterObject {
    /// A Node.
    Node(Node),
    /// A Service.
    Service(Service),
    /// An EndpointSlice.
    EndpointSlice(EndpointSlice),
    /// A Pod.
    Pod(Pod),
    /// A Namespace.
    Namespace(Namespace),
    /// A NetworkPolicy.
    NetworkPolicy(NetworkPolicy),
}

impl ClusterObject {
    /// The object's kind.
    pub fn kind(&self) -> ObjectKind {
        match self {
            Self::Node(_) => ObjectKind::Node,
            Self::Service(_) => ObjectKind::Service,
            Self::EndpointSlice(_) => ObjectKind::EndpointSlice,
            Self::Pod(_) => ObjectKind::Pod,
            Self::Namespace(_) => ObjectKind::Namespace,
            Self::NetworkPolicy(_) => ObjectKind::NetworkPolicy,
        }
    }
}

/// Namespace and name of a namespaced object (namespace empty for cluster-scoped ones).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// The namespace (empty for Nodes and Namespaces).
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl ObjectKey {
    /// A key.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    fn of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Self {
        Self::new(
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    }
}

/// A consistent snapshot of everything the model holds. Cheap to clone (maps of `Arc`s).
#[derive(Debug, Clone, Default)]
pub struct ClusterState {
    /// Nodes by name.
    pub nodes: BTreeMap<String, Arc<Node>>,
    /// Services by namespace/name.
    pub services: BTreeMap<ObjectKey, Arc<Service>>,
    /// EndpointSlices by namespace/name.
    pub endpoint_slices: BTreeMap<ObjectKey, Arc<EndpointSlice>>,
    /// Pods by namespace/name.
    pub pods: BTreeMap<ObjectKey, Arc<Pod>>,
    /// Namespaces by name.
    pub namespaces: BTreeMap<String, Arc<Namespace>>,
    /// NetworkPolicies by namespace/name.
    pub network_policies: BTreeMap<ObjectKey, Arc<NetworkPolicy>>,
    synced: u8,
    revision: u64,
}

impl ClusterState {
    /// Whether every kind in `kinds` has been listed at least once.
    pub fn is_synced(&self, kinds: &[ObjectKind]) -> bool {
        kinds.iter().all(|k| self.synced & k.bit() != 0)
    }

    /// A counter bumped by every change.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The Namespace `name`.
    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces.get(name).map(|n| &**n)
    }

    /// The EndpointSlices of the Service `namespace/name` (by their `kubernetes.io/service-name` label).
    pub fn slices_of<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> impl Iterator<Item = &'a EndpointSlice> + 'a {
        // Slices are keyed by namespace first, so the namespace's range holds all candidates.
        let from = ObjectKey::new(namespace, "");
        self.endpoint_slices
            .range(from..)
            .take_while(move |(k, _)| k.namespace == namespace)
            .map(|(_, s)| &**s)
            .filter(move |s| {
                s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL))
                    .is_some_and(|n| n == name)
            })
    }

    fn insert(&mut self, object: ClusterObject) {
        match object {
            ClusterObject::Node(o) => {
                let key = o.metadata.name.clone().unwrap_or_default();
                self.nodes.insert(key, Arc::new(o));
            }
            ClusterObject::Service(o) => {
                self.services
                    .insert(ObjectKey::of(&o.metadata), Arc::new(o));
            }
            ClusterObject::EndpointSlice(o) => {
                self.endpoint_slices
                    .insert(ObjectKey::of(&o.metadata), Arc::new(o));
            }
            ClusterObject::Pod(o) => {
                self.pods.insert(ObjectKey::of(&o.metadata), Arc::new(o));
            }
            ClusterObject::Namespace(o) => {
                let key = o.metadata.name.clone().unwrap_or_default();
                self.namespaces.insert(key, Arc::new(o));
            }
            ClusterObject::NetworkPolicy(o) => {
                self.network_policies
                    .insert(ObjectKey::of(&o.metadata), Arc::new(o));
            }
        }
    }

    fn remove(&mut self, kind: ObjectKind, key: &ObjectKey) {
        match kind {
            ObjectKind::Node => drop(self.nodes.remove(&key.name)),
            ObjectKind::Service => drop(self.services.remove(key)),
            ObjectKind::EndpointSlice => drop(self.endpoint_slices.remove(key)),
            ObjectKind::Pod => drop(self.pods.remove(key)),
            ObjectKind::Namespace => drop(self.namespaces.remove(&key.name)),
            ObjectKind::NetworkPolicy => drop(self.network_policies.remove(key)),
        }
    }

    fn clear(&mut self, kind: ObjectKind) {
        match kind {
            ObjectKind::Node => self.nodes.clear(),
            ObjectKind::Service => self.services.clear(),
            ObjectKind::EndpointSlice => self.endpoint_slices.clear(),
            ObjectKind::Pod => self.pods.clear(),
            ObjectKind::Namespace => self.namespaces.clear(),
            ObjectKind::NetworkPolicy => self.network_policies.clear(),
        }
    }
}

/// The model: one writer side (the API watch) and any number of readers. Clones share the model.
#[derive(Debug, Clone)]
pub struct ClusterModel {
    state: Arc<watch::Sender<Arc<ClusterState>>>,
}

impl Default for ClusterModel {
    fn default() -> Self {
        Self::new()
    }
}

impl ClusterModel {
    /// An empty model, no kind synced.
    pub fn new() -> Self {
        let (tx, _) = watch::channel(Arc::new(ClusterState::default()));
        Self {
            state: Arc::new(tx),
        }
    }

    /// Adds or replaces one object (a watch `ADDED` or `MODIFIED` event).
    pub fn apply(&self, object: ClusterObject) {
        self.modify(|s| s.insert(object));
    }

    /// Removes one object (a watch `DELETED` event); `namespace` is `None` for Nodes and Namespaces.
    pub fn delete(&self, kind: ObjectKind, namespace: Option<&str>, name: &str) {
        let key = ObjectKey::new(namespace.unwrap_or_default(), name);
        self.modify(|s| s.remove(kind, &key));
    }

    /// Replaces every object of `kind` with a full list (after a list or a re-list) and marks the
    /// kind synced. Objects of other kinds in `objects` are ignored.
    pub fn replace(&self, kind: ObjectKind, objects: Vec<ClusterObject>) {
        self.modify(|s| {
            s.clear(kind);
            for o in objects.into_iter().filter(|o| o.kind() == kind) {
                s.insert(o);
            }
            s.synced |= kind.bit();
        });
    }

    /// The current state.
    pub fn snapshot(&self) -> Arc<ClusterState> {
        self.state.borrow().clone()
    }

    /// A receiver that wakes on every change (`changed().await`), holding the latest snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.state.subscribe()
    }

    fn modify(&self, f: impl FnOnce(&mut ClusterState)) {
        self.state.send_modify(|state| {
            let s = Arc::make_mut(state);
            f(s);
            s.revision += 1;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(ns: &str, name: &str, service: &str) -> ClusterObject {
        let mut s = EndpointSlice::default();
        s.metadata.namespace = Some(ns.into());
        s.metadata.name = Some(name.into());
        s.metadata.labels = Some([(SERVICE_NAME_LABEL.to_owned(), service.to_owned())].into());
        ClusterObject::EndpointSlice(s)
    }

    #[test]
    fn slices_are_found_by_their_service_label_within_the_namespace() {
        let model = ClusterModel::new();
        model.apply(slice("a", "web-1", "web"));
        model.apply(slice("a", "web-2", "web"));
        model.apply(slice("a", "db-1", "db"));
        model.apply(slice("b", "web-1", "web"));
        let snap = model.snapshot();
        let names: Vec<_> = snap
            .slices_of("a", "web")
            .filter_map(|s| s.metadata.name.clone())
            .collect();
        assert_eq!(names, ["web-1", "web-2"]);
    }

    #[test]
    fn replace_marks_synced_and_drops_what_the_list_lacks() {
        let model = ClusterModel::new();
        let rx = model.subscribe();
        model.apply(slice("a", "old", "web"));
        assert!(!model.snapshot().is_synced(&[ObjectKind::EndpointSlice]));
        model.replace(ObjectKind::EndpointSlice, vec![slice("a", "new", "web")]);
        let snap = model.snapshot();
        assert!(snap.is_synced(&[ObjectKind::EndpointSlice]));
        assert!(!snap.is_synced(&[ObjectKind::Service]));
        assert_eq!(snap.endpoint_slices.len(), 1);
        assert!(rx.has_changed().unwrap_or(false));
        assert_eq!(snap.revision(), 2);
    }
}
