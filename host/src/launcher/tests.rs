//! Launcher tests against recorded nitro-cli output (`testdata/nitro-cli/`) and real child processes.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Output};
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::nitro::parse_json_output;
use super::*;
use crate::error::Error;

const RUN: &str = include_str!("../../testdata/nitro-cli/run-enclave.json");
const DESCRIBE: &str = include_str!("../../testdata/nitro-cli/describe-enclaves.json");
const DESCRIBE_EMPTY: &str = "[]\n";
const TERMINATE: &str = include_str!("../../testdata/nitro-cli/terminate-enclave.json");
const E27: &str = include_str!("../../testdata/nitro-cli/run-enclave-e27.stderr");

/// Replays recorded outputs in order and records the argument lists it was given.
#[derive(Debug, Default)]
struct Replay {
    outputs: Mutex<VecDeque<(i32, &'static str, &'static str)>>,
    calls: Mutex<Vec<Vec<String>>>,
}

impl Replay {
    fn new(outputs: impl IntoIterator<Item = (i32, &'static str, &'static str)>) -> Self {
        Self {
            outputs: Mutex::new(outputs.into_iter().collect()),
            calls: Mutex::default(),
        }
    }
    fn calls(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.join(" "))
            .collect()
    }
}

impl CommandRunner for Replay {
    fn output<'a>(
        &'a self,
        _: &'a Path,
        args: &'a [OsString],
    ) -> BoxFuture<'a, std::io::Result<Output>> {
        self.calls.lock().unwrap().push(
            args.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
        );
        let fallback = match args.first().and_then(|a| a.to_str()) {
            Some("terminate-enclave") => (0, TERMINATE, ""),
            _ => (0, DESCRIBE, ""),
        };
        let next = self.outputs.lock().unwrap().pop_front().unwrap_or(fallback);
        Box::pin(async move {
            let (code, stdout, stderr) = next;
            Ok(Output {
                status: ExitStatus::from_raw(code << 8),
                stdout: stdout.as_bytes().to_vec(),
                stderr: stderr.as_bytes().to_vec(),
            })
        })
    }
}

fn request() -> RunEnclaveRequest {
    RunEnclaveRequest {
        eif: "/opt/daas/enclave.eif".into(),
        cpus: 2,
        memory_mib: 1600,
        cid: Some(16),
        name: None,
        debug_mode: false,
    }
}

#[test]
fn parses_recorded_outputs() {
    let run: EnclaveRun = parse_json_output("run-enclave", RUN.as_bytes()).unwrap();
    assert_eq!(run.enclave_id, "i-abc12345def67890a-enc9876abcd543210ef12");
    assert_eq!(
        (run.enclave_cid, run.cpu_count, run.memory_mib),
        (10, 2, 1600)
    );
    assert_eq!(run.cpu_ids, vec![1, 3]);

    let list: Vec<EnclaveDescription> =
        parse_json_output("describe-enclaves", DESCRIBE.as_bytes()).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].state, EnclaveState::Running);
    assert_eq!(list[0].flags, "NONE");
    let pcrs = list[0].measurements.as_ref().unwrap();
    assert_eq!(pcrs["PCR0"].len(), 96);

    let t: EnclaveTermination =
        parse_json_output("terminate-enclave", TERMINATE.as_bytes()).unwrap();
    assert!(t.terminated);
    assert_eq!(t.enclave_id, run.enclave_id);
}

#[test]
fn skips_text_before_the_json_and_rejects_non_json() {
    let with_progress =
        format!("Start allocating memory...\nStarted enclave with enclave-cid: 16\n{RUN}");
    let run: EnclaveRun = parse_json_output("run-enclave", with_progress.as_bytes()).unwrap();
    assert_eq!(run.enclave_cid, 10);
    for bad in [
        "",
        "not json",
        "{\"EnclaveID\": 3}",
        "[{\"State\": \"SLEEPING\"}]",
    ] {
        let r: Result<Vec<EnclaveDescription>, _> =
            parse_json_output("describe-enclaves", bad.as_bytes());
        assert!(
            matches!(
                r,
                Err(Error::NitroCliOutput {
                    subcommand: "describe-enclaves",
                    ..
                })
            ),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn run_enclave_passes_the_flags_and_reports_nitro_cli_errors() {
    let replay = Replay::new([(0, RUN, "Start allocating memory...\n"), (1, "", E27)]);
    let cli = NitroCli::with_runner("nitro-cli", replay);
    cli.run_enclave(&request()).await.unwrap();
    match cli.run_enclave(&request()).await {
        Err(Error::NitroCli {
            subcommand: "run-enclave",
            stderr,
            ..
        }) => assert!(stderr.starts_with("[ E27 ]")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        cli.runner.calls()[0],
        "run-enclave --eif-path /opt/daas/enclave.eif --cpu-count 2 --memory 1600 --enclave-cid 16"
    );
    let replay = Replay::new([(0, RUN, "")]);
    let cli = NitroCli::with_runner("nitro-cli", replay);
    cli.run_enclave(&RunEnclaveRequest {
        debug_mode: true,
        ..request()
    })
    .await
    .unwrap();
    assert!(cli.runner.calls()[0].ends_with("--enclave-cid 16 --debug-mode"));
}

#[tokio::test]
async fn bad_requests_are_refused_before_running_anything() {
    let cli = NitroCli::with_runner("nitro-cli", Replay::default());
    for (req, field) in [
        (
            RunEnclaveRequest {
                cpus: 0,
                ..request()
            },
            "cpus",
        ),
        (
            RunEnclaveRequest {
                memory_mib: 0,
                ..request()
            },
            "memory",
        ),
        (
            RunEnclaveRequest {
                cid: Some(3),
                ..request()
            },
            "cid",
        ),
        (
            RunEnclaveRequest {
                cid: Some(u32::MAX),
                ..request()
            },
            "cid",
        ),
    ] {
        match cli.run_enclave(&req).await {
            Err(Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{other:?}"),
        }
    }
    assert!(cli.runner.calls().is_empty());
}

#[tokio::test]
async fn supervise_relaunches_a_vanished_enclave_and_terminates_at_shutdown() {
    // launch, poll: running, poll: gone -> relaunch, poll: running, then shutdown -> terminate.
    let replay = Replay::new([
        (0, RUN, ""),
        (0, DESCRIBE, ""),
        (0, DESCRIBE_EMPTY, ""),
        (0, RUN, ""),
        (0, DESCRIBE, ""),
    ]);
    let cli = NitroCli::with_runner("nitro-cli", replay);
    let shutdown = CancellationToken::new();
    let stopper = {
        let shutdown = shutdown.clone();
        let cli = &cli;
        async move {
            while cli.runner.calls().len() < 5 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            shutdown.cancel();
        }
    };
    let req = request();
    let (launches, ()) = tokio::join!(
        supervise_enclave(&cli, &req, Duration::from_millis(10), shutdown),
        stopper
    );
    let calls: Vec<String> = cli
        .runner
        .calls()
        .iter()
        .map(|c| c.split(' ').next().unwrap().to_owned())
        .collect();
    assert_eq!(launches.unwrap(), 2);
    assert_eq!(
        &calls[..5],
        [
            "run-enclave",
            "describe-enclaves",
            "describe-enclaves",
            "run-enclave",
            "describe-enclaves"
        ]
    );
    assert_eq!(calls.last().unwrap(), "terminate-enclave");
}

#[tokio::test]
async fn dev_supervisor_restarts_a_child_that_exits() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("starts");
    let script = format!("echo started >> {}; exit 3", log.display());
    let policy = RestartPolicy {
        min_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(20),
        ..Default::default()
    };
    let sup = DevSupervisor::new("/bin/sh", ["-c", script.as_str()]).with_policy(policy);
    let mut starts = sup.starts();
    let shutdown = CancellationToken::new();
    let watcher = async {
        starts.wait_for(|n| *n >= 3).await.unwrap();
        shutdown.cancel();
    };
    let (result, ()) = tokio::join!(sup.run(shutdown.clone()), watcher);
    let n = result.unwrap();
    assert!(n >= 3);
    // Every start really ran the child: one line per completed run (the last may be cut by shutdown).
    let lines = std::fs::read_to_string(&log).unwrap().lines().count() as u64;
    assert!(lines >= n - 1 && lines <= n, "{lines} lines for {n} starts");
}

#[tokio::test]
async fn dev_supervisor_stops_a_running_child_with_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("got-term");
    let ready = dir.path().join("ready");
    let script = format!(
        "trap 'echo term > {}; exit 0' TERM; touch {}; while true; do sleep 0.05; done",
        marker.display(),
        ready.display()
    );
    let sup = DevSupervisor::new("/bin/sh", ["-c", script.as_str()]);
    let mut starts = sup.starts();
    let shutdown = CancellationToken::new();
    let watcher = async {
        starts.wait_for(|n| *n >= 1).await.unwrap();
        // Signal only once the shell has installed its trap.
        while !ready.exists() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        shutdown.cancel();
    };
    let (result, ()) = tokio::join!(sup.run(shutdown.clone()), watcher);
    assert_eq!(result.unwrap(), 1);
    assert_eq!(std::fs::read_to_string(&marker).unwrap().trim(), "term");
}

#[tokio::test]
async fn dev_supervisor_reports_a_program_that_cannot_start() {
    let sup = DevSupervisor::new("/nonexistent/daas-enclave", ["--dev"]);
    assert!(matches!(
        sup.run(CancellationToken::new()).await,
        Err(Error::Spawn { .. })
    ));
}
