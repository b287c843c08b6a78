//! `daas bench scheduler`: the scheduler of the real `daas-enclave --dev`
//! against hollow nodes (Node objects with capacity and no kubelet), in the
//! shapes of upstream's scheduler_perf (`test/integration/scheduler_perf`):
//!
//! - basic: `SchedulingBasic/5000Nodes_10000Pods` (misc/performance-config.yaml;
//!   5000 nodes, 1000 init pods, 10000 measured pods of `pod-default.yaml`;
//!   upstream's CI floor 680 pods/s);
//! - spread: `TopologySpreading/5000Nodes_5000Pods`
//!   (topology_spreading/performance-config.yaml; nodes in zones moon-1..3,
//!   5000 init pods of `pod-default.yaml`, 5000 measured pods of
//!   `pod-with-topology-spreading.yaml`, maxSkew 5 on the zone,
//!   DoNotSchedule; floor 460 pods/s);
//! - anti-affinity: `SchedulingPodAntiAffinity/5000Nodes_2000Pods`
//!   (affinity/performance-config.yaml; 1000 init pods in sched-0, 2000
//!   measured in sched-1 of `pod-with-pod-anti-affinity.yaml`, required
//!   anti-affinity on the hostname; floor 60 pods/s). Our nodes carry the
//!   `kubernetes.io/hostname` label a kubelet would set, so every pod
//!   needs a node of its own.
//!
//! Nodes are `node-default.yaml` (4 cpu, 32Gi, 110 pods). Each workload
//! starts its own enclave. Pods are created over TLS by concurrent
//! clients, as scheduler_perf's client does; a watch records when each is
//! bound. Throughput is measured pods over the time from the first
//! create to the last bind (`SchedulingThroughput` counts the same pods
//! over the same window), and the average of 1-second samples as upstream
//! reports. The enclave's RSS is read after the basic workload.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::{percentiles, proc_status_kib};

/// Options for `daas bench scheduler`.
#[derive(Debug, clap::Args)]
pub(crate) struct SchedulerBenchArgs {
    /// A small run for CI (100 nodes, a few hundred pods).
    #[arg(long)]
    tiny: bool,
    /// Hollow nodes per workload.
    #[arg(long, default_value_t = 5_000)]
    nodes: usize,
    /// Basic: pods created (and bound) before measuring.
    #[arg(long, default_value_t = 1_000)]
    basic_init: usize,
    /// Basic: measured pods.
    #[arg(long, default_value_t = 10_000)]
    basic_pods: usize,
    /// Spread: init pods.
    #[arg(long, default_value_t = 5_000)]
    spread_init: usize,
    /// Spread: measured pods.
    #[arg(long, default_value_t = 5_000)]
    spread_pods: usize,
    /// Anti-affinity: init pods.
    #[arg(long, default_value_t = 1_000)]
    anti_init: usize,
    /// Anti-affinity: measured pods.
    #[arg(long, default_value_t = 2_000)]
    anti_pods: usize,
    /// Concurrent clients creating objects (one keep-alive TLS connection each).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// The `daas-enclave` binary (default: next to this `daas`, then on PATH).
    #[arg(long)]
    enclave: Option<PathBuf>,
}

pub(crate) fn run(mut args: SchedulerBenchArgs) -> anyhow::Result<()> {
    if args.tiny {
        (args.nodes, args.basic_init, args.basic_pods) = (100, 20, 300);
        (
            args.spread_init,
            args.spread_pods,
            args.anti_init,
            args.anti_pods,
        ) = (100, 100, 20, 40);
    }
    anyhow::ensure!(
        args.nodes > 0 && args.concurrency > 0,
        "--nodes and --concurrency must be at least 1"
    );
    anyhow::ensure!(
        args.anti_init + args.anti_pods <= args.nodes,
        "required anti-affinity on the hostname needs a node per pod: --anti-init + --anti-pods <= --nodes"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(args))
}

/// Which scheduler_perf workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    Basic,
    Spread,
    AntiAffinity,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Basic => "SchedulingBasic",
            Workload::Spread => "TopologySpreading",
            Workload::AntiAffinity => "SchedulingPodAntiAffinity",
        }
    }

    /// Upstream CI's floor for the full-size workload, in pods/s.
    fn floor(self) -> f64 {
        match self {
            Workload::Basic => 680.0,
            Workload::Spread => 460.0,
            Workload::AntiAffinity => 60.0,
        }
    }

    /// (namespace of init pods, namespace of measured pods).
    fn namespaces(self) -> (&'static str, &'static str) {
        match self {
            Workload::AntiAffinity => ("sched-0", "sched-1"),
            _ => ("default", "sched-measure"),
        }
    }

    fn init_pod(self, name: &str) -> Value {
        match self {
            Workload::AntiAffinity => anti_affinity_pod(name),
            _ => default_pod(name),
        }
    }

    fn measured_pod(self, name: &str) -> Value {
        match self {
            Workload::Basic => default_pod(name),
            Workload::Spread => spreading_pod(name),
            Workload::AntiAffinity => anti_affinity_pod(name),
        }
    }
}

fn container() -> Value {
    json!([{"image": "registry.k8s.io/pause:3.10", "name": "pause", "ports": [{"containerPort": 80}],
        "resources": {"limits": {"cpu": "100m", "memory": "500Mi"}, "requests": {"cpu": "100m", "memory": "500Mi"}}}])
}

/// upstream's `templates/pod-default.yaml`.
fn default_pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": container()}})
}

/// upstream's `templates/pod-with-topology-spreading.yaml`.
fn spreading_pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"color": "blue"}},
        "spec": {"topologySpreadConstraints": [{"maxSkew": 5, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"color": "blue"}}}],
            "containers": container()}})
}

/// upstream's `templates/pod-with-pod-anti-affinity.yaml`.
fn anti_affinity_pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"color": "green"}},
        "spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"color": "green"}}, "topologyKey": "kubernetes.io/hostname",
             "namespaces": ["sched-1", "sched-0"]}]}},
            "containers": container()}})
}

/// upstream's `templates/node-default.yaml`, with a hostname label and,
/// for the spread workload, a zone.
fn hollow_node(i: usize, zoned: bool) -> Value {
    let name = format!("scheduler-perf-{i:05}");
    let mut n = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}, "spec": {},
        "status": {"capacity": {"pods": "110", "cpu": "4", "memory": "32Gi"},
            "conditions": [{"status": "True", "type": "Ready"}], "phase": "Running"}});
    if zoned {
        let zone = ["moon-1", "moon-2", "moon-3"][i % 3];
        n["metadata"]["labels"]["topology.kubernetes.io/zone"] = json!(zone);
    }
    n
}

/// A running `daas-enclave --dev` in a temporary directory; killed on drop.
struct Enclave {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Enclave {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The enclave's address, a TLS connector trusting its dev CA, the admin token.
#[derive(Clone)]
struct Client {
    addr: SocketAddr,
    tls: TlsConnector,
    authorization: String,
}

use crate::api::{Connection, exchange};

fn start(program: &Path) -> anyhow::Result<(Enclave, Client)> {
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut child = Command::new(program)
        .arg("--dev")
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--listen")
        .arg(format!("tcp:{addr}"))
        .args(["--snapshot-interval", "0"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let stdout = child.stdout.take().context("enclave stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.starts_with("ready ") => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e).context("reading the enclave's output"),
            None => bail!("daas-enclave exited before it was ready"),
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    let pki = enclave::api::pki::DevPki::load_or_create(dir.path(), &[])
        .context("reading the dev credentials")?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(
        CertificateDer::from_pem_slice(pki.server_cert_pem.as_bytes())
            .context("the server certificate")?,
    )?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let client = Client {
        addr,
        tls: TlsConnector::from(Arc::new(config)),
        authorization: format!("Bearer {}", pki.admin_token),
    };
    Ok((Enclave { child, _dir: dir }, client))
}

impl Client {
    async fn connect(&self) -> anyhow::Result<Connection> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let tls = self
            .tls
            .connect(ServerName::IpAddress(self.addr.ip().into()), tcp)
            .await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        Ok(sender)
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Request<Full<Bytes>>> {
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        Ok(Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
            .header("authorization", &self.authorization)
            .header("accept", "application/json")
            .header("content-type", "application/json")
            .header("user-agent", "daas-bench-scheduler")
            .body(Full::new(bytes))?)
    }
}

/// POSTs `bodies` to `path` from `concurrency` clients; returns when each was created.
async fn create_all(
    client: &Client,
    path: &str,
    bodies: Vec<Value>,
    concurrency: usize,
) -> anyhow::Result<HashMap<String, Instant>> {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let created = Arc::new(Mutex::new(HashMap::with_capacity(bodies.len())));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(bodies.len()) {
        let mut conn = client.connect().await?;
        let (client, bodies, next, created, path) = (
            client.clone(),
            bodies.clone(),
            next.clone(),
            created.clone(),
            path.to_string(),
        );
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return Ok::<_, anyhow::Error>(());
                };
                exchange(
                    &mut conn,
                    client.request(Method::POST, &path, Some(body))?,
                    StatusCode::CREATED,
                )
                .await?;
                let name = body["metadata"]["name"].as_str().unwrap_or("").to_string();
                created
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .insert(name, Instant::now());
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let created = std::mem::take(&mut *created.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    Ok(created)
}

/// The part of a watch event the bench reads.
#[derive(serde::Deserialize)]
struct WatchLine<'a> {
    #[serde(borrow)]
    object: Watched<'a>,
}

#[derive(serde::Deserialize)]
struct Watched<'a> {
    #[serde(borrow)]
    metadata: WatchedMeta<'a>,
    #[serde(borrow, default)]
    spec: Option<WatchedSpec<'a>>,
}

#[derive(serde::Deserialize)]
struct WatchedMeta<'a> {
    #[serde(borrow, default)]
    name: std::borrow::Cow<'a, str>,
}

#[derive(serde::Deserialize)]
struct WatchedSpec<'a> {
    #[serde(borrow, default, rename = "nodeName")]
    node_name: Option<std::borrow::Cow<'a, str>>,
}

/// Watches pods in `ns` from now; the task returns when `want` distinct
/// pods were bound, with the time each was.
async fn watch_bound(
    client: &Client,
    ns: &str,
    want: usize,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<HashMap<String, Instant>>>> {
    let mut conn = client.connect().await?;
    let list = exchange(
        &mut conn,
        client.request(
            Method::GET,
            &format!("/api/v1/namespaces/{ns}/pods?limit=1"),
            None,
        )?,
        StatusCode::OK,
    )
    .await?;
    let rv = serde_json::from_slice::<Value>(&list)?["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    let req = client.request(
        Method::GET,
        &format!("/api/v1/namespaces/{ns}/pods?watch=1&resourceVersion={rv}&timeoutSeconds=3600"),
        None,
    )?;
    conn.ready().await?;
    let resp = conn.send_request(req).await?;
    if resp.status() != StatusCode::OK {
        bail!("watch pods: {}", resp.status());
    }
    Ok(tokio::spawn(async move {
        let mut body = resp.into_body();
        let mut pending = Vec::new();
        let mut bound = HashMap::with_capacity(want);
        while bound.len() < want {
            let Some(frame) = body.frame().await else {
                bail!("the watch ended after {} of {want} bound pods", bound.len());
            };
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            let now = Instant::now();
            pending.extend_from_slice(&data);
            let mut start = 0;
            while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
                let line = &pending[start..start + end];
                start += end + 1;
                let ev: WatchLine<'_> = serde_json::from_slice(line)?;
                if ev
                    .object
                    .spec
                    .and_then(|s| s.node_name)
                    .is_some_and(|n| !n.is_empty())
                {
                    bound
                        .entry(ev.object.metadata.name.into_owned())
                        .or_insert(now);
                }
            }
            pending.drain(..start);
        }
        Ok(bound)
    }))
}

/// CPU time (user + system) of process `pid` so far (`None`: this process).
fn cpu_time(pid: Option<u32>) -> anyhow::Result<Duration> {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_string(),
        |p| format!("/proc/{p}/stat"),
    );
    let stat = std::fs::read_to_string(&path)?;
    // The fields after the command name (which may hold spaces) follow its ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .context("malformed stat")
    };
    // utime and stime (fields 14 and 15), in USER_HZ: 100 per second on Linux.
    Ok(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}

/// What one workload measured.
struct Measured {
    overall: f64,
    sampled: f64,
    samples: usize,
    latency: (Duration, Duration),
    took: Duration,
}

/// Creates `pods` in `ns` and waits until all are bound.
async fn phase(
    client: &Client,
    ns: &str,
    pods: Vec<Value>,
    concurrency: usize,
) -> anyhow::Result<Measured> {
    let n = pods.len();
    let watcher = watch_bound(client, ns, n).await?;
    let start = Instant::now();
    let created = create_all(
        client,
        &format!("/api/v1/namespaces/{ns}/pods"),
        pods,
        concurrency,
    )
    .await?;
    let bound = tokio::time::timeout(Duration::from_secs(1800), watcher)
        .await
        .context("pods were not all bound within 30 minutes")???;
    let last = bound.values().max().copied().unwrap_or(start);
    let took = last.duration_since(start);
    let mut per_second = vec![0usize; took.as_secs() as usize + 1];
    for t in bound.values() {
        per_second[t.duration_since(start).as_secs() as usize] += 1;
    }
    // Full 1-second samples only, as upstream's collector takes them.
    let full = &per_second[..per_second.len() - 1];
    let overall = n as f64 / took.as_secs_f64().max(1e-9);
    let sampled = if full.is_empty() {
        overall
    } else {
        full.iter().sum::<usize>() as f64 / full.len() as f64
    };
    let latencies = bound
        .iter()
        .filter_map(|(name, t)| created.get(name).map(|c| t.saturating_duration_since(*c)))
        .collect();
    Ok(Measured {
        overall,
        sampled,
        samples: full.len(),
        latency: percentiles(latencies),
        took,
    })
}

async fn workload(
    program: &Path,
    w: Workload,
    args: &SchedulerBenchArgs,
) -> anyhow::Result<(Measured, Option<(u64, u64)>)> {
    let (init, measured) = match w {
        Workload::Basic => (args.basic_init, args.basic_pods),
        Workload::Spread => (args.spread_init, args.spread_pods),
        Workload::AntiAffinity => (args.anti_init, args.anti_pods),
    };
    let (enclave, client) = start(program)?;
    let (init_ns, measure_ns) = w.namespaces();
    let mut conn = client.connect().await?;
    for ns in [init_ns, measure_ns]
        .into_iter()
        .filter(|n| *n != "default")
    {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        exchange(
            &mut conn,
            client.request(Method::POST, "/api/v1/namespaces", Some(&body))?,
            StatusCode::CREATED,
        )
        .await?;
    }
    let nodes = (0..args.nodes)
        .map(|i| hollow_node(i, w == Workload::Spread))
        .collect();
    let t = Instant::now();
    create_all(&client, "/api/v1/nodes", nodes, args.concurrency).await?;
    let node_secs = t.elapsed().as_secs_f64();
    let init_pods = (0..init)
        .map(|i| w.init_pod(&format!("init-{i:05}")))
        .collect();
    let t = Instant::now();
    if init > 0 {
        phase(&client, init_ns, init_pods, args.concurrency).await?;
    }
    println!(
        "{}: {} nodes created in {node_secs:.1} s; {init} init pods bound in {:.1} s",
        w.name(),
        args.nodes,
        t.elapsed().as_secs_f64()
    );
    let pods = (0..measured)
        .map(|i| w.measured_pod(&format!("pod-{i:05}")))
        .collect();
    let (enclave_cpu, own_cpu) = (cpu_time(Some(enclave.child.id()))?, cpu_time(None)?);
    let m = phase(&client, measure_ns, pods, args.concurrency).await?;
    let per_pod = |d: Duration| d.as_secs_f64() * 1e6 / measured.max(1) as f64;
    let enclave_cpu = per_pod(cpu_time(Some(enclave.child.id()))?.saturating_sub(enclave_cpu));
    let own_cpu = per_pod(cpu_time(None)?.saturating_sub(own_cpu));
    let rss = if w == Workload::Basic {
        let pid = enclave.child.id();
        Some((
            proc_status_kib(pid, "VmRSS")?,
            proc_status_kib(pid, "VmHWM")?,
        ))
    } else {
        None
    };
    println!(
        "{}: {measured} pods bound in {:.2} s: {:.0} pods/s (average of {} 1-s samples {:.0}); create-to-bound p50 {:.0} ms p99 {:.0} ms; upstream floor {:.0}",
        w.name(),
        m.took.as_secs_f64(),
        m.overall,
        m.samples,
        m.sampled,
        m.latency.0.as_secs_f64() * 1e3,
        m.latency.1.as_secs_f64() * 1e3,
        w.floor()
    );
    println!(
        "{}: CPU per measured pod: enclave {enclave_cpu:.0} µs, this load generator {own_cpu:.0} µs",
        w.name()
    );
    Ok((m, rss))
}

async fn run_async(args: SchedulerBenchArgs) -> anyhow::Result<()> {
    let program = match &args.enclave {
        Some(p) => p.clone(),
        None => crate::find_program("daas-enclave")?,
    };
    println!(
        "workloads (scheduler_perf shapes): {} nodes; basic {}+{} pods; spread {}+{}; anti-affinity {}+{}; {} clients",
        args.nodes,
        args.basic_init,
        args.basic_pods,
        args.spread_init,
        args.spread_pods,
        args.anti_init,
        args.anti_pods,
        args.concurrency
    );
    let (basic, rss) = workload(&program, Workload::Basic, &args).await?;
    if let Some((rss, hwm)) = rss {
        println!(
            "enclave RSS with {} nodes and {} pods: {:.1} MiB (peak {:.1} MiB)",
            args.nodes,
            args.basic_init + args.basic_pods,
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        );
    }
    let (spread, _) = workload(&program, Workload::Spread, &args).await?;
    let (anti, _) = workload(&program, Workload::AntiAffinity, &args).await?;
    println!(
        "scheduler pods/s: basic {:.0}  spread {:.0}  anti-affinity {:.0}",
        basic.overall, spread.overall, anti.overall
    );
    Ok(())
}
