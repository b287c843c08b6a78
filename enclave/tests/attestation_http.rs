//! `GET /attestation?nonce=<hex>` on the real `daas-enclave --dev`: the
//! document verifies under the persisted dev root (and only under it), binds
//! the serving certificate's key and carries the caller's nonce; bad
//! requests get a 400 Status saying what is wrong.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

#[path = "../../testing/workspace_bins.rs"]
mod workspace_bins;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use attestation::{Policy, Verifier, VerifyError};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// This checkout's `daas-enclave`. The target directory may be shared with
/// other checkouts whose builds replace `target/debug/daas-enclave` at any
/// moment, so it is (re)built here and hard-linked at once into a directory
/// of this test executable's own (the link keeps our inode whatever happens
/// to the original). Cargo releases its build lock before running tests, so
/// the nested build does not deadlock.
fn enclave_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let built = PathBuf::from(env!("CARGO_BIN_EXE_daas-enclave"));
        let dir = built.parent().unwrap();
        let status = workspace_bins::build(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"),
            dir.parent().unwrap(),
            dir.ends_with("release"),
            &[("enclave", "daas-enclave")],
        );
        assert!(status.success(), "building daas-enclave failed");
        let me = std::env::current_exe().unwrap();
        let own = dir.join("daas-test-bins").join(me.file_name().unwrap());
        let _ = std::fs::remove_dir_all(&own);
        std::fs::create_dir_all(&own).unwrap();
        let bin = own.join("daas-enclave");
        std::fs::hard_link(&built, &bin)
            .or_else(|_| std::fs::copy(&built, &bin).map(drop))
            .unwrap();
        bin
    })
}

/// A running `daas-enclave --dev` on a loopback port; killed on drop.
struct Enclave {
    child: Child,
    dir: tempfile::TempDir,
    url: String,
}

impl Enclave {
    fn start() -> Enclave {
        Self::start_in(tempfile::tempdir().unwrap())
    }

    fn start_in(dir: tempfile::TempDir) -> Enclave {
        let mut child = Command::new(enclave_bin())
            .args(["--dev", "--listen", "tcp:127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env("RUST_LOG", "warn")
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
            .recv_timeout(Duration::from_secs(120))
            .expect("daas-enclave did not report ready");
        Enclave { child, dir, url }
    }

    fn pki(&self, name: &str) -> PathBuf {
        self.dir.path().join("pki").join(name)
    }

    /// Stops the process and returns the data directory.
    fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }
}

impl Drop for Enclave {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// Fetches the document anonymously; returns (HTTP status, content type, body).
fn fetch(enclave: &Enclave, query: &str) -> (u16, String, Vec<u8>) {
    let body = enclave.dir.path().join("response.bin");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o"])
        .arg(&body)
        .args(["-w", "%{http_code} %{content_type}", "--cacert"])
        .arg(enclave.pki("server.crt"))
        .arg(format!("{}/attestation{query}", enclave.url))
        .output()
        .unwrap();
    let meta = String::from_utf8_lossy(&out.stdout).to_string();
    let (code, content_type) = meta.split_once(' ').unwrap_or((&meta, ""));
    (
        code.parse().unwrap(),
        content_type.to_string(),
        std::fs::read(&body).unwrap_or_default(),
    )
}

fn serving_cert(enclave: &Enclave) -> Vec<u8> {
    CertificateDer::from_pem_file(enclave.pki("server.crt"))
        .unwrap()
        .to_vec()
}

fn dev_verifier(dir: &std::path::Path) -> Verifier {
    let pem = std::fs::read(dir.join("attestation/dev-root.crt")).unwrap();
    Verifier::dangerous_trust_root_pem(&pem).unwrap()
}

#[test]
fn attestation_binds_the_serving_key_and_the_callers_nonce() {
    let enclave = Enclave::start();
    let (code, content_type, doc) = fetch(&enclave, "?nonce=00c0ffee");
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&doc));
    assert_eq!(content_type, "application/cbor");

    let verifier = dev_verifier(enclave.dir.path());
    let policy = Policy::new()
        .require_nonce(vec![0x00, 0xc0, 0xff, 0xee])
        .max_age(std::time::Duration::from_secs(600));
    let verified = verifier
        .verify_with_policy(&doc, now_ms(), &policy)
        .unwrap();
    assert!(!verified.is_debug_mode());
    attestation::check_tls_binding(&serving_cert(&enclave), &verified).unwrap();
    assert_eq!(
        verified.public_key(),
        Some(
            attestation::spki_sha256(&serving_cert(&enclave))
                .unwrap()
                .as_slice()
        )
    );
    // PCR0..2 measure the daas-enclave executable (the enclave measured its file; this measures the bytes).
    let exe = std::fs::read(enclave_bin()).unwrap();
    let [p0, p1, p2] = attestation::measure_binary(&exe);
    assert_eq!(verified.pcrs().get(0), Some(&p0));
    assert_eq!(verified.pcrs().get(1), Some(&p1));
    assert_eq!(verified.pcrs().get(2), Some(&p2));

    // Another nonce is refused by the policy; the production root refuses the dev root.
    let err = verifier
        .verify_with_policy(&doc, now_ms(), &Policy::new().require_nonce(vec![1]))
        .unwrap_err();
    assert!(matches!(err, VerifyError::NonceMismatch), "{err:?}");
    let err = Verifier::aws_nitro().verify(&doc, now_ms()).unwrap_err();
    assert!(matches!(err, VerifyError::UntrustedRoot { .. }), "{err:?}");

    // Each request gets a fresh document.
    let (_, _, again) = fetch(&enclave, "?nonce=00c0ffee");
    assert_ne!(doc, again);
}

#[test]
fn dev_root_survives_a_restart() {
    let enclave = Enclave::start();
    let before = std::fs::read(enclave.dir.path().join("attestation/dev-root.crt")).unwrap();
    let dir = enclave.stop();
    let enclave = Enclave::start_in(dir);
    let after = std::fs::read(enclave.dir.path().join("attestation/dev-root.crt")).unwrap();
    assert_eq!(before, after);
    let (code, _, doc) = fetch(&enclave, "?nonce=01");
    assert_eq!(code, 200);
    dev_verifier(enclave.dir.path())
        .verify_with_policy(&doc, now_ms(), &Policy::new().require_nonce(vec![1]))
        .unwrap();
}

#[test]
fn bad_requests_get_a_400_status_with_the_reason() {
    let enclave = Enclave::start();
    let too_long = format!("?nonce={}", "ab".repeat(513));
    let cases: [(&str, &str); 6] = [
        ("", "required"),
        ("?nonce=", "must not be empty"),
        ("?nonce=xyz0", "not hex"),
        ("?nonce=abc", "not hex"),
        ("?nonce=01&nonce=02", "more than once"),
        (&too_long, "at most 1024"),
    ];
    for (query, reason) in cases {
        let (code, content_type, body) = fetch(&enclave, query);
        assert_eq!(code, 400, "{query}");
        assert_eq!(content_type, "application/json", "{query}");
        let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status["kind"], "Status", "{query}");
        assert_eq!(status["reason"], "BadRequest", "{query}");
        assert_eq!(status["code"], 400, "{query}");
        let message = status["message"].as_str().unwrap();
        assert!(message.contains(reason), "{query}: {message}");
    }
    // The largest nonce is served.
    let (code, _, _) = fetch(&enclave, &format!("?nonce={}", "ab".repeat(512)));
    assert_eq!(code, 200);
    // Other methods are refused.
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "--cacert",
        ])
        .arg(enclave.pki("server.crt"))
        .arg(format!("{}/attestation?nonce=01", enclave.url))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "405");
}
