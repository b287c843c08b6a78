//! `daas dev` end to end: one command brings up the enclave (its own
//! process, on a Unix socket) and the relay, verifies the attestation with
//! the dev root, and writes a pinned kubeconfig that the real kubectl uses;
//! SIGTERM stops everything; a second `daas dev` on the same data directory
//! resumes the same cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::dev::{Dev, free_port};
use common::{bin, kubectl, text};

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

/// `daas dev` with the control plane alone, as before workers existed (dev_workers has them),
/// writing its kubeconfig to `DIR/admin.yaml`.
fn start(dir: &Path, port: u16) -> Dev {
    let kubeconfig = dir.join("admin.yaml");
    Dev::start(
        dir,
        port,
        0,
        &["--kubeconfig", kubeconfig.to_str().unwrap()],
    )
}

#[test]
fn dev_brings_up_an_attested_cluster_and_resumes_it() {
    common::bin_dir();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let kubeconfig = dir.path().join("admin.yaml");

    let mut dev = start(dir.path(), port);
    let shown = dev.wait_for("dev cluster ready");
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

    let mut dev = start(dir.path(), port);
    dev.wait_for("dev cluster ready");
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
    let mut dev = start(dir.path(), free_port());
    dev.wait_for("dev cluster ready");

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
    dev.kill9();
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
    let mut dev = start(dir.path(), free_port());
    dev.wait_for("dev cluster ready");
    let status = dev.terminate();
    assert!(status.success(), "daas dev exited with {status}");
}
