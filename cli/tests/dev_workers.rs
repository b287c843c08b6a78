//! `daas dev --workers 2` end to end: two real `daas-worker` processes join the dev enclave
//! through the relay with stakes on the dev registry (`DATA_DIR/registry.json`, listed by `daas
//! registry show`), their Nodes are Ready and their Leases renew, each node's kubeconfig reads
//! its own Node and gets 403 on the other's, and `daas dev` run again resumes the same nodes on
//! the same stakes.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::dev::{Dev, free_port, wait_until};
use common::{daas, kubectl, text};

fn get(kubeconfig: &Path, args: &[&str], jsonpath: &str) -> String {
    let path = format!("jsonpath={jsonpath}");
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", &path]);
    let out = kubectl(kubeconfig, &all);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn both_ready(admin: &Path) -> bool {
    get(
        admin,
        &["nodes"],
        "{range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {end}",
    )
    .trim()
        == "worker-1=True worker-2=True"
}

fn stakes(dir: &Path) -> serde_json::Value {
    let registry = format!("local:{}", dir.join("registry.json").display());
    let out = daas(&["registry", "show", "--registry", &registry, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["stakes"].clone()
}

#[test]
fn dev_with_two_workers_joins_them_and_resumes_them() {
    common::bin_dir();
    let dir = tempfile::tempdir().unwrap();
    let dir_path = std::fs::canonicalize(dir.path()).unwrap();
    let port = free_port();
    let admin = dir_path.join("kubeconfig");

    let dev = Dev::start(&dir_path, port, 2, &[]);
    dev.wait_for("dev cluster ready");
    wait_until(Duration::from_secs(120), "two Ready nodes", || {
        both_ready(&admin)
    });

    // The stakes are on the dev registry, one per worker, owned by the worker's account.
    let first = stakes(&dir_path);
    for name in ["worker-1", "worker-2"] {
        let keystore = dir_path.join(format!("workers/{name}/sui.keystore"));
        let owner = chain::AccountKeystore::load(&keystore)
            .unwrap()
            .account(None)
            .unwrap()
            .address()
            .to_string();
        assert_eq!(first[name]["owner"], owner, "{first}");
    }
    let shown = daas(&[
        "registry",
        "show",
        "--registry",
        &format!("local:{}", dir_path.join("registry.json").display()),
    ]);
    assert!(text(&shown).contains("stakes (2)"), "{}", text(&shown));

    // Leases renew.
    let lease = |name: &str| {
        get(
            &admin,
            &["lease", "-n", "kube-node-lease", name],
            "{.spec.renewTime}",
        )
    };
    let before = lease("worker-1");
    wait_until(
        Duration::from_secs(120),
        "worker-1's Lease to be renewed",
        || {
            let now = lease("worker-1");
            !now.is_empty() && now != before
        },
    );

    // Node credentials: every Node to read, 403 on changing the other's.
    let kubeconfig = dir_path.join("workers/worker-1/kubeconfig");
    let own = kubectl(&kubeconfig, &["get", "node", "worker-1", "-o", "name"]);
    assert!(own.status.success(), "{}", text(&own));
    let other = kubectl(&kubeconfig, &["get", "node", "worker-2", "-o", "name"]);
    assert!(other.status.success(), "{}", text(&other));
    let label = kubectl(&kubeconfig, &["label", "node", "worker-2", "a=b"]);
    assert!(!label.status.success());
    assert!(
        text(&label).contains("node \"worker-1\" is not allowed to modify node \"worker-2\""),
        "{}",
        text(&label)
    );
    drop(dev);

    // Run again: the same nodes come back on the same stakes, without joining anew.
    let dev = Dev::start(&dir_path, port, 2, &[]);
    dev.wait_for_count("resumed", 2);
    wait_until(Duration::from_secs(120), "two Ready nodes again", || {
        both_ready(&admin)
    });
    let before = lease("worker-2");
    wait_until(
        Duration::from_secs(120),
        "worker-2's Lease to be renewed",
        || {
            let now = lease("worker-2");
            !now.is_empty() && now != before
        },
    );
    assert_eq!(stakes(&dir_path), first);
    drop(dev);
}
