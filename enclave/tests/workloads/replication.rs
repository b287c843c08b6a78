//! ReplicationControllers, kept by the ReplicaSet controller's code as upstream's
//! replication manager keeps them, and `kubectl scale rc` through their `/scale`.

use serde_json::{Value, json};

use crate::common::{Enclave, Kubectl, eventually, kubectl_versions};
use crate::support::{NS, get, merge, ns_path, pods_with, post, run_pod};

fn rc_path(rc: &str) -> String {
    format!("{}/{rc}", ns_path("v1", "replicationcontrollers"))
}

fn live_pods(e: &Enclave) -> Vec<Value> {
    pods_with(e, "app%3Dlegacy")
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

#[test]
fn a_replication_controller_keeps_its_pods_and_scales() {
    let e = Enclave::start();
    let rc = json!({"apiVersion": "v1", "kind": "ReplicationController",
        "metadata": {"name": "legacy", "namespace": NS},
        "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "legacy"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}});
    let created = post(&e, &ns_path("v1", "replicationcontrollers"), &rc);
    // upstream's defaults: the selector and the object's labels from the template's labels.
    assert_eq!(created["spec"]["selector"], json!({"app": "legacy"}));
    assert_eq!(created["metadata"]["labels"], json!({"app": "legacy"}));
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    let pods = eventually("two pods for the controller", || {
        let pods = live_pods(&e);
        (pods.len() == 2).then_some(pods)
    });
    for p in &pods {
        let owner = &p["metadata"]["ownerReferences"][0];
        assert_eq!(
            (
                owner["apiVersion"].as_str(),
                owner["kind"].as_str(),
                owner["uid"].as_str()
            ),
            (
                Some("v1"),
                Some("ReplicationController"),
                Some(uid.as_str())
            )
        );
        run_pod(&e, p, true);
    }
    eventually("readyReplicas 2", || {
        let rc = get(&e, &rc_path("legacy"))?;
        (rc["status"]["readyReplicas"] == 2 && rc["status"]["replicas"] == 2).then_some(())
    });

    // `kubectl scale rc` (the `/scale` subresource) with the oldest and newest kubectl.
    let versions = kubectl_versions();
    for ((v, bin), replicas) in [
        (versions.first().unwrap(), 3),
        (versions.last().unwrap(), 1),
    ] {
        let k = Kubectl::new(v, bin, &e);
        let out = k.ok(&[
            "-n",
            NS,
            "scale",
            "rc",
            "legacy",
            &format!("--replicas={replicas}"),
        ]);
        assert!(
            out.contains("replicationcontroller/legacy scaled"),
            "{v}: {out}"
        );
        eventually("the pods follow the scale", || {
            (live_pods(&e).len() == replicas).then_some(())
        });
    }
    let (v, bin) = versions.last().unwrap();
    let k = Kubectl::new(v, bin, &e);
    let row = k.ok(&["-n", NS, "get", "rc", "legacy", "--no-headers"]);
    assert!(row.starts_with("legacy "), "{row}");
    let scale = get(&e, &format!("{}/scale", rc_path("legacy"))).unwrap();
    assert_eq!(scale["status"]["selector"], "app=legacy");

    // A template whose labels the selector does not match is refused.
    let mut bad = rc;
    bad["metadata"]["name"] = json!("bad");
    bad["spec"]["selector"] = json!({"app": "other"});
    let (code, refused) = crate::support::request(
        &e,
        "POST",
        &ns_path("v1", "replicationcontrollers"),
        "application/json",
        &bad,
    );
    assert_eq!(code, 422, "{refused}");
    assert_eq!(
        refused["details"]["causes"][0]["field"],
        "spec.template.metadata.labels"
    );
    merge(&e, &rc_path("legacy"), json!({"spec": {"replicas": 0}}));
    eventually("no pods", || live_pods(&e).is_empty().then_some(()));
}
