//! The inbound relay: public TCP in, the enclave's vsock (or dev Unix socket) out, byte for byte.
//!
//! The relay never terminates TLS; it forwards ciphertext it cannot read. What it does enforce:
//!
//! - **Connection limit.** At most `max_connections` are relayed at once. A connection over the limit is accepted
//!   and closed at once (counted in `relay_connections_rejected_total`), so clients fail fast instead of waiting
//!   in the kernel's backlog.
//! - **Handshake deadline (slowloris).** Counted from accept, a client must satisfy the [`HandshakeRule`] within
//!   `handshake_timeout`: by default its first complete TLS application_data record must arrive, which in TLS 1.3
//!   is the record carrying the client `Finished`. A client that sends nothing, or trickles a ClientHello, is cut
//!   at the deadline. The enclave is only dialled once the client has sent its first byte, so silent
//!   connections cost the enclave nothing.
//! - **Idle timeout.** A connection on which no byte moved in either direction for `idle_timeout` is closed.
//! - **Backpressure.** Each direction copies through one fixed buffer of `buffer_size` bytes and reads only into
//!   its free space, so a slow reader stalls its writer; memory per connection is bounded.
//! - **Graceful drain.** When the shutdown token fires, the listener closes, connections that have not sent a
//!   byte are closed, the others may finish for up to `drain_timeout`, and whatever remains is cut.
//! - **PROXY protocol v2** (optional) so the enclave can log client addresses.

mod config;
mod proxy_header;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use config::{HandshakeRule, ProxyProtocol, RelayConfig, RelayConfigBuilder};

use crate::accept::accept_until_shutdown;
use crate::metrics::{CloseReason, TrafficMetrics};
use crate::splice::{SpliceRules, splice};
use crate::tls_watch::{TlsProgress, TlsWatch};
use crate::transport::{self, Listener, PeerAddr, Stream};

/// Bytes read from a new client before the enclave is dialled (a ClientHello fits).
const FIRST_READ: usize = 4096;

/// How a graceful shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DrainReport {
    /// Connections open when shutdown began.
    pub open_at_shutdown: usize,
    /// Connections cut because they outlived the drain timeout.
    pub cut: usize,
}

/// The relay service. Cheap to share: `serve` takes `&self`.
#[derive(Debug)]
pub struct Relay {
    config: Arc<RelayConfig>,
    metrics: TrafficMetrics,
}

impl Relay {
    /// A relay with `config`, counting into `metrics`.
    #[must_use]
    pub fn new(config: RelayConfig, metrics: TrafficMetrics) -> Self {
        Self {
            config: Arc::new(config),
            metrics,
        }
    }

    /// Accepts connections on `listener` and relays each until `shutdown` fires, then drains (see the module
    /// doc) and returns.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), host::Error> {
    /// use host::{Endpoint, Listener, Relay, RelayConfig, TrafficMetrics};
    /// let config = RelayConfig::builder("unix:/run/daas/enclave.sock".parse()?).build()?;
    /// let listener = Listener::bind(&"127.0.0.1:6443".parse()?).await?;
    /// let shutdown = tokio_util::sync::CancellationToken::new();
    /// Relay::new(config, TrafficMetrics::unregistered()).serve(listener, shutdown).await;
    /// # Ok(()) }
    /// ```
    pub async fn serve(&self, listener: Listener, shutdown: CancellationToken) -> DrainReport {
        let limit = Arc::new(Semaphore::new(self.config.max_connections));
        let admit = |stream, peer, _open| {
            let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
                self.metrics.rejected();
                tracing::debug!(?peer, "connection limit reached; closing");
                return None;
            };
            self.metrics.accepted();
            let guard = CloseGuard {
                metrics: self.metrics.clone(),
                reason: CloseReason::Shutdown,
                _permit: permit,
            };
            let conn = Connection {
                config: Arc::clone(&self.config),
                metrics: self.metrics.clone(),
                shutdown: shutdown.clone(),
            };
            let span = tracing::debug_span!("relay.conn", peer = ?peer);
            Some(conn.run(stream, peer, guard).instrument(span))
        };
        let on_error = |e: &std::io::Error| {
            self.metrics.accept_error();
            tracing::warn!(error = %e, "accept failed");
        };
        let mut tasks = accept_until_shutdown(&listener, &shutdown, admit, on_error).await;
        drop(listener);
        let open_at_shutdown = tasks.len();
        tracing::info!(open = open_at_shutdown, "relay draining");
        let drained = tokio::time::timeout(self.config.drain_timeout, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        let cut = if drained.is_err() { tasks.len() } else { 0 };
        tasks.shutdown().await;
        tracing::info!(cut, "relay stopped");
        DrainReport {
            open_at_shutdown,
            cut,
        }
    }
}

/// Records how a connection ended, also when its task is aborted (then as [`CloseReason::Shutdown`]).
#[derive(Debug)]
struct CloseGuard {
    metrics: TrafficMetrics,
    reason: CloseReason,
    _permit: OwnedSemaphorePermit,
}

impl Drop for CloseGuard {
    fn drop(&mut self) {
        self.metrics.closed(self.reason);
    }
}

#[derive(Debug)]
struct Connection {
    config: Arc<RelayConfig>,
    metrics: TrafficMetrics,
    shutdown: CancellationToken,
}

impl Connection {
    async fn run(self, client: Stream, peer: PeerAddr, mut guard: CloseGuard) {
        guard.reason = self.relay(client, peer).await;
        tracing::debug!(reason = guard.reason.as_str(), "closed");
    }

    async fn relay(&self, mut client: Stream, peer: PeerAddr) -> CloseReason {
        let deadline = Instant::now() + self.config.handshake_timeout;
        let local = match &client {
            Stream::Tcp(s) => s.local_addr().ok(),
            _ => None,
        };
        let mut first = vec![0u8; FIRST_READ];
        let n = tokio::select! {
            read = tokio::time::timeout_at(deadline, client.read(&mut first)) => match read {
                Err(_) => return CloseReason::HandshakeTimeout,
                Ok(Err(_)) => return CloseReason::IoError,
                Ok(Ok(0)) => return CloseReason::ClientSilent,
                Ok(Ok(n)) => n,
            },
            () = self.shutdown.cancelled() => return CloseReason::Shutdown,
        };
        first.truncate(n);
        let mut tls = match self.config.handshake {
            HandshakeRule::Tls => Some(TlsWatch::default()),
            HandshakeRule::FirstByte => None,
        };
        if let Some(watch) = tls.as_mut() {
            match watch.feed(&first) {
                Err(_) => return CloseReason::NotTls,
                Ok(TlsProgress::Done) => tls = None,
                Ok(TlsProgress::Handshaking) => {}
            }
        }
        let mut upstream = match self.connect().await {
            Some(s) => s,
            None => return CloseReason::ConnectFailed,
        };
        if let Err(e) = self
            .send_preamble(&mut upstream, &peer, local, &first)
            .await
        {
            tracing::debug!(error = %e, "writing to the enclave failed");
            return CloseReason::IoError;
        }
        splice(
            client,
            upstream,
            SpliceRules {
                idle_timeout: self.config.idle_timeout,
                buffer_size: self.config.buffer_size,
                tls,
                handshake_deadline: deadline,
                inbound: &self.metrics.bytes_inbound,
                outbound: &self.metrics.bytes_outbound,
                busy_poll: self.config.busy_poll,
            },
        )
        .await
    }

    async fn connect(&self) -> Option<Stream> {
        let upstream = &self.config.upstream;
        match tokio::time::timeout(self.config.connect_timeout, transport::connect(upstream)).await
        {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                tracing::warn!(%upstream, error = %e, "cannot reach the enclave");
                None
            }
            Err(_) => {
                tracing::warn!(%upstream, "connecting to the enclave timed out");
                None
            }
        }
    }

    /// Writes the optional PROXY header and the client's first bytes in one write.
    async fn send_preamble(
        &self,
        upstream: &mut Stream,
        peer: &PeerAddr,
        local: Option<SocketAddr>,
        first: &[u8],
    ) -> std::io::Result<()> {
        let mut preamble = match self.config.proxy_protocol {
            ProxyProtocol::Off => Vec::with_capacity(first.len()),
            ProxyProtocol::V2 => proxy_header::proxy_v2_header(peer, local)?,
        };
        preamble.extend_from_slice(first);
        upstream.write_all(&preamble).await?;
        self.metrics.bytes_inbound.inc_by(first.len() as u64);
        Ok(())
    }
}
