//! `daas bench ...`: benchmarks that run side by side with a real peer in one run and report a ratio.

mod api;
mod relay;
mod store;

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
