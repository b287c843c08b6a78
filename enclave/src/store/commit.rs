//! The write side: the state shared by handles and the commit pipeline,
//! the writes a handle can queue, and how a write becomes index entries.
//! The pipeline that commits them is in `pipeline.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rocksdb::{ColumnFamily, DB, WriteBatch};
use tokio::sync::{broadcast, oneshot};

use super::Store;
use super::encoding::{
    LatestRecord, VersionRecord, history_key, log_key, value_context, value_meta,
};
use super::error::{Result, StoreError, lossy};
use super::journal::record::{ChainHash, JournalOp};
use super::options::StoreOptions;
use super::pipeline::ChainPosition;
use super::seal::Sealer;
use super::types::{Event, KeyValue, Revision, TxnOutcome};
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
            self.revision.store(revision, Ordering::Release);
        }
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(Arc::from(events));
    }
}

/// The condition a write is subject to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Condition {
    /// Unconditional.
    Always,
    /// The key's mod revision must equal this (0 = the key must not exist).
    ModRevision(Revision),
}

/// A write waiting for the commit thread.
#[derive(Debug)]
pub(crate) enum WriteOp {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        cond: Condition,
    },
    Delete {
        key: Vec<u8>,
        cond: Condition,
    },
}

impl WriteOp {
    pub(crate) fn key(&self) -> &[u8] {
        match self {
            WriteOp::Put { key, .. } | WriteOp::Delete { key, .. } => key,
        }
    }
    pub(crate) fn size(&self) -> usize {
        match self {
            WriteOp::Put { key, value, .. } => key.len() + value.len(),
            WriteOp::Delete { key, .. } => key.len(),
        }
    }
}

/// A message to the commit thread.
#[derive(Debug)]
pub(crate) enum Request {
    Write {
        op: WriteOp,
        reply: oneshot::Sender<Result<TxnOutcome>>,
    },
    Snapshot {
        sealed: Vec<u8>,
        covers_through_seq: u64,
        reply: oneshot::Sender<Result<()>>,
    },
}

impl Store {
    fn check_key(&self, key: &[u8]) -> Result<()> {
        if key.is_empty() {
            return Err(StoreError::EmptyKey);
        }
        let limit = self.shared.opts.max_key_bytes;
        if key.len() > limit {
            return Err(StoreError::KeyTooLarge {
                len: key.len(),
                limit,
            });
        }
        Ok(())
    }

    fn check_value(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let limit = self.shared.opts.max_value_bytes;
        if value.len() > limit {
            return Err(StoreError::ValueTooLarge {
                key: lossy(key),
                len: value.len(),
                limit,
            });
        }
        Ok(())
    }

    async fn submit(&self, op: WriteOp) -> Result<TxnOutcome> {
        let operation = match op {
            WriteOp::Put { .. } => "put",
            WriteOp::Delete { .. } => "delete",
        };
        let start = std::time::Instant::now();
        let result = self.submit_unmeasured(op).await;
        let outcome = match &result {
            Ok(TxnOutcome::Committed { .. }) => "committed",
            Ok(TxnOutcome::Failed { .. }) => "failed",
            Err(_) => "error",
        };
        let metrics = crate::metrics::registry().store();
        metrics.write(operation, outcome, start.elapsed());
        metrics.set_revision(self.revision());
        result
    }

    async fn submit_unmeasured(&self, op: WriteOp) -> Result<TxnOutcome> {
        let (reply, rx) = oneshot::channel();
        let Some(commits) = self.workers.commits() else {
            return Err(self.shared.closed_error());
        };
        if commits.send(Request::Write { op, reply }).await.is_err() {
            return Err(self.shared.closed_error());
        }
        rx.await.map_err(|_| self.shared.closed_error())?
    }

    /// Creates `key` if it does not exist (etcd `mod_revision == 0` compare).
    pub async fn create(&self, key: &[u8], value: &[u8]) -> Result<TxnOutcome> {
        self.check_key(key)?;
        self.check_value(key, value)?;
        self.submit(WriteOp::Put {
            key: key.to_vec(),
            value: value.to_vec(),
            cond: Condition::ModRevision(0),
        })
        .await
    }

    /// Replaces `key` if its mod revision is still `expected` (optimistic concurrency).
    pub async fn update(&self, key: &[u8], value: &[u8], expected: Revision) -> Result<TxnOutcome> {
        self.check_key(key)?;
        self.check_value(key, value)?;
        if expected == 0 {
            return Err(StoreError::InvalidRevision(
                0,
                "an update must name the mod revision it replaces; use create",
            ));
        }
        self.submit(WriteOp::Put {
            key: key.to_vec(),
            value: value.to_vec(),
            cond: Condition::ModRevision(expected),
        })
        .await
    }

    /// Writes `key` unconditionally.
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<TxnOutcome> {
        self.check_key(key)?;
        self.check_value(key, value)?;
        self.submit(WriteOp::Put {
            key: key.to_vec(),
            value: value.to_vec(),
            cond: Condition::Always,
        })
        .await
    }

    /// Deletes `key`, only if its mod revision is `expected` when given.
    /// Deleting a missing key fails with `current: None` and writes nothing.
    pub async fn delete(&self, key: &[u8], expected: Option<Revision>) -> Result<TxnOutcome> {
        self.check_key(key)?;
        let cond = match expected {
            Some(0) => {
                return Err(StoreError::InvalidRevision(
                    0,
                    "a conditional delete must name an existing mod revision",
                ));
            }
            Some(r) => Condition::ModRevision(r),
            None => Condition::Always,
        };
        self.submit(WriteOp::Delete {
            key: key.to_vec(),
            cond,
        })
        .await
    }

    /// Drops this handle and waits up to `timeout` until the store has shut
    /// down (every other handle and watcher gone, queued writes finished,
    /// RocksDB closed). Returns false on timeout.
    pub fn close(self, timeout: std::time::Duration) -> bool {
        let signal = self.shared.closed.0.clone();
        drop(self);
        signal.wait(timeout)
    }

    /// The highest committed revision.
    pub fn revision(&self) -> Revision {
        self.shared.revision.load(Ordering::Acquire)
    }

    /// The compaction point: reads and watches below it fail with [`StoreError::Compacted`].
    pub fn compacted_revision(&self) -> Revision {
        self.shared.compacted.load(Ordering::Acquire)
    }
}
