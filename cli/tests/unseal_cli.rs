//! Operator re-supply of the root secret: a real `daas-enclave --dev
//! --root-secret-source operator` waits sealed, `daas unseal` verifies it
//! and gives it the secret, and only that secret reopens the cluster after a
//! kill -9. Bad input to `POST /unseal` is refused and loses nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{Enclave, daas, kubectl, text};

const OPERATOR: &[&str] = &["--root-secret-source", "operator"];

fn unseal(enclave: &Enclave, secret: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "unseal",
        "--server",
        &enclave.url,
        "--secret-file",
        secret.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    daas(&args)
}

/// A plain HTTPS request from Python (no trust in the certificate: these
/// probe what a sealed enclave answers, not whom to trust). Status and body.
fn https(url: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    // "POST-DECLARED-HUGE" sends only headers declaring a 10 MB body: the
    // server answers from Content-Length alone, with no race against a
    // client still writing a body the server will not read.
    let script = r#"
import http.client, ssl, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
c = http.client.HTTPSConnection(u.hostname, u.port, context=ssl._create_unverified_context(), timeout=30)
body = sys.stdin.buffer.read()
if sys.argv[2] == "POST-DECLARED-HUGE":
    c.putrequest("POST", sys.argv[3])
    c.putheader("Content-Type", "application/json")
    c.putheader("Content-Length", "10000000")
    c.endheaders()
else:
    c.request(sys.argv[2], sys.argv[3], body=body if sys.argv[2] != "GET" else None,
              headers={"Content-Type": "application/json"})
r = c.getresponse()
sys.stdout.write(str(r.status) + "\n" + r.read().decode("utf-8", "replace"))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script, url, method, path])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    let (code, rest) = shown.split_once('\n').unwrap_or((&shown, ""));
    (
        code.trim().parse().unwrap_or_else(|_| panic!("{shown}")),
        rest.to_string(),
    )
}

fn kubeconfig(enclave: &Enclave) -> std::path::PathBuf {
    enclave.path("admin.kubeconfig")
}

/// kubectl gets 503 for everything (its discovery prints client-go's own
/// words for a 503; the body's message is checked over plain HTTPS).
fn assert_sealed(enclave: &Enclave) {
    let out = kubectl(&kubeconfig(enclave), &["get", "namespaces"]);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(shown.contains("(ServiceUnavailable)"), "{shown}");
    let (code, body) = https(&enclave.url, "GET", "/api/v1/namespaces", "");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("the cluster is sealed"), "{body}");
}

#[test]
fn only_the_operators_verified_secret_unseals_and_reopens_the_cluster() {
    let mut enclave = Enclave::start_in(tempfile::tempdir().unwrap(), OPERATOR, "sealed ");
    let dev_root = enclave.arg("attestation/dev-root.crt");
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("root.key");

    // Sealed: attestation works, the API says why it cannot answer.
    let out = daas(&["verify", "--server", &enclave.url, "--dev-root", &dev_root]);
    assert!(out.status.success(), "{}", text(&out));
    assert_sealed(&enclave);

    // No secret file and no --create-secret: nothing is sent.
    let out = unseal(&enclave, &secret, &["--dev-root", &dev_root]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("reading the root secret"),
        "{}",
        text(&out)
    );
    // An enclave that fails verification (the dev root is not AWS's) never
    // gets the secret.
    let out = unseal(&enclave, &secret, &["--create-secret"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("the root secret was not sent"),
        "{}",
        text(&out)
    );
    assert_sealed(&enclave);

    // The verified enclave takes it, and the API comes up.
    let out = unseal(
        &enclave,
        &secret,
        &["--dev-root", &dev_root, "--create-secret"],
    );
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("the attested enclave took the root secret"),
        "{shown}"
    );
    enclave.wait_for("ready ");
    let kc = kubeconfig(&enclave);
    let out = kubectl(
        &kc,
        &[
            "create",
            "secret",
            "generic",
            "kept",
            "--from-literal=k=operator-sealed",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));

    // Again: already unsealed, with this secret, so that is fine.
    let out = unseal(&enclave, &secret, &["--dev-root", &dev_root]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("already unsealed with this root secret"));
    // Documents now carry the anchor key derived from the secret.
    let out = daas(&[
        "verify",
        "--server",
        &enclave.url,
        "--dev-root",
        &dev_root,
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let anchor = report["anchor_key"].as_str().unwrap().to_string();
    assert!(shown.contains(&anchor), "{shown} vs {anchor}");

    // kill -9 and restart: sealed again. Another secret does not open it,
    // and is reported as such; nothing is written with it.
    enclave.restart(OPERATOR, "sealed ");
    let other = secrets.path().join("other.key");
    let out = unseal(
        &enclave,
        &other,
        &["--dev-root", &dev_root, "--create-secret"],
    );
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(
        shown.contains("does not open the cluster's sealed state"),
        "{shown}"
    );
    assert_sealed(&enclave);
    // The right one still does, with everything written before.
    let out = unseal(&enclave, &secret, &["--dev-root", &dev_root]);
    assert!(out.status.success(), "{}", text(&out));
    enclave.wait_for("ready ");
    let out = kubectl(
        &kubeconfig(&enclave),
        &["get", "secret", "kept", "-o", "jsonpath={.data.k}"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "b3BlcmF0b3Itc2VhbGVk");
}

#[test]
fn a_sealed_enclave_refuses_bad_unseal_requests_and_still_takes_the_right_one() {
    let enclave = Enclave::start_in(tempfile::tempdir().unwrap(), OPERATOR, "sealed ");
    let url = &enclave.url;
    assert_eq!(https(url, "GET", "/livez", "").0, 200);
    let (code, body) = https(url, "GET", "/readyz", "");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("sealed"), "{body}");
    let (code, body) = https(url, "GET", "/api/v1/namespaces", "");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("\"reason\":\"ServiceUnavailable\""), "{body}");
    assert_eq!(https(url, "GET", "/version", "").0, 200);

    for (body, code, says) in [
        ("not json", 400, "not JSON"),
        ("{\"secret\": \"00\"}", 400, "no string field"),
        ("{\"rootSecret\": \"abcd\"}", 400, "64 hex digits"),
    ] {
        let (got, answer) = https(url, "POST", "/unseal", body);
        assert_eq!(got, code, "{body}: {answer}");
        assert!(answer.contains(says), "{body}: {answer}");
        assert!(
            !answer.contains("abcd"),
            "the answer echoes the secret: {answer}"
        );
    }
    let (code, body) = https(url, "POST-DECLARED-HUGE", "/unseal", "");
    assert_eq!(code, 413, "{body}");
    assert_eq!(https(url, "GET", "/unseal", "").0, 405);

    let right = format!("{{\"rootSecret\": \"{}\"}}", "5a".repeat(32));
    let (code, body) = https(url, "POST", "/unseal", &right);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("anchorKey"), "{body}");
    enclave.wait_for("ready ");
    // The API server has taken over the listener; a second secret is refused.
    let (code, body) = https(url, "POST", "/unseal", &right);
    assert_eq!(code, 409, "{body}");
    let out = kubectl(&kubeconfig(&enclave), &["get", "namespace", "default"]);
    assert!(out.status.success(), "{}", text(&out));
}
