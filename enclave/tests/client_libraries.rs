//! A second real client: the official Python client (PyPI `kubernetes`, installed by `scripts/setup`) drives the real
//! `daas-enclave --dev` binary through the kubeconfig it wrote: list with selectors and pagination, watch from a
//! list's resourceVersion, the three patch types and server-side apply, a 409 on a stale update, and deletion
//! (`tests/client_support/python_client.py` holds the checks).
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;

use std::path::Path;
use std::process::Command;

use common::Enclave;

#[test]
fn the_official_python_client_lists_watches_and_patches() {
    let e = Enclave::start();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/client_support/python_client.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(e.kubeconfig())
        .arg("python-client")
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for check in [
        "list ok",
        "watch ok: 6 events",
        "patch ok",
        "update conflict ok: 409",
        "deployment ok",
        "delete namespace ok",
    ] {
        assert!(stdout.contains(check), "{check:?} missing from:\n{stdout}");
    }
}

/// The same client against authorization: TokenRequest, a service account's
/// rights and 403s, SubjectAccessReview, SelfSubjectRulesReview, TokenReview
/// (`tests/client_support/python_authz.py` holds the checks).
#[test]
fn the_official_python_client_sees_rbac_and_tokens() {
    let e = Enclave::start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/client_support/python_authz.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(e.kubeconfig())
        .arg("python-authz")
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for check in [
        "token request ok",
        "forbidden ok",
        "subject access reviews ok",
        "self subject rules review ok",
        "token review ok",
    ] {
        assert!(stdout.contains(check), "{check:?} missing from:\n{stdout}");
    }
}
