//! `daas-worker`: the node agent's binary.

use clap::Parser;

/// The K3s-DaaS node agent.
#[derive(Debug, Parser)]
#[command(name = "daas-worker", version)]
struct Args {}

fn main() -> anyhow::Result<()> {
    let _args = Args::parse();
    anyhow::bail!("daas-worker: nothing to run yet")
}
