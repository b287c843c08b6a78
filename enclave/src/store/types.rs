//! Values the store hands out.

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
}

impl Event {
    /// The revision of the change.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}
