//! The benchmark's stand-in for the enclave: rustls + hyper serving HTTPS on a Unix socket, on its own thread.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::UnixListener;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;

use super::{ThreadIds, bench_err, on_own_runtime};
use crate::error::Result;

/// The TLS server name the benchmark's certificate is issued for.
pub const BENCH_SERVER_NAME: &str = "enclave.daas.bench";

/// A fresh self-signed server identity and a client config that trusts exactly it.
#[derive(Clone)]
pub struct BenchIdentity {
    /// Server side.
    pub acceptor: TlsAcceptor,
    /// Client side.
    pub connector: TlsConnector,
}

impl std::fmt::Debug for BenchIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BenchIdentity")
    }
}

/// Generates a P-256 self-signed certificate for [`BENCH_SERVER_NAME`] (ALPN `http/1.1`).
///
/// # Errors
///
/// [`crate::Error::Bench`] if key generation or the rustls configuration fails.
pub fn bench_identity() -> Result<BenchIdentity> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert = rcgen::generate_simple_self_signed(vec![BENCH_SERVER_NAME.to_owned()])
        .map_err(|e| bench_err("generating the certificate", e))?;
    let cert_der: CertificateDer<'static> = cert.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| bench_err("server protocol versions", e))?
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key)
        .map_err(|e| bench_err("server certificate", e))?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(cert_der)
        .map_err(|e| bench_err("trusting the certificate", e))?;
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bench_err("client protocol versions", e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(BenchIdentity {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        connector: TlsConnector::from(Arc::new(client)),
    })
}

/// A running HTTPS backend; stops when dropped.
#[derive(Debug)]
pub struct HttpsBackend {
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for HttpsBackend {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves HTTPS on the Unix socket `path`: every request gets `200 OK` with a JSON body of `body_len` bytes
/// (the size of a small `kubectl get` list). Its thread is recorded in `threads`.
///
/// # Errors
///
/// [`crate::Error::Bench`] if the socket cannot be bound or the runtime cannot start.
pub fn start_https_backend(
    path: &Path,
    acceptor: TlsAcceptor,
    body_len: usize,
    threads: &ThreadIds,
) -> Result<HttpsBackend> {
    let std_listener = std::os::unix::net::UnixListener::bind(path)
        .map_err(|e| bench_err("binding the backend socket", e))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| bench_err("backend socket", e))?;
    let body = Bytes::from(json_body(body_len));
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let thread = on_own_runtime("bench-backend", 1, threads, move || async move {
        let Ok(listener) = UnixListener::from_std(std_listener) else {
            return;
        };
        loop {
            let stream = tokio::select! {
                () = token.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((s, _)) => s,
                    Err(_) => continue,
                },
            };
            let (acceptor, body) = (acceptor.clone(), body.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let body = body.clone();
                    async move {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(body))
                                .unwrap_or_default(),
                        )
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    })?;
    Ok(HttpsBackend {
        shutdown,
        thread: Some(thread),
    })
}

/// A syntactically valid JSON object of exactly `len` bytes (at least 16).
fn json_body(len: usize) -> Vec<u8> {
    let prefix = br#"{"kind":"List","p":""#;
    let suffix = br#""}"#;
    let fill = len.saturating_sub(prefix.len() + suffix.len());
    let mut body = Vec::with_capacity(len);
    body.extend_from_slice(prefix);
    body.extend(std::iter::repeat_n(b'x', fill));
    body.extend_from_slice(suffix);
    body
}
