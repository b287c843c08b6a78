//! `daas dev --workers 2` with the node networking, end to end with real kubectl, real
//! `daas-worker`s (each in its own network namespace on the dev bridge) and their own
//! containerds: a pod on worker-1 reaches a `busybox httpd` pod on worker-2 by its pod IP, by
//! a Service's ClusterIP and by the Service's DNS name (`web.default.svc.cluster.local`, and
//! `web` through the pod's search list), and a name that does not exist does not resolve. A
//! NodePort Service answers on both nodes' addresses from outside the nodes, and a
//! NetworkPolicy lets only `role=client` pods reach the server once the worker enforces it.
//! Each client is a pod with `restartPolicy: Never` whose command makes the request: its phase
//! (Succeeded or Failed) is the verdict.
//!
//! Skips (loudly) only when containerd is not installed or network namespaces cannot be made
//! here (not root); under CI that fails.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::dev::{Dev, free_port, wait_until};
use common::text;

fn skip(why: &str) -> bool {
    assert!(std::env::var_os("CI").is_none(), "{why}; CI requires it");
    eprintln!("\n\n*** SKIPPED dev_network: {why} ***\n\n");
    true
}

/// Whether containerd runs and network namespaces can be made here; says why not.
fn cannot_run() -> bool {
    let containerd = Command::new("containerd")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !containerd {
        return skip("containerd is not installed (run scripts/setup)");
    }
    let probe = format!("daas-probe-{}", std::process::id());
    let made = Command::new("ip")
        .args(["netns", "add", &probe])
        .output()
        .is_ok_and(|o| o.status.success());
    if !made {
        return skip("network namespaces cannot be made here (`ip netns add` failed: not root?)");
    }
    let _ = Command::new("ip").args(["netns", "del", &probe]).output();
    false
}

fn kubectl_bin() -> PathBuf {
    PathBuf::from("kubectl")
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(kubectl_bin())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap()
}

fn jsonpath(kubeconfig: &Path, args: &[&str], path: &str) -> String {
    let path = format!("jsonpath={path}");
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", &path]);
    String::from_utf8_lossy(&kubectl(kubeconfig, &all).stdout).into_owned()
}

fn create(dir: &Path, kubeconfig: &Path, name: &str, object: &serde_json::Value) {
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, object.to_string()).unwrap();
    let out = kubectl(kubeconfig, &["create", "-f", path.to_str().unwrap()]);
    assert!(out.status.success(), "creating {name}: {}", text(&out));
}

fn pod(name: &str, node: &str, labels: serde_json::Value, script: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": "docker.io/library/busybox:1.35",
                "command": ["sh", "-c", script]}]
        }
    })
}

/// One HTTP/1.0 GET to `addr` from this process (not from a pod); the response, or "" when the
/// connection fails or times out.
fn http_get_from_here(addr: &str) -> String {
    use std::io::{Read, Write};
    let Ok(addr) = addr.parse::<std::net::SocketAddr>() else {
        return String::new();
    };
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
    let mut response = String::new();
    if stream.write_all(b"GET / HTTP/1.0\r\n\r\n").is_ok() {
        let _ = stream.read_to_string(&mut response);
    }
    response
}

/// Retries `request` inside the pod for up to a minute (the proxy and DNS pick new Services
/// and endpoints up within seconds), exiting 0 on the first success.
fn retrying(request: &str) -> String {
    format!("for i in $(seq 60); do if {request}; then exit 0; fi; sleep 1; done; exit 1")
}

/// The phase a `restartPolicy: Never` client pod ends in.
fn verdict(kubeconfig: &Path, name: &str) -> String {
    let mut phase = String::new();
    wait_until(
        Duration::from_secs(240),
        &format!("{name} to finish"),
        || {
            phase = jsonpath(kubeconfig, &["pod", name], "{.status.phase}");
            phase == "Succeeded" || phase == "Failed"
        },
    );
    phase
}

#[test]
fn pods_reach_each_other_across_nodes_by_ip_service_and_dns() {
    if cannot_run() {
        return;
    }
    common::bin_dir();
    let dir = tempfile::Builder::new()
        .prefix("daas-net")
        .tempdir_in("/tmp")
        .unwrap();
    let dir_path = std::fs::canonicalize(dir.path()).unwrap();
    let admin = dir_path.join("kubeconfig");

    let dev = Dev::start(&dir_path, free_port(), 2, &[]);
    dev.wait_for("dev cluster ready");
    wait_until(Duration::from_secs(240), "two Ready nodes", || {
        jsonpath(
            &admin,
            &["nodes"],
            "{range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {end}",
        )
        .trim()
            == "worker-1=True worker-2=True"
    });
    // Each node is its own namespace's address on the dev bridge, with a pod CIDR.
    let nodes = jsonpath(
        &admin,
        &["nodes"],
        "{range .items[*]}{.status.addresses[?(@.type==\"InternalIP\")].address}={.spec.podCIDR} {end}",
    );
    let nodes: Vec<&str> = nodes.split_whitespace().collect();
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    // The dev network slot this cluster got (0 unless another `daas dev` holds it).
    let slot: u8 = std::fs::read_to_string(dir_path.join("dev-network-slot"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for n in &nodes {
        assert!(n.starts_with(&format!("10.199.{slot}.1")), "{nodes:?}");
        assert!(n.contains("=10.42."), "{nodes:?}");
    }

    // The server on worker-2.
    create(
        &dir_path,
        &admin,
        "web",
        &pod(
            "web",
            "worker-2",
            serde_json::json!({"app": "web"}),
            "mkdir -p /tmp/www && echo hello-from-web > /tmp/www/index.html && \
             exec httpd -f -p 8080 -h /tmp/www",
        ),
    );
    let out = kubectl(
        &admin,
        &["wait", "--for=condition=Ready", "pod/web", "--timeout=240s"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let web_ip = jsonpath(&admin, &["pod", "web"], "{.status.podIP}");
    let web_ip: std::net::Ipv4Addr = web_ip.trim().parse().unwrap();
    assert_eq!(web_ip.octets()[..2], [10, 42], "{web_ip}");
    create(
        &dir_path,
        &admin,
        "svc",
        &serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}
        }),
    );
    let cluster_ip = jsonpath(&admin, &["service", "web"], "{.spec.clusterIP}");
    let cluster_ip = cluster_ip.trim().to_owned();
    assert!(cluster_ip.starts_with("10.43."), "{cluster_ip}");

    // The clients on worker-1.
    // An HTTP GET with `nc` (this machine's busybox 1.35 `wget` segfaults, in pods as on the
    // host).
    let fetch = |host: &str, port: u16| {
        format!(
            "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} {port} | grep -q hello-from-web"
        )
    };
    let clients = [
        ("by-pod-ip", fetch(&web_ip.to_string(), 8080), "Succeeded"),
        ("by-cluster-ip", fetch(&cluster_ip, 80), "Succeeded"),
        (
            "by-name",
            format!(
                "nslookup web.default.svc.cluster.local && {}",
                fetch("web.default.svc.cluster.local", 80)
            ),
            "Succeeded",
        ),
        ("by-short-name", fetch("web", 80), "Succeeded"),
        (
            "missing-name",
            "nslookup missing.default.svc.cluster.local".to_owned(),
            "Failed",
        ),
    ];
    for (name, request, _) in &clients {
        create(
            &dir_path,
            &admin,
            name,
            &pod(name, "worker-1", serde_json::json!({}), &retrying(request)),
        );
    }
    let mut wrong = Vec::new();
    for (name, request, expected) in &clients {
        let phase = verdict(&admin, name);
        eprintln!("{name}: {phase} ({request})");
        if phase != *expected {
            wrong.push(format!("{name}: {phase}, expected {expected} ({request})"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");

    // NodePort: every node's address answers on the allocated port, from outside the nodes
    // (this test runs in the machine's own namespace, on the dev bridge like another host).
    create(
        &dir_path,
        &admin,
        "svc-np",
        &serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web-np", "namespace": "default"},
            "spec": {"type": "NodePort", "selector": {"app": "web"},
                     "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}
        }),
    );
    let node_port: u16 = jsonpath(&admin, &["service", "web-np"], "{.spec.ports[0].nodePort}")
        .trim()
        .parse()
        .unwrap();
    assert!((30000..=32767).contains(&node_port), "{node_port}");
    for node in &nodes {
        let ip = node.split('=').next().unwrap();
        let addr = format!("{ip}:{node_port}");
        wait_until(Duration::from_secs(60), &format!("NodePort {addr}"), || {
            http_get_from_here(&addr).contains("hello-from-web")
        });
    }

    // The `kubernetes` Service: its endpoint is the bridge address the workers' relay listens
    // on, and from a node the API answers on the ClusterIP with a certificate that names it.
    let endpoint = jsonpath(
        &admin,
        &[
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=kubernetes",
        ],
        "{.items[0].endpoints[0].addresses[0]}",
    );
    assert_eq!(endpoint.trim(), format!("10.199.{slot}.1"));
    let prefix = if slot == 0 {
        "daas-dev".to_owned()
    } else {
        format!("daas-dev{slot}")
    };
    let in_node = |args: &[&str]| {
        Command::new("ip")
            .args(["netns", "exec", &format!("{prefix}-w1")])
            .arg(kubectl_bin())
            .arg("--kubeconfig")
            .arg(&admin)
            .args(args)
            .output()
            .unwrap()
    };
    wait_until(Duration::from_secs(60), "the API on its ClusterIP", || {
        let out = in_node(&[
            "--server",
            "https://10.43.0.1:443",
            "get",
            "--raw",
            "/version",
        ]);
        out.status.success() && text(&out).contains("gitVersion")
    });

    // NetworkPolicy: only pods labelled role=client may reach `web` once the policy is in force.
    create(
        &dir_path,
        &admin,
        "netpol",
        &serde_json::json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "web-from-clients", "namespace": "default"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                                  "ports": [{"port": 8080}]}]}
        }),
    );
    let out = kubectl(&admin, &["get", "networkpolicies"]);
    assert!(
        text(&out).contains("web-from-clients") && text(&out).contains("app=web"),
        "{}",
        text(&out)
    );
    let direct = fetch(&web_ip.to_string(), 8080);
    // First wait (from an unlabelled pod) until the worker enforces the policy...
    let until_denied =
        format!("for i in $(seq 60); do if ! {direct}; then exit 0; fi; sleep 1; done; exit 1");
    create(
        &dir_path,
        &admin,
        "cut-off",
        &pod("cut-off", "worker-1", serde_json::json!({}), &until_denied),
    );
    assert_eq!(
        verdict(&admin, "cut-off"),
        "Succeeded",
        "the policy never took effect"
    );
    // ...then a labelled client still gets through and an unlabelled one does not.
    let three_tries =
        format!("for i in 1 2 3; do if {direct}; then exit 0; fi; sleep 1; done; exit 1");
    let policy_clients = [
        (
            "client",
            serde_json::json!({"role": "client"}),
            retrying(&direct),
            "Succeeded",
        ),
        ("stranger", serde_json::json!({}), three_tries, "Failed"),
    ];
    for (name, labels, script, _) in &policy_clients {
        create(
            &dir_path,
            &admin,
            name,
            &pod(name, "worker-1", labels.clone(), script),
        );
    }
    for (name, _, script, expected) in &policy_clients {
        let phase = verdict(&admin, name);
        eprintln!("{name}: {phase} ({script})");
        if phase != *expected {
            wrong.push(format!("{name}: {phase}, expected {expected} ({script})"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    drop(dev);
    // daas dev removed the namespaces it made.
    for ns in [format!("{prefix}-w1"), format!("{prefix}-w2")] {
        assert!(
            !Path::new("/run/netns").join(&ns).exists(),
            "{ns} left behind"
        );
    }
}
