//! Node lifecycle (Lease and heartbeat → Unknown, taints), taint-based
//! eviction, node IPAM and pod garbage collection.

use serde_json::{Value, json};

use crate::common::eventually;
use crate::support::{
    LeaseRenewer, condition, create, delete, get, hollow_node, items, merge, name, pod, post_ready,
    run_pod, start,
};

const PODS: &str = "/api/v1/namespaces/default/pods";

fn taints(node: &Value) -> Vec<(String, String)> {
    node["spec"]["taints"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|t| {
                    (
                        t["key"].as_str().unwrap().to_string(),
                        t["effect"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn events_about(e: &crate::common::Enclave, object: &str) -> Vec<(String, String)> {
    items(
        e,
        &format!("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3D{object}"),
    )
    .iter()
    .map(|ev| {
        (
            ev["reason"].as_str().unwrap().to_string(),
            ev["message"].as_str().unwrap().to_string(),
        )
    })
    .collect()
}

#[test]
fn a_node_whose_lease_stops_goes_unknown_is_tainted_and_its_pods_leave_after_their_toleration() {
    let e = start(&[]);
    hollow_node(&e, "alive", json!({}));
    hollow_node(&e, "dying", json!({}));
    let _alive = LeaseRenewer::start(&e, "alive");
    let dying = LeaseRenewer::start(&e, "dying");
    let short = json!({"tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 3}]});
    let forever = json!({"tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}]});
    for (p, spec) in [
        ("short", short),
        ("default", json!({})),
        ("forever", forever),
        ("elsewhere", json!({})),
    ] {
        let node = if p == "elsewhere" { "alive" } else { "dying" };
        create(&e, PODS, &pod(p, node, json!({}), spec));
        run_pod(&e, "default", p, "10.42.0.9");
    }
    // DefaultTolerationSeconds added what the pods lacked.
    let d = get(&e, &format!("{PODS}/default")).unwrap();
    assert_eq!(
        d["spec"]["tolerations"],
        json!([
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        ])
    );
    let f = get(&e, &format!("{PODS}/forever")).unwrap();
    assert_eq!(
        f["spec"]["tolerations"].as_array().unwrap().len(),
        2,
        "only not-ready added"
    );

    // Renewed, both stay Ready past the grace period.
    std::thread::sleep(std::time::Duration::from_secs(6));
    for n in ["alive", "dying"] {
        let node = get(&e, &format!("/api/v1/nodes/{n}")).unwrap();
        assert_eq!(condition(&node, "Ready").unwrap()["status"], "True", "{n}");
        assert!(taints(&node).is_empty(), "{n}: {node}");
    }

    dying.stop();
    let node = eventually("the dying node to go Unknown and be tainted", || {
        let n = get(&e, "/api/v1/nodes/dying")?;
        let t = taints(&n);
        (t.contains(&("node.kubernetes.io/unreachable".into(), "NoExecute".into()))).then_some(n)
    });
    let ready = condition(&node, "Ready").unwrap();
    assert_eq!(ready["status"], "Unknown");
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    for ty in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        let c = condition(&node, ty).unwrap();
        assert_eq!(
            (c["status"].as_str(), c["reason"].as_str()),
            (Some("Unknown"), Some("NodeStatusNeverUpdated")),
            "{ty}"
        );
        assert_eq!(c["message"], "Kubelet never posted node status.");
    }
    assert!(
        taints(&node).contains(&("node.kubernetes.io/unreachable".into(), "NoSchedule".into()))
    );
    let added = node["spec"]["taints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["effect"] == "NoExecute")
        .unwrap();
    assert!(added["timeAdded"].is_string(), "{added}");
    assert!(events_about(&e, "dying").contains(&(
        "NodeNotReady".into(),
        "Node dying status is now: NodeNotReady".into()
    )));

    // Its pods are not ready any more; the one tolerating 3 s goes.
    for p in ["default", "forever"] {
        let pod = get(&e, &format!("{PODS}/{p}")).unwrap();
        assert_eq!(condition(&pod, "Ready").unwrap()["status"], "False", "{p}");
    }
    assert!(
        events_about(&e, "default").contains(&("NodeNotReady".into(), "Node is not ready".into()))
    );
    // Evicted: marked for deletion (no kubelet on the dead node finishes it, so it stays
    // Terminating, as upstream).
    eventually("short to be evicted", || {
        marked_or_gone(&e, "short").then_some(())
    });
    assert!(
        events_about(&e, "short").contains(&(
            "TaintManagerEviction".into(),
            "Marking for deletion Pod default/short".into()
        )),
        "{:?}",
        events_about(&e, "short")
    );
    for p in ["default", "forever", "elsewhere"] {
        assert!(!marked_or_gone(&e, p), "{p} must stay");
    }
    let elsewhere = get(&e, &format!("{PODS}/elsewhere")).unwrap();
    assert_eq!(condition(&elsewhere, "Ready").unwrap()["status"], "True");

    // The kubelet comes back: Ready, untainted, nothing more evicted.
    let _back = LeaseRenewer::start(&e, "dying");
    post_ready(&e, "dying", "True");
    eventually("the taints to go", || {
        let n = get(&e, "/api/v1/nodes/dying")?;
        taints(&n).is_empty().then_some(())
    });
    assert!(get(&e, &format!("{PODS}/default")).is_some());
}

/// Whether pod `name` is gone or being deleted (`deletionTimestamp` set).
fn marked_or_gone(e: &crate::common::Enclave, name: &str) -> bool {
    get(e, &format!("{PODS}/{name}")).is_none_or(|p| !p["metadata"]["deletionTimestamp"].is_null())
}

#[test]
fn not_ready_and_user_no_execute_taints() {
    let e = start(&[]);
    hollow_node(&e, "a", json!({}));
    hollow_node(&e, "b", json!({}));
    let _a = LeaseRenewer::start(&e, "a");
    let _b = LeaseRenewer::start(&e, "b");
    create(&e, PODS, &pod("plain", "a", json!({}), json!({})));
    let tolerant = json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoExecute"}]});
    create(&e, PODS, &pod("tolerant", "a", json!({}), tolerant));
    // A NoExecute taint nothing tolerates evicts at once; a tolerated one keeps the pod.
    merge(
        &e,
        "/api/v1/nodes/a",
        json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoExecute"}]}}),
    );
    eventually("plain to be evicted", || {
        marked_or_gone(&e, "plain").then_some(())
    });
    assert!(!marked_or_gone(&e, "tolerant"));

    // A kubelet posting Ready=False gets the not-ready taints.
    post_ready(&e, "b", "False");
    let node = eventually("not-ready taints", || {
        let n = get(&e, "/api/v1/nodes/b")?;
        let t = taints(&n);
        (t.contains(&("node.kubernetes.io/not-ready".into(), "NoExecute".into()))
            && t.contains(&("node.kubernetes.io/not-ready".into(), "NoSchedule".into())))
        .then_some(n)
    });
    assert_eq!(condition(&node, "Ready").unwrap()["status"], "False");
    // Cordoning adds the unschedulable taint.
    merge(
        &e,
        "/api/v1/nodes/a",
        json!({"spec": {"unschedulable": true}}),
    );
    eventually("unschedulable taint", || {
        let n = get(&e, "/api/v1/nodes/a")?;
        taints(&n)
            .contains(&(
                "node.kubernetes.io/unschedulable".into(),
                "NoSchedule".into(),
            ))
            .then_some(())
    });
}

#[test]
fn every_node_gets_a_pod_cidr_released_on_deletion_and_kept_across_restarts() {
    let e = start(&[
        "--cluster-cidr",
        "10.99.0.0/22",
        "--node-cidr-mask-size",
        "24",
    ]);
    let cidr = |e: &crate::common::Enclave, n: &str| {
        eventually(&format!("{n}'s pod CIDR"), || {
            let node = get(e, &format!("/api/v1/nodes/{n}"))?;
            let c = node["spec"]["podCIDR"].as_str()?.to_string();
            assert_eq!(node["spec"]["podCIDRs"], json!([c]));
            Some(c)
        })
    };
    let mut seen = Vec::new();
    for n in ["n1", "n2", "n3", "n4"] {
        create(&e, "/api/v1/nodes", &json!({"metadata": {"name": n}}));
        seen.push(cidr(&e, n));
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "10.99.0.0/24",
            "10.99.1.0/24",
            "10.99.2.0/24",
            "10.99.3.0/24"
        ]
    );
    // The range is full: the fifth waits, with upstream's event.
    create(&e, "/api/v1/nodes", &json!({"metadata": {"name": "n5"}}));
    eventually("CIDRNotAvailable", || {
        items(
            &e,
            "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dn5",
        )
        .iter()
        .any(|ev| {
            ev["reason"] == "CIDRNotAvailable"
                && ev["message"] == "Node n5 status is now: CIDRNotAvailable"
        })
        .then_some(())
    });
    let n2 = seen[1].clone();
    delete(&e, "/api/v1/nodes/n2");
    assert_eq!(cidr(&e, "n5"), n2, "the freed subnet is reused");

    // After a restart the taken subnets are known again from the stored nodes.
    let dir = e.stop();
    let e = crate::common::Enclave::start_in_with(
        dir,
        &[
            "--cluster-cidr",
            "10.99.0.0/22",
            "--node-cidr-mask-size",
            "24",
        ],
    );
    let n3 = seen[2].clone();
    delete(&e, "/api/v1/nodes/n3");
    create(&e, "/api/v1/nodes", &json!({"metadata": {"name": "n6"}}));
    assert_eq!(cidr(&e, "n6"), n3);
    let all: Vec<String> = items(&e, "/api/v1/nodes")
        .iter()
        .filter_map(|n| n["spec"]["podCIDR"].as_str().map(str::to_string))
        .collect();
    let unique: std::collections::HashSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "{all:?}");
}

#[test]
fn pod_gc_collects_orphans_terminated_pods_and_unscheduled_terminating_ones() {
    let e = start(&["--terminated-pod-gc-threshold", "2"]);
    hollow_node(&e, "gone", json!({}));
    create(&e, PODS, &pod("orphan", "gone", json!({}), json!({})));
    run_pod(&e, "default", "orphan", "10.42.0.2");
    delete(&e, "/api/v1/nodes/gone");
    eventually("the orphan to be collected", || {
        get(&e, &format!("{PODS}/orphan")).is_none().then_some(())
    });

    for i in 0..4 {
        create(
            &e,
            PODS,
            &pod(&format!("done-{i}"), "", json!({}), json!({})),
        );
        merge(
            &e,
            &format!("{PODS}/done-{i}/status"),
            json!({"status": {"phase": "Succeeded"}}),
        );
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let left = eventually("two terminated pods left", || {
        let names: Vec<String> = items(&e, PODS)
            .iter()
            .map(name)
            .filter(|n| n.starts_with("done-"))
            .collect();
        (names.len() == 2).then_some(names)
    });
    assert_eq!(left, ["done-2", "done-3"], "the oldest go first");

    // Unscheduled and terminating (held by a finalizer): force-deleted, which
    // here leaves it to its finalizer, as upstream.
    let mut p = pod("stuck", "", json!({}), json!({}));
    p["metadata"]["finalizers"] = json!(["example.com/hold"]);
    p["spec"].as_object_mut().unwrap().remove("nodeName");
    create(&e, PODS, &p);
    delete(&e, &format!("{PODS}/stuck"));
    let stuck = get(&e, &format!("{PODS}/stuck")).unwrap();
    assert!(stuck["metadata"]["deletionTimestamp"].is_string());
    let marked = eventually("stuck to be marked failed by the collector", || {
        let p = get(&e, &format!("{PODS}/stuck"))?;
        (p["status"]["phase"] == "Failed").then_some(p)
    });
    assert_eq!(
        condition(&marked, "DisruptionTarget").unwrap()["reason"],
        "DeletionByPodGC"
    );
    merge(
        &e,
        &format!("{PODS}/stuck"),
        json!({"metadata": {"finalizers": null}}),
    );
    eventually("stuck gone", || {
        get(&e, &format!("{PODS}/stuck")).is_none().then_some(())
    });
}
