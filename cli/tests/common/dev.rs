//! What the `daas dev` tests share: a running `daas dev` cluster, free ports, the versioned
//! kubectl binaries and a bounded wait.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use super::{bin, stdout_lines};

/// A running `daas dev`; SIGTERMed and reaped on drop. Its stdout is echoed as `daas dev| ...`
/// so a failing test shows what it said.
pub struct Dev {
    child: Child,
    output: Receiver<String>,
}

impl Dev {
    /// Starts `daas dev --data-dir DIR --listen 127.0.0.1:PORT --workers N`, then `extra`.
    pub fn start(dir: &Path, port: u16, workers: u32, extra: &[&str]) -> Dev {
        let mut child = Command::new(bin("daas"))
            .arg("dev")
            .arg("--data-dir")
            .arg(dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--workers", &workers.to_string()])
            .args(extra)
            .env("RUST_LOG", "warn,worker=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let output = stdout_lines(&mut child, Some("daas dev| "));
        Dev { child, output }
    }

    /// Waits for a line starting with `prefix`; returns everything printed up to it.
    pub fn wait_for(&self, prefix: &str) -> String {
        self.wait_for_count(prefix, 1)
    }

    /// Waits for `count` lines starting with `prefix`; returns everything printed up to the
    /// last of them.
    pub fn wait_for_count(&self, prefix: &str, count: usize) -> String {
        let mut seen = String::new();
        let mut matched = 0;
        while matched < count {
            // A generous bound only so a broken build cannot hang CI.
            let line = self
                .output
                .recv_timeout(Duration::from_secs(600))
                .unwrap_or_else(|e| panic!("daas dev never printed {prefix:?} ({e}):\n{seen}"));
            seen.push_str(&line);
            seen.push('\n');
            if line.starts_with(prefix) {
                matched += 1;
            }
        }
        seen
    }

    /// Kills `daas dev` with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill9(&mut self) {
        let killed = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success(), "kill -9 {} failed", self.child.id());
        self.child.wait().unwrap();
    }

    /// SIGTERMs `daas dev` and waits for it to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap()
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.terminate();
        }
    }
}

/// Whether containerd can run here; when not, says that `test` is skipped (and fails under CI,
/// which requires it).
pub fn containerd_available(test: &str) -> bool {
    let found = Command::new("containerd")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "containerd is not installed (scripts/setup installs it); CI requires it"
        );
        eprintln!(
            "\n\n*** SKIPPED {test}: containerd is not installed (run scripts/setup) ***\n\n"
        );
    }
    found
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The versioned kubectl binary installed beside `kubectl` (`kubectl.1.27`, ...).
pub fn kubectl_version(version: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("kubectl"))
                .find(|p| p.is_file())
        })
        .expect("kubectl is not on PATH");
    let real = std::fs::canonicalize(on_path).unwrap();
    let versioned = real.parent().unwrap().join(format!("kubectl.{version}"));
    assert!(versioned.is_file(), "{} is missing", versioned.display());
    versioned
}

/// Polls `check` every half second until it holds; fails the test after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Processes whose command line mentions `dir` (containerd, its shims, the workers), as
/// `PID: COMMAND LINE`.
pub fn processes_under(dir: &Path) -> Vec<String> {
    let needle = dir.as_os_str().as_encoded_bytes();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline.windows(needle.len()).any(|w| w == needle) {
            let shown = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            found.push(format!("{}: {shown}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

/// The PIDs of the `daas-worker` processes of the `daas dev` cluster in `dir`.
pub fn worker_pids(dir: &Path) -> Vec<u32> {
    processes_under(dir)
        .iter()
        .filter_map(|p| {
            let (pid, cmdline) = p.split_once(": ")?;
            let program = cmdline.split(' ').next()?;
            program
                .ends_with("/daas-worker")
                .then(|| pid.parse().ok())
                .flatten()
        })
        .collect()
}
