//! The pod runtime alone (no API server): busybox pods handed to it at once, time from
//! upsert to a Running status for each, as upstream's pod startup SLI measures it. CI runs
//! it on a tiny workload (5 pods; no figure is checked); the benchmark is
//! `DAAS_BENCH_PODS=100 cargo test -p worker --release --test bench_pods -- --nocapture`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::*;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_pods() {
    let pods_wanted: usize = std::env::var("DAAS_BENCH_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let Some(h) = Harness::start_with(Duration::from_secs(10)).await else {
        return;
    };
    let pods: Vec<_> = (0..pods_wanted)
        .map(|i| busybox_pod(&format!("bench-{i}"), "exec sleep 3600"))
        .collect();
    let rss_before = rss_kib(std::process::id());
    let started = Instant::now();
    for p in &pods {
        h.pods().upsert(p.clone());
    }
    let mut running: Vec<Option<Duration>> = vec![None; pods_wanted];
    while running.iter().any(Option::is_none) {
        for (i, p) in pods.iter().enumerate() {
            if running[i].is_none()
                && h.api
                    .status(p.metadata.uid.as_deref().unwrap())
                    .is_some_and(|s| phase(&s) == "Running")
            {
                running[i] = Some(started.elapsed());
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "not all pods ran within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let total = started.elapsed();
    let mut times: Vec<Duration> = running.into_iter().flatten().collect();
    times.sort();
    let pct = |p: usize| times[(times.len() * p / 100).min(times.len() - 1)];
    let rss_after = rss_kib(std::process::id());
    let containerd_rss = rss_kib(h.containerd.as_ref().unwrap().pid().unwrap());
    println!(
        "bench_pods: {pods_wanted} pods; create->Running p50 {:.2?} p99 {:.2?} max {:.2?}; {:.1} pods/s; \
         agent process RSS {} MiB (before {} MiB); containerd RSS {} MiB",
        pct(50),
        pct(99),
        times[times.len() - 1],
        pods_wanted as f64 / total.as_secs_f64(),
        rss_after / 1024,
        rss_before / 1024,
        containerd_rss / 1024,
    );
    h.stop().await;
}
