//! Shared test fixtures: real sockets, real rustls, an in-process relay.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use host::{Endpoint, Listener, Relay, RelayConfig, TrafficMetrics};
use prometheus_client::registry::Registry;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;

pub const SERVER_NAME: &str = "enclave.daas.test";

/// A self-signed server identity and a client that trusts exactly it.
pub struct TlsPair {
    pub acceptor: TlsAcceptor,
    pub connector: TlsConnector,
}

pub fn tls_pair() -> TlsPair {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()]).unwrap();
    let cert_der: CertificateDer<'static> = cert.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsPair {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        connector: TlsConnector::from(Arc::new(client)),
    }
}

/// Counts the connections a backend accepted.
#[derive(Clone, Default)]
pub struct Accepted(Arc<AtomicUsize>);

impl Accepted {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A TLS echo server on a Unix socket: the stand-in for the enclave's rustls listener.
pub fn spawn_tls_echo(path: &Path, acceptor: TlsAcceptor) -> (JoinHandle<()>, Accepted) {
    let listener = UnixListener::bind(path).unwrap();
    let accepted = Accepted::default();
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            count.0.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if tls.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (task, accepted)
}

/// A plain echo server on a Unix socket.
pub fn spawn_echo(path: &Path) -> (JoinHandle<()>, Accepted) {
    let listener = UnixListener::bind(path).unwrap();
    let accepted = Accepted::default();
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            count.0.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (task, accepted)
}

/// A relay running in this process.
pub struct RunningRelay {
    pub addr: SocketAddr,
    pub metrics: TrafficMetrics,
    pub registry: Arc<Registry>,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<host::DrainReport>,
}

pub async fn start_relay(config: RelayConfig) -> RunningRelay {
    let mut registry = Registry::default();
    let metrics = TrafficMetrics::register(&mut registry, "relay");
    let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let Endpoint::Tcp(addr) = listener.local_endpoint().unwrap() else {
        panic!("tcp")
    };
    let shutdown = CancellationToken::new();
    let relay = Relay::new(config, metrics.clone());
    let token = shutdown.clone();
    let task = tokio::spawn(async move { relay.serve(listener, token).await });
    RunningRelay {
        addr,
        metrics,
        registry: Arc::new(registry),
        shutdown,
        task,
    }
}

pub fn socket_path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

/// One TLS round trip through `addr`: handshake, send `msg`, read the echo.
pub async fn tls_round_trip(
    addr: SocketAddr,
    connector: &TlsConnector,
    msg: &[u8],
) -> std::io::Result<Vec<u8>> {
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = connector
        .connect(ServerName::try_from(SERVER_NAME).unwrap(), tcp)
        .await?;
    tls.write_all(msg).await?;
    let mut got = vec![0u8; msg.len()];
    tls.read_exact(&mut got).await?;
    Ok(got)
}

/// Waits (bounded) until `cond` holds; panics with `what` otherwise. For events, not for timing assertions.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// True once the peer has closed `stream` (EOF or reset), reading at most 20 s.
pub async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(20), stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}
