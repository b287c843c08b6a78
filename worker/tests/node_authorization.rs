//! What a joined node's own credentials may do, through real kubectl with the kubeconfig
//! `daas-worker` wrote: upstream's Node authorizer and NodeRestriction, each refusal a 403 with
//! upstream's message.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;

use std::time::Duration;

use common::{Cluster, RunningWorker, text, wait_until};

fn create(c: &Cluster, name: &str, object: serde_json::Value) {
    let path = c.path(&format!("{name}.json"));
    std::fs::write(&path, object.to_string()).unwrap();
    let out = c.kubectl(&["create", "-f", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
}

fn pod(name: &str, node: &str, secret: &str, config_map: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node,
            "volumes": [{"name": "s", "secret": {"secretName": secret}}],
            "containers": [{"name": "c", "image": "busybox",
                "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": config_map, "key": "k"}}}]}]
        }
    })
}

#[test]
fn a_node_reads_what_its_pods_use_and_changes_only_what_is_its_own() {
    let c = Cluster::start(&[]);
    c.stake(&c.account("n"), "node-n");
    let worker =
        RunningWorker::start(c.worker("run", &c.account("n"), "node-n", &c.path("node-n")));
    assert!(worker.first_line().starts_with("joined"));
    wait_until(Duration::from_secs(60), "node-n Ready", || {
        c.ready("node-n")
    });
    for (name, kind) in [
        ("used", "Secret"),
        ("other", "Secret"),
        ("used-cm", "ConfigMap"),
        ("other-cm", "ConfigMap"),
    ] {
        create(
            &c,
            name,
            serde_json::json!({"apiVersion": "v1", "kind": kind,
                "metadata": {"name": name, "namespace": "default"}, "data": {}}),
        );
    }
    create(&c, "p-on", pod("p-on", "node-n", "used", "used-cm"));
    create(&c, "p-off", pod("p-off", "node-x", "other", "other-cm"));
    // A claim pre-bound to a volume, used by a pod of the node; and a volume nobody uses.
    for (name, claim) in [("pv-used", Some("claim-on")), ("pv-other", None)] {
        let mut pv = serde_json::json!({"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "hostPath": {"path": format!("/tmp/{name}")}}});
        if let Some(claim) = claim {
            pv["spec"]["claimRef"] = serde_json::json!({"namespace": "default", "name": claim});
        }
        create(&c, name, pv);
    }
    create(
        &c,
        "claim-on",
        serde_json::json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "claim-on", "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                     "storageClassName": "", "volumeName": "pv-used"}}),
    );
    let mut claimer = pod("p-claim", "node-n", "used", "used-cm");
    claimer["spec"]["volumes"] = serde_json::json!([
        {"name": "d", "persistentVolumeClaim": {"claimName": "claim-on"}}]);
    create(&c, "p-claim", claimer);

    let kubeconfig = c.path("node-n/kubeconfig");
    let node = |args: &[&str]| c.kubectl_as(&kubeconfig, args);
    let allowed = |args: &[&str]| {
        let out = node(args);
        assert!(out.status.success(), "{args:?} refused: {}", text(&out));
    };
    let forbidden = |args: &[&str], message: &str| {
        let out = node(args);
        assert!(!out.status.success(), "{args:?} allowed");
        assert!(
            text(&out).contains(message),
            "{args:?}: expected {message:?} in:\n{}",
            text(&out)
        );
    };

    // What its pods use, and nothing else.
    allowed(&["get", "secret", "used", "-n", "default"]);
    allowed(&["get", "configmap", "used-cm", "-n", "default"]);
    forbidden(
        &["get", "secret", "other", "-n", "default"],
        "secrets \"other\" is forbidden: User \"system:node:node-n\" cannot get resource \
         \"secrets\" in API group \"\" in the namespace \"default\": no relationship found \
         between node 'node-n' and this object",
    );
    forbidden(
        &["get", "configmap", "other-cm", "-n", "default"],
        "no relationship found between node 'node-n' and this object",
    );
    forbidden(
        &["get", "secrets", "-n", "default"],
        "cannot list resource \"secrets\"",
    );
    // The claims its pods use and the volumes bound to them.
    allowed(&["get", "pvc", "claim-on", "-n", "default"]);
    allowed(&["get", "pv", "pv-used"]);
    forbidden(
        &["get", "pv", "pv-other"],
        "persistentvolumes \"pv-other\" is forbidden: User \"system:node:node-n\" cannot get \
         resource \"persistentvolumes\" in API group \"\" at the cluster scope: no relationship \
         found between node 'node-n' and this object",
    );
    forbidden(&["get", "pv"], "cannot list resource \"persistentvolumes\"");

    // Every pod, read-only (the worker's network policies and DNS need them), but it deletes
    // only its own.
    allowed(&["get", "pod", "p-on", "-n", "default"]);
    allowed(&[
        "get",
        "pods",
        "-A",
        "--field-selector",
        "spec.nodeName=node-n",
    ]);
    allowed(&["get", "pod", "p-off", "-n", "default"]);
    allowed(&["get", "pods", "-A"]);
    forbidden(
        &["delete", "pod", "p-off", "-n", "default"],
        "node \"node-n\" can only delete pods with spec.nodeName set to itself",
    );

    // Its own Node, but not its taints nor restricted labels.
    allowed(&["label", "node", "node-n", "example.com/team=a"]);
    forbidden(
        &["taint", "node", "node-n", "a=b:NoSchedule"],
        "node \"node-n\" is not allowed to modify taints",
    );
    forbidden(
        &[
            "label",
            "node",
            "node-n",
            "node-restriction.kubernetes.io/pool=x",
        ],
        "node \"node-n\" is not allowed to modify labels: node-restriction.kubernetes.io/pool",
    );
    // Every Node it may read (the pod network routes to their pod CIDRs), but not create or
    // change another one.
    let other = c.path("node-y.json");
    std::fs::write(
        &other,
        serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-y"}})
            .to_string(),
    )
    .unwrap();
    forbidden(
        &["create", "-f", other.to_str().unwrap()],
        "nodes \"node-y\" is forbidden: node \"node-n\" is not allowed to modify node \"node-y\"",
    );
    allowed(&["get", "nodes"]);
    allowed(&["get", "node", "node-n"]);
    let admin_node_y = c.path("node-y-admin.json");
    std::fs::write(
        &admin_node_y,
        serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-y"}})
            .to_string(),
    )
    .unwrap();
    let out = c.kubectl(&["create", "-f", admin_node_y.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    allowed(&["get", "node", "node-y"]);
    forbidden(
        &["label", "node", "node-y", "a=b"],
        "node \"node-n\" is not allowed to modify node \"node-y\"",
    );
    forbidden(
        &["delete", "node", "node-y"],
        "node \"node-n\" is not allowed to delete node \"node-y\"",
    );

    // The networking objects, read-only (NetworkPolicies too, once the API serves them).
    for kind in [
        "services",
        "endpoints",
        "endpointslices.discovery.k8s.io",
        "namespaces",
    ] {
        allowed(&["get", kind, "-A"]);
    }
    forbidden(
        &["create", "namespace", "x"],
        "cannot create resource \"namespaces\"",
    );
    forbidden(
        &["delete", "service", "kubernetes", "-n", "default"],
        "cannot delete resource \"services\"",
    );

    // Its own Lease only; no other kinds.
    allowed(&["get", "lease", "node-n", "-n", "kube-node-lease"]);
    forbidden(
        &["get", "lease", "node-x", "-n", "kube-node-lease"],
        "can only access node lease with the same name as the requesting node",
    );
    forbidden(
        &["create", "configmap", "x", "-n", "default"],
        "cannot create resource \"configmaps\"",
    );

    // Events it may create; who it is it may ask.
    let event = c.path("event.json");
    std::fs::write(
        &event,
        serde_json::json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "node-n.1", "namespace": "default"},
            "involvedObject": {"kind": "Node", "name": "node-n"},
            "reason": "Starting", "message": "started", "type": "Normal"})
        .to_string(),
    )
    .unwrap();
    allowed(&["create", "-f", event.to_str().unwrap()]);
    let whoami = node(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&whoami.stdout),
        "system:node:node-n"
    );
    drop(worker);
}
