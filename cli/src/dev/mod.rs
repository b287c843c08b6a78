//! `daas dev`: one command to a working dev cluster.
//!
//! Starts the enclave (`daas-enclave --dev`) as its own process on a Unix
//! socket and the host relay (`daas-host relay`) on the public TCP address,
//! each kept running by a [`host::DevSupervisor`]; verifies the enclave's
//! attestation through the relay exactly as a production client verifies
//! the AWS root, only with the dev root and the PCRs measured from the
//! `daas-enclave` binary it launched; writes a kubeconfig pinned to the
//! attested certificate; and runs until Ctrl-C or SIGTERM, then stops the
//! children. Everything lives under `--data-dir`, so running it again
//! resumes the same cluster. Each child gets `--exit-with-parent PID` and
//! stops by itself if `daas dev` dies without stopping it (SIGKILL).
//!
//! Layout of the data directory:
//!
//! | path | what |
//! |---|---|
//! | `enclave/` | the enclave's `--data-dir` (store, dev keys, PKI, dev attestation root) |
//! | `enclave.sock` | the enclave's Unix socket, relayed to `--listen` |
//! | `kubeconfig` | the attested kubeconfig (unless `--kubeconfig`) |
//! | `daas-dev.lock` | held (`flock`) by the running `daas dev`; a second one on the same directory is refused |
//! | `registry.json` | the dev registry (unless `--workers 0 --anchor-interval 0`): allowed image, live enclave, stakes, rollback anchors |
//! | `registry-admin.keystore` | the dev registry admin's account (Sui CLI keystore) |
//! | `workers/NAME/` | each worker's data directory: account, node key and certificate, kubeconfig |
//!
//! With `--workers N` (default 1) the enclave admits nodes against the dev
//! registry (it reads the file on the host's disk: acceptable in dev only),
//! and N `daas-worker` processes join through the relay (see [`workers`]).
//! `--workers 0` runs no worker.
//!
//! Rollback protection is on in dev too: the enclave records an anchor on the dev registry
//! every `--anchor-interval` (and at shutdown) and checks its journal against the latest one
//! when it starts. `daas dev` allows the binary's PCRs and registers each enclave it verified,
//! as `daas launch` does on a real registry. `--anchor-interval 0` turns anchors off; with
//! `--workers 0` as well, no registry is used.

mod children;
mod network;
mod workers;

use children::restarted;
pub(crate) use children::{ChildSpec, Children, StopSignal};

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use host::dir_lock::{LockError, lock_exclusive};
use host::launcher::RestartPolicy;
use nix::fcntl::Flock;

use crate::attested::{self, ServerUrl, TrustArgs};
use crate::kubeconfig::{self, Credentials};

/// Arguments of `daas dev`.
#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    /// Where the cluster lives. Default: `$XDG_DATA_HOME/k3s-daas/dev`, or
    /// `~/.local/share/k3s-daas/dev`.
    #[arg(long, env = "DAAS_DEV_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Public address of the API server (the relay's TCP listener).
    #[arg(long, default_value = "127.0.0.1:6443", value_name = "HOST:PORT")]
    listen: SocketAddr,
    /// Where to write the attested kubeconfig. Default: `DATA_DIR/kubeconfig`.
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// Worker nodes to run (`daas-worker` processes joined with stakes on the dev registry
    /// `DATA_DIR/registry.json`); 0 runs none, and no registry.
    #[arg(long, default_value_t = 1, value_name = "N")]
    workers: u32,
    /// How often the enclave records a rollback anchor on the dev registry
    /// (`DATA_DIR/registry.json`); `0` disables anchors.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    anchor_interval: Duration,
    /// Run the workers in the host's network namespace, each on a bridge of its own, without
    /// the node networking (no pod traffic across nodes, no Services, no cluster DNS). By
    /// default each worker gets a namespace of its own on the dev bridge `daas-dev0`
    /// (`10.199.0.0/24`) and runs the pod network, service proxy and cluster DNS.
    #[arg(long)]
    no_network: bool,
}

/// The programs `daas dev` runs.
#[derive(Debug)]
struct Binaries {
    enclave: PathBuf,
    host: PathBuf,
}

/// Paths under the data directory.
#[derive(Debug)]
struct Layout {
    enclave_dir: PathBuf,
    socket: PathBuf,
    /// What the host keeps for the enclave: sealed journal records and snapshots.
    journal_dir: PathBuf,
    journal_socket: PathBuf,
}

impl Layout {
    fn new(data_dir: &Path) -> Self {
        Self {
            enclave_dir: data_dir.join("enclave"),
            socket: data_dir.join("enclave.sock"),
            journal_dir: data_dir.join("host-journal"),
            journal_socket: data_dir.join("journal.sock"),
        }
    }
}

fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(xdg).join("k3s-daas/dev"));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .context("neither --data-dir, XDG_DATA_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".local/share/k3s-daas/dev"))
}

/// Finds `name` next to the running `daas`, then on `PATH`.
pub(crate) fn find_binary(name: &str) -> anyhow::Result<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .filter(|p| p.is_file());
    if let Some(path) = beside {
        return Ok(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    on_path.with_context(|| {
        format!(
            "cannot find `{name}` next to this `daas` executable or on PATH; build it with \
             `cargo build --release -p enclave -p host -p cli` and run the `daas` from the same \
             target directory"
        )
    })
}

/// Every child `daas dev` runs, in start order. New host services (the
/// journal) are one more entry here.
fn children(
    bins: &Binaries,
    layout: &Layout,
    listen: SocketAddr,
    registry: Option<&chain::RegistryUrl>,
    anchor_interval: Duration,
    network: Option<&network::DevNetwork>,
) -> Vec<ChildSpec> {
    let socket = format!("unix:{}", layout.socket.display());
    let journal = format!("unix:{}", layout.journal_socket.display());
    let mut enclave_args: Vec<OsString> = vec![
        "--dev".into(),
        "--data-dir".into(),
        layout.enclave_dir.clone().into(),
        "--listen".into(),
        socket.into(),
        "--advertise".into(),
        format!("https://{listen}").into(),
        "--journal".into(),
        journal.clone().into(),
    ];
    if let Some(net) = network {
        // The workers, and pods through the `kubernetes` Service, reach the API on the dev
        // bridge, where the workers' relay listens on the same port.
        let bridge = net.bridge_ip().to_string();
        enclave_args.extend(["--tls-san".into(), bridge.clone().into()]);
        enclave_args.extend(["--advertise-address".into(), bridge.into()]);
    }
    if let Some(url) = registry {
        enclave_args.push("--registry".into());
        enclave_args.push(url.to_string().into());
        // 0 turns the enclave's anchors off; the registry still admits nodes.
        enclave_args.push("--anchor-interval".into());
        enclave_args.push(
            humantime::format_duration(anchor_interval)
                .to_string()
                .into(),
        );
    }
    vec![
        // The host's sealed journal: the enclave's source of truth, which
        // the host stores but cannot read.
        ChildSpec {
            name: "journal".into(),
            program: bins.host.clone(),
            args: vec![
                "journal".into(),
                "--dir".into(),
                layout.journal_dir.clone().into(),
                "--listen".into(),
                journal.clone().into(),
            ],
            policy: RestartPolicy::default(),
        },
        ChildSpec {
            name: "enclave".into(),
            program: bins.enclave.clone(),
            args: enclave_args,
            policy: RestartPolicy::default(),
        },
        relay("relay", &bins.host, &layout.socket, listen),
    ]
}

/// A relay (`daas-host relay`) from `listen` to the enclave's socket.
fn relay(name: &str, host: &Path, socket: &Path, listen: SocketAddr) -> ChildSpec {
    ChildSpec {
        name: name.into(),
        program: host.to_path_buf(),
        args: vec![
            "relay".into(),
            "--listen".into(),
            listen.to_string().into(),
            "--enclave".into(),
            format!("unix:{}", socket.display()).into(),
            "--drain-timeout".into(),
            "2".into(),
        ],
        policy: RestartPolicy::default(),
    }
}

/// What `daas dev` expects the enclave to attest: the dev root it created
/// and the measurements of the binary it launched.
fn dev_trust(layout: &Layout, enclave_bin: &Path) -> anyhow::Result<TrustArgs> {
    let [pcr0, pcr1, pcr2] = attestation::measure_binary_file(enclave_bin)
        .with_context(|| format!("measuring {}", enclave_bin.display()))?;
    Ok(TrustArgs {
        root: None,
        dev_root: Some(layout.enclave_dir.join(::attestation::DEV_ROOT_CERT)),
        registry: None,
        expect_pcr: vec![(0, pcr0), (1, pcr1), (2, pcr2)],
        max_age_secs: 300,
        dangerous_qemu_emulator: false,
    })
}

/// Runs `daas dev`.
pub(crate) fn run(args: &DevArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: &DevArgs) -> anyhow::Result<()> {
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => default_data_dir()?,
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&data_dir)
        .with_context(|| format!("resolving {}", data_dir.display()))?;
    let _lock = lock_data_dir(&data_dir)?;
    let layout = Layout::new(&data_dir);
    let kubeconfig_path = args
        .kubeconfig
        .clone()
        .unwrap_or_else(|| data_dir.join("kubeconfig"));
    let bins = Binaries {
        enclave: find_binary("daas-enclave")?,
        host: find_binary("daas-host")?,
    };
    // Refuse early when the address is taken (another `daas dev`?): the relay
    // would otherwise be restarted forever.
    drop(std::net::TcpListener::bind(args.listen).with_context(|| {
        format!(
            "{} is not free (is another `daas dev` running?)",
            args.listen
        )
    })?);
    let server: ServerUrl = format!("https://{}", args.listen)
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    let trust = dev_trust(&layout, &bins.enclave)?;
    // The dev registry serves the workers' stakes and the enclave's rollback anchors.
    let workers = match (args.workers, args.anchor_interval.is_zero()) {
        (0, true) => None,
        (0, false) => Some(workers::DevWorkers::new(&data_dir, 0, PathBuf::new())),
        (n, _) => Some(workers::DevWorkers::new(
            &data_dir,
            n,
            find_binary("daas-worker")?,
        )),
    };
    if let Some(w) = &workers {
        w.prepare_registry().await?;
    }
    let registry = workers.as_ref().map(workers::DevWorkers::registry_url);
    let dev_network = if args.no_network || args.workers == 0 {
        None
    } else {
        Some(network::DevNetwork::reserve(&data_dir)?)
    };
    let session = Session {
        data_dir,
        layout,
        server,
        trust,
        kubeconfig: kubeconfig_path,
        enclave_pcrs: {
            let [pcr0, pcr1, pcr2] = attestation::measure_binary_file(&bins.enclave)
                .with_context(|| format!("measuring {}", bins.enclave.display()))?;
            chain::Pcrs { pcr0, pcr1, pcr2 }
        },
        workers,
        host_program: bins.host.clone(),
        listen: args.listen,
        network: dev_network,
    };

    let mut stop = StopSignal::install()?;
    let children = Children::start(children(
        &bins,
        &session.layout,
        args.listen,
        registry.as_ref(),
        args.anchor_interval,
        session.network.as_ref(),
    ));
    let mut nodes = None;
    let outcome = session.serve(&children, &mut nodes, &mut stop).await;
    eprintln!("daas dev: stopping");
    if let Some(nodes) = nodes {
        nodes.stop().await;
        if let Some(net) = &session.network {
            net.cleanup().await;
        }
    }
    children.stop().await;
    outcome
}

/// The lock file under the data directory.
const LOCK_FILE: &str = "daas-dev.lock";

/// Takes `DATA_DIR/daas-dev.lock` with `flock` for as long as the returned
/// value lives, so that two `daas dev` never run one cluster; the kernel
/// releases it when the process dies, however it dies.
fn lock_data_dir(data_dir: &Path) -> anyhow::Result<Flock<std::fs::File>> {
    let path = data_dir.join(LOCK_FILE);
    lock_exclusive(data_dir, LOCK_FILE).map_err(|e| match e {
        LockError::Busy => anyhow::anyhow!(
            "{} is in use by another `daas dev` (it holds {})",
            data_dir.display(),
            path.display()
        ),
        LockError::Io(e) => anyhow::anyhow!("locking {}: {e}", path.display()),
    })
}

/// What one `daas dev` run works with.
#[derive(Debug)]
struct Session {
    data_dir: PathBuf,
    layout: Layout,
    server: ServerUrl,
    trust: TrustArgs,
    kubeconfig: PathBuf,
    /// The measurements of the `daas-enclave` binary run.
    enclave_pcrs: chain::Pcrs,
    /// The workers, when `--workers` is above 0.
    workers: Option<workers::DevWorkers>,
    /// `daas-host` (for the workers' relay on the dev bridge).
    host_program: PathBuf,
    /// The relay's address (`--listen`).
    listen: SocketAddr,
    /// The workers' dev network slot, unless `--no-network` (or no workers).
    network: Option<network::DevNetwork>,
}

impl Session {
    /// Verifies the enclave, writes the kubeconfig, registers the enclave and
    /// starts the workers (into `nodes`), then keeps the cluster up until a
    /// stop signal, verifying (and registering) the enclave again whenever
    /// its supervisor restarted it.
    async fn serve(
        &self,
        children: &Children,
        nodes: &mut Option<Children>,
        stop: &mut StopSignal,
    ) -> anyhow::Result<()> {
        let attested = tokio::select! {
            a = self.wait_attested(children) => a?,
            s = stop.recv() => {
                s?;
                bail!("interrupted before the cluster was ready");
            }
        };
        self.write_kubeconfig(&attested.certificate)?;
        print!("{}", attested.report);
        if let Some(workers) = &self.workers {
            let dev_root = self.dev_root();
            workers
                .admit_enclave(self.enclave_pcrs, &attested.document, &dev_root)
                .await?;
            let joining = workers.ensure_stakes().await?;
            let (net, dev_network) = match &self.network {
                Some(dev_network) if !joining.is_empty() => {
                    (dev_network.setup(joining.len()).await, Some(dev_network))
                }
                _ => (None, None),
            };
            let mut specs = Vec::new();
            let server = if let (Some(_), Some(dev_network)) = (&net, dev_network) {
                let at = dev_network.relay_listen(self.listen);
                specs.push(relay(
                    "relay-workers",
                    &self.host_program,
                    &self.layout.socket,
                    at,
                ));
                format!("https://{at}")
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!(e))?
            } else {
                self.server.clone()
            };
            specs.extend(workers.specs(&server, &dev_root, &joining, net.as_deref()));
            *nodes = Some(Children::start(specs));
        }
        self.print_next_steps();
        let mut enclave_starts = children.starts("enclave");
        if let Some(starts) = enclave_starts.as_mut() {
            starts.borrow_and_update();
        }
        let mut pinned = attested.certificate;
        loop {
            tokio::select! {
                s = stop.recv() => return s,
                Some(Ok(())) = restarted(&mut enclave_starts) => {
                    eprintln!("daas dev: the enclave was restarted; verifying its attestation again");
                    let again = tokio::select! {
                        a = self.wait_attested(children) => a?,
                        s = stop.recv() => return s,
                    };
                    if let Some(workers) = &self.workers {
                        workers
                            .admit_enclave(self.enclave_pcrs, &again.document, &self.dev_root())
                            .await?;
                    }
                    if again.certificate != pinned {
                        self.write_kubeconfig(&again.certificate)?;
                        println!(
                            "the enclave has a new TLS key: {} rewritten",
                            self.kubeconfig.display()
                        );
                        pinned = again.certificate;
                    }
                    println!("the restarted enclave verified again");
                }
            }
        }
    }

    /// The dev attestation root the enclave created.
    fn dev_root(&self) -> PathBuf {
        self.layout.enclave_dir.join(::attestation::DEV_ROOT_CERT)
    }

    fn print_next_steps(&self) {
        let kubeconfig = self.kubeconfig.display();
        println!();
        println!(
            "dev cluster ready at {} (attestation verified with the dev root)",
            self.server
        );
        println!("kubeconfig: {kubeconfig}");
        println!();
        println!("next, in another terminal:");
        println!("  export KUBECONFIG={kubeconfig}");
        println!("  kubectl get namespaces");
        println!("  kubectl create configmap hello --from-literal=greeting=hi");
        if let Some(workers) = self.workers.as_ref().filter(|w| !w.workers().is_empty()) {
            println!("  kubectl get nodes");
            println!();
            println!(
                "workers (daas-worker, joined with stakes on the dev registry local:{}):",
                self.data_dir.join(workers::REGISTRY_FILE).display()
            );
            for w in workers.workers() {
                println!("  {}: kubeconfig {}", w.name, w.kubeconfig().display());
            }
        }
        println!();
        println!(
            "Ctrl-C stops the cluster; `daas dev --data-dir {}` resumes it.",
            self.data_dir.display()
        );
    }

    /// Writes the kubeconfig pinned to `certificate` with the enclave's dev
    /// admin credentials.
    fn write_kubeconfig(
        &self,
        certificate: &rustls_pki_types::CertificateDer<'_>,
    ) -> anyhow::Result<()> {
        let pki = self.layout.enclave_dir.join("pki");
        let credentials =
            Credentials::client_certificate(&pki.join("admin.crt"), &pki.join("admin.key"))?;
        let text = kubeconfig::render("k3s-daas-dev", &self.server, certificate, &credentials);
        kubeconfig::write_private(&self.kubeconfig, &text).context("writing the kubeconfig")
    }

    /// Retries first contact until the enclave answers through the relay,
    /// then requires every check to pass. A document that arrived but failed
    /// a check is fatal at once; only "not up yet" is retried.
    async fn wait_attested(&self, children: &Children) -> anyhow::Result<attested::Attested> {
        let server = &self.server;
        let root = self.layout.enclave_dir.join(::attestation::DEV_ROOT_CERT);
        let mut last = String::new();
        for attempt in 0u32.. {
            if let Some(name) = children.failed() {
                bail!("the {name} process could not be started (see its error above)");
            }
            let root_ready = root.is_file();
            if root_ready {
                match attested::attest(server, &self.trust).await {
                    Ok(a) => return Ok(a),
                    Err(report) if report.has_document() => {
                        print!("{report}");
                        bail!(
                            "the dev enclave's attestation did not verify: {}",
                            report.error.as_deref().unwrap_or("unknown failure")
                        );
                    }
                    Err(report) => last = report.error.clone().unwrap_or_default(),
                }
            }
            if attempt % 25 == 0 {
                let why = if root_ready {
                    format!(" ({last})")
                } else {
                    String::new()
                };
                eprintln!("daas dev: waiting for the enclave at {server}{why}");
            }
            // A 20-minute bound only so a broken setup does not hang forever.
            if attempt > 6000 {
                bail!("the enclave did not answer at {server}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("unreachable: the wait loop ended")
    }
}
