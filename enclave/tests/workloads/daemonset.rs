//! The DaemonSet controller against hollow nodes, and `kubectl rollout`
//! for DaemonSets. There is no scheduler here: a DaemonSet pod names its
//! node through required node affinity, which is what the tests read.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::common::{Enclave, Kubectl, eventually, kubectl_versions};
use crate::support::{
    Kubelet, NS, create_node, delete, get, items, merge, name, ns_path, pods_with, post, run_pod,
    send,
};

pub fn daemonset(ds: &str, image: &str, spec: Value) -> Value {
    let mut s = json!({"selector": {"matchLabels": {"ds": ds}},
        "template": {"metadata": {"labels": {"ds": ds}},
            "spec": {"containers": [{"name": "c", "image": image}]}}});
    if let (Some(s), Some(extra)) = (s.as_object_mut(), spec.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": ds, "namespace": NS}, "spec": s})
}

pub fn ds_path(ds: &str) -> String {
    format!("{}/{ds}", ns_path("apps/v1", "daemonsets"))
}

/// The node a DaemonSet pod is pinned to.
pub fn node_of(pod: &Value) -> String {
    let terms = &pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"];
    assert_eq!(terms.as_array().map(Vec::len), Some(1), "{terms}");
    let field = &terms[0]["matchFields"][0];
    assert_eq!(
        (field["key"].as_str(), field["operator"].as_str()),
        (Some("metadata.name"), Some("In"))
    );
    field["values"][0].as_str().unwrap().to_string()
}

fn image(pod: &Value) -> String {
    pod["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// The live (not deleted) pods of DaemonSet `ds` by node: (name, image).
pub fn by_node(e: &Enclave, ds: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for p in pods_with(e, &format!("ds%3D{ds}")) {
        if p["metadata"]["deletionTimestamp"].is_null() {
            out.entry(node_of(&p))
                .or_default()
                .push((name(&p), image(&p)));
        }
    }
    out
}

fn nodes_with(e: &Enclave, ds: &str) -> Vec<String> {
    by_node(e, ds).into_keys().collect()
}

#[test]
fn one_pod_per_eligible_node_as_nodes_come_change_and_go() {
    let e = Enclave::start();
    create_node(&e, "n1", json!({"role": "worker"}), json!([]));
    create_node(
        &e,
        "n2",
        json!({"role": "worker"}),
        json!([{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]),
    );
    create_node(&e, "n3", json!({"role": "infra"}), json!([]));
    create_node(
        &e,
        "n4",
        json!({"role": "worker"}),
        json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
    );
    post(
        &e,
        &ns_path("apps/v1", "daemonsets"),
        &daemonset(
            "agent",
            "agent:1",
            json!({"template": {"metadata": {"labels": {"ds": "agent"}},
            "spec": {"nodeSelector": {"role": "worker"}, "containers": [{"name": "c", "image": "agent:1"}]}}}),
        ),
    );
    // n2's taint is not tolerated; the cordon taint of n4 is, as upstream adds it.
    eventually("pods on n1 and n4", || {
        (nodes_with(&e, "agent") == ["n1", "n4"]).then_some(())
    });
    let pod = &pods_with(&e, "ds%3Dagent")[0];
    let tolerations: Vec<String> = pod["spec"]["tolerations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            format!(
                "{}:{}",
                t["key"].as_str().unwrap(),
                t["effect"].as_str().unwrap()
            )
        })
        .collect();
    for want in [
        "node.kubernetes.io/not-ready:NoExecute",
        "node.kubernetes.io/unreachable:NoExecute",
        "node.kubernetes.io/disk-pressure:NoSchedule",
        "node.kubernetes.io/memory-pressure:NoSchedule",
        "node.kubernetes.io/pid-pressure:NoSchedule",
        "node.kubernetes.io/unschedulable:NoSchedule",
    ] {
        assert!(
            tolerations.contains(&want.to_string()),
            "{want} in {tolerations:?}"
        );
    }
    let hash = pod["metadata"]["labels"]["controller-revision-hash"]
        .as_str()
        .unwrap()
        .to_string();
    let revisions = items(&e, &ns_path("apps/v1", "controllerrevisions"));
    assert_eq!(revisions.len(), 1);
    assert_eq!(name(&revisions[0]), format!("agent-{hash}"));
    assert_eq!(revisions[0]["revision"], 1);
    assert_eq!(
        revisions[0]["data"]["spec"]["template"]["$patch"],
        "replace"
    );
    let ds = eventually("the status", || {
        get(&e, &ds_path("agent")).filter(|d| d["status"]["currentNumberScheduled"] == 2)
    });
    assert_eq!(ds["status"]["desiredNumberScheduled"], 2);
    assert_eq!(ds["status"]["numberMisscheduled"], 0);
    assert_eq!(ds["status"]["updatedNumberScheduled"], 2);
    assert_eq!(ds["status"]["numberUnavailable"], 2);
    assert_eq!(ds["status"]["observedGeneration"], 1);
    for p in pods_with(&e, "ds%3Dagent") {
        run_pod(&e, &p, true);
    }
    eventually("ready and available", || {
        get(&e, &ds_path("agent"))
            .filter(|d| d["status"]["numberReady"] == 2 && d["status"]["numberAvailable"] == 2)
    });

    // A new worker gets one; a node relabelled away loses its pod.
    create_node(&e, "n5", json!({"role": "worker"}), json!([]));
    merge(
        &e,
        "/api/v1/nodes/n1",
        json!({"metadata": {"labels": {"role": "retired"}}}),
    );
    eventually("pods on n4 and n5", || {
        (nodes_with(&e, "agent") == ["n4", "n5"]).then_some(())
    });
    // A node that goes takes its (unscheduled) pod with it.
    delete(&e, "/api/v1/nodes/n4", json!({}));
    eventually("a pod on n5 only", || {
        (nodes_with(&e, "agent") == ["n5"]).then_some(())
    });
    eventually("the status to follow", || {
        get(&e, &ds_path("agent")).filter(|d| {
            d["status"]["desiredNumberScheduled"] == 1 && d["status"]["currentNumberScheduled"] == 1
        })
    });
}

fn update_image(e: &Enclave, ds: &str, image: &str) {
    merge(
        e,
        &ds_path(ds),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}}),
    );
}

#[test]
fn rolling_updates_respect_max_unavailable_and_max_surge_and_on_delete_waits() {
    let e = Enclave::start();
    for n in ["n1", "n2", "n3"] {
        create_node(&e, n, json!({}), json!([]));
    }
    for (ds, strategy) in [
        (
            "unavail",
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
        ),
        (
            "surge",
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}),
        ),
        ("ondelete", json!({"type": "OnDelete"})),
    ] {
        post(
            &e,
            &ns_path("apps/v1", "daemonsets"),
            &daemonset(ds, "img:1", json!({"updateStrategy": strategy})),
        );
        eventually("three pods", || {
            (nodes_with(&e, ds).len() == 3).then_some(())
        });
        for p in pods_with(&e, &format!("ds%3D{ds}")) {
            run_pod(&e, &p, true);
        }
        update_image(&e, ds, "img:2");
    }
    // maxUnavailable 1: one old pod goes and is replaced; the others wait
    // for the new one to become available.
    let state = eventually("one node updated", || {
        let m = by_node(&e, "unavail");
        let new = m.values().flatten().filter(|(_, i)| i == "img:2").count();
        let old = m.values().flatten().filter(|(_, i)| i == "img:1").count();
        (new == 1 && old == 2).then_some(m)
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(
        by_node(&e, "unavail"),
        state,
        "nothing more until the new pod is ready"
    );
    // maxSurge 1: a new pod starts beside an old one; the old one stays.
    let surged = eventually("one node surged", || {
        let m = by_node(&e, "surge");
        let doubled: Vec<&String> = m
            .iter()
            .filter(|(_, pods)| pods.len() == 2)
            .map(|(n, _)| n)
            .collect();
        (doubled.len() == 1 && m.len() == 3).then(|| doubled[0].clone())
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(
        by_node(&e, "surge").values().flatten().count(),
        4,
        "at most one surge pod"
    );
    // Once the new pod is available, its old pod goes.
    let new_pod = pods_with(&e, "ds%3Dsurge")
        .into_iter()
        .find(|p| node_of(p) == surged && image(p) == "img:2")
        .unwrap();
    run_pod(&e, &new_pod, true);
    eventually("the old pod on the surged node to go", || {
        let m = by_node(&e, "surge");
        (m[&surged].len() == 1 && m[&surged][0].1 == "img:2").then_some(())
    });
    // OnDelete: nothing changes until a pod is deleted.
    let ds = eventually("the OnDelete status", || {
        get(&e, &ds_path("ondelete")).filter(|d| d["status"]["observedGeneration"] == 2)
    });
    assert!(ds["status"]["updatedNumberScheduled"].is_null(), "{ds}");
    assert!(
        by_node(&e, "ondelete")
            .values()
            .flatten()
            .all(|(_, i)| i == "img:1")
    );
    let victim = pods_with(&e, "ds%3Dondelete").remove(0);
    delete(&e, &crate::support::pod_path(&name(&victim)), json!({}));
    eventually("the deleted pod's node to get the new template", || {
        let m = by_node(&e, "ondelete");
        (m.get(&node_of(&victim))
            .is_some_and(|p| p.len() == 1 && p[0].1 == "img:2"))
        .then_some(())
    });
    eventually("one updated", || {
        get(&e, &ds_path("ondelete")).filter(|d| d["status"]["updatedNumberScheduled"] == 1)
    });
}

#[test]
fn kubectl_rollout_status_history_and_undo_for_daemonsets() {
    let e = Enclave::start();
    for n in ["n1", "n2"] {
        create_node(&e, n, json!({}), json!([]));
    }
    let _kubelet = Kubelet::start(&e, "app%3Drollout");
    let versions = kubectl_versions();
    let picked: Vec<&(String, std::path::PathBuf)> = versions
        .iter()
        .filter(|(v, _)| v == "1.27" || v == "1.33")
        .collect();
    assert_eq!(picked.len(), 2, "kubectl 1.27 and 1.33: {versions:?}");
    for (version, bin) in picked {
        let k = Kubectl::new(version, bin, &e);
        let ds = format!("roll-{}", version.replace('.', "-"));
        let mut manifest = daemonset(&ds, "web:1", json!({}));
        manifest["spec"]["template"]["metadata"]["labels"]["app"] = json!("rollout");
        send(
            &e,
            "POST",
            &ns_path("apps/v1", "daemonsets"),
            "application/json",
            &manifest,
        );
        let target = format!("daemonset/{ds}");
        let out = k.ok(&["rollout", "status", &target, "-n", NS, "--timeout=60s"]);
        assert!(
            out.contains(&format!("daemon set \"{ds}\" successfully rolled out")),
            "{version}: {out}"
        );
        k.ok(&["set", "image", &target, "c=web:2", "-n", NS]);
        k.ok(&[
            "annotate",
            &target,
            "kubernetes.io/change-cause=to web:2",
            "-n",
            NS,
        ]);
        let out = k.ok(&["rollout", "status", &target, "-n", NS, "--timeout=60s"]);
        assert!(out.contains("successfully rolled out"), "{version}: {out}");
        eventually("every pod at web:2", || {
            by_node(&e, &ds)
                .values()
                .flatten()
                .all(|(_, i)| i == "web:2")
                .then_some(())
        });
        let history = k.ok(&["rollout", "history", &target, "-n", NS]);
        let lines: Vec<&str> = history
            .lines()
            .filter(|l| l.trim_start().starts_with(char::is_numeric))
            .collect();
        assert_eq!(lines.len(), 2, "{version}: {history}");
        let detail = k.ok(&["rollout", "history", &target, "-n", NS, "--revision=1"]);
        assert!(detail.contains("web:1"), "{version}: {detail}");
        let out = k.ok(&["rollout", "undo", &target, "-n", NS]);
        assert!(out.contains("rolled back"), "{version}: {out}");
        k.ok(&["rollout", "status", &target, "-n", NS, "--timeout=60s"]);
        eventually("every pod back at web:1", || {
            let m = by_node(&e, &ds);
            (m.len() == 2 && m.values().flatten().all(|(_, i)| i == "web:1")).then_some(())
        });
        let history = k.ok(&["rollout", "history", &target, "-n", NS]);
        let revisions: Vec<&str> = history
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
            .collect();
        assert_eq!(
            revisions,
            ["2", "3"],
            "{version}: the undone revision is renumbered: {history}"
        );
    }
}
