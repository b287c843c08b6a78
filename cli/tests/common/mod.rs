//! Shared by the CLI tests that run real processes: the workspace binaries
//! `daas dev` needs (with `daas-worker`), a running `daas-enclave --dev`, and
//! `daas` itself.
#![allow(dead_code)]

pub mod dev;

#[path = "../../../testing/workspace_bins.rs"]
mod workspace_bins;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// A directory holding this workspace's `daas`, `daas-enclave`, `daas-host`
/// and `daas-bench`. Cargo builds only the `cli` package's binaries for its
/// tests, so the others are built here (cargo releases the build lock before it
/// runs tests, so the nested build does not deadlock). The target directory
/// may be shared with other checkouts whose builds replace `target/debug/*`
/// at any moment, so the fresh binaries are hard-linked (same inode, however
/// the originals are replaced) into a directory of this test executable's
/// own, next to each other as `daas dev` expects.
pub fn bin_dir() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let daas = PathBuf::from(env!("CARGO_BIN_EXE_daas"));
        let dir = daas.parent().unwrap().to_path_buf();
        let target_dir = dir.parent().unwrap();
        let status = workspace_bins::build(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"),
            target_dir,
            dir.ends_with("release"),
            &[
                ("cli", "daas"),
                ("enclave", "daas-enclave"),
                ("host", "daas-host"),
                ("bench", "daas-bench"),
                ("worker", "daas-worker"),
            ],
        );
        assert!(
            status.success(),
            "building daas, daas-enclave, daas-host, daas-bench and daas-worker failed"
        );
        let me = std::env::current_exe().unwrap();
        let own = dir.join("daas-test-bins").join(me.file_name().unwrap());
        let _ = std::fs::remove_dir_all(&own);
        std::fs::create_dir_all(&own).unwrap();
        for name in [
            "daas",
            "daas-enclave",
            "daas-host",
            "daas-bench",
            "daas-worker",
        ] {
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

/// Runs `daas args...`.
pub fn daas(args: &[&str]) -> Output {
    Command::new(bin("daas"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

/// Stdout and stderr of `out`, for assertions and failure messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A running `daas-enclave --dev` on a loopback port; killed on drop.
pub struct Enclave {
    child: Child,
    /// Its stdout, line by line.
    lines: std::sync::mpsc::Receiver<String>,
    /// Its data directory.
    pub dir: tempfile::TempDir,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
}

impl Enclave {
    /// Starts it and waits for its `ready <url>` line.
    pub fn start() -> Enclave {
        Self::start_in(tempfile::tempdir().unwrap(), &[], "ready ")
    }

    /// Starts it on `dir` with `extra` arguments and waits for the stdout
    /// line starting with `announce` (`"ready "`, or `"sealed "` while it
    /// waits for `daas unseal`).
    pub fn start_in(dir: tempfile::TempDir, extra: &[&str], announce: &str) -> Enclave {
        let (child, lines) = spawn_enclave(dir.path(), extra);
        let mut enclave = Enclave {
            child,
            lines,
            dir,
            url: String::new(),
        };
        enclave.url = enclave.wait_for(announce);
        enclave
    }

    /// Waits for the next stdout line starting with `prefix`; the rest of it.
    pub fn wait_for(&self, prefix: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_string();
                    }
                }
                Err(e) => panic!("daas-enclave did not print {prefix:?}: {e}"),
            }
        }
    }

    /// Kills it (SIGKILL) and starts it again on the same directory.
    pub fn restart(&mut self, extra: &[&str], announce: &str) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, lines) = spawn_enclave(self.dir.path(), extra);
        self.child = child;
        self.lines = lines;
        self.url = self.wait_for(announce);
    }

    /// `DIR/rel`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `DIR/rel` as a string argument.
    pub fn arg(&self, rel: &str) -> String {
        self.path(rel).to_str().unwrap().to_owned()
    }
}

fn spawn_enclave(dir: &Path, extra: &[&str]) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(bin("daas-enclave"))
        .args(["--dev", "--listen", "tcp:127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let rx = stdout_lines(&mut child, None);
    (child, rx)
}

/// The child's stdout, line by line, on a channel (fed by a thread until the
/// stream ends or the receiver is dropped); each line is also printed after
/// `echo` if given, so a failing test shows what the process said.
pub fn stdout_lines(
    child: &mut Child,
    echo: Option<&'static str>,
) -> std::sync::mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(prefix) = echo {
                println!("{prefix}{line}");
            }
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Drop for Enclave {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `kubectl --kubeconfig KC args...`.
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--request-timeout", "30s"])
        .args(args)
        .output()
        .expect("kubectl is not on PATH")
}

/// Runs `kubectl --kubeconfig KC args...` with `stdin` piped in.
pub fn kubectl_stdin(kubeconfig: &Path, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--request-timeout", "30s"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl is not on PATH");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).expect("kubectl's stdin");
    }
    child.wait_with_output().expect("kubectl")
}

/// Starts `python3 tests/support/SCRIPT ARGS...`, a test server that prints `listening PORT`
/// as its first line; returns the process and the port.
pub fn python_server(script: &str, args: &[&str]) -> (Child, u16) {
    let mut child = Command::new("python3")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/support")
                .join(script),
        )
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out)
            .read_line(&mut line)
            .expect("the server's first line");
    }
    let port = line
        .trim()
        .strip_prefix("listening ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{script} said {line:?}"));
    (child, port)
}
