//! [`ObjectStore`]: get, list, create, update, patch and delete for every
//! kind, over the sealed [`Store`]. Objects are JSON; the stored value
//! omits `resourceVersion`, which is the key's mod revision and is set on
//! every read.

mod apply;
mod binding;
mod decode;
mod delete;
mod encoding;
mod hooks;
mod list;
mod review;
mod write;

pub use apply::ApplyConflicts;
pub use hooks::{Claims, HookFuture, StoreHooks};

pub use delete::{DeleteOptions, DeleteOutcome, Propagation};
pub use list::{EncodedObject, ListOptions, ListPage};
pub use write::{Endpoint, FieldValidation, WriteOptions, WriteTarget, Written};

use std::sync::{Arc, RwLock};

use serde_json::Value;

use super::admission::AdmissionOptions;
use super::kinds::ServiceCidr;
use super::{Error, ResourceInfo, ResourceTable, Result, meta};
use crate::store::{KeyValue, Store, StoreError};

/// The generic object store shared by every resource.
#[derive(Debug, Clone)]
pub struct ObjectStore {
    store: Store,
    tables: Arc<Tables>,
    service_cidr: ServiceCidr,
    /// The admission plugins every write passes through.
    admission: Arc<crate::admission::Chain>,
    admission_options: AdmissionOptions,
}

/// The served resource table, swapped whole when custom resources change.
#[derive(Debug)]
pub(crate) struct Tables {
    /// The built-in resources every table starts with.
    pub(crate) base: ResourceTable,
    /// The table requests are served from. A `std` lock: it is held only to
    /// clone or replace an `Arc`, never across an `.await`.
    pub(crate) current: RwLock<ResourceTable>,
    /// Serializes rebuilds, so the last swap reflects the latest stored
    /// definitions (held across the store reads of a rebuild).
    pub(crate) rebuild: tokio::sync::Mutex<()>,
    /// The generation of the table last swapped in, for whoever derives
    /// work from the set of served resources.
    pub(crate) swapped: tokio::sync::watch::Sender<u64>,
}

/// Retries of a compare-and-swap lost to a concurrent write (an unconditional update or
/// patch, a binding). Upstream's `GuaranteedUpdate` retries without a count limit, for as long
/// as its request may run, so retries are bounded by upstream's default request timeout rather
/// than a count, and a streak of lost tries is logged with the revisions that won, so that a
/// writer in a hot loop shows in the enclave's log. (`kubectl replace` is not unconditional:
/// kubectl sends the resourceVersion it has just read, so it can meet a 409 on any cluster.)
struct CasRetries {
    started: std::time::Instant,
    lost: u32,
}

impl CasRetries {
    /// Upstream's default `--request-timeout`.
    const BUDGET: std::time::Duration = std::time::Duration::from_secs(60);
    /// Lost tries in a row before the streak is logged.
    const LOG_AFTER: u32 = 16;

    fn new() -> Self {
        CasRetries {
            started: std::time::Instant::now(),
            lost: 0,
        }
    }

    /// Records a lost compare-and-swap of `name` (we read `read`, another write made
    /// `won`). Returns false once the budget is spent (the caller answers 409).
    async fn lost(&mut self, info: &ResourceInfo, name: &str, read: u64, won: Option<u64>) -> bool {
        self.lost += 1;
        if self.lost == Self::LOG_AFTER {
            tracing::warn!(
                resource = %info.resource,
                name,
                read,
                won,
                "{} compare-and-swaps in a row lost to concurrent writes; still retrying",
                self.lost
            );
        }
        // Let the writer that keeps winning finish before reading again.
        tokio::task::yield_now().await;
        self.started.elapsed() < Self::BUDGET
    }
}

impl ObjectStore {
    /// An object store serving the resources of `table` from `store`.
    pub fn new(store: Store, table: ResourceTable) -> Self {
        ObjectStore {
            store,
            tables: Arc::new(Tables {
                base: table.clone(),
                swapped: tokio::sync::watch::Sender::new(table.generation()),
                current: RwLock::new(table),
                rebuild: tokio::sync::Mutex::new(()),
            }),
            service_cidr: ServiceCidr::DEFAULT,
            admission: Arc::new(super::admission::builtin_chain()),
            admission_options: AdmissionOptions::default(),
        }
    }

    /// Runs every write through `chain` (default: the built-in plugins of
    /// [`super::admission::builtin_chain`]).
    #[must_use]
    pub fn with_admission(mut self, chain: crate::admission::Chain) -> Self {
        self.admission = Arc::new(chain);
        self
    }

    /// The admission plugins writes pass through.
    pub fn admission(&self) -> &crate::admission::Chain {
        &self.admission
    }

    /// Runs the admission plugins with `options` (default: upstream's defaults).
    #[must_use]
    pub fn with_admission_options(mut self, options: AdmissionOptions) -> Self {
        self.admission_options = options;
        self
    }

    /// The admission plugins' settings.
    pub fn admission_options(&self) -> AdmissionOptions {
        self.admission_options
    }

    /// The range Service ClusterIPs are allocated from.
    pub fn service_cidr(&self) -> ServiceCidr {
        self.service_cidr
    }

    /// Allocates Service ClusterIPs from `cidr` (default `10.43.0.0/16`).
    #[must_use]
    pub fn with_service_cidr(mut self, cidr: ServiceCidr) -> Self {
        self.service_cidr = cidr;
        self
    }

    /// A snapshot of the resource table (cheap: an `Arc` clone). Custom
    /// resources may replace the table at any time; a request should take
    /// one snapshot and use it throughout.
    pub fn table(&self) -> ResourceTable {
        match self.tables.current.read() {
            Ok(t) => t.clone(),
            // A writer panicked mid-swap; the table itself is still whole.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the served table.
    pub(crate) fn set_table(&self, table: ResourceTable) {
        let generation = table.generation();
        match self.tables.current.write() {
            Ok(mut t) => *t = table,
            Err(poisoned) => *poisoned.into_inner() = table,
        }
        self.tables.swapped.send_replace(generation);
    }

    /// Notified each time custom resources replace the table (the value is
    /// the new table's [`ResourceTable::generation`]).
    pub fn table_swaps(&self) -> tokio::sync::watch::Receiver<u64> {
        self.tables.swapped.subscribe()
    }

    /// The table shared by every clone of this store.
    pub(crate) fn tables(&self) -> &Tables {
        &self.tables
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Decodes a stored value and stamps its resourceVersion.
    pub(crate) fn decode(kv: &KeyValue) -> Result<Value> {
        let mut v: Value = serde_json::from_slice(&kv.value).map_err(|e| {
            Error::Store(StoreError::Corrupt(format!(
                "object at {}: {e}",
                String::from_utf8_lossy(&kv.key)
            )))
        })?;
        meta::set_resource_version(&mut v, kv.mod_revision);
        Ok(v)
    }

    /// Encodes an object for storage, without its resourceVersion.
    fn encode(obj: &Value) -> Result<Vec<u8>> {
        Self::encode_stored(obj).map(|s| s.bytes)
    }

    /// The stored bytes of `obj`, from which [`ObjectStore::keep_served_splice`] keeps where
    /// the served ones take the resourceVersion.
    fn encode_stored(obj: &Value) -> Result<encoding::Stored> {
        encoding::Stored::encode(obj).map_err(|e| Error::BadRequest(e.to_string()))
    }

    fn not_found(info: &ResourceInfo, name: &str) -> Error {
        Error::NotFound {
            qualified: info.qualified(),
            group: info.group.to_string(),
            resource: info.resource.to_string(),
            name: name.to_string(),
        }
    }

    fn conflict(info: &ResourceInfo, name: &str) -> Error {
        Error::Conflict {
            group: info.group.to_string(),
            resource: info.resource.to_string(),
            name: name.to_string(),
            message: format!(
                "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
                info.qualified()
            ),
        }
    }

    /// Reads the current key-value of one object.
    async fn get_kv(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Option<KeyValue>> {
        let key = info.key(ns, name);
        // From memory on this task; RocksDB on the blocking pool.
        if let Some((kv, _)) = self.store.get_resident(&key) {
            return Ok(kv);
        }
        let store = self.store.clone();
        let (kv, _) = tokio::task::spawn_blocking(move || store.get(&key))
            .await
            .map_err(|e| Error::Store(StoreError::Closed(e.to_string())))??;
        Ok(kv)
    }

    /// GET one object.
    ///
    /// # Errors
    /// 404 NotFound; 500 if the store fails.
    pub async fn get(&self, info: &ResourceInfo, ns: Option<&str>, name: &str) -> Result<Value> {
        match self.get_kv(info, ns, name).await? {
            Some(kv) => Self::decode(&kv),
            None => Err(Self::not_found(info, name)),
        }
    }

    /// Checks that namespace `ns` exists and is not terminating (for creates).
    async fn check_namespace(&self, ns: &str) -> Result<()> {
        let Some(nsinfo) = self.table().lookup("", "v1", "namespaces") else {
            return Ok(());
        };
        let Some(kv) = self.get_kv(&nsinfo, None, ns).await? else {
            return Err(Self::not_found(&nsinfo, ns));
        };
        let obj = Self::decode(&kv)?;
        let terminating = obj.pointer("/status/phase").and_then(Value::as_str)
            == Some("Terminating")
            || meta::meta_str(&obj, "deletionTimestamp").is_some();
        if terminating {
            return Err(Error::Forbidden {
                message: format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            });
        }
        Ok(())
    }
}
