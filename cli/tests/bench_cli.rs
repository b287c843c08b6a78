//! The benchmarks run end to end on tiny workloads: `daas bench relay`, `daas bench api`, `daas
//! bench join` and `daas bench scheduler` (which run `daas-bench`) start their real peers,
//! finish, and print their summary lines. Figures are not checked (benchmarks are not timed
//! tests).
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;

use common::{daas, text};

#[test]
fn bench_relay_runs_against_direct_and_socat_and_prints_its_ratio_line() {
    common::bin_dir();
    let out = daas(&[
        "bench",
        "relay",
        "--clients",
        "2",
        "--requests",
        "50",
        "--warmup",
        "5",
        "--latency-requests",
        "50",
        "--rounds",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for target in ["direct", "relay", "socat"] {
        assert!(stdout.contains(target), "{stdout}");
    }
    let rounds = stdout
        .lines()
        .find_map(|l| l.strip_prefix("relay/socat ratio per round: "))
        .and_then(|l| l.split(';').next())
        .unwrap_or_else(|| panic!("no per-round line in {stdout}"));
    assert_eq!(rounds.split_whitespace().count(), 2, "{stdout}");
    assert!(
        stdout.contains("relay/socat throughput ratio: ") && stdout.contains("added p99: "),
        "{stdout}"
    );
}

#[test]
fn bench_api_drives_the_real_enclave_and_prints_its_summary_line() {
    common::bin_dir();
    let out = daas(&[
        "bench",
        "api",
        "--concurrency",
        "4",
        "--gets",
        "100",
        "--list-objects",
        "30",
        "--lists",
        "10",
        "--creates",
        "40",
        "--watchers",
        "25",
        "--watch-changes",
        "3",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in [
        "GET one configmap",
        "LIST 30 (JSON)",
        "LIST 30 (Table)",
        "create configmap",
        "delete configmap",
        "watch: 25 watchers x 3 changes",
        "api: GET ",
    ] {
        assert!(stdout.contains(line), "{line:?} missing:\n{stdout}");
    }
}

#[test]
fn bench_help_is_daas_benchs_and_a_missing_daas_bench_is_named() {
    let out = daas(&["bench", "--help"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for sub in ["store", "relay", "api", "join", "scheduler"] {
        assert!(stdout.contains(sub), "{stdout}");
    }

    // `daas` alone, without `daas-bench` next to it.
    let dir = tempfile::tempdir().unwrap();
    let daas = dir.path().join("daas");
    std::fs::copy(common::bin("daas"), &daas).unwrap();
    let out = std::process::Command::new(&daas)
        .args(["bench", "store"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("daas-bench") && stderr.contains("cargo build --release -p bench"),
        "{stderr}"
    );
}

#[test]
fn bench_join_drives_the_real_enclave_and_worker_and_prints_its_summary_lines() {
    common::bin_dir();
    let out = daas(&[
        "bench",
        "join",
        "--joins",
        "6",
        "--concurrency",
        "2",
        "--idle-secs",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in [
        "join handshakes: 6 in ",
        "joins/s",
        "daas-worker idle after 2 s",
    ] {
        assert!(stdout.contains(line), "{line:?} missing:\n{stdout}");
    }
}

#[test]
fn bench_scheduler_runs_the_three_workloads_and_prints_its_summary_line() {
    common::bin_dir();
    let out = daas(&["bench", "scheduler", "--tiny"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in [
        "SchedulingBasic: 300 pods bound",
        "enclave RSS with 100 nodes and 320 pods",
        "TopologySpreading: 100 pods bound",
        "SchedulingPodAntiAffinity: 40 pods bound",
        "scheduler pods/s: basic ",
    ] {
        assert!(stdout.contains(line), "{line:?} missing:\n{stdout}");
    }
}
