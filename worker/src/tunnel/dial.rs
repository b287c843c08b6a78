//! Keeping the tunnel up: dial the enclave, upgrade, serve, and dial again after a loss.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use protocol::tunnel::{TUNNEL_PATH, TUNNEL_UPGRADE};
use rustls_pki_types::ServerName;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{ContainerStreams, TunnelTls, serve};

/// How long one dial (TCP, TLS, upgrade) may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest refusal message read from the enclave.
const REFUSAL_LIMIT: usize = 4096;

/// Waits between dials: `initial` after the first failure, doubling to `max`; back to
/// `initial` after a tunnel that came up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait. Default 250 ms.
    pub initial: Duration,
    /// The longest wait. Default 30 s.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
        }
    }
}

/// Where the tunnel goes.
#[derive(Debug, Clone)]
pub struct TunnelConfig {
    /// `host:port` of the enclave's API endpoint (the host relay in front of it).
    pub address: String,
    /// The name the enclave's certificate is checked against.
    pub server_name: ServerName<'static>,
    /// Waits between dials.
    pub backoff: Backoff,
}

/// Where the tunnel is, for whoever watches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelState {
    /// Dialing (the n-th attempt since the last tunnel that came up, from 1).
    Connecting {
        /// The attempt.
        attempt: u32,
    },
    /// Up: the enclave can reach this node.
    Connected,
    /// The last dial failed or the tunnel was lost; waiting to dial again.
    Lost {
        /// Why.
        reason: String,
    },
    /// Stopped by shutdown.
    Stopped,
}

/// Keeps the tunnel up until `shutdown`, serving `streams` over it and reporting on `state`.
pub async fn run(
    config: TunnelConfig,
    tls: Arc<dyn TunnelTls>,
    streams: Arc<dyn ContainerStreams>,
    state: watch::Sender<TunnelState>,
    shutdown: CancellationToken,
) {
    let mut delay = config.backoff.initial;
    let mut attempt = 0u32;
    loop {
        attempt = attempt.saturating_add(1);
        state.send_replace(TunnelState::Connecting { attempt });
        let dialed = tokio::select! {
            d = tokio::time::timeout(DIAL_TIMEOUT, dial(&config, tls.as_ref())) => {
                d.unwrap_or_else(|_| Err("timed out".into()))
            }
            () = shutdown.cancelled() => break,
        };
        let reason = match dialed {
            Ok(upgraded) => {
                tracing::info!(address = %config.address, "tunnel to the enclave is up");
                state.send_replace(TunnelState::Connected);
                attempt = 0;
                delay = config.backoff.initial;
                match serve::serve(upgraded, streams.clone(), shutdown.clone()).await {
                    Ok(()) => "the enclave closed the tunnel".to_string(),
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        if shutdown.is_cancelled() {
            break;
        }
        tracing::warn!(address = %config.address, reason, retry_in = ?delay, "tunnel to the enclave is down");
        state.send_replace(TunnelState::Lost { reason });
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => break,
        }
        delay = (delay * 2).min(config.backoff.max);
    }
    state.send_replace(TunnelState::Stopped);
}

/// One dial: TCP, TLS with the node's certificate, `GET /daas/v1/tunnel` with the upgrade.
async fn dial(
    config: &TunnelConfig,
    tls: &dyn TunnelTls,
) -> Result<hyper::upgrade::Upgraded, String> {
    let tcp = tokio::net::TcpStream::connect(&config.address)
        .await
        .map_err(|e| format!("connect {}: {e}", config.address))?;
    let _ = tcp.set_nodelay(true);
    let mut client = (*tls.client_config()?).clone();
    // The upgrade is HTTP/1.1's; HTTP/2 runs inside it afterwards.
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let stream = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(config.server_name.clone(), tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    // The connection runs on its own: with a 101 it ends (handing its I/O to the upgrade)
    // possibly before the response is read here.
    let conn = tokio::spawn(conn.with_upgrades());
    let request = Request::get(TUNNEL_PATH)
        .header(header::HOST, &config.address)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, TUNNEL_UPGRADE)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = match sender.send_request(request).await {
        Ok(r) => r,
        Err(e) => {
            conn.abort();
            return Err(format!("HTTP: {e}"));
        }
    };
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), REFUSAL_LIMIT)
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
            .unwrap_or_default();
        conn.abort();
        return Err(format!("the enclave refused the tunnel: {status} {body}"));
    }
    let upgraded = hyper::upgrade::on(response).await;
    upgraded.map_err(|e| format!("upgrade: {e}"))
}
