//! The commit path: one thread owns the journal and is the only writer of
//! new revisions. It takes every write queued since its last fsync as one
//! group, evaluates each write's condition against the state including the
//! earlier writes of the group, appends one sealed journal record for the
//! group, applies it to RocksDB in one atomic batch, publishes the events,
//! and only then acknowledges the writers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rocksdb::{ColumnFamily, DB, WriteBatch};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::Store;
use super::encoding::{
    LatestRecord, VersionRecord, history_key, log_key, value_context, value_meta,
};
use super::error::{Result, StoreError, lossy};
use super::journal::Journal;
use super::journal::record::{ChainHash, JournalOp, chain_hash, seal_record};
use super::options::StoreOptions;
use super::seal::Sealer;
use super::types::{Event, EventKind, KeyValue, Revision, TxnOutcome};
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
    /// Why the commit thread stopped, if it did.
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
                    let sealed = self.sealer.seal(&value_context(&op.key, &meta), value);
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
        let why = self.fatal.lock().ok().and_then(|g| g.clone());
        StoreError::Closed(why.unwrap_or_else(|| "commit thread has stopped".into()))
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
    fn key(&self) -> &[u8] {
        match self {
            WriteOp::Put { key, .. } | WriteOp::Delete { key, .. } => key,
        }
    }
    fn size(&self) -> usize {
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

/// The commit thread's own state.
pub(crate) struct Committer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) journal: Box<dyn Journal>,
    pub(crate) next_revision: Revision,
    pub(crate) seq: u64,
    pub(crate) head: ChainHash,
}

impl Committer {
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let mut group = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            let mut bytes = 0;
            let mut pending = Some(first);
            while let Some(req) = pending.take() {
                match req {
                    Request::Snapshot {
                        sealed,
                        covers_through_seq,
                        reply,
                    } => {
                        // Commit what came before, then the snapshot, in order.
                        if !self.commit_group(std::mem::take(&mut group)) {
                            let _ = reply.send(Err(self.shared.closed_error()));
                            return;
                        }
                        let r = self
                            .journal
                            .write_snapshot(&sealed, covers_through_seq)
                            .map_err(StoreError::from);
                        let _ = reply.send(r);
                        bytes = 0;
                    }
                    Request::Write { op, reply } => {
                        bytes += op.size();
                        group.push((op, reply));
                    }
                }
                if group.len() < self.shared.opts.max_group_writes
                    && bytes < self.shared.opts.max_group_bytes
                {
                    pending = rx.try_recv().ok();
                }
            }
            if !self.commit_group(std::mem::take(&mut group)) {
                return;
            }
        }
    }

    /// Commits one group. Returns false if the store must stop.
    fn commit_group(&mut self, group: Vec<(WriteOp, oneshot::Sender<Result<TxnOutcome>>)>) -> bool {
        if group.is_empty() {
            return true;
        }
        let mut overlay: HashMap<Vec<u8>, Option<KeyValue>> = HashMap::new();
        let mut ops = Vec::new();
        let mut events = Vec::new();
        let mut outcomes = Vec::with_capacity(group.len());
        let mut rev = self.next_revision;
        for (op, _) in &group {
            let current = match overlay.get(op.key()) {
                Some(v) => Ok(v.clone()),
                None => self.shared.load_latest(op.key()),
            };
            let current = match current {
                Ok(c) => c,
                Err(e) => {
                    outcomes.push(Err(e));
                    continue;
                }
            };
            let cur_mod = current.as_ref().map_or(0, |kv| kv.mod_revision);
            let passes = |cond: Condition| match cond {
                Condition::Always => true,
                Condition::ModRevision(r) => r == cur_mod,
            };
            match op {
                WriteOp::Put { key, value, cond } if passes(*cond) => {
                    let (create, version) = current
                        .as_ref()
                        .map_or((rev, 1), |kv| (kv.create_revision, kv.version + 1));
                    let kv = KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: create,
                        mod_revision: rev,
                        version,
                    };
                    ops.push(JournalOp {
                        revision: rev,
                        key: key.clone(),
                        put: Some((value.clone(), create, version)),
                    });
                    events.push(Event {
                        kind: EventKind::Put,
                        kv: kv.clone(),
                        prev: current.clone(),
                    });
                    overlay.insert(key.clone(), Some(kv));
                    outcomes.push(Ok(TxnOutcome::Committed {
                        revision: rev,
                        prev: current,
                    }));
                    rev += 1;
                }
                WriteOp::Delete { key, cond } if current.is_some() && passes(*cond) => {
                    ops.push(JournalOp {
                        revision: rev,
                        key: key.clone(),
                        put: None,
                    });
                    let kv = KeyValue {
                        key: key.clone(),
                        value: Vec::new(),
                        create_revision: 0,
                        mod_revision: rev,
                        version: 0,
                    };
                    events.push(Event {
                        kind: EventKind::Delete,
                        kv,
                        prev: current.clone(),
                    });
                    overlay.insert(key.clone(), None);
                    outcomes.push(Ok(TxnOutcome::Committed {
                        revision: rev,
                        prev: current,
                    }));
                    rev += 1;
                }
                _ => outcomes.push(Ok(TxnOutcome::Failed { current })),
            }
        }
        if !ops.is_empty() {
            let record = seal_record(&self.shared.journal_sealer, self.seq + 1, self.head, &ops);
            if let Err(e) = self.journal.append(&record) {
                // Nothing is durable: refuse the whole group (later writes in it
                // were evaluated against earlier ones) and keep the old head.
                let msg = e.to_string();
                tracing::error!(error = %msg, "journal append failed; group of {} writes refused", group.len());
                for (_, reply) in group {
                    let _ = reply.send(Err(StoreError::Journal(
                        super::journal::JournalError::Remote(format!(
                            "append failed, write not committed: {msg}"
                        )),
                    )));
                }
                return true;
            }
            let hash = chain_hash(&record);
            let last = rev - 1;
            let applied = (|| {
                let mut batch = WriteBatch::default();
                self.shared.stage_ops(&mut batch, &ops)?;
                self.shared
                    .stage_applied(&mut batch, last, self.seq + 1, &hash)?;
                self.shared.db.write(batch)?;
                Ok::<_, StoreError>(())
            })();
            if let Err(e) = applied {
                // The journal has the group but the index does not: the
                // in-memory view is now behind. Stop; reopening replays it.
                let msg = format!(
                    "index write failed after the journal made revisions {}..={last} durable: {e}",
                    self.next_revision
                );
                tracing::error!("{msg}");
                if let Ok(mut f) = self.shared.fatal.lock() {
                    *f = Some(msg.clone());
                }
                for (_, reply) in group {
                    let _ = reply.send(Err(StoreError::Closed(msg.clone())));
                }
                return false;
            }
            self.seq += 1;
            self.head = hash;
            self.next_revision = rev;
            self.shared.revision.store(last, Ordering::Release);
            // No receivers is fine: nobody is watching.
            let _ = self.shared.events.send(Arc::from(events));
        }
        for ((_, reply), outcome) in group.into_iter().zip(outcomes) {
            let _ = reply.send(outcome);
        }
        true
    }
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
