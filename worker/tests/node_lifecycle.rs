//! Joined nodes over time, with the real `daas-enclave --dev` and real `daas-worker run`
//! processes: Ready Nodes with renewing Leases and renewed certificates, node credentials
//! restricted to their own Node, restarts of the worker and of the enclave, a worker that stops,
//! and stakes that stop admitting their node.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;

use std::time::{Duration, Instant};

use chain::{Registry, RegistryAdmin};
use common::{Cluster, RunningWorker, block_on, text, wait_until};

const MINUTE: Duration = Duration::from_secs(60);

/// Waits until the Lease of `node` shows another renew time than `before`; the new one.
fn lease_renewed_after(c: &Cluster, node: &str, before: &str) -> String {
    let mut now = String::new();
    wait_until(
        MINUTE,
        &format!("the Lease of {node} to be renewed"),
        || {
            now = c.renew_time(node).unwrap_or_default();
            !now.is_empty() && now != before
        },
    );
    now
}

fn started(c: &Cluster, account: &str, node: &str) -> RunningWorker {
    let keystore = c.account(account);
    RunningWorker::start(c.worker("run", &keystore, node, &c.path(node)))
}

#[test]
fn two_workers_are_ready_renew_their_leases_and_certificates_and_read_only_their_own_node() {
    // Certificates live 15 s here, so the workers renew them during the test.
    let c = Cluster::start(&["--node-cert-lifetime", "15s"]);
    for (account, node) in [("a", "node-a"), ("b", "node-b")] {
        c.stake(&c.account(account), node);
    }
    let a = started(&c, "a", "node-a");
    let b = started(&c, "b", "node-b");
    assert!(a.first_line().starts_with("joined"));
    assert!(b.first_line().starts_with("joined"));
    wait_until(MINUTE, "both Nodes Ready", || {
        c.ready("node-a") && c.ready("node-b")
    });

    // The stakes that admit them are on the registry, owned by their accounts.
    let state = c.state(&c.registry_path());
    assert_eq!(state.stakes["node-a"].owner, c.address(&c.account("a")));
    assert_eq!(state.stakes["node-b"].owner, c.address(&c.account("b")));
    let labels = c
        .get(&["node", "node-a"], "{.metadata.labels}")
        .unwrap_or_default();
    assert!(
        labels.contains("\"kubernetes.io/hostname\":\"node-a\""),
        "{labels}"
    );
    let reasons = c
        .get(&["node", "node-a"], "{.status.conditions[*].reason}")
        .unwrap_or_default();
    // The pressure conditions report this machine: a shared CI disk may really be nearly full.
    let pressure = worker::node::machine::pressure(
        &c.path("node-a"),
        worker::node::machine::DISK_RESERVE_PERCENT,
    );
    let disk = if pressure.disk {
        "KubeletHasDiskPressure"
    } else {
        "KubeletHasNoDiskPressure"
    };
    assert_eq!(
        reasons,
        format!("KubeletHasSufficientMemory {disk} KubeletHasSufficientPID KubeletReady")
    );

    // A node's kubeconfig (real kubectl, pinned server certificate) reads every Node (the pod
    // network routes to their pod CIDRs) but changes only its own.
    let kubeconfig = c.path("node-a/kubeconfig");
    let own = c.kubectl_as(&kubeconfig, &["get", "node", "node-a", "-o", "name"]);
    assert!(own.status.success(), "{}", text(&own));
    let other = c.kubectl_as(&kubeconfig, &["get", "node", "node-b", "-o", "name"]);
    assert!(other.status.success(), "{}", text(&other));
    let label = c.kubectl_as(&kubeconfig, &["label", "node", "node-b", "a=b"]);
    assert!(!label.status.success());
    assert!(
        text(&label).contains("node \"node-a\" is not allowed to modify node \"node-b\""),
        "{}",
        text(&label)
    );
    let secrets = c.kubectl_as(&kubeconfig, &["get", "secrets", "-n", "default"]);
    assert!(
        text(&secrets).contains("is forbidden"),
        "{}",
        text(&secrets)
    );
    let kubeconfig_text = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(!kubeconfig_text.contains("insecure-skip-tls-verify"));

    // Leases renew; certificates are renewed before they expire, and the renewed ones work
    // after the first has expired.
    let first = c.renew_time("node-a").unwrap_or_default();
    lease_renewed_after(&c, "node-a", &first);
    let first_cert = std::fs::read_to_string(c.path("node-a/node.crt")).unwrap();
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(c.path("node-a/join.json")).unwrap()).unwrap();
    let first_expiry = record["notAfterMs"].as_u64().unwrap();
    wait_until(MINUTE, "node-a's certificate to be renewed", || {
        std::fs::read_to_string(c.path("node-a/node.crt")).unwrap_or_default() != first_cert
    });
    let expired = std::time::UNIX_EPOCH + Duration::from_millis(first_expiry + 1_000);
    while std::time::SystemTime::now() < expired {
        std::thread::sleep(Duration::from_millis(250));
    }
    let after_expiry = c.renew_time("node-a").unwrap_or_default();
    lease_renewed_after(&c, "node-a", &after_expiry);
    let b_now = c.renew_time("node-b").unwrap_or_default();
    lease_renewed_after(&c, "node-b", &b_now);
    assert!(c.ready("node-a") && c.ready("node-b"));
    drop((a, b));
}

#[test]
fn a_restarted_worker_rejoins_without_a_new_stake() {
    let c = Cluster::start(&[]);
    c.stake(&c.account("r"), "node-r");
    let stake = c.state(&c.registry_path()).stakes["node-r"].clone();
    let worker = started(&c, "r", "node-r");
    assert!(worker.first_line().starts_with("joined"));
    wait_until(MINUTE, "node-r Ready", || c.ready("node-r"));
    worker.kill();

    // With its data directory: resumed with the saved certificate.
    let worker = started(&c, "r", "node-r");
    assert!(worker.first_line().starts_with("resumed"));
    let before = c.renew_time("node-r").unwrap_or_default();
    lease_renewed_after(&c, "node-r", &before);
    worker.kill();

    // Without a usable certificate (as after a long downtime): joined again, same stake.
    std::fs::remove_file(c.path("node-r/join.json")).unwrap();
    let worker = started(&c, "r", "node-r");
    assert!(worker.first_line().starts_with("joined"));
    let before = c.renew_time("node-r").unwrap_or_default();
    lease_renewed_after(&c, "node-r", &before);
    assert!(c.ready("node-r"));
    let state = c.state(&c.registry_path());
    assert_eq!(state.stakes.len(), 1);
    assert_eq!(state.stakes["node-r"], stake);
    drop(worker);
}

#[test]
fn a_restarted_enclave_keeps_its_nodes() {
    let mut c = Cluster::start(&[]);
    c.stake(&c.account("e"), "node-e");
    let worker = started(&c, "e", "node-e");
    assert!(worker.first_line().starts_with("joined"));
    wait_until(MINUTE, "node-e Ready", || c.ready("node-e"));
    let cert = std::fs::read_to_string(c.path("node-e/node.crt")).unwrap();

    c.restart_enclave();
    assert!(c.nodes().contains(&"node-e".to_owned()));
    // The worker carries on with the certificate it had: the restarted enclave still admits
    // the node (its binding is in the sealed store) and its CA key is the same.
    let before = c.renew_time("node-e").unwrap_or_default();
    lease_renewed_after(&c, "node-e", &before);
    assert_eq!(
        std::fs::read_to_string(c.path("node-e/node.crt")).unwrap(),
        cert
    );
    let own = c.kubectl_as(
        &c.path("node-e/kubeconfig"),
        &["get", "node", "node-e", "-o", "name"],
    );
    assert!(own.status.success(), "{}", text(&own));
    assert!(c.ready("node-e"));
    drop(worker);
}

#[test]
fn a_stopped_worker_leaves_its_lease_unrenewed() {
    let c = Cluster::start(&[]);
    c.stake(&c.account("s"), "node-s");
    let worker = started(&c, "s", "node-s");
    assert!(worker.first_line().starts_with("joined"));
    wait_until(MINUTE, "node-s Ready", || c.ready("node-s"));
    let before = c.renew_time("node-s").unwrap_or_default();
    lease_renewed_after(&c, "node-s", &before);
    worker.kill();
    let last = c.renew_time("node-s").unwrap_or_default();
    // Two and a half renewal intervals later the renew time has not moved: the node
    // lifecycle controller sees the Lease expire and marks the node NotReady.
    std::thread::sleep(Duration::from_secs(25));
    assert_eq!(c.renew_time("node-s").unwrap_or_default(), last);
    assert!(c.nodes().contains(&"node-s".to_owned()));
}

/// Waits for `worker` to exit by itself; its exit status.
fn exited(mut worker: RunningWorker) -> std::process::ExitStatus {
    let deadline = Instant::now() + MINUTE;
    loop {
        if let Some(status) = worker.child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the worker kept running");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn inactive_stakes_revoke_the_node_taint_it_and_delete_it_once_its_pods_are_gone() {
    let c = Cluster::start(&[]);
    let (u, s) = (c.account("u"), c.account("sl"));
    c.stake(&u, "node-u");
    c.stake(&s, "node-sl");
    let wu = started(&c, "u", "node-u");
    let ws = started(&c, "sl", "node-sl");
    assert!(wu.first_line().starts_with("joined"));
    assert!(ws.first_line().starts_with("joined"));
    wait_until(MINUTE, "both Nodes Ready", || {
        c.ready("node-u") && c.ready("node-sl")
    });
    // A pod bound to node-u keeps its Node until the pod is gone. It tolerates the
    // stake-inactive taint: otherwise the taint eviction controller deletes it at once, as
    // upstream's does for any NoExecute taint.
    let pod = c.path("pod.json");
    std::fs::write(
        &pod,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "bound", "namespace": "default"},
            "spec": {
                "nodeName": "node-u",
                "containers": [{"name": "c", "image": "busybox"}],
                "tolerations": [{
                    "key": "k3s-daas.io/stake-inactive",
                    "operator": "Exists",
                    "effect": "NoExecute"
                }]
            }
        })
        .to_string(),
    )
    .unwrap();
    let out = c.kubectl(&["create", "-f", pod.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));

    // node-u's owner starts unstaking; node-sl's stake is slashed below the minimum.
    block_on(
        c.registry_as(&c.registry_path(), &u)
            .request_unstake("node-u"),
    )
    .unwrap();
    block_on(
        c.registry_as(&c.registry_path(), &c.admin_keystore())
            .slash("node-sl", 1),
    )
    .unwrap();

    // Their certificates stop being accepted.
    wait_until(MINUTE, "node-u's credentials to be refused", || {
        !c.kubectl_as(&c.path("node-u/kubeconfig"), &["get", "node", "node-u"])
            .status
            .success()
    });
    // node-u is tainted NoExecute and stays while its pod is there; node-sl has no pods and
    // goes, with its Lease.
    wait_until(MINUTE, "node-u's NoExecute taint", || {
        c.get(
            &["node", "node-u"],
            "{.spec.taints[0].key}={.spec.taints[0].effect}",
        )
        .unwrap_or_default()
            == "k3s-daas.io/stake-inactive=NoExecute"
    });
    wait_until(MINUTE, "node-sl to be deleted", || {
        !c.nodes().contains(&"node-sl".to_owned())
    });
    assert_eq!(c.renew_time("node-sl"), None);
    assert!(c.nodes().contains(&"node-u".to_owned()));
    let out = c.kubectl(&["delete", "pod", "bound", "--grace-period=0", "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_until(MINUTE, "node-u to be deleted", || {
        !c.nodes().contains(&"node-u".to_owned())
    });

    // The workers see that they are no longer admitted and stop.
    assert!(!exited(wu).success());
    assert!(!exited(ws).success());
}
