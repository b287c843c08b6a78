//! Test harness for the worker: the real `daas-enclave --dev` admitting nodes against a local
//! registry file (created here with a real admin account, the enclave's image allowed and the
//! enclave registered live with a document it served), real `daas-worker` processes, accounts
//! in Sui CLI keystores, and kubectl with the enclave's admin kubeconfig.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

pub mod fake;

#[path = "../../../testing/workspace_bins.rs"]
mod workspace_bins;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use attestation::Verifier;
use chain::attest::{RootKind, TrustPolicy};
use chain::{
    AccountKeystore, Address, AnyRegistry, ClusterSettings, ClusterState, OpenOptions, Pcrs,
    Registry, RegistryAdmin, RegistryUrl, SuiAccount,
};
use worker::client::ServerUrl;

/// The minimum stake of test clusters, MIST.
pub const MIN_STAKE: u64 = 1_000;

/// A directory holding this workspace's `daas-enclave` and `daas-worker`, built once (cargo
/// builds only this package's binaries for its tests) and hard-linked into a directory of this
/// test executable's own, as the CLI tests do.
pub fn bin_dir() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let worker = PathBuf::from(env!("CARGO_BIN_EXE_daas-worker"));
        let dir = worker.parent().unwrap().to_path_buf();
        let target_dir = dir.parent().unwrap();
        let status = workspace_bins::build(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"),
            target_dir,
            dir.ends_with("release"),
            &[("enclave", "daas-enclave"), ("worker", "daas-worker")],
        );
        assert!(
            status.success(),
            "building daas-enclave and daas-worker failed"
        );
        let me = std::env::current_exe().unwrap();
        let own = dir.join("daas-test-bins").join(me.file_name().unwrap());
        let _ = std::fs::remove_dir_all(&own);
        std::fs::create_dir_all(&own).unwrap();
        for name in ["daas-enclave", "daas-worker"] {
            std::fs::hard_link(dir.join(name), own.join(name))
                .or_else(|_| std::fs::copy(dir.join(name), own.join(name)).map(drop))
                .unwrap();
        }
        own
    })
}

/// `DIR/name` of [`bin_dir`].
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `future` to completion on a fresh runtime.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Stdout and stderr of `out`.
pub fn text(out: &Output) -> String {
    format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Polls `check` every 250 ms until it is true; panics with `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The PCRs the dev NSM reports for the `daas-enclave` binary.
pub fn enclave_pcrs() -> Pcrs {
    let [pcr0, pcr1, pcr2] = attestation::measure_binary_file(&bin("daas-enclave")).unwrap();
    Pcrs { pcr0, pcr1, pcr2 }
}

/// A new keystore with one fresh account at `path`.
pub fn new_keystore(path: &Path) -> Address {
    let mut keystore = AccountKeystore::load_or_empty(path).unwrap();
    let account = SuiAccount::generate().unwrap();
    let address = account.address();
    keystore.push(account);
    keystore.save().unwrap();
    address
}

/// A running enclave admitting nodes against its own registry; everything under one temporary
/// directory, killed on drop.
pub struct Cluster {
    /// Everything lives here.
    pub dir: PathBuf,
    /// Removes `dir` on drop, unless the cluster lives in a fixed directory.
    _temp: Option<tempfile::TempDir>,
    /// The enclave's loopback port (kept across restarts).
    pub port: u16,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    enclave: Option<Child>,
    extra: Vec<String>,
}

impl Cluster {
    /// An enclave with `extra` flags on a fresh registry, registered live on it, in a
    /// temporary directory.
    pub fn start(extra: &[&str]) -> Cluster {
        let temp = tempfile::tempdir().unwrap();
        Self::start_at(temp.path().to_path_buf(), Some(temp), extra)
    }

    /// As [`Cluster::start`], in `name` under cargo's temporary directory for tests (emptied
    /// first): for a cluster in a `static`, which is never dropped.
    pub fn start_shared(name: &str, extra: &[&str]) -> Cluster {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self::start_at(dir, None, extra)
    }

    fn start_at(dir: PathBuf, temp: Option<tempfile::TempDir>, extra: &[&str]) -> Cluster {
        bin_dir();
        let port = free_port();
        let mut cluster = Cluster {
            port,
            url: format!("https://127.0.0.1:{port}"),
            enclave: None,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            dir,
            _temp: temp,
        };
        cluster.create_registry(&cluster.registry_path());
        cluster.start_enclave();
        cluster.register_live(&cluster.registry_path());
        cluster
    }

    /// `DIR/name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The registry the enclave reads.
    pub fn registry_path(&self) -> PathBuf {
        self.path("registry.json")
    }

    /// `local:PATH` of the enclave's registry.
    pub fn registry_url(&self) -> String {
        format!("local:{}", self.registry_path().display())
    }

    /// The registry admin's keystore.
    pub fn admin_keystore(&self) -> PathBuf {
        self.path("admin.keystore")
    }

    /// The enclave's data directory.
    pub fn enclave_dir(&self) -> PathBuf {
        self.path("enclave")
    }

    /// The dev attestation root the enclave created.
    pub fn dev_root(&self) -> PathBuf {
        self.enclave_dir().join("attestation/dev-root.crt")
    }

    /// The enclave's admin kubeconfig.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.enclave_dir().join("admin.kubeconfig")
    }

    /// The server, parsed.
    pub fn server(&self) -> ServerUrl {
        self.url.parse().unwrap()
    }

    /// The dev trust policy (the dev root, no expected PCRs).
    pub fn policy(&self) -> TrustPolicy {
        let pem = std::fs::read(self.dev_root()).unwrap();
        TrustPolicy {
            verifier: Verifier::dangerous_trust_root_pem(&pem).unwrap(),
            root: RootKind::Dev,
            expected_pcrs: Vec::new(),
            max_age: Duration::from_secs(300),
        }
    }

    /// Creates a registry at `path` administered by the admin keystore's account.
    pub fn create_registry(&self, path: &Path) {
        if !self.admin_keystore().exists() {
            new_keystore(&self.admin_keystore());
        }
        let options = OpenOptions {
            keystore: Some(self.admin_keystore()),
            ..OpenOptions::default()
        };
        let settings = ClusterSettings {
            min_stake: MIN_STAKE,
            unstake_cooldown_ms: 0,
            max_document_age_ms: 300_000,
        };
        block_on(AnyRegistry::init(
            &RegistryUrl::Local(path.to_path_buf()),
            "test",
            settings,
            &options,
        ))
        .unwrap();
    }

    /// The registry at `path`, acting as `keystore`'s account, verifying under the dev root.
    pub fn registry_as(&self, path: &Path, keystore: &Path) -> AnyRegistry {
        let pem = std::fs::read(self.dev_root()).unwrap();
        let options = OpenOptions {
            keystore: Some(keystore.to_path_buf()),
            verifier: Verifier::dangerous_trust_root_pem(&pem).unwrap(),
            ..OpenOptions::default()
        };
        block_on(AnyRegistry::open(
            &RegistryUrl::Local(path.to_path_buf()),
            &options,
        ))
        .unwrap()
    }

    /// The registry's state at `path`.
    pub fn state(&self, path: &Path) -> ClusterState {
        block_on(self.registry_as(path, &self.admin_keystore()).cluster()).unwrap()
    }

    /// A document the enclave serves now (verified under the dev root).
    pub fn document(&self) -> Vec<u8> {
        block_on(worker::attest(&self.server(), &self.policy(), None))
            .unwrap()
            .document
    }

    /// Allows the enclave's image on the registry at `path` and registers it live there.
    pub fn register_live(&self, path: &Path) {
        let registry = self.registry_as(path, &self.admin_keystore());
        block_on(async {
            if registry
                .cluster()
                .await
                .unwrap()
                .image_version_for(&enclave_pcrs())
                .is_none()
            {
                registry
                    .allow_image(enclave_pcrs(), "daas-enclave test", 1)
                    .await
                    .unwrap();
            }
        });
        let document = self.document();
        block_on(registry.register_enclave(&document)).unwrap();
    }

    fn start_enclave(&mut self) {
        let mut child = Command::new(bin("daas-enclave"))
            .args(["--dev", "--listen", &format!("tcp:127.0.0.1:{}", self.port)])
            .arg("--data-dir")
            .arg(self.enclave_dir())
            .args(["--registry", &self.registry_url()])
            .args(["--registry-poll-interval", "1s"])
            .args(&self.extra)
            .args(["--exit-with-parent", &std::process::id().to_string()])
            .env("RUST_LOG", "warn,enclave::api::nodes=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("ready ") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(180))
            .expect("daas-enclave did not print `ready`");
        self.enclave = Some(child);
    }

    /// Kills the enclave (SIGKILL) and starts it again on the same directory and port.
    pub fn restart_enclave(&mut self) {
        if let Some(mut child) = self.enclave.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.start_enclave();
    }

    /// The keystore of account `name` (created with one key on first use).
    pub fn account(&self, name: &str) -> PathBuf {
        let path = self.path(&format!("{name}.keystore"));
        if !path.exists() {
            new_keystore(&path);
        }
        path
    }

    /// The address of `keystore`'s account.
    pub fn address(&self, keystore: &Path) -> Address {
        AccountKeystore::load(keystore)
            .unwrap()
            .account(None)
            .unwrap()
            .address()
    }

    /// Stakes the minimum for `node` as `keystore`'s account.
    pub fn stake(&self, keystore: &Path, node: &str) {
        block_on(
            self.registry_as(&self.registry_path(), keystore)
                .stake(node, MIN_STAKE),
        )
        .unwrap();
    }

    /// `daas-worker SUBCOMMAND` for `node` as `keystore`'s account, with data directory
    /// `data_dir`, against the enclave and its registry.
    pub fn worker(
        &self,
        subcommand: &str,
        keystore: &Path,
        node: &str,
        data_dir: &Path,
    ) -> Command {
        self.worker_at(
            subcommand,
            keystore,
            node,
            data_dir,
            &self.url,
            &self.registry_url(),
        )
    }

    /// [`Cluster::worker`] against `server` with `registry`.
    pub fn worker_at(
        &self,
        subcommand: &str,
        keystore: &Path,
        node: &str,
        data_dir: &Path,
        server: &str,
        registry: &str,
    ) -> Command {
        let mut cmd = Command::new(bin("daas-worker"));
        cmd.arg(subcommand)
            .args(["--server", server])
            .args(["--registry", registry])
            .arg("--keystore")
            .arg(keystore)
            .args(["--node-name", node])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--dev-root")
            .arg(self.dev_root())
            .env("RUST_LOG", "info")
            .env("RUST_BACKTRACE", "0");
        cmd
    }

    /// Runs `daas-worker run` expecting it to stop by itself (a refused join); kills it after
    /// a minute. Its output.
    pub fn run_until_exit(&self, mut cmd: Command) -> Output {
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let guard = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(60));
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        });
        let out = child.wait_with_output().unwrap();
        drop(guard);
        out
    }

    /// `kubectl --kubeconfig KC args...`.
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--request-timeout", "20s"])
            .args(args)
            .output()
            .expect("kubectl is not on PATH")
    }

    /// `kubectl` as the admin.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_as(&self.admin_kubeconfig(), args)
    }

    /// The Node names.
    pub fn nodes(&self) -> Vec<String> {
        let out = self.kubectl(&["get", "nodes", "-o", "jsonpath={.items[*].metadata.name}"]);
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    /// `jsonpath` of one object, as the admin; `None` when kubectl fails (e.g. not found).
    pub fn get(&self, args: &[&str], jsonpath: &str) -> Option<String> {
        let mut all: Vec<&str> = vec!["get"];
        all.extend_from_slice(args);
        let path = format!("jsonpath={jsonpath}");
        all.extend_from_slice(&["-o", &path]);
        let out = self.kubectl(&all);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// True when Node `name` is Ready.
    pub fn ready(&self, name: &str) -> bool {
        self.get(
            &["node", name],
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        )
        .as_deref()
            == Some("True")
    }

    /// The Lease renew time of node `name`.
    pub fn renew_time(&self, name: &str) -> Option<String> {
        self.get(
            &["lease", "-n", "kube-node-lease", name],
            "{.spec.renewTime}",
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut child) = self.enclave.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A `daas-worker run` process; killed on drop.
pub struct RunningWorker {
    /// The process.
    pub child: Child,
    /// Its stdout, line by line.
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl RunningWorker {
    /// Starts `cmd` (a `daas-worker run`).
    pub fn start(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                println!("worker| {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines: rx }
    }

    /// The first stdout line (`joined ...` or `resumed ...`).
    pub fn first_line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(120))
            .expect("daas-worker printed nothing")
    }

    /// Kills it (SIGKILL).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RunningWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
