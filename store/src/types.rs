//! Values the store hands out.

use std::any::Any;
use std::sync::{Arc, OnceLock};

/// A store-wide revision: every committed write increments it by one.
/// Kubernetes `resourceVersion` is this number. Revision 0 means "none".
pub type Revision = u64;

/// A key with its value and etcd-style metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// The plaintext value (empty for the key of a delete event).
    pub value: Vec<u8>,
    /// Revision of the write that last created the key.
    pub create_revision: Revision,
    /// Revision of the write that last changed the key.
    pub mod_revision: Revision,
    /// Number of writes since the key was created (1 after create; 0 for a delete event).
    pub version: u64,
}

/// The outcome of a conditional write. A failed comparison is not an error:
/// it carries the current value so the caller can report a conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum TxnOutcome {
    /// The write was committed at `revision` and is durable.
    Committed {
        /// The revision of the write.
        revision: Revision,
        /// The key's value before the write, if it existed.
        prev: Option<KeyValue>,
    },
    /// The comparison failed; nothing was written.
    Failed {
        /// The key's current value, if it exists.
        current: Option<KeyValue>,
    },
}

impl TxnOutcome {
    /// The committed revision, if the write happened.
    pub fn revision(&self) -> Option<Revision> {
        match self {
            TxnOutcome::Committed { revision, .. } => Some(*revision),
            TxnOutcome::Failed { .. } => None,
        }
    }
}

/// What a watch event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created or changed.
    Put,
    /// The key was deleted.
    Delete,
}

/// One change, as seen by a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The key after the change; for a delete, the key with an empty value
    /// and `mod_revision` = the deletion's revision.
    pub kv: KeyValue,
    /// The key's value before the change, if it existed and is retained.
    pub prev: Option<KeyValue>,
    /// What the layer above derived from this event, shared by every watcher that receives it.
    pub derived: DerivedSlot,
}

/// A place where the layer above the store keeps what it derives from an event (its decoded object, say). Every clone
/// of the event shares it, and every watcher receiving a live change holds a clone, so a change fanned out to a
/// thousand watchers is decoded once. It lives as long as the event does (in the watch channel's buffer and the
/// watchers' queues). As a cache it takes no part in equality.
#[derive(Clone, Default)]
pub struct DerivedSlot(Arc<OnceLock<Box<dyn Any + Send + Sync>>>);

impl DerivedSlot {
    /// The value kept here, made by `init` if the slot is still empty; `None` if the slot holds a value of another
    /// type.
    pub fn get_or_init<T: Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> Option<&T> {
        self.0.get_or_init(|| Box::new(init())).downcast_ref()
    }
}

impl PartialEq for DerivedSlot {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for DerivedSlot {}

impl std::fmt::Debug for DerivedSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "DerivedSlot(filled)"
        } else {
            "DerivedSlot(empty)"
        })
    }
}

impl Event {
    /// The revision of the change.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}
