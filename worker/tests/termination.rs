//! Ending pods against a real containerd: graceful termination with preStop, adoption by a
//! restarted agent with restart counts kept, containers killed from outside, deadlines,
//! orphans, postStart hooks and emptyDir limits, and cleanup when a test fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::*;

fn host_path(name: &str, path: &std::path::Path) -> k8s_openapi::api::core::v1::Volume {
    k8s_openapi::api::core::v1::Volume {
        name: name.to_owned(),
        host_path: Some(k8s_openapi::api::core::v1::HostPathVolumeSource {
            path: path.display().to_string(),
            type_: Some("DirectoryOrCreate".to_owned()),
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_termination_runs_pre_stop_then_sigterm() {
    let Some(h) = Harness::start().await else {
        return;
    };
    let out = h.dir.path().join("out");
    let mut pod = busybox_pod(
        "graceful",
        "trap 'echo term >> /out/log; exit 0' TERM; echo up >> /out/log; while true; do sleep 0.2; done",
    );
    let spec = pod.spec.as_mut().unwrap();
    spec.termination_grace_period_seconds = Some(20);
    spec.volumes = Some(vec![host_path("out", &out)]);
    let c = &mut spec.containers[0];
    c.volume_mounts = Some(vec![mount("out", "/out")]);
    c.lifecycle = Some(k8s_openapi::api::core::v1::Lifecycle {
        pre_stop: Some(k8s_openapi::api::core::v1::LifecycleHandler {
            exec: Some(k8s_openapi::api::core::v1::ExecAction {
                command: Some(vec![
                    "sh".into(),
                    "-c".into(),
                    "echo prestop >> /out/log".into(),
                ]),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    h.pods().upsert(pod.clone());
    h.wait(&pod, 60, "Running", |s| phase(s) == "Running").await;
    h.pods().upsert(deleted(pod.clone(), 20));
    let uid = pod.metadata.uid.clone().unwrap();
    h.api
        .wait_for(std::time::Duration::from_secs(40), || {
            h.api.deleted(&uid).then_some(())
        })
        .await
        .expect("deleted");
    assert_eq!(
        std::fs::read_to_string(out.join("log")).unwrap(),
        "up\nprestop\nterm\n"
    );
    let last = h.api.status(&uid).unwrap();
    let t = container_status(&last, "main")
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(
        (t.exit_code, t.reason.as_deref()),
        (0, Some("Completed")),
        "exited on its TERM trap"
    );
    assert_eq!(phase(&last), "Succeeded");
    assert!(
        h.cri()
            .list_containers(Default::default())
            .await
            .unwrap()
            .containers
            .is_empty()
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_adopts_running_pods_and_keeps_restart_counts() {
    let Some(mut h) = Harness::start().await else {
        return;
    };
    let steady = busybox_pod("steady", "exec sleep 3600");
    let flaky = busybox_pod("flaky", "sleep 1; exit 1");
    h.pods().upsert(steady.clone());
    h.pods().upsert(flaky.clone());
    let before = h
        .wait(&steady, 60, "Running", |s| phase(s) == "Running")
        .await;
    let flaky_before = h
        .wait(&flaky, 60, "a restart", |s| {
            container_status(s, "main").restart_count >= 1
        })
        .await;
    let id_before = container_status(&before, "main").container_id.clone();
    let count_before = container_status(&flaky_before, "main").restart_count;
    // kill -9 of the agent: the runtime is dropped; a new one gets the pods from the API.
    h.restart_runtime();
    let with_status = |mut p: k8s_openapi::api::core::v1::Pod, s| {
        p.status = Some(s);
        p
    };
    let uid = steady.metadata.uid.clone().unwrap();
    let writes = h.api.statuses(&uid).len();
    h.pods()
        .sync_pods(vec![
            with_status(steady.clone(), before.clone()),
            with_status(flaky.clone(), flaky_before.clone()),
        ])
        .await
        .unwrap();
    let after = h
        .wait(&flaky, 60, "a later restart", |s| {
            container_status(s, "main").restart_count > count_before
        })
        .await;
    assert!(
        container_status(&after, "main").restart_count == count_before + 1,
        "restart count went {count_before} -> {}",
        container_status(&after, "main").restart_count
    );
    let steady_now = h.api.status(&uid).unwrap();
    assert_eq!(
        container_status(&steady_now, "main").container_id,
        id_before,
        "the healthy pod was restarted"
    );
    assert_eq!(container_status(&steady_now, "main").restart_count, 0);
    assert_eq!(
        steady_now.start_time, before.start_time,
        "startTime changed"
    );
    assert!(h.api.statuses(&uid).len() >= writes);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_killed_from_outside_is_restarted_per_policy() {
    let Some(h) = Harness::start().await else {
        return;
    };
    let always = busybox_pod("always", "exec sleep 3600");
    let mut never = busybox_pod("never-killed", "exec sleep 3600");
    never.spec.as_mut().unwrap().restart_policy = Some("Never".to_owned());
    h.pods().upsert(always.clone());
    h.pods().upsert(never.clone());
    for pod in [&always, &never] {
        let s = h.wait(pod, 60, "Running", |s| phase(s) == "Running").await;
        let id = container_status(&s, "main")
            .container_id
            .clone()
            .unwrap()
            .trim_start_matches("containerd://")
            .to_owned();
        h.cri()
            .stop_container(k8s_cri::v1::StopContainerRequest {
                container_id: id,
                timeout: 0,
            })
            .await
            .unwrap();
    }
    let s = h
        .wait(&always, 60, "restarted", |s| {
            container_status(s, "main").restart_count == 1
                && phase(s) == "Running"
                && container_status(s, "main").ready
        })
        .await;
    let last = container_status(&s, "main")
        .last_state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(last.exit_code, 137);
    let s = h.wait(&never, 60, "Failed", |s| phase(s) == "Failed").await;
    assert_eq!(container_status(&s, "main").restart_count, 0);
    assert_eq!(
        container_status(&s, "main")
            .state
            .clone()
            .unwrap()
            .terminated
            .unwrap()
            .exit_code,
        137
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_deadline_fails_the_pod() {
    let Some(h) = Harness::start().await else {
        return;
    };
    let mut pod = busybox_pod("deadline", "exec sleep 3600");
    pod.spec.as_mut().unwrap().active_deadline_seconds = Some(3);
    h.pods().upsert(pod.clone());
    let s = h
        .wait(&pod, 60, "DeadlineExceeded", |s| phase(s) == "Failed")
        .await;
    assert_eq!(s.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        s.message.as_deref(),
        Some("Pod was active on the node longer than the specified deadline")
    );
    let t = container_status(&s, "main")
        .state
        .clone()
        .unwrap()
        .terminated;
    assert!(t.is_some(), "container still running after the deadline");
    h.stop().await;
}

/// A test that fails (panics) while its pods run still leaves nothing behind.
#[test]
fn a_failing_test_still_removes_its_pods_and_containerd() {
    if !available() {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let failed = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let h = Harness::start().await.unwrap();
            let pod = busybox_pod("dropped", "exec sleep 3600");
            h.pods().upsert(pod.clone());
            let s = h.wait(&pod, 60, "Running", |s| phase(s) == "Running").await;
            let id = container_status(&s, "main").container_id.clone().unwrap();
            let bridge = format!("daast{}", h.node.trim_start_matches("node-"));
            tx.send((
                h.containerd.as_ref().unwrap().pid().unwrap(),
                h.dir.path().to_path_buf(),
                bridge,
                id,
            ))
            .unwrap();
            panic!("a test failing while its pod runs");
        });
    })
    .join();
    assert!(failed.is_err());
    let (pid, dir, bridge, id) = rx.recv().unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "containerd still runs"
    );
    assert!(id.starts_with("containerd://"));
    let shims = std::process::Command::new("pgrep")
        .args(["-f", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        shims.stdout.is_empty(),
        "processes of that containerd still run: {}",
        String::from_utf8_lossy(&shims.stdout)
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(dir.to_str().unwrap()),
        "mounts left under {}",
        dir.display()
    );
    let links = std::process::Command::new("ip")
        .args(["link", "show", &bridge])
        .output()
        .unwrap();
    assert!(!links.status.success(), "bridge {bridge} left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_the_api_no_longer_has_are_removed_after_a_restart() {
    let Some(mut h) = Harness::start().await else {
        return;
    };
    let kept = busybox_pod("kept", "exec sleep 3600");
    let orphan = busybox_pod("orphan", "exec sleep 3600");
    h.pods().upsert(kept.clone());
    h.pods().upsert(orphan.clone());
    h.wait(&kept, 60, "Running", |s| phase(s) == "Running")
        .await;
    h.wait(&orphan, 60, "Running", |s| phase(s) == "Running")
        .await;
    h.restart_runtime();
    // The API lists only `kept` (orphan was force-deleted while the agent was down).
    h.pods().sync_pods(vec![kept.clone()]).await.unwrap();
    let cri = h.cri();
    let orphan_uid = orphan.metadata.uid.clone().unwrap();
    let gone = h
        .api
        .wait_for(std::time::Duration::from_secs(30), || {
            let cri = cri.clone();
            let uid = orphan_uid.clone();
            let listed = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let filter = k8s_cri::v1::PodSandboxFilter {
                        label_selector: [("io.kubernetes.pod.uid".to_owned(), uid)]
                            .into_iter()
                            .collect(),
                        ..Default::default()
                    };
                    cri.list_pod_sandbox(k8s_cri::v1::ListPodSandboxRequest {
                        filter: Some(filter),
                    })
                    .await
                    .map(|r| r.items.len())
                })
            })
            .join()
            .unwrap();
            (listed.ok() == Some(0)).then_some(())
        })
        .await;
    assert!(gone.is_ok(), "the orphan's sandbox is still there");
    assert!(
        !h.api.deleted(&orphan_uid),
        "an orphan has no API object to delete"
    );
    // The pod's worker removes its files after its sandbox: wait for them too.
    let files = h.dir.path().join("pods").join(&orphan_uid);
    let _ = h
        .api
        .wait_for(std::time::Duration::from_secs(30), || {
            (!files.exists()).then_some(())
        })
        .await;
    assert!(!files.exists(), "the orphan's files are left");
    let s = h.api.status(kept.metadata.uid.as_deref().unwrap()).unwrap();
    assert_eq!(phase(&s), "Running");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_start_hooks_and_empty_dir_size_limits() {
    let Some(h) = Harness::start().await else {
        return;
    };
    let handler = |cmd: &str| k8s_openapi::api::core::v1::LifecycleHandler {
        exec: Some(k8s_openapi::api::core::v1::ExecAction {
            command: Some(vec!["sh".into(), "-c".into(), cmd.into()]),
        }),
        ..Default::default()
    };
    let mut ok = busybox_pod("poststart", "exec sleep 3600");
    ok.spec.as_mut().unwrap().containers[0].lifecycle =
        Some(k8s_openapi::api::core::v1::Lifecycle {
            post_start: Some(handler("echo hooked > /tmp/hook")),
            ..Default::default()
        });
    let mut failing = busybox_pod("poststart-fails", "exec sleep 3600");
    failing.spec.as_mut().unwrap().containers[0].lifecycle =
        Some(k8s_openapi::api::core::v1::Lifecycle {
            post_start: Some(handler("echo no; exit 7")),
            ..Default::default()
        });
    let mut big = busybox_pod(
        "too-big",
        "dd if=/dev/zero of=/scratch/fill bs=1M count=4; exec sleep 3600",
    );
    let spec = big.spec.as_mut().unwrap();
    spec.volumes = Some(vec![k8s_openapi::api::core::v1::Volume {
        name: "scratch".into(),
        empty_dir: Some(k8s_openapi::api::core::v1::EmptyDirVolumeSource {
            medium: None,
            size_limit: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                "1Mi".into(),
            )),
        }),
        ..Default::default()
    }]);
    spec.containers[0].volume_mounts = Some(vec![mount("scratch", "/scratch")]);
    for p in [&ok, &failing, &big] {
        h.pods().upsert(p.clone());
    }
    let s = h.wait(&ok, 60, "Running", |s| phase(s) == "Running").await;
    assert_eq!(
        exec(&h, &s, "main", &["cat", "/tmp/hook"]).await,
        "hooked\n"
    );
    let s = h
        .wait(&failing, 60, "PostStartHookError", |s| {
            waiting_reason(s, "main").as_deref() == Some("PostStartHookError")
        })
        .await;
    assert_eq!(
        container_status(&s, "main")
            .state
            .clone()
            .unwrap()
            .waiting
            .unwrap()
            .message
            .as_deref(),
        Some("no\n")
    );
    let s = h
        .wait(&big, 60, "Evicted", |s| {
            s.reason.as_deref() == Some("Evicted")
        })
        .await;
    assert_eq!(phase(&s), "Failed");
    assert_eq!(
        s.message.as_deref(),
        Some("Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". ")
    );
    h.stop().await;
}
