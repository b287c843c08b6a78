//! `daas bench relay`: kubectl-like HTTPS traffic against the enclave's socket directly, through [`Relay`], and
//! through `socat` doing the same job, in one run.
//!
//! The backend (rustls + hyper on a Unix socket), the relay and the load generator each run on their own
//! thread and tokio runtime; `socat` runs as `socat TCP-LISTEN:PORT,bind=127.0.0.1,fork,reuseaddr
//! UNIX-CONNECT:PATH` (one process per connection). Targets are measured in interleaved rounds so that noise
//! from other work on the machine spreads over all three.
//!
//! **CPU placement.** With at least two CPUs allowed (and `pin_cpus`, on by default), the throughput phase runs
//! the hop under test (our relay's threads, or socat and every process it forks) alone on the last allowed CPU
//! and the load generator and backend on the others. That is the production shape: an enclave's vCPUs are taken
//! away from the parent and clients are on other machines, so the relay competes with nothing but itself. It
//! also compares like with like (one core for our thread and for socat's processes) and removes the largest
//! source of noise on a small machine, where three busy parties share two cores: the scheduler placing the
//! hop with the load generator in one round and not in the next. The latency phase has one request in flight
//! and nothing competes, so it runs unpinned: pinning would put the client and the backend on one core, where
//! the direct path hands over without a cross-CPU wake-up and the relayed path cannot, which measures the
//! placement rather than the hop.
//!
//! Each round has two phases:
//!
//! - **throughput**: several concurrent clients, each with its own keep-alive connection, as many requests as
//!   they can; requests/s comes from this phase.
//! - **latency**: one client sending one request at a time, as kubectl does, over one connection per target,
//!   taking the targets in turn request by request ([`run_interleaved_latency`]), so a burst of other work on
//!   the machine lands on all three alike. Latency percentiles come from this phase, so that "added latency"
//!   is what one more hop costs a request, not the queueing of concurrent clients on a 2-core machine (which
//!   would otherwise swamp a few tens of microseconds).

mod backend;
mod load;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::{Pid, gettid};
use tokio_util::sync::CancellationToken;

pub use backend::{
    BENCH_SERVER_NAME, BenchIdentity, HttpsBackend, bench_identity, start_https_backend,
};
pub use load::{LoadSample, LoadShape, LoadTarget, run_interleaved_latency, run_load};

use crate::error::{Error, Result};
use crate::metrics::TrafficMetrics;
use crate::relay::{Relay, RelayConfig};
use crate::transport::{Endpoint, Listener};

pub(crate) fn bench_err(
    what: &'static str,
    e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> Error {
    Error::Bench {
        what,
        source: e.into(),
    }
}

/// The OS thread ids of a benchmark component's threads, so that they can be moved between CPUs per phase.
#[derive(Debug, Clone, Default)]
pub struct ThreadIds(Arc<Mutex<Vec<Pid>>>);

impl ThreadIds {
    /// Records the calling thread.
    fn register_current(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(gettid());
    }

    fn all(&self) -> Vec<Pid> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Runs `make()` to completion on a new thread with its own tokio runtime: current-thread for `workers <= 1`,
/// else multi-thread with `workers` workers. Every thread of it is recorded in `threads`.
pub(crate) fn on_own_runtime<F, Fut>(
    name: &str,
    workers: usize,
    threads: &ThreadIds,
    make: F,
) -> Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    // One worker: a current-thread runtime, so accept and relaying share one OS thread with no hand-offs.
    let mut builder = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    let workers_ids = threads.clone();
    builder.on_thread_start(move || workers_ids.register_current());
    let rt = builder
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|e| bench_err("starting a runtime", e))?;
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn({
            let threads = threads.clone();
            move || {
                threads.register_current();
                rt.block_on(make())
            }
        })
        .map_err(|e| bench_err("starting a thread", e))
}

/// Options for [`run_relay_bench`].
#[derive(Debug, Clone)]
pub struct RelayBenchOptions {
    /// The throughput phase's load per round and target.
    pub shape: LoadShape,
    /// The latency phase's sequential requests per round and target (one client; 0 skips the phase).
    pub latency_requests: usize,
    /// Interleaved rounds (direct, relay, socat, direct, ...).
    pub rounds: usize,
    /// Response body bytes.
    pub body_bytes: usize,
    /// Worker threads of the relay's runtime (1: a current-thread runtime).
    pub relay_threads: usize,
    /// The relay's [`busy_poll`](crate::relay::RelayConfigBuilder::busy_poll) window.
    pub relay_busy_poll: Duration,
    /// The socat program.
    pub socat: PathBuf,
    /// In the throughput phase, run the relay (or socat) alone on one CPU and the load on the others (see the
    /// module doc).
    pub pin_cpus: bool,
}

impl Default for RelayBenchOptions {
    /// 4 clients x 2000 GETs (+200 warmup), then 1 client x 3000 GETs, x 7 rounds, 2 KiB bodies, a 1-thread
    /// relay runtime, `socat` on `PATH`.
    fn default() -> Self {
        Self {
            shape: LoadShape {
                clients: 4,
                requests: 2000,
                warmup: 200,
            },
            latency_requests: 3000,
            rounds: 7,
            body_bytes: 2048,
            relay_threads: 1,
            relay_busy_poll: Duration::ZERO,
            socat: PathBuf::from("socat"),
            pin_cpus: true,
        }
    }
}

/// One target's totals over all rounds.
#[derive(Debug, Clone)]
pub struct TargetReport {
    /// `direct`, `relay` or `socat`.
    pub name: &'static str,
    /// Measured requests of the throughput phase.
    pub requests: u64,
    /// Sum of the rounds' measured wall times of the throughput phase.
    pub elapsed: Duration,
    /// Requests per second of each round's throughput phase, in round order.
    pub round_rps: Vec<f64>,
    /// All latencies of the latency phase (one client, one request at a time), nanoseconds, sorted.
    pub latencies_ns: Vec<u64>,
    /// Each round's latency-phase p99 in microseconds, in round order.
    pub round_p99_us: Vec<u64>,
}

impl TargetReport {
    /// Requests per second in the throughput phase.
    #[must_use]
    pub fn requests_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.requests as f64 / secs
        } else {
            0.0
        }
    }

    /// Nearest-rank percentile `p` (0 < p <= 100) of all rounds' latencies, in microseconds; 0 if nothing was
    /// measured.
    #[must_use]
    pub fn percentile_us(&self, p: f64) -> u64 {
        percentile_us(&self.latencies_ns, p)
    }
}

/// Nearest-rank percentile `p` of `sorted_ns` in microseconds; 0 if empty.
fn percentile_us(sorted_ns: &[u64], p: f64) -> u64 {
    let n = sorted_ns.len();
    if n == 0 {
        return 0;
    }
    let rank = ((p / 100.0) * n as f64).ceil().max(1.0) as usize;
    sorted_ns.get(rank.min(n) - 1).copied().unwrap_or_default() / 1000
}

/// The median of `values` (the mean of the middle two for an even count); 0 for none.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let upper = values.get(n / 2).copied().unwrap_or_default();
    if n % 2 == 1 {
        return upper;
    }
    let lower = n
        .checked_sub(1)
        .and_then(|_| values.get(n / 2 - 1))
        .copied()
        .unwrap_or(upper);
    (lower + upper) / 2.0
}

/// The three targets side by side.
#[derive(Debug, Clone)]
pub struct RelayBenchReport {
    /// Straight to the backend's Unix socket.
    pub direct: TargetReport,
    /// Through [`Relay`].
    pub relay: TargetReport,
    /// Through socat.
    pub socat: TargetReport,
}

impl RelayBenchReport {
    /// Each round's relay requests/s divided by the same round's socat requests/s, in round order.
    #[must_use]
    pub fn round_ratios(&self) -> Vec<f64> {
        self.relay
            .round_rps
            .iter()
            .zip(&self.socat.round_rps)
            .map(|(r, s)| if *s > 0.0 { r / s } else { 0.0 })
            .collect()
    }

    /// The median of [`round_ratios`](Self::round_ratios): relay and socat run back to back within a round, so
    /// a burst of other work on the machine skews one round's ratio, not the result.
    #[must_use]
    pub fn throughput_ratio(&self) -> f64 {
        median(self.round_ratios())
    }

    /// Each round's relay p99 minus the same round's direct p99, microseconds (negative when noise makes the
    /// relay look faster), in round order.
    #[must_use]
    pub fn round_added_p99_us(&self) -> Vec<i64> {
        self.relay
            .round_p99_us
            .iter()
            .zip(&self.direct.round_p99_us)
            .map(|(&r, &d)| i64::try_from(r).unwrap_or(i64::MAX) - i64::try_from(d).unwrap_or(0))
            .collect()
    }

    /// The median of [`round_added_p99_us`](Self::round_added_p99_us), for the same reason as the ratio: a
    /// burst of other work that stalls the whole machine for a moment sets one round's tail, not the result.
    #[must_use]
    pub fn added_p99_us(&self) -> i64 {
        median(
            self.round_added_p99_us()
                .into_iter()
                .map(|v| v as f64)
                .collect(),
        )
        .round() as i64
    }
}

impl std::fmt::Display for RelayBenchReport {
    /// The table and the summary line `relay/socat throughput ratio: X.XX  added p99: N µs`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "req/s: concurrent clients; p50/p99: one client, one request at a time"
        )?;
        writeln!(
            f,
            "{:<8} {:>9} {:>10} {:>9} {:>9}",
            "target", "requests", "req/s", "p50 µs", "p99 µs"
        )?;

        for t in [&self.direct, &self.relay, &self.socat] {
            writeln!(
                f,
                "{:<8} {:>9} {:>10.0} {:>9} {:>9}",
                t.name,
                t.requests,
                t.requests_per_sec(),
                t.percentile_us(50.0),
                t.percentile_us(99.0)
            )?;
        }
        let rounds: Vec<String> = self
            .round_ratios()
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect();
        writeln!(
            f,
            "relay/socat ratio per round: {}; all rounds pooled: {:.2}",
            rounds.join(" "),
            self.relay.requests_per_sec() / self.socat.requests_per_sec().max(f64::MIN_POSITIVE)
        )?;
        let added: Vec<String> = self
            .round_added_p99_us()
            .iter()
            .map(i64::to_string)
            .collect();
        writeln!(
            f,
            "added p99 per round (µs): {}; all rounds pooled: {}",
            added.join(" "),
            i64::try_from(self.relay.percentile_us(99.0)).unwrap_or(i64::MAX)
                - i64::try_from(self.direct.percentile_us(99.0)).unwrap_or(0)
        )?;
        write!(
            f,
            "relay/socat throughput ratio: {:.2}  added p99: {} µs",
            self.throughput_ratio(),
            self.added_p99_us()
        )
    }
}

/// Runs the benchmark. Blocking: call it from a plain thread (it builds its own runtimes).
///
/// # Errors
///
/// [`Error::Bench`] if a component cannot start (e.g. socat is missing) or a request fails.
pub fn run_relay_bench(opts: &RelayBenchOptions) -> Result<RelayBenchReport> {
    let dir = std::env::temp_dir().join(format!("daas-bench-relay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| bench_err("creating a temporary directory", e))?;
    let result = run_in(&dir, opts);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Where each party runs in each phase (see the module doc).
#[derive(Debug)]
struct Placement {
    /// The last allowed CPU: the hop under test during the throughput phase.
    hop: CpuSet,
    /// The other allowed CPUs: the load generator and the backend during the throughput phase.
    load: CpuSet,
    /// Every allowed CPU (the caller's affinity before the run): everyone during the latency phase, and the
    /// caller again after the run.
    all: CpuSet,
    /// The relay's threads and socat's listening process (whose forks inherit its CPUs when they start).
    hop_threads: Vec<Pid>,
    /// The backend's threads and the load generator's (the calling thread).
    load_threads: Vec<Pid>,
}

impl Placement {
    /// `None` when fewer than two CPUs are allowed.
    fn split(hop_threads: Vec<Pid>, load_threads: Vec<Pid>) -> Option<Self> {
        let all = sched_getaffinity(Pid::from_raw(0)).ok()?;
        let allowed: Vec<usize> = (0..CpuSet::count())
            .filter(|&c| all.is_set(c).unwrap_or(false))
            .collect();
        let (&last, rest) = allowed.split_last()?;
        if rest.is_empty() {
            return None;
        }
        let mut hop = CpuSet::new();
        hop.set(last).ok()?;
        let mut load = CpuSet::new();
        for &c in rest {
            load.set(c).ok()?;
        }
        Some(Self {
            hop,
            load,
            all,
            hop_threads,
            load_threads,
        })
    }

    /// Throughput phase: the hop alone on its CPU. Best effort: an unpinned phase is still valid, only noisier.
    fn separate(&self) {
        self.apply(&self.hop, &self.load);
    }

    /// Latency phase: everyone anywhere.
    fn unpin(&self) {
        self.apply(&self.all, &self.all);
    }

    fn apply(&self, hop: &CpuSet, load: &CpuSet) {
        for &t in &self.hop_threads {
            let _ = sched_setaffinity(t, hop);
        }
        for &t in &self.load_threads {
            let _ = sched_setaffinity(t, load);
        }
    }
}

impl Drop for Placement {
    fn drop(&mut self) {
        self.unpin();
    }
}

fn run_in(dir: &std::path::Path, opts: &RelayBenchOptions) -> Result<RelayBenchReport> {
    let socket = dir.join("enclave.sock");
    let identity = bench_identity()?;
    let backend_threads = ThreadIds::default();
    let _backend = start_https_backend(
        &socket,
        identity.acceptor.clone(),
        opts.body_bytes,
        &backend_threads,
    )?;
    let relay_threads = ThreadIds::default();
    let relay = RunningRelay::start(
        Endpoint::Unix(socket.clone()),
        opts.relay_threads,
        opts.relay_busy_poll,
        &relay_threads,
    )?;
    let socat = Socat::start(&opts.socat, &socket)?;
    let placement = if opts.pin_cpus {
        let mut hop = relay_threads.all();
        hop.extend(socat.pid());
        let mut load = backend_threads.all();
        load.push(gettid());
        Placement::split(hop, load)
    } else {
        None
    };

    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| bench_err("starting the client runtime", e))?;
    let targets = [
        ("direct", LoadTarget::Unix(socket.clone())),
        ("relay", LoadTarget::Tcp(relay.addr)),
        ("socat", LoadTarget::Tcp(socat.addr)),
    ];
    let mut reports: Vec<TargetReport> = targets
        .iter()
        .map(|(name, _)| TargetReport {
            name,
            requests: 0,
            elapsed: Duration::ZERO,
            round_rps: Vec::new(),
            latencies_ns: Vec::new(),
            round_p99_us: Vec::new(),
        })
        .collect();
    client_rt.block_on(async {
        for _ in 0..opts.rounds.max(1) {
            if let Some(p) = &placement {
                p.separate();
            }
            for ((_, target), report) in targets.iter().zip(reports.iter_mut()) {
                let sample = run_load(target, &identity.connector, opts.shape).await?;
                report.requests += sample.requests;
                report.elapsed += sample.elapsed;
                report
                    .round_rps
                    .push(sample.requests as f64 / sample.elapsed.as_secs_f64().max(1e-9));
            }
            if let Some(p) = &placement {
                p.unpin();
            }
            if opts.latency_requests > 0 {
                let endpoints: Vec<LoadTarget> = targets.iter().map(|(_, t)| t.clone()).collect();
                let samples = run_interleaved_latency(
                    &endpoints,
                    &identity.connector,
                    opts.latency_requests,
                    opts.shape.warmup,
                )
                .await?;
                for (report, mut latencies) in reports.iter_mut().zip(samples) {
                    latencies.sort_unstable();
                    report.round_p99_us.push(percentile_us(&latencies, 99.0));
                    report.latencies_ns.extend(latencies);
                }
            }
        }
        Ok::<_, Error>(())
    })?;
    for r in &mut reports {
        r.latencies_ns.sort_unstable();
    }
    let mut it = reports.into_iter();
    match (it.next(), it.next(), it.next()) {
        (Some(direct), Some(relay), Some(socat)) => Ok(RelayBenchReport {
            direct,
            relay,
            socat,
        }),
        _ => Err(bench_err(
            "collecting results",
            std::io::Error::other("missing target"),
        )),
    }
}

/// Our relay on its own runtime, default configuration, listening on 127.0.0.1.
struct RunningRelay {
    addr: std::net::SocketAddr,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningRelay {
    fn start(
        upstream: Endpoint,
        workers: usize,
        busy_poll: Duration,
        threads: &ThreadIds,
    ) -> Result<Self> {
        let config = RelayConfig::builder(upstream)
            .busy_poll(busy_poll)
            .build()?;
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = on_own_runtime("bench-relay", workers, threads, move || async move {
            let listener = match Listener::bind(&Endpoint::Tcp(([127, 0, 0, 1], 0).into())).await {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = tx.send(listener.local_endpoint().map_err(Error::Io));
            Relay::new(config, TrafficMetrics::unregistered())
                .serve(listener, token)
                .await;
        })?;
        let addr = match rx
            .recv()
            .map_err(|e| bench_err("starting the relay", e))??
        {
            Endpoint::Tcp(a) => a,
            other => {
                return Err(bench_err(
                    "relay address",
                    std::io::Error::other(other.to_string()),
                ));
            }
        };
        Ok(Self {
            addr,
            shutdown,
            thread: Some(thread),
        })
    }
}

impl Drop for RunningRelay {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `socat TCP-LISTEN:PORT,bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:PATH`, killed on drop.
struct Socat {
    addr: std::net::SocketAddr,
    child: std::process::Child,
}

impl Socat {
    fn start(program: &std::path::Path, socket: &std::path::Path) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| bench_err("finding a free port for socat", e))?
            .port();
        let child = std::process::Command::new(program)
            .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr"))
            .arg(format!("UNIX-CONNECT:{}", socket.display()))
            .stdin(std::process::Stdio::null())
            .spawn()
            .map_err(|e| bench_err("starting socat (apt-get install socat)", e))?;
        let socat = Self {
            addr: ([127, 0, 0, 1], port).into(),
            child,
        };
        for _ in 0..500 {
            if std::net::TcpStream::connect(socat.addr).is_ok() {
                return Ok(socat);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(bench_err(
            "socat did not start listening",
            std::io::Error::other(socat.addr.to_string()),
        ))
    }
}

impl Socat {
    /// The listening process (the parent of the per-connection forks).
    fn pid(&self) -> Option<Pid> {
        i32::try_from(self.child.id()).ok().map(Pid::from_raw)
    }
}

impl Drop for Socat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &'static str, round_rps: &[f64]) -> TargetReport {
        TargetReport {
            name,
            requests: 0,
            elapsed: Duration::ZERO,
            round_rps: round_rps.to_vec(),
            latencies_ns: Vec::new(),
            round_p99_us: Vec::new(),
        }
    }

    fn report(relay: &[f64], socat: &[f64]) -> RelayBenchReport {
        RelayBenchReport {
            direct: target("direct", &[]),
            relay: target("relay", relay),
            socat: target("socat", socat),
        }
    }

    #[test]
    fn the_throughput_ratio_is_the_median_of_the_rounds_ratios() {
        // Ratios 2.0, 0.5 (a burst hit the relay's round), 1.25: the median ignores the outlier.
        let r = report(&[200.0, 50.0, 125.0], &[100.0, 100.0, 100.0]);
        assert_eq!(r.round_ratios(), vec![2.0, 0.5, 1.25]);
        assert!((r.throughput_ratio() - 1.25).abs() < 1e-9);
        let even = report(&[120.0, 140.0, 100.0, 300.0], &[100.0; 4]);
        assert!((even.throughput_ratio() - 1.3).abs() < 1e-9);
        assert!((report(&[], &[]).throughput_ratio()).abs() < 1e-9);
    }

    #[test]
    fn the_report_lists_every_rounds_ratio_and_the_summary_line() {
        let text = report(&[150.0, 110.0], &[100.0, 100.0]).to_string();
        assert!(
            text.contains("relay/socat ratio per round: 1.50 1.10"),
            "{text}"
        );
        assert!(
            text.contains("relay/socat throughput ratio: 1.30"),
            "{text}"
        );
    }

    #[test]
    fn the_added_p99_is_the_median_of_the_rounds_differences() {
        let mut r = report(&[1.0; 3], &[1.0; 3]);
        r.direct.round_p99_us = vec![100, 900, 110];
        r.relay.round_p99_us = vec![160, 700, 190];
        // Round 2 was stalled for everyone: its -200 does not decide the result.
        assert_eq!(r.round_added_p99_us(), vec![60, -200, 80]);
        assert_eq!(r.added_p99_us(), 60);
        let text = r.to_string();
        assert!(
            text.contains("added p99 per round (µs): 60 -200 80"),
            "{text}"
        );
        assert!(text.ends_with("added p99: 60 µs"), "{text}");
    }
}
