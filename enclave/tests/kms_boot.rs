//! The root secret from KMS, end to end with real processes: a fake AWS KMS (`kms_support/fake_kms.py`: the real
//! JSON 1.1 protocol, SigV4 checked by botocore, the attestation document checked with cbor2 + cryptography
//! against the dev root, a `kms:RecipientAttestation:PCR0`-style policy, envelopes made by `openssl cms`), the
//! real `daas-host keybroker`, and the real `daas-enclave --dev --root-secret-source kms`.
//!
//! Needs python3 with botocore, cbor2 and cryptography, and the openssl CLI (scripts/setup installs them), and
//! `daas-host` built next to `daas-enclave` (`cargo test -p host -p enclave`).

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;
#[path = "journal_support/mod.rs"]
mod journal_support;

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::Enclave;
use journal_support::{host_bin, lines, wait_for};

const KEY_ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";
const ACCESS_KEY_ID: &str = "AKIDKMSBOOTTEST";
const SECRET_ACCESS_KEY: &str = "kms/boot+test/secret";
const SESSION_TOKEN: &str = "session-token-for-the-kms-boot-test";

fn fake_kms_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kms_support/fake_kms.py")
}

/// PCR0 of the `daas-enclave` binary as the simulated NSM reports it.
fn enclave_pcr0() -> String {
    attestation::measure_binary_file(common::enclave_exe()).unwrap()[0].to_string()
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The fake KMS and the key broker, with their state directories, and the enclave's data directory.
struct World {
    base: tempfile::TempDir,
    /// The enclave's data directory while no enclave runs on it.
    data: Option<tempfile::TempDir>,
    data_path: PathBuf,
    _kms: Proc,
    _broker: Proc,
    broker_sock: PathBuf,
}

impl World {
    /// Starts the fake KMS with `policy` (`{"PCR0": hex}`) and the key broker.
    fn start(pcr0_policy: &str) -> World {
        Self::start_signing_with(pcr0_policy, SECRET_ACCESS_KEY)
    }

    /// As [`World::start`], the broker signing with `broker_secret`.
    fn start_signing_with(pcr0_policy: &str, broker_secret: &str) -> World {
        let base = tempfile::tempdir().unwrap();
        let b = base.path();
        let data = tempfile::Builder::new()
            .prefix("enclave")
            .tempdir_in(b)
            .unwrap();
        let data_path = data.path().to_owned();
        std::fs::write(
            b.join("policy.json"),
            serde_json::json!({ "PCR0": pcr0_policy }).to_string(),
        )
        .unwrap();
        let mut kms = Command::new("python3")
            .arg(fake_kms_script())
            .arg("--state-dir")
            .arg(b.join("kms"))
            .arg("--root")
            .arg(data_path.join("attestation/dev-root.crt"))
            .arg("--policy")
            .arg(b.join("policy.json"))
            .args(["--key-id", KEY_ID, "--region", "eu-central-1"])
            .args(["--access-key-id", ACCESS_KEY_ID])
            .args(["--secret-access-key", SECRET_ACCESS_KEY])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the fake KMS");
        let kms_lines = lines(&mut kms);
        let kms_proc = Proc(kms);
        let url = wait_for(&kms_lines, "fake-kms listening on ")
            .trim_start_matches("fake-kms listening on ")
            .to_owned();

        let broker_sock = b.join("keybroker.sock");
        let mut broker = Command::new(host_bin())
            .arg("keybroker")
            .arg("--listen")
            .arg(format!("unix:{}", broker_sock.display()))
            .arg("--state-dir")
            .arg(b.join("broker"))
            .args(["--kms-endpoint", &url, "--region", "eu-central-1"])
            .args(["--key-id", KEY_ID])
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", broker_secret)
            .env("AWS_SESSION_TOKEN", SESSION_TOKEN)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let broker_lines = lines(&mut broker);
        let broker_proc = Proc(broker);
        wait_for(&broker_lines, "keybroker listening on ");
        World {
            base,
            data: Some(data),
            data_path,
            _kms: kms_proc,
            _broker: broker_proc,
            broker_sock,
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.base.path().join(p)
    }

    fn key_broker_flag(&self) -> String {
        format!("unix:{}", self.broker_sock.display())
    }

    /// Starts the enclave on its data directory with the KMS root secret; waits for `ready`.
    fn enclave(&mut self) -> Enclave {
        let data = self.data.take().expect("no enclave is running");
        let flag = self.key_broker_flag();
        Enclave::start_in_with(
            data,
            &["--root-secret-source", "kms", "--key-broker", &flag],
        )
    }

    /// Stops the enclave (SIGKILL) and keeps its data directory.
    fn stop(&mut self, e: Enclave) {
        self.data = Some(e.stop());
    }

    /// Runs the enclave expecting KMS not to release the root secret: the enclave stays sealed,
    /// serves attestation (200) and says why on /readyz (503). Returns its standard error and
    /// the /readyz body.
    fn enclave_stays_sealed(&self, key_broker: &str) -> String {
        let child = Command::new(common::enclave_exe())
            .args(["--dev", "--listen", "tcp:127.0.0.1:0", "--data-dir"])
            .arg(&self.data_path)
            .args(["--root-secret-source", "kms", "--key-broker", key_broker])
            .args(["--key-broker-connect-timeout", "5"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Killed on drop: a failed assertion below must not leave the enclave running.
        let mut enclave = Proc(child);
        let stdout = lines(&mut enclave.0);
        let url = wait_for(&stdout, "sealed ")
            .trim_start_matches("sealed ")
            .to_owned();
        let curl = |path: &str| {
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
                .arg(self.data_path.join("pki/server.crt"))
                .arg(format!("{url}{path}"))
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
            (code.trim().to_owned(), body.to_owned())
        };
        let (code, _) = curl(&format!("/attestation?nonce={}", "ab".repeat(16)));
        assert_eq!(code, "200", "a sealed enclave serves attestation");
        let (code, readyz) = curl("/readyz");
        assert_eq!(code, "503", "{readyz}");
        assert!(readyz.contains("the cluster is sealed"), "{readyz}");
        let (code, _) = curl("/api/v1/namespaces");
        assert_eq!(code, "503");
        let _ = enclave.0.kill();
        let _ = enclave.0.wait();
        let mut stderr = String::new();
        if let Some(mut pipe) = enclave.0.stderr.take() {
            use std::io::Read as _;
            let _ = pipe.read_to_string(&mut stderr);
        }
        assert!(
            stderr.contains("staying sealed"),
            "the log says it stays sealed: {stderr}"
        );
        format!("{stderr}\n--- /readyz ---\n{readyz}")
    }

    /// The data keys the fake KMS handed out.
    fn issued_keys(&self) -> Vec<Vec<u8>> {
        std::fs::read_to_string(self.path("kms/issued-keys"))
            .unwrap_or_default()
            .lines()
            .map(|l| hex::decode(l).unwrap())
            .collect()
    }
}

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

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn create_configmap(e: &Enclave) {
    let (code, body) = e.curl_admin(
        "/api/v1/namespaces/default/configmaps",
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            r#"{"metadata":{"name":"kms-kept"},"data":{"sealed":"under a KMS root secret"}}"#,
        ],
    );
    assert_eq!(code, 201, "{body}");
}

#[test]
fn a_kms_released_root_secret_opens_the_store_again_after_a_restart() {
    let mut w = World::start(&enclave_pcr0());
    let e = w.enclave();
    // First boot: GenerateDataKey, and the broker stored the wrapped key.
    assert!(w.path("broker/root-secret.kms-blob").is_file());
    assert!(
        !w.data_path.join("root-secret.dev").exists(),
        "no dev secret file in kms mode"
    );
    assert_eq!(w.issued_keys().len(), 1);
    create_configmap(&e);
    w.stop(e);

    // Second boot: a new recipient key, Decrypt of the stored blob, the same root secret.
    let e = w.enclave();
    let (code, body) = e.curl_admin("/api/v1/namespaces/default/configmaps/kms-kept", &[]);
    assert_eq!(code, 200, "{body}");
    let object: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(object["data"]["sealed"], "under a KMS root secret");
    assert_eq!(
        w.issued_keys().len(),
        1,
        "Decrypt, not a second GenerateDataKey"
    );
    w.stop(e);

    // The host's side (broker state) and the enclave's data directory never hold the data key.
    let key = &w.issued_keys()[0];
    for dir in [w.path("broker"), w.data_path.clone()] {
        for file in files(&dir) {
            let bytes = std::fs::read(&file).unwrap();
            assert!(
                !contains(&bytes, key),
                "{} holds the root secret",
                file.display()
            );
            let hex = hex::encode(key);
            assert!(
                !contains(&bytes, hex.as_bytes()),
                "{} holds it in hex",
                file.display()
            );
        }
    }
}

#[test]
fn an_enclave_whose_pcr0_the_policy_does_not_allow_stays_sealed_serving_attestation() {
    let w = World::start(&"00".repeat(48));
    let stderr = w.enclave_stays_sealed(&w.key_broker_flag());
    assert!(
        stderr.contains("KMS did not release the root secret")
            && stderr.contains("AccessDeniedException")
            && stderr.contains("kms:RecipientAttestation:PCR0"),
        "{stderr}"
    );
    assert!(w.issued_keys().is_empty());
    assert!(!w.path("broker/root-secret.kms-blob").exists());
    assert!(
        !w.data_path.join("index").exists(),
        "the store was never opened"
    );
}

#[test]
fn a_tampered_stored_blob_is_refused_and_the_enclave_stays_sealed() {
    let mut w = World::start(&enclave_pcr0());
    let e = w.enclave();
    create_configmap(&e);
    w.stop(e);
    let blob_path = w.path("broker/root-secret.kms-blob");
    let mut blob = std::fs::read(&blob_path).unwrap();
    let last = blob.len() - 1;
    blob[last] ^= 1;
    std::fs::write(&blob_path, &blob).unwrap();
    let stderr = w.enclave_stays_sealed(&w.key_broker_flag());
    assert!(
        stderr.contains("KMS did not release the root secret")
            && stderr.contains("InvalidCiphertextException"),
        "{stderr}"
    );
    assert_eq!(
        w.issued_keys().len(),
        1,
        "no new key in place of the damaged one"
    );
}

#[test]
fn an_envelope_that_does_not_open_is_reported_without_detail() {
    let w = World::start(&enclave_pcr0());
    // A broker impostor that answers OK with bytes that are not an envelope to this enclave's key.
    let sock = w.path("impostor.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    // Not joined: if the enclave failed before connecting, the assertions below say why.
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = listener.accept().unwrap();
        let mut head = [0u8; 4];
        s.read_exact(&mut head).unwrap();
        let mut body = vec![0u8; u32::from_be_bytes(head) as usize];
        s.read_exact(&mut body).unwrap();
        let reply = [&[0u8, 0, 0, 33, 0x80][..], &[0x30u8; 32]].concat();
        s.write_all(&reply).unwrap();
    });
    let stderr = w.enclave_stays_sealed(&format!("unix:{}", sock.display()));
    assert!(
        stderr.contains("could not open the KMS envelope"),
        "{stderr}"
    );
    for detail in ["BER", "padding", "Padding", "unwrap", "ContentInfo"] {
        assert!(!stderr.contains(detail), "{detail:?} leaked: {stderr}");
    }
}

#[test]
fn a_request_signed_with_the_wrong_secret_is_refused_by_kms() {
    let w = World::start_signing_with(&enclave_pcr0(), "not-the-secret");
    let stderr = w.enclave_stays_sealed(&w.key_broker_flag());
    assert!(
        stderr.contains("InvalidSignatureException") && stderr.contains("signature"),
        "{stderr}"
    );
    assert!(w.issued_keys().is_empty());
}
