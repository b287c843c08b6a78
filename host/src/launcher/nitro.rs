//! `nitro-cli run-enclave / describe-enclaves / terminate-enclave`, with their JSON output parsed into types.
//!
//! Output shapes follow `src/common/json_output.rs` of aws/aws-nitro-enclaves-cli v1.5.0 (commit 2950b369):
//! `EnclaveRunInfo`, `EnclaveDescribeInfo` (optional `EnclaveName`, flattened `Measurements`, `ImageName`,
//! `ImageVersion`, `Metadata`) and `EnclaveTerminateInfo`. Progress lines ("Start allocating memory...") go to
//! standard error; the JSON is pretty-printed on standard output. Errors are printed to standard error as
//! `[ Exx ] message` with a non-zero exit status.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// Runs an external program and collects its output: the seam between [`NitroCli`] and the real `nitro-cli`.
pub trait CommandRunner: Send + Sync + fmt::Debug {
    /// Runs `program args...` to completion.
    fn output<'a>(
        &'a self,
        program: &'a Path,
        args: &'a [OsString],
    ) -> BoxFuture<'a, std::io::Result<Output>>;
}

/// Runs commands as real child processes.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessRunner;

impl CommandRunner for ProcessRunner {
    fn output<'a>(
        &'a self,
        program: &'a Path,
        args: &'a [OsString],
    ) -> BoxFuture<'a, std::io::Result<Output>> {
        Box::pin(async move {
            tokio::process::Command::new(program)
                .args(args)
                .kill_on_drop(true)
                .output()
                .await
        })
    }
}

/// What to launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnclaveRequest {
    /// The enclave image file.
    pub eif: PathBuf,
    /// vCPUs (`--cpu-count`).
    pub cpus: u32,
    /// Memory in MiB (`--memory`).
    pub memory_mib: u64,
    /// The enclave's vsock CID (`--enclave-cid`); `None` lets nitro-cli choose.
    pub cid: Option<u32>,
    /// `--enclave-name`; `None` lets nitro-cli derive it from the EIF file name.
    pub name: Option<String>,
    /// `--debug-mode`: the console is readable from the parent and the attestation documents
    /// carry all-zero PCRs, so no production verifier, KMS policy or registry accepts them.
    pub debug_mode: bool,
}

impl RunEnclaveRequest {
    /// Checks the values nitro-cli would reject (CID 0..=3 and `u32::MAX` are reserved, see vsock(7)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the offending field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, reason| Err(Error::InvalidConfig { field, reason });
        if self.cpus == 0 {
            return bad("cpus", "must be at least 1");
        }
        if self.memory_mib == 0 {
            return bad("memory", "must be at least 1 MiB");
        }
        if let Some(cid) = self.cid
            && (cid < 4 || cid == u32::MAX)
        {
            return bad(
                "cid",
                "must be between 4 and 4294967294 (0-3 and u32::MAX are reserved)",
            );
        }
        Ok(())
    }

    fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "run-enclave".into(),
            "--eif-path".into(),
            self.eif.clone().into(),
            "--cpu-count".into(),
            self.cpus.to_string().into(),
            "--memory".into(),
            self.memory_mib.to_string().into(),
        ];
        if let Some(cid) = self.cid {
            args.extend(["--enclave-cid".into(), cid.to_string().into()]);
        }
        if let Some(name) = &self.name {
            args.extend(["--enclave-name".into(), name.into()]);
        }
        if self.debug_mode {
            args.push("--debug-mode".into());
        }
        args
    }
}

/// `run-enclave` output (`EnclaveRunInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnclaveRun {
    /// Name.
    pub enclave_name: String,
    /// ID, `i-<instance>-enc<hex>`.
    #[serde(rename = "EnclaveID")]
    pub enclave_id: String,
    /// PID of the enclave process on the parent.
    #[serde(rename = "ProcessID")]
    pub process_id: u32,
    /// vsock CID.
    #[serde(rename = "EnclaveCID")]
    pub enclave_cid: u64,
    /// vCPUs.
    #[serde(rename = "NumberOfCPUs")]
    pub cpu_count: u64,
    /// The vCPU ids taken from the parent.
    #[serde(rename = "CPUIDs")]
    pub cpu_ids: Vec<u32>,
    /// Memory.
    #[serde(rename = "MemoryMiB")]
    pub memory_mib: u64,
}

/// An enclave's state as nitro-cli prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EnclaveState {
    /// Running.
    Running,
    /// Being torn down.
    Terminating,
    /// Slot exists, nothing runs.
    Empty,
}

/// One element of `describe-enclaves` output (`EnclaveDescribeInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnclaveDescription {
    /// Name (absent for enclaves started by older nitro-cli).
    #[serde(default)]
    pub enclave_name: Option<String>,
    /// ID.
    #[serde(rename = "EnclaveID")]
    pub enclave_id: String,
    /// PID of the enclave process.
    #[serde(rename = "ProcessID")]
    pub process_id: u32,
    /// vsock CID.
    #[serde(rename = "EnclaveCID")]
    pub enclave_cid: u64,
    /// vCPUs.
    #[serde(rename = "NumberOfCPUs")]
    pub cpu_count: u64,
    /// vCPU ids.
    #[serde(rename = "CPUIDs")]
    pub cpu_ids: Vec<u32>,
    /// Memory.
    #[serde(rename = "MemoryMiB")]
    pub memory_mib: u64,
    /// State.
    pub state: EnclaveState,
    /// `NONE` or `DEBUG_MODE`.
    pub flags: String,
    /// PCRs by name (`PCR0`, ...) plus `HashAlgorithm`, present when nitro-cli could read the EIF.
    #[serde(default)]
    pub measurements: Option<BTreeMap<String, String>>,
}

/// `terminate-enclave` output (`EnclaveTerminateInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnclaveTermination {
    /// Name, when known.
    #[serde(default)]
    pub enclave_name: Option<String>,
    /// ID.
    #[serde(rename = "EnclaveID")]
    pub enclave_id: String,
    /// Whether it terminated.
    pub terminated: bool,
}

/// A `nitro-cli` to drive.
#[derive(Debug, Clone)]
pub struct NitroCli<R = ProcessRunner> {
    program: PathBuf,
    pub(crate) runner: R,
}

impl NitroCli<ProcessRunner> {
    /// The `nitro-cli` found at `program` (usually just `nitro-cli` on `PATH`).
    #[must_use]
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            runner: ProcessRunner,
        }
    }
}

impl<R: CommandRunner> NitroCli<R> {
    /// A `nitro-cli` run through `runner` (tests pass recorded outputs).
    #[must_use]
    pub fn with_runner(program: impl Into<PathBuf>, runner: R) -> Self {
        Self {
            program: program.into(),
            runner,
        }
    }

    /// `nitro-cli run-enclave ...`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for bad values, [`Error::NitroCli`] with nitro-cli's message if it fails,
    /// [`Error::NitroCliOutput`] if its output is not the documented JSON.
    pub async fn run_enclave(&self, req: &RunEnclaveRequest) -> Result<EnclaveRun> {
        req.validate()?;
        self.call("run-enclave", req.args()).await
    }

    /// `nitro-cli describe-enclaves`.
    ///
    /// # Errors
    ///
    /// As [`run_enclave`](Self::run_enclave).
    pub async fn describe_enclaves(&self) -> Result<Vec<EnclaveDescription>> {
        self.call("describe-enclaves", vec!["describe-enclaves".into()])
            .await
    }

    /// `nitro-cli terminate-enclave --enclave-id ID`.
    ///
    /// # Errors
    ///
    /// As [`run_enclave`](Self::run_enclave).
    pub async fn terminate_enclave(&self, enclave_id: &str) -> Result<EnclaveTermination> {
        let args = vec![
            "terminate-enclave".into(),
            "--enclave-id".into(),
            enclave_id.into(),
        ];
        self.call("terminate-enclave", args).await
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        subcommand: &'static str,
        args: Vec<OsString>,
    ) -> Result<T> {
        let out = self
            .runner
            .output(&self.program, &args)
            .await
            .map_err(|source| Error::Spawn {
                program: self.program.display().to_string(),
                source,
            })?;
        if !out.status.success() {
            return Err(Error::NitroCli {
                program: self.program.display().to_string(),
                subcommand,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        parse_json_output(subcommand, &out.stdout)
    }
}

/// Parses nitro-cli's JSON, skipping any text lines printed before it.
pub(crate) fn parse_json_output<T: serde::de::DeserializeOwned>(
    subcommand: &'static str,
    stdout: &[u8],
) -> Result<T> {
    let text = String::from_utf8_lossy(stdout);
    let start = text
        .lines()
        .scan(0usize, |offset, line| {
            let here = *offset;
            *offset += line.len() + 1;
            Some((here, line))
        })
        .find(|(_, line)| line.starts_with('{') || line.starts_with('['))
        .map_or(0, |(offset, _)| offset);
    serde_json::from_str(text.get(start..).unwrap_or_default())
        .map_err(|source| Error::NitroCliOutput { subcommand, source })
}

/// Launches the enclave, then checks `describe-enclaves` every `poll` and relaunches it if it is gone or no longer
/// running; on `shutdown`, terminates it and returns how many times it was (re)launched.
///
/// # Errors
///
/// The first launch's error (bad EIF, not enough memory, ...); later relaunch failures are logged and retried at
/// the next poll. A failed terminate at shutdown is returned.
pub async fn supervise_enclave<R: CommandRunner>(
    cli: &NitroCli<R>,
    req: &RunEnclaveRequest,
    poll: Duration,
    shutdown: CancellationToken,
) -> Result<u64> {
    let mut current = Some(cli.run_enclave(req).await?);
    let mut launches = 1u64;
    loop {
        if let Some(run) = &current {
            tracing::info!(id = %run.enclave_id, cid = run.enclave_cid, "enclave running");
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(poll) => {}
        }
        let alive = match (&current, cli.describe_enclaves().await) {
            (Some(run), Ok(list)) => list
                .iter()
                .any(|e| e.enclave_id == run.enclave_id && e.state == EnclaveState::Running),
            (_, Err(e)) => {
                tracing::warn!(error = %e, "describe-enclaves failed");
                current.is_some()
            }
            (None, Ok(_)) => false,
        };
        if !alive {
            tracing::warn!("enclave is not running; launching it again");
            current = match cli.run_enclave(req).await {
                Ok(run) => {
                    launches += 1;
                    Some(run)
                }
                Err(e) => {
                    tracing::error!(error = %e, "relaunch failed");
                    None
                }
            };
        }
    }
    if let Some(run) = current {
        let t = cli.terminate_enclave(&run.enclave_id).await?;
        tracing::info!(id = %t.enclave_id, terminated = t.terminated, "enclave terminated");
    }
    Ok(launches)
}
