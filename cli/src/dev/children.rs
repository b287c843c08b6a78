//! The processes `daas dev` and `daas launch` supervise, and the signals that stop them.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Context as _;
use host::DevSupervisor;
use host::launcher::RestartPolicy;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// One supervised child process.
#[derive(Debug)]
pub(crate) struct ChildSpec {
    pub(crate) name: String,
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<OsString>,
    pub(crate) policy: RestartPolicy,
}

/// One supervised child, running.
#[derive(Debug)]
struct Running {
    name: String,
    starts: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<host::Result<u64>>,
}

/// The children `daas dev` and `daas launch` run, each under its own [`DevSupervisor`].
#[derive(Debug)]
pub(crate) struct Children {
    shutdown: CancellationToken,
    running: Vec<Running>,
}

impl Children {
    /// Starts every child in `specs`, in order.
    pub(crate) fn start(specs: Vec<ChildSpec>) -> Self {
        let shutdown = CancellationToken::new();
        let running = specs
            .into_iter()
            .map(|mut spec| {
                // Every child polls for its parent, so that `daas dev` killed
                // by SIGKILL (no chance to stop them) leaves nothing running.
                spec.args.push("--exit-with-parent".into());
                spec.args.push(std::process::id().to_string().into());
                eprintln!(
                    "daas: starting {} ({} {})",
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
    pub(crate) fn failed(&self) -> Option<&str> {
        self.running
            .iter()
            .find(|r| r.task.is_finished())
            .map(|r| r.name.as_str())
    }

    /// Observes how often the child `name` has been started.
    pub(crate) fn starts(&self, name: &str) -> Option<watch::Receiver<u64>> {
        self.running
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.starts.clone())
    }

    /// Stops every child (SIGTERM, then SIGKILL after the grace period) and
    /// waits for them.
    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        for Running { name, task, .. } in self.running {
            match task.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => eprintln!("daas: {name}: {e}"),
                Err(e) => eprintln!("daas: {name} supervisor: {e}"),
            }
        }
    }
}

/// SIGINT (Ctrl-C) or SIGTERM.
#[derive(Debug)]
pub(crate) struct StopSignal {
    term: tokio::signal::unix::Signal,
}

impl StopSignal {
    pub(crate) fn install() -> anyhow::Result<Self> {
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        Ok(Self { term })
    }

    pub(crate) async fn recv(&mut self) -> anyhow::Result<()> {
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
            _ = self.term.recv() => {}
        }
        Ok(())
    }
}

/// Waits for the next start of the watched child (`None` when not watched).
pub(crate) async fn restarted(
    starts: &mut Option<watch::Receiver<u64>>,
) -> Option<Result<(), watch::error::RecvError>> {
    match starts {
        Some(rx) => Some(rx.changed().await),
        None => std::future::pending().await,
    }
}
