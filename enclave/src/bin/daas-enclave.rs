//! `daas-enclave`: the trusted control plane process.
//!
//! Dev mode (`--dev`) keeps everything under `--data-dir`: the store index
//! and journal, a dev sealing key, the dev PKI, `admin.kubeconfig`, and the
//! simulated NSM's dev root (`attestation/dev-root.crt`, which `daas verify
//! --dev-root` pins) for `GET /attestation`. With `--journal
//! unix:PATH|vsock:CID:PORT` the journal is kept by the host's journal
//! service (`daas-host journal`) instead of a local file.
//! It prints `ready <url>` on stdout once it accepts connections.
//!
//! The root secret comes from `--root-secret-source`: `file` (the default;
//! `root-secret.dev` under the data directory) or `kms` (AWS KMS releases it
//! to this process's attested key through the host's key broker, `daas-host
//! keybroker`, at `--key-broker`) or `operator` (the enclave serves only
//! `/attestation` and health, prints `sealed <url>`, and waits for `daas
//! unseal` to send the secret to its attested TLS key; a secret that does not
//! open the sealed journal is refused and the enclave keeps waiting). In dev
//! mode the simulated NSM signs the documents, and the keys keep the dev
//! label whatever the source.
//!
//! With `--registry local:PATH|sui:RPC#CLUSTER` nodes can join with stake
//! tickets (`/join/v1/...`): the enclave reads the stakes from that registry
//! (a local file on the host's disk is acceptable in dev only; a `sui:`
//! registry needs the Sui backend, which this binary does not link yet),
//! issues node certificates from a CA derived from the root secret, and
//! follows the registry every `--registry-poll-interval` to revoke nodes
//! whose stake stopped admitting them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ::attestation::{Mode, Purpose, PurposeKey, RootSecret, SimNsm};
use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use enclave::api::nodes::{NodeAdmission, NodeCa, tls_config_with_nodes};
use enclave::api::sealed::{UnsealRefused, Unsealed, serve_until_unsealed};
use enclave::api::{
    ApiConfig, ApiServer, Attestor, Authenticator, DevPki, ListenAddr, Listener, UserInfo,
    attestation, pki, tls_config,
};
use enclave::boot::{KeyBrokerEndpoint, root_secret_from_kms};
use enclave::controllers::{
    ClusterCidr, ClusterOptions, ControllerOptions, Enabled, NodeLifecycleOptions,
};
use enclave::registry::admission::AdmissionOptions;
use enclave::registry::{ObjectStore, ResourceTable, generic::WriteOptions, kinds};
use enclave::store::journal::{JournalEndpoint, RemoteJournal, RemoteJournalOptions};
use enclave::store::{FileJournal, Journal, RootSecretKeys, Store, StoreError, StoreOptions};
use ring::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The dev root secret under the data directory (0600).
const ROOT_SECRET_FILE: &str = "root-secret.dev";

#[derive(Debug, Parser)]
#[command(name = "daas-enclave", about = "The K3s-DaaS control plane")]
struct Args {
    /// Dev mode: local dev keys and credentials instead of attestation-derived ones.
    #[arg(long)]
    dev: bool,
    /// Directory for the store, keys and credentials.
    #[arg(long)]
    data_dir: PathBuf,
    /// Where to listen: tcp:HOST:PORT, unix:PATH or vsock:CID:PORT.
    #[arg(long, default_value = "tcp:127.0.0.1:6443")]
    listen: String,
    /// The URL clients use (written to admin.kubeconfig); defaults to the TCP listen address.
    #[arg(long)]
    advertise: Option<String>,
    /// Seconds between watch bookmarks.
    #[arg(long, default_value_t = 60)]
    bookmark_interval: u64,
    /// The host's journal service, `unix:PATH` or `vsock:CID:PORT`; default:
    /// a local journal file under the data directory.
    #[arg(long)]
    journal: Option<JournalEndpoint>,
    /// Seconds to keep trying to reach the journal service at startup.
    #[arg(long, default_value_t = 30)]
    journal_connect_timeout: u64,
    /// Seconds between sealed snapshots (written only if the store changed
    /// since the last one); each snapshot lets the journal drop the records
    /// it covers. 0 disables them.
    #[arg(long, default_value_t = 300)]
    snapshot_interval: u64,
    /// How long an event lives after its last write, as kube-apiserver's
    /// `--event-ttl` (e.g. `1h`, `30m`, `90s`).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    event_ttl: Duration,
    /// The range nodes' pod subnets (`spec.podCIDR`) come from, as k3s's
    /// `--cluster-cidr`.
    #[arg(long, default_value = "10.42.0.0/16", value_parser = ClusterCidr::parse)]
    cluster_cidr: ClusterCidr,
    /// The prefix length of each node's pod subnet.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
    /// The IP address `default/kubernetes` points at; default: the host of
    /// `--advertise` (or of the TCP listen address) if it is an IP address.
    #[arg(long)]
    advertise_address: Option<std::net::IpAddr>,
    /// Which controllers run, as kube-controller-manager's `--controllers`:
    /// `*` for all, `name` to add one, `-name` to leave one out
    /// (e.g. `*,-node-lifecycle-controller`).
    #[arg(long, default_value = "*", value_delimiter = ',')]
    controllers: Vec<String>,
    /// How often the node lifecycle controller checks nodes.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    node_monitor_period: Duration,
    /// How long a node may go without a heartbeat (Ready condition or
    /// Lease renewal) before it is marked Unknown.
    #[arg(long, default_value = "40s", value_parser = humantime::parse_duration)]
    node_monitor_grace_period: Duration,
    /// How long a node that never reported may stay silent.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    node_startup_grace_period: Duration,
    /// Nodes per second (per zone) that get the NoExecute taint which evicts their pods.
    #[arg(long, default_value_t = 0.1)]
    node_eviction_rate: f64,
    /// Terminated pods kept before the oldest are deleted (0: no limit).
    #[arg(long, default_value_t = 12_500)]
    terminated_pod_gc_threshold: usize,
    /// How often the pod garbage collector runs; pods of a deleted node go
    /// after twice this.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pod_gc_period: Duration,
    /// Endpoints per EndpointSlice.
    #[arg(long, default_value_t = 100)]
    max_endpoints_per_slice: usize,
    /// Seconds pods tolerate the `not-ready` NoExecute taint unless they say otherwise.
    #[arg(long, default_value_t = 300)]
    default_not_ready_toleration_seconds: i64,
    /// Seconds pods tolerate the `unreachable` NoExecute taint unless they say otherwise.
    #[arg(long, default_value_t = 300)]
    default_unreachable_toleration_seconds: i64,
    /// Shut down (as on SIGTERM) once the process with this pid is no longer
    /// our parent: a supervisor such as `daas dev` passes its own pid, so that
    /// killing it with SIGKILL does not leave the enclave running.
    #[arg(long, value_name = "PID")]
    exit_with_parent: Option<u32>,
    /// Where the cluster's root secret comes from.
    #[arg(long, value_enum, default_value_t = RootSecretSource::File)]
    root_secret_source: RootSecretSource,
    /// The host's key broker (`daas-host keybroker`), `unix:PATH` or
    /// `vsock:CID:PORT`; required with `--root-secret-source kms`.
    #[arg(long, required_if_eq("root_secret_source", "kms"))]
    key_broker: Option<KeyBrokerEndpoint>,
    /// Seconds to keep trying to reach the key broker at startup.
    #[arg(long, default_value_t = 30)]
    key_broker_connect_timeout: u64,
    /// The registry nodes join against (`local:PATH` or `sui:RPC_URL#CLUSTER_OBJECT_ID`):
    /// the stakes that admit them. Without it the join endpoints answer 503.
    #[arg(long, value_name = "REGISTRY")]
    registry: Option<chain::RegistryUrl>,
    /// Lifetime of node client certificates (e.g. `1h`, `90s`); nodes renew at two thirds.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    node_cert_lifetime: Duration,
    /// How often the registry is read to revoke nodes whose stake stopped admitting them.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    registry_poll_interval: Duration,
}

/// Where the root secret comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RootSecretSource {
    /// A 0600 file under the data directory, created on first start (dev).
    File,
    /// AWS KMS, released to this enclave's attested key through the host's key broker.
    Kms,
    /// The operator, after verifying this enclave's attestation: `daas unseal`
    /// sends it over TLS to the attested key (`POST /unseal`). Until then the
    /// enclave serves only attestation and health, and says it is sealed.
    Operator,
}

/// Resolves once the parent process is no longer `pid` (it died and we were
/// reparented). Polled: a parent killed by SIGKILL sends nothing.
async fn parent_gone(pid: Option<u32>) {
    let Some(pid) = pid else {
        return std::future::pending().await;
    };
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        if std::os::unix::process::parent_id() != pid {
            tracing::warn!(parent = pid, "parent process is gone");
            return;
        }
    }
}

/// Writes a sealed snapshot every `every` if the store has new revisions.
async fn snapshot_loop(store: Store, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut last = store.revision();
    loop {
        tick.tick().await;
        let now = store.revision();
        if now == last {
            continue;
        }
        match store.write_snapshot().await {
            Ok(revision) => {
                tracing::info!(revision, "sealed snapshot written");
                last = revision;
            }
            Err(e) => tracing::warn!(error = %e, "writing a sealed snapshot failed"),
        }
    }
}

/// Connects to the journal service, retrying until `timeout` (it may start
/// after the enclave).
async fn connect_journal(endpoint: &JournalEndpoint, timeout: Duration) -> Result<RemoteJournal> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = Duration::from_millis(50);
    loop {
        let ep = endpoint.clone();
        let attempt = tokio::task::spawn_blocking(move || {
            RemoteJournal::connect(ep, RemoteJournalOptions::default())
        })
        .await
        .context("journal connect task")?;
        match attempt {
            Ok(j) => return Ok(j),
            // A transport this build cannot use will not appear by waiting.
            Err(enclave::store::JournalError::Connection { cause, .. })
                if cause.kind() == std::io::ErrorKind::Unsupported =>
            {
                bail!("journal service {endpoint}: {cause}");
            }
            Err(e) if tokio::time::Instant::now() + delay < deadline => {
                tracing::info!(%endpoint, error = %e, "journal service not reachable yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("connecting to the journal service {endpoint}"));
            }
        }
    }
}

/// Reads `path`, or creates it with `n` random bytes (mode 0600).
fn secret_file(path: &Path, n: usize) -> Result<Vec<u8>> {
    if path.exists() {
        let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if b.len() != n {
            bail!("{} holds {} bytes, expected {n}", path.display(), b.len());
        }
        return Ok(b);
    }
    let mut b = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| anyhow::anyhow!("no system randomness"))?;
    pki::write_private(path, &b)?;
    Ok(b)
}

fn log_dev_nsm(nsm: &SimNsm) {
    tracing::info!(
        pcr0 = %nsm.pcrs().get(0).map(ToString::to_string).unwrap_or_default(),
        root_sha256 = %hex::encode(nsm.root().sha256()),
        "dev attestation (simulated NSM)"
    );
}

/// Where `default/kubernetes` points: `--advertise-address`, else the
/// advertised host if it is an IP address, with the advertised port.
fn advertised_address(host: &str, ip: Option<std::net::IpAddr>) -> Option<std::net::SocketAddr> {
    let (h, port) = match host.rsplit_once(':') {
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => (host, 443),
        Some((h, p)) => (h, p.parse().unwrap_or(443)),
        None => (host, 443),
    };
    let ip = ip.or_else(|| h.trim_matches(['[', ']']).parse().ok());
    if ip.is_none() {
        tracing::warn!(%host, "the advertised host is not an IP address and --advertise-address is not set: default/kubernetes is not kept");
    }
    ip.map(|ip| std::net::SocketAddr::new(ip, port))
}

async fn ensure_namespaces(objects: &ObjectStore) -> Result<()> {
    let info = objects
        .table()
        .lookup("", "v1", "namespaces")
        .context("namespaces missing from the resource table")?;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let body = serde_json::json!({"metadata": {"name": ns}});
        match objects
            .create(&info, None, body, &WriteOptions::default())
            .await
        {
            Ok(_) | Err(enclave::registry::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e).context(format!("creating namespace {ns}")),
        }
    }
    Ok(())
}

/// What a root secret opened: the store, and the node CA key derived from it.
type Opened = (Store, PurposeKey);

/// Opens the sealed store with the keys of `root`: restores the index from
/// the journal (local file or the host's journal service) and checks that
/// the keys open it. Returns the store with the node CA key, and the anchor
/// public key.
async fn open_cluster(
    args: &Args,
    cluster: [u8; 16],
    root: RootSecret,
) -> Result<(Opened, [u8; 32])> {
    let dir = &args.data_dir;
    let anchor = root.anchor_public_key(Mode::Dev);
    let node_ca = root.derive(Purpose::NodeCa, Mode::Dev);
    let keys = RootSecretKeys::new(root, Mode::Dev, 1);
    let journal: Box<dyn Journal> = match &args.journal {
        Some(endpoint) => {
            let timeout = Duration::from_secs(args.journal_connect_timeout);
            let j = connect_journal(endpoint, timeout).await?;
            tracing::info!(%endpoint, "journal kept by the host's journal service");
            Box::new(j)
        }
        None => Box::new(FileJournal::open(dir.join("journal")).context("opening the journal")?),
    };
    let options = StoreOptions::new(dir.join("index"), cluster).with_observer(std::sync::Arc::new(
        enclave::metrics::store::RegistryObserver,
    ));
    // Restoring reads the whole journal (possibly over a socket): blocking work.
    let store = tokio::task::spawn_blocking(move || Store::open(options, &keys, journal))
        .await
        .context("store open task")?
        .context("opening the store")?;
    Ok(((store, node_ca), anchor))
}

/// How `daas unseal` hears about a secret `open_cluster` refused.
fn refusal(e: &anyhow::Error) -> UnsealRefused {
    let wrong_key = e
        .chain()
        .filter_map(|c| c.downcast_ref::<StoreError>())
        .any(StoreError::is_unopenable_with_these_keys);
    if wrong_key {
        UnsealRefused {
            code: 422,
            message: format!("this root secret does not open the cluster's sealed state ({e:#})"),
        }
    } else {
        UnsealRefused {
            code: 503,
            message: format!("opening the cluster failed: {e:#}"),
        }
    }
}

/// Resolves on Ctrl-C, SIGTERM, or the supervising parent's death.
async fn stop_requested(exit_with_parent: Option<u32>) -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        () = parent_gone(exit_with_parent) => {}
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if !args.dev {
        bail!(
            "only --dev mode is available yet: enclave mode needs the hardware NSM and the production key label"
        );
    }
    let dir = &args.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;

    // The TLS identity and the listener come first: with an operator-supplied
    // root secret the enclave serves attestation on them before its store opens.
    let addr: ListenAddr = args.listen.parse()?;
    let listener = Listener::bind(&addr).await?;
    let url = match (&args.advertise, listener.tcp_addr()) {
        (Some(u), _) => u.clone(),
        (None, Some(a)) => format!("https://{a}"),
        (None, None) => bail!("--advertise is required when not listening on TCP"),
    };
    let host = url
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    let san_host = host
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
        .unwrap_or_else(|| host.clone());
    let pki = DevPki::load_or_create(dir, &[san_host])?;
    pki::write_private(
        &dir.join("admin.kubeconfig"),
        pki.admin_kubeconfig(&url).as_bytes(),
    )?;
    let serving_cert = CertificateDer::from_pem_slice(pki.server_cert_pem.as_bytes())
        .context("parsing the server certificate")?;
    let tls = tls_config(&pki)?;
    let cluster: [u8; 16] = secret_file(&dir.join("cluster-id"), 16)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("cluster id length"))?;

    // The simulated NSM measures this executable (PCR0..2), a second or more
    // for a large binary. With a KMS root secret its document is needed
    // before anything else; otherwise it is set up in the background, and
    // only attestation requests wait for it.
    let ((store, node_ca_key), anchor_key, attestor) = match args.root_secret_source {
        // The dev root secret is a 0600 file; its keys carry the dev label
        // so dev-sealed data never opens in production.
        RootSecretSource::File => {
            let root = RootSecret::load_or_create_dev_file(&dir.join(ROOT_SECRET_FILE))
                .context("loading the dev root secret")?;
            let (store, anchor) = open_cluster(&args, cluster, root).await?;
            (store, anchor, background_attestor(dir, &serving_cert)?)
        }
        RootSecretSource::Kms => {
            let broker = args
                .key_broker
                .as_ref()
                .context("--key-broker is required with --root-secret-source kms")?;
            let dev_root =
                attestation::dev_root(dir).context("loading the dev attestation root")?;
            let nsm = tokio::task::spawn_blocking(move || SimNsm::new(dev_root))
                .await
                .context("setting up the simulated NSM")?
                .context("setting up the simulated NSM")?;
            log_dev_nsm(&nsm);
            tracing::info!(key_broker = %broker, "asking KMS for the root secret");
            let root = root_secret_from_kms(
                &nsm,
                broker,
                Duration::from_secs(args.key_broker_connect_timeout),
            )
            .await
            .with_context(|| {
                format!("obtaining the root secret from KMS through the key broker at {broker}")
            })?;
            tracing::info!("root secret released by KMS to this enclave's attested key");
            let (store, anchor) = open_cluster(&args, cluster, root).await?;
            let attestor = Attestor::set_up_in_background(
                move || Ok::<_, String>(nsm),
                |_| {},
                &serving_cert,
            )?;
            (store, anchor, attestor)
        }
        RootSecretSource::Operator => {
            let attestor = background_attestor(dir, &serving_cert)?;
            tracing::info!(listen = %listener.local_addr(), %url, "sealed: waiting for the operator's root secret (daas unseal)");
            println!("sealed {url}");
            let args = &args;
            let unsealed = serve_until_unsealed(
                &listener,
                Arc::clone(&tls),
                Some(attestor.clone()),
                move |root| async move {
                    match open_cluster(args, cluster, root).await {
                        Ok((store, anchor_key)) => Ok(Unsealed {
                            opened: store,
                            anchor_key,
                        }),
                        Err(e) => Err(refusal(&e)),
                    }
                },
            );
            let (store, anchor) = tokio::select! {
                u = unsealed => (u.opened, u.anchor_key),
                stop = stop_requested(args.exit_with_parent) => {
                    stop?;
                    tracing::info!("shutting down while sealed");
                    return Ok(());
                }
            };
            (store, anchor, attestor)
        }
    };
    let attestor = attestor.with_anchor_key(anchor_key);
    tracing::info!(anchor_key = %hex::encode(anchor_key), "anchor key bound in user_data");
    let snapshots = (args.snapshot_interval > 0).then(|| {
        tokio::spawn(snapshot_loop(
            store.clone(),
            Duration::from_secs(args.snapshot_interval),
        ))
    });
    let objects = ObjectStore::new(store, ResourceTable::new(kinds::builtin())).with_admission(
        AdmissionOptions {
            not_ready_toleration_seconds: args.default_not_ready_toleration_seconds,
            unreachable_toleration_seconds: args.default_unreachable_toleration_seconds,
        },
    );
    ensure_namespaces(&objects).await?;
    enclave::registry::admission::ensure_system_priority_classes(&objects)
        .await
        .context("creating the built-in priority classes")?;
    // Custom resources defined before a restart are served again.
    objects
        .sync_custom_resources()
        .await
        .context("serving the stored custom resource definitions")?;
    let controllers = enclave::controllers::spawn(
        &objects,
        &ControllerOptions {
            event_ttl: args.event_ttl,
            enabled: Enabled::new(args.controllers.iter().cloned()),
            cluster: ClusterOptions {
                root_ca_pem: Some(pki.ca_cert_pem.clone()),
                advertise: advertised_address(&host, args.advertise_address),
                cluster_cidr: args.cluster_cidr,
                node_cidr_mask_size: args.node_cidr_mask_size,
                node_lifecycle: NodeLifecycleOptions {
                    monitor_period: args.node_monitor_period,
                    monitor_grace_period: args.node_monitor_grace_period,
                    startup_grace_period: args.node_startup_grace_period,
                    eviction_rate: args.node_eviction_rate,
                    ..Default::default()
                },
                max_endpoints_per_slice: args.max_endpoints_per_slice,
                terminated_pod_gc_threshold: args.terminated_pod_gc_threshold,
                pod_gc_period: args.pod_gc_period,
            },
        },
    )?;
    let scheduler = enclave::scheduler::spawn(&objects)?;

    let admin = UserInfo {
        name: "admin".into(),
        groups: vec!["system:masters".into(), "system:authenticated".into()],
    };
    let auth = Authenticator::new().with_token(pki.admin_token.clone(), admin);
    let admission = match &args.registry {
        Some(url) => Some(node_admission(&args, url, &objects, node_ca_key, &serving_cert).await?),
        None => None,
    };
    let tls = match &admission {
        Some(a) => tls_config_with_nodes(&pki, a.clone())?,
        None => tls,
    };
    let follow_stop = tokio_util::sync::CancellationToken::new();
    let follower = admission
        .clone()
        .map(|a| tokio::spawn(a.follow_registry(args.registry_poll_interval, follow_stop.clone())));
    let config = ApiConfig {
        bookmark_interval: Duration::from_secs(args.bookmark_interval.max(1)),
        server_address: host,
        attestor: Some(attestor),
        nodes: admission,
        ..Default::default()
    };
    let server = ApiServer::new(objects, auth, config);
    tracing::info!(listen = %listener.local_addr(), %url, "serving");
    println!("ready {url}");
    let serving = tokio::spawn(Arc::clone(&server).serve(listener, tls));
    stop_requested(args.exit_with_parent).await?;
    tracing::info!("shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(5), server.shutdown()).await;
    scheduler.shutdown().await;
    controllers.shutdown().await;
    follow_stop.cancel();
    if let Some(task) = follower {
        let _ = task.await;
    }
    serving.abort();
    if let Some(task) = snapshots {
        task.abort();
    }
    Ok(())
}

/// Admission of nodes against the registry at `url`, issuing from the node CA
/// derived from the root secret, for the enclave serving `serving_cert`.
async fn node_admission(
    args: &Args,
    url: &chain::RegistryUrl,
    objects: &ObjectStore,
    node_ca_key: PurposeKey,
    serving_cert: &CertificateDer<'_>,
) -> Result<NodeAdmission> {
    let registry = chain::AnyRegistry::open(url, &chain::OpenOptions::default())
        .await
        .with_context(|| format!("opening the registry {url}"))?;
    let ca = NodeCa::from_key(&node_ca_key)?;
    let digest = ::attestation::spki_sha256(serving_cert).context("the serving certificate")?;
    let admission = NodeAdmission::open(
        registry,
        ca,
        objects.clone(),
        digest,
        args.node_cert_lifetime,
    )
    .await
    .context("loading the joined nodes")?;
    tracing::info!(registry = %url, "nodes join against the registry");
    Ok(admission)
}

/// Documents from the simulated NSM, set up in the background (measuring
/// the binary takes a while); only attestation requests wait for it.
fn background_attestor(dir: &Path, serving_cert: &CertificateDer<'_>) -> Result<Attestor> {
    let dev_root = attestation::dev_root(dir).context("loading the dev attestation root")?;
    Ok(Attestor::set_up_in_background(
        move || SimNsm::new(dev_root),
        log_dev_nsm,
        serving_cert,
    )?)
}
