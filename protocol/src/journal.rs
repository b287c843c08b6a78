//! The journal protocol: the enclave's store (`store::journal::RemoteJournal`) keeps its sealed
//! records on the host's journal service (`daas-host journal`, `host::journal`).
//!
//! Every message is one [`frame`](crate::frame); `length` (kind + body) is between 1 and the
//! receiver's frame limit. Requests and their responses:
//!
//! | request | body | response |
//! |---|---|---|
//! | `0x01 HELLO` (first) | `"KDJP" \| u16 version \| 16-byte session id` ([`hello`]) | `OK u16 version \| u32 frame limit` ([`hello_ok`]) |
//! | `0x02 APPEND` | one sealed record | `OK`, sent only after write + fsync |
//! | `0x03 READ_RECORDS` | — | `RECORD record`… then `END u64 count` |
//! | `0x04 READ_SNAPSHOT` | — | `NONE`, or `CHUNK bytes`… then `END u64 total length` |
//! | `0x05 SNAPSHOT_BEGIN` | — | `OK` |
//! | `0x06 SNAPSHOT_CHUNK` | bytes | `OK` |
//! | `0x07 SNAPSHOT_COMMIT` | `u64 total length \| u64 covers_through_seq` ([`snapshot_commit`]) | `OK` |
//! | `0x08 DISCARD_FROM` | `u64 seq` | `OK u64 dropped` |
//!
//! Response kinds: `0x80 OK`, `0x81 RECORD`, `0x82 CHUNK`, `0x83 END`, `0x84 NONE`,
//! `0xFF ERROR utf-8 message`. What the service does with each request (durability, sessions
//! and fencing) is documented in `host::journal`.
//!
//! Records and snapshots are sealed by the enclave and opaque to the service, except for the
//! start of a record's cleartext header, `"KDJ1" | u64 BE seq` ([`RECORD_MAGIC`],
//! [`record_seq`]): the service reads the sequence number to prune what a snapshot covers and
//! to discard an unacknowledged tail. The rest of the format belongs to the enclave's store.

use std::fmt;

pub use crate::frame::body_u64;

/// Protocol magic at the start of a `HELLO` body.
pub const MAGIC: &[u8; 4] = b"KDJP";
/// The protocol version spoken by both sides.
pub const VERSION: u16 = 2;
/// The smallest frame limit a service may announce (and be configured with).
pub const MIN_FRAME_LIMIT: u32 = 64;

/// Request: open the session (must come first).
pub const HELLO: u8 = 0x01;
/// Request: append one sealed record.
pub const APPEND: u8 = 0x02;
/// Request: every record after the current snapshot.
pub const READ_RECORDS: u8 = 0x03;
/// Request: the current snapshot.
pub const READ_SNAPSHOT: u8 = 0x04;
/// Request: start a snapshot upload.
pub const SNAPSHOT_BEGIN: u8 = 0x05;
/// Request: one chunk of the snapshot being uploaded.
pub const SNAPSHOT_CHUNK: u8 = 0x06;
/// Request: make the uploaded snapshot current and prune the records it covers.
pub const SNAPSHOT_COMMIT: u8 = 0x07;
/// Request: drop trailing records from a sequence number on.
pub const DISCARD_FROM: u8 = 0x08;

/// Response: done (a body only where the table says so).
pub const OK: u8 = 0x80;
/// Response: one record of a `READ_RECORDS`.
pub const RECORD: u8 = 0x81;
/// Response: one chunk of a `READ_SNAPSHOT`.
pub const CHUNK: u8 = 0x82;
/// Response: the end of a streamed read, with its count or length.
pub const END: u8 = 0x83;
/// Response: there is no snapshot.
pub const NONE: u8 = 0x84;
/// Response: refused; the body is a UTF-8 message.
pub const ERROR: u8 = 0xFF;

/// The magic that starts every sealed journal record.
pub const RECORD_MAGIC: &[u8; 4] = b"KDJ1";

/// The sequence number in a record's cleartext header, if the record has one.
#[must_use]
pub fn record_seq(record: &[u8]) -> Option<u64> {
    let (magic, rest) = record.split_first_chunk::<4>()?;
    let (seq, _) = rest.split_first_chunk::<8>()?;
    (magic == RECORD_MAGIC).then(|| u64::from_be_bytes(*seq))
}

/// An enclave process's random journal session id.
pub type SessionId = [u8; 16];

/// The `HELLO` body for `session`.
#[must_use]
pub fn hello(session: &SessionId) -> Vec<u8> {
    let mut body = Vec::with_capacity(MAGIC.len() + 2 + session.len());
    body.extend_from_slice(MAGIC);
    body.extend_from_slice(&VERSION.to_be_bytes());
    body.extend_from_slice(session);
    body
}

/// Why a `HELLO` body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HelloError {
    /// The magic is right, the version is not [`VERSION`].
    UnsupportedVersion(u16),
    /// Not `"KDJP" | u16 version | 16-byte session id`.
    Malformed,
}

impl fmt::Display for HelloError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedVersion(v) => write!(
                f,
                "protocol version {v} is not supported (this service speaks {VERSION})"
            ),
            Self::Malformed => {
                f.write_str("HELLO body must be \"KDJP\", a u16 version and a 16-byte session id")
            }
        }
    }
}

impl std::error::Error for HelloError {}

/// The session id in a `HELLO` body.
///
/// # Errors
///
/// [`HelloError::UnsupportedVersion`] for another version of this protocol,
/// [`HelloError::Malformed`] for anything else that is not a `HELLO` body.
pub fn parse_hello(body: &[u8]) -> Result<SessionId, HelloError> {
    let (magic, rest) = body.split_first_chunk::<4>().ok_or(HelloError::Malformed)?;
    let (version, session) = rest.split_first_chunk::<2>().ok_or(HelloError::Malformed)?;
    if magic != MAGIC {
        return Err(HelloError::Malformed);
    }
    match u16::from_be_bytes(*version) {
        VERSION => SessionId::try_from(session).map_err(|_| HelloError::Malformed),
        other => Err(HelloError::UnsupportedVersion(other)),
    }
}

/// The body of the `OK` that answers `HELLO`: this version and the service's frame limit.
#[must_use]
pub fn hello_ok(frame_limit: u32) -> Vec<u8> {
    let mut body = VERSION.to_be_bytes().to_vec();
    body.extend_from_slice(&frame_limit.to_be_bytes());
    body
}

/// `(version, frame limit)` from the `OK` that answers `HELLO`, if the body holds them.
#[must_use]
pub fn parse_hello_ok(body: &[u8]) -> Option<(u16, u32)> {
    let (version, rest) = body.split_first_chunk::<2>()?;
    let (limit, _) = rest.split_first_chunk::<4>()?;
    Some((u16::from_be_bytes(*version), u32::from_be_bytes(*limit)))
}

/// The `SNAPSHOT_COMMIT` body.
#[must_use]
pub fn snapshot_commit(total_len: u64, covers_through_seq: u64) -> [u8; 16] {
    let mut body = [0u8; 16];
    let (total, covers) = body.split_at_mut(8);
    total.copy_from_slice(&total_len.to_be_bytes());
    covers.copy_from_slice(&covers_through_seq.to_be_bytes());
    body
}

/// `(total length, covers_through_seq)` from a `SNAPSHOT_COMMIT` body of exactly 16 bytes.
#[must_use]
pub fn parse_snapshot_commit(body: &[u8]) -> Option<(u64, u64)> {
    let (total, covers) = body.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*total), body_u64(covers)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips_and_names_a_wrong_version() {
        let session = [0xA1; 16];
        let body = hello(&session);
        assert_eq!(&body[..6], b"KDJP\x00\x02");
        assert_eq!(parse_hello(&body), Ok(session));
        assert_eq!(
            parse_hello(b"KDJP\x00\x09"),
            Err(HelloError::UnsupportedVersion(9))
        );
        for bad in [
            &b"nope"[..],
            b"KDJP\x00\x02",
            b"KDJQ\x00\x02aaaaaaaaaaaaaaaa",
        ] {
            assert_eq!(parse_hello(bad), Err(HelloError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn a_records_sequence_number_is_read_from_its_cleartext_header() {
        let mut record = RECORD_MAGIC.to_vec();
        record.extend_from_slice(&7u64.to_be_bytes());
        record.extend_from_slice(b"sealed");
        assert_eq!(record_seq(&record), Some(7));
        assert_eq!(record_seq(b"KDJ1\0\0"), None);
        assert_eq!(record_seq(b"XXXX\0\0\0\0\0\0\0\x07"), None);
        assert_eq!(record_seq(b""), None);
    }

    #[test]
    fn hello_ok_and_snapshot_commit_round_trip() {
        assert_eq!(parse_hello_ok(&hello_ok(1024)), Some((VERSION, 1024)));
        assert_eq!(parse_hello_ok(&[0, 2, 0]), None);
        assert_eq!(
            parse_snapshot_commit(&snapshot_commit(10, 3)),
            Some((10, 3))
        );
        assert_eq!(parse_snapshot_commit(&[0; 15]), None);
        assert_eq!(parse_snapshot_commit(&[0; 17]), None);
    }
}
