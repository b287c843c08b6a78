//! Admission webhooks end to end: `daas-enclave --dev` calls an HTTPS webhook written with
//! Python's own TLS and HTTP server (`support/admission_webhook.py`) for the writes its
//! Validating- and MutatingWebhookConfigurations match, and kubectl shows what upstream shows:
//! a denial with the webhook's message, a label a mutating webhook added, a warning; a webhook
//! that cannot be called fails the write under `failurePolicy: Fail` and is skipped under
//! `Ignore`; a ValidatingAdmissionPolicy whose CEL does not compile is refused.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use base64::Engine as _;
use common::{Enclave, kubectl, kubectl_stdin, python_server, text};
use serde_json::Value;

fn support(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(name)
}

/// The webhook server; killed on drop.
struct Webhook {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Webhook {
    /// Makes a CA and a certificate for `webhook.test` and 127.0.0.1 in `work`, and starts the
    /// server with them; returns it and the CA as a `caBundle`.
    fn with_certs(work: &Path) -> (Webhook, String) {
        let certs = work.join("certs");
        std::fs::create_dir(&certs).unwrap();
        let made = Command::new("python3")
            .arg(support("audit_webhook.py"))
            .args(["certs", certs.to_str().unwrap(), "webhook.test"])
            .output()
            .unwrap();
        assert!(made.status.success(), "{}", text(&made));
        let ca = base64::engine::general_purpose::STANDARD
            .encode(std::fs::read(certs.join("ca.crt")).unwrap());
        (Webhook::start(&certs, &work.join("reviews.jsonl")), ca)
    }

    fn start(certs: &Path, out: &Path) -> Webhook {
        let (child, port) = python_server(
            "admission_webhook.py",
            &["serve", certs.to_str().unwrap(), "0", out.to_str().unwrap()],
        );
        Webhook {
            child,
            port,
            out: out.to_path_buf(),
        }
    }

    /// Every AdmissionReview received so far, with the path it came to.
    fn reviews(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn configuration(kind: &str, name: &str, url: &str, ca: &str, failure: &str) -> String {
    format!(
        "apiVersion: admissionregistration.k8s.io/v1
kind: {kind}
metadata:
  name: {name}
webhooks:
- name: {name}.webhook.example.com
  clientConfig:
    url: {url}
    caBundle: {ca}
  rules:
  - operations: [CREATE, UPDATE]
    apiGroups: [\"\"]
    apiVersions: [v1]
    resources: [configmaps]
  namespaceSelector:
    matchLabels:
      webhooks: \"on\"
  failurePolicy: {failure}
  sideEffects: None
  admissionReviewVersions: [v1]
  timeoutSeconds: 5
"
    )
}

fn configmap(name: &str, color: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: hooked\ndata:\n  color: {color}\n"
    )
}

#[test]
fn webhooks_deny_mutate_warn_and_fail_as_their_failure_policy_says() {
    let work = tempfile::tempdir().unwrap();
    let (webhook, ca) = Webhook::with_certs(work.path());
    let enclave = Enclave::start();
    let kc = enclave.path("admin.kubeconfig");
    let ok = |args: &[&str], stdin: Option<&str>| {
        let out = match stdin {
            Some(s) => kubectl_stdin(&kc, args, s),
            None => kubectl(&kc, args),
        };
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        out
    };
    ok(&["create", "namespace", "hooked"], None);
    ok(&["label", "namespace", "hooked", "webhooks=on"], None);
    ok(&["create", "namespace", "unhooked"], None);
    let base = format!("https://127.0.0.1:{}", webhook.port);
    let apply = ["apply", "-f", "-"];
    ok(
        &apply,
        Some(&configuration(
            "ValidatingWebhookConfiguration",
            "deny-blue",
            &format!("{base}/deny-blue"),
            &ca,
            "Fail",
        )),
    );
    ok(
        &apply,
        Some(&configuration(
            "MutatingWebhookConfiguration",
            "label",
            &format!("{base}/label"),
            &ca,
            "Fail",
        )),
    );
    let listed = text(&ok(
        &[
            "get",
            "validatingwebhookconfigurations,mutatingwebhookconfigurations",
        ],
        None,
    ));
    assert!(
        listed.contains("deny-blue") && listed.contains("label"),
        "{listed}"
    );

    // Denied with the webhook's message and code.
    let denied = kubectl_stdin(&kc, &apply, &configmap("blue", "blue"));
    assert!(!denied.status.success());
    let err = text(&denied);
    assert!(
        err.contains("admission webhook \"deny-blue.webhook.example.com\" denied the request: blue is not allowed here"),
        "{err}"
    );
    // Allowed, and labelled by the mutating webhook.
    ok(&apply, Some(&configmap("red", "red")));
    let red: Value = serde_json::from_slice(
        &ok(
            &["-n", "hooked", "get", "configmap", "red", "-o", "json"],
            None,
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(
        red["metadata"]["labels"]["webhook.example.com/seen"], "yes",
        "{red}"
    );
    // The namespace selector: nothing is called for another namespace.
    let before = webhook.reviews().len();
    ok(
        &[
            "-n",
            "unhooked",
            "create",
            "configmap",
            "free",
            "--from-literal=color=blue",
        ],
        None,
    );
    assert_eq!(
        webhook.reviews().len(),
        before,
        "no call for an unselected namespace"
    );
    // What the webhook received is an AdmissionReview as upstream sends it.
    let reviews = webhook.reviews();
    let review = reviews
        .iter()
        .find(|r| r["path"] == "/deny-blue" && r["review"]["request"]["name"] == "red")
        .unwrap_or_else(|| panic!("{reviews:?}"));
    let request = &review["review"]["request"];
    assert_eq!(review["review"]["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(request["operation"], "CREATE");
    assert_eq!(request["namespace"], "hooked");
    assert_eq!(request["resource"]["resource"], "configmaps");
    assert_eq!(request["userInfo"]["username"], "admin");
    assert_eq!(
        request["object"]["metadata"]["labels"]["webhook.example.com/seen"], "yes",
        "validating webhooks see the mutated object"
    );

    // A warning reaches kubectl.
    ok(
        &apply,
        Some(&configuration(
            "ValidatingWebhookConfiguration",
            "warn",
            &format!("{base}/warn"),
            &ca,
            "Fail",
        )),
    );
    let warned = ok(&apply, Some(&configmap("green", "green")));
    assert!(
        text(&warned).contains("looked at by the warn webhook"),
        "{}",
        text(&warned)
    );

    // A webhook that answers garbage: Fail refuses the write, Ignore lets it through.
    ok(
        &apply,
        Some(&configuration(
            "ValidatingWebhookConfiguration",
            "garbage",
            &format!("{base}/garbage"),
            &ca,
            "Fail",
        )),
    );
    let failed = kubectl_stdin(&kc, &apply, &configmap("grey", "grey"));
    assert!(!failed.status.success());
    assert!(
        text(&failed).contains(
            "Internal error occurred: failed calling webhook \"garbage.webhook.example.com\""
        ),
        "{}",
        text(&failed)
    );
    ok(
        &apply,
        Some(&configuration(
            "ValidatingWebhookConfiguration",
            "garbage",
            &format!("{base}/garbage"),
            &ca,
            "Ignore",
        )),
    );
    ok(&apply, Some(&configmap("grey", "grey")));
    // A webhook whose CA did not issue the server's certificate cannot be called.
    let other_ca = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(enclave.path("pki/server.crt")).unwrap());
    ok(
        &apply,
        Some(&configuration(
            "ValidatingWebhookConfiguration",
            "garbage",
            &format!("{base}/warn"),
            &other_ca,
            "Fail",
        )),
    );
    let untrusted = kubectl_stdin(&kc, &apply, &configmap("white", "white"));
    assert!(!untrusted.status.success());
    assert!(
        text(&untrusted).contains("failed calling webhook"),
        "{}",
        text(&untrusted)
    );
    ok(
        &["delete", "validatingwebhookconfiguration", "garbage"],
        None,
    );
    ok(&apply, Some(&configmap("white", "white")));

    // Bad configurations are refused with upstream's messages.
    let bad = configuration(
        "ValidatingWebhookConfiguration",
        "bad",
        "http://127.0.0.1/x",
        &ca,
        "Sometimes",
    )
    .replace("bad.webhook.example.com", "bad");
    let refused = kubectl_stdin(&kc, &apply, &bad);
    assert!(!refused.status.success());
    let err = text(&refused);
    for want in [
        "webhooks[0].name: Invalid value: \"bad\": should be a domain with at least three segments separated by dots",
        "webhooks[0].clientConfig.url: Invalid value: \"http://127.0.0.1/x\": 'https' is the only allowed URL scheme",
        "webhooks[0].failurePolicy: Unsupported value: \"Sometimes\"",
    ] {
        assert!(err.contains(want), "{want} in {err}");
    }
    // A policy whose CEL does not compile: refused, not stored (enforcement: enclave's
    // admission_policy test).
    let policy = "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: replicas
spec:
  matchConstraints:
    resourceRules:
    - operations: [CREATE]
      apiGroups: [apps]
      apiVersions: [v1]
      resources: [deployments]
  validations:
  - expression: object.spec.replicas <=
";
    let refused = kubectl_stdin(&kc, &apply, policy);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains(
            "spec.validations[0].expression: Invalid value: \"object.spec.replicas <=\": compilation failed"
        ),
        "{}",
        text(&refused)
    );
    assert!(
        text(&ok(&["get", "validatingadmissionpolicies"], None)).contains("No resources found")
    );
}

/// `daas-host outbound --connect SOCKET --allow 127.0.0.1:PORT`; killed on drop.
struct ConnectProxy(Child);

impl ConnectProxy {
    fn start(socket: &Path, allowed: &str) -> ConnectProxy {
        let child = Command::new(common::bin("daas-host"))
            .args(["outbound", "--connect"])
            .arg(format!("unix:{}", socket.display()))
            .args(["--allow", allowed])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !socket.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the CONNECT proxy's socket did not appear"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        ConnectProxy(child)
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// As in an enclave, the webhooks are called through the host's CONNECT proxy
/// (`--admission-webhook-via`), TLS end to end: an allowlisted webhook denies as it would
/// directly; one the host does not allow fails the write with the proxy's refusal.
#[test]
fn webhooks_are_called_through_the_hosts_connect_proxy() {
    let work = tempfile::tempdir().unwrap();
    let (webhook, ca) = Webhook::with_certs(work.path());
    let socket = work.path().join("connect.sock");
    let allowed = format!("127.0.0.1:{}", webhook.port);
    let _proxy = ConnectProxy::start(&socket, &allowed);
    let via = format!("unix:{}", socket.display());
    let enclave = Enclave::start_in(
        tempfile::tempdir().unwrap(),
        &["--admission-webhook-via", &via],
        "ready ",
    );
    let kc = enclave.path("admin.kubeconfig");
    for args in [
        &["create", "namespace", "hooked"][..],
        &["label", "namespace", "hooked", "webhooks=on"],
    ] {
        let out = kubectl(&kc, args);
        assert!(out.status.success(), "{}", text(&out));
    }
    let apply = ["apply", "-f", "-"];
    let out = kubectl_stdin(
        &kc,
        &apply,
        &configuration(
            "ValidatingWebhookConfiguration",
            "deny-blue",
            &format!("https://{allowed}/deny-blue"),
            &ca,
            "Fail",
        ),
    );
    assert!(out.status.success(), "{}", text(&out));
    let denied = kubectl_stdin(&kc, &apply, &configmap("blue", "blue"));
    assert!(
        text(&denied).contains("denied the request: blue is not allowed here"),
        "{}",
        text(&denied)
    );
    let out = kubectl_stdin(&kc, &apply, &configmap("red", "red"));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        webhook
            .reviews()
            .iter()
            .any(|r| r["review"]["request"]["name"] == "red"),
        "the webhook was reached through the proxy"
    );

    // A webhook at an address the host does not allow: the proxy refuses, Fail refuses the write.
    let out = kubectl_stdin(
        &kc,
        &apply,
        &configuration(
            "ValidatingWebhookConfiguration",
            "elsewhere",
            "https://127.0.0.1:9/elsewhere",
            &ca,
            "Fail",
        ),
    );
    assert!(out.status.success(), "{}", text(&out));
    let refused = kubectl_stdin(&kc, &apply, &configmap("green", "green"));
    assert!(!refused.status.success());
    let err = text(&refused);
    assert!(
        err.contains("failed calling webhook \"elsewhere.webhook.example.com\"")
            && err.contains("refused CONNECT 127.0.0.1:9")
            && err.contains("403"),
        "{err}"
    );
}
