//! `daas-worker`: the node agent's binary.
//!
//! `daas-worker join` verifies the enclave and joins (or checks that the saved certificate is
//! still good), writes `DATA_DIR/kubeconfig`, and exits; `daas-worker run` does the same, then
//! registers the Node and keeps it alive until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use attestation::{Pcr, Verifier};
use chain::attest::{RootKind, TrustPolicy};
use chain::{Address, RegistryUrl};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use worker::client::ServerUrl;
use worker::{Agent, AttestError, JoinConfig, JoinError, JoinMode, NodeFiles, join_or_resume};

/// The K3s-DaaS node agent.
#[derive(Debug, Parser)]
#[command(name = "daas-worker", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify the enclave and join with the stake (or check the saved certificate), write
    /// DATA_DIR/kubeconfig, and exit.
    Join(JoinArgs),
    /// Join as `join` does, then register the Node and keep it alive (Lease, status,
    /// certificate renewal) until SIGINT or SIGTERM.
    Run(RunArgs),
}

#[derive(Debug, Args)]
struct JoinArgs {
    /// The API endpoint, `https://HOST[:PORT]` (the host's relay).
    #[arg(long, env = "DAAS_SERVER", value_name = "URL")]
    server: ServerUrl,
    /// The registry: `local:PATH` (dev) or `sui:RPC_URL#CLUSTER_OBJECT_ID`.
    #[arg(long, env = "DAAS_REGISTRY", value_name = "REGISTRY")]
    registry: RegistryUrl,
    /// The Sui CLI keystore of the account that owns the node's stake. Default:
    /// ~/.sui/sui_config/sui.keystore.
    #[arg(long, env = "DAAS_SUI_KEYSTORE", value_name = "FILE")]
    keystore: Option<PathBuf>,
    /// Which account of the keystore (default: the first Ed25519 key).
    #[arg(long, env = "DAAS_SUI_ADDRESS", value_name = "ADDRESS")]
    address: Option<Address>,
    /// The node name the stake admits. Default: this machine's host name.
    #[arg(long, value_name = "NAME")]
    node_name: Option<String>,
    /// Where the node keeps its key, certificate and kubeconfig.
    #[arg(
        long,
        env = "DAAS_WORKER_DIR",
        default_value = "/var/lib/daas-worker",
        value_name = "DIR"
    )]
    data_dir: PathBuf,
    /// Trust this root certificate (PEM) instead of the pinned AWS Nitro Root-G1.
    #[arg(long, value_name = "PEM", conflicts_with = "dev_root")]
    root: Option<PathBuf>,
    /// Trust the dev simulator's root (`daas-enclave --dev`'s
    /// DATA_DIR/attestation/dev-root.crt). Dev clusters only.
    #[arg(long, value_name = "PEM")]
    dev_root: Option<PathBuf>,
    /// Also require PCR N to equal HEX (96 hex digits); repeatable.
    #[arg(long = "expect-pcr", value_name = "N=HEX", value_parser = parse_expected_pcr)]
    expect_pcr: Vec<(u8, Pcr)>,
    /// Reject attestation documents older than this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    max_age_secs: u64,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    join: JoinArgs,
    /// Label the Node node.kubernetes.io/instance-type=TYPE.
    #[arg(long, value_name = "TYPE")]
    instance_type: Option<String>,
    /// Stop once the process with this pid is no longer our parent (`daas dev` passes its own).
    #[arg(long, value_name = "PID", hide = true)]
    exit_with_parent: Option<u32>,
}

fn parse_expected_pcr(text: &str) -> Result<(u8, Pcr), String> {
    let (index, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected N=HEX"))?;
    let index: u8 = index
        .parse()
        .map_err(|e| format!("{text:?}: PCR index: {e}"))?;
    let pcr = Pcr::from_hex(value).map_err(|e| format!("{text:?}: PCR value: {e}"))?;
    Ok((index, pcr))
}

impl JoinArgs {
    fn config(&self) -> anyhow::Result<(JoinConfig, NodeFiles)> {
        let read = |path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))
        };
        let (verifier, root) = if let Some(path) = &self.dev_root {
            let v = Verifier::dangerous_trust_root_pem(&read(path)?)
                .with_context(|| format!("dev root certificate {}", path.display()))?;
            (v, RootKind::Dev)
        } else if let Some(path) = &self.root {
            let v = Verifier::dangerous_trust_root_pem(&read(path)?)
                .with_context(|| format!("root certificate {}", path.display()))?;
            let kind = if v.is_aws_nitro() {
                RootKind::Aws
            } else {
                RootKind::Other
            };
            (v, kind)
        } else {
            (Verifier::aws_nitro(), RootKind::Aws)
        };
        let keystore = match &self.keystore {
            Some(k) => k.clone(),
            None => std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".sui/sui_config/sui.keystore"))
                .context("no --keystore and no HOME for ~/.sui/sui_config/sui.keystore")?,
        };
        let node_name = match &self.node_name {
            Some(n) => n.clone(),
            None => std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_lowercase())
                .context("no --node-name and no host name")?,
        };
        if let Some(problem) = protocol::join::node_name_problem(&node_name) {
            anyhow::bail!("node name {node_name:?}: {problem}");
        }
        let config = JoinConfig {
            server: self.server.clone(),
            registry: self.registry.clone(),
            keystore,
            address: self.address,
            node_name,
            policy: TrustPolicy {
                verifier,
                root,
                expected_pcrs: self.expect_pcr.clone(),
                max_age: Duration::from_secs(self.max_age_secs),
            },
        };
        Ok((config, NodeFiles::new(self.data_dir.clone())))
    }
}

/// Prints why a join failed (the whole report when the enclave did not verify).
fn explain(e: &JoinError) {
    if let JoinError::Attest(AttestError::NotVerified(report)) = e {
        eprint!("{report}");
    }
}

async fn join_once(config: &JoinConfig, files: &NodeFiles) -> anyhow::Result<worker::join::Joined> {
    match join_or_resume(config, files, JoinMode::Resume).await {
        Ok(joined) => {
            let verb = if joined.fresh { "joined" } else { "resumed" };
            println!(
                "{verb} {} as node {:?}; kubeconfig {}",
                config.server,
                config.node_name,
                files.kubeconfig_path().display()
            );
            Ok(joined)
        }
        Err(e) => {
            explain(&e);
            Err(anyhow::anyhow!("join refused: {e}"))
        }
    }
}

/// Resolves once the parent process is no longer `pid`.
async fn parent_gone(pid: Option<u32>) {
    let Some(pid) = pid else {
        return std::future::pending().await;
    };
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        if std::os::unix::process::parent_id() != pid {
            return;
        }
    }
}

async fn stop_signal(exit_with_parent: Option<u32>) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
        () = parent_gone(exit_with_parent) => {}
    }
    Ok(())
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let (config, files) = args.join.config()?;
    let stop = CancellationToken::new();
    let signal = {
        let stop = stop.clone();
        let parent = args.exit_with_parent;
        tokio::spawn(async move {
            if let Err(e) = stop_signal(parent).await {
                tracing::error!(error = %e, "signal handling");
            }
            stop.cancel();
        })
    };
    // Only an unreachable server or registry is waited for; a verdict is final.
    let mut delay = Duration::from_millis(500);
    let joined = loop {
        match join_or_resume(&config, &files, JoinMode::Resume).await {
            Ok(joined) => break joined,
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "cannot join yet; retrying");
            }
            Err(e) => {
                explain(&e);
                signal.abort();
                anyhow::bail!("join refused: {e}");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    };
    println!(
        "{} {} as node {:?}; kubeconfig {}",
        if joined.fresh { "joined" } else { "resumed" },
        config.server,
        config.node_name,
        files.kubeconfig_path().display()
    );
    let agent = Agent::new(joined, files, Some(config)).with_instance_type(args.instance_type);
    let outcome = agent.run(stop).await;
    signal.abort();
    outcome.context("the node agent stopped")
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // One core's worth of threads: the agent is mostly idle, and small.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Join(args) => runtime.block_on(async {
            let (config, files) = args.config()?;
            join_once(&config, &files).await.map(drop)
        }),
        Command::Run(args) => runtime.block_on(run(args)),
    }
}
