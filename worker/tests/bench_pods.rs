//! The pod runtime alone (no API server): busybox pods handed to it at once, time from
//! upsert to a Running status for each, as upstream's pod startup SLI measures it; then, on
//! the same containerd, the peer: the same number of pods through CRI directly, all at once
//! (sandbox, container, start; nothing else), which is the floor any node agent on this
//! containerd, runc and CNI sits on. Each round measures both; the ratios are ours over the
//! peer's. Pods come all at once, or `DAAS_BENCH_RATE` per second (upstream's pod startup
//! SLO is measured at a creation rate the cluster sustains); each pod's time runs from its
//! own creation. CI runs it on a tiny workload (5 pods; no figure is checked); the benchmark
//! is `DAAS_BENCH_PODS=100 DAAS_BENCH_ROUNDS=3 [DAAS_BENCH_RATE=5] cargo test -p worker
//! --release --test bench_pods -- --nocapture`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use support::*;
use worker::runtime::{BUSYBOX_IMAGE, Cri};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Sorted start times with their p50, p99 and the pods/s of the whole batch.
struct Figures {
    p50: Duration,
    p99: Duration,
    per_second: f64,
}

fn figures(mut times: Vec<Duration>, total: Duration) -> Figures {
    times.sort();
    let pct = |p: usize| times[(times.len() * p / 100).min(times.len() - 1)];
    Figures {
        p50: pct(50),
        p99: pct(99),
        per_second: times.len() as f64 / total.as_secs_f64(),
    }
}

/// When pod `i` is created: at once (`rate` 0) or `i / rate` seconds in.
fn creation_offset(i: usize, rate: f64) -> Duration {
    if rate > 0.0 {
        Duration::from_secs_f64(i as f64 / rate)
    } else {
        Duration::ZERO
    }
}

/// Our pod runtime: `n` pods upserted (at once or at `rate` per second), each timed from
/// its upsert until its status says Running.
async fn ours(h: &Harness, n: usize, round: usize, rate: f64) -> (Figures, u64) {
    let pods: Vec<_> = (0..n)
        .map(|i| busybox_pod(&format!("bench-{round}-{i}"), "exec sleep 3600"))
        .collect();
    let started = Instant::now();
    let mut created: Vec<Option<Instant>> = vec![None; n];
    let mut running: Vec<Option<Duration>> = vec![None; n];
    while running.iter().any(Option::is_none) {
        for (i, p) in pods.iter().enumerate() {
            if created[i].is_none() && started.elapsed() >= creation_offset(i, rate) {
                h.pods().upsert(p.clone());
                created[i] = Some(Instant::now());
            }
        }
        for (i, p) in pods.iter().enumerate() {
            if let Some(at) = created[i]
                && running[i].is_none()
                && h.api
                    .status(p.metadata.uid.as_deref().unwrap())
                    .is_some_and(|s| phase(&s) == "Running")
            {
                running[i] = Some(at.elapsed());
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "not all pods ran within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let total = started.elapsed();
    let rss = rss_kib(std::process::id());
    (figures(running.into_iter().flatten().collect(), total), rss)
}

/// The peer: `n` pods through CRI directly (at once or at `rate` per second), each timed
/// from its creation until StartContainer returned.
async fn containerd_alone(h: &Harness, n: usize, round: usize, rate: f64) -> Figures {
    let cri = h.cri();
    let logs = h.dir.path().join(format!("peer-logs-{round}"));
    let cgroups = format!("{}/peer-{round}", h.config_cgroup_root());
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let cri = cri.clone();
            let log_directory = logs.join(format!("pod-{i}"));
            let cgroup_parent = format!("{cgroups}/pod{i}");
            tokio::spawn(async move {
                tokio::time::sleep_until((started + creation_offset(i, rate)).into()).await;
                let created = Instant::now();
                std::fs::create_dir_all(&log_directory).unwrap();
                start_one(&cri, round, i, &log_directory, cgroup_parent).await;
                created.elapsed()
            })
        })
        .collect();
    let mut times = Vec::with_capacity(n);
    for t in tasks {
        times.push(t.await.unwrap());
    }
    figures(times, started.elapsed())
}

/// RunPodSandbox, CreateContainer, StartContainer for one busybox pod.
async fn start_one(
    cri: &Cri,
    round: usize,
    i: usize,
    log_directory: &std::path::Path,
    cgroup_parent: String,
) {
    let sandbox = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: format!("peer-{round}-{i}"),
            uid: format!("peer-uid-{round}-{i}"),
            namespace: "bench".to_owned(),
            attempt: 0,
        }),
        hostname: format!("peer-{round}-{i}"),
        log_directory: log_directory.display().to_string(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent,
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Pod as i32,
                    pid: cri::NamespaceMode::Container as i32,
                    ipc: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod_sandbox_id = cri
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sandbox.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .pod_sandbox_id;
    let container = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "main".to_owned(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: BUSYBOX_IMAGE.to_owned(),
            ..Default::default()
        }),
        command: vec!["sh".into(), "-c".into(), "exec sleep 3600".into()],
        log_path: "main/0.log".to_owned(),
        ..Default::default()
    };
    let container_id = cri
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id,
            config: Some(container),
            sandbox_config: Some(sandbox),
        })
        .await
        .unwrap()
        .container_id;
    cri.start_container(cri::StartContainerRequest { container_id })
        .await
        .unwrap();
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_pods() {
    let n = env_number("DAAS_BENCH_PODS", 5);
    let rounds = env_number("DAAS_BENCH_ROUNDS", 1).max(1);
    let rate = std::env::var("DAAS_BENCH_RATE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    let arrival = if rate > 0.0 {
        format!("{rate} pods/s")
    } else {
        "at once".to_owned()
    };
    let (mut p50_ratios, mut p99_ratios) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let Some(mut h) = Harness::start_with(Duration::from_secs(10)).await else {
            return;
        };
        let rss_before = rss_kib(std::process::id());
        let (ours, rss_after) = ours(&h, n, round, rate).await;
        let containerd_rss = rss_kib(h.containerd.as_ref().unwrap().pid().unwrap());
        // Our pods go (and their cgroups) before the peer's start on the same containerd.
        if let Some(pods) = h.pods.take() {
            pods.shutdown(worker::pods::Shutdown::RemovePods)
                .await
                .unwrap();
        }
        let peer = containerd_alone(&h, n, round, rate).await;
        worker::runtime::remove_all_pods(&h.cri()).await.unwrap();
        h.stop().await;
        let p50_ratio = ours.p50.as_secs_f64() / peer.p50.as_secs_f64();
        let p99_ratio = ours.p99.as_secs_f64() / peer.p99.as_secs_f64();
        println!(
            "bench_pods round {round}: {n} pods {arrival}; create->Running p50 {:.2?} p99 {:.2?} \
             ({:.1} pods/s) | containerd alone p50 {:.2?} p99 {:.2?} ({:.1} pods/s) | ratio \
             p50 {p50_ratio:.2} p99 {p99_ratio:.2}; agent process RSS {} MiB (before {} MiB); \
             containerd RSS {} MiB",
            ours.p50,
            ours.p99,
            ours.per_second,
            peer.p50,
            peer.p99,
            peer.per_second,
            rss_after / 1024,
            rss_before / 1024,
            containerd_rss / 1024,
        );
        p50_ratios.push(p50_ratio);
        p99_ratios.push(p99_ratio);
    }
    println!(
        "bench_pods: median over {rounds} round(s) of ours / containerd alone: p50 {:.2}, p99 {:.2}",
        median(p50_ratios),
        median(p99_ratios)
    );
}
