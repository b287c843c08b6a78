//! Rollback anchors end to end with the real `daas-enclave --dev` and a real local registry: the
//! enclave records anchors while it writes, refuses at boot a journal older than the latest
//! anchor, a forged anchor, and an anchor made for another cluster, each with a message naming
//! the anchor and the journal's end; with the registry behind an unreachable relay it serves
//! nothing until the registry answers (`daas-host registry`), unless started degraded.
//!
//! The journal here is the local file journal; the index is removed before each restart, as an
//! enclave's tmpfs starts empty, so the journal is all the enclave has.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;
#[path = "journal_support/mod.rs"]
mod journal_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use attestation::{Mode, RootSecret, Verifier};
use chain::{Address, FileRegistry, Pcrs, Registry, RegistryAdmin, SignedAnchor};
use common::Enclave;
use journal_support::{host_bin, lines, wait_for};

const ANCHOR_INTERVAL: &str = "1s";

/// A dev registry allowing the `daas-enclave` binary's PCRs.
fn new_registry(path: &Path) -> FileRegistry {
    let [pcr0, pcr1, pcr2] = attestation::measure_binary_file(common::enclave_exe()).unwrap();
    let r = FileRegistry::init(
        path,
        "anchors",
        chain::ClusterSettings {
            min_stake: 1,
            unstake_cooldown_ms: 1,
            max_document_age_ms: 300_000,
        },
        Address::ZERO,
        Verifier::aws_nitro(),
    )
    .unwrap();
    let rt = runtime();
    rt.block_on(r.allow_image(Pcrs { pcr0, pcr1, pcr2 }, "dev", 1))
        .unwrap();
    r
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Registers the running enclave (its attestation document, dev root) as the live one.
fn register(e: &Enclave, registry: &Path) {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "60", "--cacert"])
        .arg(e.pki("server.crt"))
        .arg(format!("{}/attestation?nonce={}", e.url, "cd".repeat(16)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = std::fs::read(e.dir.path().join("attestation/dev-root.crt")).unwrap();
    let r = FileRegistry::open(
        registry,
        Address::ZERO,
        Verifier::dangerous_trust_root_pem(&root).unwrap(),
    )
    .unwrap();
    runtime().block_on(r.register_enclave(&out.stdout)).unwrap();
}

fn latest_revision(registry: &Path) -> u64 {
    let r = FileRegistry::open(registry, Address::ZERO, Verifier::aws_nitro()).unwrap();
    runtime()
        .block_on(r.latest_anchor())
        .unwrap()
        .map_or(0, |a| a.revision)
}

/// Creates a configmap and returns its resourceVersion.
fn write(e: &Enclave, name: &str) -> u64 {
    let body = format!(r#"{{"metadata":{{"name":"{name}"}},"data":{{"k":"v"}}}}"#);
    let (code, text) = e.curl_admin(
        "/api/v1/namespaces/default/configmaps",
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            &body,
        ],
    );
    assert_eq!(code, 201, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The store's current revision (a LIST's resourceVersion).
fn current_revision(e: &Enclave) -> u64 {
    let (code, text) = e.curl_admin("/api/v1/namespaces/default/configmaps?limit=1", &[]);
    assert_eq!(code, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Waits until the control plane's own start-up writes (the `kubernetes` Service, its
/// ServiceCIDR and IPAddress, APIServices, flow-control objects) are done, so that the
/// revisions these tests write are the journal's last ones.
fn settle(e: &Enclave) {
    let start = Instant::now();
    let mut last = current_revision(e);
    loop {
        std::thread::sleep(Duration::from_millis(700));
        let now = current_revision(e);
        if now == last {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "still writing at {now}"
        );
        last = now;
    }
}

/// Waits (bounded, a hang guard) until the registry's anchor reaches `revision`.
fn wait_anchored(registry: &Path, revision: u64) {
    let start = Instant::now();
    while latest_revision(registry) < revision {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no anchor at revision {revision} (latest {})",
            latest_revision(registry)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn anchor_flags(registry: &Path) -> Vec<String> {
    vec![
        "--registry".into(),
        format!("local:{}", registry.display()),
        "--anchor-interval".into(),
        ANCHOR_INTERVAL.into(),
        "--snapshot-interval".into(),
        "0".into(),
    ]
}

fn start(dir: tempfile::TempDir, flags: &[String]) -> Enclave {
    let _ = std::fs::remove_dir_all(dir.path().join("index"));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Enclave::start_in_with(dir, &flags)
}

/// Runs the enclave on `dir` expecting it to refuse to start; its standard error.
fn refused(dir: &Path, flags: &[String]) -> String {
    let _ = std::fs::remove_dir_all(dir.join("index"));
    let out = Command::new(common::enclave_exe())
        .args(["--dev", "--listen", "tcp:127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(flags)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "the enclave started: {stdout}");
    assert!(!stdout.contains("ready "), "{stdout}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Replaces the registry file's latest anchor (as a host holding the file could).
fn put_anchor(registry: &Path, anchor: &SignedAnchor) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(registry).unwrap()).unwrap();
    v["cluster"]["latest_anchor"] = serde_json::json!({
        "revision": anchor.revision,
        "chain_hash": hex::encode(anchor.chain_hash),
        "timestamp_ms": anchor.timestamp_ms,
        "recorded_at_ms": anchor.timestamp_ms,
        "signature": hex::encode(anchor.signature),
    });
    std::fs::write(registry, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

struct Cluster {
    base: tempfile::TempDir,
    registry: PathBuf,
    flags: Vec<String>,
}

impl Cluster {
    fn new() -> Self {
        let base = tempfile::tempdir().unwrap();
        let registry = base.path().join("registry.json");
        let _ = new_registry(&registry);
        let flags = anchor_flags(&registry);
        Self {
            base,
            registry,
            flags,
        }
    }
}

#[test]
fn a_journal_older_than_the_latest_anchor_is_refused_and_the_right_one_opens() {
    let c = Cluster::new();
    let e = start(tempfile::tempdir().unwrap(), &c.flags);
    register(&e, &c.registry);
    settle(&e);
    let first = write(&e, "first");
    wait_anchored(&c.registry, first);
    let old_journal = c.base.path().join("old-journal");
    copy_dir(&e.dir.path().join("journal"), &old_journal);
    let second = write(&e, "second");
    wait_anchored(&c.registry, second);
    let dir = e.stop();

    // The host serves the journal as it was before "second": rolled back past the anchor.
    let current = c.base.path().join("current-journal");
    copy_dir(&dir.path().join("journal"), &current);
    std::fs::remove_dir_all(dir.path().join("journal")).unwrap();
    copy_dir(&old_journal, &dir.path().join("journal"));
    let stderr = refused(dir.path(), &c.flags);
    assert!(
        stderr.contains(&format!("the journal ends at revision {first}"))
            && stderr.contains(&format!("registry's latest anchor (revision {second}"))
            && stderr.contains("rolled back"),
        "{stderr}"
    );

    // The journal the anchor names opens, with everything in it.
    std::fs::remove_dir_all(dir.path().join("journal")).unwrap();
    copy_dir(&current, &dir.path().join("journal"));
    let e = start(dir, &c.flags);
    let (code, _) = e.curl_admin("/api/v1/namespaces/default/configmaps/second", &[]);
    assert_eq!(code, 200);
}

#[test]
fn forged_anchors_and_anchors_for_another_cluster_are_refused() {
    let c = Cluster::new();
    let e = start(tempfile::tempdir().unwrap(), &c.flags);
    register(&e, &c.registry);
    settle(&e);
    let revision = write(&e, "one");
    wait_anchored(&c.registry, revision);
    let dir = e.stop();
    let r = FileRegistry::open(&c.registry, Address::ZERO, Verifier::aws_nitro()).unwrap();
    let rt = runtime();
    let genuine = rt.block_on(r.latest_anchor()).unwrap().unwrap();
    let cluster = rt.block_on(r.cluster()).unwrap().id;

    // Signed by a key that is not the cluster's anchor key.
    let intruder = ring::signature::Ed25519KeyPair::from_seed_unchecked(&[0x66; 32]).unwrap();
    let forged = SignedAnchor::sign(
        &intruder,
        cluster,
        genuine.revision,
        genuine.chain_hash,
        genuine.timestamp_ms,
    );
    put_anchor(&c.registry, &forged);
    let stderr = refused(dir.path(), &c.flags);
    assert!(
        stderr.contains("does not verify under this cluster's anchor key")
            && stderr.contains(&format!("revision {}", genuine.revision)),
        "{stderr}"
    );

    // Signed with this cluster's anchor key, but for another registry cluster.
    let root = RootSecret::load_dev_file(&dir.path().join("root-secret.dev")).unwrap();
    let key = root.anchor_signing_key(Mode::Dev);
    let foreign = SignedAnchor::sign(
        &key,
        Address([0x42; 32]),
        genuine.revision,
        genuine.chain_hash,
        genuine.timestamp_ms,
    );
    put_anchor(&c.registry, &foreign);
    let stderr = refused(dir.path(), &c.flags);
    assert!(
        stderr.contains("forged or belongs to another cluster"),
        "{stderr}"
    );

    // The genuine anchor, put back, lets it start.
    put_anchor(&c.registry, &genuine.signed());
    let e = start(dir, &c.flags);
    let (code, _) = e.curl_admin("/api/v1/namespaces/default/configmaps/one", &[]);
    assert_eq!(code, 200);
}

#[test]
fn with_the_registry_unreachable_nothing_is_served_until_it_answers() {
    let c = Cluster::new();
    let relay_sock = c.base.path().join("registry.sock");
    let flags = vec![
        "--registry".to_owned(),
        format!("relay:unix:{}", relay_sock.display()),
        "--anchor-interval".to_owned(),
        ANCHOR_INTERVAL.to_owned(),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(common::enclave_exe())
        .args(["--dev", "--listen", "tcp:127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(&flags)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = lines(&mut child);
    // It says why it waits, on standard error, and serves nothing meanwhile.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("no waiting message ({e}): {seen:?}"));
        if line.contains("the registry cannot be read: not serving") {
            break;
        }
        seen.push(line);
    }
    assert!(
        stdout.try_recv().is_err(),
        "nothing is served while the registry is unreachable"
    );
    // The host's registry relay comes up: the enclave reads the anchor and serves.
    let mut relay = Command::new(host_bin())
        .args(["registry", "--registry"])
        .arg(format!("local:{}", c.registry.display()))
        .arg("--listen")
        .arg(format!("unix:{}", relay_sock.display()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let relay_out = lines(&mut relay);
    wait_for(&relay_out, "registry listening on");
    let ready = wait_for(&stdout, "ready ");
    assert!(ready.starts_with("ready https://"), "{ready}");
    let _ = child.kill();
    let _ = child.wait();
    let _ = relay.kill();
    let _ = relay.wait();

    // Degraded start: serves at once, saying loudly that it did not check.
    std::fs::remove_file(&relay_sock).ok();
    let mut degraded_flags = flags.clone();
    degraded_flags.push("--degraded-start-without-registry".into());
    let mut child = Command::new(common::enclave_exe())
        .args(["--dev", "--listen", "tcp:127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(&degraded_flags)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = lines(&mut child);
    wait_for(&stdout, "ready ");
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("DEGRADED START"), "{stderr}");
}
