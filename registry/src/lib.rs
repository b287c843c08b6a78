//! The Kubernetes object registry's pure half: what each kind is and how its
//! objects are defaulted, validated, converted, merged and shown, with no I/O.
//! A kind is a [`Strategy`] in [`kinds`] and a line in [`kinds::builtin`];
//! the enclave's generic object store (`enclave::registry::generic`, after
//! upstream's `registry/generic`) serves every kind of the table with it and
//! needs no handler code.
//!
//! Layering: `api → (enclave's generic store) → registry`, and the store
//! below. This crate knows Kubernetes object semantics, nothing about HTTP,
//! and reads or writes nothing: it names the store only for its error type.

pub mod cel;
pub mod conversion;
pub mod csr;
pub mod custom;
mod error;
pub mod kinds;
pub mod managed;
pub mod meta;
mod name;
pub mod patch;
pub mod quantity;
pub mod selector;
pub mod table;
pub mod typed;

pub use conversion::Conversion;
pub use error::{Error, FieldError, Result};
pub use kinds::ServiceCidr;
pub use name::Name;
pub use selector::{FieldSelector, LabelSelector};
pub use table::Column;

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

/// What a kind's writes do besides storing the object, as upstream's REST
/// decorators of the generic store (see [`Strategy::store_hook`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreHook {
    /// Services: a ClusterIP and node ports are claimed on create, node ports
    /// follow updates, and both are released on delete.
    ServiceAllocation,
    /// CustomResourceDefinitions: the served table follows every write.
    ServedDefinitions,
}

/// Whether objects of a kind live in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `/namespaces/{ns}/{resource}/{name}`.
    Namespaced,
    /// `/{resource}/{name}`.
    Cluster,
}

/// How object names are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain (most kinds).
    Subdomain,
    /// RFC 1123 label (namespaces, services).
    Label,
    /// Any name that is a valid path segment (events, leases use subdomain-ish names too).
    PathSegment,
}

/// A kind's decoded-and-re-encoded form (see [`typed::roundtrip`]).
#[derive(Debug, Clone)]
pub struct Canonical {
    /// The object as the typed struct serialises it: unknown fields dropped.
    pub value: Value,
    /// Paths of fields the typed struct did not know, e.g. `spec.foo`.
    pub unknown_fields: Vec<String>,
}

/// Per-kind behaviour, as upstream's `RESTCreateStrategy`,
/// `RESTUpdateStrategy`, `TableConvertor` and `GetAttrs` combined.
pub trait Strategy: Send + Sync + fmt::Debug {
    /// Decodes `obj` into the kind's `k8s-openapi` type and back.
    ///
    /// # Errors
    /// A message when the object does not decode (wrong field types, bad
    /// base64, ...); it becomes a 400 BadRequest.
    fn canonicalize(&self, obj: &Value) -> std::result::Result<Canonical, String>;

    /// The kind's OpenAPI schema, generated into `generator`'s definitions (what `/openapi/v3` serves and
    /// `kubectl explain` reads): a `$ref` to its definition. `None` for kinds without a `k8s-openapi` type.
    fn schema(&self, _generator: &mut schemars::SchemaGenerator) -> Option<schemars::Schema> {
        None
    }

    /// Resets fields users may not set on create (e.g. `status`).
    fn prepare_for_create(&self, _obj: &mut Value) {}

    /// The schema server-side apply reads list types from (a custom
    /// resource's `openAPIV3Schema`); `None`: lists merge by the built-in
    /// kinds' field names.
    fn apply_schema(&self) -> Option<&Value> {
        None
    }

    /// Why a POST of this resource is refused right now (a 405
    /// MethodNotAllowed with this message), e.g. a custom resource whose
    /// definition is being deleted. `None` for most kinds.
    fn refuses_create(&self) -> Option<&'static str> {
        None
    }

    /// The finalizer the API server adds to an object of this kind on its
    /// first DELETE, so that a controller can clean up before it goes
    /// (upstream's CustomResourceDefinition REST `Delete`). `None` for
    /// most kinds.
    fn deletion_finalizer(&self) -> Option<&'static str> {
        None
    }

    /// Upstream's `CheckGracefulDelete`: the grace period a first DELETE gives the object,
    /// from the request's `gracePeriodSeconds` (`requested`, never negative here) and the
    /// object itself. A positive period marks the object (`deletionTimestamp` that far
    /// ahead) and leaves it to whoever stops it (the kubelet, for pods), who deletes it
    /// again with 0. `None` (most kinds) and `Some(0)`: deleted at once.
    fn graceful_deletion_period(&self, _obj: &Value, _requested: Option<i64>) -> Option<i64> {
        None
    }

    /// Marks what a first DELETE changes besides `deletionTimestamp` and
    /// finalizers (e.g. a `Terminating` condition). Called only for kinds
    /// with a [`Strategy::deletion_finalizer`].
    fn prepare_for_deletion(&self, _obj: &mut Value) {}

    /// Carries over fields the main endpoint may not change (e.g. `status`).
    fn prepare_for_update(&self, _new: &mut Value, _old: &Value) {}

    /// Kind-specific validation on create.
    fn validate(&self, _obj: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    /// Kind-specific validation on update (immutable fields, ...).
    fn validate_update(&self, new: &Value, _old: &Value) -> Vec<FieldError> {
        self.validate(new)
    }

    /// Whether `metadata.generation` is kept (1 on create, +1 on spec change).
    fn tracks_generation(&self) -> bool {
        false
    }

    /// Whether an update changed what `metadata.generation` counts (upstream
    /// bumps it on spec changes; custom resources count everything but
    /// metadata, and status when it is a subresource).
    fn generation_changed(&self, new: &Value, old: &Value) -> bool {
        new.get("spec") != old.get("spec")
    }

    /// Whether strategic merge patch is accepted (built-in kinds); custom
    /// resources have no patch strategies and reject it with 415.
    fn accepts_strategic_merge(&self) -> bool {
        true
    }

    /// Where `/scale` reads and writes replicas.
    fn scale_paths(&self) -> ScalePaths {
        ScalePaths::default()
    }

    /// What the kind's writes do besides storing the object, which the
    /// enclave's generic store carries out. `None` for most kinds.
    fn store_hook(&self) -> Option<StoreHook> {
        None
    }

    /// How names are checked.
    fn name_rule(&self) -> NameRule {
        NameRule::Subdomain
    }

    /// Field-selector fields beyond `metadata.name` and `metadata.namespace`.
    fn selectable_fields(&self) -> &'static [&'static str] {
        &[]
    }

    /// The value of a selectable field (missing values compare as "").
    fn field_value(&self, _obj: &Value, _field: &str) -> Option<String> {
        None
    }

    /// Server-side Table columns (priority 1 = only with `-o wide`).
    fn columns(&self) -> Vec<Column>;

    /// One Table row's cells, in [`Strategy::columns`] order.
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value>;

    /// For [`Persistence::Virtual`] kinds (the self-subject reviews): the
    /// object a create returns, with its `status` filled in for `user`.
    /// Nothing is stored. Stored kinds return `None`.
    fn answer(&self, _obj: &Value, _user: &UserInfo) -> Option<Value> {
        None
    }
}

/// JSON pointers of the fields a `/scale` subresource maps (upstream's
/// `CustomResourceSubresourceScale`; the built-in workloads use the default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    /// `spec.replicas` of the Scale, e.g. `/spec/replicas`.
    pub spec_replicas: String,
    /// `status.replicas` of the Scale, e.g. `/status/replicas`.
    pub status_replicas: String,
    /// Where `status.selector` comes from: `None` for the built-in
    /// workloads' `spec.selector.matchLabels`, else a pointer to a string.
    pub label_selector: Option<String>,
}

impl Default for ScalePaths {
    fn default() -> Self {
        ScalePaths {
            spec_replicas: "/spec/replicas".into(),
            status_replicas: "/status/replicas".into(),
            label_selector: None,
        }
    }
}

/// Who made a request, as authentication established it (upstream's `user.Info`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    /// User name (`admin`, `system:node:x`, ...).
    pub name: String,
    /// Groups (`system:masters`, ...).
    pub groups: Vec<String>,
    /// A unique id (a service account's uid); empty when unknown.
    pub uid: String,
    /// Extra attributes (a service account token's pod name and uid, ...).
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// A user named `name` in `groups`, without uid or extra attributes.
    pub fn new(name: impl Into<String>, groups: &[&str]) -> Self {
        UserInfo {
            name: name.into(),
            groups: groups.iter().map(|g| (*g).to_string()).collect(),
            ..Default::default()
        }
    }

    /// Whether the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// Whether a resource's objects are kept in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persistence {
    /// Objects are stored; every verb of [`VERBS`] is served.
    Stored,
    /// Create-only: a POST is answered by [`Strategy::answer`] and nothing
    /// is stored (SelfSubjectReview, SelfSubjectAccessReview, ...).
    Virtual,
    /// Read-only and not stored: GET and LIST are answered from elsewhere
    /// (`metrics.k8s.io`, from what the workers report).
    Computed,
    /// Another version of a stored resource: its objects are the storage
    /// version's, converted on the way in and out (autoscaling/v1
    /// HorizontalPodAutoscalers); every verb of [`VERBS`] is served.
    Converted(Conversion),
}

/// A subresource served for a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// `/status`: GET, PUT and PATCH of the status alone.
    Status,
    /// `/scale`: an `autoscaling/v1 Scale` view of `spec.replicas`.
    Scale,
    /// `serviceaccounts/token`: POST an `authentication.k8s.io/v1
    /// TokenRequest` for a token of the service account.
    Token,
    /// `certificatesigningrequests/approval`: the Approved or Denied
    /// condition of a request.
    Approval,
    /// `/eviction` of pods: POST a `policy/v1 Eviction` (see `enclave::registry::eviction`).
    Eviction,
    /// `/binding` (pods): POST a `v1.Binding` to assign the pod to a node.
    Binding,
    /// Pods' `/log`: a container's log, from its worker.
    Log,
    /// Pods' `/exec`: a command in a container, streamed.
    Exec,
    /// Pods' `/attach`: a container's main process, streamed.
    Attach,
    /// Pods' `/portforward`: connections to the pod's ports, streamed.
    PortForward,
}

impl Subresource {
    /// The verbs discovery lists for it.
    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Subresource::Token | Subresource::Eviction | Subresource::Binding => &["create"],
            Subresource::Status | Subresource::Scale | Subresource::Approval => {
                &["get", "patch", "update"]
            }
            Subresource::Log => &["get"],
            Subresource::Exec | Subresource::Attach | Subresource::PortForward => {
                &["create", "get"]
            }
        }
    }

    /// The path segment.
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Token => "token",
            Subresource::Approval => "approval",
            Subresource::Eviction => "eviction",
            Subresource::Binding => "binding",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
            Subresource::Attach => "attach",
            Subresource::PortForward => "portforward",
        }
    }
}

/// One resource as served: names, scope and its strategy.
pub struct ResourceInfo {
    /// API group; empty for core.
    pub group: Name,
    /// API version, e.g. `v1`.
    pub version: Name,
    /// Kind, e.g. `ConfigMap`.
    pub kind: Name,
    /// Plural resource name, e.g. `configmaps`.
    pub resource: Name,
    /// Singular resource name, e.g. `configmap`.
    pub singular: Name,
    /// Namespaced or cluster-scoped.
    pub scope: Scope,
    /// Short names for kubectl, e.g. `cm`.
    pub short_names: Vec<Name>,
    /// Categories, e.g. `all`.
    pub categories: Vec<Name>,
    /// DELETE returns the deleted object rather than a Status (pods).
    pub return_deleted_object: bool,
    /// Subresources served.
    pub subresources: &'static [Subresource],
    /// Stored, or create-only and answered on the fly.
    pub persistence: Persistence,
    /// Per-kind rules.
    pub strategy: Box<dyn Strategy>,
}

impl fmt::Debug for ResourceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceInfo")
            .field("group", &self.group)
            .field("version", &self.version)
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

/// Verbs every table resource supports.
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Verbs of a [`Persistence::Virtual`] resource.
pub const CREATE_ONLY: &[&str] = &["create"];

/// Verbs of a [`Persistence::Computed`] resource.
pub const READ_ONLY: &[&str] = &["get", "list"];

impl ResourceInfo {
    /// `group/version`, or `version` for core.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `resource[.group]`, as used in error messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    /// Whether objects live in namespaces.
    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    /// The verbs served, as discovery lists them.
    pub fn verbs(&self) -> &'static [&'static str] {
        match self.persistence {
            Persistence::Stored | Persistence::Converted(_) => VERBS,
            Persistence::Virtual => CREATE_ONLY,
            Persistence::Computed => READ_ONLY,
        }
    }

    /// Whether objects are kept in the store.
    pub fn is_stored(&self) -> bool {
        self.persistence == Persistence::Stored
    }

    /// The conversion from the storage version, when this version is served from another's storage.
    pub fn conversion(&self) -> Option<&Conversion> {
        match &self.persistence {
            Persistence::Converted(c) => Some(c),
            _ => None,
        }
    }

    /// Upstream's `storageVersionHash` for discovery: the first 8 bytes of the SHA-256 of the
    /// storage version's `group/version/kind`, base64; `None` for what is not stored (reviews,
    /// metrics, component statuses). Clients (the storage version migrator) compare it to see a
    /// resource's storage version change.
    pub fn storage_version_hash(&self) -> Option<String> {
        use base64::Engine as _;
        let version = match &self.persistence {
            Persistence::Stored => self.version.as_str(),
            Persistence::Converted(c) => c.storage_version(),
            Persistence::Virtual | Persistence::Computed => return None,
        };
        let gvk = format!("{}/{version}/{}", self.group, self.kind);
        let digest = ring::digest::digest(&ring::digest::SHA256, gvk.as_bytes());
        Some(base64::engine::general_purpose::STANDARD.encode(&digest.as_ref()[..8]))
    }

    /// Whether objects are answered rather than stored.
    pub fn is_virtual(&self) -> bool {
        self.persistence == Persistence::Virtual
    }

    /// Whether `sub` is served for this resource.
    pub fn has(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// `<Kind>List`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The store key prefix for all objects of this resource, or those of one namespace.
    pub fn key_prefix(&self, namespace: Option<&str>) -> Vec<u8> {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        let mut k = format!("/registry/{group}/{}/", self.resource);
        if let (Scope::Namespaced, Some(ns)) = (self.scope, namespace) {
            k.push_str(ns);
            k.push('/');
        }
        k.into_bytes()
    }

    /// The store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> Vec<u8> {
        let mut k = self.key_prefix(namespace);
        k.extend_from_slice(name.as_bytes());
        k
    }
}

/// Every served resource, the single source for routing, discovery and tables.
///
/// A table is an immutable snapshot: when custom resources come and go,
/// the enclave's `ObjectStore` swaps in a new table (with a higher
/// [`ResourceTable::generation`]), and a request keeps the snapshot it
/// started with.
#[derive(Debug, Clone)]
pub struct ResourceTable {
    entries: Arc<Vec<Arc<ResourceInfo>>>,
    generation: u64,
}

impl ResourceTable {
    /// A table of the given resources.
    pub fn new(entries: Vec<ResourceInfo>) -> Self {
        ResourceTable {
            entries: Arc::new(entries.into_iter().map(Arc::new).collect()),
            generation: 0,
        }
    }

    /// The table that replaces this one: `base`'s entries followed by
    /// `more` (the custom resources), one generation later.
    #[must_use]
    pub fn extended(&self, base: &ResourceTable, more: Vec<ResourceInfo>) -> Self {
        let mut entries: Vec<Arc<ResourceInfo>> = base.entries.iter().cloned().collect();
        entries.extend(more.into_iter().map(Arc::new));
        ResourceTable {
            entries: Arc::new(entries),
            generation: self.generation + 1,
        }
    }

    /// Counts the swaps that produced this table (0 for the built-in one):
    /// caches derived from a table (OpenAPI documents) are keyed by it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Every resource, in table order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<ResourceInfo>> {
        self.entries.iter()
    }

    /// The resource `resource` of `group/version`.
    pub fn lookup(&self, group: &str, version: &str, resource: &str) -> Option<Arc<ResourceInfo>> {
        self.entries
            .iter()
            .find(|r| r.group == group && r.version == version && r.resource == resource)
            .cloned()
    }

    /// Groups in table order, each with its versions in preference order.
    pub fn groups(&self) -> Vec<(Name, Vec<Name>)> {
        let mut out: Vec<(Name, Vec<Name>)> = Vec::new();
        for r in self.entries.iter() {
            match out.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) => {
                    if !versions.contains(&r.version) {
                        versions.push(r.version.clone());
                    }
                }
                None => out.push((r.group.clone(), vec![r.version.clone()])),
            }
        }
        out
    }

    /// Resources of one group-version, in table order.
    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a Arc<ResourceInfo>> + 'a {
        self.entries
            .iter()
            .filter(move |r| r.group == group && r.version == version)
    }
}
