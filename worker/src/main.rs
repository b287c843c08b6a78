//! `daas-worker`: the node agent's binary.
//!
//! `daas-worker join` verifies the enclave and joins (or checks that the saved certificate is
//! still good), writes `DATA_DIR/kubeconfig`, and exits; `daas-worker run` does the same, then
//! registers the Node and keeps it alive until SIGINT or SIGTERM.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use attestation::{Pcr, Verifier};
use chain::attest::{RootKind, TrustPolicy};
use chain::{Address, RegistryUrl};
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use worker::client::ServerUrl;
use worker::kubelet::{
    ContainerLogs, NetworkedPodsConfig, PodManagerConfig, networked_pod_manager, pod_manager,
};
use worker::network::{Backend, ClusterNetwork};
use worker::pods::Shutdown;
use worker::runtime::{BridgeNetwork, Containerd, ContainerdConfig, Cri, CriStreams, ImageArchive};
use worker::{Agent, AttestError, JoinConfig, JoinError, JoinMode, NodeFiles, join_or_resume};

/// The K3s-DaaS node agent.
#[derive(Debug, Parser)]
#[command(name = "daas-worker", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the size of the `run` variant does not matter.
#[allow(clippy::large_enum_variant)]
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
    /// Report DiskPressure (and taint the node) when less than this share of the data
    /// directory's file system is free, in percent: the kubelet's
    /// `--eviction-hard=nodefs.available<10%`.
    #[arg(long, value_name = "PERCENT", default_value_t = worker::node::machine::DISK_RESERVE_PERCENT,
          value_parser = clap::value_parser!(u64).range(0..=100))]
    eviction_hard_nodefs_available: u64,
    /// Stop once the process with this pid is no longer our parent (`daas dev` passes its own).
    #[arg(long, value_name = "PID", hide = true)]
    exit_with_parent: Option<u32>,
    #[command(flatten)]
    runtime: RuntimeArgs,
    #[command(flatten)]
    network: NetworkArgs,
}

/// The node's networking (pod network across nodes, Services, cluster DNS, network policies).
/// Off unless `--network`: the node then needs its own containerd (`--containerd-dir`), whose
/// CNI configuration the pod network writes; `--pod-bridge`/`--pod-subnet` no longer apply.
#[derive(Debug, Args)]
struct NetworkArgs {
    /// Run the pod network, the service proxy, cluster DNS and network policies on this node
    /// (needs `--containerd-dir`).
    #[arg(long, requires = "containerd_dir")]
    network: bool,
    /// The cluster's pod range; must equal daas-enclave's `--cluster-cidr`.
    #[arg(long, default_value = "10.42.0.0/16", value_name = "CIDR")]
    cluster_cidr: ipnet::Ipv4Net,
    /// The Services' range; must equal the enclave's service range (`10.43.0.0/16`).
    #[arg(long, default_value = "10.43.0.0/16", value_name = "CIDR")]
    service_cidr: ipnet::Ipv4Net,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local", value_name = "DOMAIN")]
    cluster_domain: String,
    /// How pod traffic reaches other nodes: `host-gw` (direct routes; nodes share a network)
    /// or `vxlan` (nodes reach each other over UDP 8472), as k3s's `--flannel-backend`.
    #[arg(long, default_value = "host-gw", value_name = "BACKEND")]
    network_backend: Backend,
}

/// Where the pods run. Without `--containerd-dir` or `--container-runtime-endpoint` the node
/// runs no pods (they stay Pending).
#[derive(Debug, Args)]
struct RuntimeArgs {
    /// Run a containerd of this node's own under DIR (its root, state, socket and config in
    /// DIR/containerd, the CNI config in DIR/cni), and stop it, and every pod it ran, when the
    /// agent stops. For dev clusters; a real machine uses `--container-runtime-endpoint`.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "container_runtime_endpoint"
    )]
    containerd_dir: Option<PathBuf>,
    /// The machine's containerd CRI socket (e.g. /run/containerd/containerd.sock); pods keep
    /// running when the agent stops, and the next agent adopts them.
    #[arg(long, value_name = "SOCKET")]
    container_runtime_endpoint: Option<PathBuf>,
    /// An OCI image archive to import into the own containerd (as `scripts/build-images`
    /// writes them); repeatable.
    #[arg(long = "import-image", value_name = "TAR", requires = "containerd_dir")]
    import_images: Vec<PathBuf>,
    /// The pods' bridge (own containerd only).
    #[arg(long, default_value = "daas0", value_name = "NAME")]
    pod_bridge: String,
    /// The pods' IPv4 subnet on the bridge (own containerd only).
    #[arg(long, default_value = "10.88.0.0/24", value_name = "CIDR", value_parser = parse_subnet)]
    pod_subnet: (Ipv4Addr, u8),
    /// The cgroup under which the pods' cgroups go.
    #[arg(long, default_value = "/kubepods", value_name = "PATH")]
    cgroup_root: String,
    /// Rotate a container's log once it reaches this size (`10Mi`, `500Ki`, `1048576`): the
    /// kubelet's `containerLogMaxSize`.
    #[arg(long, default_value = "10Mi", value_name = "SIZE", value_parser = parse_log_size)]
    container_log_max_size: u64,
    /// Log files kept per container, the current one included: the kubelet's
    /// `containerLogMaxFiles`.
    #[arg(long, default_value_t = 5, value_name = "N",
          value_parser = clap::value_parser!(u16).range(2..))]
    container_log_max_files: u16,
    /// The containerd program (own containerd only).
    #[arg(long, default_value = "containerd", value_name = "PATH", hide = true)]
    containerd_binary: PathBuf,
}

/// Bytes, plain or with a binary (`Ki`, `Mi`, `Gi`) or decimal (`k`, `M`, `G`) suffix.
fn parse_log_size(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let unit: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => {
            return Err(format!(
                "{text:?}: expected a size such as 10Mi, 500Ki or 1048576"
            ));
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: expected a size such as 10Mi, 500Ki or 1048576"))?;
    match n.checked_mul(unit) {
        Some(bytes) if bytes > 0 => Ok(bytes),
        _ => Err(format!("{text:?}: must be above zero and fit 64 bits")),
    }
}

fn parse_subnet(text: &str) -> Result<(Ipv4Addr, u8), String> {
    let (addr, prefix) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?}: expected ADDRESS/PREFIX"))?;
    let addr: Ipv4Addr = addr.parse().map_err(|e| format!("{text:?}: {e}"))?;
    let prefix: u8 = prefix.parse().map_err(|e| format!("{text:?}: {e}"))?;
    if !(8..=30).contains(&prefix) {
        return Err(format!("{text:?}: the prefix must be between 8 and 30"));
    }
    Ok((addr, prefix))
}

/// The container runtime the node runs pods on.
struct PodRuntimeHandle {
    /// The own containerd, when the agent started one.
    containerd: Option<Containerd>,
    cri: Cri,
    /// `containerd://VERSION`.
    version: String,
}

impl RuntimeArgs {
    fn container_logs(&self) -> ContainerLogs {
        ContainerLogs {
            max_size: self.container_log_max_size,
            max_files: usize::from(self.container_log_max_files),
        }
    }

    /// The own containerd's configuration, when `--containerd-dir`.
    fn containerd_config(&self) -> Option<(PathBuf, ContainerdConfig)> {
        let dir = self.containerd_dir.as_ref()?;
        let images = self
            .import_images
            .iter()
            .map(|path| ImageArchive {
                reference: String::new(),
                path: path.clone(),
            })
            .collect();
        let network = BridgeNetwork {
            bridge: self.pod_bridge.clone(),
            subnet: self.pod_subnet.0,
            prefix: self.pod_subnet.1,
        };
        let config = ContainerdConfig::new(dir)
            .with_images(images)
            .with_network(network)
            .with_binary(&self.containerd_binary);
        Some((dir.clone(), config))
    }

    /// `containerd://VERSION` from `containerd --version`, for a containerd started later.
    async fn containerd_version(&self) -> String {
        let out = tokio::process::Command::new(&self.containerd_binary)
            .arg("--version")
            .output()
            .await;
        // "containerd github.com/containerd/containerd v1.7.24 HASH"
        out.ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .nth(2)
                    .map(|v| format!("containerd://{}", v.trim_start_matches('v')))
            })
            .unwrap_or_default()
    }

    async fn start(&self) -> anyhow::Result<Option<PodRuntimeHandle>> {
        let (containerd, cri) = if let Some((dir, config)) = self.containerd_config() {
            let containerd = Containerd::start(config)
                .await
                .with_context(|| format!("starting containerd under {}", dir.display()))?;
            let cri = containerd.cri();
            (Some(containerd), cri)
        } else if let Some(socket) = &self.container_runtime_endpoint {
            let cri = Cri::connect(socket)
                .with_context(|| format!("connecting to {}", socket.display()))?;
            (None, cri)
        } else {
            return Ok(None);
        };
        let version = cri
            .version(k8s_cri::v1::VersionRequest::default())
            .await
            .context("asking the container runtime for its version")?;
        Ok(Some(PodRuntimeHandle {
            containerd,
            cri,
            version: format!("{}://{}", version.runtime_name, version.runtime_version),
        }))
    }
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

async fn stop_signal(exit_with_parent: Option<u32>) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let parent_gone = protocol::supervision::parent_gone(exit_with_parent)
        .context("watching the parent process")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
        () = parent_gone => tracing::warn!("parent process is gone: stopping"),
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
    if args.network.network {
        return run_networked(args, joined, files, config, stop, signal).await;
    }
    let runtime = tokio::select! {
        () = stop.cancelled() => return Ok(()),
        r = args.runtime.start() => r,
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            signal.abort();
            return Err(e);
        }
    };
    let node_name = config.node_name.clone();
    let mut agent = Agent::new(joined, files, Some(config))
        .with_instance_type(args.instance_type)
        .with_disk_reserve_percent(args.eviction_hard_nodefs_available);
    let mut containerd = None;
    match runtime {
        Some(handle) => {
            println!("running pods on {}", handle.version);
            let on_stop = if handle.containerd.is_some() {
                Shutdown::RemovePods
            } else {
                Shutdown::LeavePodsRunning
            };
            let streams = CriStreams::new(handle.cri.clone(), node_name);
            agent = agent
                .with_container_runtime_version(handle.version)
                .with_task("tunnel", tunnel_task(streams))
                .with_task(
                    "pods",
                    pod_manager(PodManagerConfig {
                        cri: handle.cri,
                        cgroup_root: args.runtime.cgroup_root.clone(),
                        on_stop,
                        cluster_dns: None,
                        container_logs: args.runtime.container_logs(),
                    }),
                );
            containerd = handle.containerd;
        }
        None => tracing::warn!(
            "no container runtime (--containerd-dir or --container-runtime-endpoint): \
             pods bound to this node will not run"
        ),
    }
    let outcome = agent.run(stop).await;
    if let Some(containerd) = containerd
        && let Err(e) = containerd.stop().await
    {
        tracing::warn!(error = %e, "stopping containerd's pods");
    }
    signal.abort();
    outcome.context("the node agent stopped")
}

/// The node tunnel (the enclave's logs, exec, attach, port-forward and usage requests),
/// served by `streams`.
fn tunnel_task(streams: CriStreams) -> worker::AgentTask {
    let (state, _) =
        tokio::sync::watch::channel(worker::tunnel::TunnelState::Connecting { attempt: 1 });
    worker::tunnel::agent_task(std::sync::Arc::new(streams), state)
}

/// `run` with `--network`: the networking and the own containerd start in the pods task, once
/// the Node is registered and has its pod CIDR (`network::wiring`).
async fn run_networked(
    args: RunArgs,
    joined: worker::join::Joined,
    files: NodeFiles,
    config: JoinConfig,
    stop: CancellationToken,
    signal: tokio::task::JoinHandle<()>,
) -> anyhow::Result<()> {
    let Some((containerd_dir, containerd)) = args.runtime.containerd_config() else {
        signal.abort();
        anyhow::bail!("--network needs --containerd-dir");
    };
    let version = args.runtime.containerd_version().await;
    println!("running pods on {version} with the node's networking");
    let cluster = ClusterNetwork {
        cluster_cidr: args.network.cluster_cidr,
        service_cidr: args.network.service_cidr,
        cluster_domain: args.network.cluster_domain.clone(),
    };
    // containerd starts later, in the pods task; the CRI client connects on first use.
    let cri = Cri::connect(&containerd.socket())
        .with_context(|| format!("the CRI socket {}", containerd.socket().display()))?;
    let streams = CriStreams::new(cri, config.node_name.clone());
    let agent = Agent::new(joined, files, Some(config))
        .with_instance_type(args.instance_type)
        .with_disk_reserve_percent(args.eviction_hard_nodefs_available)
        .with_container_runtime_version(version)
        .with_task("tunnel", tunnel_task(streams))
        .with_task(
            "pods",
            networked_pod_manager(NetworkedPodsConfig {
                cluster,
                backend: args.network.network_backend,
                containerd,
                containerd_dir,
                cgroup_root: args.runtime.cgroup_root.clone(),
                container_logs: args.runtime.container_logs(),
            }),
        );
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::parse_log_size;

    #[test]
    fn log_sizes_read_as_kubelet_quantities() {
        assert_eq!(parse_log_size("10Mi").unwrap(), 10 << 20);
        assert_eq!(parse_log_size("500Ki").unwrap(), 500 << 10);
        assert_eq!(parse_log_size("2M").unwrap(), 2_000_000);
        assert_eq!(parse_log_size("1048576").unwrap(), 1 << 20);
        for bad in [
            "",
            "0",
            "10MB",
            "Mi",
            "-1Mi",
            "99999999999999999999Gi",
            "1.5Mi",
        ] {
            assert!(parse_log_size(bad).is_err(), "{bad}");
        }
    }
}
