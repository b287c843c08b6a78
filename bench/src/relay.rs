//! `daas bench relay`: our relay against going to the enclave's socket directly and against socat.

use std::path::PathBuf;

use host::bench::{LoadShape, RelayBenchOptions, run_relay_bench};

/// Options for `daas bench relay`.
#[derive(Debug, clap::Args)]
pub(crate) struct RelayBenchArgs {
    /// Concurrent clients, each with one keep-alive TLS connection.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Measured requests per client per round.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Unmeasured requests per client per round before measuring.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Sequential requests per round of the latency phase (one client, one request at a time, as kubectl).
    #[arg(long, default_value_t = 3000)]
    latency_requests: usize,
    /// Interleaved rounds over the three targets; the throughput ratio is the median of the rounds' ratios.
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Response body size in bytes (a small `kubectl get` list).
    #[arg(long, default_value_t = 2048)]
    body_bytes: usize,
    /// Worker threads for the relay's runtime.
    #[arg(long, default_value_t = 1)]
    relay_threads: usize,
    /// The relay's busy-poll window in microseconds (`daas-host relay --busy-poll-us`, whose default this is; 0: off).
    #[arg(long, default_value_t = 50)]
    busy_poll_us: u64,
    /// The socat program.
    #[arg(long, default_value = "socat")]
    socat: PathBuf,
    /// Let the scheduler place every thread in the throughput phase too (by default the relay, or socat, runs
    /// alone on the last CPU there and the load generator and backend on the others; the latency phase is never
    /// pinned).
    #[arg(long)]
    no_pin_cpus: bool,
}

pub(crate) fn run(args: RelayBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.clients > 0 && args.requests > 0,
        "--clients and --requests must be at least 1"
    );
    let opts = RelayBenchOptions {
        shape: LoadShape {
            clients: args.clients,
            requests: args.requests,
            warmup: args.warmup,
        },
        latency_requests: args.latency_requests,
        rounds: args.rounds,
        body_bytes: args.body_bytes,
        relay_threads: args.relay_threads,
        relay_busy_poll: std::time::Duration::from_micros(args.busy_poll_us),
        socat: args.socat,
        pin_cpus: !args.no_pin_cpus,
    };
    eprintln!(
        "bench relay: {} clients x {} GETs (+{} warmup), then 1 client x {} sequential GETs, x {} rounds, {} B responses, keep-alive TLS",
        args.clients,
        args.requests,
        args.warmup,
        args.latency_requests,
        args.rounds,
        args.body_bytes
    );
    println!("{}", run_relay_bench(&opts)?);
    Ok(())
}
