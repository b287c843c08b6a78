//! The processes `daas dev` supervises, and the signals that stop it.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Context as _;
use host::DevSupervisor;
use host::launcher::RestartPolicy;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// One supervised child process.
#[derive(Debug)]
pub(super) struct ChildSpec {
    pub(super) name: String,
    pub(super) program: PathBuf,
    pub(super) args: Vec<OsString>,
    pub(super) policy: RestartPolicy,
}

/// One supervised child, running.
#[derive(Debug)]
struct Running {
    name: String,
    starts: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<host::Result<u64>>,
}

/// The children `daas dev` runs, each under its own [`DevSupervisor`].
#[derive(Debug)]
pub(super) struct Children {
    shutdown: CancellationToken,
    running: Vec<Running>,
}

impl Children {
    /// Starts every child in `specs`, in order.
    pub(super) fn start(specs: Vec<ChildSpec>) -> Self {
        let shutdown = CancellationToken::new();
        let running = specs
            .into_iter()
            .map(|mut spec| {
                // Every child polls for its parent, so that `daas dev` killed
                // by SIGKILL (no chance to stop them) leaves nothing running.
                spec.args.push("--exit-with-parent".into());
                spec.args.push(std::process::id().to_string().into());
                eprintln!(
                    "daas dev: starting {} ({} {})",
                    spec.name,
                    spec.program.display(),
                    spec.args
                        .iter()
                        .map(|a| a.to_string_lossy())
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                let supervisor =
                    DevSupervisor::new(spec.program, spec.args).with_policy(spec.policy);
                let starts = supervisor.starts();
                let token = shutdown.clone();
                Running {
                    name: spec.name,
                    starts,
                    task: tokio::spawn(async move { supervisor.run(token).await }),
                }
            })
            .collect();
        Self { shutdown, running }
    }

    /// A child whose supervisor gave up (the program could not be started).
    pub(super) fn failed(&self) -> Option<&str> {
        self.running
            .iter()
            .find(|r| r.task.is_finished())
            .map(|r| r.name.as_str())
    }

    /// Observes how often the child `name` has been started.
    pub(super) fn starts(&self, name: &str) -> Option<watch::Receiver<u64>> {
        self.running
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.starts.clone())
    }

    /// Stops every child (SIGTERM, then SIGKILL after the grace period) and
    /// waits for them.
    pub(super) async fn stop(self) {
        self.shutdown.cancel();
        for Running { name, task, .. } in self.running {
            match task.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => eprintln!("daas dev: {name}: {e}"),
                Err(e) => eprintln!("daas dev: {name} supervisor: {e}"),
            }
        }
    }
}

/// SIGINT (Ctrl-C) or SIGTERM.
#[derive(Debug)]
pub(super) struct StopSignal {
    term: tokio::signal::unix::Signal,
}

impl StopSignal {
    pub(super) fn install() -> anyhow::Result<Self> {
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        Ok(Self { term })
    }

    pub(super) async fn recv(&mut self) -> anyhow::Result<()> {
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
            _ = self.term.recv() => {}
        }
        Ok(())
    }
}

/// Waits for the next start of the watched child (`None` when not watched).
pub(super) async fn restarted(
    starts: &mut Option<watch::Receiver<u64>>,
) -> Option<Result<(), watch::error::RecvError>> {
    match starts {
        Some(rx) => Some(rx.changed().await),
        None => std::future::pending().await,
    }
}
