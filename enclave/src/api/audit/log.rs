//! Where audit events go: JSON lines batched in memory and written once a
//! second (or every 512 KiB) as one value of the sealed store, under
//! `/audit/<unix nanos>-<seq>`. The store seals every value and journals it
//! to the host sealed too, so the host keeps the audit trail without being
//! able to read who did what. Batches older than the retention are deleted.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::store::{RangeRequest, Store, StoreError};

/// The key prefix of audit batches (outside the registry's `/registry/`).
pub const PREFIX: &str = "/audit/";

/// Pending bytes that trigger a write before the next tick.
const FLUSH_BYTES: usize = 512 * 1024;

/// How often pending events are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The nanosecond timestamp a batch key starts with.
fn key_time(key: &[u8]) -> Option<u64> {
    let rest = key.strip_prefix(PREFIX.as_bytes())?;
    let digits = rest.split(|b| *b == b'-').next()?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// One stored batch of events.
#[derive(Debug)]
pub struct StoredBatch {
    /// Its key: batches sort by it in the order they were written.
    pub key: Vec<u8>,
    /// Its events, one JSON object per line.
    pub lines: Vec<u8>,
}

/// The sealed audit log.
#[derive(Debug)]
pub struct AuditLog {
    store: Store,
    pending: Mutex<Vec<u8>>,
    /// Keys of the stored batches, oldest first.
    batches: Mutex<VecDeque<Vec<u8>>>,
    seq: AtomicU64,
    retention: Duration,
    flushed: tokio::sync::watch::Sender<u64>,
}

impl AuditLog {
    /// The log in `store`, keeping batches for `retention`.
    ///
    /// # Errors
    /// The store cannot be read.
    pub fn open(store: Store, retention: Duration) -> Result<Self, StoreError> {
        let mut keys = VecDeque::new();
        let mut req = RangeRequest::prefix(PREFIX.as_bytes().to_vec()).with_limit(256);
        loop {
            let page = store.range(&req)?;
            keys.extend(page.kvs.into_iter().map(|kv| kv.key));
            match page.next {
                Some(next) => {
                    req = RangeRequest::prefix(PREFIX.as_bytes().to_vec())
                        .with_limit(256)
                        .continuing(next)
                }
                None => break,
            }
        }
        Ok(AuditLog {
            store,
            pending: Mutex::new(Vec::new()),
            batches: Mutex::new(keys),
            seq: AtomicU64::new(0),
            retention,
            flushed: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Queues one event (a JSON object without its newline).
    pub fn push(&self, line: &[u8]) {
        if let Ok(mut p) = self.pending.lock() {
            p.extend_from_slice(line);
            p.push(b'\n');
            if p.len() >= FLUSH_BYTES {
                self.flushed.send_modify(|_| {});
            }
        }
    }

    /// Notified after each write (and when a write is due early).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.flushed.subscribe()
    }

    /// Writes the pending events as one sealed batch and deletes expired batches.
    ///
    /// # Errors
    /// The store refused the write (the events are kept for the next try).
    pub async fn flush(&self) -> Result<(), StoreError> {
        let batch = match self.pending.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(_) => return Ok(()),
        };
        if !batch.is_empty() {
            let seq = self.seq.fetch_add(1, Ordering::Relaxed);
            let key = format!("{PREFIX}{:020}-{seq:08}", now_nanos()).into_bytes();
            if let Err(e) = self.store.put(&key, &batch).await {
                if let Ok(mut p) = self.pending.lock() {
                    let newer = std::mem::take(&mut *p);
                    *p = batch;
                    p.extend_from_slice(&newer);
                }
                return Err(e);
            }
            if let Ok(mut b) = self.batches.lock() {
                b.push_back(key);
            }
            self.flushed.send_modify(|g| *g = g.wrapping_add(1));
        }
        let cutoff = now_nanos()
            .saturating_sub(u64::try_from(self.retention.as_nanos()).unwrap_or(u64::MAX));
        loop {
            let old = match self.batches.lock() {
                Ok(mut b) => match b.front() {
                    Some(k) if key_time(k).is_some_and(|t| t < cutoff) => b.pop_front(),
                    _ => None,
                },
                Err(_) => None,
            };
            let Some(k) = old else { break };
            let _ = self.store.delete(&k, None).await?;
        }
        Ok(())
    }

    /// Flushes every [`FLUSH_INTERVAL`] (or sooner when much is pending) until `stop`.
    pub async fn run(&self, stop: tokio_util::sync::CancellationToken) {
        let mut early = self.subscribe();
        let mut tick = tokio::time::interval(FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => {
                    let _ = self.flush().await;
                    return;
                }
                _ = tick.tick() => {}
                _ = early.changed() => {}
            }
            if let Err(e) = self.flush().await {
                tracing::warn!(error = %e, "writing audit events failed; retrying");
            }
        }
    }

    /// The key of the newest stored batch.
    pub fn newest(&self) -> Option<Vec<u8>> {
        self.batches.lock().ok()?.back().cloned()
    }

    /// Up to `limit` stored batches after the batch key `after` (exclusive; `None`: from the
    /// oldest), each with its key, oldest first. A batch deleted meanwhile (retention) is
    /// skipped.
    ///
    /// # Errors
    /// The store cannot be read.
    pub fn batches_after(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<StoredBatch>, StoreError> {
        let keys: Vec<Vec<u8>> = match self.batches.lock() {
            Ok(b) => b
                .iter()
                .filter(|k| after.is_none_or(|a| k.as_slice() > a))
                .take(limit)
                .cloned()
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            if let (Some(kv), _) = self.store.get(&k)? {
                out.push(StoredBatch {
                    key: k,
                    lines: kv.value,
                });
            }
        }
        Ok(out)
    }

    /// The stored batches written at or after `since` (unix nanos), after
    /// the batch key `after` (exclusive) when given, and the last key read.
    ///
    /// # Errors
    /// The store cannot be read.
    pub fn read(
        &self,
        since: u64,
        after: Option<&[u8]>,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), StoreError> {
        let keys: Vec<Vec<u8>> = match self.batches.lock() {
            Ok(b) => b
                .iter()
                .filter(|k| after.is_none_or(|a| k.as_slice() > a))
                .filter(|k| key_time(k).is_some_and(|t| t >= since))
                .cloned()
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut out = Vec::new();
        let mut last = after.map(<[u8]>::to_vec);
        for k in keys {
            if let (Some(kv), _) = self.store.get(&k)? {
                out.extend_from_slice(&kv.value);
            }
            last = Some(k);
        }
        Ok((out, last))
    }
}
