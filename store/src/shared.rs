//! The state shared by the store's handles, the commit pipeline, watchers and
//! compaction ([`Shared`]), the RocksDB column families and meta keys the
//! index is made of, and the journal chain position the index matches.
//! `commit.rs` (the write requests), `pipeline.rs` (the commit threads),
//! `read.rs`, `watch.rs`, `compact.rs` and `recovery.rs` all build on this
//! module, which imports none of them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rocksdb::{ColumnFamily, DB, WriteBatch};
use tokio::sync::broadcast;

use super::encoding::{
    LatestRecord, VersionRecord, history_key, log_key, value_context, value_meta,
};
use super::error::{Result, StoreError, lossy};
use super::journal::record::{ChainHash, JournalOp};
use super::options::StoreOptions;
use super::resident::Resident;
use super::seal::Sealer;
use super::types::{Event, KeyValue, Revision};
use super::workers::SignalOnDrop;

pub(crate) const CF_HISTORY: &str = "history";
pub(crate) const CF_LATEST: &str = "latest";
pub(crate) const CF_LOG: &str = "log";
pub(crate) const CF_META: &str = "meta";
pub(crate) const META_CLUSTER: &[u8] = b"cluster_id";
pub(crate) const META_APPLIED: &[u8] = b"applied";
pub(crate) const META_COMPACTED: &[u8] = b"compacted";

/// State shared by the handles, the commit thread, watchers and compaction.
pub(crate) struct Shared {
    pub(crate) db: DB,
    pub(crate) sealer: Sealer,
    pub(crate) journal_sealer: Sealer,
    pub(crate) opts: StoreOptions,
    /// Highest revision applied to the index and visible to readers.
    pub(crate) revision: AtomicU64,
    /// Oldest revision still readable.
    pub(crate) compacted: AtomicU64,
    pub(crate) events: broadcast::Sender<Arc<[Event]>>,
    /// The last durable journal record, matching `revision`.
    pub(crate) chain: Mutex<ChainPosition>,
    /// Why the commit pipeline stopped, if it did.
    pub(crate) fatal: Mutex<Option<String>>,
    /// The current state in memory, answering reads at the current revision.
    pub(crate) resident: Resident,
    /// Declared last so it drops after `db`: signals that RocksDB is closed.
    pub(crate) closed: SignalOnDrop,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("path", &self.opts.path)
            .field("revision", &self.revision.load(Ordering::Relaxed))
            .field("compacted", &self.compacted.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn cf(&self, name: &'static str) -> Result<&ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StoreError::Corrupt(format!("column family {name} is missing")))
    }

    /// Opens a sealed value of `key` with its metadata.
    pub(crate) fn unseal(
        &self,
        key: &[u8],
        mod_rev: Revision,
        create_rev: Revision,
        version: u64,
        sealed: &[u8],
    ) -> Result<Vec<u8>> {
        let meta = value_meta(mod_rev, create_rev, version);
        self.sealer
            .open(&value_context(key, &meta), sealed)
            .map_err(|e| match e {
                super::seal::OpenError::UnknownEpoch(epoch) => StoreError::UnknownEpoch {
                    key: lossy(key),
                    epoch,
                },
                other => StoreError::Unseal {
                    key: lossy(key),
                    revision: mod_rev,
                    reason: other.reason(),
                },
            })
    }

    /// The current value of `key` from the latest CF, opened.
    pub(crate) fn load_latest(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        let Some(raw) = self.db.get_pinned_cf(self.cf(CF_LATEST)?, key)? else {
            return Ok(None);
        };
        let rec = LatestRecord::decode(&raw)?;
        let value = self.unseal(
            key,
            rec.mod_revision,
            rec.create_revision,
            rec.version,
            &rec.sealed,
        )?;
        Ok(Some(KeyValue {
            key: key.to_vec(),
            value,
            create_revision: rec.create_revision,
            mod_revision: rec.mod_revision,
            version: rec.version,
        }))
    }

    /// Adds the index writes of `ops` to `batch`. `ops` carry plaintext; values are sealed here.
    pub(crate) fn stage_ops(&self, batch: &mut WriteBatch, ops: &[JournalOp]) -> Result<()> {
        let (history, latest, log) = (self.cf(CF_HISTORY)?, self.cf(CF_LATEST)?, self.cf(CF_LOG)?);
        for op in ops {
            match &op.put {
                Some((value, create, version)) => {
                    let meta = value_meta(op.revision, *create, *version);
                    let sealed = self.sealer.seal(&value_context(&op.key, &meta), value)?;
                    let latest_rec = LatestRecord {
                        create_revision: *create,
                        mod_revision: op.revision,
                        version: *version,
                        sealed,
                    };
                    batch.put_cf(latest, &op.key, latest_rec.encode());
                    let hist = VersionRecord {
                        create_revision: *create,
                        version: *version,
                        sealed: Some(latest_rec.sealed),
                    };
                    batch.put_cf(history, history_key(&op.key, op.revision), hist.encode());
                }
                None => {
                    batch.delete_cf(latest, &op.key);
                    let tomb = VersionRecord {
                        create_revision: 0,
                        version: 0,
                        sealed: None,
                    };
                    batch.put_cf(history, history_key(&op.key, op.revision), tomb.encode());
                }
            }
            batch.put_cf(log, log_key(op.revision), &op.key);
        }
        Ok(())
    }

    /// Adds the applied-position record to `batch`.
    pub(crate) fn stage_applied(
        &self,
        batch: &mut WriteBatch,
        revision: Revision,
        seq: u64,
        hash: &ChainHash,
    ) -> Result<()> {
        let mut v = Vec::with_capacity(48);
        v.extend_from_slice(&revision.to_be_bytes());
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(hash);
        batch.put_cf(self.cf(CF_META)?, META_APPLIED, v);
        Ok(())
    }

    pub(crate) fn closed_error(&self) -> StoreError {
        StoreError::Closed(
            self.fatal_reason()
                .unwrap_or_else(|| "commit thread has stopped".into()),
        )
    }

    /// Writes to the index without RocksDB's own write-ahead log: the
    /// journal is the log. After a crash RocksDB reopens at its last
    /// (atomic, all column families) flush, a consistent earlier state, and
    /// recovery replays the journal records after it.
    pub(crate) fn write_index(&self, batch: WriteBatch) -> Result<()> {
        let mut opts = rocksdb::WriteOptions::default();
        opts.disable_wal(true);
        self.db.write_opt(batch, &opts)?;
        Ok(())
    }

    /// Why the commit pipeline stopped, if it did.
    pub(crate) fn fatal_reason(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops the commit pipeline for good, with the reason writers will see.
    pub(crate) fn set_fatal(&self, why: String) {
        *self.fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    /// The last durable revision and chain position.
    pub(crate) fn durable_position(&self) -> (Revision, ChainPosition) {
        let chain = self.chain.lock().unwrap_or_else(|p| p.into_inner());
        (self.revision.load(Ordering::Acquire), *chain)
    }

    /// Records a group made durable and applied: readers see it from here on.
    pub(crate) fn publish(&self, revision: Revision, chain: ChainPosition, events: Vec<Event>) {
        {
            let mut c = self.chain.lock().unwrap_or_else(|p| p.into_inner());
            *c = chain;
            // Before the revision shows: whoever learns of it finds it resident.
            self.resident.apply(revision, &events);
            self.revision.store(revision, Ordering::Release);
        }
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(Arc::from(events));
    }
}

/// A chain position: the last journal record's sequence number and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChainPosition {
    pub(crate) seq: u64,
    pub(crate) head: ChainHash,
}
