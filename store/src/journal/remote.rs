//! [`RemoteJournal`]: the journal kept by the host's journal service (`daas-host journal`), reached over vsock in
//! enclave mode or a Unix socket in dev mode and tests.
//!
//! Every record and snapshot is already sealed when it gets here; the service stores opaque bytes. The protocol
//! (`protocol::journal`) is a blocking request/response exchange of length-prefixed frames because the
//! [`Journal`] trait is synchronous: the store's commit thread calls it.
//!
//! Failure handling:
//!
//! - **Reads** (`read_records`, `read_snapshot`) are idempotent: on a dropped connection they reconnect and try
//!   once more.
//! - **Appends** are acknowledged by the service only after write + fsync. An append whose acknowledgement never
//!   arrives is an error (the store refuses the group), and its outcome is unknown: the service may or may not
//!   have kept the record. Before the next write, the journal reconnects and asks the service to discard any
//!   trailing records from that sequence number on (`DISCARD_FROM`), so the journal is again exactly as it was
//!   before the failed append, as [`Journal::append`] requires. Until that succeeds, every write fails.
//! - **One writer**: every `HELLO` carries this journal's random session id. When another enclave's session
//!   takes the journal over, the service closes this one's connection and refuses its `HELLO` from then on, so
//!   every later write fails (the error says "fenced") instead of appending after, or discarding, records that
//!   are not its own.
//! - **Snapshots** are uploaded in chunks and committed in one step; a failed upload leaves the previous
//!   snapshot and the records in place, which is a consistent state.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use protocol::frame::{self, FrameError};
use protocol::journal as wire;

use super::record::peek_header;
use super::{Journal, JournalError};

/// Where the host's journal service listens: `unix:PATH` (dev mode, tests) or `vsock:CID:PORT` (enclave mode;
/// the parent instance is CID 3; connecting needs the `vsock` feature). A `tcp:` endpoint parses but is refused
/// when connecting: the journal service is only reached over a Unix socket or vsock.
pub type JournalEndpoint = protocol::Endpoint;

/// Options of a [`RemoteJournal`]. Start from [`RemoteJournalOptions::default`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RemoteJournalOptions {
    /// Largest response frame accepted from the service (a record or snapshot chunk plus one byte). Default
    /// 64 MiB + 1 KiB, matching the service's default frame limit.
    pub max_frame_bytes: u32,
    /// How long one read or write on the connection may block before the request fails. Default 120 s (an fsync
    /// of a large record on a busy disk can take seconds; a hung host must not hang the store forever).
    pub io_timeout: Duration,
    /// Largest snapshot chunk sent. Default 1 MiB (always kept below the service's frame limit).
    pub snapshot_chunk_bytes: usize,
}

impl Default for RemoteJournalOptions {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 * 1024 * 1024 + 1024,
            io_timeout: Duration::from_secs(120),
            snapshot_chunk_bytes: 1024 * 1024,
        }
    }
}

impl RemoteJournalOptions {
    /// Sets the per-operation I/O timeout.
    #[must_use]
    pub fn with_io_timeout(mut self, t: Duration) -> Self {
        self.io_timeout = t;
        self
    }

    /// Sets the largest accepted response frame.
    #[must_use]
    pub fn with_max_frame_bytes(mut self, n: u32) -> Self {
        self.max_frame_bytes = n;
        self
    }
}

/// A connected stream of either transport.
#[derive(Debug)]
enum Conn {
    Unix(UnixStream),
    #[cfg(feature = "vsock")]
    Vsock(vsock::VsockStream),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Unix(s) => s.read(buf),
            #[cfg(feature = "vsock")]
            Self::Vsock(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Unix(s) => s.write(buf),
            #[cfg(feature = "vsock")]
            Self::Vsock(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Unix(s) => s.flush(),
            #[cfg(feature = "vsock")]
            Self::Vsock(s) => s.flush(),
        }
    }
}

impl Conn {
    fn open(endpoint: &JournalEndpoint, timeout: Duration) -> io::Result<Self> {
        match endpoint {
            JournalEndpoint::Unix(path) => {
                let s = UnixStream::connect(path)?;
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                Ok(Self::Unix(s))
            }
            #[cfg(feature = "vsock")]
            JournalEndpoint::Vsock { cid, port } => {
                let s = vsock::VsockStream::connect(&vsock::VsockAddr::new(*cid, *port))?;
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                Ok(Self::Vsock(s))
            }
            #[cfg(not(feature = "vsock"))]
            JournalEndpoint::Vsock { .. } => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "connecting over vsock needs the enclave's `vsock` feature",
            )),
            JournalEndpoint::Tcp(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the journal service is reached over unix: or vsock:, not TCP",
            )),
        }
    }

    /// True if the service has closed its end (e.g. it restarted), so a request would certainly fail. Checked
    /// before an append, so a restarted service does not cost a refused write.
    fn peer_closed(&self) -> bool {
        // Between requests nothing may arrive: a non-blocking read that would block means the connection is
        // alive; end of stream, an error, or unsolicited bytes mean it must be replaced.
        fn closed<S>(s: &S, set_nonblocking: impl Fn(&S, bool) -> io::Result<()>) -> bool
        where
            for<'a> &'a S: Read,
        {
            let mut b = [0u8; 1];
            if set_nonblocking(s, true).is_err() {
                return true;
            }
            let mut reader = s;
            let alive =
                matches!(reader.read(&mut b), Err(ref e) if e.kind() == io::ErrorKind::WouldBlock);
            set_nonblocking(s, false).is_err() || !alive
        }
        match self {
            Self::Unix(s) => closed(s, UnixStream::set_nonblocking),
            #[cfg(feature = "vsock")]
            Self::Vsock(s) => closed(s, vsock::VsockStream::set_nonblocking),
        }
    }
}

/// The [`Journal`] kept by the host's journal service. See the module documentation for failure handling.
#[derive(Debug)]
pub struct RemoteJournal {
    endpoint: JournalEndpoint,
    options: RemoteJournalOptions,
    conn: Option<Conn>,
    /// The service's frame limit, learned from `HELLO`.
    service_limit: u32,
    /// Sequence number of an append whose acknowledgement never arrived.
    unacknowledged: Option<u64>,
    /// This journal's random session id, sent in every `HELLO`: the service lets one session own the journal
    /// and refuses a session once a newer one has taken over, so two live enclaves can never both write.
    session: wire::SessionId,
}

impl RemoteJournal {
    /// Connects to the service at `endpoint` and checks that it speaks this protocol version.
    ///
    /// # Errors
    ///
    /// [`JournalError::Connection`] if it cannot be reached, [`JournalError::Refused`] or
    /// [`JournalError::Protocol`] if it is not a compatible journal service.
    pub fn connect(
        endpoint: JournalEndpoint,
        options: RemoteJournalOptions,
    ) -> Result<Self, JournalError> {
        let mut session: wire::SessionId = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut session).map_err(
            |_| JournalError::Remote("no random bytes for the journal session id".into()),
        )?;
        let mut journal = Self {
            endpoint,
            options,
            conn: None,
            service_limit: 0,
            unacknowledged: None,
            session,
        };
        journal.ensure_connected()?;
        Ok(journal)
    }

    /// The service's endpoint.
    pub fn endpoint(&self) -> &JournalEndpoint {
        &self.endpoint
    }

    fn conn_error(&self, op: &'static str) -> impl FnOnce(io::Error) -> JournalError + '_ {
        move |cause| JournalError::Connection {
            endpoint: self.endpoint.to_string(),
            op,
            cause,
        }
    }

    fn protocol(&self, reason: impl Into<String>) -> JournalError {
        JournalError::Protocol {
            endpoint: self.endpoint.to_string(),
            reason: reason.into(),
        }
    }

    /// Connects (and says HELLO) if there is no live connection.
    fn ensure_connected(&mut self) -> Result<(), JournalError> {
        if self.conn.as_ref().is_some_and(Conn::peer_closed) {
            tracing::info!(endpoint = %self.endpoint, "journal service closed the connection; reconnecting");
            self.conn = None;
        }
        if self.conn.is_some() {
            return Ok(());
        }
        let conn = Conn::open(&self.endpoint, self.options.io_timeout)
            .map_err(self.conn_error("connect"))?;
        self.conn = Some(conn);
        let (kind, body) = self.exchange("HELLO", wire::HELLO, &wire::hello(&self.session))?;
        let parsed = (kind == wire::OK)
            .then(|| wire::parse_hello_ok(&body))
            .flatten();
        match parsed {
            Some((wire::VERSION, limit)) if limit >= wire::MIN_FRAME_LIMIT => {
                self.service_limit = limit;
                Ok(())
            }
            _ => {
                self.conn = None;
                Err(self.unexpected("HELLO", kind, &body))
            }
        }
    }

    /// Sends one request and reads one response frame. Drops the connection on any I/O failure.
    fn exchange(
        &mut self,
        op: &'static str,
        kind: u8,
        body: &[u8],
    ) -> Result<(u8, Vec<u8>), JournalError> {
        self.send(op, kind, body)?;
        self.recv(op)
    }

    fn send(&mut self, op: &'static str, kind: u8, body: &[u8]) -> Result<(), JournalError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(self.conn_error(op)(io::ErrorKind::NotConnected.into()));
        };
        if let Err(e) = frame::write_frame(conn, kind, body) {
            self.conn = None;
            return Err(self.conn_error(op)(e));
        }
        Ok(())
    }

    fn recv(&mut self, op: &'static str) -> Result<(u8, Vec<u8>), JournalError> {
        let limit = self.options.max_frame_bytes;
        let Some(conn) = self.conn.as_mut() else {
            return Err(self.conn_error(op)(io::ErrorKind::NotConnected.into()));
        };
        match frame::read_frame(conn, limit) {
            Ok(frame) => Ok((frame.kind, frame.body)),
            Err(FrameError::Io(e)) => {
                self.conn = None;
                Err(self.conn_error(op)(e))
            }
            Err(FrameError::Closed) => {
                self.conn = None;
                Err(self.conn_error(op)(io::ErrorKind::UnexpectedEof.into()))
            }
            Err(FrameError::Oversize { len, limit }) => {
                self.conn = None;
                Err(self.protocol(format!(
                    "{op}: frame of {len} bytes exceeds the enclave's limit of {limit} bytes"
                )))
            }
            Err(bad) => {
                self.conn = None;
                Err(self.protocol(format!("{op}: {bad}")))
            }
        }
    }

    /// The error for a response that is not the expected one; an `ERROR` frame becomes [`JournalError::Refused`].
    fn unexpected(&self, op: &'static str, kind: u8, body: &[u8]) -> JournalError {
        if kind == wire::ERROR {
            JournalError::Refused {
                endpoint: self.endpoint.to_string(),
                op,
                message: String::from_utf8_lossy(body).into_owned(),
            }
        } else {
            self.protocol(format!(
                "{op}: unexpected response kind {kind:#04x} ({} bytes)",
                body.len()
            ))
        }
    }

    /// Expects an empty `OK`.
    fn expect_ok(&mut self, op: &'static str, kind: u8, body: &[u8]) -> Result<(), JournalError> {
        if kind == wire::OK {
            return Ok(());
        }
        let err = self.unexpected(op, kind, body);
        if !matches!(err, JournalError::Refused { .. }) {
            self.conn = None;
        }
        Err(err)
    }

    /// Connects and settles an unacknowledged append, so the service holds exactly the acknowledged records.
    fn ready_for_write(&mut self) -> Result<(), JournalError> {
        self.ensure_connected()?;
        if let Some(seq) = self.unacknowledged {
            let (kind, body) =
                self.exchange("DISCARD_FROM", wire::DISCARD_FROM, &seq.to_be_bytes())?;
            match (kind, wire::body_u64(&body)) {
                (wire::OK, Some(dropped)) => {
                    tracing::warn!(seq, dropped, "settled an unacknowledged journal append");
                    self.unacknowledged = None;
                }
                _ => {
                    let err = self.unexpected("DISCARD_FROM", kind, &body);
                    self.conn = None;
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    /// Runs an idempotent read, reconnecting and retrying once if the connection failed.
    fn read_retrying<T>(
        &mut self,
        read: impl Fn(&mut Self) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        let first = self.ensure_connected().and_then(|()| read(self));
        match first {
            Err(JournalError::Connection { .. }) => {
                tracing::info!(endpoint = %self.endpoint, "journal connection lost during a read; retrying");
                self.conn = None;
                self.ensure_connected()?;
                read(self)
            }
            other => other,
        }
    }

    fn read_records_once(&mut self) -> Result<Vec<Vec<u8>>, JournalError> {
        self.send("READ_RECORDS", wire::READ_RECORDS, &[])?;
        let mut records = Vec::new();
        loop {
            let (kind, body) = self.recv("READ_RECORDS")?;
            match kind {
                wire::RECORD => records.push(body),
                wire::END => {
                    return match wire::body_u64(&body) {
                        Some(n) if n == records.len() as u64 => Ok(records),
                        _ => {
                            self.conn = None;
                            Err(self.protocol(format!(
                                "READ_RECORDS: END does not match the {} records sent",
                                records.len()
                            )))
                        }
                    };
                }
                _ => {
                    let err = self.unexpected("READ_RECORDS", kind, &body);
                    self.conn = None;
                    return Err(err);
                }
            }
        }
    }

    fn read_snapshot_once(&mut self) -> Result<Option<Vec<u8>>, JournalError> {
        self.send("READ_SNAPSHOT", wire::READ_SNAPSHOT, &[])?;
        let mut snapshot = Vec::new();
        loop {
            let (kind, body) = self.recv("READ_SNAPSHOT")?;
            match kind {
                wire::NONE if snapshot.is_empty() => return Ok(None),
                wire::CHUNK => snapshot.extend_from_slice(&body),
                wire::END => {
                    return match wire::body_u64(&body) {
                        Some(n) if n == snapshot.len() as u64 => Ok(Some(snapshot)),
                        _ => {
                            self.conn = None;
                            Err(self.protocol(
                                "READ_SNAPSHOT: END does not match the bytes sent".to_string(),
                            ))
                        }
                    };
                }
                _ => {
                    let err = self.unexpected("READ_SNAPSHOT", kind, &body);
                    self.conn = None;
                    return Err(err);
                }
            }
        }
    }
}

impl Journal for RemoteJournal {
    fn append(&mut self, record: &[u8]) -> Result<(), JournalError> {
        let seq = peek_header(record)
            .map_err(|reason| JournalError::Record {
                position: 0,
                reason,
            })?
            .seq;
        self.ready_for_write()?;
        if record.len() >= self.service_limit as usize {
            return Err(JournalError::Refused {
                endpoint: self.endpoint.to_string(),
                op: "APPEND",
                message: format!(
                    "record seq {seq} of {} bytes does not fit the service's frame limit of {} bytes",
                    record.len(),
                    self.service_limit
                ),
            });
        }
        let sent = self
            .send("APPEND", wire::APPEND, record)
            .and_then(|()| self.recv("APPEND"));
        let (kind, body) = match sent {
            Ok(frame) => frame,
            Err(e) => {
                // The request may have reached the service: settle it before the next write.
                self.unacknowledged = Some(seq);
                let cause = match e {
                    JournalError::Connection { cause, .. } => cause,
                    other => io::Error::other(other.to_string()),
                };
                return Err(JournalError::Unacknowledged {
                    endpoint: self.endpoint.to_string(),
                    seq,
                    cause,
                });
            }
        };
        if kind != wire::OK && kind != wire::ERROR {
            self.unacknowledged = Some(seq);
        }
        // An ERROR response means the service rolled the append back.
        self.expect_ok("APPEND", kind, &body)
    }

    fn read_records(&mut self) -> Result<Vec<Vec<u8>>, JournalError> {
        self.read_retrying(Self::read_records_once)
    }

    fn write_snapshot(
        &mut self,
        snapshot: &[u8],
        covers_through_seq: u64,
    ) -> Result<(), JournalError> {
        self.ready_for_write()?;
        let (kind, body) = self.exchange("SNAPSHOT_BEGIN", wire::SNAPSHOT_BEGIN, &[])?;
        self.expect_ok("SNAPSHOT_BEGIN", kind, &body)?;
        let chunk = self
            .options
            .snapshot_chunk_bytes
            .clamp(1, (self.service_limit as usize).saturating_sub(1).max(1));
        for part in snapshot.chunks(chunk) {
            let (kind, body) = self.exchange("SNAPSHOT_CHUNK", wire::SNAPSHOT_CHUNK, part)?;
            self.expect_ok("SNAPSHOT_CHUNK", kind, &body)?;
        }
        let commit = wire::snapshot_commit(snapshot.len() as u64, covers_through_seq);
        let (kind, body) = self.exchange("SNAPSHOT_COMMIT", wire::SNAPSHOT_COMMIT, &commit)?;
        self.expect_ok("SNAPSHOT_COMMIT", kind, &body)
    }

    fn read_snapshot(&mut self) -> Result<Option<Vec<u8>>, JournalError> {
        self.read_retrying(Self::read_snapshot_once)
    }
}

#[cfg(test)]
#[path = "remote_tests.rs"]
mod tests;
