//! The task side of a session: one loop reads frames and routes them to streams, one writes
//! what the handles queue.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{Command, Inbound, Shared, Stream, new_stream};
use crate::error::Result;
use crate::frame::{Frame, FrameDecoder, FrameEncoder, rst};
use crate::headers::Headers;

/// How much received data is acknowledged at once (half the default 64 KiB window).
const WINDOW_ACK: u32 = 32 * 1024;

/// How long the driver keeps reading after it went away, for the peer to close.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Bytes the writer batches before it writes.
const WRITE_BATCH: usize = 256 * 1024;

/// Reads and writes the connection until it ends; see [`start`](super::start).
/// Resolves with the error that ended the session, or `Ok` for a clean end (the peer closed,
/// or we went away and then it closed).
#[must_use = "the session does nothing unless its driver runs"]
pub struct Driver(Pin<Box<dyn Future<Output = Result<()>> + Send>>);

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").finish_non_exhaustive()
    }
}

impl Future for Driver {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl Driver {
    pub(super) fn new<Io>(
        io: Io,
        encoder: FrameEncoder,
        shared: Arc<Shared>,
        tx: mpsc::Sender<Command>,
        rx: mpsc::Receiver<Command>,
        accept: mpsc::Sender<Stream>,
    ) -> Self
    where
        Io: AsyncRead + AsyncWrite + Send + 'static,
    {
        Driver(Box::pin(run(io, encoder, shared, tx, rx, accept)))
    }
}

async fn run<Io>(
    io: Io,
    encoder: FrameEncoder,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Command>,
    rx: mpsc::Receiver<Command>,
    accept: mpsc::Sender<Stream>,
) -> Result<()>
where
    Io: AsyncRead + AsyncWrite + Send + 'static,
{
    let (r, w) = tokio::io::split(io);
    let reader = Reader {
        shared: shared.clone(),
        tx,
        accept: Some(accept),
        last_peer_id: 0,
        session_unacked: 0,
        unacked: HashMap::new(),
    };
    let reading = reader.run(r);
    let writing = write_loop(w, encoder, rx);
    tokio::pin!(reading, writing);
    let result = tokio::select! {
        r = &mut reading => r,
        w = &mut writing => match w {
            Ok(()) => tokio::time::timeout(CLOSE_GRACE, &mut reading).await.unwrap_or(Ok(())),
            Err(e) => Err(e),
        },
    };
    // Readers of streams still open learn that the connection is gone.
    shared.streams().clear();
    result
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut w: W,
    mut encoder: FrameEncoder,
    mut rx: mpsc::Receiver<Command>,
) -> Result<()> {
    let mut out = Vec::with_capacity(64 * 1024);
    while let Some(cmd) = rx.recv().await {
        let mut shutdown = false;
        match cmd {
            Command::Frame(f) => encoder.encode(&f, &mut out)?,
            Command::Shutdown => shutdown = true,
        }
        while !shutdown && out.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(Command::Frame(f)) => encoder.encode(&f, &mut out)?,
                Ok(Command::Shutdown) => shutdown = true,
                Err(_) => break,
            }
        }
        w.write_all(&out).await?;
        w.flush().await?;
        out.clear();
        if shutdown {
            w.shutdown().await?;
            return Ok(());
        }
    }
    Ok(())
}

struct Reader {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Command>,
    accept: Option<mpsc::Sender<Stream>>,
    last_peer_id: u32,
    session_unacked: u32,
    unacked: HashMap<u32, u32>,
}

impl Reader {
    async fn run<R: AsyncRead + Unpin>(mut self, mut r: R) -> Result<()> {
        let mut decoder = FrameDecoder::new();
        let mut buf = BytesMut::with_capacity(64 * 1024);
        loop {
            while let Some(frame) = decoder.decode(&mut buf)? {
                self.handle(frame).await;
            }
            if buf.capacity() - buf.len() < 16 * 1024 {
                buf.reserve(64 * 1024);
            }
            if r.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        }
    }

    async fn send(&self, frame: Frame) {
        // The writer is gone only when the session is ending; nothing to do then.
        let _ = self.tx.send(Command::Frame(frame)).await;
    }

    /// Hands `msg` to stream `id`'s reader; after a FIN or a reset the stream is forgotten.
    async fn deliver(&mut self, id: u32, msg: Inbound) {
        let last = matches!(msg, Inbound::Fin | Inbound::Reset(_));
        let sender = {
            let mut streams = self.shared.streams();
            let sender = streams.get(&id).and_then(|s| s.inbound.clone());
            if last {
                streams.remove(&id);
                self.unacked.remove(&id);
            }
            sender
        };
        if let Some(sender) = sender
            && sender.send(msg).await.is_err()
            && !last
            && let Some(slot) = self.shared.streams().get_mut(&id)
        {
            // The reader was dropped: what still arrives is discarded.
            slot.inbound = None;
        }
    }

    async fn handle(&mut self, frame: Frame) {
        match frame {
            Frame::SynStream {
                stream_id,
                fin,
                unidirectional,
                headers,
                ..
            } => self.open(stream_id, fin, unidirectional, headers).await,
            Frame::SynReply { stream_id, fin, .. } | Frame::Headers { stream_id, fin, .. } => {
                if fin {
                    self.deliver(stream_id, Inbound::Fin).await;
                }
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                let n = u32::try_from(data.len()).unwrap_or(u32::MAX);
                if !data.is_empty() {
                    self.deliver(stream_id, Inbound::Data(data)).await;
                }
                if fin {
                    self.deliver(stream_id, Inbound::Fin).await;
                } else {
                    self.acknowledge(stream_id, n).await;
                }
                self.acknowledge(0, n).await;
            }
            Frame::RstStream { stream_id, status } => {
                let reset = self
                    .shared
                    .streams()
                    .get(&stream_id)
                    .map(|s| s.reset.clone());
                if let Some(flag) = reset {
                    flag.store(true, Ordering::Release);
                }
                self.deliver(stream_id, Inbound::Reset(status)).await;
            }
            Frame::Ping { id } => {
                // Ids of the peer's pings have the peer's parity; ours come back as answers.
                if self.shared.role.peer_may_open(id) {
                    self.send(Frame::Ping { id }).await;
                }
            }
            // The peer closes the connection after a GOAWAY; flow control is not enforced
            // on what we send (see the module documentation).
            Frame::GoAway { .. } | Frame::Settings { .. } | Frame::WindowUpdate { .. } => {}
        }
    }

    async fn open(&mut self, id: u32, fin: bool, unidirectional: bool, headers: Headers) {
        if !self.shared.role.peer_may_open(id) || id <= self.last_peer_id {
            tracing::debug!(
                stream = id,
                "refusing a stream id out of order or of our parity"
            );
            self.send(Frame::RstStream {
                stream_id: id,
                status: rst::PROTOCOL_ERROR,
            })
            .await;
            return;
        }
        self.last_peer_id = id;
        let Some(accept) = self.accept.clone() else {
            return;
        };
        let stream = new_stream(&self.shared, &self.tx, id, headers, unidirectional);
        self.send(Frame::SynReply {
            stream_id: id,
            fin: false,
            headers: Headers::new(),
        })
        .await;
        if fin {
            self.deliver(id, Inbound::Fin).await;
        }
        if accept.send(stream).await.is_err() {
            self.accept = None;
            self.shared.streams().remove(&id);
            self.send(Frame::RstStream {
                stream_id: id,
                status: rst::REFUSED_STREAM,
            })
            .await;
        }
    }

    /// Counts `n` received bytes on `id` (0: the session) and sends a WINDOW_UPDATE once half
    /// a window's worth was taken.
    async fn acknowledge(&mut self, id: u32, n: u32) {
        let counter = if id == 0 {
            &mut self.session_unacked
        } else if self.shared.streams().contains_key(&id) {
            self.unacked.entry(id).or_default()
        } else {
            return;
        };
        *counter = counter.saturating_add(n);
        if *counter >= WINDOW_ACK {
            let delta = std::mem::take(counter);
            self.send(Frame::WindowUpdate {
                stream_id: id,
                delta,
            })
            .await;
        }
    }
}
