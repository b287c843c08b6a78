//! The Job and TTL-after-finished controllers.

use serde_json::{Value, json};

use crate::common::{Enclave, eventually};
use crate::support::{
    NS, condition, delete, event_messages, finish_pod, get, merge, name, ns_path, pods_of, post,
    run_pod, wait_event,
};

const TRACKING: &str = "batch.kubernetes.io/job-tracking";
const INDEX: &str = "batch.kubernetes.io/job-completion-index";

pub fn job(job_name: &str, spec: Value) -> Value {
    let mut s = json!({"template": {"spec": {"restartPolicy": "Never",
        "containers": [{"name": "main", "image": "busybox"}]}}});
    if let (Some(s), Some(extra)) = (s.as_object_mut(), spec.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": job_name, "namespace": NS}, "spec": s})
}

fn job_path(job_name: &str) -> String {
    format!("{}/{job_name}", ns_path("batch/v1", "jobs"))
}

/// Creates the Job; returns its uid.
pub fn create_job(e: &Enclave, body: &Value) -> String {
    let j = post(e, &ns_path("batch/v1", "jobs"), body);
    j["metadata"]["uid"].as_str().unwrap().to_string()
}

/// Waits until the Job satisfies `pred`; returns it.
pub fn wait_job(e: &Enclave, job_name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    eventually(&format!("job {job_name}: {what}"), || {
        get(e, &job_path(job_name)).filter(|j| pred(j))
    })
}

fn has_finalizer(p: &Value) -> bool {
    p["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == TRACKING))
}

fn is_true(j: &Value, ty: &str) -> bool {
    condition(j, ty).is_some_and(|c| c["status"] == "True")
}

fn active_pods(e: &Enclave, uid: &str) -> Vec<Value> {
    pods_of(e, uid)
        .into_iter()
        .filter(|p| p["status"]["phase"] == "Pending" || p["status"]["phase"] == "Running")
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

fn wait_pods(e: &Enclave, uid: &str, n: usize) -> Vec<Value> {
    eventually(&format!("{n} pods of {uid}"), || {
        let p = pods_of(e, uid);
        (p.len() == n).then_some(p)
    })
}

#[test]
fn a_job_runs_to_completion_counting_each_pod_once() {
    let e = Enclave::start();
    let uid = create_job(
        &e,
        &job("work", json!({"completions": 3, "parallelism": 2})),
    );
    let pods = wait_pods(&e, &uid, 2);
    for p in &pods {
        assert!(has_finalizer(p), "{p}");
        assert!(name(p).starts_with("work-"), "{}", name(p));
        assert_eq!(
            p["metadata"]["labels"]["batch.kubernetes.io/job-name"],
            "work"
        );
        let owner = &p["metadata"]["ownerReferences"][0];
        assert_eq!(
            (
                owner["kind"].as_str(),
                owner["blockOwnerDeletion"].as_bool()
            ),
            (Some("Job"), Some(true))
        );
    }
    let j = wait_job(&e, "work", "two active", |j| j["status"]["active"] == 2);
    assert_eq!(j["status"]["ready"], 0);
    assert_eq!(j["status"]["terminating"], 0);
    assert_eq!(j["status"]["uncountedTerminatedPods"], json!({}));
    assert!(j["status"]["startTime"].is_string());

    run_pod(&e, &pods[0], true);
    wait_job(&e, "work", "one ready", |j| j["status"]["ready"] == 1);
    finish_pod(&e, &pods[0], 0, 0, json!([]));
    wait_job(&e, "work", "one succeeded", |j| {
        j["status"]["succeeded"] == 1
    });
    eventually(
        "the succeeded pod's finalizer to go and a third pod",
        || {
            let all = pods_of(&e, &uid);
            let first = all.iter().find(|p| name(p) == name(&pods[0]))?;
            (!has_finalizer(first) && all.len() == 3).then_some(())
        },
    );
    // The kubelet finishes the rest.
    let done = eventually("the job to complete", || {
        for p in active_pods(&e, &uid) {
            finish_pod(&e, &p, 0, 0, json!([]));
        }
        get(&e, &job_path("work")).filter(|j| is_true(j, "Complete"))
    });
    assert_eq!(done["status"]["succeeded"], 3);
    assert!(
        done["status"]["failed"].is_null() && done["status"]["active"].is_null(),
        "{done}"
    );
    assert!(done["status"]["completionTime"].is_string());
    let met = condition(&done, "SuccessCriteriaMet").unwrap();
    let complete = condition(&done, "Complete").unwrap();
    for c in [&met, &complete] {
        assert_eq!(c["reason"], "CompletionsReached");
        assert_eq!(c["message"], "Reached expected number of succeeded pods");
    }
    let all = pods_of(&e, &uid);
    assert_eq!(all.len(), 3, "exactly three pods ran");
    assert!(all.iter().all(|p| !has_finalizer(p)));
    assert_eq!(
        wait_event(&e, "Job", "work", "Completed"),
        ["Job completed"]
    );
    assert_eq!(
        event_messages(&e, "Job", "work", "SuccessfulCreate").len(),
        3
    );
}

#[test]
fn failed_pods_are_replaced_after_a_backoff_until_the_backoff_limit() {
    let e = Enclave::start();
    let uid = create_job(&e, &job("flaky", json!({"backoffLimit": 1})));
    let first = wait_pods(&e, &uid, 1).remove(0);
    // It failed eight seconds ago: the replacement waits for the 10 s backoff.
    finish_pod(&e, &first, 1, 8, json!([]));
    let failed_at = jiff::Timestamp::now().as_second() - 8;
    let second = eventually("a replacement pod", || {
        pods_of(&e, &uid)
            .into_iter()
            .find(|p| name(p) != name(&first))
    });
    let created: jiff::Timestamp = second["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        created.as_second() >= failed_at + 9,
        "created {created}, 10 s after a failure at {failed_at} (second precision)"
    );
    wait_job(&e, "flaky", "one failed", |j| j["status"]["failed"] == 1);
    finish_pod(&e, &second, 1, 0, json!([]));
    let j = wait_job(&e, "flaky", "failed", |j| is_true(j, "Failed"));
    for ty in ["FailureTarget", "Failed"] {
        let c = condition(&j, ty).unwrap();
        assert_eq!(c["reason"], "BackoffLimitExceeded", "{ty}");
        assert_eq!(c["message"], "Job has reached the specified backoff limit");
    }
    assert_eq!(j["status"]["failed"], 2);
    assert_eq!(pods_of(&e, &uid).len(), 2);
    assert_eq!(
        wait_event(&e, "Job", "flaky", "BackoffLimitExceeded"),
        ["Job has reached the specified backoff limit"]
    );
}

#[test]
fn the_pod_failure_policy_ignores_counts_and_fails_the_job() {
    let e = Enclave::start();
    let policy = json!({"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
    ]});
    let uid = create_job(
        &e,
        &job(
            "policy",
            json!({"backoffLimit": 0, "podFailurePolicy": policy}),
        ),
    );
    let j = get(&e, &job_path("policy")).unwrap();
    assert_eq!(j["spec"]["podReplacementPolicy"], "Failed");
    let first = wait_pods(&e, &uid, 1).remove(0);
    // A disruption: ignored, not counted against backoffLimit 0.
    finish_pod(
        &e,
        &first,
        137,
        60,
        json!([{"type": "DisruptionTarget", "status": "True"}]),
    );
    let second = eventually("a replacement", || {
        pods_of(&e, &uid)
            .into_iter()
            .find(|p| name(p) != name(&first))
    });
    eventually("the ignored pod to be released uncounted", || {
        let j = get(&e, &job_path("policy"))?;
        let p = pods_of(&e, &uid)
            .into_iter()
            .find(|p| name(p) == name(&first))?;
        (!has_finalizer(&p) && j["status"]["failed"].is_null() && !is_true(&j, "Failed"))
            .then_some(())
    });
    finish_pod(&e, &second, 42, 0, json!([]));
    let j = wait_job(&e, "policy", "failed", |j| is_true(j, "Failed"));
    let message = format!(
        "Container main for pod {NS}/{} failed with exit code 42 matching FailJob rule at index 1",
        name(&second)
    );
    for ty in ["FailureTarget", "Failed"] {
        let c = condition(&j, ty).unwrap();
        assert_eq!(
            (c["reason"].as_str(), c["message"].as_str()),
            (Some("PodFailurePolicy"), Some(message.as_str()))
        );
    }
    assert_eq!(j["status"]["failed"], 1);
}

#[test]
fn the_active_deadline_fails_the_job_and_removes_its_pods() {
    let e = Enclave::start();
    let uid = create_job(
        &e,
        &job(
            "slow",
            json!({"completions": 2, "parallelism": 2, "activeDeadlineSeconds": 2}),
        ),
    );
    let pods = wait_pods(&e, &uid, 2);
    run_pod(&e, &pods[0], true);
    let j = wait_job(&e, "slow", "failed", |j| is_true(j, "Failed"));
    let c = condition(&j, "Failed").unwrap();
    assert_eq!(c["reason"], "DeadlineExceeded");
    assert_eq!(
        c["message"],
        "Job was active longer than specified deadline"
    );
    assert_eq!(
        j["status"]["failed"], 2,
        "the deleted active pods count as failed"
    );
    assert_eq!(j["status"]["terminating"], 0);
    eventually("the pods to go", || {
        pods_of(&e, &uid).is_empty().then_some(())
    });
}

fn index_of(p: &Value) -> i64 {
    p["metadata"]["annotations"][INDEX]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn an_indexed_job_fails_an_index_after_its_per_index_backoff() {
    let e = Enclave::start();
    let uid = create_job(
        &e,
        &job(
            "idx",
            json!({"completionMode": "Indexed", "completions": 3, "parallelism": 3,
            "backoffLimitPerIndex": 1, "maxFailedIndexes": 1}),
        ),
    );
    let mut pods = wait_pods(&e, &uid, 3);
    pods.sort_by_key(index_of);
    for (i, p) in pods.iter().enumerate() {
        assert!(name(p).starts_with(&format!("idx-{i}-")), "{}", name(p));
        assert_eq!(p["metadata"]["labels"][INDEX], i.to_string());
        assert_eq!(
            p["metadata"]["annotations"]["batch.kubernetes.io/job-index-failure-count"],
            "0"
        );
        assert_eq!(p["spec"]["hostname"], format!("idx-{i}"));
        let env = &p["spec"]["containers"][0]["env"][0];
        assert_eq!(env["name"], "JOB_COMPLETION_INDEX");
        assert_eq!(
            env["valueFrom"]["fieldRef"]["fieldPath"],
            format!("metadata.labels['{INDEX}']")
        );
    }
    finish_pod(&e, &pods[0], 0, 0, json!([]));
    wait_job(&e, "idx", "index 0 complete", |j| {
        j["status"]["completedIndexes"] == "0"
    });
    finish_pod(&e, &pods[1], 1, 60, json!([]));
    let again = eventually("a replacement for index 1", || {
        pods_of(&e, &uid)
            .into_iter()
            .find(|p| index_of(p) == 1 && name(p) != name(&pods[1]))
    });
    assert_eq!(
        again["metadata"]["annotations"]["batch.kubernetes.io/job-index-failure-count"],
        "1"
    );
    finish_pod(&e, &again, 1, 0, json!([]));
    wait_job(&e, "idx", "index 1 failed", |j| {
        j["status"]["failedIndexes"] == "1"
    });
    finish_pod(&e, &pods[2], 0, 0, json!([]));
    let j = wait_job(&e, "idx", "failed", |j| is_true(j, "Failed"));
    assert_eq!(condition(&j, "Failed").unwrap()["reason"], "FailedIndexes");
    assert_eq!(
        condition(&j, "Failed").unwrap()["message"],
        "Job has failed indexes"
    );
    assert_eq!(j["status"]["completedIndexes"], "0,2");
    assert_eq!(j["status"]["succeeded"], 2);
    assert_eq!(j["status"]["failed"], 2);
}

#[test]
fn a_success_policy_completes_an_indexed_job_early() {
    let e = Enclave::start();
    let uid = create_job(
        &e,
        &job(
            "early",
            json!({"completionMode": "Indexed", "completions": 4, "parallelism": 4,
            "successPolicy": {"rules": [{"succeededIndexes": "0"}]}}),
        ),
    );
    let pods = wait_pods(&e, &uid, 4);
    let zero = pods.iter().find(|p| index_of(p) == 0).unwrap();
    finish_pod(&e, zero, 0, 0, json!([]));
    let j = wait_job(&e, "early", "complete", |j| is_true(j, "Complete"));
    for ty in ["SuccessCriteriaMet", "Complete"] {
        let c = condition(&j, ty).unwrap();
        assert_eq!(
            (c["reason"].as_str(), c["message"].as_str()),
            (Some("SuccessPolicy"), Some("Matched rules at index 0"))
        );
    }
    assert_eq!(j["status"]["completedIndexes"], "0");
    eventually("the other pods to go", || {
        (pods_of(&e, &uid).len() == 1).then_some(())
    });
}

#[test]
fn a_suspended_job_starts_on_resume_and_stops_again() {
    let e = Enclave::start();
    let uid = create_job(
        &e,
        &job(
            "paused",
            json!({"suspend": true, "completions": 2, "parallelism": 2}),
        ),
    );
    let j = wait_job(&e, "paused", "suspended", |j| is_true(j, "Suspended"));
    assert_eq!(
        condition(&j, "Suspended").unwrap()["reason"],
        "JobSuspended"
    );
    assert!(j["status"]["startTime"].is_null());
    assert!(pods_of(&e, &uid).is_empty());
    merge(&e, &job_path("paused"), json!({"spec": {"suspend": false}}));
    wait_pods(&e, &uid, 2);
    let j = wait_job(&e, "paused", "resumed", |j| {
        condition(j, "Suspended").is_some_and(|c| c["status"] == "False")
    });
    assert_eq!(condition(&j, "Suspended").unwrap()["reason"], "JobResumed");
    assert!(j["status"]["startTime"].is_string());
    assert_eq!(wait_event(&e, "Job", "paused", "Resumed"), ["Job resumed"]);
    merge(&e, &job_path("paused"), json!({"spec": {"suspend": true}}));
    eventually("the pods to go", || {
        pods_of(&e, &uid).is_empty().then_some(())
    });
    let j = wait_job(&e, "paused", "suspended again", |j| {
        is_true(j, "Suspended") && j["status"]["active"].is_null()
    });
    assert!(
        j["status"]["failed"].is_null(),
        "suspending is no failure: {j}"
    );
}

#[test]
fn finished_jobs_go_after_their_ttl_and_deleted_jobs_release_their_pods() {
    let e = Enclave::start();
    let uid = create_job(&e, &job("short", json!({"ttlSecondsAfterFinished": 1})));
    let pod = wait_pods(&e, &uid, 1).remove(0);
    finish_pod(&e, &pod, 0, 0, json!([]));
    // Its Completed event, not the Complete condition: on a loaded machine the 1 s TTL can
    // delete the job between two polls of it (CI saw that), but the event stays.
    assert_eq!(
        wait_event(&e, "Job", "short", "Completed"),
        ["Job completed"]
    );
    eventually("the job and its pod to go", || {
        (get(&e, &job_path("short")).is_none() && pods_of(&e, &uid).is_empty()).then_some(())
    });

    // A running job deleted: its pods lose the tracking finalizer and go.
    let uid = create_job(
        &e,
        &job("dropped", json!({"parallelism": 2, "completions": 2})),
    );
    let pods = wait_pods(&e, &uid, 2);
    assert!(pods.iter().all(has_finalizer));
    delete(
        &e,
        &job_path("dropped"),
        json!({"propagationPolicy": "Background"}),
    );
    eventually("the orphaned pods to go", || {
        let left: Vec<Value> = crate::support::items(&e, &ns_path("v1", "pods"))
            .into_iter()
            .filter(|p| p["metadata"]["labels"]["job-name"] == "dropped")
            .collect();
        left.is_empty().then_some(())
    });
}
