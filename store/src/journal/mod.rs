//! The sealed journal: the source of truth for the store's state.
//!
//! Every committed batch of writes becomes one record (format in
//! `record.rs`) — sealed with the journal key and hash-chained to the record
//! before it — and is handed to a [`Journal`] implementation, which keeps it
//! somewhere durable: a local file ([`FileJournal`], dev mode and tests) or
//! the host's journal service `daas-host journal` ([`RemoteJournal`], over
//! vsock in enclave mode or a Unix socket in dev mode). A write is
//! acknowledged only after [`Journal::append`] returns. The journal never
//! sees plaintext: it can drop, reorder or alter records, and the store
//! detects each of these when it restores.

mod file;
pub(crate) mod record;
mod remote;

pub use file::FileJournal;
pub use record::RecordError;
pub use remote::{JournalEndpoint, RemoteJournal, RemoteJournalOptions};

use std::path::PathBuf;

/// Durable storage for sealed journal records and sealed snapshots.
///
/// Called from the store's commit thread, so implementations may block. An
/// implementation must make a record durable (e.g. fsync) before `append`
/// returns, and must return records in the order they were appended.
pub trait Journal: Send + 'static {
    /// Appends one sealed record; returns once it is durable. On error the
    /// journal must be left as it was before the call (or refuse every later
    /// append), because the store will not acknowledge the write.
    fn append(&mut self, record: &[u8]) -> Result<(), JournalError>;

    /// Appends several records in order with one wait for durability where
    /// the implementation can (the store folds queued commit groups into one
    /// call). On error, reports how many leading records are durable; the
    /// rest must be left out as with [`Journal::append`]. The default
    /// appends one at a time.
    fn append_batch(&mut self, records: &[&[u8]]) -> Result<(), PartialAppend> {
        for (durable, record) in records.iter().enumerate() {
            self.append(record)
                .map_err(|error| PartialAppend { durable, error })?;
        }
        Ok(())
    }

    /// Every record appended after the current snapshot, oldest first.
    fn read_records(&mut self) -> Result<Vec<Vec<u8>>, JournalError>;

    /// Stores a sealed snapshot durably, then drops the records it covers
    /// (sequence numbers up to and including `covers_through_seq`).
    fn write_snapshot(
        &mut self,
        snapshot: &[u8],
        covers_through_seq: u64,
    ) -> Result<(), JournalError>;

    /// The latest sealed snapshot, if any.
    fn read_snapshot(&mut self) -> Result<Option<Vec<u8>>, JournalError>;
}

/// A batch append that failed after its first `durable` records.
#[derive(Debug, thiserror::Error)]
#[error("journal append failed after {durable} durable record(s): {error}")]
pub struct PartialAppend {
    /// How many leading records of the batch are durable.
    pub durable: usize,
    /// Why the next one failed.
    #[source]
    pub error: JournalError,
}

/// Errors from a [`Journal`] implementation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
///
/// Causes are part of the messages, so they are not also `source`s: `{:#}` chains would repeat them.
pub enum JournalError {
    /// An I/O operation on a journal file failed.
    #[error("{op} {path}: {cause}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        cause: std::io::Error,
    },
    /// A previous failure left the journal in an unknown state; it refuses
    /// further appends until reopened.
    #[error("journal is poisoned by an earlier failure: {0}")]
    Poisoned(String),
    /// The journal's own framing is damaged (not a record-level check).
    #[error("journal framing damaged at byte {offset}: {reason}")]
    Framing {
        /// Byte offset in the journal file.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// A remote journal refused or failed the request.
    #[error("journal service: {0}")]
    Remote(String),
    /// The journal service could not be reached, or the connection failed
    /// during a request (nothing is known to have been written).
    #[error("journal service {endpoint}: {op}: {cause}")]
    Connection {
        /// The service's endpoint.
        endpoint: String,
        /// The request, e.g. `READ_RECORDS`.
        op: &'static str,
        /// The transport error.
        cause: std::io::Error,
    },
    /// An append reached the connection but its acknowledgement never came
    /// back: the write is not committed. The journal settles it (asks the
    /// service to discard the record) before the next write.
    #[error("journal service {endpoint}: append of record seq {seq} was not acknowledged: {cause}")]
    Unacknowledged {
        /// The service's endpoint.
        endpoint: String,
        /// Sequence number of the record.
        seq: u64,
        /// Why no acknowledgement arrived.
        cause: std::io::Error,
    },
    /// The journal service answered with an error message.
    #[error("journal service {endpoint} refused {op}: {message}")]
    Refused {
        /// The service's endpoint.
        endpoint: String,
        /// The request, e.g. `APPEND`.
        op: &'static str,
        /// The service's message.
        message: String,
    },
    /// The journal service broke the protocol (unexpected or oversize frame).
    #[error("journal service {endpoint}: protocol violation: {reason}")]
    Protocol {
        /// The service's endpoint.
        endpoint: String,
        /// What was wrong.
        reason: String,
    },
    /// The snapshot failed verification on restore.
    /// (Here and in `Record` the cause is part of the message, so it is not also the `source`: `{:#}` chains
    /// would repeat it.)
    #[error("journal snapshot: {0}")]
    Snapshot(RecordError),
    /// A record failed verification on restore.
    #[error("journal record {position}: {reason}")]
    Record {
        /// Zero-based position of the record in what the journal returned.
        position: u64,
        /// What was wrong with it.
        reason: RecordError,
    },
}
