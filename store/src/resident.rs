//! The latest value of every key, resident in memory (kube-apiserver's watch cache, at the
//! store's level): reads at the current revision are answered from here, without a RocksDB
//! lookup or an AES-GCM open per key.
//!
//! The journal stays the truth and RocksDB the index; this is a copy of the `latest` column
//! family in plaintext, in the enclave's own memory (where the plaintext already lives while a
//! request uses it). It is filled when the store opens and changed by the commit thread in
//! [`Shared::publish`](super::shared::Shared::publish), before a write's revision becomes
//! visible and before its writer hears back, so a read from here is exactly the state at its
//! revision, and every writer reads its own writes.
//!
//! Memory is bounded by [`StoreOptions::resident_max_bytes`](super::StoreOptions): a store
//! whose keys and values outgrow it drops the copy for good (until it is opened again) and
//! reads from RocksDB as before.
//!
//! Each value carries a [`DerivedSlot`] that lives as long as the value stays unchanged, where
//! the layer above keeps what it derives from it (its response bytes), so a value read by a
//! thousand LISTs is encoded once.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, RwLock};

use super::types::{DerivedSlot, Event, EventKind, KeyValue, Revision};

/// What one entry costs beyond its key and value bytes (map node, metadata, slot), roughly.
const ENTRY_OVERHEAD: usize = 96;

/// The resident copy, `None` inside once disabled.
#[derive(Debug)]
pub(crate) struct Resident {
    state: RwLock<Option<State>>,
    max_bytes: usize,
    /// Only keys under it are kept; reads of others go to RocksDB.
    prefix: Vec<u8>,
}

#[derive(Debug)]
struct State {
    /// The revision this copy holds: the last published one.
    revision: Revision,
    entries: BTreeMap<Vec<u8>, Entry>,
    bytes: usize,
}

#[derive(Debug, Clone)]
struct Entry {
    kv: Arc<KeyValue>,
    derived: DerivedSlot,
}

fn cost(kv: &KeyValue) -> usize {
    kv.key.len() + kv.value.len() + ENTRY_OVERHEAD
}

/// A range answered from memory: the page and the revision it holds.
pub(crate) struct ResidentPage {
    pub(crate) kvs: Vec<KeyValue>,
    pub(crate) derived: Vec<DerivedSlot>,
    pub(crate) revision: Revision,
    /// Whether more keys under the prefix follow the page.
    pub(crate) more: bool,
}

impl Resident {
    /// A copy of the keys under `prefix`, bounded by `max_bytes` (0: never kept), empty until
    /// [`Resident::fill`].
    pub(crate) fn new(max_bytes: usize, prefix: Vec<u8>) -> Self {
        Resident {
            state: RwLock::new(None),
            max_bytes,
            prefix,
        }
    }

    /// Takes every live key at `revision` (the state the store opened with).
    pub(crate) fn fill(&self, mut kvs: Vec<KeyValue>, revision: Revision) {
        if self.max_bytes == 0 {
            return;
        }
        kvs.retain(|kv| kv.key.starts_with(&self.prefix));
        let bytes: usize = kvs.iter().map(cost).sum();
        let mut guard = self.write();
        if bytes > self.max_bytes {
            Self::report_overflow(bytes, self.max_bytes);
            *guard = None;
            return;
        }
        let entries = kvs
            .into_iter()
            .map(|kv| {
                let entry = Entry {
                    kv: Arc::new(kv),
                    derived: DerivedSlot::default(),
                };
                (entry.kv.key.clone(), entry)
            })
            .collect();
        *guard = Some(State {
            revision,
            entries,
            bytes,
        });
    }

    /// Applies one published group, which ends at `revision`.
    pub(crate) fn apply(&self, revision: Revision, events: &[Event]) {
        let mut guard = self.write();
        let Some(state) = guard.as_mut() else {
            return;
        };
        for event in events.iter().filter(|e| e.kv.key.starts_with(&self.prefix)) {
            match event.kind {
                EventKind::Put => {
                    let added = cost(&event.kv);
                    let entry = Entry {
                        kv: Arc::new(event.kv.clone()),
                        derived: DerivedSlot::default(),
                    };
                    if let Some(old) = state.entries.insert(event.kv.key.clone(), entry) {
                        state.bytes -= cost(&old.kv);
                    }
                    state.bytes += added;
                }
                EventKind::Delete => {
                    if let Some(old) = state.entries.remove(&event.kv.key) {
                        state.bytes -= cost(&old.kv);
                    }
                }
            }
        }
        state.revision = revision;
        if state.bytes > self.max_bytes {
            Self::report_overflow(state.bytes, self.max_bytes);
            *guard = None;
        }
    }

    /// The current value of `key`, if the copy is kept: `Some((value, revision))`.
    pub(crate) fn get(&self, key: &[u8]) -> Option<(Option<KeyValue>, Revision)> {
        if !key.starts_with(&self.prefix) {
            return None;
        }
        let guard = self.read();
        let state = guard.as_ref()?;
        Some((
            state.entries.get(key).map(|e| KeyValue::clone(&e.kv)),
            state.revision,
        ))
    }

    /// How many keys are under `prefix`, if the copy is kept and covers it.
    pub(crate) fn count(&self, prefix: &[u8]) -> Option<usize> {
        if !prefix.starts_with(&self.prefix) {
            return None;
        }
        let guard = self.read();
        let state = guard.as_ref()?;
        Some(
            state
                .entries
                .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(prefix))
                .count(),
        )
    }

    /// The slot of `key`'s current value, if the copy is kept and that value is the one
    /// written at `revision` (not already replaced or deleted).
    pub(crate) fn slot(&self, key: &[u8], revision: Revision) -> Option<DerivedSlot> {
        if !key.starts_with(&self.prefix) {
            return None;
        }
        let guard = self.read();
        let entry = guard.as_ref()?.entries.get(key)?;
        (entry.kv.mod_revision == revision).then(|| entry.derived.clone())
    }

    /// Up to `limit` (0: all) keys under `prefix` after `after`, if the copy is kept and
    /// holds `revision` (`None`: whatever it holds).
    pub(crate) fn range(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        revision: Option<Revision>,
    ) -> Option<ResidentPage> {
        if !prefix.starts_with(&self.prefix) {
            return None;
        }
        let guard = self.read();
        let state = guard.as_ref()?;
        if revision.is_some_and(|r| r != state.revision) {
            return None;
        }
        let start = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Included(prefix),
        };
        let want = if limit == 0 { usize::MAX } else { limit };
        let mut page = ResidentPage {
            kvs: Vec::new(),
            derived: Vec::new(),
            revision: state.revision,
            more: false,
        };
        for (key, entry) in state
            .entries
            .range::<[u8], _>((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
        {
            if page.kvs.len() == want {
                page.more = true;
                break;
            }
            debug_assert_eq!(key, &entry.kv.key);
            page.kvs.push(KeyValue::clone(&entry.kv));
            page.derived.push(entry.derived.clone());
        }
        Some(page)
    }

    /// Whether the copy is kept, and how many bytes it counts.
    pub(crate) fn held_bytes(&self) -> Option<usize> {
        self.read().as_ref().map(|s| s.bytes)
    }

    fn report_overflow(bytes: usize, max: usize) {
        tracing::warn!(
            bytes,
            max,
            "the store's keys and values outgrew the resident copy's budget; reads go to RocksDB until the store is opened again"
        );
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Option<State>> {
        // A panic under the lock leaves a whole map (every change is one insert or remove).
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Option<State>> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }
}
