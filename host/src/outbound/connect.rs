//! Dynamic outbound: one endpoint where the enclave names its destination with an HTTP/1.1 `CONNECT host:port`
//! request, as to any HTTP proxy. The destination must be on the [`Allowlist`] (exact host and port); anything
//! else gets `403 Forbidden` and is closed, a malformed request `400 Bad Request`, an unreachable allowed target
//! `502 Bad Gateway`. After `200 Connection Established` the bytes flow untouched (TLS from the enclave).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Allowlist, Target, dial};
use crate::accept::accept_until_shutdown;
use crate::error::Result;
use crate::metrics::{CloseReason, TrafficMetrics};
use crate::splice::{SpliceRules, splice};
use crate::transport::{Endpoint, Listener, Stream};

/// Longest CONNECT request head accepted.
const MAX_HEAD: usize = 4096;

/// The CONNECT-style outbound proxy.
#[derive(Debug)]
pub struct ConnectProxy {
    listen: Endpoint,
    allowlist: Arc<Allowlist>,
    metrics: TrafficMetrics,
    head_timeout: Duration,
    idle_timeout: Duration,
    connect_timeout: Duration,
    max_connections: usize,
}

impl ConnectProxy {
    /// A proxy on `listen` that lets the enclave reach exactly `allowlist`. Defaults: the request head must arrive
    /// within 10 s, idle timeout 300 s, connect timeout 5 s, 256 connections at once.
    #[must_use]
    pub fn new(listen: Endpoint, allowlist: Allowlist, metrics: TrafficMetrics) -> Self {
        Self {
            listen,
            allowlist: Arc::new(allowlist),
            metrics,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(5),
            max_connections: 256,
        }
    }

    /// Binds the endpoint.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Bind`] or [`crate::Error::SocketPathInUse`].
    pub async fn bind(self) -> Result<BoundConnectProxy> {
        let listener = Listener::bind(&self.listen).await?;
        Ok(BoundConnectProxy {
            proxy: Arc::new(self),
            listener,
        })
    }
}

/// A bound [`ConnectProxy`].
#[derive(Debug)]
pub struct BoundConnectProxy {
    proxy: Arc<ConnectProxy>,
    listener: Listener,
}

impl BoundConnectProxy {
    /// The endpoint actually bound.
    ///
    /// # Errors
    ///
    /// The transport's `getsockname` error.
    pub fn local_endpoint(&self) -> std::io::Result<Endpoint> {
        self.listener.local_endpoint()
    }

    /// Serves until `shutdown` fires; open connections are cut then.
    pub async fn serve(self, shutdown: CancellationToken) {
        let limit = Arc::new(Semaphore::new(self.proxy.max_connections));
        let admit = |stream, _peer, _open| {
            let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
                self.proxy.metrics.rejected();
                return None;
            };
            self.proxy.metrics.accepted();
            let proxy = Arc::clone(&self.proxy);
            Some(async move {
                let reason = handle(&proxy, stream).await;
                proxy.metrics.closed(reason);
                drop(permit);
            })
        };
        let on_error = |e: &std::io::Error| {
            self.proxy.metrics.accept_error();
            tracing::warn!(error = %e, "outbound accept failed");
        };
        let mut conns = accept_until_shutdown(&self.listener, &shutdown, admit, on_error).await;
        conns.shutdown().await;
    }
}

async fn handle(proxy: &ConnectProxy, mut enclave: Stream) -> CloseReason {
    let mut head = Vec::with_capacity(1024);
    let deadline = Instant::now() + proxy.head_timeout;
    let (target, body_start) = loop {
        let mut buf = [0u8; 1024];
        let n = match tokio::time::timeout_at(deadline, enclave.read(&mut buf)).await {
            Err(_) => return CloseReason::HandshakeTimeout,
            Ok(Err(_)) => return CloseReason::IoError,
            Ok(Ok(0)) => return CloseReason::ClientSilent,
            Ok(Ok(n)) => n,
        };
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
        match parse_connect(&head) {
            Ok(Some(parsed)) => break parsed,
            Ok(None) if head.len() < MAX_HEAD => {}
            Ok(None) | Err(()) => {
                let _ = enclave
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                    .await;
                return CloseReason::BadRequest;
            }
        }
    };
    if !proxy.allowlist.allows(&target) {
        tracing::warn!(%target, "outbound CONNECT refused: not on the allowlist");
        let _ = enclave
            .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
            .await;
        return CloseReason::Forbidden;
    }
    let Some(mut remote) = dial(&target, proxy.connect_timeout).await else {
        let _ = enclave
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            .await;
        return CloseReason::ConnectFailed;
    };
    if enclave
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await
        .is_err()
    {
        return CloseReason::IoError;
    }
    // Bytes the enclave sent right behind its request head (e.g. a pipelined ClientHello) go first.
    if let Some(early) = head.get(body_start..).filter(|b| !b.is_empty()) {
        if remote.write_all(early).await.is_err() {
            return CloseReason::IoError;
        }
        proxy.metrics.bytes_inbound.inc_by(early.len() as u64);
    }
    let rules = SpliceRules {
        idle_timeout: proxy.idle_timeout,
        buffer_size: 16 * 1024,
        tls: None,
        handshake_deadline: Instant::now(),
        inbound: &proxy.metrics.bytes_inbound,
        outbound: &proxy.metrics.bytes_outbound,
        busy_poll: Duration::ZERO,
    };
    splice(enclave, remote, rules).await
}

/// `Ok(Some((target, head_len)))` for a complete CONNECT head, `Ok(None)` if more bytes are needed.
fn parse_connect(head: &[u8]) -> std::result::Result<Option<(Target, usize)>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(len)) => {
            if req.method != Some("CONNECT") || req.version != Some(1) {
                return Err(());
            }
            let target: Target = req.path.ok_or(())?.parse().map_err(|_| ())?;
            Ok(Some((target, len)))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_connect_heads() {
        let head = b"CONNECT fullnode.mainnet.sui.io:443 HTTP/1.1\r\nHost: fullnode.mainnet.sui.io:443\r\n\r\n\x16\x03";
        let (target, len) = parse_connect(head).unwrap().unwrap();
        assert_eq!(target.to_string(), "fullnode.mainnet.sui.io:443");
        assert_eq!(&head[len..], b"\x16\x03");
        assert_eq!(parse_connect(b"CONNECT a:1 HTTP/1.1\r\n"), Ok(None));
        for bad in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"CONNECT nohostport HTTP/1.1\r\n\r\n",
            b"CONNECT a:1 HTTP/1.0\r\n\r\n",
            b"\x16\x03\x01garbage\r\n\r\n",
        ] {
            assert_eq!(
                parse_connect(bad),
                Err(()),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
