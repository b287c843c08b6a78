//! `daas bench ...`: benchmarks that run side by side with a real peer in one run and report a ratio.

mod api;
mod api_authz;
mod relay;
mod store;

use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;

/// Benchmark subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// The sealed store against a real etcd 3.5.
    Store(store::StoreBenchArgs),
    /// The host relay against direct access and socat.
    Relay(relay::RelayBenchArgs),
    /// The real `daas-enclave --dev` under kubectl-like load over TLS.
    Api(api::ApiBenchArgs),
}

pub(crate) fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Store(args) => store::run(args),
        BenchCommand::Relay(args) => relay::run(args),
        BenchCommand::Api(args) => api::run(args),
    }
}

/// The 50th and 99th percentiles of `lat` (zero when empty).
fn percentiles(mut lat: Vec<Duration>) -> (Duration, Duration) {
    if lat.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    lat.sort_unstable();
    let at = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    (at(0.50), at(0.99))
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`), in KiB.
fn proc_status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}
