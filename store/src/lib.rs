//! The sealed, revisioned key-value store every API request stands on.
//!
//! Layering: a crate of its own under the `enclave` (which re-exports it as
//! `enclave::store`) and the only code of the workspace that names RocksDB.
//! It depends on `attestation` (sealing keys derive from the root secret)
//! and `protocol` (the journal protocol of [`journal::RemoteJournal`]),
//! never on the API, registry or controllers above it.
//!
//! Semantics follow etcd v3 as the Kubernetes apiserver uses it (the kine
//! subset): one store-wide [`Revision`] incremented by every committed write;
//! each key keeps create revision, mod revision and version; conditional
//! writes compare mod revisions; reads and watches work at any retained
//! revision; compaction drops history older than a window.
//!
//! Layers, bottom up:
//! - `seal`: AES-256-GCM with associated data binding cluster, purpose,
//!   key epoch, key and revision; keys come from a [`SealingKeys`] provider.
//! - [`journal`]: every committed batch becomes one sealed, hash-chained
//!   record in a [`Journal`] — the source of truth. RocksDB is only an index
//!   that [`Store::open`] rebuilds from the journal (and a sealed snapshot).
//! - `shared`: the state every part below shares (RocksDB and its column
//!   families, the sealers, the current revision and chain position).
//! - `commit` and `pipeline`: write requests, and the commit threads that
//!   evaluate conditions, assign revisions, append one journal record per
//!   group of concurrent writes (one fsync shared by all of them), apply the
//!   group to RocksDB and wake watchers.
//! - `read`, `watch`, `compact`, `recovery`: reads from one RocksDB
//!   snapshot, watch with one broadcast fan-out, background compaction,
//!   open and restore.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `vsock` | no | [`journal::RemoteJournal`] reaches the host's journal service over vsock (enclave mode) |

mod commit;
mod compact;
mod encoding;
mod error;
pub mod journal;
mod keys;
mod observer;
mod options;
mod pipeline;
mod position;
mod read;
mod recovery;
mod resident;
mod seal;
mod shared;
mod types;
mod watch;
mod workers;

#[cfg(test)]
mod tests;

pub use compact::CompactionOptions;
pub use error::{Result, StoreError};
pub use journal::{FileJournal, Journal, JournalError, PartialAppend, RecordError};
pub use keys::{KeyEpoch, KeyMaterial, RootSecretKeys, SealPurpose, SealingKeys, StaticKeys};
pub use observer::StoreObserver;
pub use options::StoreOptions;
pub use position::{ChainPoint, journal_opens_with};
pub use read::{ContinueToken, RangeRequest, RangeResponse};
pub use types::{DerivedSlot, Event, EventKind, KeyValue, Revision, TxnOutcome};
pub use watch::{WatchTarget, WatchedEvent, Watcher};

use std::sync::Arc;

/// The store handle. Cheap to clone; every clone talks to the same commit
/// thread. Dropping the last handle stops the commit thread after it has
/// finished the writes already queued.
#[derive(Debug, Clone)]
pub struct Store {
    shared: Arc<shared::Shared>,
    workers: Arc<workers::Workers>,
    /// The journal's points verified when the store opened, oldest first.
    opened: Arc<[ChainPoint]>,
}
