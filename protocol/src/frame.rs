//! Frames: `u32 BE length | kind u8 | body`, where `length` counts the kind byte and the body.
//!
//! The journal protocol and the key broker protocol both frame every message this way. The
//! functions here are pure (no I/O) except [`read_frame`] and [`write_frame`], which run them
//! over a blocking [`std::io::Read`]/[`std::io::Write`]. An async reader uses the same pieces:
//! it reads [`LEN_BYTES`] bytes, checks them with [`body_len`], then reads the kind byte and
//! that many body bytes.

use std::fmt;
use std::io::{self, Read, Write};

/// Bytes of the length prefix.
pub const LEN_BYTES: usize = 4;
/// Bytes in front of the body: the length prefix and the kind byte.
pub const HEADER_BYTES: usize = LEN_BYTES + 1;

/// One message: its kind byte and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What the message is (each protocol defines its kinds).
    pub kind: u8,
    /// The message's bytes.
    pub body: Vec<u8>,
}

/// Why a frame could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum FrameError {
    /// The stream ended cleanly between two frames.
    Closed,
    /// The length prefix is 0: a frame carries at least its kind byte.
    Empty,
    /// The length prefix exceeds the reader's limit; nothing after the prefix was read.
    Oversize {
        /// The declared length (kind + body).
        len: u32,
        /// The reader's limit.
        limit: u32,
    },
    /// The stream failed, or ended in the middle of a frame.
    Io(io::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("the connection closed between frames"),
            Self::Empty => {
                f.write_str("empty frame (length 0; a frame carries at least its kind byte)")
            }
            Self::Oversize { len, limit } => {
                write!(f, "frame of {len} bytes exceeds the limit of {limit} bytes")
            }
            Self::Io(e) => write!(f, "reading a frame: {e}"),
        }
    }
}

impl std::error::Error for FrameError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// A body too long for a frame: its length plus the kind byte does not fit the `u32` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong {
    /// The body's length.
    pub body_len: usize,
}

impl fmt::Display for TooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a body of {} bytes does not fit a frame (u32::MAX bytes at most)",
            self.body_len
        )
    }
}

impl std::error::Error for TooLong {}

impl From<TooLong> for io::Error {
    fn from(e: TooLong) -> Self {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

/// The bytes in front of a body of `body_len` bytes: the length prefix and `kind`.
///
/// # Errors
///
/// [`TooLong`] if `body_len + 1` does not fit a `u32`.
pub fn header(kind: u8, body_len: usize) -> Result<[u8; HEADER_BYTES], TooLong> {
    let len = body_len
        .checked_add(1)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(TooLong { body_len })?;
    let [a, b, c, d] = len.to_be_bytes();
    Ok([a, b, c, d, kind])
}

/// One whole frame.
///
/// # Errors
///
/// [`TooLong`] if `body` does not fit a frame.
pub fn encode(kind: u8, body: &[u8]) -> Result<Vec<u8>, TooLong> {
    let head = header(kind, body.len())?;
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(&head);
    out.extend_from_slice(body);
    Ok(out)
}

/// Checks a length prefix against `limit` (which counts the kind byte and the body) and returns
/// how many body bytes follow the kind byte.
///
/// # Errors
///
/// [`FrameError::Empty`] for a zero length, [`FrameError::Oversize`] for one over `limit`.
pub fn body_len(prefix: [u8; LEN_BYTES], limit: u32) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix);
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > limit {
        return Err(FrameError::Oversize { len, limit });
    }
    usize::try_from(len - 1).map_err(|_| FrameError::Oversize { len, limit })
}

/// Decodes the frame at the start of `buf`: `Ok(None)` if `buf` does not hold all of it yet,
/// otherwise the frame and how many bytes of `buf` it took.
///
/// # Errors
///
/// [`FrameError::Empty`] or [`FrameError::Oversize`] as soon as the length prefix is complete
/// and wrong (never [`FrameError::Closed`] or [`FrameError::Io`]).
pub fn decode(buf: &[u8], limit: u32) -> Result<Option<(Frame, usize)>, FrameError> {
    let Some((prefix, rest)) = buf.split_first_chunk::<LEN_BYTES>() else {
        return Ok(None);
    };
    let body_len = body_len(*prefix, limit)?;
    let Some((&kind, rest)) = rest.split_first() else {
        return Ok(None);
    };
    let Some(body) = rest.get(..body_len) else {
        return Ok(None);
    };
    let frame = Frame {
        kind,
        body: body.to_vec(),
    };
    Ok(Some((frame, HEADER_BYTES + body_len)))
}

/// Reads one frame of at most `limit` bytes (kind + body) from a blocking reader.
///
/// # Errors
///
/// [`FrameError::Closed`] if the stream ends before the first byte, [`FrameError::Io`] if it
/// fails or ends later, [`FrameError::Empty`] or [`FrameError::Oversize`] for a wrong length
/// (the body is then not read).
pub fn read_frame<R: Read + ?Sized>(r: &mut R, limit: u32) -> Result<Frame, FrameError> {
    let mut prefix = [0u8; LEN_BYTES];
    let first = loop {
        match r.read(&mut prefix) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => break other.map_err(FrameError::Io)?,
        }
    };
    if first == 0 {
        return Err(FrameError::Closed);
    }
    r.read_exact(prefix.get_mut(first..).unwrap_or_default())
        .map_err(FrameError::Io)?;
    let body_len = body_len(prefix, limit)?;
    let mut kind = [0u8; 1];
    r.read_exact(&mut kind).map_err(FrameError::Io)?;
    let mut body = vec![0u8; body_len];
    r.read_exact(&mut body).map_err(FrameError::Io)?;
    Ok(Frame {
        kind: kind[0],
        body,
    })
}

/// Writes one frame to a blocking writer and flushes it.
///
/// # Errors
///
/// The writer's error; [`io::ErrorKind::InvalidInput`] if `body` does not fit a frame.
pub fn write_frame<W: Write + ?Sized>(w: &mut W, kind: u8, body: &[u8]) -> io::Result<()> {
    w.write_all(&header(kind, body.len())?)?;
    w.write_all(body)?;
    w.flush()
}

/// A body that is exactly one big-endian `u64`.
#[must_use]
pub fn body_u64(body: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(body).ok().map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_length_kind_body() {
        let bytes = encode(0x02, b"abc").unwrap();
        assert_eq!(bytes, [0, 0, 0, 4, 0x02, b'a', b'b', b'c']);
        let want = Frame {
            kind: 0x02,
            body: b"abc".to_vec(),
        };
        assert_eq!(read_frame(&mut bytes.as_slice(), 16).unwrap(), want);
        assert_eq!(decode(&bytes, 16).unwrap(), Some((want, 8)));
    }

    #[test]
    fn bad_lengths_are_refused_before_the_body_is_read() {
        let bytes = encode(0x02, b"abc").unwrap();
        assert!(matches!(
            read_frame(&mut bytes.as_slice(), 3),
            Err(FrameError::Oversize { len: 4, limit: 3 })
        ));
        assert!(matches!(
            decode(&bytes[..4], 3),
            Err(FrameError::Oversize { len: 4, limit: 3 })
        ));
        assert!(matches!(
            read_frame(&mut [0u8, 0, 0, 0].as_slice(), 16),
            Err(FrameError::Empty)
        ));
    }

    #[test]
    fn a_clean_end_is_closed_and_a_torn_frame_is_io() {
        assert!(matches!(
            read_frame(&mut [].as_slice(), 16),
            Err(FrameError::Closed)
        ));
        for torn in [&[0u8, 0][..], &[0, 0, 0, 9, 0x80, 1]] {
            match read_frame(&mut &torn[..], 16) {
                Err(FrameError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
                other => panic!("{torn:?}: {other:?}"),
            }
            assert!(matches!(decode(torn, 16), Ok(None)), "{torn:?}");
        }
    }

    #[test]
    fn u64_bodies_are_exactly_eight_bytes() {
        assert_eq!(body_u64(&7u64.to_be_bytes()), Some(7));
        assert_eq!(body_u64(&[0; 7]), None);
        assert_eq!(body_u64(&[0; 9]), None);
    }
}
