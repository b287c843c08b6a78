//! The store's error type.

use super::Revision;

/// Errors returned by the store. Each variant says what failed and for which
/// key or revision, so the API layer can map it to a precise HTTP status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The key was empty; every stored object has a non-empty key.
    #[error("key must not be empty")]
    EmptyKey,
    /// The key is longer than the configured limit.
    #[error("key of {len} bytes exceeds the limit of {limit} bytes")]
    KeyTooLarge {
        /// Length of the rejected key.
        len: usize,
        /// Configured limit.
        limit: usize,
    },
    /// The value is larger than the configured limit (Kubernetes: 413).
    #[error("value for key {key:?} is {len} bytes, over the limit of {limit} bytes")]
    ValueTooLarge {
        /// The key the value was written under (lossy UTF-8).
        key: String,
        /// Length of the rejected value.
        len: usize,
        /// Configured limit.
        limit: usize,
    },
    /// The requested revision has been compacted away (Kubernetes: 410 Gone).
    #[error("required revision {requested} has been compacted (compacted up to {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The store's compaction point: the oldest revision still readable.
        compacted: Revision,
    },
    /// The requested revision is newer than anything committed.
    #[error("revision {requested} is in the future (current revision is {current})")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },
    /// A revision argument was not usable (e.g. zero where a real revision is required).
    #[error("invalid revision {0}: {1}")]
    InvalidRevision(Revision, &'static str),
    /// A continue token could not be decoded or does not belong to this listing.
    #[error("invalid continue token: {0}")]
    InvalidContinue(&'static str),
    /// A stored value failed authentication: it was tampered with, moved to
    /// another key or revision, or sealed under another cluster's key.
    #[error("sealed value for key {key:?} at revision {revision} failed to open: {reason}")]
    Unseal {
        /// The key whose value failed to open (lossy UTF-8).
        key: String,
        /// The revision of the value.
        revision: Revision,
        /// Why it failed.
        reason: &'static str,
    },
    /// The value was sealed under a key epoch this store has no key for.
    #[error("value for key {key:?} was sealed under unknown key epoch {epoch}")]
    UnknownEpoch {
        /// The key whose value could not be opened (lossy UTF-8).
        key: String,
        /// The epoch recorded with the value.
        epoch: u32,
    },
    /// Stored index data is not in the expected format.
    #[error("corrupt index entry: {0}")]
    Corrupt(String),
    /// The journal refused or failed an operation; the write was not acknowledged.
    /// (Here and in `Rocks` the cause is part of the message, so it is not also the `source`: `{:#}` chains would
    /// repeat it.)
    #[error("journal: {0}")]
    Journal(super::journal::JournalError),
    /// The index belongs to another cluster.
    #[error("store belongs to cluster {found}, not {expected}")]
    WrongCluster {
        /// Cluster id configured for this store.
        expected: String,
        /// Cluster id recorded in the index.
        found: String,
    },
    /// The journal ends before the revision the index has applied: the host
    /// served an old journal (a rollback).
    #[error(
        "journal ends at revision {journal} but the index has applied revision {index}: refusing a rolled-back journal"
    )]
    JournalBehindIndex {
        /// Last revision in the journal.
        journal: Revision,
        /// Revision already applied to the index.
        index: Revision,
    },
    /// The options are inconsistent.
    #[error("invalid store options: {0}")]
    InvalidOptions(&'static str),
    /// Sealing failed (no fresh randomness, or a value beyond AES-GCM's limit).
    #[error("sealing failed: {0}")]
    Seal(String),
    /// The write was refused as a whole and nothing of it is stored; the
    /// store stays usable.
    #[error("write not committed: {0}")]
    NotCommitted(String),
    /// The store's commit thread has stopped (after a fatal error); restart the store.
    #[error("store is closed: {0}")]
    Closed(String),
    /// RocksDB failed.
    #[error("rocksdb: {0}")]
    Rocks(rocksdb::Error),
}

impl From<super::journal::JournalError> for StoreError {
    fn from(e: super::journal::JournalError) -> Self {
        Self::Journal(e)
    }
}

impl From<rocksdb::Error> for StoreError {
    fn from(e: rocksdb::Error) -> Self {
        Self::Rocks(e)
    }
}

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub(crate) fn lossy(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

impl StoreError {
    /// Whether opening failed because the sealed state does not open under
    /// the keys given (another root secret), as opposed to damage or I/O.
    /// Tampering also fails authentication, so this cannot tell the two
    /// apart; it says the keys did not open what the host served.
    pub fn is_unopenable_with_these_keys(&self) -> bool {
        use super::journal::{JournalError, RecordError};
        let sealed = |e: &RecordError| {
            matches!(
                e,
                RecordError::Unseal { .. } | RecordError::UnknownEpoch { .. }
            )
        };
        match self {
            StoreError::Journal(JournalError::Snapshot(e)) => sealed(e),
            StoreError::Journal(JournalError::Record { reason, .. }) => sealed(reason),
            StoreError::Unseal { .. } | StoreError::UnknownEpoch { .. } => true,
            _ => false,
        }
    }
}
