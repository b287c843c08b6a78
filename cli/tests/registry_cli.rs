//! `daas registry` end to end against a local registry file, through the built binary. Every
//! account is a real Ed25519 key in a Sui CLI keystore (`daas registry new-account`), as on Sui.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PCR_A: &str = "cbe1afb6ed0ff89f10295af0b802247ec5670da8f886e71a4226373b032c322f4e42c9c98288e7211682b258684505a2";
const PCR_B: &str = "21b9efbc184807662e966d34f390821309eeac6802309798826296bf3e8bec7c10edb30948c90ba67310f7b964fc500a";
const ADMIN: &str = "admin";
const WORKER: &str = "worker";

/// A fresh directory under the system temp dir, removed on drop (the cli crate has no
/// `tempfile` dev-dependency).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("daas-registry-cli-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Registry {
    dir: TempDir,
    url: String,
}

impl Registry {
    fn new() -> Self {
        let dir = TempDir::new();
        let url = format!("local:{}", dir.path().join("registry.json").display());
        Self { dir, url }
    }

    /// The keystore of `account` (created with one key on first use).
    fn keystore(&self, account: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{account}.keystore"));
        if !path.exists() {
            let out = Command::new(env!("CARGO_BIN_EXE_daas"))
                .args(["registry", "new-account", "--keystore"])
                .arg(&path)
                .env_remove("DAAS_SUI_KEYSTORE")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        path
    }

    /// The address of `account`.
    fn address(&self, account: &str) -> String {
        let keystore = chain::AccountKeystore::load(self.keystore(account)).unwrap();
        keystore.account(None).unwrap().address().to_string()
    }

    fn daas(&self, account: &str, args: &[&str]) -> Output {
        let keystore = self.keystore(account);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_daas"));
        cmd.arg("registry")
            .args(args)
            .args(["--registry", &self.url, "--keystore", path_str(&keystore)])
            .env_remove("DAAS_REGISTRY")
            .env_remove("DAAS_SUI_ADDRESS");
        cmd.output().unwrap()
    }

    fn ok(&self, account: &str, args: &[&str]) -> String {
        let out = self.daas(account, args);
        assert!(
            out.status.success(),
            "daas {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, account: &str, args: &[&str], expected: &str) {
        let out = self.daas(account, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "daas {args:?} should fail");
        assert!(
            stderr.contains(expected),
            "daas {args:?}: expected {expected:?} in stderr:\n{stderr}"
        );
    }

    fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn state(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(ADMIN, &["show", "--json"])).unwrap()
    }
}

fn pcrs_json(pcr0: &str, pcr2: &str) -> String {
    format!(r#"{{"HashAlgorithm":"SHA384","PCR0":"{pcr0}","PCR1":"{pcr0}","PCR2":"{pcr2}"}}"#)
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn init_allow_show_stake_unstake() {
    let r = Registry::new();
    let out = r.ok(ADMIN, &["init", "--name", "demo"]);
    assert!(out.contains("created cluster \"demo\""), "{out}");
    r.fails(ADMIN, &["init", "--name", "demo"], "already exists");

    let pcrs = r.file("v1.pcrs", pcrs_json(PCR_A, PCR_B).as_bytes());
    r.ok(
        ADMIN,
        &[
            "allow-image",
            "--pcrs",
            path_str(&pcrs),
            "--label",
            "first",
            "--version",
            "1",
        ],
    );
    r.fails(
        WORKER,
        &[
            "allow-image",
            "--pcrs",
            path_str(&pcrs),
            "--label",
            "x",
            "--version",
            "2",
        ],
        "is not the admin",
    );
    r.fails(
        ADMIN,
        &[
            "allow-image",
            "--pcrs",
            path_str(&pcrs),
            "--label",
            "dup",
            "--version",
            "2",
        ],
        "already allowed as version 1",
    );
    let debug = r.file("debug.pcrs", pcrs_json(&"0".repeat(96), PCR_B).as_bytes());
    r.fails(
        ADMIN,
        &[
            "allow-image",
            "--pcrs",
            path_str(&debug),
            "--label",
            "d",
            "--version",
            "3",
        ],
        "debug mode",
    );
    let broken = r.file("broken.pcrs", br#"{"PCR0":"abc"}"#);
    r.fails(
        ADMIN,
        &[
            "allow-image",
            "--pcrs",
            path_str(&broken),
            "--label",
            "b",
            "--version",
            "4",
        ],
        "bad PCR measurements",
    );

    r.ok(
        WORKER,
        &["stake", "--node", "node-a", "--amount", "1500000000"],
    );
    // The keystore's account acts: it owns the stake, and the admin is the creator's.
    assert_eq!(r.state()["stakes"]["node-a"]["owner"], r.address(WORKER));
    assert_eq!(r.state()["admin"], r.address(ADMIN));
    r.fails(
        WORKER,
        &["stake", "--node", "node-b", "--amount", "5"],
        "below the cluster minimum",
    );
    r.fails(
        ADMIN,
        &["stake", "--node", "node-a", "--amount", "1500000000"],
        "already staked",
    );

    let text = r.ok(ADMIN, &["show"]);
    for expected in [
        "\"demo\"",
        "allowed images (1)",
        "v1 \"first\"",
        &format!("PCR0 {PCR_A}"),
        &format!("PCR2 {PCR_B}"),
        "stakes (1)",
        "node-a",
        "1.5 SUI",
        "active",
        "live enclave\n  none",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }

    r.fails(ADMIN, &["unstake", "--node", "node-a"], "does not own");
    r.ok(WORKER, &["unstake", "--node", "node-a"]);
    r.fails(WORKER, &["withdraw", "--node", "node-a"], "unlocks at");
    let text = r.ok(ADMIN, &["show"]);
    assert!(text.contains("unstaking, withdrawable at"), "{text}");

    r.fails(
        WORKER,
        &["slash", "--node", "node-a", "--amount", "1"],
        "is not the admin",
    );
    r.ok(
        ADMIN,
        &["slash", "--node", "node-a", "--amount", "500000000"],
    );
    assert_eq!(r.state()["stakes"]["node-a"]["amount"], 1_000_000_000u64);
    assert_eq!(r.state()["slashed"], 500_000_000u64);

    r.ok(ADMIN, &["retire-image", "--version", "1"]);
    r.fails(
        ADMIN,
        &["retire-image", "--version", "1"],
        "no allowed image has version 1",
    );
}

#[test]
fn withdraw_after_cooldown_frees_the_name() {
    let r = Registry::new();
    r.ok(
        ADMIN,
        &[
            "init",
            "--name",
            "c",
            "--unstake-cooldown-ms",
            "0",
            "--min-stake",
            "10",
        ],
    );
    r.ok(WORKER, &["stake", "--node", "n1", "--amount", "10"]);
    r.fails(WORKER, &["withdraw", "--node", "n1"], "never requested");
    r.ok(WORKER, &["unstake", "--node", "n1"]);
    r.fails(WORKER, &["unstake", "--node", "n1"], "already requested");
    let out = r.ok(WORKER, &["withdraw", "--node", "n1"]);
    assert!(out.contains("withdrew 10 MIST"), "{out}");
    assert_eq!(r.state()["stakes"], serde_json::json!({}));
    r.ok(ADMIN, &["stake", "--node", "n1", "--amount", "10"]);
}

#[test]
fn concurrent_processes_lose_no_stake() {
    let r = Registry::new();
    r.ok(ADMIN, &["init", "--name", "c", "--min-stake", "1"]);
    let keystores: Vec<PathBuf> = (0..12).map(|i| r.keystore(&format!("acct-{i}"))).collect();
    let children: Vec<_> = keystores
        .iter()
        .enumerate()
        .map(|(i, keystore)| {
            Command::new(env!("CARGO_BIN_EXE_daas"))
                .args([
                    "registry",
                    "stake",
                    "--node",
                    &format!("node-{i}"),
                    "--amount",
                    "1",
                ])
                .args(["--registry", &r.url, "--keystore", path_str(keystore)])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stakes = r.state()["stakes"].as_object().unwrap().len();
    assert_eq!(stakes, 12);
}

#[test]
fn accounts_are_keystore_keys() {
    let r = Registry::new();
    let path = r.dir.path().join("two.keystore");
    let new = |p: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_daas"))
            .args(["registry", "new-account", "--keystore"])
            .arg(p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let first = new(&path);
    let second = new(&path);
    assert_ne!(first, second);
    let keystore = chain::AccountKeystore::load(&path).unwrap();
    let addresses: Vec<String> = keystore
        .accounts()
        .iter()
        .map(|a| a.address().to_string())
        .collect();
    assert_eq!(addresses, [first.clone(), second.clone()]);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // --address picks the account that acts.
    r.ok(ADMIN, &["init", "--name", "c", "--min-stake", "1"]);
    let out = Command::new(env!("CARGO_BIN_EXE_daas"))
        .args(["registry", "stake", "--node", "n2", "--amount", "1"])
        .args(["--registry", &r.url, "--keystore", path_str(&path)])
        .args(["--address", &second])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(r.state()["stakes"]["n2"]["owner"], second);

    // Creating a cluster needs an account to be its admin.
    let other = Registry::new();
    let out = Command::new(env!("CARGO_BIN_EXE_daas"))
        .args(["registry", "init", "--name", "c", "--registry", &other.url])
        .env("HOME", other.dir.path())
        .env_remove("DAAS_SUI_KEYSTORE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs a keystore"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_input_gets_a_clear_error() {
    let r = Registry::new();
    r.fails(ADMIN, &["show"], "no registry at");
    r.fails(
        ADMIN,
        &["init", "--name", "c", "--min-stake", "0"],
        "minimum stake must be positive",
    );
    r.fails(
        ADMIN,
        &["init", "--name", "c", "--max-document-age-ms", "10800001"],
        "document age bound",
    );
    r.ok(ADMIN, &["init", "--name", "c"]);
    // A real AWS document from 2025: its certificate chain expired long before the wall clock.
    let doc = r.file(
        "doc.cbor",
        include_bytes!("../../chain/testdata/nautilus-weather-2025-04-15.cbor"),
    );
    r.fails(
        ADMIN,
        &["register-enclave", "--document", path_str(&doc)],
        "attestation document does not verify",
    );
    let garbage = r.file("garbage.cbor", b"not cbor");
    r.fails(
        ADMIN,
        &["register-enclave", "--document", path_str(&garbage)],
        "does not verify",
    );

    let out = Command::new(env!("CARGO_BIN_EXE_daas"))
        .args(["registry", "show", "--registry", "ftp://x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("expected local:PATH"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    r.fails(
        ADMIN,
        &["stake", "--node", "", "--amount", "1000000000"],
        "must be 1..=253 bytes",
    );

    // A sui: registry either is not in this build or needs a usable keystore.
    let out = Command::new(env!("CARGO_BIN_EXE_daas"))
        .args([
            "registry",
            "show",
            "--registry",
            "sui:http://127.0.0.1:9#0x1",
        ])
        .args(["--keystore", "/nonexistent/sui.keystore"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no Sui backend") || stderr.contains("/nonexistent/sui.keystore"),
        "{stderr}"
    );
}
