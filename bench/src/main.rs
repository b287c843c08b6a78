//! `daas-bench` (and `daas bench ...`, which runs it): benchmarks that run side by side with a real peer in one
//! run and report a ratio.
//!
//! Layering: a binary of its own so that `daas` links neither the control plane nor RocksDB. It may depend on
//! `enclave` (the store benchmark opens the store in-process; the API benchmark reads the dev credentials) and
//! on `host` (the relay benchmark), `worker` and `chain` (the join benchmark), never the other way round.

mod api;
mod join;
mod relay;
mod scheduler;
mod store;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Benchmarks of K3s-DaaS that run side by side with a real peer and report a ratio.
#[derive(Debug, Parser)]
#[command(name = "daas-bench", version, about)]
enum BenchCommand {
    /// The sealed store against a real etcd 3.5.
    Store(store::StoreBenchArgs),
    /// The host relay against direct access and socat.
    Relay(relay::RelayBenchArgs),
    /// The real `daas-enclave --dev` under kubectl-like load over TLS.
    Api(api::ApiBenchArgs),
    /// Join handshakes (attestation, stake signature, node certificate) against one enclave,
    /// and an idle `daas-worker`'s memory.
    Join(join::JoinBenchArgs),
    /// The enclave's scheduler against hollow nodes, in scheduler_perf's shapes.
    Scheduler(scheduler::SchedulerBenchArgs),
}

fn main() -> anyhow::Result<()> {
    // Warnings only unless RUST_LOG says otherwise, on stderr: stdout carries the results.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match BenchCommand::parse() {
        BenchCommand::Store(args) => store::run(args),
        BenchCommand::Relay(args) => relay::run(args),
        BenchCommand::Api(args) => api::run(args),
        BenchCommand::Join(args) => join::run(args),
        BenchCommand::Scheduler(args) => scheduler::run(args),
    }
}

/// The program `name`: next to this executable (where cargo puts every binary of the workspace), else on PATH.
fn find_program(name: &str) -> anyhow::Result<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(name)));
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = std::env::split_paths(&path).map(|dir| dir.join(name));
    beside
        .into_iter()
        .chain(on_path)
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "cannot find `{name}` next to `daas-bench` or on PATH; build both with \
                 `cargo build --release -p enclave -p bench`"
            )
        })
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
