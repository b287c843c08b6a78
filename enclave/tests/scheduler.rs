//! The scheduler in the real `daas-enclave --dev` binary, driven over
//! HTTP with curl against hollow nodes (Node objects with capacity and no
//! kubelet): placement, upstream's failure messages and conditions,
//! requeueing when a node fits, spreading, anti-affinity, preemption with
//! PodDisruptionBudgets, scheduling gates, other schedulers' pods, the
//! `pods/binding` subresource, the Priority admission plugin, a restart
//! in the middle of scheduling, and `kubectl describe`.
//!
//! Failure messages end in `..` when preemption adds its own message:
//! upstream's `FitError` ends each part with a period, and preemption's
//! part is itself a `FitError` message, as real clusters show.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;

use std::collections::{BTreeMap, HashMap};

use common::{Enclave, Kubectl, eventually, kubectl_versions};
use serde_json::{Value, json};

const NS: &str = "default";

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Sends `body`; returns (status code, parsed body).
fn request(
    e: &Enclave,
    method: &str,
    path: &str,
    content_type: &str,
    body: &Value,
) -> (u16, Value) {
    let ct = format!("Content-Type: {content_type}");
    let data = body.to_string();
    let (code, out) = e.curl_admin(path, &["-X", method, "-H", &ct, "--data-binary", &data]);
    (code, parse(&out))
}

fn send(e: &Enclave, method: &str, path: &str, body: &Value) -> Value {
    let ct = if method == "PATCH" {
        "application/merge-patch+json"
    } else {
        "application/json"
    };
    let (code, out) = request(e, method, path, ct, body);
    assert!((200..300).contains(&code), "{method} {path}: {code} {out}");
    out
}

fn get(e: &Enclave, path: &str) -> Option<Value> {
    let (code, out) = e.curl_admin(path, &[]);
    match code {
        200 => Some(parse(&out)),
        404 => None,
        _ => panic!("GET {path}: {code} {out}"),
    }
}

fn pod_path(name: &str) -> String {
    format!("/api/v1/namespaces/{NS}/pods/{name}")
}

/// A hollow node: capacity, optional labels, taints and cordon.
fn node(e: &Enclave, name: &str, cpu: &str, pods: u32, extra: Value) {
    let mut n = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {"capacity": {"cpu": cpu, "memory": "8Gi", "pods": pods.to_string()},
                   "conditions": [{"type": "Ready", "status": "True"}]}});
    if let Some(l) = extra.get("labels").and_then(Value::as_object) {
        for (k, v) in l {
            n["metadata"]["labels"][k] = v.clone();
        }
    }
    for f in ["taints", "unschedulable"] {
        if let Some(v) = extra.get(f) {
            n["spec"][f] = v.clone();
        }
    }
    send(e, "POST", "/api/v1/nodes", &n);
}

/// A pod requesting `cpu`, with `spec` fields merged in.
/// A pod asking for `cpu`. No kubelet runs on these nodes to finish a graceful deletion, so
/// the pods have no grace period (preemption's victims go at once).
fn pod(e: &Enclave, name: &str, cpu: &str, labels: Value, spec: Value) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": cpu, "memory": "100Mi"}}}]}});
    if let Some(s) = spec.as_object() {
        for (k, v) in s {
            p["spec"][k] = v.clone();
        }
    }
    send(e, "POST", &format!("/api/v1/namespaces/{NS}/pods"), &p)
}

fn node_of(p: &Value) -> &str {
    p["spec"]["nodeName"].as_str().unwrap_or("")
}

fn wait_bound(e: &Enclave, name: &str) -> Value {
    eventually(&format!("pod {name} to be bound"), || {
        get(e, &pod_path(name)).filter(|p| !node_of(p).is_empty())
    })
}

fn condition(p: &Value, ty: &str) -> Value {
    p["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == ty))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Waits for the pod's `PodScheduled=False` condition with `message`.
fn wait_unschedulable(e: &Enclave, name: &str, message: &str) -> Value {
    let last = std::cell::RefCell::new(Value::Null);
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually(&format!("pod {name} to be Unschedulable"), || {
            let p = get(e, &pod_path(name))?;
            let c = condition(&p, "PodScheduled");
            *last.borrow_mut() = c.clone();
            (c["status"] == "False" && c["reason"] == "Unschedulable" && c["message"] == message)
                .then_some(p)
        })
    }));
    match found {
        Ok(p) => p,
        Err(_) => panic!(
            "pod {name}: wanted {message:?}, last condition {}",
            last.borrow()
        ),
    }
}

/// core/v1 events about pod `name` with `reason`.
fn events(e: &Enclave, name: &str, reason: &str) -> Vec<Value> {
    let path = format!("/api/v1/namespaces/{NS}/events");
    get(e, &path).unwrap()["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|ev| ev["involvedObject"]["name"] == name && ev["reason"] == reason)
        .cloned()
        .collect()
}

#[test]
fn pods_land_on_fitting_nodes() {
    let e = Enclave::start();
    node(&e, "small", "1", 10, json!({}));
    node(&e, "big", "4", 10, json!({}));
    pod(&e, "p", "2", json!({}), json!({}));
    let p = wait_bound(&e, "p");
    assert_eq!(node_of(&p), "big");
    let c = condition(&p, "PodScheduled");
    assert_eq!(c["status"], "True", "{p}");
    assert!(c["lastTransitionTime"].is_string(), "{c}");
    let ev = eventually("a Scheduled event", || events(&e, "p", "Scheduled").pop());
    assert_eq!(ev["message"], "Successfully assigned default/p to big");
    assert_eq!(ev["type"], "Normal");
    assert_eq!(ev["source"]["component"], "default-scheduler");
    // Init containers (the largest step) and pod overhead count: 2.5 + 0.1
    // no longer fits the 2 cores left on big.
    let spec = json!({"overhead": {"cpu": "100m"}, "initContainers": [{"name": "init", "image": "busybox",
        "resources": {"requests": {"cpu": "2500m"}}}]});
    pod(&e, "init-heavy", "100m", json!({}), spec);
    wait_unschedulable(
        &e,
        "init-heavy",
        "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling..",
    );
}

#[test]
fn unschedulable_pods_wait_with_upstreams_message_then_fit_a_new_or_resized_node() {
    let e = Enclave::start();
    node(&e, "cordoned", "8", 10, json!({"unschedulable": true}));
    node(&e, "a", "1", 10, json!({}));
    node(&e, "b", "1", 10, json!({}));
    pod(&e, "big", "2", json!({}), json!({}));
    let msg = "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling..";
    let p = wait_unschedulable(&e, "big", msg);
    assert!(node_of(&p).is_empty());
    assert_eq!(p["status"]["phase"], "Pending");
    let ev = eventually("a FailedScheduling event", || {
        events(&e, "big", "FailedScheduling").pop()
    });
    assert_eq!(ev["message"], msg);
    assert_eq!(ev["type"], "Warning");
    assert_eq!(ev["source"]["component"], "default-scheduler");

    // A node that fits arrives: the pod is scheduled onto it.
    node(&e, "c", "4", 10, json!({}));
    assert_eq!(node_of(&wait_bound(&e, "big")), "c");

    // Too big for every node until one is resized.
    pod(&e, "huge", "6", json!({}), json!({}));
    wait_unschedulable(
        &e,
        "huge",
        "0/4 nodes are available: 1 node(s) were unschedulable, 3 Insufficient cpu. preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling..",
    );
    send(
        &e,
        "PATCH",
        "/api/v1/nodes/a/status",
        &json!({"status": {"capacity": {"cpu": "16"}}}),
    );
    assert_eq!(node_of(&wait_bound(&e, "huge")), "a");
}

#[test]
fn taints_and_node_affinity_nobody_satisfies_until_nodes_change() {
    let e = Enclave::start();
    node(
        &e,
        "gpu",
        "4",
        10,
        json!({"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}),
    );
    node(&e, "plain", "4", 10, json!({"labels": {"disk": "hdd"}}));
    // Only the tainted node has room.
    pod(
        &e,
        "filler",
        "4",
        json!({}),
        json!({"nodeSelector": {"disk": "hdd"}}),
    );
    wait_bound(&e, "filler");
    pod(&e, "t", "1", json!({}), json!({}));
    wait_unschedulable(
        &e,
        "t",
        "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}. preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling..",
    );
    send(
        &e,
        "PATCH",
        "/api/v1/nodes/gpu",
        &json!({"spec": {"taints": null}}),
    );
    assert_eq!(node_of(&wait_bound(&e, "t")), "gpu");

    let affinity = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
        {"nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}}});
    pod(&e, "picky", "100m", json!({}), affinity);
    wait_unschedulable(
        &e,
        "picky",
        "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling..",
    );
    send(
        &e,
        "PATCH",
        "/api/v1/nodes/gpu",
        &json!({"metadata": {"labels": {"disk": "ssd"}}}),
    );
    assert_eq!(node_of(&wait_bound(&e, "picky")), "gpu");
}

#[test]
fn topology_spread_and_anti_affinity_place_as_expected() {
    let e = Enclave::start();
    for (n, z) in [("z1a", "z1"), ("z2a", "z2"), ("z3a", "z3")] {
        node(
            &e,
            n,
            "8",
            20,
            json!({"labels": {"topology.kubernetes.io/zone": z}}),
        );
    }
    let spread = json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "spread"}}}]});
    for i in 0..6 {
        pod(
            &e,
            &format!("s{i}"),
            "100m",
            json!({"app": "spread"}),
            spread.clone(),
        );
        // One at a time, so that each sees the previous placements.
        wait_bound(&e, &format!("s{i}"));
    }
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..6 {
        let p = get(&e, &pod_path(&format!("s{i}"))).unwrap();
        *per_zone.entry(node_of(&p).to_string()).or_default() += 1;
    }
    assert_eq!(
        per_zone.values().copied().collect::<Vec<_>>(),
        [2, 2, 2],
        "{per_zone:?}"
    );

    let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "solo"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
    let mut hosts = Vec::new();
    for i in 0..3 {
        pod(
            &e,
            &format!("a{i}"),
            "100m",
            json!({"app": "solo"}),
            anti.clone(),
        );
        hosts.push(node_of(&wait_bound(&e, &format!("a{i}"))).to_string());
    }
    hosts.sort();
    hosts.dedup();
    assert_eq!(hosts.len(), 3, "one per node: {hosts:?}");
    pod(&e, "a3", "100m", json!({"app": "solo"}), anti);
    wait_unschedulable(
        &e,
        "a3",
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod..",
    );
    // A pod without the rule is refused where the existing pods' rule forbids it.
    pod(&e, "intruder", "100m", json!({"app": "solo"}), json!({}));
    wait_unschedulable(
        &e,
        "intruder",
        "0/3 nodes are available: 3 node(s) didn't satisfy existing pods anti-affinity rules. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod..",
    );
}

fn priority_class(e: &Enclave, name: &str, value: i64, extra: Value) {
    let mut pc = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": name}, "value": value});
    if let Some(x) = extra.as_object() {
        for (k, v) in x {
            pc[k] = v.clone();
        }
    }
    send(e, "POST", "/apis/scheduling.k8s.io/v1/priorityclasses", &pc);
}

#[test]
fn preemption_evicts_lower_priority_and_spares_a_budget_where_possible() {
    let e = Enclave::start();
    priority_class(&e, "low", 10, json!({}));
    priority_class(&e, "high", 1000, json!({}));
    priority_class(&e, "polite", 2000, json!({"preemptionPolicy": "Never"}));
    node(&e, "a", "2", 10, json!({}));
    node(&e, "b", "2", 10, json!({}));
    let low = json!({"priorityClassName": "low", "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
        {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["NODE"]}]}]}}}});
    let on = |n: &str| parse(&low.to_string().replace("NODE", n));
    let guarded = pod(&e, "guarded", "2", json!({"app": "guarded"}), on("a"));
    assert_eq!(
        guarded["spec"]["priority"], 10,
        "priority from the class at admission"
    );
    pod(&e, "free", "2", json!({"app": "free"}), on("b"));
    wait_bound(&e, "guarded");
    wait_bound(&e, "free");
    send(
        &e,
        "POST",
        &format!("/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets"),
        &json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "keep"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}}),
    );

    let before =
        get(&e, &format!("/api/v1/namespaces/{NS}/pods")).unwrap()["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
    let high = pod(
        &e,
        "urgent",
        "2",
        json!({}),
        json!({"priorityClassName": "high"}),
    );
    let uid = high["metadata"]["uid"].as_str().unwrap().to_string();
    let bound = wait_bound(&e, "urgent");
    assert_eq!(node_of(&bound), "b", "the unprotected pod's node");
    // Before its bind, the preemptor was nominated to the node its victim left.
    let (code, out) = e.curl_admin(
        &format!("/api/v1/namespaces/{NS}/pods?watch=1&resourceVersion={before}&timeoutSeconds=2"),
        &[],
    );
    assert_eq!(code, 200, "{out}");
    let nominated: Vec<String> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(parse)
        .filter(|ev| {
            ev["object"]["metadata"]["name"] == "urgent" && node_of(&ev["object"]).is_empty()
        })
        .filter_map(|ev| {
            ev["object"]["status"]["nominatedNodeName"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(nominated.first().map(String::as_str), Some("b"), "{out}");
    assert!(
        get(&e, &pod_path("free")).is_none(),
        "the victim was deleted"
    );
    assert!(
        get(&e, &pod_path("guarded")).is_some(),
        "the budget kept its pod"
    );
    let ev = eventually("a Preempted event", || {
        events(&e, "free", "Preempted").pop()
    });
    assert_eq!(ev["message"], format!("Preempted by pod {uid} on node b"));

    // With only budget-protected victims left, the budget gives way.
    pod(
        &e,
        "urgent2",
        "2",
        json!({}),
        json!({"priorityClassName": "high"}),
    );
    assert_eq!(node_of(&wait_bound(&e, "urgent2")), "a");
    assert!(get(&e, &pod_path("guarded")).is_none());

    // preemptionPolicy Never waits instead, whatever its priority.
    pod(
        &e,
        "waiter",
        "2",
        json!({}),
        json!({"priorityClassName": "polite"}),
    );
    wait_unschedulable(
        &e,
        "waiter",
        "0/2 nodes are available: 2 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never..",
    );
}

#[test]
fn gated_pods_wait_and_other_schedulers_pods_are_left_alone() {
    let e = Enclave::start();
    node(&e, "n1", "4", 10, json!({}));
    let gated = pod(
        &e,
        "gated",
        "100m",
        json!({}),
        json!({"schedulingGates": [{"name": "example.com/wait"}]}),
    );
    let c = condition(&gated, "PodScheduled");
    assert_eq!(
        (c["status"].as_str(), c["reason"].as_str()),
        (Some("False"), Some("SchedulingGated"))
    );
    assert_eq!(
        c["message"],
        "Scheduling is blocked due to non-empty scheduling gates"
    );
    pod(
        &e,
        "other",
        "100m",
        json!({}),
        json!({"schedulerName": "my-scheduler"}),
    );
    // A pod created after both is scheduled: the scheduler has seen them.
    pod(&e, "sentinel", "100m", json!({}), json!({}));
    wait_bound(&e, "sentinel");
    std::thread::sleep(std::time::Duration::from_millis(500));
    for name in ["gated", "other"] {
        let p = get(&e, &pod_path(name)).unwrap();
        assert!(node_of(&p).is_empty(), "{p}");
        assert!(events(&e, name, "FailedScheduling").is_empty());
    }
    assert_eq!(
        condition(&get(&e, &pod_path("other")).unwrap(), "PodScheduled"),
        Value::Null
    );
    // Adding a gate is refused; removing them releases the pod.
    let (code, out) = request(
        &e,
        "PATCH",
        &pod_path("gated"),
        "application/merge-patch+json",
        &json!({"spec": {"schedulingGates": [{"name": "example.com/wait"}, {"name": "more"}]}}),
    );
    assert_eq!(code, 422, "{out}");
    send(
        &e,
        "PATCH",
        &pod_path("gated"),
        &json!({"spec": {"schedulingGates": null}}),
    );
    assert_eq!(node_of(&wait_bound(&e, "gated")), "n1");
}

#[test]
fn the_binding_subresource_binds_once() {
    let e = Enclave::start();
    node(&e, "n1", "4", 10, json!({}));
    pod(
        &e,
        "manual",
        "100m",
        json!({}),
        json!({"schedulerName": "by-hand"}),
    );
    let path = format!("{}/binding", pod_path("manual"));
    let binding = |target: &str| {
        json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "manual"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": target}})
    };
    let (code, out) = request(&e, "POST", &path, "application/json", &binding("n1"));
    assert_eq!(code, 201, "{out}");
    assert_eq!(out["status"], "Success");
    let p = get(&e, &pod_path("manual")).unwrap();
    assert_eq!(node_of(&p), "n1");
    assert_eq!(condition(&p, "PodScheduled")["status"], "True");
    let (code, out) = request(&e, "POST", &path, "application/json", &binding("n2"));
    assert_eq!(code, 409, "{out}");
    assert_eq!(
        out["message"],
        "Operation cannot be fulfilled on pods/binding \"manual\": pod manual is already assigned to node \"n1\""
    );
    let (code, out) = request(
        &e,
        "POST",
        &path,
        "application/json",
        &json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "other"}, "target": {"name": "n1"}}),
    );
    assert_eq!(
        (code, out["message"].as_str()),
        (
            400,
            Some("name in URL does not match name in Binding object")
        )
    );
    let (code, _) = request(
        &e,
        "POST",
        &format!("{}/binding", pod_path("ghost")),
        "application/json",
        &json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "ghost"}, "target": {"name": "n1"}}),
    );
    assert_eq!(code, 404);
    // Discovery lists pods/binding with the create verb.
    let list = get(&e, "/api/v1").unwrap();
    let sub = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods/binding")
        .cloned();
    assert_eq!(
        sub.map(|s| (s["kind"].clone(), s["verbs"].clone())),
        Some((json!("Binding"), json!(["create"])))
    );

    // The older form: POST namespaces/NS/bindings naming the pod.
    pod(
        &e,
        "legacy",
        "100m",
        json!({}),
        json!({"schedulerName": "by-hand"}),
    );
    let bindings = format!(
        "{}/bindings",
        pod_path("legacy").rsplit_once("/pods/").unwrap().0
    );
    let body = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "legacy"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}});
    let (code, out) = request(&e, "POST", &bindings, "application/json", &body);
    assert_eq!(code, 201, "{out}");
    assert_eq!(node_of(&get(&e, &pod_path("legacy")).unwrap()), "n1");
    let (code, _) = request(&e, "POST", &bindings, "application/json", &body);
    assert_eq!(code, 409);
    let bindings_resource = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "bindings")
        .cloned()
        .expect("bindings is served");
    assert_eq!(bindings_resource["verbs"], json!(["create"]));
}

#[test]
fn the_priority_admission_plugin_resolves_classes() {
    let e = Enclave::start();
    let sys = get(
        &e,
        "/apis/scheduling.k8s.io/v1/priorityclasses/system-node-critical",
    )
    .unwrap();
    assert_eq!(sys["value"], 2_000_001_000);
    assert!(
        get(
            &e,
            "/apis/scheduling.k8s.io/v1/priorityclasses/system-cluster-critical"
        )
        .is_some()
    );
    let p = pod(&e, "plain", "100m", json!({}), json!({}));
    assert_eq!(
        (
            p["spec"]["priority"].clone(),
            p["spec"]["preemptionPolicy"].clone()
        ),
        (json!(0), json!("PreemptLowerPriority"))
    );
    let crit = pod(
        &e,
        "crit",
        "100m",
        json!({}),
        json!({"priorityClassName": "system-cluster-critical"}),
    );
    assert_eq!(crit["spec"]["priority"], 2_000_000_000);
    priority_class(&e, "default-tier", 50, json!({"globalDefault": true}));
    let d = pod(&e, "defaulted", "100m", json!({}), json!({}));
    assert_eq!(
        (
            d["spec"]["priority"].clone(),
            d["spec"]["priorityClassName"].clone()
        ),
        (json!(50), json!("default-tier"))
    );
    let (code, out) = request(
        &e,
        "POST",
        "/apis/scheduling.k8s.io/v1/priorityclasses",
        "application/json",
        &json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "second"}, "value": 1, "globalDefault": true}),
    );
    assert_eq!(code, 403, "{out}");
    assert_eq!(
        out["message"],
        "priorityclasses.scheduling.k8s.io \"second\" is forbidden: PriorityClass default-tier is already marked as default. Only one default can exist"
    );
    let body = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lost"},
        "spec": {"priorityClassName": "nope", "containers": [{"name": "c", "image": "i"}]}});
    let (code, out) = request(
        &e,
        "POST",
        &format!("/api/v1/namespaces/{NS}/pods"),
        "application/json",
        &body,
    );
    assert_eq!(
        (code, out["message"].as_str()),
        (
            403,
            Some("pods \"lost\" is forbidden: no PriorityClass with name nope was found")
        )
    );
    let body = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "liar"},
        "spec": {"priorityClassName": "default-tier", "priority": 7, "containers": [{"name": "c", "image": "i"}]}});
    let (code, out) = request(
        &e,
        "POST",
        &format!("/api/v1/namespaces/{NS}/pods"),
        "application/json",
        &body,
    );
    assert_eq!(code, 403, "{out}");
    assert!(
        out["message"]
            .as_str()
            .unwrap()
            .contains("the integer value of priority (7) must not be provided in pod spec")
    );
}

/// Every pod's `spec.nodeName` values over the watch history from `rv`.
fn binding_history(e: &Enclave, rv: &str) -> HashMap<String, Vec<String>> {
    let (code, out) = e.curl_admin(
        &format!("/api/v1/namespaces/{NS}/pods?watch=1&resourceVersion={rv}&timeoutSeconds=3"),
        &[],
    );
    assert_eq!(code, 200, "{out}");
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let ev = parse(line);
        let obj = &ev["object"];
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        let n = node_of(obj).to_string();
        let v = seen.entry(name).or_default();
        if !n.is_empty() && v.last() != Some(&n) {
            v.push(n);
        }
    }
    seen
}

#[test]
fn a_restart_mid_way_schedules_each_pod_exactly_once() {
    let e = Enclave::start();
    // Room for exactly the pods created: any pod counted twice, or lost
    // from the count, would leave another pod without a place.
    node(&e, "n1", "64", 60, json!({}));
    node(&e, "n2", "64", 60, json!({}));
    let rv =
        get(&e, &format!("/api/v1/namespaces/{NS}/pods")).unwrap()["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
    for i in 0..60 {
        pod(&e, &format!("r{i:03}"), "100m", json!({}), json!({}));
    }
    let dir = e.stop();
    let e = Enclave::start_in(dir);
    for i in 60..120 {
        pod(&e, &format!("r{i:03}"), "100m", json!({}), json!({}));
    }
    for i in 0..120 {
        wait_bound(&e, &format!("r{i:03}"));
    }
    let history = binding_history(&e, &rv);
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..120 {
        let name = format!("r{i:03}");
        let nodes = history.get(&name).cloned().unwrap_or_default();
        assert_eq!(nodes.len(), 1, "{name} bound once: {nodes:?}");
        *per_node.entry(nodes[0].clone()).or_default() += 1;
    }
    assert_eq!(per_node.values().sum::<usize>(), 120);
    assert!(per_node.values().all(|n| *n <= 60), "{per_node:?}");
}

#[test]
fn kubectl_describe_shows_the_failed_scheduling_event() {
    let e = Enclave::start();
    node(&e, "tiny", "1", 10, json!({}));
    pod(&e, "hungry", "3", json!({}), json!({}));
    let msg = "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling..";
    wait_unschedulable(&e, "hungry", msg);
    let (version, bin) = kubectl_versions().pop().expect("a kubectl");
    let k = Kubectl::new(&version, &bin, &e);
    let out = eventually("kubectl describe to show the event", || {
        let out = k.ok(&["describe", "pod", "hungry"]);
        out.contains("FailedScheduling").then_some(out)
    });
    assert!(out.contains("default-scheduler"), "{out}");
    assert!(out.contains(msg), "{out}");
    assert!(out.contains("PodScheduled"), "{out}");
}

/// core/v1 events about the object `name` of `kind` with `reason`, in any namespace.
fn object_events(e: &Enclave, kind: &str, name: &str, reason: &str) -> Vec<Value> {
    get(e, "/api/v1/events").unwrap()["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|ev| {
            ev["involvedObject"]["kind"] == kind
                && ev["involvedObject"]["name"] == name
                && ev["reason"] == reason
        })
        .cloned()
        .collect()
}

fn volume(e: &Enclave, name: &str, size: &str, spec: Value) {
    let mut v = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
        "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                 "hostPath": {"path": format!("/srv/{name}")}}});
    if let Some(s) = spec.as_object() {
        for (k, val) in s {
            v["spec"][k] = val.clone();
        }
    }
    send(e, "POST", "/api/v1/persistentvolumes", &v);
}

fn claim(e: &Enclave, name: &str, size: &str, spec: Value) {
    let mut c = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}});
    if let Some(s) = spec.as_object() {
        for (k, val) in s {
            c["spec"][k] = val.clone();
        }
    }
    send(
        e,
        "POST",
        &format!("/api/v1/namespaces/{NS}/persistentvolumeclaims"),
        &c,
    );
}

/// A `WaitForFirstConsumer` StorageClass `name` of `provisioner`.
fn wait_for_first_consumer_class(e: &Enclave, name: &str, provisioner: &str) {
    send(
        e,
        "POST",
        "/apis/storage.k8s.io/v1/storageclasses",
        &json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name},
            "provisioner": provisioner, "volumeBindingMode": "WaitForFirstConsumer"}),
    );
}

fn claim_path(name: &str) -> String {
    format!("/api/v1/namespaces/{NS}/persistentvolumeclaims/{name}")
}

fn wait_phase(e: &Enclave, path: &str, phase: &str) -> Value {
    eventually(&format!("{path} to be {phase}"), || {
        get(e, path).filter(|o| o["status"]["phase"] == phase)
    })
}

fn uses(claim: &str) -> Value {
    json!({"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]})
}

#[test]
fn claims_bind_to_volumes_and_pods_go_where_their_volumes_are() {
    let e = Enclave::start();
    node(&e, "a", "4", 10, json!({}));
    node(&e, "b", "4", 10, json!({}));

    // Immediate binding: the smallest volume that fits.
    volume(&e, "pv-small", "1Gi", json!({}));
    volume(
        &e,
        "pv-big",
        "5Gi",
        json!({"persistentVolumeReclaimPolicy": "Delete"}),
    );
    volume(&e, "pv-huge", "50Gi", json!({}));
    wait_phase(&e, "/api/v1/persistentvolumes/pv-small", "Available");
    claim(&e, "data", "2Gi", json!({"storageClassName": ""}));
    let c = wait_phase(&e, &claim_path("data"), "Bound");
    assert_eq!(c["spec"]["volumeName"], "pv-big");
    assert_eq!(c["status"]["capacity"]["storage"], "5Gi");
    assert_eq!(c["status"]["accessModes"], json!(["ReadWriteOnce"]));
    assert_eq!(
        c["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"],
        "yes"
    );
    let v = wait_phase(&e, "/api/v1/persistentvolumes/pv-big", "Bound");
    assert_eq!(v["spec"]["claimRef"]["name"], "data");
    assert_eq!(v["spec"]["claimRef"]["uid"], c["metadata"]["uid"]);
    assert!(v["status"]["lastPhaseTransitionTime"].is_string(), "{v}");
    let p = pod(&e, "user", "100m", json!({}), uses("data"));
    assert_eq!(p["metadata"]["name"], "user");
    wait_bound(&e, "user");

    // No volume is big enough and no class is set: the claim waits, and so does its pod.
    claim(&e, "vast", "100Gi", json!({"storageClassName": ""}));
    eventually("the FailedBinding event", || {
        object_events(&e, "PersistentVolumeClaim", "vast", "FailedBinding")
            .into_iter()
            .find(|ev| {
                ev["message"]
                    == "no persistent volumes available for this claim and no storage class is set"
            })
    });
    pod(&e, "waiting", "100m", json!({}), uses("vast"));
    let p = wait_unschedulable(
        &e,
        "waiting",
        "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling..",
    );
    assert_eq!(node_of(&p), "");
    // A volume that fits arrives: the claim binds, and the pod is scheduled.
    volume(&e, "pv-vast", "200Gi", json!({}));
    wait_phase(&e, &claim_path("vast"), "Bound");
    wait_bound(&e, "waiting");

    // WaitForFirstConsumer: the claim binds where its pod is placed, which is where the
    // local volume is.
    wait_for_first_consumer_class(&e, "local", "kubernetes.io/no-provisioner");
    let on_b = json!({"storageClassName": "local", "local": {"path": "/mnt/disk"}, "hostPath": null,
        "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["b"]}]}]}}});
    volume(&e, "local-b", "10Gi", on_b);
    claim(
        &e,
        "local-data",
        "1Gi",
        json!({"storageClassName": "local"}),
    );
    eventually("the WaitForFirstConsumer event", || {
        object_events(
            &e,
            "PersistentVolumeClaim",
            "local-data",
            "WaitForFirstConsumer",
        )
        .into_iter()
        .find(|ev| ev["message"] == "waiting for first consumer to be created before binding")
    });
    assert_eq!(
        get(&e, &claim_path("local-data")).unwrap()["status"]["phase"],
        "Pending"
    );
    pod(&e, "db", "100m", json!({}), uses("local-data"));
    assert_eq!(node_of(&wait_bound(&e, "db")), "b");
    let c = wait_phase(&e, &claim_path("local-data"), "Bound");
    assert_eq!(c["spec"]["volumeName"], "local-b");
    // A second consumer of the class finds no free local volume on any node.
    claim(
        &e,
        "local-more",
        "1Gi",
        json!({"storageClassName": "local"}),
    );
    pod(&e, "db2", "100m", json!({}), uses("local-more"));
    wait_unschedulable(
        &e,
        "db2",
        "0/2 nodes are available: 2 node(s) didn't find available persistent volumes to bind. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling..",
    );

    // A class whose volumes a provisioner makes: PreBind names the node on the claim, and
    // the pod binds only once the provisioner's volume is bound to the claim (upstream's
    // PreBind waits for its claims).
    wait_for_first_consumer_class(&e, "made", "example.com/csi");
    claim(&e, "made-data", "1Gi", json!({"storageClassName": "made"}));
    pod(&e, "maker", "100m", json!({}), uses("made-data"));
    let selected_node = |c: &Value| {
        c["metadata"]["annotations"]["volume.kubernetes.io/selected-node"]
            .as_str()
            .map(str::to_string)
    };
    let c = eventually("the claim's selected node", || {
        get(&e, &claim_path("made-data")).filter(|c| selected_node(c).is_some())
    });
    let selected = selected_node(&c).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(
        node_of(&get(&e, &pod_path("maker")).unwrap()),
        "",
        "the pod bound before its volume existed"
    );
    // The provisioner's volume, made for the claim.
    volume(
        &e,
        "made-pv",
        "1Gi",
        json!({"storageClassName": "made",
            "claimRef": {"namespace": NS, "name": "made-data", "uid": c["metadata"]["uid"]}}),
    );
    assert_eq!(node_of(&wait_bound(&e, "maker")), selected);
    let c = get(&e, &claim_path("made-data")).unwrap();
    assert_eq!(
        c["status"]["phase"], "Bound",
        "the pod bound before its claim"
    );
    assert_eq!(c["spec"]["volumeName"], "made-pv");

    // Released by the claim's deletion: Retain keeps the volume, Delete without a plugin fails.
    for (p, c) in [("db", "local-data"), ("user", "data")] {
        let (code, _) = e.curl_admin(&pod_path(p), &["-X", "DELETE"]);
        assert_eq!(code, 200);
        let (code, _) = e.curl_admin(&claim_path(c), &["-X", "DELETE"]);
        assert_eq!(code, 200);
    }
    wait_phase(&e, "/api/v1/persistentvolumes/local-b", "Released");
    let v = wait_phase(&e, "/api/v1/persistentvolumes/pv-big", "Failed");
    let msg = "error getting deleter volume plugin for volume \"pv-big\": no deletable volume plugin matched";
    assert_eq!(v["status"]["message"], msg);
    eventually("the VolumeFailedDelete event", || {
        object_events(&e, "PersistentVolume", "pv-big", "VolumeFailedDelete")
            .into_iter()
            .find(|ev| ev["message"] == msg && ev["type"] == "Warning")
    });

    // A claim without a class gets the default class, and is left to the class's
    // provisioner (without a default it could have taken pv-small or pv-huge, which have
    // no class).
    send(
        &e,
        "POST",
        "/apis/storage.k8s.io/v1/storageclasses",
        &json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "example.com/csi"}),
    );
    claim(&e, "auto", "1Gi", json!({}));
    let c = eventually("the default class", || {
        get(&e, &claim_path("auto")).filter(|c| c["spec"]["storageClassName"] == "standard")
    });
    assert_eq!(c["status"]["phase"], "Pending");
    eventually("the ExternalProvisioning event", || {
        object_events(&e, "PersistentVolumeClaim", "auto", "ExternalProvisioning")
            .into_iter()
            .find(|ev| ev["message"] == "waiting for a volume to be created, either by external provisioner \"example.com/csi\" or manually created by system administrator")
    });
    let c = get(&e, &claim_path("auto")).unwrap();
    assert_eq!(
        c["metadata"]["annotations"]["volume.kubernetes.io/storage-provisioner"],
        "example.com/csi"
    );

    // kubectl shows the bindings in upstream's columns.
    let (version, bin) = kubectl_versions().pop().expect("a kubectl");
    let k = Kubectl::new(&version, &bin, &e);
    let out = k.ok(&["get", "pvc", "vast"]);
    assert!(out.contains("Bound") && out.contains("pv-vast"), "{out}");
    let out = k.ok(&["get", "pv", "local-b"]);
    assert!(
        out.contains("Released") && out.contains("default/local-data"),
        "{out}"
    );
}

#[test]
fn host_ports_and_local_images_steer_placement() {
    let e = Enclave::start();
    node(&e, "a", "4", 10, json!({}));
    // Node b already has the pods' image. It has less CPU, so resource scoring alone prefers
    // a: only ImageLocality puts the first pod on b.
    let mut b = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "b", "labels": {"kubernetes.io/hostname": "b"}},
        "status": {"capacity": {"cpu": "2", "memory": "8Gi", "pods": "10"},
                   "conditions": [{"type": "Ready", "status": "True"}],
                   "images": [{"names": ["registry.k8s.io/pause:3.10"], "sizeBytes": 800_000_000}]}});
    b["spec"] = json!({});
    send(&e, "POST", "/api/v1/nodes", &b);
    let with_port = json!({"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
        "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}},
        "ports": [{"containerPort": 80, "hostPort": 8080, "protocol": "TCP"}]}]});
    pod(&e, "first", "100m", json!({}), with_port.clone());
    assert_eq!(
        node_of(&wait_bound(&e, "first")),
        "b",
        "the node with the image"
    );
    // The host port is taken on b: the next pod asking for it goes to a.
    pod(&e, "second", "100m", json!({}), with_port.clone());
    assert_eq!(node_of(&wait_bound(&e, "second")), "a");
    // Taken everywhere: the third waits with upstream's reason.
    pod(&e, "third", "100m", json!({}), with_port);
    let p = eventually("the third pod to be unschedulable", || {
        let p = get(&e, &pod_path("third"))?;
        let c = condition(&p, "PodScheduled");
        c["message"]
            .as_str()?
            .starts_with(
                "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports.",
            )
            .then_some(p)
    });
    assert_eq!(node_of(&p), "");
    // A port freed on a node lets it in there.
    let (code, _) = e.curl_admin(&pod_path("second"), &["-X", "DELETE"]);
    assert_eq!(code, 200);
    assert_eq!(node_of(&wait_bound(&e, "third")), "a");
}
