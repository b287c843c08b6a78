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
    let endpoint = match target {
        LoadTarget::Unix(p) => Endpoint::Unix(p.clone()),
        LoadTarget::Tcp(a) => Endpoint::Tcp(*a),
    };
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

async fn one_client(
    endpoint: &Endpoint,
    connector: &TlsConnector,
    shape: LoadShape,
) -> Result<LoadSample> {
    let stream = transport::connect(endpoint)
        .await
        .map_err(|e| bench_err("connecting", e))?;
    let name = ServerName::try_from(BENCH_SERVER_NAME).map_err(|e| bench_err("server name", e))?;
    let tls = connector
        .connect(name, stream)
        .await
        .map_err(|e| bench_err("TLS handshake", e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| bench_err("HTTP handshake", e))?;
    let driver = tokio::spawn(conn);
    let mut latencies_ns = Vec::with_capacity(shape.requests);
    let mut started = Instant::now();
    for i in 0..shape.warmup + shape.requests {
        if i == shape.warmup {
            started = Instant::now();
        }
        let req = Request::get(PATH)
            .header("host", BENCH_SERVER_NAME)
            .header("accept", ACCEPT)
            .header("user-agent", USER_AGENT)
            .body(Empty::<Bytes>::new())
            .map_err(|e| bench_err("building a request", e))?;
        let t = Instant::now();
        let resp = sender
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
        if i >= shape.warmup {
            latencies_ns.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
        }
    }
    let elapsed = started.elapsed();
    drop(sender);
    let _ = driver.await;
    Ok(LoadSample {
        requests: latencies_ns.len() as u64,
        elapsed,
        latencies_ns,
    })
}
