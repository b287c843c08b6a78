//! Faults: the enclave killed (SIGKILL) in the middle of a job and of
//! rollouts resumes from the stored state without duplicate pods; writes
//! of others racing the controllers' writes are retried on fresh state
//! and lose nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use crate::common::{Enclave, eventually};
use crate::daemonset::{by_node, daemonset, ds_path};
use crate::job::{create_job, job, wait_job};
use crate::statefulset::{live, statefulset, sts_path};
use crate::support::{
    Kubelet, create_node, finish_pod, get, merge, name, ns_path, pods_of, post, request,
};

#[test]
fn a_restart_in_the_middle_of_a_job_neither_duplicates_nor_recounts_pods() {
    let e = Enclave::start();
    let uid = create_job(
        &e,
        &job("resumed", json!({"completions": 4, "parallelism": 2})),
    );
    let pods = eventually("two pods", || {
        let p = pods_of(&e, &uid);
        (p.len() == 2).then_some(p)
    });
    // One finishes and the enclave dies right away: whether its count and
    // finalizer made it or not, it must be counted once.
    finish_pod(&e, &pods[0], 0, 0, json!([]));
    let dir = e.stop();
    let e = Enclave::start_in(dir);
    let done = eventually("the job to complete after the restart", || {
        for p in pods_of(&e, &uid) {
            if p["status"]["phase"] == "Pending" && p["metadata"]["deletionTimestamp"].is_null() {
                finish_pod(&e, &p, 0, 0, json!([]));
            }
        }
        get(&e, &format!("{}/resumed", ns_path("batch/v1", "jobs"))).filter(|j| {
            j["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Complete" && c["status"] == "True")
            })
        })
    });
    assert_eq!(done["status"]["succeeded"], 4);
    assert_eq!(pods_of(&e, &uid).len(), 4, "four pods for four completions");
}

#[test]
fn a_restart_in_the_middle_of_rollouts_resumes_them_without_duplicates() {
    let e = Enclave::start();
    for n in ["n1", "n2", "n3"] {
        create_node(&e, n, json!({}), json!([]));
    }
    // The kubelet stand-in runs the pods labelled app=faults.
    let mut d = daemonset("d", "d:1", json!({}));
    d["spec"]["template"]["metadata"]["labels"]["app"] = json!("faults");
    post(&e, &ns_path("apps/v1", "daemonsets"), &d);
    let mut s = statefulset("s", 3, "s:1", json!({}));
    s["spec"]["template"]["metadata"]["labels"]["app"] = json!("faults");
    post(&e, &ns_path("apps/v1", "statefulsets"), &s);
    {
        let _kubelet = Kubelet::start(&e, "app%3Dfaults");
        eventually("both rolled out", || {
            let d = get(&e, &ds_path("d"))?;
            let s = get(&e, &sts_path("s"))?;
            (d["status"]["numberAvailable"] == 3
                && d["status"]["updatedNumberScheduled"] == 3
                && s["status"]["readyReplicas"] == 3
                && s["status"]["currentRevision"] == s["status"]["updateRevision"])
                .then_some(())
        });
    }
    // A new template, no kubelet: each rollout gets one pod in and stalls.
    merge(
        &e,
        &ds_path("d"),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "d:2"}]}}}}),
    );
    merge(
        &e,
        &sts_path("s"),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "s:2"}]}}}}),
    );
    eventually("a pod of each at the new template", || {
        let d_new = by_node(&e, "d")
            .values()
            .flatten()
            .filter(|(_, i)| i == "d:2")
            .count();
        let s_new = live(&e, "s").iter().filter(|(_, i)| i == "s:2").count();
        (d_new == 1 && s_new == 1).then_some(())
    });
    let dir = e.stop();
    let e = Enclave::start_in(dir);
    std::thread::sleep(Duration::from_secs(2));
    let nodes = by_node(&e, "d");
    assert!(
        nodes.values().all(|p| p.len() == 1),
        "one pod per node after the restart: {nodes:?}"
    );
    assert_eq!(live(&e, "s").len(), 3);
    // And both finish once pods run again.
    let _kubelet = Kubelet::start(&e, "app%3Dfaults");
    eventually("both rollouts to finish after the restart", || {
        let d: BTreeMap<String, Vec<(String, String)>> = by_node(&e, "d");
        let s = live(&e, "s");
        (d.len() == 3
            && d.values().all(|p| p.len() == 1 && p[0].1 == "d:2")
            && s.len() == 3
            && s.iter().all(|(_, i)| i == "s:2"))
        .then_some(())
    });
    let revisions = crate::support::items(&e, &ns_path("apps/v1", "controllerrevisions"));
    let names: Vec<String> = revisions.iter().map(name).collect();
    assert_eq!(
        revisions.len(),
        4,
        "two templates each, none duplicated: {names:?}"
    );
}

#[test]
fn writes_racing_the_controllers_are_retried_and_lose_nothing() {
    let e = Enclave::start();
    let uid = create_job(
        &e,
        &job("raced", json!({"completions": 6, "parallelism": 3})),
    );
    // Another writer keeps changing the Job (its labels) while the
    // controller writes its status and the pods finish.
    let path = format!("{}/raced", ns_path("batch/v1", "jobs"));
    let mut writes = 0;
    let done = eventually("the job to complete under concurrent writes", || {
        for p in pods_of(&e, &uid) {
            if p["status"]["phase"] == "Pending" && p["metadata"]["deletionTimestamp"].is_null() {
                finish_pod(&e, &p, 0, 0, json!([]));
            }
        }
        for _ in 0..3 {
            writes += 1;
            let (code, out) = request(
                &e,
                "PATCH",
                &path,
                "application/merge-patch+json",
                &json!({"metadata": {"labels": {"writes": writes.to_string()}}}),
            );
            assert_eq!(code, 200, "{out}");
        }
        let j = get(&e, &path)?;
        j["status"]["conditions"]
            .as_array()
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Complete" && c["status"] == "True")
            })
            .then_some(j)
    });
    assert_eq!(done["status"]["succeeded"], 6);
    assert_eq!(
        done["metadata"]["labels"]["writes"],
        writes.to_string(),
        "the other writer's last write stays"
    );
    assert_eq!(pods_of(&e, &uid).len(), 6);
    let _ = wait_job(&e, "raced", "no uncounted pods", |j| {
        j["status"]["uncountedTerminatedPods"] == json!({})
    });
}
