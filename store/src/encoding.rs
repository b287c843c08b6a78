//! Byte layouts of the RocksDB index. All integers are big-endian so that
//! RocksDB's bytewise order is numeric order.
//!
//! - `history` CF: `escape(key) | !revision` → [`VersionRecord`]. Escaping
//!   keeps one key's versions contiguous and keeps key order; storing the
//!   inverted revision puts the newest version of a key first.
//! - `latest` CF: `key` → [`LatestRecord`] for keys that exist now.
//! - `log` CF: `revision` → `key`: what each revision changed, for watch replay.
//! - `meta` CF: cluster id, applied revision with the journal head, compaction point.

use super::Revision;
use super::error::{Result, StoreError};

/// Appends `key` escaped so that no encoded key is a prefix of another:
/// `0x00` becomes `0x00 0xFF`; the key ends with `0x00 0x01`.
pub(crate) fn escape_prefix_into(key: &[u8], out: &mut Vec<u8>) {
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
}

/// The history-CF key of `key` at `revision`.
pub(crate) fn history_key(key: &[u8], revision: Revision) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 10);
    escape_prefix_into(key, &mut out);
    out.extend_from_slice(&[0x00, 0x01]);
    out.extend_from_slice(&(u64::MAX - revision).to_be_bytes());
    out
}

/// Splits a history-CF key into the escaped key part (with terminator) and the revision.
pub(crate) fn split_history_key(raw: &[u8]) -> Result<(&[u8], Revision)> {
    if raw.len() < 10 || raw[raw.len() - 10..raw.len() - 8] != [0x00, 0x01] {
        return Err(StoreError::Corrupt("history key without terminator".into()));
    }
    let (head, rev) = raw.split_at(raw.len() - 8);
    let inv = u64::from_be_bytes(
        rev.try_into()
            .map_err(|_| StoreError::Corrupt("history key".into()))?,
    );
    Ok((head, u64::MAX - inv))
}

/// Reverses [`escape_prefix_into`] on an escaped key with its terminator.
pub(crate) fn unescape(escaped: &[u8]) -> Result<Vec<u8>> {
    let body = escaped
        .strip_suffix(&[0x00, 0x01])
        .ok_or_else(|| StoreError::Corrupt("escaped key without terminator".into()))?;
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        out.push(body[i]);
        if body[i] == 0 {
            if body.get(i + 1) != Some(&0xFF) {
                return Err(StoreError::Corrupt("bad escape in key".into()));
            }
            i += 1;
        }
        i += 1;
    }
    Ok(out)
}

/// The log-CF key of a revision.
pub(crate) fn log_key(revision: Revision) -> [u8; 8] {
    revision.to_be_bytes()
}

/// One version of a key in the history CF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VersionRecord {
    /// Revision at which the key was (last) created.
    pub(crate) create_revision: Revision,
    /// Number of writes since creation (1 on create); 0 for a tombstone.
    pub(crate) version: u64,
    /// Sealed value; `None` marks a deletion.
    pub(crate) sealed: Option<Vec<u8>>,
}

const KIND_PUT: u8 = 0;
const KIND_TOMBSTONE: u8 = 1;

impl VersionRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let sealed_len = self.sealed.as_ref().map_or(0, Vec::len);
        let mut out = Vec::with_capacity(17 + sealed_len);
        out.push(if self.sealed.is_some() {
            KIND_PUT
        } else {
            KIND_TOMBSTONE
        });
        out.extend_from_slice(&self.create_revision.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        if let Some(sealed) = &self.sealed {
            out.extend_from_slice(sealed);
        }
        out
    }

    pub(crate) fn decode(raw: &[u8]) -> Result<Self> {
        if raw.len() < 17 {
            return Err(StoreError::Corrupt(format!(
                "version record of {} bytes",
                raw.len()
            )));
        }
        let create_revision = be_u64(&raw[1..9]);
        let version = be_u64(&raw[9..17]);
        let sealed = match raw[0] {
            KIND_PUT => Some(raw[17..].to_vec()),
            KIND_TOMBSTONE => None,
            other => return Err(StoreError::Corrupt(format!("version record kind {other}"))),
        };
        Ok(VersionRecord {
            create_revision,
            version,
            sealed,
        })
    }
}

/// The current version of a live key in the latest CF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LatestRecord {
    pub(crate) create_revision: Revision,
    pub(crate) mod_revision: Revision,
    pub(crate) version: u64,
    pub(crate) sealed: Vec<u8>,
}

impl LatestRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.sealed.len());
        out.extend_from_slice(&self.create_revision.to_be_bytes());
        out.extend_from_slice(&self.mod_revision.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.sealed);
        out
    }

    pub(crate) fn decode(raw: &[u8]) -> Result<Self> {
        if raw.len() < 24 {
            return Err(StoreError::Corrupt(format!(
                "latest record of {} bytes",
                raw.len()
            )));
        }
        Ok(LatestRecord {
            create_revision: be_u64(&raw[0..8]),
            mod_revision: be_u64(&raw[8..16]),
            version: be_u64(&raw[16..24]),
            sealed: raw[24..].to_vec(),
        })
    }
}

/// Reads a big-endian u64 from exactly 8 bytes (callers check lengths).
pub(crate) fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// The associated-data context of a stored value: binds key and revision
/// metadata so a value moved to another key or revision fails to open.
pub(crate) fn value_context<'a>(key: &'a [u8], meta: &'a [u8; 24]) -> [&'a [u8]; 3] {
    [b"value", key, meta]
}

/// Packs (mod, create, version) for [`value_context`].
pub(crate) fn value_meta(
    mod_revision: Revision,
    create_revision: Revision,
    version: u64,
) -> [u8; 24] {
    let mut m = [0u8; 24];
    m[..8].copy_from_slice(&mod_revision.to_be_bytes());
    m[8..16].copy_from_slice(&create_revision.to_be_bytes());
    m[16..].copy_from_slice(&version.to_be_bytes());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_keys_keep_order_and_never_prefix_each_other() {
        let keys: Vec<&[u8]> = vec![
            b"",
            b"\x00",
            b"\x00\x00",
            b"\x00\x01",
            b"a",
            b"a\x00",
            b"a\x00b",
            b"ab",
            b"b",
        ];
        let enc: Vec<Vec<u8>> = keys.iter().map(|k| history_key(k, 5)).collect();
        for w in enc.windows(2) {
            assert!(w[0] < w[1], "{:?} !< {:?}", w[0], w[1]);
        }
        for (k, e) in keys.iter().zip(&enc) {
            let (esc, rev) = split_history_key(e).unwrap();
            assert_eq!(rev, 5);
            assert_eq!(unescape(esc).unwrap(), *k);
        }
    }

    #[test]
    fn newer_revisions_sort_first_within_a_key() {
        assert!(history_key(b"k", 9) < history_key(b"k", 3));
        assert!(history_key(b"k", 3) < history_key(b"k\x00", 9));
    }

    #[test]
    fn records_round_trip_and_reject_garbage() {
        let v = VersionRecord {
            create_revision: 3,
            version: 2,
            sealed: Some(vec![1, 2, 3]),
        };
        assert_eq!(VersionRecord::decode(&v.encode()).unwrap(), v);
        let t = VersionRecord {
            create_revision: 3,
            version: 0,
            sealed: None,
        };
        assert_eq!(VersionRecord::decode(&t.encode()).unwrap(), t);
        assert!(VersionRecord::decode(&[0; 5]).is_err());
        let mut bad = v.encode();
        bad[0] = 9;
        assert!(VersionRecord::decode(&bad).is_err());
        let l = LatestRecord {
            create_revision: 1,
            mod_revision: 4,
            version: 2,
            sealed: vec![9; 40],
        };
        assert_eq!(LatestRecord::decode(&l.encode()).unwrap(), l);
        assert!(LatestRecord::decode(&[0; 10]).is_err());
        assert!(split_history_key(b"short").is_err());
        assert!(unescape(b"a\x00b\x00\x01").is_err());
    }
}
