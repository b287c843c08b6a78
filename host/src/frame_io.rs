//! Frames (`protocol::frame`: `u32 BE length | kind u8 | body`) over tokio streams. The bytes are read and
//! written here; their layout and limits are checked by the `protocol` crate, the one definition the enclave
//! uses too.

use protocol::frame::{self, FrameError, LEN_BYTES};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Reads one frame of at most `limit` bytes (kind + body); returns `(kind, body)`.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    limit: u32,
) -> Result<(u8, Vec<u8>), FrameError> {
    let mut prefix = [0u8; LEN_BYTES];
    let first = r.read(&mut prefix).await.map_err(FrameError::Io)?;
    if first == 0 {
        return Err(FrameError::Closed);
    }
    r.read_exact(prefix.get_mut(first..).unwrap_or_default())
        .await
        .map_err(FrameError::Io)?;
    let mut body = vec![0u8; frame::body_len(prefix, limit)?];
    let kind = r.read_u8().await.map_err(FrameError::Io)?;
    r.read_exact(&mut body).await.map_err(FrameError::Io)?;
    Ok((kind, body))
}

/// Writes one frame (`kind | body`). The caller flushes.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: u8,
    body: &[u8],
) -> std::io::Result<()> {
    w.write_all(&frame::header(kind, body.len())?).await?;
    w.write_all(body).await
}
