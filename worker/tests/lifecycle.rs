//! Pod lifecycle against a real containerd: a pod runs with the kubelet's status, init
//! containers run in order, restart policies and CrashLoopBackOff, missing images, bad
//! commands, container log rotation. Ending pods is in `termination.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busybox_pod_runs_with_the_kubelets_status() {
    let Some(h) = Harness::start().await else {
        return;
    };
    let pod = busybox_pod("web", "echo started; exec sleep 3600");
    h.pods().upsert(pod.clone());
    let s = h
        .wait(&pod, 60, "Running", |s| {
            phase(s) == "Running" && condition(s, "Ready").as_deref() == Some("True")
        })
        .await;
    let c = container_status(&s, "main");
    assert!(c.state.as_ref().unwrap().running.is_some());
    assert_eq!(c.restart_count, 0);
    assert!(c.ready);
    assert_eq!(c.started, Some(true));
    assert_eq!(c.image, "docker.io/library/busybox:1.35");
    assert!(
        c.image_id.starts_with("sha256:") || c.image_id.contains("@sha256:"),
        "imageID {}",
        c.image_id
    );
    assert!(
        c.container_id
            .as_deref()
            .unwrap()
            .starts_with("containerd://")
    );
    assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
    assert_eq!(s.host_ip.as_deref(), Some("127.0.0.1"));
    let ip = s.pod_ip.clone().unwrap();
    assert!(ip.starts_with("10.88."), "pod IP {ip}");
    assert_eq!(s.pod_ips.as_ref().unwrap()[0].ip, ip);
    assert!(s.start_time.is_some());
    for kind in [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
    ] {
        assert_eq!(condition(&s, kind).as_deref(), Some("True"), "{kind}");
    }
    // /etc/hosts and the hostname as the kubelet writes them.
    let hosts = exec(&h, &s, "main", &["cat", "/etc/hosts"]).await;
    assert!(
        hosts.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"),
        "{hosts}"
    );
    assert!(hosts.ends_with(&format!("{ip}\tweb\n")), "{hosts}");
    assert_eq!(exec(&h, &s, "main", &["hostname"]).await.trim(), "web");
    // Deleting it: SIGTERM, final status, the object deleted, nothing left in containerd.
    h.pods().upsert(deleted(pod.clone(), 2));
    let uid = pod.metadata.uid.clone().unwrap();
    h.api
        .wait_for(std::time::Duration::from_secs(30), || {
            h.api.deleted(&uid).then_some(())
        })
        .await
        .expect("pod object deleted");
    let left = h
        .cri()
        .list_containers(Default::default())
        .await
        .unwrap()
        .containers;
    assert!(left.is_empty(), "containers left: {left:?}");
    let sandboxes = h
        .cri()
        .list_pod_sandbox(Default::default())
        .await
        .unwrap()
        .items;
    assert!(sandboxes.is_empty(), "sandboxes left: {sandboxes:?}");
    let last = h.api.status(&uid).unwrap();
    assert!(
        matches!(phase(&last), "Failed" | "Succeeded"),
        "final phase {:?}",
        last.phase
    );
    assert!(
        container_status(&last, "main")
            .state
            .as_ref()
            .unwrap()
            .terminated
            .is_some()
    );
    h.stop().await;
}

fn empty_dir(name: &str) -> k8s_openapi::api::core::v1::Volume {
    k8s_openapi::api::core::v1::Volume {
        name: name.to_owned(),
        empty_dir: Some(Default::default()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_run_in_order_before_the_containers() {
    let Some(h) = Harness::start().await else {
        return;
    };
    let mut pod = busybox_pod("init", "cat /work/log; exec sleep 3600");
    let spec = pod.spec.as_mut().unwrap();
    let mut first = container("first", "sleep 1; echo first >> /work/log");
    let mut second = container("second", "echo second >> /work/log");
    first.volume_mounts = Some(vec![mount("work", "/work")]);
    second.volume_mounts = Some(vec![mount("work", "/work")]);
    spec.init_containers = Some(vec![first, second]);
    spec.containers[0].volume_mounts = Some(vec![mount("work", "/work")]);
    spec.volumes = Some(vec![empty_dir("work")]);
    h.pods().upsert(pod.clone());
    let s = h.wait(&pod, 60, "Running", |s| phase(s) == "Running").await;
    assert_eq!(
        exec(&h, &s, "main", &["cat", "/work/log"]).await,
        "first\nsecond\n"
    );
    for name in ["first", "second"] {
        let t = container_status(&s, name)
            .state
            .clone()
            .unwrap()
            .terminated
            .unwrap();
        assert_eq!(
            (t.exit_code, t.reason.as_deref()),
            (0, Some("Completed")),
            "{name}"
        );
    }
    assert_eq!(condition(&s, "Initialized").as_deref(), Some("True"));
    // While the first init container ran: Pending, the rest PodInitializing, not initialized.
    let history = h.api.statuses(pod.metadata.uid.as_deref().unwrap());
    let during = history
        .iter()
        .find(|s| {
            container_status(s, "first")
                .state
                .as_ref()
                .is_some_and(|st| st.running.is_some())
        })
        .expect("a status while the first init container ran");
    assert_eq!(phase(during), "Pending");
    assert_eq!(
        waiting_reason(during, "second").as_deref(),
        Some("PodInitializing")
    );
    assert_eq!(
        waiting_reason(during, "main").as_deref(),
        Some("PodInitializing")
    );
    let init = during
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Initialized")
        .unwrap();
    assert_eq!(init.reason.as_deref(), Some("ContainersNotInitialized"));
    assert_eq!(
        init.message.as_deref(),
        Some("containers with incomplete status: [first second]")
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policies_never_and_on_failure() {
    let Some(h) = Harness::start().await else {
        return;
    };
    let mut never = busybox_pod("never", "echo bye > /dev/termination-log; exit 3");
    never.spec.as_mut().unwrap().restart_policy = Some("Never".to_owned());
    let mut on_failure = busybox_pod("onfailure", "exit 0");
    on_failure.spec.as_mut().unwrap().restart_policy = Some("OnFailure".to_owned());
    let mut on_failure_crash = busybox_pod("onfailure-crash", "exit 1");
    on_failure_crash.spec.as_mut().unwrap().restart_policy = Some("OnFailure".to_owned());
    for p in [&never, &on_failure, &on_failure_crash] {
        h.pods().upsert(p.clone());
    }
    let s = h.wait(&never, 60, "Failed", |s| phase(s) == "Failed").await;
    let t = container_status(&s, "main")
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(
        (t.exit_code, t.reason.as_deref(), t.message.as_deref()),
        (3, Some("Error"), Some("bye\n"))
    );
    assert_eq!(container_status(&s, "main").restart_count, 0);
    let ready = s
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_deref()),
        ("False", Some("PodFailed"))
    );
    let s = h
        .wait(&on_failure, 60, "Succeeded", |s| phase(s) == "Succeeded")
        .await;
    assert_eq!(container_status(&s, "main").restart_count, 0);
    let ready = s
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason.as_deref(), Some("PodCompleted"));
    let s = h
        .wait(&on_failure_crash, 60, "restarted", |s| {
            container_status(s, "main").restart_count >= 1
        })
        .await;
    assert_eq!(phase(&s), "Running");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_backs_off_10s_then_20s() {
    let Some(h) = Harness::start().await else {
        return;
    };
    let pod = busybox_pod("crash", "echo oops; exit 2");
    h.pods().upsert(pod.clone());
    let uid = pod.metadata.uid.clone().unwrap();
    let s = h
        .wait(&pod, 90, "back-off 20s", |s| {
            container_status(s, "main")
                .state
                .as_ref()
                .and_then(|st| st.waiting.as_ref())
                .and_then(|w| w.message.as_deref())
                .is_some_and(|m| m.starts_with("back-off 20s"))
        })
        .await;
    let c = container_status(&s, "main");
    assert_eq!(c.restart_count, 2);
    let w = c.state.clone().unwrap().waiting.unwrap();
    assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(
        w.message.as_deref(),
        Some(
            format!("back-off 20s restarting failed container=main pod=crash_default({uid})")
                .as_str()
        )
    );
    let last = c.last_state.clone().unwrap().terminated.unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (2, Some("Error")));
    assert_eq!(phase(&s), "Running");
    assert_eq!(condition(&s, "Ready").as_deref(), Some("False"));
    // The messages in order: 10s, then 20s; and the restart after the 10 s back-off waited it out.
    let mut messages: Vec<String> = h
        .api
        .statuses(&uid)
        .iter()
        .filter_map(|s| container_status(s, "main").state.clone()?.waiting?.message)
        .filter(|m| m.starts_with("back-off"))
        .map(|m| m.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect();
    messages.dedup();
    assert_eq!(messages, ["back-off 10s", "back-off 20s"]);
    let history = h.api.statuses(&uid);
    let run = |count: i32| {
        history
            .iter()
            .filter_map(|s| {
                let c = container_status(s, "main");
                (c.restart_count == count).then(|| {
                    c.state
                        .clone()?
                        .terminated
                        .or(c.last_state.clone()?.terminated)
                })?
            })
            .next_back()
    };
    let (first_end, second) = (
        run(1).and_then(|t| t.finished_at),
        run(2).and_then(|t| t.started_at),
    );
    let (end, start) = (
        first_end.expect("first run's finishedAt"),
        second.expect("second restart's startedAt"),
    );
    assert!(
        start.0.duration_since(end.0).as_secs_f64() >= 9.5,
        "restarted {:?} after the exit",
        start.0.duration_since(end.0)
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_image_fails_with_err_image_pull_then_back_off() {
    let Some(h) = Harness::start().await else {
        return;
    };
    let mut pod = busybox_pod("noimage", "true");
    pod.spec.as_mut().unwrap().containers[0].image =
        Some("registry.invalid/nothing/here:1.0".to_owned());
    let mut never = busybox_pod("neverpull", "true");
    never.spec.as_mut().unwrap().containers[0].image =
        Some("registry.invalid/nothing/here:1.0".to_owned());
    never.spec.as_mut().unwrap().containers[0].image_pull_policy = Some("Never".to_owned());
    h.pods().upsert(pod.clone());
    h.pods().upsert(never.clone());
    let s = h
        .wait(&pod, 60, "ErrImagePull", |s| {
            waiting_reason(s, "main").as_deref() == Some("ErrImagePull")
        })
        .await;
    let message = container_status(&s, "main")
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap()
        .message
        .unwrap();
    assert!(message.starts_with("rpc error: code = "), "{message}");
    assert_eq!(phase(&s), "Pending");
    let s = h
        .wait(&pod, 60, "ImagePullBackOff", |s| {
            waiting_reason(s, "main").as_deref() == Some("ImagePullBackOff")
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
        Some("Back-off pulling image \"registry.invalid/nothing/here:1.0\"")
    );
    let s = h
        .wait(&never, 60, "ErrImageNeverPull", |s| {
            waiting_reason(s, "main").as_deref() == Some("ErrImageNeverPull")
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
        Some(
            "Container image \"registry.invalid/nothing/here:1.0\" is not present with pull policy of Never"
        )
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_command_is_a_run_container_error_with_start_error() {
    let Some(h) = Harness::start().await else {
        return;
    };
    let mut pod = busybox_pod("badcmd", "");
    pod.spec.as_mut().unwrap().containers[0].command = Some(vec!["/no/such/binary".to_owned()]);
    h.pods().upsert(pod.clone());
    let s = h
        .wait(&pod, 60, "RunContainerError", |s| {
            waiting_reason(s, "main").as_deref() == Some("RunContainerError")
        })
        .await;
    let message = container_status(&s, "main")
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap()
        .message
        .unwrap();
    assert!(message.contains("/no/such/binary"), "{message}");
    let s = h
        .wait(&pod, 60, "CrashLoopBackOff after StartError", |s| {
            waiting_reason(s, "main").as_deref() == Some("CrashLoopBackOff")
        })
        .await;
    let last = container_status(&s, "main")
        .last_state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(
        (last.exit_code, last.reason.as_deref()),
        (128, Some("StartError"))
    );
    assert!(last.message.unwrap_or_default().contains("/no/such/binary"));
    h.stop().await;
}

/// The files of the `main` container's log directory: `0.log` and its rotated siblings.
fn log_files(h: &Harness, pod: &k8s_openapi::api::core::v1::Pod) -> Vec<(String, u64)> {
    let dir = h.dir.path().join("logs/pods").join(format!(
        "default_{}_{}/main",
        pod.metadata.name.as_deref().unwrap(),
        pod.metadata.uid.as_deref().unwrap()
    ));
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let len = e.metadata().map_or(0, |m| m.len());
                    (e.file_name().to_string_lossy().into_owned(), len)
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chatty_containers_log_is_rotated_and_written_on() {
    let Some(h) = Harness::start_configured(|c| {
        c.with_container_log_rotation(4096, 3)
            .with_log_rotation_interval(std::time::Duration::from_millis(200))
    })
    .await
    else {
        return;
    };
    let pod = busybox_pod(
        "chatty",
        "i=0; while true; do echo line-$i-0123456789abcdef0123456789abcdef; i=$((i+1)); sleep 0.005; done",
    );
    h.pods().upsert(pod.clone());
    h.wait(&pod, 60, "Running", |s| phase(s) == "Running").await;
    // Rotated files appear; never more than three files; containerd writes on into the
    // reopened 0.log (it grows again after each rotation).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut rotations_seen = std::collections::BTreeSet::new();
    let mut grew_after_rotation = false;
    while rotations_seen.len() < 3 || !grew_after_rotation {
        assert!(
            std::time::Instant::now() < deadline,
            "rotations seen: {rotations_seen:?}, files now: {:?}",
            log_files(&h, &pod)
        );
        let files = log_files(&h, &pod);
        assert!(files.len() <= 3, "{files:?}");
        for (name, _) in &files {
            if name.starts_with("0.log.") {
                rotations_seen.insert(name.clone());
            }
        }
        let current = files.iter().find(|(n, _)| n == "0.log").map_or(0, |f| f.1);
        if !rotations_seen.is_empty() && current > 0 {
            grew_after_rotation = true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The rotated files (no longer written) hold whole CRI entries.
    for (name, _) in log_files(&h, &pod)
        .into_iter()
        .filter(|(n, _)| n.starts_with("0.log."))
    {
        let dir = h.dir.path().join("logs/pods").join(format!(
            "default_chatty_{}/main",
            pod.metadata.uid.as_deref().unwrap()
        ));
        let text = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        for line in text.lines() {
            assert!(line.contains(" stdout F line-"), "{name}: {line:?}");
        }
    }
    h.stop().await;
}
