//! `daas dev --workers 2` runs pods end to end, with real kubectl (1.27 and 1.33), real
//! `daas-worker`s and their own real containerds: `kubectl run` gives a Running pod with a pod
//! IP on a worker, `kubectl get pods -o wide` shows it, `kubectl delete pod` completes
//! gracefully (the worker stops the containers, then deletes the object with a UID
//! precondition), a Deployment of 2 becomes Available, a Job completes; then `daas dev` killed
//! with SIGKILL leaves no containerd, shim or worker behind (the workers exit with their
//! parent, stopping their pods and containerd).
//!
//! Skips (loudly) only when containerd is not installed; under CI that fails.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::dev::{
    Dev, containerd_available, free_port, kubectl_version, processes_under, wait_until,
};
use common::text;

/// `kubectl --kubeconfig KC args...` with the binary `kubectl`.
fn kubectl(kubectl: &Path, kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap()
}

fn ok(kubectl_bin: &Path, kubeconfig: &Path, args: &[&str]) -> String {
    let out = kubectl(kubectl_bin, kubeconfig, args);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn jsonpath(kubectl_bin: &Path, kubeconfig: &Path, args: &[&str], path: &str) -> String {
    let path = format!("jsonpath={path}");
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", &path]);
    String::from_utf8_lossy(&kubectl(kubectl_bin, kubeconfig, &all).stdout).into_owned()
}

/// Runs a pod with `kubectl run`, checks it runs on a worker with an IP, shows in `get pods -o
/// wide`, and returns its name.
fn run_pod(k: &Path, admin: &Path, name: &str) {
    ok(
        k,
        admin,
        &[
            "run",
            name,
            "--image=docker.io/library/busybox:1.35",
            "--restart=Never",
            "--",
            "sh",
            "-c",
            "echo hello; sleep 3600",
        ],
    );
    ok(
        k,
        admin,
        &[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{name}"),
            "--timeout=180s",
        ],
    );
    let fields = jsonpath(
        k,
        admin,
        &["pod", name],
        "{.status.phase} {.spec.nodeName} {.status.podIP} {.status.containerStatuses[0].ready}",
    );
    let parts: Vec<&str> = fields.split_whitespace().collect();
    assert_eq!(parts.len(), 4, "{fields}");
    assert_eq!(parts[0], "Running", "{fields}");
    assert!(parts[1].starts_with("worker-"), "{fields}");
    let ip: std::net::Ipv4Addr = parts[2].parse().unwrap();
    // From the node's pod CIDR in the cluster CIDR (daas dev's workers run the node networking).
    assert_eq!(ip.octets()[..2], [10, 42], "{fields}");
    assert_eq!(parts[3], "true", "{fields}");
    let wide = ok(k, admin, &["get", "pods", "-o", "wide"]);
    let row = wide
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} not listed:\n{wide}"));
    for cell in ["1/1", "Running", parts[1], parts[2]] {
        assert!(row.contains(cell), "{cell} missing from {row:?}");
    }
}

#[test]
fn dev_runs_pods_deployments_and_jobs() {
    if !containerd_available("dev_pods") {
        return;
    }
    common::bin_dir();
    let dir = tempfile::Builder::new()
        .prefix("daas-pods")
        .tempdir_in("/tmp")
        .unwrap();
    let dir_path = std::fs::canonicalize(dir.path()).unwrap();
    let admin = dir_path.join("kubeconfig");
    let k127 = kubectl_version("1.27");
    let k133 = kubectl_version("1.33");

    let dev = Dev::start(&dir_path, free_port(), 2, &[]);
    dev.wait_for("dev cluster ready");
    wait_until(Duration::from_secs(180), "two Ready nodes", || {
        jsonpath(
            &k133,
            &admin,
            &["nodes"],
            "{range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {end}",
        )
        .trim()
            == "worker-1=True worker-2=True"
    });
    // The kubelet's eviction threshold (nodefs.available < 10%) taints a node of a full
    // machine: say so rather than time out waiting for pods that cannot be scheduled.
    let pressure = jsonpath(
        &k133,
        &admin,
        &["nodes"],
        "{.items[*].status.conditions[?(@.type==\"DiskPressure\")].status}",
    );
    assert!(
        !pressure.contains("True"),
        "the nodes report DiskPressure (less than 10% of the data directory's file system is \
         free): pods cannot be scheduled here; free some disk and run again"
    );
    let runtimes = jsonpath(
        &k133,
        &admin,
        &["nodes"],
        "{.items[*].status.nodeInfo.containerRuntimeVersion}",
    );
    assert!(
        runtimes
            .split_whitespace()
            .filter(|r| r.starts_with("containerd://"))
            .count()
            == 2,
        "{runtimes}"
    );

    // A pod that keeps crashing (started first: its back-off is checked further down).
    ok(
        &k133,
        &admin,
        &[
            "run",
            "crash",
            "--image=docker.io/library/busybox:1.35",
            "--",
            "sh",
            "-c",
            "echo crashing; exit 1",
        ],
    );

    // kubectl run, with the oldest and the newest kubectl.
    run_pod(&k127, &admin, "b127");
    run_pod(&k133, &admin, "b133");

    // A Deployment of 2 becomes Available; a Job completes.
    ok(
        &k127,
        &admin,
        &[
            "create",
            "deployment",
            "web",
            "--image=docker.io/library/busybox:1.35",
            "--replicas=2",
            "--",
            "sleep",
            "3600",
        ],
    );
    ok(
        &k133,
        &admin,
        &[
            "create",
            "job",
            "once",
            "--image=docker.io/library/busybox:1.35",
            "--",
            "sh",
            "-c",
            "echo done",
        ],
    );
    ok(
        &k127,
        &admin,
        &[
            "wait",
            "--for=condition=Available",
            "deployment/web",
            "--timeout=180s",
        ],
    );
    assert_eq!(
        jsonpath(
            &k127,
            &admin,
            &["deployment", "web"],
            "{.status.readyReplicas}"
        ),
        "2"
    );
    ok(
        &k133,
        &admin,
        &[
            "wait",
            "--for=condition=complete",
            "job/once",
            "--timeout=180s",
        ],
    );
    assert_eq!(
        jsonpath(&k133, &admin, &["job", "once"], "{.status.succeeded}"),
        "1"
    );

    // A pod calls the API with its projected service-account token, through the
    // `kubernetes` Service's ClusterIP, with exactly its RBAC rights. The client is kubectl
    // itself (a static binary, mounted from this machine: busybox has no TLS client), which
    // reads the in-cluster configuration as client-go does.
    let real = std::fs::canonicalize(&k133).unwrap();
    let (bin_dir, bin_name) = (real.parent().unwrap(), real.file_name().unwrap());
    ok(&k133, &admin, &["create", "serviceaccount", "reader"]);
    ok(
        &k133,
        &admin,
        &[
            "create",
            "role",
            "pod-reader",
            "--verb=get,list",
            "--resource=pods",
        ],
    );
    ok(
        &k133,
        &admin,
        &[
            "create",
            "rolebinding",
            "reader",
            "--role=pod-reader",
            "--serviceaccount=default:reader",
        ],
    );
    let client = format!("/client/{}", bin_name.to_string_lossy());
    let script =
        format!("{client} get pods -o name; echo pods=$?; {client} get secrets; echo secrets=$?");
    let in_cluster = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "in-cluster"},
        "spec": {"serviceAccountName": "reader", "restartPolicy": "Never",
            "containers": [{"name": "client", "image": "docker.io/library/busybox:1.35",
                "command": ["sh", "-c", script],
                "volumeMounts": [{"name": "client", "mountPath": "/client", "readOnly": true}]}],
            "volumes": [{"name": "client",
                "hostPath": {"path": bin_dir.to_str().unwrap(), "type": "Directory"}}]}});
    let manifest = dir_path.join("in-cluster.json");
    std::fs::write(&manifest, in_cluster.to_string()).unwrap();
    ok(&k133, &admin, &["apply", "-f", manifest.to_str().unwrap()]);
    wait_until(Duration::from_secs(180), "in-cluster to finish", || {
        jsonpath(&k133, &admin, &["pod", "in-cluster"], "{.status.phase}") == "Succeeded"
    });
    let said = ok(&k133, &admin, &["logs", "in-cluster"]);
    assert!(said.contains("pod/in-cluster\n"), "{said}");
    assert!(said.contains("pods=0\n"), "{said}");
    assert!(
        said.contains(
            "secrets is forbidden: User \"system:serviceaccount:default:reader\" cannot list \
             resource \"secrets\" in API group \"\" in the namespace \"default\""
        ),
        "{said}"
    );
    assert!(said.contains("secrets=1\n"), "{said}");

    // The crashing pod backs off as the kubelet does (10 s, doubling): waiting in
    // CrashLoopBackOff between restarts, its last run's log kept for `--previous`.
    wait_until(Duration::from_secs(120), "crash to back off", || {
        let state = jsonpath(
            &k133,
            &admin,
            &["pod", "crash"],
            "{.status.containerStatuses[0].state.waiting.reason} {.status.containerStatuses[0].restartCount}",
        );
        state.starts_with("CrashLoopBackOff ") && !state.ends_with(" 0")
    });
    // Every kubectl shows it backing off and its last run's log (a restart in between may
    // show another state for a moment, hence the wait).
    for version in ["1.27", "1.28", "1.29", "1.30", "1.31", "1.32", "1.33"] {
        let k = kubectl_version(version);
        wait_until(
            Duration::from_secs(60),
            "CrashLoopBackOff in get pod",
            || {
                ok(&k, &admin, &["get", "pod", "crash", "--no-headers"])
                    .contains("CrashLoopBackOff")
            },
        );
        assert_eq!(
            ok(&k, &admin, &["logs", "crash", "--previous"]),
            "crashing\n",
            "kubectl {version}"
        );
    }
    let last = jsonpath(
        &k133,
        &admin,
        &["pod", "crash"],
        "{.status.containerStatuses[0].lastState.terminated.exitCode} {.status.containerStatuses[0].lastState.terminated.reason}",
    );
    assert_eq!(last, "1 Error");
    assert_eq!(
        ok(&k133, &admin, &["logs", "crash", "--previous"]),
        "crashing\n"
    );
    // Forced: the object goes at once (the worker then stops what is left).
    ok(
        &k133,
        &admin,
        &["delete", "pod", "crash", "--grace-period=0", "--force"],
    );
    assert!(
        !kubectl(&k133, &admin, &["get", "pod", "crash"])
            .status
            .success()
    );

    // A rollout: new pods first, the old ones terminate gracefully.
    let before = jsonpath(
        &k133,
        &admin,
        &["pods", "-l", "app=web"],
        "{.items[*].metadata.name}",
    );
    ok(&k133, &admin, &["rollout", "restart", "deployment/web"]);
    ok(
        &k127,
        &admin,
        &["rollout", "status", "deployment/web", "--timeout=180s"],
    );
    let ready = jsonpath(
        &k133,
        &admin,
        &["deployment", "web"],
        "{.status.updatedReplicas} {.status.readyReplicas}",
    );
    assert_eq!(ready, "2 2");
    let after = jsonpath(
        &k133,
        &admin,
        &[
            "pods",
            "-l",
            "app=web",
            "--field-selector=status.phase=Running",
        ],
        "{.items[*].metadata.name}",
    );
    for old in before.split_whitespace() {
        let deleting = jsonpath(
            &k133,
            &admin,
            &["pod", old],
            "{.metadata.deletionTimestamp}",
        );
        let gone = !kubectl(&k133, &admin, &["get", "pod", old])
            .status
            .success();
        assert!(
            gone || !deleting.is_empty(),
            "{old} neither gone nor terminating ({after})"
        );
    }

    // Graceful deletes (sh ignores SIGTERM as PID 1: the grace period runs out, then the
    // worker deletes the object). b133's is watched: the API marks the pod, `get` shows it
    // Terminating while its container still runs, and it goes once the worker is done.
    let out = kubectl(
        &k133,
        &admin,
        &["delete", "pod", "b133", "--grace-period=8", "--wait=false"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let marked = jsonpath(
        &k133,
        &admin,
        &["pod", "b133"],
        "{.metadata.deletionGracePeriodSeconds} {.status.containerStatuses[0].state.running.startedAt}",
    );
    let parts: Vec<&str> = marked.split_whitespace().collect();
    assert_eq!(parts.len(), 2, "not marked, or not running: {marked}");
    assert_eq!(parts[0], "8", "{marked}");
    let row = ok(&k133, &admin, &["get", "pod", "b133", "--no-headers"]);
    assert!(row.contains("Terminating"), "{row}");
    let deleting = {
        let (k, admin) = (k127.clone(), admin.clone());
        std::thread::spawn(move || {
            kubectl(
                &k,
                &admin,
                &[
                    "delete",
                    "pod",
                    "b127",
                    "--grace-period=5",
                    "--timeout=180s",
                ],
            )
        })
    };
    ok(
        &k133,
        &admin,
        &["wait", "--for=delete", "pod/b133", "--timeout=180s"],
    );
    let out = deleting.join().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    for name in ["b127", "b133"] {
        let out = kubectl(&k133, &admin, &["get", "pod", name]);
        assert!(!out.status.success());
        assert!(text(&out).contains("NotFound"), "{}", text(&out));
    }

    // The horizontal pod autoscaler: a pod far above its 50 % CPU target (a light busy loop
    // against a 5m request) makes its Deployment grow to maxReplicas, from the usage the
    // workers report.
    let manifest = dir_path.join("autoscaled.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: apps/v1
kind: Deployment
metadata: {name: burn}
spec:
  replicas: 1
  selector: {matchLabels: {app: burn}}
  template:
    metadata: {labels: {app: burn}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: burn
        image: docker.io/library/busybox:1.35
        command: [sh, -c, 'while :; do i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; sleep 0.1; done']
        resources: {requests: {cpu: 5m}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: burn}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: burn}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - {type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}}
",
    )
    .unwrap();
    ok(&k133, &admin, &["apply", "-f", manifest.to_str().unwrap()]);
    wait_until(
        Duration::from_secs(180),
        "the autoscaler to scale burn to 3",
        || jsonpath(&k133, &admin, &["deployment", "burn"], "{.spec.replicas}") == "3",
    );
    let status = jsonpath(
        &k133,
        &admin,
        &["hpa", "burn"],
        "{.status.desiredReplicas} {.status.conditions[?(@.type==\"ScalingActive\")].reason} {.status.conditions[?(@.type==\"ScalingLimited\")].reason}",
    );
    assert_eq!(status, "3 ValidMetricFound TooManyReplicas");
    let row = ok(&k127, &admin, &["get", "hpa", "burn", "--no-headers"]);
    assert!(
        row.contains("Deployment/burn") && row.contains("cpu: "),
        "{row}"
    );
    let events = ok(
        &k133,
        &admin,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=burn,reason=SuccessfulRescale",
        ],
    );
    assert!(events.contains("New size: "), "{events}");
    ok(&k133, &admin, &["delete", "-f", manifest.to_str().unwrap()]);

    // daas dev killed outright: its workers exit with it, taking their pods (containers,
    // sandboxes, files, cgroups) and containerds.
    let uids = jsonpath(&k133, &admin, &["pods"], "{.items[*].metadata.uid}");
    let uids: Vec<String> = uids.split_whitespace().map(str::to_owned).collect();
    assert!(
        uids.len() >= 3,
        "the deployment's 2 pods (and old ones still terminating) and the job's: {uids:?}"
    );
    assert!(
        !processes_under(&dir_path).is_empty(),
        "no containerd runs under {}",
        dir_path.display()
    );
    let mut dev = dev;
    dev.kill9();
    drop(dev);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let left = processes_under(&dir_path);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running after daas dev was killed:\n{}",
            left.join("\n")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    for uid in &uids {
        for worker in ["worker-1", "worker-2"] {
            let files = dir_path.join("workers").join(worker).join("pods").join(uid);
            assert!(!files.exists(), "{} is left", files.display());
        }
        let cgroup = format!("pod{uid}");
        let left = find_dir(Path::new("/sys/fs/cgroup/memory"), &cgroup, 4);
        assert!(left.is_none(), "the cgroup {left:?} is left");
    }
}

/// A directory named `name` under `dir`, at most `depth` levels down.
fn find_dir(dir: &Path, name: &str, depth: u32) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if entry.file_name() == name {
            return Some(entry.path());
        }
        if depth > 0
            && let Some(found) = find_dir(&entry.path(), name, depth - 1)
        {
            return Some(found);
        }
    }
    None
}
