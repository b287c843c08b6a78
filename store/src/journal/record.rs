//! Journal record and snapshot formats.
//!
//! Record: `"KDJ1" | seq | first_rev | last_rev | prev_hash[32] | sealed(ops)`.
//! The header is in the clear (the host may read sequence numbers, never
//! data) and is bound into the AEAD associated data, so changing it breaks
//! authentication. `prev_hash` is the SHA-256 of the previous record's bytes
//! (all zero for the first record of a cluster), so a dropped, reordered or
//! replayed record breaks the chain.
//!
//! Snapshot: `"KDS1" | seq | revision | chain_hash[32] | sealed(entries)`:
//! the live keys at `revision`, taken right after journal record `seq`
//! whose hash is `chain_hash`.

use protocol::journal::RECORD_MAGIC;
use ring::digest::{SHA256, digest};

use crate::Revision;
use crate::encoding::be_u64;
use crate::error::StoreError;
use crate::seal::{OpenError, Sealer};

const SNAPSHOT_MAGIC: &[u8; 4] = b"KDS1";
const HEADER_LEN: usize = 4 + 8 + 8 + 8 + 32;

/// A chain hash: SHA-256 of a record's bytes.
pub(crate) type ChainHash = [u8; 32];

/// The chain hash before the first record.
pub(crate) const GENESIS: ChainHash = [0; 32];

/// Why a journal record or snapshot was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Shorter than its header, or its payload ends early.
    #[error("truncated")]
    Truncated,
    /// Does not start with the record (or snapshot) magic.
    #[error("not a journal record (bad magic)")]
    BadMagic,
    /// Authentication failed: the record was altered, or it was sealed under
    /// another cluster's journal key.
    #[error(
        "sealed payload of record seq {seq} failed to open: tampered, or sealed under another cluster's key"
    )]
    Unseal {
        /// Sequence number claimed by the record header.
        seq: u64,
    },
    /// Sealed under a key epoch this enclave has no key for.
    #[error("record seq {seq} is sealed under unknown key epoch {epoch}")]
    UnknownEpoch {
        /// Sequence number claimed by the record header.
        seq: u64,
        /// The epoch recorded in the sealed payload.
        epoch: u32,
    },
    /// The decrypted payload is not well formed.
    #[error("record seq {seq} payload is malformed: {what}")]
    Malformed {
        /// Sequence number claimed by the record header.
        seq: u64,
        /// What was wrong.
        what: &'static str,
    },
    /// A record is missing, repeated or out of order.
    #[error(
        "expected record seq {expected}, found seq {found} (missing, replayed or reordered record)"
    )]
    OutOfOrder {
        /// The next sequence number in the chain.
        expected: u64,
        /// The one found.
        found: u64,
    },
    /// The record does not chain to the one before it.
    #[error("record seq {seq} does not chain to the previous record (hash mismatch)")]
    BrokenChain {
        /// Sequence number of the record.
        seq: u64,
    },
    /// Revisions are not contiguous.
    #[error("record seq {seq} starts at revision {found}, expected {expected}")]
    RevisionGap {
        /// Sequence number of the record.
        seq: u64,
        /// The next revision in order.
        expected: Revision,
        /// The first revision of the record.
        found: Revision,
    },
}

/// The cleartext header of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub(crate) seq: u64,
    pub(crate) first_revision: Revision,
    pub(crate) last_revision: Revision,
    pub(crate) prev_hash: ChainHash,
}

impl RecordHeader {
    fn encode(&self, magic: &[u8; 4]) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(magic);
        h[4..12].copy_from_slice(&self.seq.to_be_bytes());
        h[12..20].copy_from_slice(&self.first_revision.to_be_bytes());
        h[20..28].copy_from_slice(&self.last_revision.to_be_bytes());
        h[28..60].copy_from_slice(&self.prev_hash);
        h
    }

    fn decode(bytes: &[u8], magic: &[u8; 4]) -> Result<Self, RecordError> {
        if bytes.len() < HEADER_LEN {
            return Err(RecordError::Truncated);
        }
        if &bytes[..4] != magic {
            return Err(RecordError::BadMagic);
        }
        let mut prev_hash = [0u8; 32];
        prev_hash.copy_from_slice(&bytes[28..60]);
        Ok(RecordHeader {
            seq: be_u64(&bytes[4..12]),
            first_revision: be_u64(&bytes[12..20]),
            last_revision: be_u64(&bytes[20..28]),
            prev_hash,
        })
    }
}

/// One committed change, as journaled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JournalOp {
    pub(crate) revision: Revision,
    pub(crate) key: Vec<u8>,
    /// `Some((value, create_revision, version))` for a put, `None` for a delete.
    pub(crate) put: Option<(Vec<u8>, Revision, u64)>,
}

/// A live key in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapshotEntry {
    pub(crate) key: Vec<u8>,
    pub(crate) value: Vec<u8>,
    pub(crate) create_revision: Revision,
    pub(crate) mod_revision: Revision,
    pub(crate) version: u64,
}

/// SHA-256 of a record's bytes: the next record's `prev_hash`.
pub(crate) fn chain_hash(record: &[u8]) -> ChainHash {
    let mut h = [0u8; 32];
    h.copy_from_slice(digest(&SHA256, record).as_ref());
    h
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// Seals a record for `ops` (contiguous revisions, at least one).
pub(crate) fn seal_record(
    sealer: &Sealer,
    seq: u64,
    prev_hash: ChainHash,
    ops: &[JournalOp],
) -> Result<Vec<u8>, StoreError> {
    let header = RecordHeader {
        seq,
        first_revision: ops.first().map_or(0, |o| o.revision),
        last_revision: ops.last().map_or(0, |o| o.revision),
        prev_hash,
    }
    .encode(RECORD_MAGIC);
    let mut payload = Vec::with_capacity(
        ops.iter()
            .map(|o| o.key.len() + o.put.as_ref().map_or(0, |p| p.0.len()) + 41)
            .sum(),
    );
    for op in ops {
        payload.extend_from_slice(&op.revision.to_be_bytes());
        put_bytes(&mut payload, &op.key);
        match &op.put {
            Some((value, create, version)) => {
                payload.push(0);
                payload.extend_from_slice(&create.to_be_bytes());
                payload.extend_from_slice(&version.to_be_bytes());
                put_bytes(&mut payload, value);
            }
            None => payload.push(1),
        }
    }
    let mut out = header.to_vec();
    sealer.seal_into(&[b"journal", &header], &payload, &mut out)?;
    Ok(out)
}

/// A bounds-checked reader over a decrypted payload.
struct Reader<'a> {
    buf: &'a [u8],
    seq: u64,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.buf.len() < n {
            return Err(RecordError::Malformed {
                seq: self.seq,
                what: "payload ends early",
            });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(be_u64(self.take(8)?))
    }
    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }
    fn bytes(&mut self) -> Result<Vec<u8>, RecordError> {
        let len = self.take(4)?;
        let n = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        Ok(self.take(n)?.to_vec())
    }
}

fn unseal(
    sealer: &Sealer,
    seq: u64,
    context: &[&[u8]],
    sealed: &[u8],
) -> Result<Vec<u8>, RecordError> {
    sealer.open(context, sealed).map_err(|e| match e {
        OpenError::UnknownEpoch(epoch) => RecordError::UnknownEpoch { seq, epoch },
        OpenError::Truncated => RecordError::Truncated,
        OpenError::Authentication => RecordError::Unseal { seq },
    })
}

/// Reads a record's cleartext header without opening it.
pub(crate) fn peek_header(record: &[u8]) -> Result<RecordHeader, RecordError> {
    RecordHeader::decode(record, RECORD_MAGIC)
}

/// Opens a record and checks that its ops match its header.
pub(crate) fn open_record(
    sealer: &Sealer,
    record: &[u8],
) -> Result<(RecordHeader, Vec<JournalOp>), RecordError> {
    let header = RecordHeader::decode(record, RECORD_MAGIC)?;
    let seq = header.seq;
    let payload = unseal(
        sealer,
        seq,
        &[b"journal", &record[..HEADER_LEN]],
        &record[HEADER_LEN..],
    )?;
    let mut r = Reader { buf: &payload, seq };
    let mut ops = Vec::new();
    while !r.buf.is_empty() {
        let revision = r.u64()?;
        let key = r.bytes()?;
        let put = match r.u8()? {
            0 => {
                let create = r.u64()?;
                let version = r.u64()?;
                Some((r.bytes()?, create, version))
            }
            1 => None,
            _ => {
                return Err(RecordError::Malformed {
                    seq,
                    what: "unknown op kind",
                });
            }
        };
        let expected = header.first_revision + ops.len() as u64;
        if revision != expected {
            return Err(RecordError::Malformed {
                seq,
                what: "op revisions do not match the header",
            });
        }
        ops.push(JournalOp { revision, key, put });
    }
    if ops.is_empty() || ops.last().map(|o| o.revision) != Some(header.last_revision) {
        return Err(RecordError::Malformed {
            seq,
            what: "op revisions do not match the header",
        });
    }
    Ok((header, ops))
}

/// Seals a snapshot of `entries` taken at `revision`, after record `seq` with hash `chain`.
pub(crate) fn seal_snapshot(
    sealer: &Sealer,
    seq: u64,
    revision: Revision,
    chain: ChainHash,
    entries: &[SnapshotEntry],
) -> Result<Vec<u8>, StoreError> {
    let header = RecordHeader {
        seq,
        first_revision: revision,
        last_revision: revision,
        prev_hash: chain,
    }
    .encode(SNAPSHOT_MAGIC);
    let mut payload = Vec::new();
    for e in entries {
        put_bytes(&mut payload, &e.key);
        payload.extend_from_slice(&e.create_revision.to_be_bytes());
        payload.extend_from_slice(&e.mod_revision.to_be_bytes());
        payload.extend_from_slice(&e.version.to_be_bytes());
        put_bytes(&mut payload, &e.value);
    }
    let mut out = header.to_vec();
    sealer.seal_into(&[b"snapshot", &header], &payload, &mut out)?;
    Ok(out)
}

/// Opens a snapshot: `(seq, revision, chain hash, entries)`.
pub(crate) fn open_snapshot(
    sealer: &Sealer,
    snapshot: &[u8],
) -> Result<(RecordHeader, Vec<SnapshotEntry>), RecordError> {
    let header = RecordHeader::decode(snapshot, SNAPSHOT_MAGIC)?;
    let seq = header.seq;
    let payload = unseal(
        sealer,
        seq,
        &[b"snapshot", &snapshot[..HEADER_LEN]],
        &snapshot[HEADER_LEN..],
    )?;
    let mut r = Reader { buf: &payload, seq };
    let mut entries = Vec::new();
    while !r.buf.is_empty() {
        let key = r.bytes()?;
        let create_revision = r.u64()?;
        let mod_revision = r.u64()?;
        let version = r.u64()?;
        let value = r.bytes()?;
        if mod_revision > header.last_revision || create_revision > mod_revision {
            return Err(RecordError::Malformed {
                seq,
                what: "snapshot entry revision out of range",
            });
        }
        entries.push(SnapshotEntry {
            key,
            value,
            create_revision,
            mod_revision,
            version,
        });
    }
    Ok((header, entries))
}
