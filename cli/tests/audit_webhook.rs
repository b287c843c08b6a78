//! The audit webhook backend end to end: `daas-enclave --dev` posts its audit events through
//! the real host outbound proxy (`daas-host outbound`, a Unix route in dev mode) to an HTTPS
//! receiver written with Python's own TLS and HTTP server (`support/audit_webhook.py`).
//! Faults: a webhook that answers 503, one that is down while the enclave is killed with
//! SIGKILL and restarted, one whose certificate the configured CA did not issue, and
//! configurations the enclave refuses at startup.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::dev::wait_until;
use common::{Enclave, bin, kubectl, python_server, text};
use serde_json::Value;

const POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  resources:
  - group: \"\"
    resources: [configmaps]
- level: None
";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/audit_webhook.py")
}

/// A CA and a server certificate for `audit.test` (and 127.0.0.1) in `dir`.
fn make_certs(dir: &Path) {
    let out = Command::new("python3")
        .arg(script())
        .args(["certs", dir.to_str().unwrap(), "audit.test"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

/// A running receiver and the file it records requests in; killed on drop.
struct Receiver {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Receiver {
    fn start(certs: &Path, port: u16, out: &Path, fail_first: u32) -> Receiver {
        let (child, port) = python_server(
            "audit_webhook.py",
            &[
                "serve",
                certs.to_str().unwrap(),
                &port.to_string(),
                out.to_str().unwrap(),
                "--fail-first",
                &fail_first.to_string(),
            ],
        );
        Receiver {
            child,
            port,
            out: out.to_path_buf(),
        }
    }

    /// Every request recorded so far.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The audit events of the requests that were answered 200.
    fn delivered(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["status"] == 200)
            .flat_map(|r| r["body"]["items"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `daas-host outbound` with one route, `unix:SOCKET=127.0.0.1:PORT`; killed on drop.
struct Outbound(Child);

impl Outbound {
    fn start(socket: &Path, port: u16) -> Outbound {
        let target = format!("127.0.0.1:{port}");
        let child = Command::new(bin("daas-host"))
            .args(["outbound", "--route"])
            .arg(format!("unix:{}={target}", socket.display()))
            .args(["--allow", &target])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        wait_until(
            Duration::from_secs(30),
            "the outbound route's socket",
            || socket.exists(),
        );
        Outbound(child)
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A kubeconfig for the webhook at `https://audit.test:PORT/audit` (the name the enclave
/// checks the certificate against; the host route knows the address) with `ca` and a token.
fn webhook_kubeconfig(dir: &Path, port: u16, ca: &Path) -> PathBuf {
    let path = dir.join("webhook.kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: audit\n  cluster:\n    server: https://audit.test:{port}/audit\n    certificate-authority: {}\nusers:\n- name: enclave\n  user:\n    token: webhook-token\ncontexts:\n- name: audit\n  context:\n    cluster: audit\n    user: enclave\ncurrent-context: audit\n",
            ca.display()
        ),
    )
    .unwrap();
    path
}

fn enclave_args(dir: &Path, kubeconfig: &Path, socket: &Path) -> Vec<String> {
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    vec![
        "--audit-policy-file".into(),
        policy.display().to_string(),
        "--audit-webhook-config-file".into(),
        kubeconfig.display().to_string(),
        "--audit-webhook-via".into(),
        format!("unix:{}", socket.display()),
        "--audit-webhook-initial-backoff".into(),
        "200ms".into(),
    ]
}

fn create_configmap(enclave: &Enclave, name: &str) {
    let out = kubectl(
        &enclave.path("admin.kubeconfig"),
        &["create", "configmap", name, "--from-literal=k=v"],
    );
    assert!(out.status.success(), "{}", text(&out));
}

/// The `ResponseComplete` event of `kubectl create configmap NAME`, if delivered.
fn created(events: &[Value], name: &str) -> Option<Value> {
    events
        .iter()
        .find(|e| {
            e["verb"] == "create"
                && e["stage"] == "ResponseComplete"
                && e["objectRef"]["resource"] == "configmaps"
                && e["objectRef"]["name"] == name
        })
        .cloned()
}

#[test]
fn events_reach_the_webhook_through_the_host_route_and_outlive_outages_and_kill_9() {
    let work = tempfile::tempdir().unwrap();
    let certs = work.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    make_certs(&certs);
    let out = work.path().join("requests.jsonl");
    // The first two POSTs are answered 503: the events come again.
    let receiver = Receiver::start(&certs, 0, &out, 2);
    let socket = work.path().join("audit-route.sock");
    let outbound = Outbound::start(&socket, receiver.port);
    let kubeconfig = webhook_kubeconfig(work.path(), receiver.port, &certs.join("ca.crt"));
    let args = enclave_args(work.path(), &kubeconfig, &socket);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut enclave = Enclave::start_in(tempfile::tempdir().unwrap(), &args, "ready ");

    create_configmap(&enclave, "audited-1");
    wait_until(
        Duration::from_secs(60),
        "audited-1's event at the webhook",
        || created(&receiver.delivered(), "audited-1").is_some(),
    );
    let requests = receiver.requests();
    assert!(
        requests.iter().take(2).all(|r| r["status"] == 503),
        "the first two tries were refused: {requests:?}"
    );
    for r in &requests {
        assert_eq!(r["path"], "/audit");
        assert_eq!(r["authorization"], "Bearer webhook-token");
        assert_eq!(r["content_type"], "application/json");
        assert_eq!(r["body"]["kind"], "EventList");
        assert_eq!(r["body"]["apiVersion"], "audit.k8s.io/v1");
    }
    let event = created(&receiver.delivered(), "audited-1").unwrap();
    assert_eq!(event["kind"], "Event");
    assert_eq!(event["level"], "Metadata");
    assert_eq!(event["user"]["username"], "admin");
    assert_eq!(event["responseStatus"]["code"], 201);
    assert!(
        event.get("requestObject").is_none(),
        "Metadata level has no bodies"
    );

    // The webhook goes away; an event is written to the sealed log meanwhile, and the
    // enclave is killed before it could deliver it.
    let port = receiver.port;
    drop(receiver);
    create_configmap(&enclave, "audited-2");
    wait_until(
        Duration::from_secs(60),
        "audited-2 in the sealed log",
        || {
            let out = kubectl(
                &enclave.path("admin.kubeconfig"),
                &["get", "--raw", "/audit/events"],
            );
            String::from_utf8_lossy(&out.stdout).contains("audited-2")
        },
    );
    enclave.restart(&args, "ready ");
    let receiver = Receiver::start(&certs, port, &out, 0);
    wait_until(
        Duration::from_secs(60),
        "audited-2's event after the restart",
        || created(&receiver.delivered(), "audited-2").is_some(),
    );
    // Delivery resumes where it stopped: audited-1 is not sent again after the restart.
    let creates_of_1 = receiver
        .delivered()
        .iter()
        .filter(|e| created(std::slice::from_ref(e), "audited-1").is_some())
        .count();
    assert_eq!(creates_of_1, 1, "{:?}", receiver.requests());
    drop(outbound);
}

#[test]
fn a_webhook_whose_certificate_the_configured_ca_did_not_issue_gets_nothing() {
    let work = tempfile::tempdir().unwrap();
    let (certs, other) = (work.path().join("certs"), work.path().join("other"));
    std::fs::create_dir(&certs).unwrap();
    std::fs::create_dir(&other).unwrap();
    make_certs(&certs);
    make_certs(&other);
    let out = work.path().join("requests.jsonl");
    let receiver = Receiver::start(&certs, 0, &out, 0);
    let socket = work.path().join("audit-route.sock");
    let _outbound = Outbound::start(&socket, receiver.port);
    // Trusts the other CA: the receiver's certificate must be refused.
    let kubeconfig = webhook_kubeconfig(work.path(), receiver.port, &other.join("ca.crt"));
    let args = enclave_args(work.path(), &kubeconfig, &socket);
    let log = work.path().join("enclave.log");
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin("daas-enclave"))
        .args(["--dev", "--listen", "tcp:127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .args(&args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let admin = data.path().join("admin.kubeconfig");
    wait_until(Duration::from_secs(60), "the enclave to serve", || {
        admin.exists()
            && kubectl(
                &admin,
                &["create", "configmap", "refused", "--from-literal=k=v"],
            )
            .status
            .success()
    });
    wait_until(Duration::from_secs(60), "the enclave's TLS refusal", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("not delivered to the webhook"))
    });
    let _ = child.kill();
    let _ = child.wait();
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("TLS"), "{said}");
    assert!(
        said.contains("UnknownIssuer") || said.contains("unknown issuer"),
        "{said}"
    );
    assert!(receiver.requests().is_empty(), "nothing was posted");
}

#[test]
fn unusable_webhook_configurations_stop_the_enclave_at_startup() {
    let work = tempfile::tempdir().unwrap();
    let policy = work.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let plain = work.path().join("plain.kubeconfig");
    std::fs::write(
        &plain,
        "clusters:\n- name: a\n  cluster:\n    server: http://audit.test/audit\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let data = tempfile::tempdir().unwrap();
        Command::new(bin("daas-enclave"))
            .args(["--dev", "--listen", "tcp:127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .args(extra)
            .output()
            .unwrap()
    };
    let (policy, plain) = (policy.to_str().unwrap(), plain.to_str().unwrap());
    let out = run(&[
        "--audit-policy-file",
        policy,
        "--audit-webhook-config-file",
        plain,
        "--audit-webhook-via",
        "unix:/nonexistent.sock",
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("must be https://"), "{}", text(&out));
    let out = run(&[
        "--audit-policy-file",
        policy,
        "--audit-webhook-config-file",
        plain,
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("--audit-webhook-config-file needs --audit-webhook-via"),
        "{}",
        text(&out)
    );
    let out = run(&["--audit-webhook-config-file", plain]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--audit-policy-file"), "{}", text(&out));
}
