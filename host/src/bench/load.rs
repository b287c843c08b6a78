//! The load: a few clients, each one keep-alive TLS connection sending many small GETs, like kubectl.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use super::backend::BENCH_SERVER_NAME;
use super::bench_err;
use crate::error::Result;
use crate::transport::{self, Endpoint};

/// The request path and headers kubectl sends for `kubectl get pods` (v1.31, table output).
const PATH: &str = "/api/v1/namespaces/default/pods?limit=500";
const ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
const USER_AGENT: &str = "kubectl/v1.31.0 (linux/amd64) kubernetes/9dc8a9e";

/// How much load to apply.
#[derive(Debug, Clone, Copy)]
pub struct LoadShape {
    /// Concurrent clients, one TLS connection each.
    pub clients: usize,
    /// Measured requests per client.
    pub requests: usize,
    /// Unmeasured requests per client first (TLS handshake, warm caches).
    pub warmup: usize,
}

/// What one load run measured.
#[derive(Debug, Clone, Default)]
pub struct LoadSample {
    /// Measured requests completed.
    pub requests: u64,
    /// Wall time of the measured phase (slowest client).
    pub elapsed: Duration,
    /// Per-request latency, nanoseconds.
    pub latencies_ns: Vec<u64>,
}

/// Where the load goes.
#[derive(Debug, Clone)]
pub enum LoadTarget {
    /// The backend's Unix socket directly.
    Unix(PathBuf),
    /// A TCP relay in front of it.
    Tcp(std::net::SocketAddr),
}

impl LoadTarget {
    fn endpoint(&self) -> Endpoint {
        match self {
            Self::Unix(p) => Endpoint::Unix(p.clone()),
            Self::Tcp(a) => Endpoint::Tcp(*a),
        }
    }
}

/// Runs `shape` against `target`.
///
/// # Errors
///
/// [`crate::Error::Bench`] if a connection, handshake or request fails.
pub async fn run_load(
    target: &LoadTarget,
    connector: &TlsConnector,
    shape: LoadShape,
) -> Result<LoadSample> {
    let endpoint = target.endpoint();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..shape.clients {
        let (endpoint, connector) = (endpoint.clone(), connector.clone());
        clients.spawn(async move { one_client(&endpoint, &connector, shape).await });
    }
    let mut total = LoadSample::default();
    while let Some(joined) = clients.join_next().await {
        let sample = joined.map_err(|e| bench_err("client task", e))??;
        total.requests += sample.requests;
        total.elapsed = total.elapsed.max(sample.elapsed);
        total.latencies_ns.extend(sample.latencies_ns);
    }
    Ok(total)
}

/// Sequential GETs (one request in flight at a time, as kubectl sends them) to every target in turn over one
/// keep-alive connection each: request `i` goes to each target once before request `i + 1` goes to any, and
/// the first target of each turn rotates. A burst of other work on the machine therefore lands on all targets
/// alike, so their latencies can be compared percentile by percentile.
///
/// Returns each target's latencies (nanoseconds, in request order), in `targets` order.
///
/// # Errors
///
/// [`crate::Error::Bench`] if a connection, handshake or request fails.
pub async fn run_interleaved_latency(
    targets: &[LoadTarget],
    connector: &TlsConnector,
    requests: usize,
    warmup: usize,
) -> Result<Vec<Vec<u64>>> {
    let mut connections = Vec::with_capacity(targets.len());
    for target in targets {
        connections.push(Connection::open(&target.endpoint(), connector).await?);
    }
    let mut latencies = vec![Vec::with_capacity(requests); targets.len()];
    let n = connections.len();
    for i in 0..warmup + requests {
        for k in 0..n {
            let at = (i + k) % n;
            let (Some(conn), Some(samples)) = (connections.get_mut(at), latencies.get_mut(at))
            else {
                continue;
            };
            let took = conn.get().await?;
            if i >= warmup {
                samples.push(took);
            }
        }
    }
    for conn in connections {
        conn.close().await;
    }
    Ok(latencies)
}

/// One keep-alive TLS connection sending kubectl's `get pods` request.
struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Connection {
    async fn open(endpoint: &Endpoint, connector: &TlsConnector) -> Result<Self> {
        let stream = transport::connect(endpoint)
            .await
            .map_err(|e| bench_err("connecting", e))?;
        let name =
            ServerName::try_from(BENCH_SERVER_NAME).map_err(|e| bench_err("server name", e))?;
        let tls = connector
            .connect(name, stream)
            .await
            .map_err(|e| bench_err("TLS handshake", e))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| bench_err("HTTP handshake", e))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self { sender, driver })
    }

    /// Sends one GET and reads the whole response; returns how long that took, in nanoseconds.
    async fn get(&mut self) -> Result<u64> {
        let req = Request::get(PATH)
            .header("host", BENCH_SERVER_NAME)
            .header("accept", ACCEPT)
            .header("user-agent", USER_AGENT)
            .body(Empty::<Bytes>::new())
            .map_err(|e| bench_err("building a request", e))?;
        let t = Instant::now();
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| bench_err("request", e))?;
        if !resp.status().is_success() {
            return Err(bench_err(
                "response status",
                std::io::Error::other(resp.status().to_string()),
            ));
        }
        resp.into_body()
            .collect()
            .await
            .map_err(|e| bench_err("response body", e))?;
        Ok(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    async fn close(self) {
        drop(self.sender);
        let _ = self.driver.await;
    }
}

async fn one_client(
    endpoint: &Endpoint,
    connector: &TlsConnector,
    shape: LoadShape,
) -> Result<LoadSample> {
    let mut conn = Connection::open(endpoint, connector).await?;
    let mut latencies_ns = Vec::with_capacity(shape.requests);
    let mut started = Instant::now();
    for i in 0..shape.warmup + shape.requests {
        if i == shape.warmup {
            started = Instant::now();
        }
        let took = conn.get().await?;
        if i >= shape.warmup {
            latencies_ns.push(took);
        }
    }
    let elapsed = started.elapsed();
    conn.close().await;
    Ok(LoadSample {
        requests: latencies_ns.len() as u64,
        elapsed,
        latencies_ns,
    })
}
