//! `daas-host`: the untrusted host's services — relay, outbound proxy, sealed journal storage, enclave launcher.
//!
//! Each service prints one line `<service> listening on <endpoint>` to standard output once it is bound (so
//! scripts and tests can use port 0), logs to standard error, and stops gracefully on SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use host::launcher::{RunEnclaveRequest, supervise_enclave};
use host::outbound::{Allowlist, ConnectProxy, OutboundRoute, Target};
use host::{
    DevSupervisor, Endpoint, Listener, NitroCli, OutboundProxy, Relay, RelayConfig, TrafficMetrics,
};
use prometheus_client::registry::Registry;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// The K3s-DaaS host: relays encrypted bytes, proxies allowlisted egress, launches the enclave.
#[derive(Debug, Parser)]
#[command(name = "daas-host", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Shut down (as on SIGTERM) once the process with this pid is no longer our parent: a supervisor such as
    /// `daas dev` passes its own pid, so that killing it with SIGKILL does not leave this process running.
    #[arg(long, global = true, value_name = "PID")]
    exit_with_parent: Option<u32>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Forward public TCP connections to the enclave byte for byte (TLS passes through untouched).
    Relay(RelayArgs),
    /// Give the enclave its allowlisted ways out: each route maps a vsock/Unix endpoint to one host:port.
    Outbound(OutboundArgs),
    /// Launch the enclave with nitro-cli, relaunch it if it stops, terminate it on SIGTERM.
    Launch(LaunchArgs),
    /// Dev mode: run the enclave binary as a child process and restart it whenever it exits.
    LaunchDev(LaunchDevArgs),
    /// Keep the enclave's sealed journal and snapshots durably in a directory (the host cannot read them).
    Journal(JournalArgs),
    /// Carry the enclave's registry calls (cluster, latest anchor, record anchor, stake) to the registry.
    Registry(RegistryArgs),
    /// Release the cluster's root secret to the attested enclave through AWS KMS (`Recipient`), keeping only the
    /// KMS-wrapped copy. Credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN if set, else
    /// the instance role from the metadata service (IMDSv2; AWS_EC2_METADATA_SERVICE_ENDPOINT overrides it).
    Keybroker(KeybrokerArgs),
}

#[derive(Debug, clap::Args)]
struct KeybrokerArgs {
    /// Where the enclave connects: `vsock:any:PORT` (production) or `unix:PATH` (dev).
    #[arg(long)]
    listen: Endpoint,
    /// Directory for the KMS-wrapped root secret (`CiphertextBlob`); created if missing.
    #[arg(long)]
    state_dir: PathBuf,
    /// The KMS endpoint URL [default: https://kms.REGION.amazonaws.com].
    // The help text shows the URL as is; it is not a link for rustdoc.
    #[allow(rustdoc::bare_urls)]
    #[arg(long)]
    kms_endpoint: Option<String>,
    /// AWS region, e.g. us-east-1.
    #[arg(long, env = "AWS_REGION")]
    region: String,
    /// The KMS key: id, ARN or alias (its policy must allow this role only with RecipientAttestation conditions).
    #[arg(long)]
    key_id: String,
}

#[derive(Debug, clap::Args)]
struct RegistryArgs {
    /// The registry: `local:PATH` (a file) or `relay:...` (another relay); Sui registries are
    /// relayed by `daas launch`, which holds the keystore.
    #[arg(long)]
    registry: chain::RegistryUrl,
    /// Where the enclave connects: `vsock:any:7003` (production) or `unix:PATH` (dev).
    #[arg(long)]
    listen: Endpoint,
}

#[derive(Debug, clap::Args)]
struct JournalArgs {
    /// Directory for the journal and snapshot files (created if missing; locked while served).
    #[arg(long)]
    dir: PathBuf,
    /// Where the enclave connects: `vsock:any:PORT` (production) or `unix:PATH` (dev).
    #[arg(long)]
    listen: Endpoint,
    /// Largest accepted frame in bytes (one record must fit in one frame).
    #[arg(long, default_value_t = host::journal::DEFAULT_MAX_FRAME_BYTES)]
    max_frame_bytes: u32,
    /// Largest accepted snapshot in bytes.
    #[arg(long, default_value_t = host::journal::DEFAULT_MAX_SNAPSHOT_BYTES)]
    max_snapshot_bytes: u64,
}

#[derive(Debug, clap::Args)]
struct RelayArgs {
    /// Public endpoint to accept clients on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: Endpoint,
    /// The enclave: `vsock:CID:PORT` (production) or `unix:PATH` (dev).
    #[arg(long)]
    enclave: Endpoint,
    /// Serve Prometheus `/metrics` on this address (separate from the public port).
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Connections relayed at once; more are accepted and closed at once.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// What a client must achieve before the handshake timeout.
    #[arg(long, value_enum, default_value_t = Handshake::Tls)]
    handshake: Handshake,
    /// Seconds from accept to complete the handshake rule (slowloris guard).
    #[arg(long, default_value = "10", value_parser = seconds)]
    handshake_timeout: Duration,
    /// Seconds without a byte in either direction before a connection is closed.
    #[arg(long, default_value = "3600", value_parser = seconds)]
    idle_timeout: Duration,
    /// Seconds to let open connections finish after SIGTERM before cutting them.
    #[arg(long, default_value = "30", value_parser = seconds)]
    drain_timeout: Duration,
    /// Send a PROXY protocol v2 header to the enclave before the client's bytes.
    #[arg(long)]
    proxy_protocol: bool,
    /// After forwarding a client's bytes to the enclave, poll for the answer this many microseconds before
    /// sleeping (0: off, at most 1000). Saves a thread wake-up per reply on a VM; costs at most this much CPU per
    /// request/response exchange, and nothing on idle connections or after answers.
    #[arg(long, default_value_t = 50)]
    busy_poll_us: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Handshake {
    /// The client's first complete TLS application_data record (its Finished in TLS 1.3).
    Tls,
    /// The client's first byte.
    FirstByte,
}

#[derive(Debug, clap::Args)]
struct OutboundArgs {
    /// `LISTEN_ENDPOINT=HOST:PORT`, e.g. `vsock:any:8000=kms.us-east-1.amazonaws.com:443`. Repeatable.
    #[arg(long = "route", required_unless_present = "connect")]
    routes: Vec<OutboundRoute>,
    /// Also accept HTTP `CONNECT host:port` requests on this endpoint, checked against the allowlist.
    #[arg(long)]
    connect: Option<Endpoint>,
    /// `HOST:PORT` the enclave may reach. Every route's target must be listed. Repeatable.
    #[arg(long = "allow", required = true)]
    allow: Vec<Target>,
    /// Serve Prometheus `/metrics` on this address.
    #[arg(long)]
    metrics: Option<SocketAddr>,
}

#[derive(Debug, clap::Args)]
struct LaunchArgs {
    /// Enclave image file.
    #[arg(long)]
    eif: PathBuf,
    /// vCPUs for the enclave.
    #[arg(long)]
    cpus: u32,
    /// Memory for the enclave, MiB.
    #[arg(long)]
    memory: u64,
    /// The enclave's vsock CID (4 ..= 4294967294).
    #[arg(long)]
    cid: Option<u32>,
    /// Enclave name.
    #[arg(long)]
    name: Option<String>,
    /// The nitro-cli program.
    #[arg(long, default_value = "nitro-cli")]
    nitro_cli: PathBuf,
    /// Seconds between `describe-enclaves` checks.
    #[arg(long, default_value = "5", value_parser = seconds)]
    poll: Duration,
    /// Run the enclave in debug mode (console readable, PCRs all zero: nothing trusts it).
    #[arg(long)]
    debug_mode: bool,
}

#[derive(Debug, clap::Args)]
struct LaunchDevArgs {
    /// The enclave program (e.g. `daas-enclave`).
    #[arg(long)]
    program: PathBuf,
    /// Arguments for it (after `--`), e.g. `-- --dev --listen unix:/tmp/enclave.sock`.
    #[arg(last = true)]
    args: Vec<String>,
}

fn seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= 86_400.0 * 365.0) {
        return Err(format!("{s} seconds is out of range (0, one year]"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone(), cli.exit_with_parent)?;
    match cli.command {
        Command::Relay(args) => relay(args, shutdown).await,
        Command::Outbound(args) => outbound(args, shutdown).await,
        Command::Launch(args) => launch(args, shutdown).await,
        Command::LaunchDev(args) => {
            let starts = DevSupervisor::new(&args.program, &args.args)
                .run(shutdown)
                .await?;
            tracing::info!(starts, "dev launcher stopped");
            Ok(())
        }
        Command::Journal(args) => journal(args, shutdown).await,
        Command::Keybroker(args) => keybroker(args, shutdown).await,
        Command::Registry(args) => registry(args, shutdown).await,
    }
}

async fn registry(args: RegistryArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let registry = chain::AnyRegistry::open(&args.registry, &chain::OpenOptions::default())
        .await
        .with_context(|| format!("opening the registry {}", args.registry))?;
    let listener = Listener::bind(&args.listen).await?;
    println!("registry listening on {}", listener.local_endpoint()?);
    tracing::info!(registry = %args.registry, "registry relay started");
    host::serve_registry_relay(Arc::new(registry), listener, shutdown).await;
    tracing::info!("registry relay stopped");
    Ok(())
}

async fn keybroker(args: KeybrokerArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let url = args
        .kms_endpoint
        .unwrap_or_else(|| format!("https://kms.{}.amazonaws.com", args.region));
    let endpoint: host::KmsEndpoint = url.parse()?;
    let credentials = host::kms::CredentialSource::from_environment()?;
    if let host::kms::CredentialSource::InstanceRole(_) = &credentials {
        tracing::info!("no AWS_* credentials in the environment: using the instance role (IMDSv2)");
    }
    let kms = host::KmsClient::new(endpoint.clone(), args.region, credentials)?;
    let broker = Arc::new(host::KeyBroker::new(kms, args.key_id, &args.state_dir)?);
    let listener = Listener::bind(&args.listen).await?;
    println!("keybroker listening on {}", listener.local_endpoint()?);
    tracing::info!(kms = %endpoint, state_dir = %args.state_dir.display(), "key broker started");
    broker.serve(listener, shutdown).await;
    tracing::info!("key broker stopped");
    Ok(())
}

async fn journal(args: JournalArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = host::JournalConfig::new(&args.dir)
        .max_frame_bytes(args.max_frame_bytes)
        .max_snapshot_bytes(args.max_snapshot_bytes);
    let service = tokio::task::spawn_blocking(move || host::JournalService::open(&config))
        .await
        .context("opening the journal directory")?
        .with_context(|| format!("opening the journal in {}", args.dir.display()))?;
    let listener = Listener::bind(&args.listen).await?;
    println!("journal listening on {}", listener.local_endpoint()?);
    tracing::info!(dir = %args.dir.display(), "journal service started");
    service.serve(listener, shutdown).await;
    tracing::info!("journal service stopped");
    Ok(())
}

fn spawn_signal_handler(shutdown: CancellationToken, parent: Option<u32>) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let parent_gone =
        protocol::supervision::parent_gone(parent).context("watching the parent process")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            () = parent_gone => tracing::warn!("parent process is gone: shutting down"),
        }
        shutdown.cancel();
    });
    Ok(())
}

async fn start_metrics(
    addr: Option<SocketAddr>,
    registry: Registry,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let Some(addr) = addr else { return Ok(()) };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding metrics on {addr}"))?;
    println!("metrics listening on {}", listener.local_addr()?);
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        if let Err(e) = host::metrics::serve_metrics(listener, Arc::new(registry), shutdown).await {
            tracing::error!(error = %e, "metrics endpoint failed");
        }
    });
    Ok(())
}

async fn relay(args: RelayArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let config = RelayConfig::builder(args.enclave)
        .max_connections(args.max_connections)
        .handshake_rule(match args.handshake {
            Handshake::Tls => host::HandshakeRule::Tls,
            Handshake::FirstByte => host::HandshakeRule::FirstByte,
        })
        .handshake_timeout(args.handshake_timeout)
        .idle_timeout(args.idle_timeout)
        .drain_timeout(args.drain_timeout)
        .busy_poll(Duration::from_micros(args.busy_poll_us))
        .proxy_protocol(if args.proxy_protocol {
            host::ProxyProtocol::V2
        } else {
            host::ProxyProtocol::Off
        })
        .build()?;
    let mut registry = Registry::default();
    let metrics = TrafficMetrics::register(&mut registry, "relay");
    let listener = Listener::bind(&args.listen).await?;
    start_metrics(args.metrics, registry, &shutdown).await?;
    println!("relay listening on {}", listener.local_endpoint()?);
    tracing::info!(enclave = %config.upstream(), "relay started");
    let report = Relay::new(config, metrics).serve(listener, shutdown).await;
    tracing::info!(
        open = report.open_at_shutdown,
        cut = report.cut,
        "relay drained"
    );
    Ok(())
}

async fn outbound(args: OutboundArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let metrics = TrafficMetrics::register(&mut registry, "outbound");
    let allow = Allowlist::new(args.allow);
    let bound = OutboundProxy::new(args.routes, &allow, metrics.clone())?
        .bind()
        .await?;
    let connect = match args.connect {
        Some(endpoint) => Some(ConnectProxy::new(endpoint, allow, metrics).bind().await?),
        None => None,
    };
    start_metrics(args.metrics, registry, &shutdown).await?;
    for (endpoint, target) in bound.endpoints() {
        println!("outbound listening on {endpoint} -> {target}");
    }
    let connect_task = match connect {
        Some(c) => {
            println!(
                "outbound listening on {} -> CONNECT (allowlist)",
                c.local_endpoint()?
            );
            Some(tokio::spawn(c.serve(shutdown.clone())))
        }
        None => None,
    };
    bound.serve(shutdown).await;
    if let Some(task) = connect_task {
        task.await?;
    }
    Ok(())
}

async fn launch(args: LaunchArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let req = RunEnclaveRequest {
        eif: args.eif,
        cpus: args.cpus,
        memory_mib: args.memory,
        cid: args.cid,
        name: args.name,
        debug_mode: args.debug_mode,
    };
    let cli = NitroCli::new(args.nitro_cli);
    let launches = supervise_enclave(&cli, &req, args.poll, shutdown).await?;
    tracing::info!(launches, "launcher stopped");
    Ok(())
}
