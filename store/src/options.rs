//! Store options.

use std::path::PathBuf;

use std::sync::Arc;

use super::compact::CompactionOptions;
use super::observer::StoreObserver;

/// How to open a store. Build with [`StoreOptions::new`] and the `with_*` methods.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StoreOptions {
    /// Directory of the RocksDB index. Required.
    pub path: PathBuf,
    /// Cluster id bound into every sealed value and journal record. Required.
    pub cluster_id: [u8; 16],
    /// Largest accepted value. Default 3 MiB, like Kubernetes' request limit.
    pub max_value_bytes: usize,
    /// Largest accepted key. Default 8 KiB.
    pub max_key_bytes: usize,
    /// Most writes grouped into one journal record. Default 1024.
    pub max_group_writes: usize,
    /// Most value bytes grouped into one journal record. Default 16 MiB
    /// (a single larger write still forms a group of its own).
    pub max_group_bytes: usize,
    /// Queue depth of pending writes before writers wait. Default 4096.
    pub queue_depth: usize,
    /// Batches buffered per watcher before it falls back to replaying
    /// history. Default 1024.
    pub watch_buffer: usize,
    /// Background compaction; `None` (the default) compacts only on request.
    pub compaction: Option<CompactionOptions>,
    /// Told about every read, write and compaction (metrics); `None` (the default) tells no one.
    pub observer: Option<Arc<dyn StoreObserver>>,
    /// Most bytes of keys and values kept resident in memory to answer reads at the
    /// current revision; 0 keeps none. A store that outgrows it reads from RocksDB.
    /// Default 512 MiB.
    pub resident_max_bytes: usize,
    /// Only keys under this prefix are kept resident (the enclave keeps its API objects,
    /// `/registry/`, and leaves the audit log to RocksDB). Default: every key.
    pub resident_prefix: Vec<u8>,
}

impl StoreOptions {
    /// Options with defaults for the index at `path` of cluster `cluster_id`.
    pub fn new(path: impl Into<PathBuf>, cluster_id: [u8; 16]) -> Self {
        StoreOptions {
            path: path.into(),
            cluster_id,
            max_value_bytes: 3 * 1024 * 1024,
            max_key_bytes: 8 * 1024,
            max_group_writes: 1024,
            max_group_bytes: 16 * 1024 * 1024,
            queue_depth: 4096,
            watch_buffer: 1024,
            compaction: None,
            observer: None,
            resident_max_bytes: 512 * 1024 * 1024,
            resident_prefix: Vec::new(),
        }
    }

    /// Sets the largest accepted value.
    #[must_use]
    pub fn with_max_value_bytes(mut self, n: usize) -> Self {
        self.max_value_bytes = n;
        self
    }

    /// Enables background compaction.
    #[must_use]
    pub fn with_compaction(mut self, c: CompactionOptions) -> Self {
        self.compaction = Some(c);
        self
    }

    /// Reports every read, write and compaction to `observer`.
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn StoreObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Bounds the resident copy of the current state (0: reads always go to RocksDB).
    #[must_use]
    pub fn with_resident_max_bytes(mut self, n: usize) -> Self {
        self.resident_max_bytes = n;
        self
    }

    /// Keeps only the keys under `prefix` resident.
    #[must_use]
    pub fn with_resident_prefix(mut self, prefix: impl Into<Vec<u8>>) -> Self {
        self.resident_prefix = prefix.into();
        self
    }

    /// Sets how many batches a watcher may fall behind before it replays history.
    #[must_use]
    pub fn with_watch_buffer(mut self, n: usize) -> Self {
        self.watch_buffer = n;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), &'static str> {
        if self.max_value_bytes == 0 || self.max_key_bytes == 0 {
            return Err("size limits must be positive");
        }
        if self.max_group_writes == 0 || self.queue_depth == 0 || self.watch_buffer == 0 {
            return Err("group size, queue depth and watch buffer must be positive");
        }
        if self.max_value_bytes > u32::MAX as usize / 2
            || self.max_key_bytes > u32::MAX as usize / 2
        {
            return Err("size limits must fit the journal's 32-bit framing");
        }
        Ok(())
    }
}
