//! The frames of an exec or attach session on the tunnel: both bodies of the HTTP/2
//! request are a sequence of `channel u8 | length u32 BE | payload`, with the channel
//! numbers of Kubernetes' `channel.k8s.io` protocols:
//!
//! | channel | direction | payload |
//! |---|---|---|
//! | [`STDIN`] 0 | enclave → worker | bytes for the process's stdin |
//! | [`STDOUT`] 1, [`STDERR`] 2 | worker → enclave | the process's output |
//! | [`END`] 3 | worker → enclave, last | a [`StreamEnd`]: exit code or failure |
//! | [`RESIZE`] 4 | enclave → worker | a [`TerminalSize`] |
//! | [`CLOSE`] 255 | enclave → worker | one byte: the channel the client closed (stdin) |

use std::fmt;

/// Bytes for the process's stdin.
pub const STDIN: u8 = 0;
/// The process's stdout (its terminal, with a TTY).
pub const STDOUT: u8 = 1;
/// The process's stderr.
pub const STDERR: u8 = 2;
/// How the session ended: the last frame the worker sends.
pub const END: u8 = 3;
/// A new terminal size.
pub const RESIZE: u8 = 4;
/// The client closed a channel (v5's close signal); the payload is the channel.
pub const CLOSE: u8 = 255;

/// The largest payload of one frame.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// Length of a frame's header.
pub const HEADER_LEN: usize = 5;

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelFrame {
    /// The channel.
    pub channel: u8,
    /// The payload.
    pub payload: Vec<u8>,
}

/// A frame whose declared length is over [`MAX_PAYLOAD`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTooLarge {
    /// The declared length.
    pub len: usize,
}

impl fmt::Display for FrameTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "channel frame of {} bytes (at most {MAX_PAYLOAD})",
            self.len
        )
    }
}

impl std::error::Error for FrameTooLarge {}

/// The header of a frame of `len` payload bytes on `channel`.
///
/// # Errors
///
/// [`FrameTooLarge`] over [`MAX_PAYLOAD`].
pub fn header(channel: u8, len: usize) -> Result<[u8; HEADER_LEN], FrameTooLarge> {
    if len > MAX_PAYLOAD {
        return Err(FrameTooLarge { len });
    }
    let n = u32::try_from(len).map_err(|_| FrameTooLarge { len })?;
    let b = n.to_be_bytes();
    Ok([channel, b[0], b[1], b[2], b[3]])
}

/// A whole frame.
///
/// # Errors
///
/// [`FrameTooLarge`] over [`MAX_PAYLOAD`].
pub fn encode(channel: u8, payload: &[u8]) -> Result<Vec<u8>, FrameTooLarge> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&header(channel, payload.len())?);
    out.extend_from_slice(payload);
    Ok(out)
}

/// The first frame of `buf` and the bytes it took, or `None` if `buf` holds only part of one.
///
/// # Errors
///
/// [`FrameTooLarge`] when the header declares more than [`MAX_PAYLOAD`].
pub fn decode(buf: &[u8]) -> Result<Option<(ChannelFrame, usize)>, FrameTooLarge> {
    let Some(&[channel, a, b, c, d]) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let len = usize::try_from(u32::from_be_bytes([a, b, c, d])).unwrap_or(usize::MAX);
    if len > MAX_PAYLOAD {
        return Err(FrameTooLarge { len });
    }
    let end = HEADER_LEN + len;
    let Some(payload) = buf.get(HEADER_LEN..end) else {
        return Ok(None);
    };
    Ok(Some((
        ChannelFrame {
            channel,
            payload: payload.to_vec(),
        },
        end,
    )))
}

/// Frames out of a byte stream that arrives in arbitrary pieces.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// A decoder with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, if one is buffered.
    ///
    /// # Errors
    ///
    /// [`FrameTooLarge`]; the stream is unusable afterwards.
    pub fn next_frame(&mut self) -> Result<Option<ChannelFrame>, FrameTooLarge> {
        match decode(&self.buf)? {
            Some((frame, used)) => {
                self.buf.drain(..used);
                Ok(Some(frame))
            }
            None => Ok(None),
        }
    }

    /// Whether a partial frame is buffered (the stream ended mid-frame if it ends now).
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }
}

/// A terminal size in characters, as [`RESIZE`] carries it (`width u16 BE | height u16 BE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TerminalSize {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

impl TerminalSize {
    /// The payload.
    pub fn encode(self) -> [u8; 4] {
        let [w0, w1] = self.width.to_be_bytes();
        let [h0, h1] = self.height.to_be_bytes();
        [w0, w1, h0, h1]
    }

    /// Parses a payload; `None` unless it is exactly 4 bytes.
    pub fn decode(payload: &[u8]) -> Option<Self> {
        let &[w0, w1, h0, h1] = payload else {
            return None;
        };
        Some(TerminalSize {
            width: u16::from_be_bytes([w0, w1]),
            height: u16::from_be_bytes([h0, h1]),
        })
    }
}

/// How a session ended, as [`END`] carries it (`exit CODE` or `error MESSAGE`, UTF-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// The process exited with this code (attach: the session ended normally, code 0).
    Exited(i32),
    /// The session failed; the message says why.
    Failed(String),
}

impl StreamEnd {
    /// The payload.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            StreamEnd::Exited(code) => format!("exit {code}").into_bytes(),
            StreamEnd::Failed(message) => format!("error {message}").into_bytes(),
        }
    }

    /// Parses a payload; `None` if it is neither form.
    pub fn decode(payload: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(payload).ok()?;
        if let Some(code) = text.strip_prefix("exit ") {
            return code.parse().ok().map(StreamEnd::Exited);
        }
        text.strip_prefix("error ")
            .map(|m| StreamEnd::Failed(m.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_arrive_in_pieces() {
        let mut bytes = encode(STDOUT, b"hello").unwrap();
        bytes.extend(encode(END, &StreamEnd::Exited(3).encode()).unwrap());
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for b in &bytes {
            d.push(std::slice::from_ref(b));
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert!(!d.has_partial());
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].payload, b"hello");
        assert_eq!(
            StreamEnd::decode(&got[1].payload),
            Some(StreamEnd::Exited(3))
        );
        assert!(decode(&[1, 0xff, 0, 0, 0]).is_err());
        assert!(encode(1, &vec![0; MAX_PAYLOAD + 1]).is_err());
    }

    #[test]
    fn small_messages_round_trip() {
        let size = TerminalSize {
            width: 101,
            height: 33,
        };
        assert_eq!(TerminalSize::decode(&size.encode()), Some(size));
        assert_eq!(TerminalSize::decode(&[1, 2, 3]), None);
        for end in [
            StreamEnd::Exited(-1),
            StreamEnd::Failed("no such container".into()),
        ] {
            assert_eq!(StreamEnd::decode(&end.encode()), Some(end));
        }
        assert_eq!(StreamEnd::decode(b"exit x"), None);
        assert_eq!(StreamEnd::decode(b"what"), None);
    }
}
