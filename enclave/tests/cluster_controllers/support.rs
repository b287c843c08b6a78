//! What the cluster controller tests share: JSON over curl against the
//! real enclave, hollow nodes (Node objects and their Leases, renewed by a
//! thread until stopped) and a tiny kubelet that marks the pods bound to
//! hollow nodes Running and Ready, as upstream's integration tests play
//! the kubelet.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::Enclave;

/// Flags that make the node lifecycle and pod GC fast enough for tests.
pub const FAST: &[&str] = &[
    "--node-monitor-period",
    "1s",
    "--node-monitor-grace-period",
    "4s",
    "--node-startup-grace-period",
    "4s",
    "--node-eviction-rate",
    "100",
    "--pod-gc-period",
    "1s",
];

/// An enclave with [`FAST`] and `extra` flags.
pub fn start(extra: &[&str]) -> Enclave {
    let mut flags: Vec<&str> = FAST.to_vec();
    flags.extend_from_slice(extra);
    Enclave::start_in_with(tempfile::tempdir().unwrap(), &flags)
}

/// Parses a JSON body.
pub fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Sends `body` and returns (code, parsed body).
pub fn call(
    e: &Enclave,
    method: &str,
    path: &str,
    content_type: &str,
    body: &Value,
) -> (u16, Value) {
    let ct = format!("Content-Type: {content_type}");
    let data = body.to_string();
    let (code, out) = e.curl_admin(path, &["-X", method, "-H", &ct, "--data-binary", &data]);
    (
        code,
        if out.trim().is_empty() {
            Value::Null
        } else {
            parse(&out)
        },
    )
}

/// Sends `body` and asserts a 2xx.
pub fn send(e: &Enclave, method: &str, path: &str, content_type: &str, body: &Value) -> Value {
    let (code, out) = call(e, method, path, content_type, body);
    assert!((200..300).contains(&code), "{method} {path}: {code} {out}");
    out
}

/// POST a JSON object.
pub fn create(e: &Enclave, path: &str, body: &Value) -> Value {
    send(e, "POST", path, "application/json", body)
}

/// A merge patch.
pub fn merge(e: &Enclave, path: &str, patch: Value) -> Value {
    send(e, "PATCH", path, "application/merge-patch+json", &patch)
}

/// DELETE, ignoring a 404.
pub fn delete(e: &Enclave, path: &str) {
    let (code, out) = e.curl_admin(path, &["-X", "DELETE"]);
    assert!(
        code == 404 || (200..300).contains(&code),
        "DELETE {path}: {code} {out}"
    );
}

/// GET; `None` on 404.
pub fn get(e: &Enclave, path: &str) -> Option<Value> {
    let (code, out) = e.curl_admin(path, &[]);
    match code {
        200 => Some(parse(&out)),
        404 => None,
        _ => panic!("GET {path}: {code} {out}"),
    }
}

/// The items of a list.
pub fn items(e: &Enclave, path: &str) -> Vec<Value> {
    get(e, path).unwrap()["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// `metadata.name`.
pub fn name(o: &Value) -> String {
    o["metadata"]["name"].as_str().unwrap_or("").to_string()
}

/// The condition of `ty` in `obj.status.conditions`.
pub fn condition(obj: &Value, ty: &str) -> Option<Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
        .cloned()
}

/// Now, as a `metav1.Time`.
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn micro_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string()
}

/// Posts the Ready condition of `node` as its kubelet would.
pub fn post_ready(e: &Enclave, node: &str, status: &str) {
    let t = now();
    merge(
        e,
        &format!("/api/v1/nodes/{node}/status"),
        json!({"status": {"conditions": [{"type": "Ready", "status": status, "reason": "KubeletReady",
            "message": "kubelet is posting ready status", "lastHeartbeatTime": t, "lastTransitionTime": t}]}}),
    );
}

/// Creates a hollow node (Ready, with capacity) and its Lease.
pub fn hollow_node(e: &Enclave, node: &str, labels: Value) {
    create(
        e,
        "/api/v1/nodes",
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node, "labels": labels}}),
    );
    merge(
        e,
        &format!("/api/v1/nodes/{node}/status"),
        json!({"status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}),
    );
    post_ready(e, node, "True");
    create(
        e,
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
        &json!({"metadata": {"name": node}, "spec": {"holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": micro_now()}}),
    );
}

/// What a thread needs to talk to the enclave with the admin token.
#[derive(Clone)]
pub struct Client {
    url: String,
    ca: std::path::PathBuf,
    token: String,
}

impl Client {
    /// The admin's client of `e`.
    pub fn of(e: &Enclave) -> Self {
        Client {
            url: e.url.clone(),
            ca: e.pki("server.crt"),
            token: e.token(),
        }
    }

    /// curl with `args`; returns (code, body).
    pub fn curl(&self, path: &str, args: &[&str]) -> (u16, String) {
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
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = s.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// A merge patch; returns the code.
    pub fn merge(&self, path: &str, patch: &Value) -> u16 {
        let body = patch.to_string();
        self.curl(
            path,
            &[
                "-X",
                "PATCH",
                "-H",
                "Content-Type: application/merge-patch+json",
                "--data-binary",
                &body,
            ],
        )
        .0
    }
}

/// Renews a node's Lease every 500 ms until stopped or dropped.
pub struct LeaseRenewer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LeaseRenewer {
    /// Starts renewing `node`'s Lease.
    pub fn start(e: &Enclave, node: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let client = Client::of(e);
        let path = format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}");
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                client.merge(&path, &json!({"spec": {"renewTime": micro_now()}}));
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        LeaseRenewer {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops renewing (the node goes silent).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LeaseRenewer {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Marks pod `ns/name` Running and Ready with `ip`, as a kubelet.
pub fn run_pod(e: &Enclave, ns: &str, name: &str, ip: &str) {
    let t = now();
    merge(
        e,
        &format!("/api/v1/namespaces/{ns}/pods/{name}/status"),
        json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": t}]}}),
    );
}

/// Marks every pending pod bound to a node Running and Ready, every 300 ms,
/// until stopped: the kubelet of all hollow nodes.
pub struct Kubelet {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Kubelet {
    /// Starts the loop against `e` for pods in `ns`.
    pub fn start(e: &Enclave, ns: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let client = Client::of(e);
        let ns = ns.to_string();
        let thread = std::thread::spawn(move || {
            let mut n = 10u32;
            while !flag.load(Ordering::Relaxed) {
                let (code, out) = client.curl(&format!("/api/v1/namespaces/{ns}/pods"), &[]);
                if code == 200
                    && let Ok(list) = serde_json::from_str::<Value>(&out)
                {
                    for p in list["items"].as_array().cloned().unwrap_or_default() {
                        if !p["metadata"]["deletionTimestamp"].is_null()
                            && p["metadata"]["deletionGracePeriodSeconds"].as_i64() != Some(0)
                        {
                            // Stopped at once: the kubelet's final delete (grace period 0,
                            // UID precondition).
                            let body = json!({"gracePeriodSeconds": 0,
                                "preconditions": {"uid": p["metadata"]["uid"]}});
                            client.curl(
                                &format!("/api/v1/namespaces/{ns}/pods/{}", name(&p)),
                                &[
                                    "-X",
                                    "DELETE",
                                    "-H",
                                    "Content-Type: application/json",
                                    "-d",
                                    &body.to_string(),
                                ],
                            );
                            continue;
                        }
                        let bound = p["spec"]["nodeName"]
                            .as_str()
                            .is_some_and(|n| !n.is_empty());
                        if bound
                            && p["status"]["phase"] == "Pending"
                            && p["metadata"]["deletionTimestamp"].is_null()
                        {
                            n += 1;
                            let ip = format!("10.42.{}.{}", n / 250, n % 250 + 2);
                            let t = now();
                            let body = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": t}]}});
                            client.merge(
                                &format!("/api/v1/namespaces/{ns}/pods/{}/status", name(&p)),
                                &body,
                            );
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        Kubelet {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A pod bound to `node` (no scheduler needed), with `extra` merged into its spec.
pub fn pod(name: &str, node: &str, labels: Value, extra_spec: Value) -> Value {
    let mut spec = json!({"nodeName": node, "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]});
    if let (Some(s), Some(x)) = (spec.as_object_mut(), extra_spec.as_object()) {
        for (k, v) in x {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec})
}
