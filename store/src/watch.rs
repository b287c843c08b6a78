//! Watch: a subscription to a key or prefix from any retained revision.
//!
//! The commit thread publishes each committed group once on a broadcast
//! channel; every watcher holds a receiver, so there is one fan-out and no
//! polling. A watcher first replays history from the revision it asked for
//! (read from the `log` and `history` column families, one page at a time),
//! then follows the live channel. A watcher that falls more than
//! `watch_buffer` groups behind goes back to replaying history from where it
//! was — or ends with [`StoreError::Compacted`] if that history is gone.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rocksdb::{Direction, IteratorMode, ReadOptions};
use tokio::sync::broadcast::{self, error::RecvError};

use super::Store;
use super::encoding::{VersionRecord, be_u64, history_key, split_history_key};
use super::error::{Result, StoreError};
use super::read::View;
use super::shared::{CF_HISTORY, CF_LOG, Shared};
use super::types::{DerivedSlot, Event, EventKind, KeyValue, Revision};

/// Revisions replayed from history per step.
const REPLAY_PAGE: u64 = 512;

/// What a watcher follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchTarget {
    /// Exactly this key.
    Key(Vec<u8>),
    /// Every key starting with these bytes.
    Prefix(Vec<u8>),
}

impl WatchTarget {
    fn matches(&self, key: &[u8]) -> bool {
        match self {
            WatchTarget::Key(k) => k.as_slice() == key,
            WatchTarget::Prefix(p) => key.starts_with(p),
        }
    }
}

/// An event as a watcher receives it. A live change is the committed group's
/// own event, shared with every other watcher of it rather than copied (its
/// key, value and previous value); a replayed one is read for this watcher.
/// Dereferences to the [`Event`].
#[derive(Debug, Clone)]
pub struct WatchedEvent(Source);

#[derive(Debug, Clone)]
enum Source {
    /// The `index`-th event of a committed group.
    Live(Arc<[Event]>, usize),
    /// Rebuilt from history.
    Replayed(Box<Event>),
}

impl std::ops::Deref for WatchedEvent {
    type Target = Event;

    fn deref(&self) -> &Event {
        match &self.0 {
            // The index was taken from this very group.
            Source::Live(batch, i) => &batch[*i],
            Source::Replayed(event) => event,
        }
    }
}

/// A live watch. Call [`Watcher::next`] for events in revision order.
#[derive(Debug)]
pub struct Watcher {
    shared: Arc<Shared>,
    target: WatchTarget,
    next_revision: Revision,
    pending: VecDeque<WatchedEvent>,
    live: broadcast::Receiver<Arc<[Event]>>,
    replaying: bool,
    done: bool,
}

impl Store {
    /// Watches `target` starting at revision `start` (0: changes after the
    /// current revision). Fails with [`StoreError::Compacted`] if `start` is
    /// older than the compaction point.
    pub fn watch(&self, target: WatchTarget, start: Revision) -> Result<Watcher> {
        // Subscribe before looking at the revision, so nothing committed in
        // between is missed (duplicates are dropped by revision).
        let live = self.shared.events.subscribe();
        let current = self.revision();
        let compacted = self.compacted_revision();
        if start != 0 && start < compacted {
            return Err(StoreError::Compacted {
                requested: start,
                compacted,
            });
        }
        let next_revision = if start == 0 { current + 1 } else { start };
        Ok(Watcher {
            shared: self.shared.clone(),
            target,
            next_revision,
            pending: VecDeque::new(),
            live,
            replaying: next_revision <= current,
            done: false,
        })
    }
}

impl Watcher {
    /// The next event, `None` when the store has shut down, or an error
    /// (after which the watch is over): [`StoreError::Compacted`] if the
    /// watcher fell behind the compaction point.
    pub async fn next(&mut self) -> Option<Result<WatchedEvent>> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(Ok(e));
            }
            if self.done {
                return None;
            }
            if self.replaying {
                if let Err(e) = self.replay_page() {
                    self.done = true;
                    return Some(Err(e));
                }
                continue;
            }
            match self.live.recv().await {
                Ok(batch) => self.take_live(batch),
                Err(RecvError::Lagged(_)) => self.replaying = true,
                Err(RecvError::Closed) => self.done = true,
            }
        }
    }

    /// The revision the next event will have at least: everything before it
    /// has been delivered (what a Kubernetes bookmark reports).
    pub fn progress(&self) -> Revision {
        self.next_revision.saturating_sub(1)
    }

    fn take_live(&mut self, batch: Arc<[Event]>) {
        for (i, e) in batch.iter().enumerate() {
            if e.revision() >= self.next_revision && self.target.matches(&e.kv.key) {
                self.pending
                    .push_back(WatchedEvent(Source::Live(batch.clone(), i)));
            }
        }
        if let Some(last) = batch.last() {
            self.next_revision = self.next_revision.max(last.revision() + 1);
        }
    }

    fn replay_page(&mut self) -> Result<()> {
        let view = View::new(&self.shared)?;
        let current = view.current();
        if self.next_revision > current {
            self.replaying = false;
            return Ok(());
        }
        let compacted = self.shared.compacted.load(Ordering::Acquire);
        if self.next_revision < compacted {
            return Err(StoreError::Compacted {
                requested: self.next_revision,
                compacted,
            });
        }
        let end = current.min(self.next_revision.saturating_add(REPLAY_PAGE - 1));
        let log = self.shared.cf(CF_LOG)?;
        let mut ro = ReadOptions::default();
        view.set_snapshot(&mut ro);
        let start = self.next_revision.to_be_bytes();
        for item in
            self.shared
                .db
                .iterator_cf_opt(log, ro, IteratorMode::From(&start, Direction::Forward))
        {
            let (k, key) = item?;
            if k.len() != 8 {
                return Err(StoreError::Corrupt("log key is not a revision".into()));
            }
            let rev = be_u64(&k);
            if rev > end {
                break;
            }
            if self.target.matches(&key) {
                let event = self.event_at(&view, &key, rev)?;
                self.pending
                    .push_back(WatchedEvent(Source::Replayed(Box::new(event))));
            }
        }
        self.next_revision = end + 1;
        if end == current {
            self.replaying = false;
        }
        Ok(())
    }

    /// Rebuilds the event of `rev` on `key` from history, with its previous version.
    fn event_at(&self, view: &View<'_>, key: &[u8], rev: Revision) -> Result<Event> {
        let mut ro = ReadOptions::default();
        view.set_snapshot(&mut ro);
        let mut it = self
            .shared
            .db
            .raw_iterator_cf_opt(self.shared.cf(CF_HISTORY)?, ro);
        let target = history_key(key, rev);
        it.seek(&target);
        let this = match (it.key(), it.value()) {
            (Some(k), Some(v)) if k == target.as_slice() => VersionRecord::decode(v)?,
            _ => {
                it.status()?;
                let compacted = self.shared.compacted.load(Ordering::Acquire);
                return Err(StoreError::Compacted {
                    requested: rev,
                    compacted,
                });
            }
        };
        it.next();
        let mut prev = None;
        if let (Some(k), Some(v)) = (it.key(), it.value()) {
            let (esc, prev_rev) = split_history_key(k)?;
            if esc == &target[..target.len() - 8] {
                let rec = VersionRecord::decode(v)?;
                if let Some(sealed) = rec.sealed {
                    let value = self.shared.unseal(
                        key,
                        prev_rev,
                        rec.create_revision,
                        rec.version,
                        &sealed,
                    )?;
                    prev = Some(KeyValue {
                        key: key.to_vec(),
                        value,
                        create_revision: rec.create_revision,
                        mod_revision: prev_rev,
                        version: rec.version,
                    });
                }
            }
        }
        it.status()?;
        Ok(match this.sealed {
            Some(sealed) => {
                let value =
                    self.shared
                        .unseal(key, rev, this.create_revision, this.version, &sealed)?;
                let kv = KeyValue {
                    key: key.to_vec(),
                    value,
                    create_revision: this.create_revision,
                    mod_revision: rev,
                    version: this.version,
                };
                Event {
                    kind: EventKind::Put,
                    kv,
                    prev,
                    derived: DerivedSlot::default(),
                }
            }
            None => {
                let kv = KeyValue {
                    key: key.to_vec(),
                    value: Vec::new(),
                    create_revision: 0,
                    mod_revision: rev,
                    version: 0,
                };
                Event {
                    kind: EventKind::Delete,
                    kv,
                    prev,
                    derived: DerivedSlot::default(),
                }
            }
        })
    }
}
