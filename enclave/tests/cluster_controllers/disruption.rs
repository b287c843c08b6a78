//! PodDisruptionBudget status, the eviction API and `kubectl drain`.

use serde_json::{Value, json};

use crate::common::{Enclave, Kubectl, eventually, kubectl_versions, wait_bounded};
use crate::support::{Kubelet, LeaseRenewer, call, create, get, hollow_node, items, name, start};

const NS: &str = "default";

fn deployment(name: &str, replicas: i64, node: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]}}}})
}

fn pdb(name: &str, app: &str, spec: Value) -> Value {
    let mut s = spec;
    s["selector"] = json!({"matchLabels": {"app": app}});
    json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name}, "spec": s})
}

fn pods_of(e: &Enclave, app: &str) -> Vec<Value> {
    items(
        e,
        &format!("/api/v1/namespaces/{NS}/pods?labelSelector=app%3D{app}"),
    )
}

fn ready_pods(e: &Enclave, app: &str, n: usize) -> Vec<String> {
    eventually(&format!("{n} ready pods of {app}"), || {
        let pods = pods_of(e, app);
        let ready: Vec<String> = pods
            .iter()
            .filter(|p| {
                p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
            })
            .map(name)
            .collect();
        (pods.len() == n && ready.len() == n).then_some(ready)
    })
}

fn pdb_status(e: &Enclave, name: &str, want: impl Fn(&Value) -> bool) -> Value {
    eventually(&format!("status of {name}"), || {
        let p = get(
            e,
            &format!("/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/{name}"),
        )?;
        want(&p["status"]).then_some(p["status"].clone())
    })
}

fn evict(e: &Enclave, pod: &str, extra: Value) -> (u16, Value) {
    let mut body = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": NS}});
    if let (Some(b), Some(x)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in x {
            b.insert(k.clone(), v.clone());
        }
    }
    call(
        e,
        "POST",
        &format!("/api/v1/namespaces/{NS}/pods/{pod}/eviction"),
        "application/json",
        &body,
    )
}

#[test]
fn budgets_report_status_and_the_eviction_api_honours_them() {
    let e = start(&[]);
    hollow_node(&e, "n1", json!({}));
    let _lease = LeaseRenewer::start(&e, "n1");
    let kubelet = Kubelet::start(&e, NS);
    create(
        &e,
        &format!("/apis/apps/v1/namespaces/{NS}/deployments"),
        &deployment("web", 3, "n1"),
    );
    ready_pods(&e, "web", 3);
    let pdbs = format!("/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets");
    create(&e, &pdbs, &pdb("min2", "web", json!({"minAvailable": 2})));
    let st = pdb_status(&e, "min2", |s| s["currentHealthy"] == 3);
    assert_eq!(st["desiredHealthy"], 2);
    assert_eq!(st["expectedPods"], 3);
    assert_eq!(st["disruptionsAllowed"], 1);
    assert_eq!(st["observedGeneration"], 1);
    let cond = &st["conditions"][0];
    assert_eq!(
        (
            cond["type"].as_str(),
            cond["status"].as_str(),
            cond["reason"].as_str()
        ),
        (
            Some("DisruptionAllowed"),
            Some("True"),
            Some("SufficientPods")
        )
    );

    // A percentage counts the Deployment's replicas; maxUnavailable too.
    create(
        &e,
        "/apis/apps/v1/namespaces/default/deployments",
        &deployment("db", 4, "n1"),
    );
    ready_pods(&e, "db", 4);
    create(
        &e,
        &pdbs,
        &pdb("half", "db", json!({"maxUnavailable": "50%"})),
    );
    let st = pdb_status(&e, "half", |s| {
        s["expectedPods"] == 4 && s["currentHealthy"] == 4
    });
    assert_eq!(
        (
            st["desiredHealthy"].as_i64(),
            st["disruptionsAllowed"].as_i64()
        ),
        (Some(2), Some(2))
    );

    // Dry run: allowed, nothing deleted.
    let victim = name(&pods_of(&e, "web")[0]);
    let (code, body) = evict(&e, &victim, json!({"deleteOptions": {"dryRun": ["All"]}}));
    assert_eq!(code, 201, "{body}");
    assert!(get(&e, &format!("/api/v1/namespaces/{NS}/pods/{victim}")).is_some());
    // The one disruption allowed. The kubelet pauses, so that the
    // replacement stays unready until the refusal below is seen.
    drop(kubelet);
    let (code, body) = evict(&e, &victim, json!({}));
    assert_eq!(
        (code, body),
        (
            201,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
        )
    );
    // Marked for deletion with its grace period (the paused kubelet does not finish it).
    let evicted = get(&e, &format!("/api/v1/namespaces/{NS}/pods/{victim}"));
    assert!(
        evicted.is_none_or(|p| !p["metadata"]["deletionTimestamp"].is_null()),
        "the victim is neither gone nor terminating"
    );
    // The next is refused with upstream's 429 until the replacement is ready.
    // A running one: the unready replacement is Pending, and a Pending pod
    // is evicted whatever the budget says.
    let next = pods_of(&e, "web")
        .iter()
        .filter(|p| p["status"]["phase"] == "Running")
        .map(name)
        .find(|n| *n != victim)
        .unwrap();
    let st = pdb_status(&e, "min2", |s| s["disruptionsAllowed"] == 0);
    assert_eq!(st["conditions"][0]["reason"], "InsufficientPods");
    let (code, body) = evict(&e, &next, json!({}));
    if code == 429 {
        assert_eq!(body["reason"], "TooManyRequests");
        assert_eq!(
            body["message"],
            "Cannot evict pod as it would violate the pod's disruption budget."
        );
        let cause = &body["details"]["causes"][0];
        assert_eq!(cause["reason"], "DisruptionBudget");
        let msg = cause["message"].as_str().unwrap();
        assert!(
            msg.starts_with("The disruption budget min2 needs 2 healthy pods and has "),
            "{msg}"
        );
    } else {
        panic!("expected 429, got {code} {body}");
    }
    let kubelet = Kubelet::start(&e, NS);
    ready_pods(&e, "web", 3);
    pdb_status(&e, "min2", |s| s["disruptionsAllowed"] == 1);

    // Two budgets over one pod: upstream's 500 Status.
    create(&e, &pdbs, &pdb("second", "web", json!({"minAvailable": 1})));
    pdb_status(&e, "second", |s| s["observedGeneration"] == 1);
    let (code, body) = evict(&e, &next, json!({}));
    assert_eq!(code, 500, "{body}");
    assert_eq!(
        body["message"],
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    );
    crate::support::delete(&e, &format!("{pdbs}/second"));

    // Pending pods are evicted whatever the budget; a wrong name is a 400.
    create(
        &e,
        &format!("/api/v1/namespaces/{NS}/pods"),
        &crate::support::pod("pending", "", json!({"app": "web"}), json!({})),
    );
    let (code, _) = evict(&e, "pending", json!({}));
    assert_eq!(code, 201);
    let (code, body) = call(
        &e,
        "POST",
        &format!("/api/v1/namespaces/{NS}/pods/{next}/eviction"),
        "application/json",
        &json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "other"}}),
    );
    assert_eq!(
        (code, body["message"].as_str()),
        (
            400,
            Some("name in URL does not match name in Eviction object")
        )
    );

    // Concurrent evictions: the budget's one disruption goes to exactly one
    // (no kubelet any more, so the replacement does not become ready).
    ready_pods(&e, "web", 3);
    pdb_status(&e, "min2", |s| {
        s["disruptionsAllowed"] == 1 && s["currentHealthy"] == 3
    });
    drop(kubelet);
    let names: Vec<String> = pods_of(&e, "web").iter().map(name).collect();
    let client = crate::support::Client::of(&e);
    let handles: Vec<_> = names
        .iter()
        .map(|p| {
            let (c, p) = (client.clone(), p.clone());
            std::thread::spawn(move || {
                let body =
                    json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": p}})
                        .to_string();
                c.curl(
                    &format!("/api/v1/namespaces/{NS}/pods/{p}/eviction"),
                    &[
                        "-X",
                        "POST",
                        "-H",
                        "Content-Type: application/json",
                        "--data-binary",
                        &body,
                    ],
                )
                .0
            })
        })
        .collect();
    let codes: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(codes.iter().filter(|c| **c == 201).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 429).count(), 2, "{codes:?}");
}

/// Drains `n1` with kubectl `bin`, a budget of minAvailable 2 over 3 pods there.
fn drain(e: &Enclave, version: &str, bin: &std::path::Path, app: &str) -> String {
    let k = Kubectl::new(version, bin, e);
    let out = k.run(&[
        "drain",
        "n1",
        "--pod-selector",
        &format!("app={app}"),
        "--timeout=90s",
    ]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "kubectl {version} drain failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    format!("{stdout}{stderr}")
}

#[test]
fn kubectl_drain_waits_for_the_budget() {
    let versions = kubectl_versions();
    let pick: Vec<_> = versions
        .iter()
        .filter(|(v, _)| v == "1.27" || v == "1.33")
        .cloned()
        .collect();
    assert_eq!(
        pick.len(),
        2,
        "kubectl 1.27 and 1.33 must be installed: {versions:?}"
    );
    for (version, bin) in pick {
        let e = start(&[]);
        hollow_node(&e, "n1", json!({}));
        let _lease = LeaseRenewer::start(&e, "n1");
        let _kubelet = Kubelet::start(&e, NS);
        create(
            &e,
            &format!("/apis/apps/v1/namespaces/{NS}/deployments"),
            &deployment("web", 3, "n1"),
        );
        let before = ready_pods(&e, "web", 3);
        create(
            &e,
            &format!("/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets"),
            &pdb("web", "web", json!({"minAvailable": 2})),
        );
        pdb_status(&e, "web", |s| s["disruptionsAllowed"] == 1);
        let out = drain(&e, &version, &bin, "web");
        assert!(out.contains("node/n1 cordoned"), "{version}: {out}");
        assert!(out.contains("node/n1 drained"), "{version}: {out}");
        for p in &before {
            assert!(
                out.contains(&format!("pod/{p} evicted")),
                "{version}: {p} not evicted: {out}"
            );
        }
        // At least one eviction had to wait for the budget.
        assert!(
            out.contains("Cannot evict pod as it would violate the pod's disruption budget."),
            "{version}: {out}"
        );
        let node = get(&e, "/api/v1/nodes/n1").unwrap();
        assert_eq!(node["spec"]["unschedulable"], true);
        let now: Vec<String> = ready_pods(&e, "web", 3);
        assert!(
            now.iter().all(|p| !before.contains(p)),
            "{version}: {now:?} vs {before:?}"
        );
    }
}

#[test]
fn a_restart_in_the_middle_of_a_drain_resumes_without_duplicates() {
    let (version, bin) = kubectl_versions()
        .into_iter()
        .find(|(v, _)| v == "1.33")
        .unwrap();
    let e = start(&[]);
    hollow_node(&e, "n1", json!({}));
    let lease = LeaseRenewer::start(&e, "n1");
    let kubelet = Kubelet::start(&e, NS);
    create(
        &e,
        &format!("/apis/apps/v1/namespaces/{NS}/deployments"),
        &deployment("web", 3, "n1"),
    );
    let before = ready_pods(&e, "web", 3);
    create(
        &e,
        &format!("/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets"),
        &pdb("web", "web", json!({"minAvailable": 2})),
    );
    pdb_status(&e, "web", |s| s["disruptionsAllowed"] == 1);
    // Start draining, and stop the enclave once the first pod is gone.
    let child = {
        let k = Kubectl::new(&version, &bin, &e);
        k.spawn(&["drain", "n1", "--pod-selector", "app=web", "--timeout=60s"])
    };
    eventually("the first eviction", || {
        let left = pods_of(&e, "web")
            .iter()
            .filter(|p| before.contains(&name(p)))
            .count();
        (left < 3).then_some(())
    });
    drop(kubelet);
    drop(lease);
    let dir = e.stop();
    let interrupted = wait_bounded(
        child,
        std::time::Duration::from_secs(60),
        "the interrupted drain",
    );
    assert!(
        !interrupted.status.success(),
        "the drain cannot finish without its server"
    );

    let e = crate::common::Enclave::start_in_with(dir, crate::support::FAST);
    let _lease = LeaseRenewer::start(&e, "n1");
    let _kubelet = Kubelet::start(&e, NS);
    crate::support::post_ready(&e, "n1", "True");
    let out = drain(&e, &version, &bin, "web");
    assert!(out.contains("node/n1 drained"), "{out}");
    let now = ready_pods(&e, "web", 3);
    assert!(now.iter().all(|p| !before.contains(p)), "{now:?}");
    let sets = items(&e, &format!("/apis/apps/v1/namespaces/{NS}/replicasets"));
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0]["status"]["replicas"], 3);
}
