//! The journal protocol's framing, host side. The enclave defines the same few constants on its side
//! (`enclave/src/store/journal/wire.rs`); the two are tested against each other through the real binaries.
//!
//! Every message is one frame: `u32 BE length | kind u8 | body`, where `length` counts `kind` and `body` and
//! must be between 1 and the service's frame limit.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Protocol magic sent in `HELLO`.
pub(crate) const MAGIC: &[u8; 4] = b"KDJP";
/// Protocol version spoken by this service.
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

/// Why a frame could not be read.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The peer closed the connection between frames.
    Closed,
    /// The declared length exceeds the limit; the body was not read.
    Oversize { len: u32, limit: u32 },
    /// A zero length (no kind byte).
    Empty,
    /// The connection failed or closed in the middle of a frame.
    Io(std::io::Error),
}

/// Reads one frame; returns `(kind, body)`.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    limit: u32,
) -> Result<(u8, Vec<u8>), FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        let n = r
            .read(len.get_mut(got..).unwrap_or_default())
            .await
            .map_err(FrameError::Io)?;
        if n == 0 {
            return Err(if got == 0 {
                FrameError::Closed
            } else {
                FrameError::Io(std::io::ErrorKind::UnexpectedEof.into())
            });
        }
        got += n;
    }
    let len = u32::from_be_bytes(len);
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > limit {
        return Err(FrameError::Oversize { len, limit });
    }
    let mut kind = [0u8; 1];
    r.read_exact(&mut kind).await.map_err(FrameError::Io)?;
    let mut body = vec![0u8; len as usize - 1];
    r.read_exact(&mut body).await.map_err(FrameError::Io)?;
    Ok((kind[0], body))
}

/// Writes one frame (`kind | body`). The caller flushes.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: u8,
    body: &[u8],
) -> std::io::Result<()> {
    let len = u32::try_from(body.len() + 1).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "frame longer than u32::MAX",
        )
    })?;
    let mut head = [0u8; 5];
    head[..4].copy_from_slice(&len.to_be_bytes());
    head[4] = kind;
    w.write_all(&head).await?;
    w.write_all(body).await
}

/// A big-endian u64 body, exactly 8 bytes.
pub(crate) fn body_u64(body: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(body).ok().map(u64::from_be_bytes)
}
