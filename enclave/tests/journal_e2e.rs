//! The real `daas-enclave --dev --journal unix:...` against the real `daas-host journal`, driven by the real
//! `kubectl`: the host's files (journal and snapshot) never contain a secret's bytes, and a SIGKILLed enclave restarted by the host's
//! dev launcher (`daas-host launch-dev`) keeps every acknowledged write.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod journal_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use journal_support::{HostJournal, enclave_bin, host_bin, lines, wait_for};
use ring::rand::{SecureRandom, SystemRandom};

/// kubectl with its own cache directory, against the kubeconfig the enclave wrote.
struct Kubectl {
    kubeconfig: PathBuf,
    cache: tempfile::TempDir,
}

impl Kubectl {
    fn new(enclave_dir: &Path) -> Kubectl {
        Kubectl {
            kubeconfig: enclave_dir.join("admin.kubeconfig"),
            cache: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache.path())
            .arg("--request-timeout=20s")
            .args(args)
            .env("HOME", self.cache.path())
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .output()
            .expect("kubectl runs (the machine image ships kubectl)")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The highest journal sequence number the host holds: the last record's in `journal`, or the one the `snapshot`
/// covers through (`KDS1 | seq | ...`). Unlike the journal's length it never goes down: a snapshot prunes only the
/// records it covers.
fn highest_seq_on_host(dir: &Path) -> u64 {
    let mut highest = std::fs::read(dir.join("snapshot"))
        .ok()
        .filter(|b| b.len() >= 12 && &b[..4] == b"KDS1")
        .map_or(0, |b| u64::from_be_bytes(b[4..12].try_into().unwrap()));
    let journal = std::fs::read(dir.join("journal")).unwrap_or_default();
    let mut rest = journal.as_slice();
    while rest.len() >= 4 {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let Some(record) = rest.get(4..4 + len) else {
            break;
        };
        if record.len() >= 12 && &record[..4] == b"KDJ1" {
            highest = highest.max(u64::from_be_bytes(record[4..12].try_into().unwrap()));
        }
        rest = &rest[4 + len..];
    }
    highest
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A process stopped with SIGTERM (so a supervisor can stop its child) and then reaped, on drop.
struct Terminated(Child);

impl Drop for Terminated {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

fn enclave_command(data_dir: &Path, listen: &str, journal: &Path) -> Vec<String> {
    vec![
        "--dev".into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--listen".into(),
        listen.into(),
        "--journal".into(),
        format!("unix:{}", journal.display()),
    ]
}

#[test]
fn the_host_cannot_read_a_secret_written_through_kubectl() {
    let tmp = tempfile::tempdir().unwrap();
    let host = HostJournal::start(&tmp.path().join("host"), &tmp.path().join("journal.sock"));
    let data = tmp.path().join("enclave");
    let mut enclave = Terminated(
        Command::new(enclave_bin())
            .args(enclave_command(&data, "tcp:127.0.0.1:0", &host.sock))
            .args(["--snapshot-interval", "1"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let rx = lines(&mut enclave.0);
    wait_for(&rx, "ready ");
    let before = highest_seq_on_host(&host.dir);

    let mut nonce = [0u8; 12];
    SystemRandom::new().fill(&mut nonce).unwrap();
    let secret = format!("canary-{}", hex::encode(nonce));
    let name = format!("leak-check-{}", &hex::encode(nonce)[..8]);
    let kubectl = Kubectl::new(&data);
    kubectl.ok(&[
        "create",
        "secret",
        "generic",
        &name,
        &format!("--from-literal=password={secret}"),
    ]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&secret);
    let got = kubectl.ok(&["get", "secret", &name, "-o", "jsonpath={.data.password}"]);
    assert_eq!(got, b64, "the secret was stored");

    // The write went through the host's journal...
    let after = highest_seq_on_host(&host.dir);
    assert!(
        after > before,
        "the secret's write reached the host journal (highest sequence {before} before, {after} after)"
    );
    // ...and into a sealed snapshot on the host (the enclave writes one each second while the store changes):
    // wait until one covers the secret's revision (`KDS1 | seq | revision | ...`).
    let rv: u64 = kubectl
        .ok(&[
            "get",
            "secret",
            &name,
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .parse()
        .unwrap();
    let snapshot = host.dir.join("snapshot");
    loop {
        if let Ok(b) = std::fs::read(&snapshot)
            && b.len() > 20
            && u64::from_be_bytes(b[12..20].try_into().unwrap()) >= rv
        {
            break;
        }
        assert!(
            enclave.0.try_wait().unwrap().is_none(),
            "the enclave exited before writing a snapshot"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // ...and not one of the host's files holds the value, its base64 form, or even the object's name.
    let needles = [
        ("secret value", secret.as_bytes()),
        ("base64 of the secret value", b64.as_bytes()),
        ("secret name", name.as_bytes()),
    ];
    let names: Vec<_> = files(&host.dir)
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.contains(&"journal".into()) && names.contains(&"snapshot".into()),
        "{names:?}"
    );
    let found = holders(&host.dir, &needles);
    assert!(
        found.is_empty(),
        "the host can read cluster state: {found:?}"
    );
    // Control: the same scan does find plaintext when it is there.
    let control = tempfile::tempdir().unwrap();
    std::fs::create_dir(control.path().join("sub")).unwrap();
    std::fs::write(
        control.path().join("sub/f"),
        format!("{{\"password\":\"{b64}\"}}"),
    )
    .unwrap();
    assert_eq!(holders(control.path(), &needles).len(), 1);
}

/// `(file, what)` for every file under `dir` that contains one of the needles.
fn holders(dir: &Path, needles: &[(&'static str, &[u8])]) -> Vec<(PathBuf, &'static str)> {
    let mut out = Vec::new();
    for file in files(dir) {
        let bytes = std::fs::read(&file).unwrap();
        for (what, needle) in needles {
            if contains(&bytes, needle) {
                out.push((file.clone(), *what));
            }
        }
    }
    out
}

/// The PID of `parent`'s (only) child process.
fn child_of(parent: u32) -> Option<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{parent}/task")).ok()?;
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        if let Some(pid) = children.split_whitespace().next() {
            return pid.parse().ok();
        }
    }
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_sigkilled_enclave_restarted_by_the_launcher_keeps_every_acknowledged_write() {
    const WRITERS: usize = 3;
    let tmp = tempfile::tempdir().unwrap();
    let host = HostJournal::start(&tmp.path().join("host"), &tmp.path().join("journal.sock"));
    let data = tmp.path().join("enclave");
    let listen = format!("tcp:127.0.0.1:{}", free_port());
    let mut launcher = Terminated(
        Command::new(host_bin())
            .arg("launch-dev")
            .arg("--program")
            .arg(enclave_bin())
            .arg("--")
            .args(enclave_command(&data, &listen, &host.sock))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let rx = lines(&mut launcher.0);
    wait_for(&rx, "ready ");

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let failed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (acked, failed, stop, data) =
            (acked.clone(), failed.clone(), stop.clone(), data.clone());
        writers.push(std::thread::spawn(move || {
            let kubectl = Kubectl::new(&data);
            for i in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let name = format!("cm-{w}-{i}");
                let out = kubectl.run(&[
                    "create",
                    "configmap",
                    &name,
                    &format!("--from-literal=n={i}"),
                ]);
                if out.status.success() {
                    acked.lock().unwrap().push(name);
                } else {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    let wait_acks = |n: usize| {
        while acked.lock().unwrap().len() < n {
            assert!(
                writers.iter().any(|w| !w.is_finished()),
                "writers stopped early"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };

    // Under load: SIGKILL the enclave process; the launcher starts it again and it restores from the host.
    wait_acks(15);
    let pid = child_of(launcher.0.id()).expect("the launcher's enclave child");
    let acked_before_kill = acked.lock().unwrap().len();
    assert!(
        Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .status()
            .unwrap()
            .success()
    );
    wait_for(&rx, "ready ");
    let new_pid = child_of(launcher.0.id()).expect("a restarted enclave child");
    assert_ne!(new_pid, pid, "the launcher started a new enclave process");
    wait_acks(acked_before_kill + 15);
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }

    let kubectl = Kubectl::new(&data);
    let listed = kubectl.ok(&["get", "configmaps", "-o", "name"]);
    let present: std::collections::HashSet<&str> = listed
        .lines()
        .filter_map(|l| l.strip_prefix("configmap/"))
        .collect();
    let acked = acked.lock().unwrap();
    let missing: Vec<_> = acked
        .iter()
        .filter(|n| !present.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes missing after the restart: {missing:?}",
        missing.len(),
        acked.len()
    );
    eprintln!(
        "{} acknowledged writes all present; {} failed during the restart",
        acked.len(),
        failed.load(Ordering::SeqCst)
    );
}
