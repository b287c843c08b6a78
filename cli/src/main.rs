//! `daas`: the one command people type.

mod attestation;
mod attested;
mod bench;
mod dev;
mod image;
mod kubeconfig;
mod registry;
mod unseal;
mod verify;

use clap::{Parser, Subcommand};

/// K3s-DaaS: a Kubernetes control plane inside an AWS Nitro Enclave.
#[derive(Debug, Parser)]
#[command(name = "daas", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Bring up a dev cluster: the enclave in dev mode, the relay, an attested kubeconfig.
    Dev(dev::DevArgs),
    /// Verify a running server's attestation and TLS key binding, and report.
    Verify(verify::VerifyArgs),
    /// Verify a running server, then write a kubeconfig pinned to its attested certificate.
    Kubeconfig(kubeconfig::KubeconfigArgs),
    /// Verify a sealed enclave, then give it the cluster's root secret over its attested TLS key.
    Unseal(unseal::UnsealArgs),
    /// Inspect and verify Nitro attestation documents.
    #[command(subcommand)]
    Attestation(attestation::AttestationCommand),
    /// Benchmarks that run side by side with a real peer and report a ratio (runs `daas-bench`).
    Bench(bench::BenchArgs),
    /// Manage the on-chain (or local) registry of allowed images, enclaves, stakes and anchors.
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// Build and measure reproducible enclave images (EIF).
    #[command(subcommand)]
    Image(image::ImageCommand),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Dev(args) => dev::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Kubeconfig(args) => kubeconfig::run(&args),
        Command::Unseal(args) => unseal::run(&args),
        Command::Attestation(cmd) => attestation::run(cmd),
        Command::Bench(args) => bench::run(args),
        Command::Registry(cmd) => registry::run(cmd),
        Command::Image(cmd) => image::run(cmd),
    }
}
