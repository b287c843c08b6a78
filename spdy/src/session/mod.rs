//! A SPDY/3.1 session over any byte stream: [`start`] gives the [`Session`] handle
//! (open streams, go away), the [`Incoming`] streams the peer opens, and the [`Driver`] future
//! that reads and writes the connection (run it on a task you own).
//!
//! Behaviour, as kubectl's peer (`moby/spdystream`) needs it:
//!
//! - every stream the peer opens is answered with an empty SYN_REPLY before it is handed to
//!   [`Incoming::accept`] (the peer drops data on streams it has no reply for, and waits for
//!   the reply before it writes), so anything written on it follows the reply;
//! - PINGs with the peer's parity are echoed;
//! - received data is acknowledged with WINDOW_UPDATEs (stream and session, SPDY/3.1) once half
//!   the default window is consumed, so a peer that honours flow control keeps sending;
//! - what we send is **not** held to the peer's window: spdystream never sends WINDOW_UPDATE,
//!   so a sender that waited for one would stall after 64 KiB. Back-pressure comes from the
//!   connection itself;
//! - a stream's end is a FIN (empty DATA frame); a RST_STREAM from the peer ends our reading
//!   with [`Error::Reset`] and makes further writes fail;
//! - when the connection ends, every open stream's reader gets [`Error::Closed`].

mod driver;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

pub use driver::Driver;

use crate::error::{Error, Result};
use crate::frame::{Frame, FrameEncoder};
use crate::headers::Headers;

/// The largest DATA payload [`StreamWriter::write`] puts in one frame.
pub const MAX_DATA_FRAME: usize = 64 * 1024;

/// Which end of the session this is: clients open odd stream ids, servers even ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The end that sent the HTTP upgrade (kubectl).
    Client,
    /// The end that answered it (the API server).
    Server,
}

impl Role {
    fn first_id(self) -> u32 {
        match self {
            Role::Client => 1,
            Role::Server => 2,
        }
    }

    /// Whether `id` is one the peer of this role may open.
    fn peer_may_open(self, id: u32) -> bool {
        match self {
            Role::Client => id.is_multiple_of(2),
            Role::Server => !id.is_multiple_of(2),
        }
    }
}

/// What a stream's reader receives.
#[derive(Debug)]
enum Inbound {
    Data(Bytes),
    Fin,
    Reset(u32),
}

/// What the writer sends.
#[derive(Debug)]
enum Command {
    Frame(Frame),
    /// Flush, then shut the write side down.
    Shutdown,
}

#[derive(Debug)]
struct Slot {
    inbound: Option<mpsc::Sender<Inbound>>,
    reset: Arc<AtomicBool>,
}

#[derive(Debug)]
struct Shared {
    role: Role,
    streams: Mutex<HashMap<u32, Slot>>,
    /// The next id this end opens; locked while the SYN_STREAM is queued so ids go out in order.
    next_id: tokio::sync::Mutex<u32>,
}

impl Shared {
    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Slot>> {
        match self.streams.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// How many DATA payloads a stream buffers before the session stops reading.
const STREAM_BUFFER: usize = 16;

fn new_stream(
    shared: &Shared,
    tx: &mpsc::Sender<Command>,
    id: u32,
    headers: Headers,
    write_closed: bool,
) -> Stream {
    let (in_tx, in_rx) = mpsc::channel(STREAM_BUFFER);
    let reset = Arc::new(AtomicBool::new(false));
    shared.streams().insert(
        id,
        Slot {
            inbound: Some(in_tx),
            reset: reset.clone(),
        },
    );
    Stream {
        id,
        headers,
        reader: StreamReader {
            id,
            rx: in_rx,
            done: false,
        },
        writer: StreamWriter {
            id,
            tx: tx.clone(),
            reset,
            finished: write_closed,
        },
    }
}

/// Starts a session on `io` (after the HTTP upgrade) as `role`.
///
/// # Errors
///
/// [`Error::Compression`] if zlib cannot be set up.
pub fn start<Io>(io: Io, role: Role) -> Result<(Session, Incoming, Driver)>
where
    Io: AsyncRead + AsyncWrite + Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    let (accept_tx, accept_rx) = mpsc::channel(16);
    let shared = Arc::new(Shared {
        role,
        streams: Mutex::new(HashMap::new()),
        next_id: tokio::sync::Mutex::new(role.first_id()),
    });
    let driver = Driver::new(
        io,
        FrameEncoder::new()?,
        shared.clone(),
        tx.clone(),
        rx,
        accept_tx,
    );
    Ok((Session { shared, tx }, Incoming { rx: accept_rx }, driver))
}

/// A handle on the session: open streams, go away. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Session {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Command>,
}

impl Session {
    /// Opens a stream with `headers` (`fin`: nothing will be written on it).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the session is gone; [`Error::Protocol`] when the ids run out.
    pub async fn open_stream(&self, headers: Headers, fin: bool) -> Result<Stream> {
        let mut next = self.shared.next_id.lock().await;
        let id = *next;
        if id > 0x7fff_ffff {
            return Err(Error::Protocol("stream ids exhausted"));
        }
        let stream = new_stream(&self.shared, &self.tx, id, headers.clone(), fin);
        let syn = Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            fin,
            unidirectional: false,
            headers,
        };
        if self.tx.send(Command::Frame(syn)).await.is_err() {
            self.shared.streams().remove(&id);
            return Err(Error::Closed);
        }
        *next = id + 2;
        Ok(stream)
    }

    /// Sends GOAWAY (status OK), then closes the write side once everything queued before it is
    /// written. The peer is expected to close the connection, which ends the [`Driver`].
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the session is already gone.
    pub async fn go_away(&self) -> Result<()> {
        self.tx
            .send(Command::Frame(Frame::GoAway {
                last_good_stream_id: 0,
                status: 0,
            }))
            .await
            .map_err(|_| Error::Closed)?;
        self.tx
            .send(Command::Shutdown)
            .await
            .map_err(|_| Error::Closed)
    }
}

/// The streams the peer opens.
#[derive(Debug)]
pub struct Incoming {
    rx: mpsc::Receiver<Stream>,
}

impl Incoming {
    /// The next stream the peer opened (already replied to); `None` once the session is gone.
    pub async fn accept(&mut self) -> Option<Stream> {
        self.rx.recv().await
    }
}

/// One stream: its headers, a reader and a writer.
#[derive(Debug)]
pub struct Stream {
    id: u32,
    headers: Headers,
    reader: StreamReader,
    writer: StreamWriter,
}

impl Stream {
    /// The stream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The headers it was opened with.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The two halves.
    pub fn split(self) -> (StreamReader, StreamWriter) {
        (self.reader, self.writer)
    }
}

/// The receiving half of a stream.
#[derive(Debug)]
pub struct StreamReader {
    id: u32,
    rx: mpsc::Receiver<Inbound>,
    done: bool,
}

impl StreamReader {
    /// The next bytes; `Ok(None)` once the peer finished the stream.
    ///
    /// # Errors
    ///
    /// [`Error::Reset`] if the peer reset the stream, [`Error::Closed`] if the connection ended
    /// before the stream did.
    pub async fn read(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        match self.rx.recv().await {
            Some(Inbound::Data(b)) => Ok(Some(b)),
            Some(Inbound::Fin) => {
                self.done = true;
                Ok(None)
            }
            Some(Inbound::Reset(status)) => {
                self.done = true;
                Err(Error::Reset {
                    stream_id: self.id,
                    status,
                })
            }
            None => {
                self.done = true;
                Err(Error::Closed)
            }
        }
    }

    /// Reads to the end, at most `limit` bytes (the rest is dropped).
    ///
    /// # Errors
    ///
    /// As [`StreamReader::read`].
    pub async fn read_to_end(&mut self, limit: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(b) = self.read().await? {
            let room = limit.saturating_sub(out.len());
            out.extend_from_slice(b.get(..room.min(b.len())).unwrap_or_default());
        }
        Ok(out)
    }
}

/// The sending half of a stream. Dropping it unfinished finishes it (best effort).
#[derive(Debug)]
pub struct StreamWriter {
    id: u32,
    tx: mpsc::Sender<Command>,
    reset: Arc<AtomicBool>,
    finished: bool,
}

impl StreamWriter {
    /// The stream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    fn check(&self) -> Result<()> {
        if self.reset.load(Ordering::Acquire) {
            return Err(Error::Reset {
                stream_id: self.id,
                status: 0,
            });
        }
        if self.finished {
            return Err(Error::Protocol("write after the stream's FIN"));
        }
        Ok(())
    }

    async fn send(&self, frame: Frame) -> Result<()> {
        self.tx
            .send(Command::Frame(frame))
            .await
            .map_err(|_| Error::Closed)
    }

    /// Sends `data` (in frames of at most [`MAX_DATA_FRAME`]).
    ///
    /// # Errors
    ///
    /// [`Error::Reset`] after the peer reset the stream, [`Error::Closed`] once the session is
    /// gone, [`Error::Protocol`] after [`StreamWriter::finish`].
    pub async fn write(&mut self, mut data: Bytes) -> Result<()> {
        self.check()?;
        while !data.is_empty() {
            let chunk = data.split_to(data.len().min(MAX_DATA_FRAME));
            self.send(Frame::Data {
                stream_id: self.id,
                fin: false,
                data: chunk,
            })
            .await?;
        }
        Ok(())
    }

    /// Finishes the stream (an empty DATA frame with FIN). Finishing twice does nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the session is gone.
    pub async fn finish(&mut self) -> Result<()> {
        if self.finished || self.reset.load(Ordering::Acquire) {
            return Ok(());
        }
        self.finished = true;
        self.send(Frame::Data {
            stream_id: self.id,
            fin: true,
            data: Bytes::new(),
        })
        .await
    }

    /// Resets the stream with `status` ([`crate::frame::rst`]).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the session is gone.
    pub async fn reset(&mut self, status: u32) -> Result<()> {
        self.finished = true;
        self.reset.store(true, Ordering::Release);
        self.send(Frame::RstStream {
            stream_id: self.id,
            status,
        })
        .await
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        if !self.finished && !self.reset.load(Ordering::Acquire) {
            let _ = self.tx.try_send(Command::Frame(Frame::Data {
                stream_id: self.id,
                fin: true,
                data: Bytes::new(),
            }));
        }
    }
}

#[cfg(test)]
mod tests;
