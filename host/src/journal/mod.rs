//! Sealed journal storage: the enclave's store keeps its source of truth here, on the host's disk, in bytes the
//! host cannot read.
//!
//! The enclave seals every committed batch (AES-256-GCM) and hash-chains it to the previous one before sending it;
//! [`JournalService`] only makes those bytes durable and hands them back. It may drop, reorder or alter them — the
//! enclave detects each when it restores — but it cannot read or forge them. The service reads exactly one thing
//! out of a record: the cleartext sequence number in its header, to prune records a snapshot covers and to
//! discard an unacknowledged tail (see `storage`).
//!
//! # Protocol
//!
//! Over vsock (production) or a Unix socket (dev), the journal protocol of `protocol::journal` (requests, bodies
//! and responses are listed there), with `length` (kind + body) between 1 and the frame limit
//! ([`JournalConfig::max_frame_bytes`]). `APPEND` is answered `OK` only after write + fsync; `SNAPSHOT_COMMIT`
//! only after tmp fsync, rename, directory fsync and pruning; `DISCARD_FROM` removes trailing records with seq ≥
//! its `seq` and answers how many it dropped.
//!
//! A request that is malformed (unknown kind, wrong body, out of order) gets `ERROR` and the connection stays
//! usable; a frame over the limit or with length 0 gets `ERROR` and the connection is closed, since its body was
//! not read. A connection that drops in the middle of a frame changes nothing: a record is written only once
//! its whole frame has arrived, and a torn write left by a crash is cut when the directory is opened again.
//!
//! # One writer: sessions and fencing
//!
//! Each enclave process picks a random session id and sends it in every `HELLO`. Only one session owns the
//! journal at a time: a `HELLO` from a new session makes it the owner, closes the previous owner's connection
//! (between requests, never in the middle of one) and **retires** the previous session for as long as the service
//! runs. A retired session's `HELLO` is refused and its connection closed, so an enclave that was replaced (a
//! restart whose predecessor is still alive, or a second enclave by mistake) can neither append after the new
//! owner's records nor `DISCARD_FROM` them: its writes fail instead of forking or truncating the journal. The
//! same session may reconnect at will (its newer connection replaces its older one), so a restarted enclave never
//! waits for its predecessor's dead connection. Connections that have not said `HELLO` own nothing; at most
//! [`MAX_PENDING_CONNECTIONS`] may wait, each for at most [`HELLO_TIMEOUT`].

mod storage;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::frame::FrameError;
use protocol::journal::{self as wire, SessionId};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::accept::accept_until_shutdown;
use crate::error::{Error, Result, error_chain};
use crate::frame_io;
use crate::transport::{Listener, PeerAddr, Stream};
use storage::JournalDir;

/// Default frame limit: 64 MiB, enough for the store's largest record (a 16 MiB group plus one 3 MiB value, keys
/// and framing).
pub const DEFAULT_MAX_FRAME_BYTES: u32 = 64 * 1024 * 1024;
/// Default snapshot size limit: 16 GiB.
pub const DEFAULT_MAX_SNAPSHOT_BYTES: u64 = 16 * 1024 * 1024 * 1024;
/// How long a new connection may take to say `HELLO` before it is closed.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections beyond the owner's that may be open at once (waiting to say `HELLO`, or just replaced); more are
/// closed on accept.
pub const MAX_PENDING_CONNECTIONS: usize = 16;

/// The session that owns the journal, through which connection.
#[derive(Debug)]
struct Owner {
    session: SessionId,
    connection: u64,
    token: CancellationToken,
}

/// Which session owns the journal, and which were replaced.
#[derive(Debug, Default)]
struct Sessions {
    owner: Option<Owner>,
    /// Sessions that were replaced by a newer one; refused from then on.
    retired: HashSet<SessionId>,
}

impl Sessions {
    /// Makes `id` the owner through `connection` (whose token is `token`), closing the owner's previous
    /// connection; returns whether there was one. Refuses a retired session.
    fn claim(
        &mut self,
        id: SessionId,
        connection: u64,
        token: &CancellationToken,
    ) -> Result<bool, Refusal> {
        if self.retired.contains(&id) {
            return Err(Refusal {
                message: format!(
                    "fenced: journal session {} was replaced by a newer enclave session and may no longer use \
                     this journal; restart the enclave to restore from the journal",
                    hex::encode(id)
                ),
                close: true,
            });
        }
        let replaced = self.owner.take().map(|previous| {
            if previous.session != id {
                tracing::warn!(
                    retired = %hex::encode(previous.session),
                    owner = %hex::encode(id),
                    "a new enclave session owns the journal; the previous one is fenced off"
                );
                self.retired.insert(previous.session);
            } else {
                tracing::info!("the enclave session reconnected; its older connection is closed");
            }
            previous.token.cancel();
        });
        self.owner = Some(Owner {
            session: id,
            connection,
            token: token.clone(),
        });
        Ok(replaced.is_some())
    }

    /// Whether `connection` is the owner's current connection.
    fn is_owner(&self, connection: u64) -> bool {
        self.owner
            .as_ref()
            .is_some_and(|o| o.connection == connection)
    }
}

/// Where and how to keep the journal. Build with [`JournalConfig::new`].
#[derive(Debug, Clone)]
pub struct JournalConfig {
    dir: PathBuf,
    max_frame_bytes: u32,
    max_snapshot_bytes: u64,
}

impl JournalConfig {
    /// The journal in `dir` with default limits.
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_snapshot_bytes: DEFAULT_MAX_SNAPSHOT_BYTES,
        }
    }

    /// Largest accepted frame (kind byte + body). Default [`DEFAULT_MAX_FRAME_BYTES`]; at least 64 bytes
    /// (`protocol::journal::MIN_FRAME_LIMIT`).
    #[must_use]
    pub fn max_frame_bytes(mut self, n: u32) -> Self {
        self.max_frame_bytes = n;
        self
    }

    /// Largest accepted snapshot. Default [`DEFAULT_MAX_SNAPSHOT_BYTES`].
    #[must_use]
    pub fn max_snapshot_bytes(mut self, n: u64) -> Self {
        self.max_snapshot_bytes = n;
        self
    }

    /// The journal directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The host's journal service. See the module documentation for the protocol.
#[derive(Debug)]
pub struct JournalService {
    storage: Arc<Mutex<JournalDir>>,
    sessions: Arc<Mutex<Sessions>>,
    max_frame_bytes: u32,
}

impl JournalService {
    /// Validates `config`, then opens its directory: takes its lock, cuts a torn final record (an append that was
    /// never acknowledged) and removes temporary files. Blocking file I/O; call it before serving or from a
    /// blocking context.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a frame limit under 64 bytes, [`Error::JournalLocked`] if another service
    /// holds the directory, [`Error::JournalIo`] if it cannot be created or read.
    pub fn open(config: &JournalConfig) -> Result<Self> {
        if config.max_frame_bytes < wire::MIN_FRAME_LIMIT {
            return Err(Error::InvalidConfig {
                field: "max_frame_bytes",
                reason: "must be at least 64",
            });
        }
        let storage = JournalDir::open(&config.dir, config.max_snapshot_bytes)?;
        Ok(Self {
            storage: Arc::new(Mutex::new(storage)),
            sessions: Arc::new(Mutex::new(Sessions::default())),
            max_frame_bytes: config.max_frame_bytes,
        })
    }

    /// Accepts enclave connections on `listener` and serves each until it is replaced (see "One writer" in the
    /// module documentation), it closes, or `shutdown` fires. A request being handled when shutdown fires is
    /// finished first.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), host::Error> {
    /// use host::journal::{JournalConfig, JournalService};
    /// let service = JournalService::open(&JournalConfig::new("/var/lib/daas/journal"))?;
    /// let listener = host::Listener::bind(&"vsock:any:7000".parse()?).await?;
    /// service.serve(listener, tokio_util::sync::CancellationToken::new()).await;
    /// # Ok(()) }
    /// ```
    pub async fn serve(self, listener: Listener, shutdown: CancellationToken) {
        let mut next_id = 0u64;
        let admit = |stream, peer, open| {
            // The owner's connection plus the pending ones.
            if open > MAX_PENDING_CONNECTIONS {
                tracing::warn!(?peer, "too many journal connections; closing the new one");
                return None;
            }
            next_id += 1;
            let conn = Connection {
                id: next_id,
                stream,
                storage: Arc::clone(&self.storage),
                sessions: Arc::clone(&self.sessions),
                limit: self.max_frame_bytes,
                token: shutdown.child_token(),
                hello: false,
            };
            Some(conn.run(peer))
        };
        let on_error =
            |e: &std::io::Error| tracing::warn!(error = %e, "journal service: accept failed");
        let mut connections = accept_until_shutdown(&listener, &shutdown, admit, on_error).await;
        while connections.join_next().await.is_some() {}
    }
}

/// One enclave connection.
struct Connection {
    /// Unique among this service's connections.
    id: u64,
    stream: Stream,
    storage: Arc<Mutex<JournalDir>>,
    sessions: Arc<Mutex<Sessions>>,
    limit: u32,
    /// Cancelled on shutdown, or when this connection is replaced.
    token: CancellationToken,
    /// Whether this connection's session owns the journal.
    hello: bool,
}

/// Writes `frames` and flushes.
async fn send(stream: &mut Stream, frames: &[(u8, Vec<u8>)]) -> std::io::Result<()> {
    for (kind, body) in frames {
        frame_io::write_frame(stream, *kind, body).await?;
    }
    stream.flush().await
}

/// What a request handler wants sent back.
enum Reply {
    /// One frame.
    One(u8, Vec<u8>),
    /// Several frames (a streamed read).
    Many(Vec<(u8, Vec<u8>)>),
}

/// A refused request: the message sent in the `ERROR` frame, and whether the connection is closed after it.
struct Refusal {
    message: String,
    close: bool,
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        refuse(error_chain(&e))
    }
}

fn refuse(reason: impl Into<String>) -> Refusal {
    Refusal {
        message: reason.into(),
        close: false,
    }
}

impl Connection {
    async fn run(mut self, peer: PeerAddr) {
        tracing::info!(?peer, "enclave connected to the journal service");
        let hello_deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
        loop {
            let frame = tokio::select! {
                () = self.token.cancelled() => break,
                () = tokio::time::sleep_until(hello_deadline), if !self.hello => {
                    tracing::warn!(?peer, "no HELLO within {HELLO_TIMEOUT:?}; closing the connection");
                    break;
                }
                f = frame_io::read_frame(&mut self.stream, self.limit) => f,
            };
            let (kind, body) = match frame {
                Ok(f) => f,
                Err(FrameError::Closed) => break,
                Err(FrameError::Io(e)) => {
                    tracing::warn!(error = %e, "journal connection failed mid-frame; the partial request is dropped");
                    break;
                }
                Err(FrameError::Oversize { len, limit }) => {
                    let msg = format!(
                        "frame of {len} bytes exceeds the journal service's limit of {limit} bytes (--max-frame-bytes)"
                    );
                    tracing::warn!("{msg}; closing the connection");
                    let _ = send(&mut self.stream, &[(wire::ERROR, msg.into_bytes())]).await;
                    break;
                }
                Err(FrameError::Empty) => {
                    let msg = "malformed frame: length 0 (a frame carries at least its kind byte)";
                    tracing::warn!("{msg}; closing the connection");
                    let _ = send(&mut self.stream, &[(wire::ERROR, msg.into())]).await;
                    break;
                }
                Err(other) => {
                    let msg = format!("malformed frame: {other}");
                    tracing::warn!("{msg}; closing the connection");
                    let _ = send(&mut self.stream, &[(wire::ERROR, msg.into_bytes())]).await;
                    break;
                }
            };
            let mut close = false;
            let reply = match self.handle(kind, body).await {
                Ok(Reply::One(k, b)) => vec![(k, b)],
                Ok(Reply::Many(frames)) => frames,
                Err(refusal) => {
                    tracing::warn!(kind, error = %refusal.message, "journal request refused");
                    close = refusal.close;
                    vec![(wire::ERROR, refusal.message.into_bytes())]
                }
            };
            let sent = tokio::select! {
                () = self.token.cancelled() => break,
                r = send(&mut self.stream, &reply) => r,
            };
            if let Err(e) = sent {
                tracing::warn!(error = %e, "journal connection failed while replying");
                break;
            }
            if close {
                break;
            }
        }
        // A snapshot upload this connection started can never be committed now. (A replaced connection is
        // refused here: its successor dropped the upload when it took over.)
        if self.hello {
            let _ = self.abort_snapshot().await;
        }
        tracing::info!(?peer, "enclave connection to the journal service closed");
    }

    /// Runs `op` on the storage in a blocking thread, if this connection is the owner's current one. Ownership
    /// is checked under the storage lock, so once another connection has claimed the journal nothing this one
    /// started can land after the new owner's first read.
    async fn storage<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut JournalDir) -> Result<T> + Send + 'static,
    ) -> Result<T, Refusal> {
        let storage = Arc::clone(&self.storage);
        let sessions = Arc::clone(&self.sessions);
        let id = self.id;
        tokio::task::spawn_blocking(move || {
            let mut s = storage
                .lock()
                .map_err(|_| refuse("journal storage lock poisoned by a panic"))?;
            if !sessions.lock().is_ok_and(|sessions| sessions.is_owner(id)) {
                return Err(Refusal {
                    message: "this connection was replaced by a newer one; the request was not carried out"
                        .into(),
                    close: true,
                });
            }
            op(&mut s).map_err(Refusal::from)
        })
        .await
        .map_err(|e| refuse(format!("journal storage task failed: {e}")))?
    }

    /// Drops a snapshot upload in progress, if any.
    async fn abort_snapshot(&self) -> Result<(), Refusal> {
        self.storage(|s| {
            s.abort_snapshot();
            Ok(())
        })
        .await
    }

    async fn handle(&mut self, kind: u8, body: Vec<u8>) -> Result<Reply, Refusal> {
        if kind == wire::HELLO {
            return self.hello(&body).await;
        }
        if !self.hello {
            return Err(refuse(format!(
                "request kind {kind:#04x} before HELLO; send HELLO first"
            )));
        }
        let ok = || Reply::One(wire::OK, Vec::new());
        match kind {
            wire::APPEND => {
                if body.is_empty() {
                    return Err(refuse("APPEND of an empty record"));
                }
                self.storage(move |s| s.append(&body)).await?;
                Ok(ok())
            }
            wire::READ_RECORDS => {
                no_body(kind, &body)?;
                let records = self.storage(|s| s.read_records()).await?;
                let count = records.len() as u64;
                let mut frames: Vec<_> = records.into_iter().map(|r| (wire::RECORD, r)).collect();
                frames.push((wire::END, count.to_be_bytes().to_vec()));
                Ok(Reply::Many(frames))
            }
            wire::READ_SNAPSHOT => {
                no_body(kind, &body)?;
                let Some(snapshot) = self.storage(|s| s.read_snapshot()).await? else {
                    return Ok(Reply::One(wire::NONE, Vec::new()));
                };
                let chunk = (self.limit as usize - 1).min(1024 * 1024);
                let mut frames: Vec<_> = snapshot
                    .chunks(chunk)
                    .map(|c| (wire::CHUNK, c.to_vec()))
                    .collect();
                frames.push((wire::END, (snapshot.len() as u64).to_be_bytes().to_vec()));
                Ok(Reply::Many(frames))
            }
            wire::SNAPSHOT_BEGIN => {
                no_body(kind, &body)?;
                self.storage(|s| s.begin_snapshot()).await?;
                Ok(ok())
            }
            wire::SNAPSHOT_CHUNK => {
                self.storage(move |s| s.snapshot_chunk(&body)).await?;
                Ok(ok())
            }
            wire::SNAPSHOT_COMMIT => {
                let (total, covers) = wire::parse_snapshot_commit(&body).ok_or_else(|| {
                    refuse("SNAPSHOT_COMMIT body must be u64 total length | u64 covers_through_seq")
                })?;
                self.storage(move |s| s.commit_snapshot(total, covers))
                    .await?;
                Ok(ok())
            }
            wire::DISCARD_FROM => {
                let seq = wire::body_u64(&body)
                    .ok_or_else(|| refuse("DISCARD_FROM body must be a u64 sequence number"))?;
                let dropped = self.storage(move |s| s.discard_from(seq)).await?;
                Ok(Reply::One(wire::OK, dropped.to_be_bytes().to_vec()))
            }
            other => Err(refuse(format!("unknown request kind {other:#04x}"))),
        }
    }

    async fn hello(&mut self, body: &[u8]) -> Result<Reply, Refusal> {
        let id = wire::parse_hello(body).map_err(|e| refuse(e.to_string()))?;
        if self.hello {
            return Err(refuse("HELLO was already said on this connection"));
        }
        let replaced = self
            .sessions
            .lock()
            .map_err(|_| refuse("journal session table poisoned by a panic"))?
            .claim(id, self.id, &self.token)?;
        self.hello = true;
        if replaced {
            // The replaced connection's unfinished snapshot upload can never be committed.
            self.abort_snapshot().await?;
        }
        Ok(Reply::One(wire::OK, wire::hello_ok(self.limit)))
    }
}

fn no_body(kind: u8, body: &[u8]) -> Result<(), Refusal> {
    if body.is_empty() {
        Ok(())
    } else {
        Err(refuse(format!(
            "request kind {kind:#04x} takes no body, got {} bytes",
            body.len()
        )))
    }
}
