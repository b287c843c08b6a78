//! `daas-bench` itself: its commands are listed and bad arguments are clear errors before
//! anything starts. (Being an integration test of the `bench` package also makes
//! `cargo test --workspace --no-run` build the `daas-bench` binary, which the `cli` tests run.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_daas-bench"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn every_benchmark_is_listed() {
    let out = bench(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for command in ["store", "relay", "api", "join", "scheduler", "network"] {
        assert!(help.contains(command), "{command} in {help}");
    }
}

#[test]
fn bad_arguments_are_clear_errors_before_anything_starts() {
    let out = bench(&["api", "--concurrency", "0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--concurrency, --gets, --lists and --creates must be at least 1"),
        "{err}"
    );
    let out = bench(&["api", "--list-pods", "many"]);
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--list-pods"));
    let out = bench(&["nonsense"]);
    assert_eq!(out.status.code(), Some(2));
}
