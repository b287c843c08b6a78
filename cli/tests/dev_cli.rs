//! `daas dev` end to end: one command brings up the enclave (its own
//! process, on a Unix socket) and the relay, verifies the attestation with
//! the dev root, and writes a pinned kubeconfig that the real kubectl uses;
//! SIGTERM stops everything; a second `daas dev` on the same data directory
//! resumes the same cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use common::{bin, kubectl, stdout_lines, text};

/// A running `daas dev`; SIGTERMed and reaped on drop.
struct Dev {
    child: Child,
    output: std::sync::mpsc::Receiver<String>,
}

impl Dev {
    fn start(dir: &Path, port: u16) -> Dev {
        let mut child = Command::new(bin("daas"))
            .arg("dev")
            .arg("--data-dir")
            .arg(dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            // The control plane alone, as before workers existed (tests/dev_workers.rs has them).
            .args(["--workers", "0"])
            .arg("--kubeconfig")
            .arg(dir.join("admin.yaml"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let output = stdout_lines(&mut child, Some("daas dev| "));
        Dev { child, output }
    }

    /// Waits for the "ready" line; returns everything printed up to it.
    fn wait_ready(&self) -> String {
        self.wait_for("dev cluster ready")
    }

    /// Waits for a line starting with `prefix`; returns everything printed
    /// up to it.
    fn wait_for(&self, prefix: &str) -> String {
        let mut seen = String::new();
        loop {
            // A generous bound only so a broken build cannot hang CI.
            let line = self
                .output
                .recv_timeout(Duration::from_secs(600))
                .unwrap_or_else(|e| panic!("daas dev never printed {prefix:?} ({e}):\n{seen}"));
            seen.push_str(&line);
            seen.push('\n');
            if line.starts_with(prefix) {
                return seen;
            }
        }
    }

    fn terminate(&mut self) -> ExitStatus {
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

/// Every process whose command line mentions `needle`, as (pid, command line).
fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(needle).then_some((pid, cmdline))
        })
        .collect()
}

/// The pid of the `daas-enclave` running on data directory `dir`.
fn enclave_pid(dir: &Path) -> u32 {
    processes_mentioning(&format!("{}/enclave", dir.display()))
        .into_iter()
        .find(|(_, cmdline)| cmdline.contains("daas-enclave"))
        .expect("no daas-enclave process for this data directory")
        .0
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn dev_brings_up_an_attested_cluster_and_resumes_it() {
    common::bin_dir();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let kubeconfig = dir.path().join("admin.yaml");

    let mut dev = Dev::start(dir.path(), port);
    let shown = dev.wait_ready();
    assert!(shown.contains(": VERIFIED"), "{shown}");
    assert!(shown.contains("dev simulator root"), "{shown}");
    assert!(shown.contains("[ok  ] TLS binding"), "{shown}");
    assert!(shown.contains("[ok  ] expected PCRs"), "{shown}");
    assert!(kubeconfig.is_file());

    let out = kubectl(&kubeconfig, &["get", "namespaces", "-o", "name"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("namespace/default"));
    let out = kubectl(
        &kubeconfig,
        &[
            "create",
            "configmap",
            "survivor",
            "--from-literal=greeting=hi",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    // The write went to the host's journal service, sealed: the host holds
    // records but not the value.
    let journal = std::fs::read(dir.path().join("host-journal/journal")).unwrap();
    assert!(!journal.is_empty(), "the host journal has no records");
    assert!(
        !journal.windows(b"survivor".len()).any(|w| w == b"survivor"),
        "the host journal holds plaintext"
    );

    // The supervisor restarts a killed enclave, daas dev verifies it again,
    // and the acknowledged write is still there.
    let dir_path = std::fs::canonicalize(dir.path()).unwrap();
    let pid = enclave_pid(&dir_path);
    let killed = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    dev.wait_for("the restarted enclave verified again");
    let out = kubectl(&kubeconfig, &["get", "configmap", "survivor"]);
    assert!(out.status.success(), "{}", text(&out));

    let status = dev.terminate();
    assert!(status.success(), "daas dev exited with {status}");
    // The relay is gone with it: the port is free again.
    std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    assert!(kubectl(&kubeconfig, &["get", "namespaces"]).status.code() != Some(0));

    let mut dev = Dev::start(dir.path(), port);
    dev.wait_ready();
    let out = kubectl(
        &kubeconfig,
        &[
            "get",
            "configmap",
            "survivor",
            "-o",
            "jsonpath={.data.greeting}",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi");
    let status = dev.terminate();
    assert!(status.success(), "daas dev exited with {status}");
}

#[test]
fn dev_refuses_an_address_in_use() {
    common::bin_dir();
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(bin("daas"))
        .arg("dev")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--workers", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("is not free"), "{}", text(&out));
}

#[test]
fn a_second_dev_on_the_same_directory_is_refused_and_a_killed_dev_leaves_nothing_running() {
    common::bin_dir();
    let dir = tempfile::tempdir().unwrap();
    let dir_path = std::fs::canonicalize(dir.path()).unwrap();
    let mut dev = Dev::start(dir.path(), free_port());
    dev.wait_ready();

    // One cluster, one `daas dev`: a second one on the same directory stops
    // before touching anything, even on a free port.
    let out = Command::new(bin("daas"))
        .arg("dev")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--workers", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("in use by another `daas dev`"),
        "{}",
        text(&out)
    );

    // SIGKILL gives daas dev no chance to stop its children; they notice
    // their parent is gone and stop by themselves.
    let needle = dir_path.display().to_string();
    let children = processes_mentioning(&needle);
    assert!(
        children.len() >= 3,
        "expected journal, enclave and relay: {children:?}"
    );
    let killed = Command::new("kill")
        .args(["-KILL", &dev.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    dev.child.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = processes_mentioning(&needle);
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running 30 s after daas dev was killed: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // And the directory is free for the next `daas dev`, which resumes it.
    let mut dev = Dev::start(dir.path(), free_port());
    dev.wait_ready();
    let status = dev.terminate();
    assert!(status.success(), "daas dev exited with {status}");
}
