//! The write side: the writes a handle can queue and the handle's write
//! methods. The state they act on is in `shared.rs`; the pipeline that
//! commits them is in `pipeline.rs`.

use std::sync::atomic::Ordering;

use tokio::sync::oneshot;

use super::Store;
use super::error::{Result, StoreError, lossy};
use super::types::{Revision, TxnOutcome};

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
        let Some(observer) = self.shared.opts.observer.clone() else {
            return self.submit_unobserved(op).await;
        };
        let operation = match op {
            WriteOp::Put { .. } => "put",
            WriteOp::Delete { .. } => "delete",
        };
        let started = std::time::Instant::now();
        let result = self.submit_unobserved(op).await;
        let outcome = match &result {
            Ok(TxnOutcome::Committed { .. }) => "committed",
            Ok(TxnOutcome::Failed { .. }) => "failed",
            Err(_) => "error",
        };
        observer.write(operation, outcome, started.elapsed(), self.revision());
        result
    }

    async fn submit_unobserved(&self, op: WriteOp) -> Result<TxnOutcome> {
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
