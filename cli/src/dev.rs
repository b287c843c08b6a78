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
//! | `registry.json` | the dev registry: the dev image allowed, the enclave registered, its rollback anchors |
//! | `daas-dev.lock` | held (`flock`) by the running `daas dev`; a second one on the same directory is refused |
//!
//! Rollback protection is on in dev too: the enclave records an anchor on `registry.json` every
//! `--anchor-interval` (and at shutdown) and checks its journal against the latest one when it
//! starts. `daas dev` creates the registry, allows the binary's PCRs and registers each enclave
//! it verified, as `daas launch` does on a real registry. `--anchor-interval 0` turns it off.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use host::DevSupervisor;
use host::dir_lock::{LockError, lock_exclusive};
use host::launcher::RestartPolicy;
use nix::fcntl::Flock;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

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
    /// How often the enclave records a rollback anchor on the dev registry
    /// (`DATA_DIR/registry.json`); `0` disables anchors.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    anchor_interval: Duration,
}

/// The programs `daas dev` runs.
#[derive(Debug)]
struct Binaries {
    enclave: PathBuf,
    host: PathBuf,
}

/// One supervised child process.
#[derive(Debug)]
pub(crate) struct ChildSpec {
    pub(crate) name: &'static str,
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<OsString>,
    pub(crate) policy: RestartPolicy,
}

/// Paths under the data directory.
#[derive(Debug)]
struct Layout {
    enclave_dir: PathBuf,
    socket: PathBuf,
    /// What the host keeps for the enclave: sealed journal records and snapshots.
    journal_dir: PathBuf,
    journal_socket: PathBuf,
    /// The dev registry (allowed image, live enclave, anchors).
    registry: PathBuf,
}

impl Layout {
    fn new(data_dir: &Path) -> Self {
        Self {
            enclave_dir: data_dir.join("enclave"),
            socket: data_dir.join("enclave.sock"),
            journal_dir: data_dir.join("host-journal"),
            journal_socket: data_dir.join("journal.sock"),
            registry: data_dir.join("registry.json"),
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
    anchor_interval: Duration,
) -> Vec<ChildSpec> {
    let socket = format!("unix:{}", layout.socket.display());
    let journal = format!("unix:{}", layout.journal_socket.display());
    let mut anchors: Vec<OsString> = Vec::new();
    if !anchor_interval.is_zero() {
        anchors.extend([
            "--registry".into(),
            format!("local:{}", layout.registry.display()).into(),
            "--anchor-interval".into(),
            humantime::format_duration(anchor_interval)
                .to_string()
                .into(),
        ]);
    }
    vec![
        // The host's sealed journal: the enclave's source of truth, which
        // the host stores but cannot read.
        ChildSpec {
            name: "journal",
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
            name: "enclave",
            program: bins.enclave.clone(),
            args: vec![
                "--dev".into(),
                "--data-dir".into(),
                layout.enclave_dir.clone().into(),
                "--listen".into(),
                socket.clone().into(),
                "--advertise".into(),
                format!("https://{listen}").into(),
                "--journal".into(),
                journal.into(),
            ]
            .into_iter()
            .chain(anchors)
            .collect(),
            policy: RestartPolicy::default(),
        },
        ChildSpec {
            name: "relay",
            program: bins.host.clone(),
            args: vec![
                "relay".into(),
                "--listen".into(),
                listen.to_string().into(),
                "--enclave".into(),
                socket.into(),
                "--drain-timeout".into(),
                "2".into(),
            ],
            policy: RestartPolicy::default(),
        },
    ]
}

/// One supervised child, running.
#[derive(Debug)]
struct Running {
    name: &'static str,
    starts: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<host::Result<u64>>,
}

/// The children `daas dev` (and `daas launch`) runs, each under its own [`DevSupervisor`].
#[derive(Debug)]
pub(crate) struct Children {
    shutdown: CancellationToken,
    running: Vec<Running>,
}

impl Children {
    /// Starts every child in `specs`, in order.
    pub(crate) fn start(specs: Vec<ChildSpec>) -> Self {
        let shutdown = CancellationToken::new();
        let running = specs
            .into_iter()
            .map(|mut spec| {
                // Every child polls for its parent, so that `daas dev` killed
                // by SIGKILL (no chance to stop them) leaves nothing running.
                spec.args.push("--exit-with-parent".into());
                spec.args.push(std::process::id().to_string().into());
                eprintln!(
                    "daas: starting {} ({} {})",
                    spec.name,
                    spec.program.display(),
                    spec.args
                        .iter()
                        .map(|a| a.to_string_lossy())
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                let supervisor =
                    DevSupervisor::new(spec.program, spec.args).with_policy(spec.policy);
                let starts = supervisor.starts();
                let token = shutdown.clone();
                Running {
                    name: spec.name,
                    starts,
                    task: tokio::spawn(async move { supervisor.run(token).await }),
                }
            })
            .collect();
        Self { shutdown, running }
    }

    /// A child whose supervisor gave up (the program could not be started).
    pub(crate) fn failed(&self) -> Option<&'static str> {
        self.running
            .iter()
            .find(|r| r.task.is_finished())
            .map(|r| r.name)
    }

    /// Observes how often the child `name` has been started.
    fn starts(&self, name: &str) -> Option<watch::Receiver<u64>> {
        self.running
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.starts.clone())
    }

    /// Stops every child (SIGTERM, then SIGKILL after the grace period) and
    /// waits for them.
    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        for Running { name, task, .. } in self.running {
            match task.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => eprintln!("daas dev: {name}: {e}"),
                Err(e) => eprintln!("daas dev: {name} supervisor: {e}"),
            }
        }
    }
}

/// SIGINT (Ctrl-C) or SIGTERM.
#[derive(Debug)]
pub(crate) struct StopSignal {
    term: tokio::signal::unix::Signal,
}

impl StopSignal {
    pub(crate) fn install() -> anyhow::Result<Self> {
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        Ok(Self { term })
    }

    pub(crate) async fn recv(&mut self) -> anyhow::Result<()> {
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
            _ = self.term.recv() => {}
        }
        Ok(())
    }
}

/// What `daas dev` expects the enclave to attest: the dev root it created
/// and the measurements of the binary it launched.
fn dev_trust(layout: &Layout, enclave_bin: &Path) -> anyhow::Result<TrustArgs> {
    let [pcr0, pcr1, pcr2] = attestation::measure_binary_file(enclave_bin)
        .with_context(|| format!("measuring {}", enclave_bin.display()))?;
    Ok(TrustArgs {
        root: None,
        dev_root: Some(
            layout
                .enclave_dir
                .join(enclave::api::attestation::DEV_ROOT_CERT),
        ),
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
    let anchors = !args.anchor_interval.is_zero();
    if anchors {
        prepare_registry(&layout.registry, &trust.expect_pcr).await?;
    }
    let session = Session {
        data_dir,
        layout,
        server,
        trust,
        kubeconfig: kubeconfig_path,
        anchors,
    };

    let mut stop = StopSignal::install()?;
    let children = Children::start(children(
        &bins,
        &session.layout,
        args.listen,
        args.anchor_interval,
    ));
    let outcome = session.serve(&children, &mut stop).await;
    eprintln!("daas dev: stopping");
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
    /// Whether the enclave anchors on the dev registry (then each verified enclave is
    /// registered there as the live one).
    anchors: bool,
}

/// Creates the dev registry if it is missing and allows the dev binary's PCRs on it.
async fn prepare_registry(path: &Path, pcrs: &[(u8, attestation::Pcr)]) -> anyhow::Result<()> {
    use chain::{FileRegistry, Pcrs, Registry, RegistryAdmin};
    let pcr = |i: u8| {
        pcrs.iter()
            .find(|(n, _)| *n == i)
            .map(|(_, p)| *p)
            .context("the dev binary's PCRs are incomplete")
    };
    let image = Pcrs {
        pcr0: pcr(0)?,
        pcr1: pcr(1)?,
        pcr2: pcr(2)?,
    };
    let verifier = attestation::Verifier::aws_nitro();
    let registry = if path.exists() {
        FileRegistry::open(path, chain::Address::ZERO, verifier)?
    } else {
        FileRegistry::init(
            path,
            "dev",
            chain::ClusterSettings {
                min_stake: 1,
                unstake_cooldown_ms: 60_000,
                max_document_age_ms: 300_000,
            },
            chain::Address::ZERO,
            verifier,
        )?
    };
    let state = registry.cluster().await?;
    if state.image_version_for(&image).is_none() {
        let version = state.images.iter().map(|i| i.version).max().unwrap_or(0) + 1;
        let label = format!("daas-enclave dev {}", &image.pcr0.to_string()[..12]);
        registry.allow_image(image, &label, version).await?;
        eprintln!(
            "daas dev: allowed the dev enclave image as v{version} on {}",
            path.display()
        );
    }
    Ok(())
}

impl Session {
    /// Registers the verified enclave as the live one on the dev registry.
    async fn register(&self, document: &[u8]) -> anyhow::Result<()> {
        use chain::Registry as _;
        if !self.anchors {
            return Ok(());
        }
        let root = self
            .layout
            .enclave_dir
            .join(enclave::api::attestation::DEV_ROOT_CERT);
        let pem = std::fs::read(&root).with_context(|| format!("reading {}", root.display()))?;
        let verifier = attestation::Verifier::dangerous_trust_root_pem(&pem)?;
        let registry =
            chain::FileRegistry::open(&self.layout.registry, chain::Address::ZERO, verifier)?;
        registry
            .register_enclave(document)
            .await
            .context("registering the dev enclave on the dev registry")?;
        Ok(())
    }

    /// Verifies the enclave, writes the kubeconfig, then keeps the cluster
    /// up until a stop signal, verifying the enclave again whenever its
    /// supervisor restarted it.
    async fn serve(&self, children: &Children, stop: &mut StopSignal) -> anyhow::Result<()> {
        let attested = tokio::select! {
            a = self.wait_attested(children) => a?,
            s = stop.recv() => {
                s?;
                bail!("interrupted before the cluster was ready");
            }
        };
        self.register(&attested.document).await?;
        self.write_kubeconfig(&attested.certificate)?;
        attested.report.print();
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
                    self.register(&again.document).await?;
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
        let root = self
            .layout
            .enclave_dir
            .join(enclave::api::attestation::DEV_ROOT_CERT);
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
                        report.print();
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

/// Waits for the next start of the watched child (`None` when not watched).
async fn restarted(
    starts: &mut Option<watch::Receiver<u64>>,
) -> Option<Result<(), watch::error::RecvError>> {
    match starts {
        Some(rx) => Some(rx.changed().await),
        None => std::future::pending().await,
    }
}
