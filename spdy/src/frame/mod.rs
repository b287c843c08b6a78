//! SPDY/3 frames (draft-mbelshe-httpbis-spdy-00 §2.2, §2.6; SPDY/3.1 adds session flow
//! control to WINDOW_UPDATE), [`FrameEncoder`] and [`FrameDecoder`]: one direction of a session
//! each, with that direction's header compression context.
//!
//! ```text
//! control: |1| version (15) = 3 | type (16) |  flags (8) | length (24) | payload
//! data:    |0| stream id (31)               |  flags (8) | length (24) | payload
//! ```

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::headers::{Deflater, Headers, Inflater};

/// The protocol version in every control frame.
pub const VERSION: u16 = 3;
/// The largest payload a frame's 24-bit length can declare.
pub const MAX_FRAME_PAYLOAD: usize = (1 << 24) - 1;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

const FLAG_FIN: u8 = 0x01;
const FLAG_UNIDIRECTIONAL: u8 = 0x02;
const FLAG_CLEAR_SETTINGS: u8 = 0x01;

/// RST_STREAM status codes (§2.6.3).
pub mod rst {
    /// PROTOCOL_ERROR.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// INVALID_STREAM.
    pub const INVALID_STREAM: u32 = 2;
    /// REFUSED_STREAM.
    pub const REFUSED_STREAM: u32 = 3;
    /// CANCEL.
    pub const CANCEL: u32 = 5;
    /// INTERNAL_ERROR.
    pub const INTERNAL_ERROR: u32 = 6;
    /// STREAM_IN_USE.
    pub const STREAM_IN_USE: u32 = 8;
    /// STREAM_ALREADY_CLOSED.
    pub const STREAM_ALREADY_CLOSED: u32 = 9;
}

/// One SETTINGS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Flags (PERSIST_VALUE 0x1, PERSISTED 0x2).
    pub flags: u8,
    /// The 24-bit id (e.g. 7 INITIAL_WINDOW_SIZE).
    pub id: u32,
    /// The value.
    pub value: u32,
}

/// A frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// SYN_STREAM: a new stream.
    SynStream {
        /// The new stream's id.
        stream_id: u32,
        /// The stream it is associated with (server push), 0 for none.
        associated_to: u32,
        /// Priority, 0 (highest) to 7.
        priority: u8,
        /// Credential slot (unused).
        slot: u8,
        /// The sender sends nothing more on it.
        fin: bool,
        /// The receiver may send nothing on it.
        unidirectional: bool,
        /// Its headers.
        headers: Headers,
    },
    /// SYN_REPLY: the stream is accepted.
    SynReply {
        /// The stream.
        stream_id: u32,
        /// The sender sends nothing more on it.
        fin: bool,
        /// Reply headers.
        headers: Headers,
    },
    /// RST_STREAM: the stream is cancelled.
    RstStream {
        /// The stream.
        stream_id: u32,
        /// Why ([`rst`]).
        status: u32,
    },
    /// SETTINGS.
    Settings {
        /// Forget persisted settings.
        clear: bool,
        /// The entries.
        entries: Vec<Setting>,
    },
    /// PING: echoed by the receiver when the id's parity is the sender's.
    Ping {
        /// The ping id.
        id: u32,
    },
    /// GOAWAY: no new streams; the last stream the sender accepted.
    GoAway {
        /// The highest peer stream id the sender handled.
        last_good_stream_id: u32,
        /// 0 OK, 1 PROTOCOL_ERROR, 2 INTERNAL_ERROR.
        status: u32,
    },
    /// HEADERS: more headers for a stream.
    Headers {
        /// The stream.
        stream_id: u32,
        /// The sender sends nothing more on it.
        fin: bool,
        /// The headers.
        headers: Headers,
    },
    /// WINDOW_UPDATE: the receiver took `delta` more bytes (stream 0: the whole session).
    WindowUpdate {
        /// The stream, 0 for the session.
        stream_id: u32,
        /// Bytes added to the window.
        delta: u32,
    },
    /// DATA.
    Data {
        /// The stream.
        stream_id: u32,
        /// The sender sends nothing more on it.
        fin: bool,
        /// The bytes.
        data: Bytes,
    },
}

/// Encodes the frames one end sends, with that direction's compression context.
#[derive(Debug)]
pub struct FrameEncoder {
    deflater: Deflater,
}

/// Decodes the frames one end receives, with that direction's decompression context.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    inflater: Inflater,
}

fn stream_id(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff
}

fn word(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn nonzero(id: u32) -> Result<u32> {
    if id == 0 {
        Err(Error::Protocol("stream id 0"))
    } else {
        Ok(id)
    }
}

impl FrameEncoder {
    /// An encoder with a fresh compression context.
    ///
    /// # Errors
    ///
    /// [`Error::Compression`] if zlib cannot be set up.
    pub fn new() -> Result<Self> {
        Ok(FrameEncoder {
            deflater: Deflater::new()?,
        })
    }

    /// Appends `frame` to `out`.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] for a payload over [`MAX_FRAME_PAYLOAD`] or a stream id over 31
    /// bits; [`Error::Compression`] from zlib.
    pub fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<()> {
        let mut payload = Vec::new();
        let (kind, flags) = match frame {
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                if *stream_id > 0x7fff_ffff {
                    return Err(Error::Protocol("stream id over 31 bits"));
                }
                let len = length(data.len())?;
                out.extend_from_slice(&stream_id.to_be_bytes());
                out.extend_from_slice(&(u32::from(flag(*fin, FLAG_FIN)) << 24 | len).to_be_bytes());
                out.extend_from_slice(data);
                return Ok(());
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                slot,
                fin,
                unidirectional,
                headers,
            } => {
                payload.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                payload.extend_from_slice(&(associated_to & 0x7fff_ffff).to_be_bytes());
                payload.push((priority & 0x07) << 5);
                payload.push(*slot);
                payload.extend(self.deflater.compress(&headers.encode()?)?);
                (
                    SYN_STREAM,
                    flag(*fin, FLAG_FIN) | flag(*unidirectional, FLAG_UNIDIRECTIONAL),
                )
            }
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            } => {
                payload.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                payload.extend(self.deflater.compress(&headers.encode()?)?);
                (SYN_REPLY, flag(*fin, FLAG_FIN))
            }
            Frame::Headers {
                stream_id,
                fin,
                headers,
            } => {
                payload.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                payload.extend(self.deflater.compress(&headers.encode()?)?);
                (HEADERS, flag(*fin, FLAG_FIN))
            }
            Frame::RstStream { stream_id, status } => {
                payload.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                payload.extend_from_slice(&status.to_be_bytes());
                (RST_STREAM, 0)
            }
            Frame::Settings { clear, entries } => {
                let n = u32::try_from(entries.len())
                    .map_err(|_| Error::Protocol("too many settings"))?;
                payload.extend_from_slice(&n.to_be_bytes());
                for s in entries {
                    payload.extend_from_slice(
                        &(u32::from(s.flags) << 24 | (s.id & 0x00ff_ffff)).to_be_bytes(),
                    );
                    payload.extend_from_slice(&s.value.to_be_bytes());
                }
                (SETTINGS, flag(*clear, FLAG_CLEAR_SETTINGS))
            }
            Frame::Ping { id } => {
                payload.extend_from_slice(&id.to_be_bytes());
                (PING, 0)
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                payload.extend_from_slice(&(last_good_stream_id & 0x7fff_ffff).to_be_bytes());
                payload.extend_from_slice(&status.to_be_bytes());
                (GOAWAY, 0)
            }
            Frame::WindowUpdate { stream_id, delta } => {
                payload.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                payload.extend_from_slice(&(delta & 0x7fff_ffff).to_be_bytes());
                (WINDOW_UPDATE, 0)
            }
        };
        let len = length(payload.len())?;
        out.extend_from_slice(
            &(0x8000_0000 | u32::from(VERSION) << 16 | u32::from(kind)).to_be_bytes(),
        );
        out.extend_from_slice(&(u32::from(flags) << 24 | len).to_be_bytes());
        out.extend_from_slice(&payload);
        Ok(())
    }
}

impl FrameDecoder {
    /// A decoder with a fresh decompression context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next whole frame off the front of `buf`: `Ok(None)` until one is there.
    /// Control frames of unknown types are skipped, as the specification asks.
    ///
    /// # Errors
    ///
    /// [`Error::Version`] for a control frame of another SPDY version, [`Error::Protocol`] for
    /// a malformed frame, [`Error::Compression`] or [`Error::HeadersTooLarge`] for its header
    /// block. The session is unusable after an error (the compression context is lost).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>> {
        loop {
            let Some(head) = buf.get(..8) else {
                return Ok(None);
            };
            let first = word(head);
            let flags = head[4];
            let len = usize::try_from(word(&head[4..8]) & 0x00ff_ffff).unwrap_or(usize::MAX);
            if buf.len() < 8 + len {
                return Ok(None);
            }
            buf.advance(8);
            let payload = buf.split_to(len).freeze();
            if first & 0x8000_0000 == 0 {
                return Ok(Some(Frame::Data {
                    stream_id: nonzero(first & 0x7fff_ffff)?,
                    fin: flags & FLAG_FIN != 0,
                    data: payload,
                }));
            }
            let version = u16::try_from((first >> 16) & 0x7fff).unwrap_or(u16::MAX);
            if version != VERSION {
                return Err(Error::Version(version));
            }
            let kind = u16::try_from(first & 0xffff).unwrap_or(u16::MAX);
            if let Some(frame) = self.control(kind, flags, &payload)? {
                return Ok(Some(frame));
            }
        }
    }

    fn headers(&mut self, compressed: &[u8]) -> Result<Headers> {
        Headers::decode(&self.inflater.decompress(compressed)?)
    }

    fn control(&mut self, kind: u16, flags: u8, p: &[u8]) -> Result<Option<Frame>> {
        let fin = flags & FLAG_FIN != 0;
        let need = |n: usize| {
            if p.len() < n {
                Err(Error::Protocol("control frame too short"))
            } else {
                Ok(())
            }
        };
        let exactly = |n: usize| {
            if p.len() == n {
                Ok(())
            } else {
                Err(Error::Protocol("control frame of the wrong length"))
            }
        };
        let frame = match kind {
            SYN_STREAM => {
                need(10)?;
                Frame::SynStream {
                    stream_id: nonzero(stream_id(p))?,
                    associated_to: stream_id(&p[4..]),
                    priority: p[8] >> 5,
                    slot: p[9],
                    fin,
                    unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                    headers: self.headers(&p[10..])?,
                }
            }
            SYN_REPLY => {
                need(4)?;
                Frame::SynReply {
                    stream_id: nonzero(stream_id(p))?,
                    fin,
                    headers: self.headers(&p[4..])?,
                }
            }
            HEADERS => {
                need(4)?;
                Frame::Headers {
                    stream_id: nonzero(stream_id(p))?,
                    fin,
                    headers: self.headers(&p[4..])?,
                }
            }
            RST_STREAM => {
                exactly(8)?;
                Frame::RstStream {
                    stream_id: nonzero(stream_id(p))?,
                    status: word(&p[4..]),
                }
            }
            SETTINGS => {
                need(4)?;
                let n = usize::try_from(word(p)).unwrap_or(usize::MAX);
                if n.checked_mul(8).and_then(|b| b.checked_add(4)) != Some(p.len()) {
                    return Err(Error::Protocol("SETTINGS length does not match its count"));
                }
                let entries = p[4..]
                    .chunks_exact(8)
                    .map(|e| Setting {
                        flags: e[0],
                        id: word(e) & 0x00ff_ffff,
                        value: word(&e[4..]),
                    })
                    .collect();
                Frame::Settings {
                    clear: flags & FLAG_CLEAR_SETTINGS != 0,
                    entries,
                }
            }
            PING => {
                exactly(4)?;
                Frame::Ping { id: word(p) }
            }
            GOAWAY => {
                exactly(8)?;
                Frame::GoAway {
                    last_good_stream_id: stream_id(p),
                    status: word(&p[4..]),
                }
            }
            WINDOW_UPDATE => {
                exactly(8)?;
                Frame::WindowUpdate {
                    stream_id: stream_id(p),
                    delta: word(&p[4..]) & 0x7fff_ffff,
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(frame))
    }
}

fn flag(on: bool, bit: u8) -> u8 {
    if on { bit } else { 0 }
}

fn length(n: usize) -> Result<u32> {
    if n > MAX_FRAME_PAYLOAD {
        return Err(Error::Protocol("frame payload over 16 MiB"));
    }
    u32::try_from(n).map_err(|_| Error::Protocol("frame payload over 16 MiB"))
}

#[cfg(test)]
mod tests;
