//! Test harness: starts the real `daas-enclave` binary in dev mode on a
//! loopback port with a temporary data directory, and runs real clients
//! (kubectl, curl) against it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// This test executable's own hard link to `daas-enclave`, made on first use. The target
/// directory is shared (another checkout's build, or a test's nested cargo run, replaces
/// `target/debug/daas-enclave` at any moment), and a test that measures the binary (its
/// PCR0 in a KMS policy or an anchor) must run the very file it measured.
pub fn enclave_exe() -> &'static Path {
    static PINNED: OnceLock<PathBuf> = OnceLock::new();
    PINNED.get_or_init(|| {
        let built = Path::new(env!("CARGO_BIN_EXE_daas-enclave"));
        let me = std::env::current_exe().unwrap();
        let own = built
            .parent()
            .unwrap()
            .join("daas-test-bins")
            .join(me.file_name().unwrap());
        std::fs::create_dir_all(&own).unwrap();
        let pinned = own.join("daas-enclave");
        let staged = own.join(format!("daas-enclave.{}", std::process::id()));
        let _ = std::fs::remove_file(&staged);
        std::fs::hard_link(built, &staged)
            .or_else(|_| std::fs::copy(built, &staged).map(drop))
            .unwrap();
        std::fs::rename(&staged, &pinned).unwrap();
        pinned
    })
}

/// A running `daas-enclave --dev`; killed on drop.
pub struct Enclave {
    child: Child,
    /// The data directory (kept until drop).
    pub dir: tempfile::TempDir,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
}

impl Enclave {
    /// Starts the binary and waits for its `ready <url>` line.
    pub fn start() -> Enclave {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir)
    }

    /// Starts the binary on an existing data directory.
    pub fn start_in(dir: tempfile::TempDir) -> Enclave {
        Self::start_in_with(dir, &[])
    }

    /// Starts the binary with extra flags.
    pub fn start_with(extra: &[&str]) -> Enclave {
        Self::start_in_with(tempfile::tempdir().unwrap(), extra)
    }

    /// A kubeconfig for this server authenticating with `token`, written to
    /// `DIR/NAME.kubeconfig`.
    pub fn token_kubeconfig(&self, name: &str, token: &str) -> PathBuf {
        self.user_kubeconfig(name, &format!("    token: {token}\n"))
    }

    /// A kubeconfig for this server authenticating with a client
    /// certificate (PEM), written to `DIR/NAME.kubeconfig`.
    pub fn cert_kubeconfig(&self, name: &str, cert_pem: &str, key_pem: &str) -> PathBuf {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        self.user_kubeconfig(
            name,
            &format!(
                "    client-certificate-data: {}\n    client-key-data: {}\n",
                b64(cert_pem),
                b64(key_pem)
            ),
        )
    }

    fn user_kubeconfig(&self, name: &str, user: &str) -> PathBuf {
        use base64::Engine;
        let ca = std::fs::read_to_string(self.pki("server.crt")).unwrap();
        let ca = base64::engine::general_purpose::STANDARD.encode(ca);
        let path = self.dir.path().join(format!("{name}.kubeconfig"));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n  user:\n{user}contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n",
            self.url
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Starts the binary on an existing data directory with extra flags.
    pub fn start_in_with(dir: tempfile::TempDir, extra: &[&str]) -> Enclave {
        let mut child = Command::new(enclave_exe())
            .args([
                "--dev",
                "--listen",
                "tcp:127.0.0.1:0",
                "--bookmark-interval",
                "1",
                "--data-dir",
            ])
            .arg(dir.path())
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("DAAS_TEST_ENCLAVE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("ready ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("daas-enclave did not report ready within 60 s");
        Enclave { child, dir, url }
    }

    /// `DIR/admin.kubeconfig`.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("admin.kubeconfig")
    }

    /// A file under `DIR/pki`.
    pub fn pki(&self, name: &str) -> PathBuf {
        self.dir.path().join("pki").join(name)
    }

    /// The admin bearer token.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.pki("admin.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Stops the process (SIGKILL) and returns the data directory.
    pub fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    /// Runs curl against `path` with the given extra arguments; returns
    /// (HTTP status, body). Uses the CA; add auth via `args`.
    pub fn curl(&self, path: &str, args: &[&str]) -> (u16, String) {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "20",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "--cacert",
            ])
            .arg(self.pki("server.crt"))
            .args(args)
            .arg(format!("{}{path}", self.url))
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = s.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// curl with the admin bearer token.
    pub fn curl_admin(&self, path: &str, args: &[&str]) -> (u16, String) {
        let auth = format!("Authorization: Bearer {}", self.token());
        let mut a = vec!["-H", auth.as_str()];
        a.extend_from_slice(args);
        self.curl(path, &a)
    }
}

impl Drop for Enclave {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every installed `kubectl.1.X`, oldest first.
pub fn kubectl_versions() -> Vec<(String, PathBuf)> {
    let kubectl = which("kubectl")
        .expect("kubectl is not on PATH (the machine image ships kubectl 1.27 … 1.33)");
    let real = std::fs::canonicalize(&kubectl).unwrap();
    let dir = real.parent().unwrap();
    let mut out: Vec<(u32, String, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            let minor = name.strip_prefix("kubectl.1.")?.parse::<u32>().ok()?;
            Some((minor, format!("1.{minor}"), e.path()))
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, v, p)| (v, p)).collect()
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// One kubectl binary bound to one server, with its own discovery cache.
pub struct Kubectl<'a> {
    /// Version label, e.g. `1.33`.
    pub version: String,
    bin: PathBuf,
    kubeconfig: PathBuf,
    cache: tempfile::TempDir,
    _server: &'a Enclave,
}

impl<'a> Kubectl<'a> {
    /// kubectl `bin` against `server`.
    pub fn new(version: &str, bin: &Path, server: &'a Enclave) -> Self {
        Kubectl {
            version: version.to_string(),
            bin: bin.to_path_buf(),
            kubeconfig: server.kubeconfig(),
            cache: tempfile::tempdir().unwrap(),
            _server: server,
        }
    }

    /// kubectl `bin` against `server` as the user of `kubeconfig`.
    pub fn with_kubeconfig(
        version: &str,
        bin: &Path,
        server: &'a Enclave,
        kubeconfig: &Path,
    ) -> Self {
        Kubectl {
            kubeconfig: kubeconfig.to_path_buf(),
            ..Self::new(version, bin, server)
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache.path())
            .arg("--request-timeout=30s")
            .args(args)
            .env("HOME", self.cache.path())
            .env_remove("KUBECONFIG");
        c
    }

    /// Runs kubectl with a 60 s bound; returns the output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_stdin(args, None)
    }

    /// Runs kubectl with `stdin` piped in.
    pub fn run_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut c = self.command(args);
        c.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        wait_bounded(
            child,
            Duration::from_secs(60),
            &format!("kubectl {} {args:?}", self.version),
        )
    }

    /// Runs kubectl and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_stdin(args, None)
    }

    /// Runs kubectl with stdin and asserts success; returns stdout.
    pub fn ok_stdin(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run_stdin(args, stdin);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            out.status.success(),
            "kubectl {} {args:?} failed ({:?})\nstdout:\n{stdout}\nstderr:\n{stderr}",
            self.version,
            out.status.code()
        );
        stdout
    }

    /// Runs kubectl with extra environment variables (e.g. `EDITOR`) and asserts success; returns stdout.
    pub fn ok_env(&self, args: &[&str], env: &[(&str, &Path)]) -> String {
        let out = self.run_with_env(args, env);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "kubectl {} {args:?} failed ({:?})\nstdout:\n{stdout}\nstderr:\n{}",
            self.version,
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Runs kubectl with extra environment variables (e.g. `DISABLE_HTTP2`);
    /// returns the output whatever the exit code.
    pub fn run_with_env<V: AsRef<std::ffi::OsStr>>(
        &self,
        args: &[&str],
        env: &[(&str, V)],
    ) -> Output {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_bounded(
            child,
            Duration::from_secs(60),
            &format!("kubectl {} {args:?}", self.version),
        )
    }

    /// Spawns kubectl in the background (for `get -w`).
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

/// Waits for `child` at most `limit` (reading its output meanwhile), killing it afterwards.
pub fn wait_bounded(child: Child, limit: Duration, what: &str) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            let out = rx.recv().unwrap().unwrap();
            panic!(
                "{what} did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Polls `f` for up to 30 s until it returns `Some` (a hang guard, not a timing
/// assertion).
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
