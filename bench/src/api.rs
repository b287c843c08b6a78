//! `daas bench api`: the real `daas-enclave --dev` under kubectl-like load over TLS, measured from outside the
//! process: how soon it is ready, GET of one object, LIST of many objects as JSON and as a server-side Table,
//! create and delete of configmaps, and many concurrent watchers receiving each change. Every request carries the
//! admin bearer token and goes over its own keep-alive TLS connection per client, as kubectl's do.

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
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{find_program, percentiles, proc_status_kib};

/// Options for `daas bench api`.
#[derive(Debug, clap::Args)]
pub(crate) struct ApiBenchArgs {
    /// Concurrent clients (one keep-alive TLS connection each) for the request phases.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// GETs of one configmap.
    #[arg(long, default_value_t = 20_000)]
    gets: usize,
    /// Objects in the listed namespace.
    #[arg(long, default_value_t = 500)]
    list_objects: usize,
    /// LIST requests per encoding (JSON, Table).
    #[arg(long, default_value_t = 300)]
    lists: usize,
    /// Pods in the namespace of the large LIST (0: no such phase).
    #[arg(long, default_value_t = 5_000)]
    list_pods: usize,
    /// LISTs of all those pods, one at a time (the latency of one large LIST).
    #[arg(long, default_value_t = 30)]
    pod_lists: usize,
    /// Configmaps created (and then deleted).
    #[arg(long, default_value_t = 4_000)]
    creates: usize,
    /// Concurrent watchers, each on its own connection.
    #[arg(long, default_value_t = 1_000)]
    watchers: usize,
    /// Changes delivered to all watchers, one at a time.
    #[arg(long, default_value_t = 20)]
    watch_changes: usize,
    /// The `daas-enclave` binary (default: next to `daas-bench`, which is next to `daas`, then on PATH).
    #[arg(long)]
    enclave: Option<PathBuf>,
}

pub(crate) fn run(args: ApiBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.concurrency > 0 && args.gets > 0 && args.lists > 0 && args.creates > 0,
        "--concurrency, --gets, --lists and --creates must be at least 1"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(args))
}

/// A running `daas-enclave --dev` in a temporary directory; killed on drop.
struct Enclave {
    child: Child,
    addr: SocketAddr,
    ready_after: Duration,
    _dir: tempfile::TempDir,
}

impl Enclave {
    fn start(program: &Path) -> anyhow::Result<(Self, Client)> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
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
        let ready_after = loop {
            match lines.next() {
                Some(Ok(line)) if line.starts_with("ready ") => break started.elapsed(),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e).context("reading the enclave's output"),
                None => bail!("daas-enclave exited before it was ready"),
            }
        };
        // Keep draining stdout so the enclave never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let pki = enclave::api::pki::DevPki::load_or_create(dir.path(), &[])
            .context("reading the dev credentials")?;
        let client = Client::new(addr, &pki.server_cert_pem, &pki.admin_token)?;
        Ok((
            Self {
                child,
                addr,
                ready_after,
                _dir: dir,
            },
            client,
        ))
    }

    /// `field` (`VmRSS`, `VmHWM`) of the enclave process, in KiB.
    fn memory_kib(&self, field: &str) -> anyhow::Result<u64> {
        proc_status_kib(self.child.id(), field)
    }
}

impl Drop for Enclave {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How to reach the enclave: its address, a TLS connector trusting its dev CA, the admin token.
#[derive(Clone)]
pub(super) struct Client {
    addr: SocketAddr,
    tls: TlsConnector,
    authorization: String,
}

/// One keep-alive TLS connection.
pub(super) type Connection = SendRequest<Full<Bytes>>;

impl Client {
    fn new(addr: SocketAddr, ca_pem: &str, token: &str) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).context("the dev CA")?)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            addr,
            tls: TlsConnector::from(Arc::new(config)),
            authorization: format!("Bearer {token}"),
        })
    }

    /// The same server as another user.
    pub(super) fn with_token(&self, token: &str) -> Self {
        Self {
            authorization: format!("Bearer {token}"),
            ..self.clone()
        }
    }

    pub(super) async fn connect(&self) -> anyhow::Result<Connection> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::IpAddress(self.addr.ip().into());
        let tls = self.tls.connect(name, tcp).await.context("TLS handshake")?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        Ok(sender)
    }

    pub(super) fn request(
        &self,
        method: Method,
        path: &str,
        accept: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
            .header("authorization", &self.authorization)
            .header("accept", accept)
            .header("user-agent", "daas-bench-api");
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        Ok(req.body(Full::new(Bytes::from(body.unwrap_or_default())))?)
    }
}

/// Sends one request and reads the whole response; errors on a status other than `want`.
pub(super) async fn exchange(
    conn: &mut Connection,
    req: Request<Full<Bytes>>,
    want: StatusCode,
) -> anyhow::Result<Bytes> {
    let what = format!("{} {}", req.method(), req.uri());
    conn.ready().await?;
    let resp = conn.send_request(req).await.with_context(|| what.clone())?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if status != want {
        bail!(
            "{what}: {status} (wanted {want}): {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(body)
}

pub(super) const JSON: &str = "application/json";
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

/// What one request phase measured.
pub(super) struct Phase {
    pub(super) per_sec: f64,
    p50: Duration,
    p99: Duration,
}

/// Runs `total` requests from `concurrency` clients, each on its own connection; `make(i)` builds request `i`.
pub(super) async fn drive(
    client: &Client,
    total: usize,
    concurrency: usize,
    want: StatusCode,
    make: impl Fn(&Client, usize) -> anyhow::Result<Request<Full<Bytes>>> + Send + Sync + 'static,
) -> anyhow::Result<Phase> {
    let make = Arc::new(make);
    let next = Arc::new(AtomicUsize::new(0));
    let mut conns = Vec::new();
    for _ in 0..concurrency.min(total) {
        conns.push(client.connect().await?);
    }
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut conn in conns {
        let (client, make, next) = (client.clone(), make.clone(), next.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let req = make(&client, i)?;
                let t = Instant::now();
                exchange(&mut conn, req, want).await?;
                latencies.push(t.elapsed());
            }
        });
    }
    let mut latencies = Vec::with_capacity(total);
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done??);
    }
    let elapsed = start.elapsed();
    let (p50, p99) = percentiles(latencies);
    Ok(Phase {
        per_sec: total as f64 / elapsed.as_secs_f64(),
        p50,
        p99,
    })
}

fn configmap(name: &str) -> Vec<u8> {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "data": {"config.yaml": "x".repeat(512)}
    })
    .to_string()
    .into_bytes()
}

/// A pod as `kubectl run` makes one, for a scheduler that does not exist: nothing acts on it, so
/// the LIST phase measures reads alone.
fn pod(name: &str) -> Vec<u8> {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"run": name, "app": "bench"}},
        "spec": {
            "schedulerName": "bench-no-scheduler",
            "containers": [{
                "name": "main",
                "image": "registry.k8s.io/pause:3.10",
                "args": ["--listen", ":8080"],
                "ports": [{"containerPort": 8080}],
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}
            }]
        }
    })
    .to_string()
    .into_bytes()
}

fn namespace(name: &str) -> Vec<u8> {
    serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        .to_string()
        .into_bytes()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub(super) fn print_phase(name: &str, p: &Phase) {
    println!(
        "{name:<28} {:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
        p.per_sec,
        ms(p.p50),
        ms(p.p99)
    );
}

async fn run_async(args: ApiBenchArgs) -> anyhow::Result<()> {
    let program = match &args.enclave {
        Some(p) => p.clone(),
        None => find_program("daas-enclave")?,
    };
    println!(
        "workload: {} clients; {} GETs; {} LISTs of {} configmaps each as JSON and as Table; {} LISTs of {} pods; {} creates then deletes; {} watchers x {} changes",
        args.concurrency,
        args.gets,
        args.lists,
        args.list_objects,
        args.pod_lists,
        args.list_pods,
        args.creates,
        args.watchers,
        args.watch_changes
    );
    raise_open_files_limit(args.watchers * 2 + 256)?;
    let (enclave, client) = Enclave::start(&program)?;
    // The dev NSM measures the binary in the background after `ready`; one attestation waits for that, so it
    // does not compete with the measured phases.
    let mut setup = client.connect().await?;
    let req = client.request(
        Method::GET,
        "/attestation?nonce=00",
        "application/cbor",
        None,
    )?;
    exchange(&mut setup, req, StatusCode::OK).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = enclave.memory_kib("VmRSS")?;
    println!(
        "{} ready {:.0} ms after start; idle RSS {:.1} MiB",
        program.display(),
        ms(enclave.ready_after),
        idle_rss as f64 / 1024.0
    );

    for ns in ["bench-list", "bench-create", "bench-watch", "bench-pods"] {
        let req = client.request(
            Method::POST,
            "/api/v1/namespaces",
            JSON,
            Some(namespace(ns)),
        )?;
        exchange(&mut setup, req, StatusCode::CREATED).await?;
    }
    let req = client.request(
        Method::POST,
        "/api/v1/namespaces/default/configmaps",
        JSON,
        Some(configmap("bench-get")),
    )?;
    exchange(&mut setup, req, StatusCode::CREATED).await?;
    drive(
        &client,
        args.list_objects,
        args.concurrency,
        StatusCode::CREATED,
        |c, i| {
            c.request(
                Method::POST,
                "/api/v1/namespaces/bench-list/configmaps",
                JSON,
                Some(configmap(&format!("listed-{i:05}"))),
            )
        },
    )
    .await?;

    let get = drive(
        &client,
        args.gets,
        args.concurrency,
        StatusCode::OK,
        |c, _| {
            c.request(
                Method::GET,
                "/api/v1/namespaces/default/configmaps/bench-get",
                JSON,
                None,
            )
        },
    )
    .await?;
    print_phase("GET one configmap", &get);
    super::api_authz::run(
        &client,
        enclave.child.id(),
        args.gets,
        args.concurrency,
        &get,
    )
    .await?;
    let mut json_list = None;
    for (name, accept) in [("JSON", JSON), ("Table", TABLE)] {
        let list = drive(
            &client,
            args.lists,
            args.concurrency,
            StatusCode::OK,
            move |c, _| {
                c.request(
                    Method::GET,
                    "/api/v1/namespaces/bench-list/configmaps",
                    accept,
                    None,
                )
            },
        )
        .await?;
        print_phase(&format!("LIST {} ({name})", args.list_objects), &list);
        if accept == JSON {
            json_list = Some(list);
        }
    }
    let mut pod_list = None;
    if args.list_pods > 0 && args.pod_lists > 0 {
        let made = drive(
            &client,
            args.list_pods,
            args.concurrency,
            StatusCode::CREATED,
            |c, i| {
                c.request(
                    Method::POST,
                    "/api/v1/namespaces/bench-pods/pods",
                    JSON,
                    Some(pod(&format!("pod-{i:05}"))),
                )
            },
        )
        .await?;
        print_phase("create pod", &made);
        let list = drive(&client, args.pod_lists, 1, StatusCode::OK, |c, _| {
            c.request(
                Method::GET,
                "/api/v1/namespaces/bench-pods/pods",
                JSON,
                None,
            )
        })
        .await?;
        print_phase(&format!("LIST {} pods (1 client)", args.list_pods), &list);
        pod_list = Some(list);
        println!(
            "enclave RSS with {} configmaps and {} pods: {:.1} MiB",
            args.list_objects + 1,
            args.list_pods,
            enclave.memory_kib("VmRSS")? as f64 / 1024.0
        );
    }
    let create = drive(
        &client,
        args.creates,
        args.concurrency,
        StatusCode::CREATED,
        |c, i| {
            c.request(
                Method::POST,
                "/api/v1/namespaces/bench-create/configmaps",
                JSON,
                Some(configmap(&format!("created-{i:06}"))),
            )
        },
    )
    .await?;
    print_phase("create configmap", &create);
    let delete = drive(
        &client,
        args.creates,
        args.concurrency,
        StatusCode::OK,
        |c, i| {
            c.request(
                Method::DELETE,
                &format!("/api/v1/namespaces/bench-create/configmaps/created-{i:06}"),
                JSON,
                None,
            )
        },
    )
    .await?;
    print_phase("delete configmap", &delete);

    let (_, watch_p99) = if args.watchers > 0 && args.watch_changes > 0 {
        let (p50, p99) =
            watch_phase(&client, &mut setup, args.watchers, args.watch_changes).await?;
        println!(
            "watch: {} watchers x {} changes: delivery p50 {:.2} ms  p99 {:.2} ms (from just before the write to the event's arrival)",
            args.watchers,
            args.watch_changes,
            ms(p50),
            ms(p99)
        );
        (p50, p99)
    } else {
        (Duration::ZERO, Duration::ZERO)
    };
    let peak_rss = enclave.memory_kib("VmHWM")?;
    println!(
        "enclave peak RSS {:.1} MiB (server {})",
        peak_rss as f64 / 1024.0,
        enclave.addr
    );
    println!(
        "api: GET {:.0}/s  create {:.0}/s  watch p99 {:.1} ms  idle RSS {:.1} MiB  ready {:.0} ms  (targets: >= 10000, >= 2000, <= 50, <= 40, <= 1000)",
        get.per_sec,
        create.per_sec,
        ms(watch_p99),
        idle_rss as f64 / 1024.0,
        ms(enclave.ready_after)
    );
    if let Some(list) = json_list {
        println!(
            "reads: LIST {} configmaps {:.0}/s p99 {:.1} ms (targets >= 1500, <= 25){}",
            args.list_objects,
            list.per_sec,
            ms(list.p99),
            pod_list
                .map(|p| format!(
                    "; LIST {} pods p99 {:.1} ms (target <= 100)",
                    args.list_pods,
                    ms(p.p99)
                ))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// Raises this process's soft limit on open files to at least `want` (up to the hard limit); the enclave
/// inherits it. Each watcher holds one descriptor on each side.
fn raise_open_files_limit(want: usize) -> anyhow::Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let want = u64::try_from(want).unwrap_or(u64::MAX);
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= want {
        return Ok(());
    }
    if hard < want {
        bail!(
            "{want} open files are needed but the hard limit is {hard}: raise it (ulimit -Hn) or use fewer --watchers"
        );
    }
    setrlimit(Resource::RLIMIT_NOFILE, want, hard)?;
    Ok(())
}

/// The part of a watch event line a watcher reads: parsed without building the object, so the load generator, which
/// shares the machine with the server, spends little of it on a thousand copies of each event.
#[derive(serde::Deserialize)]
struct WatchLine<'a> {
    #[serde(borrow)]
    object: WatchedObject<'a>,
}

#[derive(serde::Deserialize)]
struct WatchedObject<'a> {
    #[serde(borrow)]
    metadata: WatchedMetadata<'a>,
}

#[derive(serde::Deserialize)]
struct WatchedMetadata<'a> {
    #[serde(borrow, default)]
    name: std::borrow::Cow<'a, str>,
}

/// When each change was written, and how many watchers have seen it.
struct Changes {
    written: Vec<Option<Instant>>,
    seen: Vec<usize>,
    latencies: Vec<Duration>,
}

/// `watchers` watches on an empty namespace, each on its own connection; then `changes` configmaps created
/// one at a time, each only after every watcher saw the previous one.
async fn watch_phase(
    client: &Client,
    writer: &mut Connection,
    watchers: usize,
    changes: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let state = Arc::new(Mutex::new(Changes {
        written: vec![None; changes],
        seen: vec![0; changes],
        latencies: Vec::with_capacity(watchers * changes),
    }));
    let established = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..watchers {
        let (client, state, established) = (client.clone(), state.clone(), established.clone());
        tasks.spawn(async move { one_watcher(&client, &state, &established, changes).await });
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while established.load(Ordering::SeqCst) < watchers {
        if let Some(Some(Err(e))) = tasks.try_join_next().map(|r| r.ok()) {
            return Err(e.context("a watcher failed to start"));
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {watchers} watches were established within 120 s",
                established.load(Ordering::SeqCst)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for k in 0..changes {
        let req = client.request(
            Method::POST,
            "/api/v1/namespaces/bench-watch/configmaps",
            JSON,
            Some(configmap(&format!("watched-{k:05}"))),
        )?;
        if let Some(slot) = state.lock().map_err(poisoned)?.written.get_mut(k) {
            *slot = Some(Instant::now());
        }
        exchange(writer, req, StatusCode::CREATED).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let seen = state.lock().map_err(poisoned)?.seen.get(k).copied();
            if seen >= Some(watchers) {
                break;
            }
            if Instant::now() > deadline {
                bail!("change {k} reached only {seen:?} of {watchers} watchers within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    tasks.abort_all();
    let latencies = std::mem::take(&mut state.lock().map_err(poisoned)?.latencies);
    Ok(percentiles(latencies))
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> anyhow::Error {
    anyhow::anyhow!("benchmark state poisoned by a panic")
}

async fn one_watcher(
    client: &Client,
    state: &Mutex<Changes>,
    established: &AtomicUsize,
    changes: usize,
) -> anyhow::Result<()> {
    let mut conn = client.connect().await?;
    let req = client.request(
        Method::GET,
        "/api/v1/namespaces/bench-watch/configmaps?watch=true&timeoutSeconds=3600",
        JSON,
        None,
    )?;
    conn.ready().await?;
    let resp = conn.send_request(req).await?;
    if resp.status() != StatusCode::OK {
        bail!("watch: {}", resp.status());
    }
    established.fetch_add(1, Ordering::SeqCst);
    let mut body = resp.into_body();
    let mut pending = Vec::new();
    let mut received = 0;
    while received < changes {
        let Some(frame) = body.frame().await else {
            bail!("the watch ended after {received} of {changes} events");
        };
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        let arrived = Instant::now();
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let event: WatchLine<'_> = serde_json::from_slice(&line)?;
            let Some(k) = event
                .object
                .metadata
                .name
                .strip_prefix("watched-")
                .and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            let mut s = state.lock().map_err(poisoned)?;
            if let Some(Some(written)) = s.written.get(k).copied() {
                s.latencies.push(arrived.saturating_duration_since(written));
            }
            if let Some(seen) = s.seen.get_mut(k) {
                *seen += 1;
            }
            received += 1;
        }
    }
    Ok(())
}
