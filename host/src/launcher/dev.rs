//! Dev mode: run the enclave binary (`daas-enclave --dev ...`) as a child process and restart it when it dies.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// How quickly to restart a child that died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Wait before the first restart; doubled after each quick death, up to `max_backoff`. Default 100 ms.
    pub min_backoff: Duration,
    /// Longest wait between restarts. Default 5 s.
    pub max_backoff: Duration,
    /// A child that lived at least this long is considered healthy: the backoff resets. Default 10 s.
    pub healthy_after: Duration,
    /// On shutdown, time between SIGTERM and SIGKILL. Default 10 s.
    pub stop_grace: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            healthy_after: Duration::from_secs(10),
            stop_grace: Duration::from_secs(10),
        }
    }
}

/// Keeps one child process running until shutdown.
#[derive(Debug)]
pub struct DevSupervisor {
    program: PathBuf,
    args: Vec<OsString>,
    policy: RestartPolicy,
    starts: watch::Sender<u64>,
}

impl DevSupervisor {
    /// Supervises `program args...` with the default [`RestartPolicy`].
    pub fn new(
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> Self {
        Self {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            policy: RestartPolicy::default(),
            starts: watch::Sender::new(0),
        }
    }

    /// Replaces the restart policy.
    #[must_use]
    pub fn with_policy(mut self, policy: RestartPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Observes how many times the child has been started (1 after the first start).
    #[must_use]
    pub fn starts(&self) -> watch::Receiver<u64> {
        self.starts.subscribe()
    }

    /// Starts the child and restarts it whenever it exits, until `shutdown` fires; then sends SIGTERM, waits up
    /// to `stop_grace`, sends SIGKILL if needed, and returns the number of starts.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if the program cannot be started at all (missing, not executable): retrying cannot help.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<u64> {
        let mut backoff = self.policy.min_backoff;
        loop {
            let mut child = self.spawn()?;
            self.starts.send_modify(|n| *n += 1);
            let started = tokio::time::Instant::now();
            let status = tokio::select! {
                () = shutdown.cancelled() => {
                    stop(&mut child, self.policy.stop_grace).await;
                    return Ok(*self.starts.borrow());
                }
                status = child.wait() => status,
            };
            log_exit(&self.program, status.as_ref());
            if started.elapsed() >= self.policy.healthy_after {
                backoff = self.policy.min_backoff;
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(*self.starts.borrow()),
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(self.policy.max_backoff);
        }
    }

    fn spawn(&self) -> Result<Child> {
        Command::new(&self.program)
            .args(&self.args)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| Error::Spawn {
                program: self.program.display().to_string(),
                source,
            })
    }
}

fn log_exit(program: &std::path::Path, status: std::result::Result<&ExitStatus, &std::io::Error>) {
    match status {
        Ok(status) => {
            tracing::warn!(program = %program.display(), %status, "enclave process exited; restarting")
        }
        Err(e) => {
            tracing::warn!(program = %program.display(), error = %e, "waiting for the enclave process failed")
        }
    }
}

/// SIGTERM, then SIGKILL after `grace`.
async fn stop(child: &mut Child, grace: Duration) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        if tokio::time::timeout(grace, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}
