//! The StatefulSet controller, and `kubectl rollout` for StatefulSets.

use serde_json::{Value, json};

use crate::common::{Enclave, Kubectl, eventually, kubectl_versions};
use crate::support::{
    Kubelet, NS, delete, event_messages, get, items, merge, name, ns_path, pod_path, pods_with,
    post, request, run_pod,
};

/// A claim template of 1Gi, ReadWriteOnce.
fn claim_template(name: &str) -> Value {
    json!({"metadata": {"name": name, "labels": {"tier": "disk"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
}

fn claim_path(claim: &str) -> String {
    format!("{}/{claim}", ns_path("v1", "persistentvolumeclaims"))
}

/// The uids owning claim `claim`, or `None` while it does not exist.
fn claim_owners(e: &Enclave, claim: &str) -> Option<Vec<String>> {
    let c = get(e, &claim_path(claim))?;
    Some(
        c["metadata"]["ownerReferences"]
            .as_array()
            .map(|refs| {
                refs.iter()
                    .map(|r| {
                        format!(
                            "{}/{}",
                            r["kind"].as_str().unwrap_or(""),
                            r["name"].as_str().unwrap_or("")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    )
}

pub fn statefulset(sts: &str, replicas: i64, image: &str, spec: Value) -> Value {
    let mut s = json!({"replicas": replicas, "serviceName": format!("{sts}-svc"),
        "selector": {"matchLabels": {"sts": sts}},
        "template": {"metadata": {"labels": {"sts": sts}},
            "spec": {"containers": [{"name": "c", "image": image}]}}});
    if let (Some(s), Some(extra)) = (s.as_object_mut(), spec.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": sts, "namespace": NS}, "spec": s})
}

pub fn sts_path(sts: &str) -> String {
    format!("{}/{sts}", ns_path("apps/v1", "statefulsets"))
}

/// The live pods of `sts` as (name, image), by name.
pub fn live(e: &Enclave, sts: &str) -> Vec<(String, String)> {
    pods_with(e, &format!("sts%3D{sts}"))
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            (
                name(&p),
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect()
}

fn names(e: &Enclave, sts: &str) -> Vec<String> {
    live(e, sts).into_iter().map(|(n, _)| n).collect()
}

fn pod(e: &Enclave, pod_name: &str) -> Value {
    get(e, &pod_path(pod_name)).unwrap()
}

fn set_image(e: &Enclave, sts: &str, image: &str) {
    merge(
        e,
        &sts_path(sts),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}}),
    );
}

#[test]
fn ordered_ready_creates_and_removes_one_ordinal_at_a_time() {
    let e = Enclave::start();
    post(
        &e,
        &ns_path("apps/v1", "statefulsets"),
        &statefulset(
            "db",
            3,
            "db:1",
            json!({"volumeClaimTemplates": [claim_template("data")]}),
        ),
    );
    eventually("db-0 alone", || (names(&e, "db") == ["db-0"]).then_some(()));
    let p0 = pod(&e, "db-0");
    assert_eq!(p0["spec"]["hostname"], "db-0");
    assert_eq!(p0["spec"]["subdomain"], "db-svc");
    assert_eq!(
        p0["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
        "db-0"
    );
    assert_eq!(
        p0["metadata"]["labels"]["apps.kubernetes.io/pod-index"],
        "0"
    );
    assert_eq!(
        p0["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "data-db-0"
    );
    let set = eventually("the revisions in the status", || {
        get(&e, &sts_path("db")).filter(|s| s["status"]["updateRevision"].is_string())
    });
    let revision = set["status"]["updateRevision"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(set["status"]["currentRevision"], revision.as_str());
    assert_eq!(
        p0["metadata"]["labels"]["controller-revision-hash"],
        revision.as_str()
    );
    // The claim first, then the pod, as upstream's events say.
    eventually("the claim's and the pod's events", || {
        (event_messages(&e, "StatefulSet", "db", "SuccessfulCreate")
            == [
                "create Claim data-db-0 Pod db-0 in StatefulSet db success",
                "create Pod db-0 in StatefulSet db successful",
            ])
        .then_some(())
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(names(&e, "db"), ["db-0"], "db-1 waits for db-0 to be ready");
    run_pod(&e, &p0, true);
    eventually("db-1", || {
        (names(&e, "db") == ["db-0", "db-1"]).then_some(())
    });
    run_pod(&e, &pod(&e, "db-1"), true);
    eventually("db-2", || (names(&e, "db").len() == 3).then_some(()));
    run_pod(&e, &pod(&e, "db-2"), true);
    let set = eventually("three ready", || {
        get(&e, &sts_path("db")).filter(|s| s["status"]["readyReplicas"] == 3)
    });
    assert_eq!(set["status"]["replicas"], 3);
    assert_eq!(set["status"]["availableReplicas"], 3);
    assert_eq!(set["status"]["currentReplicas"], 3);
    assert_eq!(set["status"]["updatedReplicas"], 3);
    assert_eq!(set["status"]["observedGeneration"], 1);

    // A failed pod is replaced under the same name.
    crate::support::finish_pod(&e, &pod(&e, "db-1"), 1, 0, json!([]));
    eventually("db-1 replaced", || {
        get(&e, &pod_path("db-1")).filter(|p| p["status"]["phase"] == "Pending")
    });
    run_pod(&e, &pod(&e, "db-1"), true);

    // Scale down: the highest ordinal goes first.
    merge(&e, &sts_path("db"), json!({"spec": {"replicas": 1}}));
    eventually("db-0 left", || (names(&e, "db") == ["db-0"]).then_some(()));
}

#[test]
fn parallel_management_start_ordinals_partitions_and_on_delete() {
    let e = Enclave::start();
    post(
        &e,
        &ns_path("apps/v1", "statefulsets"),
        &statefulset(
            "par",
            3,
            "par:1",
            json!({"podManagementPolicy": "Parallel", "ordinals": {"start": 5},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}),
        ),
    );
    // Parallel: all at once, ready or not.
    eventually("par-5..7", || {
        (names(&e, "par") == ["par-5", "par-6", "par-7"]).then_some(())
    });
    for n in names(&e, "par") {
        run_pod(&e, &pod(&e, &n), true);
    }
    // Partition 2: only ordinals from start + 2 are updated.
    set_image(&e, "par", "par:2");
    eventually("par-7 updated", || {
        (live(&e, "par")
            .iter()
            .any(|(n, i)| n == "par-7" && i == "par:2"))
        .then_some(())
    });
    run_pod(&e, &pod(&e, "par-7"), true);
    let set = eventually("one updated replica", || {
        get(&e, &sts_path("par"))
            .filter(|s| s["status"]["updatedReplicas"] == 1 && s["status"]["readyReplicas"] == 3)
    });
    assert_ne!(
        set["status"]["currentRevision"],
        set["status"]["updateRevision"]
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(
        live(&e, "par").iter().filter(|(_, i)| i == "par:1").count() == 2,
        "below the partition stays"
    );
    // Partition 0: the rest, highest first, each after the previous is ready.
    let _kubelet = Kubelet::start(&e, "sts%3Dpar");
    merge(
        &e,
        &sts_path("par"),
        json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}}),
    );
    let set = eventually("the rollout to complete", || {
        get(&e, &sts_path("par")).filter(|s| {
            s["status"]["updatedReplicas"] == 3
                && s["status"]["currentRevision"] == s["status"]["updateRevision"]
        })
    });
    assert_eq!(set["status"]["currentReplicas"], 3);
    assert!(live(&e, "par").iter().all(|(_, i)| i == "par:2"));
    drop(_kubelet);

    // OnDelete: a new template waits for the pods to be deleted.
    post(
        &e,
        &ns_path("apps/v1", "statefulsets"),
        &statefulset(
            "od",
            2,
            "od:1",
            json!({"podManagementPolicy": "Parallel", "updateStrategy": {"type": "OnDelete"}}),
        ),
    );
    eventually("od pods", || (names(&e, "od").len() == 2).then_some(()));
    set_image(&e, "od", "od:2");
    eventually("the new revision observed", || {
        get(&e, &sts_path("od")).filter(|s| s["status"]["observedGeneration"] == 2)
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(live(&e, "od").iter().all(|(_, i)| i == "od:1"));
    delete(&e, &pod_path("od-1"), json!({}));
    eventually("od-1 at the new template", || {
        (live(&e, "od")
            == [
                ("od-0".into(), "od:1".into()),
                ("od-1".into(), "od:2".into()),
            ])
        .then_some(())
    });
}

#[test]
fn kubectl_rollout_status_history_and_undo_for_statefulsets() {
    let e = Enclave::start();
    let _kubelet = Kubelet::start(&e, "app%3Drollout");
    let versions = kubectl_versions();
    let picked: Vec<&(String, std::path::PathBuf)> = versions
        .iter()
        .filter(|(v, _)| v == "1.27" || v == "1.33")
        .collect();
    assert_eq!(picked.len(), 2, "kubectl 1.27 and 1.33: {versions:?}");
    for (version, bin) in picked {
        let k = Kubectl::new(version, bin, &e);
        let sts = format!("roll-{}", version.replace('.', "-"));
        let mut manifest = statefulset(&sts, 2, "web:1", json!({}));
        manifest["spec"]["template"]["metadata"]["labels"]["app"] = json!("rollout");
        post(&e, &ns_path("apps/v1", "statefulsets"), &manifest);
        let target = format!("statefulset/{sts}");
        let out = k.ok(&["rollout", "status", &target, "-n", NS, "--timeout=60s"]);
        assert!(
            out.contains("partitioned roll out complete: 2 new pods have been updated"),
            "{version}: {out}"
        );
        k.ok(&["set", "image", &target, "c=web:2", "-n", NS]);
        let out = k.ok(&["rollout", "status", &target, "-n", NS, "--timeout=60s"]);
        assert!(
            out.contains("partitioned roll out complete"),
            "{version}: {out}"
        );
        eventually("both pods at web:2", || {
            let l = live(&e, &sts);
            (l.len() == 2 && l.iter().all(|(_, i)| i == "web:2")).then_some(())
        });
        let history = k.ok(&["rollout", "history", &target, "-n", NS]);
        let revisions: Vec<&str> = history
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
            .collect();
        assert_eq!(revisions, ["1", "2"], "{version}: {history}");
        let detail = k.ok(&["rollout", "history", &target, "-n", NS, "--revision=1"]);
        assert!(detail.contains("web:1"), "{version}: {detail}");
        let out = k.ok(&["rollout", "undo", &target, "-n", NS]);
        assert!(out.contains("rolled back"), "{version}: {out}");
        k.ok(&["rollout", "status", &target, "-n", NS, "--timeout=60s"]);
        eventually("both pods back at web:1", || {
            let l = live(&e, &sts);
            (l.len() == 2 && l.iter().all(|(_, i)| i == "web:1")).then_some(())
        });
        let set = eventually("the rollback's revision", || {
            get(&e, &sts_path(&sts))
                .filter(|s| s["status"]["currentRevision"] == s["status"]["updateRevision"])
        });
        let rev = set["status"]["updateRevision"].as_str().unwrap();
        let cr = get(
            &e,
            &format!("{}/{rev}", ns_path("apps/v1", "controllerrevisions")),
        )
        .unwrap();
        assert_eq!(
            cr["revision"], 3,
            "{version}: the old revision is renumbered"
        );
    }
}

#[test]
fn claims_come_from_the_templates_and_go_as_the_retention_policy_says() {
    let e = Enclave::start();
    // A template that is not a valid claim is refused with the StatefulSet.
    let (code, body) = request(
        &e,
        "POST",
        &ns_path("apps/v1", "statefulsets"),
        "application/json",
        &statefulset(
            "bad",
            1,
            "db:1",
            json!({"volumeClaimTemplates": [{"metadata": {"name": "data"}}]}),
        ),
    );
    assert_eq!(code, 422, "{body}");
    assert!(
        body.to_string().contains("spec.volumeClaimTemplates[0].spec.accessModes: Required value: at least 1 access mode is required"),
        "{body}"
    );

    // Parallel, so all pods come at once; scaled-away claims go with their pods, the rest
    // with the set.
    post(
        &e,
        &ns_path("apps/v1", "statefulsets"),
        &statefulset(
            "pg",
            3,
            "db:1",
            json!({"podManagementPolicy": "Parallel",
                "volumeClaimTemplates": [claim_template("data")],
                "persistentVolumeClaimRetentionPolicy": {"whenScaled": "Delete", "whenDeleted": "Delete"}}),
        ),
    );
    eventually("three pods", || (names(&e, "pg").len() == 3).then_some(()));
    for i in 0..3 {
        let claim = get(&e, &claim_path(&format!("data-pg-{i}"))).unwrap();
        assert_eq!(claim["metadata"]["labels"]["tier"], "disk");
        assert_eq!(
            claim["metadata"]["labels"]["sts"], "pg",
            "the selector's labels"
        );
        assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "1Gi");
        let owners = eventually("the set owns the claim", || {
            claim_owners(&e, &format!("data-pg-{i}")).filter(|o| !o.is_empty())
        });
        assert_eq!(owners, ["StatefulSet/pg"]);
    }
    for i in 0..3 {
        run_pod(&e, &pod(&e, &format!("pg-{i}")), true);
    }
    // Scale to 1: pg-1 and pg-2 go, and their claims with them.
    merge(&e, &sts_path("pg"), json!({"spec": {"replicas": 1}}));
    eventually("the scaled-away claims to go", || {
        let left: Vec<String> = items(&e, &ns_path("v1", "persistentvolumeclaims"))
            .iter()
            .map(name)
            .collect();
        (left == ["data-pg-0"]).then_some(())
    });
    // Deleting the set takes the last claim.
    delete(&e, &sts_path("pg"), json!({}));
    eventually("the last claim to go", || {
        items(&e, &ns_path("v1", "persistentvolumeclaims"))
            .is_empty()
            .then_some(())
    });

    // Retain (the default): claims outlive their pods and the set, and a new set with the
    // same name finds them.
    let keep = statefulset(
        "keep",
        1,
        "db:1",
        json!({"volumeClaimTemplates": [claim_template("data")]}),
    );
    post(&e, &ns_path("apps/v1", "statefulsets"), &keep);
    eventually("keep-0", || (names(&e, "keep") == ["keep-0"]).then_some(()));
    assert_eq!(
        claim_owners(&e, "data-keep-0"),
        Some(Vec::new()),
        "nobody owns it"
    );
    delete(&e, &sts_path("keep"), json!({}));
    eventually("the set gone", || {
        get(&e, &sts_path("keep")).is_none().then_some(())
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(
        get(&e, &claim_path("data-keep-0")).is_some(),
        "the claim is kept"
    );
    post(&e, &ns_path("apps/v1", "statefulsets"), &keep);
    eventually("keep-0 again", || {
        pods_with(&e, "sts%3Dkeep")
            .iter()
            .any(|p| p["metadata"]["deletionTimestamp"].is_null())
            .then_some(())
    });
    assert_eq!(
        items(&e, &ns_path("v1", "persistentvolumeclaims")).len(),
        1,
        "the same claim, not a second one"
    );
}
