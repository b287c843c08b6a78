//! The journal protocol's framing, enclave side (blocking). The host defines the same constants on its side
//! (`host/src/journal/wire.rs`, documented in `host::journal`); neither crate depends on the other, and the
//! enclave's integration tests run [`super::RemoteJournal`] against the real `daas-host journal` process.
//!
//! Every message is one frame: `u32 BE length | kind u8 | body`; `length` counts `kind` and `body`.

use std::io::{self, Read, Write};

/// Protocol magic sent in `HELLO`.
pub(crate) const MAGIC: &[u8; 4] = b"KDJP";
/// Protocol version this enclave speaks.
pub(crate) const VERSION: u16 = 2;

// Requests (enclave -> host).
pub(crate) const HELLO: u8 = 0x01;
pub(crate) const APPEND: u8 = 0x02;
pub(crate) const READ_RECORDS: u8 = 0x03;
pub(crate) const READ_SNAPSHOT: u8 = 0x04;
pub(crate) const SNAPSHOT_BEGIN: u8 = 0x05;
pub(crate) const SNAPSHOT_CHUNK: u8 = 0x06;
pub(crate) const SNAPSHOT_COMMIT: u8 = 0x07;
pub(crate) const DISCARD_FROM: u8 = 0x08;

// Responses (host -> enclave).
pub(crate) const OK: u8 = 0x80;
pub(crate) const RECORD: u8 = 0x81;
pub(crate) const CHUNK: u8 = 0x82;
pub(crate) const END: u8 = 0x83;
pub(crate) const NONE: u8 = 0x84;
pub(crate) const ERROR: u8 = 0xFF;

/// Why a response frame could not be read.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The connection failed or closed (possibly mid-frame).
    Io(io::Error),
    /// The frame is longer than the enclave accepts, or empty.
    Bad(String),
}

/// Writes one frame.
pub(crate) fn write_frame<W: Write>(w: &mut W, kind: u8, body: &[u8]) -> io::Result<()> {
    let len = body
        .len()
        .checked_add(1)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame longer than u32::MAX"))?;
    let mut head = [0u8; 5];
    head[..4].copy_from_slice(&len.to_be_bytes());
    head[4] = kind;
    w.write_all(&head)?;
    w.write_all(body)?;
    w.flush()
}

/// Reads one frame of at most `limit` bytes (kind + body); returns `(kind, body)`.
pub(crate) fn read_frame<R: Read>(r: &mut R, limit: u32) -> Result<(u8, Vec<u8>), FrameError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).map_err(FrameError::Io)?;
    let len = u32::from_be_bytes(len);
    if len == 0 {
        return Err(FrameError::Bad("empty frame".into()));
    }
    if len > limit {
        return Err(FrameError::Bad(format!(
            "frame of {len} bytes exceeds the enclave's limit of {limit} bytes"
        )));
    }
    let mut kind = [0u8; 1];
    r.read_exact(&mut kind).map_err(FrameError::Io)?;
    let mut body = vec![0u8; len as usize - 1];
    r.read_exact(&mut body).map_err(FrameError::Io)?;
    Ok((kind[0], body))
}

/// A body that is exactly one big-endian u64.
pub(crate) fn body_u64(body: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(body).ok().map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_lengths_are_refused() {
        let mut buf = Vec::new();
        write_frame(&mut buf, APPEND, b"abc").unwrap();
        assert_eq!(buf, [0, 0, 0, 4, APPEND, b'a', b'b', b'c']);
        assert_eq!(
            read_frame(&mut buf.as_slice(), 16).unwrap(),
            (APPEND, b"abc".to_vec())
        );
        assert!(matches!(
            read_frame(&mut buf.as_slice(), 3),
            Err(FrameError::Bad(_))
        ));
        assert!(matches!(
            read_frame(&mut [0u8, 0, 0, 0].as_slice(), 16),
            Err(FrameError::Bad(_))
        ));
        // Torn: the length promises more than arrives.
        assert!(matches!(
            read_frame(&mut [0u8, 0, 0, 9, OK, 1].as_slice(), 16),
            Err(FrameError::Io(_))
        ));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bytes: Vec<u8> = x.to_le_bytes().iter().map(|b| b % 12).collect();
            let _ = read_frame(&mut bytes.as_slice(), 8);
        }
    }
}
