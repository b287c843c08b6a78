//! `kubectl logs` through the enclave and a worker's tunnel, with every kubectl 1.27–1.33: each
//! option, the container choice (and kubectl's default-container annotation), `--previous`,
//! `-f` until the container stops, and `logs deploy/x` / `logs job/x` resolved by kubectl.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod streams_support;

use serde_json::json;
use streams_support::{Cluster, Kubectl, versions};

fn at(s: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_700_000_000 + s).unwrap()
}

#[test]
fn logs_with_every_option_and_every_kubectl() {
    let c = Cluster::start();
    let f = &c.worker.containers;
    c.pod("one", &["app"], json!({}));
    for (i, line) in ["first", "second", "third"].iter().enumerate() {
        f.log_at(
            "default",
            "one",
            "app",
            at(i64::try_from(i).unwrap() * 10),
            "stdout",
            line,
        );
    }
    c.pod(
        "two",
        &["main", "side"],
        json!({"annotations": {"kubectl.kubernetes.io/default-container": "side"}}),
    );
    f.log("default", "two", "main", "from main");
    f.log("default", "two", "side", "from side");
    c.pod("restarted", &["app"], json!({}));
    f.log("default", "restarted", "app", "before the restart");
    f.restart("default", "restarted", "app");
    f.log("default", "restarted", "app", "after the restart");
    let since_time = at(10).to_string();
    for (version, bin) in versions() {
        let k = Kubectl::new(&version, &bin, &c.enclave.kubeconfig());
        assert_eq!(
            k.ok(&["logs", "one"]),
            "first\nsecond\nthird\n",
            "{version}"
        );
        assert_eq!(k.ok(&["logs", "one", "--tail=1"]), "third\n", "{version}");
        assert_eq!(
            k.ok(&["logs", "one", "--limit-bytes=8"]),
            "first\nse",
            "{version}"
        );
        assert_eq!(
            k.ok(&["logs", "one", "--since-time", &since_time]),
            "second\nthird\n",
            "{version}"
        );
        // All three lines are from 2023: none is in the last hour.
        assert_eq!(k.ok(&["logs", "one", "--since=1h"]), "", "{version}");
        assert_eq!(
            k.ok(&["logs", "one", "--timestamps", "--tail=1"]),
            format!("{} third\n", at(20)),
            "{version}"
        );
        assert_eq!(
            k.ok(&["logs", "two", "-c", "main"]),
            "from main\n",
            "{version}"
        );
        // kubectl reads the default-container annotation itself.
        assert_eq!(k.ok(&["logs", "two"]), "from side\n", "{version}");
        assert_eq!(
            k.ok(&["logs", "restarted"]),
            "after the restart\n",
            "{version}"
        );
        assert_eq!(
            k.ok(&["logs", "restarted", "--previous"]),
            "before the restart\n",
            "{version}"
        );
        let out = k.run(&["logs", "one", "--previous"]);
        assert!(!out.status.success(), "{version}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("previous terminated container"),
            "{version}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = k.run(&["logs", "two", "-c", "nope"]);
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("container nope is not valid for pod two"),
            "{version}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn follow_streams_until_the_container_stops() {
    let c = Cluster::start();
    for (version, bin) in versions() {
        let name = format!("follow-{}", version.replace('.', "-"));
        c.pod(&name, &["app"], json!({}));
        let f = &c.worker.containers;
        f.log("default", &name, "app", "before");
        let k = Kubectl::new(&version, &bin, &c.enclave.kubeconfig());
        let mut child = k.spawn(&["logs", "-f", &name]);
        // Lines written while kubectl follows arrive; stopping the container ends the stream.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let line = |what: &str| {
            rx.recv_timeout(std::time::Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("{version}: no {what} line from kubectl logs -f"))
        };
        assert_eq!(line("first"), "before", "{version}");
        f.log("default", &name, "app", "during");
        assert_eq!(line("followed"), "during", "{version}");
        f.stop("default", &name, "app");
        let out = streams_support::kubectl::wait_bounded(
            child,
            std::time::Duration::from_secs(60),
            "logs -f",
        );
        assert!(
            out.status.success(),
            "{version}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            rx.recv().is_err(),
            "{version}: nothing after the container stopped"
        );
    }
}

#[test]
fn kubectl_resolves_deployments_and_jobs_to_their_pods() {
    let c = Cluster::start();
    let admin = c.enclave.admin();
    // The pod belongs to a ConfigMap (as controller), so the deployment's and job's controllers
    // leave it alone; kubectl finds it by their selectors.
    admin.ok(&["create", "configmap", "holder"]);
    let holder = admin.ok(&[
        "get",
        "configmap",
        "holder",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    c.pod(
        "web-1",
        &["app"],
        json!({
            "labels": {"app": "web"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "holder", "uid": holder, "controller": true}],
        }),
    );
    c.worker
        .containers
        .log("default", "web-1", "app", "serving");
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "app", "image": "docker.io/library/busybox:1.35"}]}}},
    });
    admin.ok_stdin(&["create", "-f", "-"], &deployment.to_string());
    let job = json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "batch"},
        "spec": {"suspend": true, "manualSelector": true, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"restartPolicy": "Never", "containers": [{"name": "app", "image": "docker.io/library/busybox:1.35"}]}}},
    });
    admin.ok_stdin(&["create", "-f", "-"], &job.to_string());
    for (version, bin) in versions() {
        let k = Kubectl::new(&version, &bin, &c.enclave.kubeconfig());
        assert_eq!(k.ok(&["logs", "deploy/web"]), "serving\n", "{version}");
        assert_eq!(k.ok(&["logs", "job/batch"]), "serving\n", "{version}");
    }
}
