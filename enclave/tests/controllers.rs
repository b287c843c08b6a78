//! The deployment and replicaset controllers and the garbage collector in
//! the real `daas-enclave --dev` binary, driven over HTTP with curl: what
//! they create, how they roll out and back, and that they resume after a
//! restart. Pods stay Pending (there are no nodes), so no pod is ever
//! available.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;

use std::time::Duration;

use common::{Enclave, eventually};
use serde_json::{Value, json};

const NS: &str = "default";

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn send(e: &Enclave, method: &str, path: &str, content_type: &str, body: &Value) -> Value {
    let ct = format!("Content-Type: {content_type}");
    let data = body.to_string();
    let (code, out) = e.curl_admin(path, &["-X", method, "-H", &ct, "--data-binary", &data]);
    assert!((200..300).contains(&code), "{method} {path}: {code} {out}");
    parse(&out)
}

fn get(e: &Enclave, path: &str) -> Option<Value> {
    let (code, out) = e.curl_admin(path, &[]);
    match code {
        200 => Some(parse(&out)),
        404 => None,
        _ => panic!("GET {path}: {code} {out}"),
    }
}

fn items(e: &Enclave, path: &str) -> Vec<Value> {
    get(e, path).unwrap()["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn deployments(name: &str) -> String {
    format!("/apis/apps/v1/namespaces/{NS}/deployments/{name}")
}

/// Replica sets and pods whose names start with `prefix-`.
fn replicasets(e: &Enclave, prefix: &str) -> Vec<Value> {
    let mut v: Vec<Value> = items(e, &format!("/apis/apps/v1/namespaces/{NS}/replicasets"))
        .into_iter()
        .filter(|rs| name(rs).starts_with(&format!("{prefix}-")))
        .collect();
    v.sort_by_key(revision);
    v
}

fn pods(e: &Enclave, prefix: &str) -> Vec<Value> {
    items(e, &format!("/api/v1/namespaces/{NS}/pods"))
        .into_iter()
        .filter(|p| name(p).starts_with(&format!("{prefix}-")))
        .collect()
}

fn name(o: &Value) -> String {
    o["metadata"]["name"].as_str().unwrap_or("").to_string()
}

fn revision(rs: &Value) -> i64 {
    rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn deployment(name: &str, replicas: i64, image: &str, strategy: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
        },
    })
}

fn create_deployment(e: &Enclave, d: &Value) -> Value {
    send(
        e,
        "POST",
        &format!("/apis/apps/v1/namespaces/{NS}/deployments"),
        "application/json",
        d,
    )
}

fn merge(e: &Enclave, path: &str, patch: Value) -> Value {
    send(e, "PATCH", path, "application/merge-patch+json", &patch)
}

fn set_image(e: &Enclave, d: &str, image: &str) {
    merge(
        e,
        &deployments(d),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}}),
    );
}

fn image(o: &Value) -> &str {
    o["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or("")
}

/// Waits until deployment `d` has the replica sets `want` as (image, replicas, revision),
/// each with that many pods, and returns them oldest revision first.
fn wait_for_sets(e: &Enclave, d: &str, want: &[(&str, i64, i64)]) -> Vec<Value> {
    eventually(&format!("replica sets of {d} to be {want:?}"), || {
        let sets = replicasets(e, d);
        let have: Vec<(String, i64, i64)> = sets
            .iter()
            .map(|rs| {
                (
                    image(rs).to_string(),
                    rs["spec"]["replicas"].as_i64().unwrap_or(-1),
                    revision(rs),
                )
            })
            .collect();
        let wanted: Vec<(String, i64, i64)> = want
            .iter()
            .map(|(i, r, v)| (i.to_string(), *r, *v))
            .collect();
        if have != wanted {
            return None;
        }
        let all_pods = pods(e, d);
        for rs in &sets {
            let uid = rs["metadata"]["uid"].as_str().unwrap();
            let owned = all_pods
                .iter()
                .filter(|p| p["metadata"]["ownerReferences"][0]["uid"] == uid)
                .count();
            if i64::try_from(owned).unwrap() != rs["spec"]["replicas"].as_i64().unwrap()
                || rs["status"]["replicas"] != rs["spec"]["replicas"]
            {
                return None;
            }
        }
        Some(sets)
    })
}

fn recreate() -> Value {
    json!({"type": "Recreate"})
}

#[test]
fn deployment_rolls_out_scales_and_rolls_back() {
    let e = Enclave::start();
    let d = create_deployment(&e, &deployment("web", 2, "nginx:1", recreate()));
    let d_uid = d["metadata"]["uid"].as_str().unwrap().to_string();

    let sets = wait_for_sets(&e, "web", &[("nginx:1", 2, 1)]);
    let rs = &sets[0];
    let hash = rs["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !hash.is_empty()
            && hash
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
        "{hash}"
    );
    assert_eq!(name(rs), format!("web-{hash}"));
    assert_eq!(
        rs["spec"]["selector"]["matchLabels"]["pod-template-hash"],
        hash.as_str()
    );
    assert_eq!(
        rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"],
        hash.as_str()
    );
    let owner = &rs["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Deployment");
    assert_eq!(owner["uid"], d_uid.as_str());
    assert_eq!(owner["controller"], true);
    assert_eq!(owner["blockOwnerDeletion"], true);
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"],
        "2"
    );
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"],
        "2"
    );
    let managers: Vec<&str> = rs["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(
        managers.contains(&"kube-controller-manager"),
        "{managers:?}"
    );
    for p in pods(&e, "web") {
        assert!(
            name(&p).starts_with(&format!("web-{hash}-")),
            "{}",
            name(&p)
        );
        assert_eq!(p["metadata"]["labels"]["pod-template-hash"], hash.as_str());
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
        assert_eq!(p["status"]["phase"], "Pending");
    }
    let status = eventually("deployment status", || {
        let d = get(&e, &deployments("web"))?;
        (d["status"]["replicas"] == 2 && d["status"]["updatedReplicas"] == 2).then_some(d)
    });
    assert_eq!(
        status["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    assert_eq!(
        status["status"]["observedGeneration"],
        status["metadata"]["generation"]
    );
    assert_eq!(status["status"]["unavailableReplicas"], 2);
    let conds = status["status"]["conditions"].as_array().unwrap();
    let reason = |t: &str| {
        conds
            .iter()
            .find(|c| c["type"] == t)
            .map(|c| c["reason"].as_str().unwrap().to_string())
    };
    assert_eq!(
        reason("Available").as_deref(),
        Some("MinimumReplicasUnavailable")
    );
    assert!(
        matches!(
            reason("Progressing").as_deref(),
            Some("ReplicaSetUpdated" | "NewReplicaSetCreated")
        ),
        "{conds:?}"
    );

    // Scale through /scale, as kubectl scale does.
    merge(
        &e,
        &format!("{}/scale", deployments("web")),
        json!({"spec": {"replicas": 3}}),
    );
    wait_for_sets(&e, "web", &[("nginx:1", 3, 1)]);

    // A new template: revision 2; Recreate empties the old set first.
    set_image(&e, "web", "nginx:2");
    let sets = wait_for_sets(&e, "web", &[("nginx:1", 0, 1), ("nginx:2", 3, 2)]);
    let first = name(&sets[0]);

    // Roll back as kubectl rollout undo does: the old template comes back
    // and its replica set is reused with revision 3.
    set_image(&e, "web", "nginx:1");
    let sets = wait_for_sets(&e, "web", &[("nginx:2", 0, 2), ("nginx:1", 3, 3)]);
    assert_eq!(name(&sets[1]), first, "the old replica set is reused");
    assert_eq!(
        sets[1]["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"],
        "1"
    );
    eventually("deployment revision 3", || {
        let d = get(&e, &deployments("web"))?;
        (d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3").then_some(())
    });

    // Deleting a pod: the replica set makes another.
    let victim = name(&pods(&e, "web")[0]);
    send(
        &e,
        "DELETE",
        &format!("/api/v1/namespaces/{NS}/pods/{victim}"),
        "application/json",
        &json!({}),
    );
    eventually("a replacement pod", || {
        let ps = pods(&e, "web");
        (ps.len() == 3 && ps.iter().all(|p| name(p) != victim)).then_some(())
    });

    // Background deletion takes the replica sets and pods with it.
    send(
        &e,
        "DELETE",
        &deployments("web"),
        "application/json",
        &json!({"propagationPolicy": "Background"}),
    );
    eventually("replica sets and pods to go", || {
        (replicasets(&e, "web").is_empty() && pods(&e, "web").is_empty()).then_some(())
    });
}

#[test]
fn rolling_update_follows_max_surge_and_max_unavailable() {
    let e = Enclave::start();
    // maxUnavailable 100%: the old pods may all go before new ones are ready.
    let fast = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "100%"}});
    create_deployment(&e, &deployment("fast", 3, "nginx:1", fast));
    wait_for_sets(&e, "fast", &[("nginx:1", 3, 1)]);
    set_image(&e, "fast", "nginx:2");
    wait_for_sets(&e, "fast", &[("nginx:1", 0, 1), ("nginx:2", 3, 2)]);

    // maxSurge 1, maxUnavailable 0 (what the default 25%/25% gives for 3
    // replicas). No pod ever becomes available here, so upstream's
    // arithmetic surges one new pod and keeps every old one.
    let slow =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}});
    create_deployment(&e, &deployment("slow", 3, "nginx:1", slow));
    wait_for_sets(&e, "slow", &[("nginx:1", 3, 1)]);
    set_image(&e, "slow", "nginx:2");
    wait_for_sets(&e, "slow", &[("nginx:1", 3, 1), ("nginx:2", 1, 2)]);
    let d = eventually("status of the stalled rollout", || {
        let d = get(&e, &deployments("slow"))?;
        (d["status"]["replicas"] == 4 && d["status"]["updatedReplicas"] == 1).then_some(d)
    });
    assert_eq!(d["status"]["availableReplicas"], 0);
    assert_eq!(d["status"]["unavailableReplicas"], 4);

    // Scaling up mid-rollout is proportional to the sizes the sets were
    // given for 3+1 (max-replicas 4): 7 allowed now, old 3·7/4 → 5, new
    // 1·7/4 → 2; with nothing available the rollout then stays put.
    merge(&e, &deployments("slow"), json!({"spec": {"replicas": 6}}));
    let sets = wait_for_sets(&e, "slow", &[("nginx:1", 5, 1), ("nginx:2", 2, 2)]);
    for rs in &sets {
        assert_eq!(
            rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"],
            "6"
        );
        assert_eq!(
            rs["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"],
            "7"
        );
    }

    // Scaling to zero empties both.
    merge(&e, &deployments("slow"), json!({"spec": {"replicas": 0}}));
    wait_for_sets(&e, "slow", &[("nginx:1", 0, 1), ("nginx:2", 0, 2)]);
}

#[test]
fn revision_history_limit_prunes_old_replica_sets() {
    let e = Enclave::start();
    let mut d = deployment("hist", 0, "nginx:1", recreate());
    d["spec"]["revisionHistoryLimit"] = json!(1);
    create_deployment(&e, &d);
    wait_for_sets(&e, "hist", &[("nginx:1", 0, 1)]);
    set_image(&e, "hist", "nginx:2");
    wait_for_sets(&e, "hist", &[("nginx:1", 0, 1), ("nginx:2", 0, 2)]);
    set_image(&e, "hist", "nginx:3");
    // Revision 1 goes; one old set (revision 2) is kept.
    wait_for_sets(&e, "hist", &[("nginx:2", 0, 2), ("nginx:3", 0, 3)]);
    set_image(&e, "hist", "nginx:4");
    wait_for_sets(&e, "hist", &[("nginx:3", 0, 3), ("nginx:4", 0, 4)]);
}

#[test]
fn replica_sets_adopt_release_and_replace_pods() {
    let e = Enclave::start();
    let rs = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "solo", "namespace": NS},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "solo"}},
            "template": {"metadata": {"labels": {"app": "solo"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
        },
    });
    let rs = send(
        &e,
        "POST",
        &format!("/apis/apps/v1/namespaces/{NS}/replicasets"),
        "application/json",
        &rs,
    );
    let rs_uid = rs["metadata"]["uid"].as_str().unwrap().to_string();
    let owned = |e: &Enclave| -> Vec<Value> {
        items(e, &format!("/api/v1/namespaces/{NS}/pods"))
            .into_iter()
            .filter(|p| p["metadata"]["ownerReferences"][0]["uid"] == rs_uid.as_str())
            .collect()
    };
    eventually("two pods", || (owned(&e).len() == 2).then_some(()));
    let st = eventually("replica set status", || {
        let r = get(
            &e,
            &format!("/apis/apps/v1/namespaces/{NS}/replicasets/solo"),
        )?;
        (r["status"]["replicas"] == 2).then_some(r)
    });
    assert_eq!(st["status"]["fullyLabeledReplicas"], 2);
    assert_eq!(st["status"]["observedGeneration"], 1);

    // An orphan with matching labels is adopted, and the surplus goes.
    let orphan = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "stray", "namespace": NS, "labels": {"app": "solo"}},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
    send(
        &e,
        "POST",
        &format!("/api/v1/namespaces/{NS}/pods"),
        "application/json",
        &orphan,
    );
    eventually("adoption and scale-down to two", || {
        let ps = owned(&e);
        let stray = get(&e, &format!("/api/v1/namespaces/{NS}/pods/stray"));
        let stray_ok =
            stray.is_none_or(|s| s["metadata"]["ownerReferences"][0]["uid"] == rs_uid.as_str());
        (ps.len() == 2 && stray_ok).then_some(())
    });

    // A pod relabelled out of the selector is released and replaced.
    let first = name(&owned(&e)[0]);
    merge(
        &e,
        &format!("/api/v1/namespaces/{NS}/pods/{first}"),
        json!({"metadata": {"labels": {"app": "elsewhere"}}}),
    );
    eventually("release and replacement", || {
        let released = get(&e, &format!("/api/v1/namespaces/{NS}/pods/{first}"))?;
        let refs = released["metadata"]["ownerReferences"]
            .as_array()
            .map_or(0, Vec::len);
        let ps = owned(&e);
        (refs == 0 && ps.len() == 2 && ps.iter().all(|p| name(p) != first)).then_some(())
    });

    // Orphan deletion leaves the pods without an owner.
    send(
        &e,
        "DELETE",
        &format!("/apis/apps/v1/namespaces/{NS}/replicasets/solo"),
        "application/json",
        &json!({"propagationPolicy": "Orphan"}),
    );
    eventually("orphaned pods", || {
        let gone = get(
            &e,
            &format!("/apis/apps/v1/namespaces/{NS}/replicasets/solo"),
        )
        .is_none();
        let ps: Vec<Value> = items(&e, &format!("/api/v1/namespaces/{NS}/pods"))
            .into_iter()
            .filter(|p| p["metadata"]["labels"]["app"] == "solo")
            .collect();
        let free = ps.iter().all(|p| {
            p["metadata"]["ownerReferences"]
                .as_array()
                .is_none_or(Vec::is_empty)
        });
        (gone && ps.len() == 2 && free).then_some(())
    });
}

#[test]
fn foreground_deletion_waits_for_dependents() {
    let e = Enclave::start();
    create_deployment(&e, &deployment("fg", 2, "nginx:1", recreate()));
    wait_for_sets(&e, "fg", &[("nginx:1", 2, 1)]);
    let out = send(
        &e,
        "DELETE",
        &deployments("fg"),
        "application/json",
        &json!({"propagationPolicy": "Foreground"}),
    );
    assert_eq!(
        out["kind"], "Deployment",
        "a foreground delete returns the object: {out}"
    );
    assert!(
        out["metadata"]["finalizers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "foregroundDeletion")
    );
    eventually("the deployment, its replica set and pods to go", || {
        (get(&e, &deployments("fg")).is_none()
            && replicasets(&e, "fg").is_empty()
            && pods(&e, "fg").is_empty())
        .then_some(())
    });
}

#[test]
fn controllers_resume_after_a_restart() {
    let e = Enclave::start();
    create_deployment(&e, &deployment("keep", 2, "nginx:1", recreate()));
    let before = wait_for_sets(&e, "keep", &[("nginx:1", 2, 1)]);
    let pods_before: Vec<String> = pods(&e, "keep").iter().map(name).collect();
    let dir = e.stop();
    let e = Enclave::start_in(dir);
    // Same replica set, same pods: nothing duplicated after relisting.
    let after = wait_for_sets(&e, "keep", &[("nginx:1", 2, 1)]);
    assert_eq!(before[0]["metadata"]["uid"], after[0]["metadata"]["uid"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(replicasets(&e, "keep").len(), 1);
    let mut pods_after: Vec<String> = pods(&e, "keep").iter().map(name).collect();
    let mut sorted_before = pods_before.clone();
    sorted_before.sort();
    pods_after.sort();
    assert_eq!(sorted_before, pods_after);
    // And they still work.
    set_image(&e, "keep", "nginx:2");
    wait_for_sets(&e, "keep", &[("nginx:1", 0, 1), ("nginx:2", 2, 2)]);
}

/// core/v1 events about `kind` `name` in the test namespace, by reason.
fn events_about(e: &Enclave, kind: &str, name: &str, reason: &str) -> Vec<Value> {
    items(
        e,
        &format!(
            "/api/v1/namespaces/{NS}/events?fieldSelector=involvedObject.kind%3D{kind},involvedObject.name%3D{name},reason%3D{reason}"
        ),
    )
}

/// The messages of `events`, sorted.
fn messages(events: &[Value]) -> Vec<String> {
    let mut m: Vec<String> = events
        .iter()
        .map(|ev| ev["message"].as_str().unwrap_or("").to_string())
        .collect();
    m.sort();
    m
}

#[test]
fn controllers_record_events_as_kube_controller_manager() {
    let e = Enclave::start();
    let d = create_deployment(&e, &deployment("ev", 2, "nginx:1", recreate()));
    let sets = wait_for_sets(&e, "ev", &[("nginx:1", 2, 1)]);
    let rs = name(&sets[0]);

    let scaled = eventually("the deployment's ScalingReplicaSet event", || {
        let evs = events_about(&e, "Deployment", "ev", "ScalingReplicaSet");
        (!evs.is_empty()).then_some(evs)
    });
    assert_eq!(
        messages(&scaled),
        [format!("Scaled up replica set {rs} from 0 to 2")]
    );
    let ev = &scaled[0];
    assert_eq!(ev["type"], "Normal");
    assert_eq!(ev["count"], 1);
    assert_eq!(ev["source"]["component"], "deployment-controller");
    assert_eq!(ev["reportingComponent"], "deployment-controller");
    assert_eq!(ev["involvedObject"]["uid"], d["metadata"]["uid"]);
    assert_eq!(ev["involvedObject"]["apiVersion"], "apps/v1");
    assert!(
        name(ev).starts_with("ev."),
        "named after the object: {}",
        name(ev)
    );

    let mut created: Vec<String> = pods(&e, "ev")
        .iter()
        .map(|p| format!("Created pod: {}", name(p)))
        .collect();
    created.sort();
    let creates = eventually("the replica set's SuccessfulCreate events", || {
        let evs = events_about(&e, "ReplicaSet", &rs, "SuccessfulCreate");
        (evs.len() == 2).then_some(evs)
    });
    assert_eq!(messages(&creates), created);
    assert!(
        creates
            .iter()
            .all(|ev| ev["source"]["component"] == "replicaset-controller"
                && ev["involvedObject"]["uid"] == sets[0]["metadata"]["uid"]),
        "{creates:?}"
    );

    merge(&e, &deployments("ev"), json!({"spec": {"replicas": 1}}));
    wait_for_sets(&e, "ev", &[("nginx:1", 1, 1)]);
    let left: Vec<String> = pods(&e, "ev").iter().map(name).collect();
    eventually("the scale-down events", || {
        let down = events_about(&e, "Deployment", "ev", "ScalingReplicaSet");
        let deleted = events_about(&e, "ReplicaSet", &rs, "SuccessfulDelete");
        (down.len() == 2 && deleted.len() == 1).then_some(())
    });
    assert_eq!(
        messages(&events_about(&e, "Deployment", "ev", "ScalingReplicaSet")),
        [
            format!("Scaled down replica set {rs} from 2 to 1"),
            format!("Scaled up replica set {rs} from 0 to 2"),
        ]
    );
    let deleted = events_about(&e, "ReplicaSet", &rs, "SuccessfulDelete");
    let gone = deleted[0]["message"]
        .as_str()
        .unwrap()
        .strip_prefix("Deleted pod: ")
        .unwrap()
        .to_string();
    assert!(
        created.contains(&format!("Created pod: {gone}")) && !left.contains(&gone),
        "deleted {gone}, left {left:?}"
    );
}

/// Twelve pods created for one ReplicaSet: nine `SuccessfulCreate` events
/// of their own, then one combined event counting the other three, as
/// client-go's event aggregation shows it.
#[test]
fn many_similar_events_are_combined() {
    let e = Enclave::start();
    let rs = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "many", "namespace": NS},
        "spec": {
            "replicas": 12,
            "selector": {"matchLabels": {"app": "many"}},
            "template": {"metadata": {"labels": {"app": "many"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
        },
    });
    send(
        &e,
        "POST",
        &format!("/apis/apps/v1/namespaces/{NS}/replicasets"),
        "application/json",
        &rs,
    );
    let created = eventually("twelve pods counted in events", || {
        let evs = events_about(&e, "ReplicaSet", "many", "SuccessfulCreate");
        let total: i64 = evs.iter().map(|ev| ev["count"].as_i64().unwrap_or(0)).sum();
        (total == 12).then_some(evs)
    });
    assert_eq!(created.len(), 10, "{created:?}");
    let (combined, single): (Vec<&Value>, Vec<&Value>) = created.iter().partition(|ev| {
        ev["message"]
            .as_str()
            .unwrap()
            .starts_with("(combined from similar events): Created pod: many-")
    });
    assert_eq!(combined.len(), 1, "{created:?}");
    assert_eq!(combined[0]["count"], 3);
    assert_eq!(single.len(), 9);
    assert!(single.iter().all(|ev| {
        ev["count"] == 1
            && ev["message"]
                .as_str()
                .unwrap()
                .starts_with("Created pod: many-")
    }));
}

fn core_event(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": NS},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": NS, "apiVersion": "v1"},
        "reason": "Testing", "message": "an event", "type": "Normal", "count": 1,
        "source": {"component": "test"},
    })
}

/// kube-apiserver keeps events under an etcd lease of `--event-ttl`, renewed by every write: an event goes a TTL
/// after its last write, in both event APIs, and events stored before a restart go by the write time they record.
#[test]
fn events_expire_an_event_ttl_after_their_last_write() {
    let core = |name: &str| format!("/api/v1/namespaces/{NS}/events/{name}");
    let e = Enclave::start();
    send(
        &e,
        "POST",
        &core(""),
        "application/json",
        &core_event("from-before"),
    );
    let dir = e.stop();

    let e = Enclave::start_in_with(dir, &["--event-ttl", "4s"]);
    send(
        &e,
        "POST",
        &core(""),
        "application/json",
        &core_event("once"),
    );
    send(
        &e,
        "POST",
        &core(""),
        "application/json",
        &core_event("renewed"),
    );
    let new_api = format!("/apis/events.k8s.io/v1/namespaces/{NS}/events");
    send(
        &e,
        "POST",
        &new_api,
        "application/json",
        &json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "new-api", "namespace": NS},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingController": "example.com/test", "reportingInstance": "test-1",
            "action": "Testing", "reason": "Testing", "type": "Normal",
            "regarding": {"kind": "Pod", "name": "p", "namespace": NS, "apiVersion": "v1"},
        }),
    );
    // Written every half second for three TTLs: every write finds it still there.
    for count in 2..26 {
        std::thread::sleep(Duration::from_millis(500));
        send(
            &e,
            "PATCH",
            &core("renewed"),
            "application/merge-patch+json",
            &json!({"count": count}),
        );
    }
    for gone in [
        core("from-before"),
        core("once"),
        format!("{new_api}/new-api"),
    ] {
        eventually(&format!("{gone} to expire"), || {
            get(&e, &gone).is_none().then_some(())
        });
    }
    eventually("the renewed event to expire after its last write", || {
        get(&e, &core("renewed")).is_none().then_some(())
    });
}
