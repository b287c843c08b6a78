//! Compaction: drops history older than a revision so the index does not
//! grow without bound. Reads and watches below the compaction point fail
//! with [`StoreError::Compacted`] (the API's 410 Gone). Compaction deletes
//! through ordinary RocksDB batches on its own thread, so writes — which go
//! through the commit thread — never wait for it.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rocksdb::{IteratorMode, ReadOptions, WriteBatch};

use super::Store;
use super::encoding::{VersionRecord, log_key, split_history_key};
use super::error::{Result, StoreError};
use super::read::View;
use super::shared::{CF_HISTORY, CF_LOG, CF_META, META_COMPACTED, Shared};
use super::types::Revision;
use super::workers::Signal;

const DELETE_BATCH: usize = 1024;

/// Background compaction settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionOptions {
    /// History younger than this is kept. Default 5 minutes, like the
    /// Kubernetes apiserver's compaction interval.
    pub window: Duration,
    /// How often the compactor wakes up. Default 1 minute.
    pub interval: Duration,
}

impl Default for CompactionOptions {
    fn default() -> Self {
        CompactionOptions {
            window: Duration::from_secs(300),
            interval: Duration::from_secs(60),
        }
    }
}

/// What one compaction removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactStats {
    /// Superseded or deleted versions removed from history.
    pub versions_removed: u64,
}

impl Store {
    /// Compacts history below `revision`: afterwards reads and watches at
    /// revisions `>= revision` work and older ones fail with `Compacted`.
    /// Blocking (it walks the history); call it off the async runtime.
    pub fn compact(&self, revision: Revision) -> Result<CompactStats> {
        compact(&self.shared, revision)
    }
}

pub(crate) fn compact(shared: &Shared, revision: Revision) -> Result<CompactStats> {
    let current = shared.revision.load(Ordering::Acquire);
    if revision > current {
        return Err(StoreError::FutureRevision {
            requested: revision,
            current,
        });
    }
    let before = shared.compacted.fetch_max(revision, Ordering::AcqRel);
    if let Some(observer) = &shared.opts.observer {
        observer.compacted(revision.max(before));
    }
    if revision <= before {
        return Err(StoreError::Compacted {
            requested: revision,
            compacted: before,
        });
    }
    // Persist the point first: a crash mid-way leaves extra history, never a
    // reader that thinks removed history is still there.
    shared
        .db
        .put_cf(shared.cf(CF_META)?, META_COMPACTED, revision.to_be_bytes())?;

    let view = View::new(shared)?;
    let history = shared.cf(CF_HISTORY)?;
    let mut ro = ReadOptions::default();
    view.set_snapshot(&mut ro);
    let mut batch = WriteBatch::default();
    let mut stats = CompactStats::default();
    let mut current_key: Option<Vec<u8>> = None;
    let mut kept_one = false;
    for item in shared.db.iterator_cf_opt(history, ro, IteratorMode::Start) {
        let (k, v) = item?;
        let (esc, rev) = split_history_key(&k)?;
        if current_key.as_deref() != Some(esc) {
            current_key = Some(esc.to_vec());
            kept_one = false;
        }
        if rev >= revision {
            continue;
        }
        // Versions come newest first: the first one below the point is what
        // a read at `revision` sees (unless that is a deletion); older ones go.
        let needed = !kept_one && VersionRecord::decode(&v)?.sealed.is_some();
        if !kept_one {
            kept_one = true;
            if needed {
                continue;
            }
        }
        batch.delete_cf(history, &k);
        stats.versions_removed += 1;
        if batch.len() >= DELETE_BATCH {
            shared.write_index(std::mem::take(&mut batch))?;
        }
    }
    batch.delete_range_cf(shared.cf(CF_LOG)?, log_key(0), log_key(revision));
    shared.write_index(batch)?;
    tracing::debug!(revision, removed = stats.versions_removed, "compacted");
    Ok(stats)
}

/// Runs compaction every `interval`, compacting to the revision that was
/// current `window` ago, until `stop` is raised.
pub(crate) fn spawn_compactor(
    shared: Weak<Shared>,
    opts: CompactionOptions,
    stop: Signal,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("store-compactor".into())
        .spawn(move || {
            let mut samples: VecDeque<(Instant, Revision)> = VecDeque::new();
            let tick = opts
                .interval
                .min(Duration::from_millis(200))
                .max(Duration::from_millis(1));
            let mut next = Instant::now() + opts.interval;
            loop {
                if stop.wait(tick) {
                    return;
                }
                let Some(shared): Option<Arc<Shared>> = shared.upgrade() else {
                    return;
                };
                let now = Instant::now();
                if now < next {
                    continue;
                }
                next = now + opts.interval;
                samples.push_back((now, shared.revision.load(Ordering::Acquire)));
                let mut target = None;
                while let Some(&(t, rev)) = samples.front() {
                    if now.duration_since(t) < opts.window {
                        break;
                    }
                    target = Some(rev);
                    samples.pop_front();
                }
                if let Some(rev) = target.filter(|&r| r > shared.compacted.load(Ordering::Acquire))
                    && let Err(e) = compact(&shared, rev)
                {
                    tracing::warn!(error = %e, revision = rev, "background compaction failed");
                }
            }
        })
}
