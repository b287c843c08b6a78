//! `daas bench join`: join handshakes against one real `daas-enclave --dev` admitting nodes
//! against a local registry, measured from the worker's side as `daas-worker` does them: a new
//! TLS connection, `/attestation` with a fresh nonce verified (ES384 chain under the dev root,
//! the registry's allowed image and live enclave, the TLS binding), a challenge, the stake
//! owner's Ed25519 signature over the join statement, and the join (the enclave verifies the
//! signature, reads the registry, issues a node certificate and stores the node's binding).
//! Each join is for its own node name and stake. Then one real `daas-worker run` is started,
//! left to register its Node and renew its Lease, and its idle memory is read.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chain::attest::{RootKind, TrustPolicy};
use chain::{
    AccountKeystore, AnyRegistry, ClusterSettings, ClusterState, OpenOptions, Pcrs, Registry,
    RegistryAdmin, RegistryUrl, SuiAccount,
};
use rcgen::PublicKeyData as _;
use worker::client::ServerUrl;

use crate::{percentiles, proc_status_kib};

/// Options for `daas bench join`.
#[derive(Debug, clap::Args)]
pub(crate) struct JoinBenchArgs {
    /// Join handshakes (each for its own node name and stake).
    #[arg(long, default_value_t = 100)]
    joins: usize,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Seconds the idle `daas-worker` runs before its memory is read.
    #[arg(long, default_value_t = 20)]
    idle_secs: u64,
    /// The `daas-enclave` binary (default: next to this `daas`, then on PATH).
    #[arg(long)]
    enclave: Option<PathBuf>,
    /// The `daas-worker` binary (default: next to this `daas`, then on PATH).
    #[arg(long)]
    worker: Option<PathBuf>,
}

pub(crate) fn run(args: JoinBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.joins > 0 && args.concurrency > 0,
        "--joins and --concurrency must be at least 1"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_async(args))
}

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for a stdout line of `child` starting with `prefix`; the rest of its stdout is
/// drained in the background.
fn wait_line(child: &mut Child, prefix: &str) -> anyhow::Result<()> {
    use std::io::BufRead as _;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = std::io::BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.starts_with(prefix) => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e).context("reading the child's output"),
            None => bail!("the child exited before printing {prefix:?}"),
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Everything a handshake needs, shared by the tasks.
struct Setup {
    server: ServerUrl,
    policy: TrustPolicy,
    state: ClusterState,
    staker: AccountKeystore,
}

/// One join handshake for `node`, as the worker does it (the node key is made beforehand).
async fn handshake(setup: &Setup, node: &str, node_spki: Vec<u8>) -> anyhow::Result<()> {
    let mut attested = worker::attest(&setup.server, &setup.policy, Some(&setup.state))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let account = setup.staker.account(None)?;
    let credentials = worker::join::join_on(
        &mut attested.connection,
        setup.state.id,
        attested.tls_key_sha256,
        node,
        node_spki,
        account,
    )
    .await?;
    anyhow::ensure!(
        credentials.node_name == node,
        "credentials for another node"
    );
    Ok(())
}

async fn run_async(args: JoinBenchArgs) -> anyhow::Result<()> {
    let enclave_bin = match &args.enclave {
        Some(p) => p.clone(),
        None => crate::find_program("daas-enclave")?,
    };
    let worker_bin = match &args.worker {
        Some(p) => p.clone(),
        None => crate::find_program("daas-worker")?,
    };
    let dir = tempfile::tempdir()?;
    let registry_path = dir.path().join("registry.json");
    let url = RegistryUrl::Local(registry_path.clone());
    let admin_keystore = dir.path().join("admin.keystore");
    let staker_keystore = dir.path().join("staker.keystore");
    for path in [&admin_keystore, &staker_keystore] {
        let mut keystore = AccountKeystore::load_or_empty(path)?;
        keystore.push(SuiAccount::generate()?);
        keystore.save()?;
    }
    let as_account = |keystore: &Path| OpenOptions {
        keystore: Some(keystore.to_path_buf()),
        ..OpenOptions::default()
    };
    let settings = ClusterSettings {
        min_stake: 1,
        unstake_cooldown_ms: 0,
        max_document_age_ms: 300_000,
    };
    AnyRegistry::init(&url, "bench", settings, &as_account(&admin_keystore)).await?;
    let staker = AnyRegistry::open(&url, &as_account(&staker_keystore)).await?;
    let idle_node = "bench-idle";
    for i in 0..args.joins {
        staker.stake(&format!("bench-{i}"), 1).await?;
    }
    staker.stake(idle_node, 1).await?;

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut enclave = Command::new(&enclave_bin)
        .args(["--dev", "--listen", &format!("tcp:127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.path().join("enclave"))
        .args(["--registry", &url.to_string(), "--snapshot-interval", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", enclave_bin.display()))?;
    wait_line(&mut enclave, "ready ")?;
    let _enclave = Killed(enclave);

    let server: ServerUrl = format!("https://127.0.0.1:{port}")
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    let dev_root = dir
        .path()
        .join("enclave")
        .join(enclave::api::attestation::DEV_ROOT_CERT);
    let policy = TrustPolicy {
        verifier: attestation::Verifier::dangerous_trust_root_pem(&std::fs::read(&dev_root)?)?,
        root: RootKind::Dev,
        expected_pcrs: Vec::new(),
        max_age: Duration::from_secs(300),
    };
    // Register the enclave (this first attestation also waits for the dev NSM's setup).
    let first = worker::attest(&server, &policy, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let [pcr0, pcr1, pcr2] = attestation::measure_binary_file(&enclave_bin)?;
    let admin = AnyRegistry::open(
        &url,
        &OpenOptions {
            verifier: policy.verifier.clone(),
            ..as_account(&admin_keystore)
        },
    )
    .await?;
    admin
        .allow_image(Pcrs { pcr0, pcr1, pcr2 }, "bench", 1)
        .await?;
    admin.register_enclave(&first.document).await?;
    drop(first);

    let setup = Arc::new(Setup {
        server: server.clone(),
        policy,
        state: staker.cluster().await?,
        staker: AccountKeystore::load(&staker_keystore)?,
    });
    let keys: Vec<Vec<u8>> = (0..args.joins)
        .map(|_| rcgen::KeyPair::generate().map(|k| k.subject_public_key_info()))
        .collect::<Result<_, _>>()?;
    let keys = Arc::new(keys);
    println!(
        "workload: {} join handshakes ({} in flight) against {} (dev NSM, local registry)",
        args.joins,
        args.concurrency,
        enclave_bin.display()
    );
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency.min(args.joins) {
        let (setup, keys, next) = (setup.clone(), keys.clone(), next.clone());
        let total = args.joins;
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(key) = keys.get(i).filter(|_| i < total) else {
                    return Ok::<_, anyhow::Error>(latencies);
                };
                let t = Instant::now();
                handshake(&setup, &format!("bench-{i}"), key.clone())
                    .await
                    .with_context(|| format!("join {i}"))?;
                latencies.push(t.elapsed());
            }
        });
    }
    let mut latencies = Vec::with_capacity(args.joins);
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done??);
    }
    let elapsed = start.elapsed();
    let count = latencies.len();
    let (p50, p99) = percentiles(latencies);
    println!(
        "join handshakes: {count} in {:.2} s: {:.1} joins/s   p50 {:.1} ms   p99 {:.1} ms",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
        ms(p50),
        ms(p99)
    );

    // One real worker, idle after registering its Node.
    let worker_dir = dir.path().join("idle-worker");
    let mut worker = Command::new(&worker_bin)
        .args([
            "run",
            "--server",
            &server.url,
            "--registry",
            &url.to_string(),
        ])
        .arg("--keystore")
        .arg(&staker_keystore)
        .args(["--node-name", idle_node])
        .arg("--data-dir")
        .arg(&worker_dir)
        .arg("--dev-root")
        .arg(&dev_root)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", worker_bin.display()))?;
    wait_line(&mut worker, "joined ")?;
    let worker = Killed(worker);
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let rss = proc_status_kib(worker.0.id(), "VmRSS")?;
    let hwm = proc_status_kib(worker.0.id(), "VmHWM")?;
    println!(
        "daas-worker idle after {} s (Node registered, Lease renewing): RSS {:.1} MiB, peak {:.1} MiB",
        args.idle_secs,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    Ok(())
}
