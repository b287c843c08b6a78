//! Helpers of the workload tests: requests with the admin token, hollow
//! nodes, and the kubelet's part played through the pods' status (as
//! upstream's integration tests do it): running and ready, succeeded or
//! failed with an exit code.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Enclave, eventually};

/// The namespace the tests use.
pub const NS: &str = "default";

pub fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A request; returns (status, body).
pub fn request(
    e: &Enclave,
    method: &str,
    path: &str,
    content_type: &str,
    body: &Value,
) -> (u16, Value) {
    let ct = format!("Content-Type: {content_type}");
    let data = body.to_string();
    let (code, out) = e.curl_admin(path, &["-X", method, "-H", &ct, "--data-binary", &data]);
    (code, serde_json::from_str(&out).unwrap_or(Value::Null))
}

/// A request that must succeed; returns the body.
pub fn send(e: &Enclave, method: &str, path: &str, content_type: &str, body: &Value) -> Value {
    let (code, out) = request(e, method, path, content_type, body);
    assert!((200..300).contains(&code), "{method} {path}: {code} {out}");
    out
}

pub fn post(e: &Enclave, path: &str, body: &Value) -> Value {
    send(e, "POST", path, "application/json", body)
}

pub fn merge(e: &Enclave, path: &str, patch: Value) -> Value {
    send(e, "PATCH", path, "application/merge-patch+json", &patch)
}

pub fn delete(e: &Enclave, path: &str, body: Value) {
    let (code, out) = request(e, "DELETE", path, "application/json", &body);
    assert!(
        code == 200 || code == 202 || code == 404,
        "DELETE {path}: {code} {out}"
    );
}

pub fn get(e: &Enclave, path: &str) -> Option<Value> {
    let (code, out) = e.curl_admin(path, &[]);
    match code {
        200 => Some(parse(&out)),
        404 => None,
        _ => panic!("GET {path}: {code} {out}"),
    }
}

pub fn items(e: &Enclave, path: &str) -> Vec<Value> {
    get(e, path).unwrap()["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

pub fn name(o: &Value) -> String {
    o["metadata"]["name"].as_str().unwrap_or("").to_string()
}

/// A path under the test namespace, e.g. `ns_path("batch/v1", "jobs")`.
pub fn ns_path(group_version: &str, resource: &str) -> String {
    if group_version == "v1" {
        format!("/api/v1/namespaces/{NS}/{resource}")
    } else {
        format!("/apis/{group_version}/namespaces/{NS}/{resource}")
    }
}

pub fn pod_path(pod: &str) -> String {
    format!("{}/{pod}", ns_path("v1", "pods"))
}

/// Pods whose labels match `selector` (a label selector string).
pub fn pods_with(e: &Enclave, selector: &str) -> Vec<Value> {
    let mut pods = items(
        e,
        &format!("{}?labelSelector={selector}", ns_path("v1", "pods")),
    );
    pods.sort_by_key(name);
    pods
}

/// Pods controlled by the object with `uid`.
pub fn pods_of(e: &Enclave, uid: &str) -> Vec<Value> {
    let mut pods: Vec<Value> = items(e, &ns_path("v1", "pods"))
        .into_iter()
        .filter(|p| {
            p["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| {
                    refs.iter()
                        .any(|r| r["uid"] == uid && r["controller"] == true)
                })
        })
        .collect();
    pods.sort_by_key(name);
    pods
}

pub fn now() -> String {
    let t = jiff::Timestamp::now();
    jiff::Timestamp::from_second(t.as_second())
        .unwrap()
        .to_string()
}

pub fn seconds_ago(s: i64) -> String {
    let t = jiff::Timestamp::now().as_second() - s;
    jiff::Timestamp::from_second(t).unwrap().to_string()
}

fn container_name(pod: &Value) -> String {
    pod["spec"]["containers"][0]["name"]
        .as_str()
        .unwrap_or("c")
        .to_string()
}

/// The kubelet reports the pod running (and ready or not).
pub fn run_pod(e: &Enclave, pod: &Value, ready: bool) {
    let c = container_name(pod);
    let t = now();
    let status = json!({"status": {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": t}],
        "containerStatuses": [{"name": c, "image": "busybox", "imageID": "", "ready": ready,
            "restartCount": 0, "state": {"running": {"startedAt": t}}}],
    }});
    merge(e, &format!("{}/status", pod_path(&name(pod))), status);
}

/// The kubelet reports the pod finished: `Succeeded` (exit 0) or `Failed`
/// with `exit_code`, its container having finished `ago` seconds ago;
/// `conditions` are added (e.g. `DisruptionTarget`).
pub fn finish_pod(e: &Enclave, pod: &Value, exit_code: i32, ago: i64, conditions: Value) {
    let c = container_name(pod);
    let t = seconds_ago(ago);
    let mut conds = vec![json!({"type": "Ready", "status": "False", "lastTransitionTime": t})];
    conds.extend(conditions.as_array().cloned().unwrap_or_default());
    let phase = if exit_code == 0 {
        "Succeeded"
    } else {
        "Failed"
    };
    let status = json!({"status": {
        "phase": phase,
        "conditions": conds,
        "containerStatuses": [{"name": c, "image": "busybox", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": exit_code, "finishedAt": t, "startedAt": t}}}],
    }});
    merge(e, &format!("{}/status", pod_path(&name(pod))), status);
}

/// Creates a Node with `labels` and `taints` (a hollow node: no agent).
pub fn create_node(e: &Enclave, node: &str, labels: Value, taints: Value) {
    post(
        e,
        "/api/v1/nodes",
        &json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node, "labels": labels}, "spec": {"taints": taints}}),
    );
}

/// The condition of `ty` in `obj`'s status.
pub fn condition(obj: &Value, ty: &str) -> Option<Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
        .cloned()
}

/// Events about `kind`/`name` with `reason`, their messages.
pub fn event_messages(e: &Enclave, kind: &str, obj: &str, reason: &str) -> Vec<String> {
    items(
        e,
        &format!(
            "{}?fieldSelector=involvedObject.kind%3D{kind},involvedObject.name%3D{obj},reason%3D{reason}",
            ns_path("v1", "events")
        ),
    )
    .iter()
    .map(|ev| ev["message"].as_str().unwrap_or("").to_string())
    .collect()
}

/// Waits for an event about `kind`/`name` with `reason`; returns its messages.
pub fn wait_event(e: &Enclave, kind: &str, obj: &str, reason: &str) -> Vec<String> {
    eventually(&format!("a {reason} event about {kind} {obj}"), || {
        let m = event_messages(e, kind, obj, reason);
        (!m.is_empty()).then_some(m)
    })
}

/// curl against the enclave from another thread (the [`Enclave`] owns its
/// process and stays on the test's thread).
struct Client {
    url: String,
    ca: std::path::PathBuf,
    token: String,
}

impl Client {
    fn curl(&self, path: &str, args: &[&str]) -> (u16, String) {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "20",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "--cacert",
            ])
            .arg(&self.ca)
            .args(["-H", &format!("Authorization: Bearer {}", self.token)])
            .args(args)
            .arg(format!("{}{path}", self.url))
            .output();
        let Ok(out) = out else {
            return (0, String::new());
        };
        let s = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = s.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    fn get(&self, path: &str) -> (u16, String) {
        self.curl(path, &[])
    }

    fn merge(&self, path: &str, patch: &Value) -> (u16, String) {
        let data = patch.to_string();
        self.curl(
            path,
            &[
                "-X",
                "PATCH",
                "-H",
                "Content-Type: application/merge-patch+json",
                "--data-binary",
                &data,
            ],
        )
    }
}

/// A stand-in kubelet: every pending, not deleted pod of the namespace
/// whose labels match `selector` is reported running and ready, until
/// dropped.
pub struct Kubelet {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Kubelet {
    pub fn start(e: &Enclave, selector: &str) -> Kubelet {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let url = e.url.clone();
        let ca = e.pki("server.crt");
        let token = e.token();
        let selector = selector.to_string();
        let thread = std::thread::spawn(move || {
            let e = Client { url, ca, token };
            while !flag.load(Ordering::Relaxed) {
                let (code, body) = e.get(&format!(
                    "{}?labelSelector={selector}",
                    ns_path("v1", "pods")
                ));
                if code == 200 {
                    for pod in parse(&body)["items"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                    {
                        if !pod["metadata"]["deletionTimestamp"].is_null()
                            && pod["metadata"]["deletionGracePeriodSeconds"].as_i64() != Some(0)
                        {
                            // Stopped at once: the object goes, as the kubelet's final delete.
                            finish_deletion(&pod, |path, body| {
                                e.curl(
                                    path,
                                    &[
                                        "-X",
                                        "DELETE",
                                        "-H",
                                        "Content-Type: application/json",
                                        "-d",
                                        body,
                                    ],
                                )
                            });
                            continue;
                        }
                        let pending = pod["status"]["phase"] == "Pending";
                        if pending {
                            let c = container_name(&pod);
                            let t = now();
                            let status = json!({"status": {"phase": "Running",
                                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": t}],
                                "containerStatuses": [{"name": c, "image": "busybox", "imageID": "",
                                    "ready": true, "restartCount": 0, "state": {"running": {"startedAt": t}}}]}});
                            e.merge(&format!("{}/status", pod_path(&name(&pod))), &status);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(150));
            }
        });
        Kubelet {
            stop,
            thread: Some(thread),
        }
    }
}

/// The kubelet's last word on a pod being deleted: `DELETE` with grace period 0 and its UID
/// as a precondition (through `delete(path, body)`).
pub fn finish_deletion(pod: &Value, delete: impl Fn(&str, &str) -> (u16, String)) {
    let body = json!({"gracePeriodSeconds": 0, "preconditions": {"uid": pod["metadata"]["uid"]}});
    let path = format!(
        "/api/v1/namespaces/{}/pods/{}",
        pod["metadata"]["namespace"].as_str().unwrap_or_default(),
        name(pod)
    );
    let _ = delete(&path, &body.to_string());
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
