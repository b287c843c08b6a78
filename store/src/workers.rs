//! The store's background threads and their orderly shutdown.
//!
//! The last [`Store`](super::Store) handle to go joins the commit threads and
//! the compactor before it returns, so RocksDB is closed by the time the
//! owner moves on. Letting those threads finish on their own raced with
//! process exit (RocksDB aborts with "pthread lock: Invalid argument" when
//! its static state is torn down under a live database) and with removal of
//! the data directory.

use std::sync::{Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;

use super::commit::Request;

/// A one-way flag threads can wait on.
#[derive(Debug, Default, Clone)]
pub(crate) struct Signal(std::sync::Arc<(Mutex<bool>, Condvar)>);

impl Signal {
    /// Raises the flag and wakes every waiter.
    pub(crate) fn raise(&self) {
        let (lock, cvar) = &*self.0;
        // A poisoned flag still holds a bool; raise it anyway.
        let mut raised = lock.lock().unwrap_or_else(|p| p.into_inner());
        *raised = true;
        cvar.notify_all();
    }

    /// Waits up to `timeout` for the flag; true if it is raised.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let (lock, cvar) = &*self.0;
        let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        match cvar.wait_timeout_while(guard, timeout, |raised| !*raised) {
            Ok((raised, _)) => *raised,
            Err(p) => *p.into_inner().0,
        }
    }
}

/// Owned by the shared state: raises its [`Signal`] when dropped, which is
/// when RocksDB has been closed.
#[derive(Debug, Default)]
pub(crate) struct SignalOnDrop(pub(crate) Signal);

impl Drop for SignalOnDrop {
    fn drop(&mut self) {
        self.0.raise();
    }
}

/// The commit queue and the threads behind it, shared by all handles.
#[derive(Debug)]
pub(crate) struct Workers {
    commits: Option<mpsc::Sender<Request>>,
    evaluator: Option<JoinHandle<()>>,
    durability: Option<JoinHandle<()>>,
    compactor: Option<(Signal, JoinHandle<()>)>,
}

impl Workers {
    pub(crate) fn new(
        commits: mpsc::Sender<Request>,
        evaluator: JoinHandle<()>,
        durability: JoinHandle<()>,
    ) -> Self {
        Workers {
            commits: Some(commits),
            evaluator: Some(evaluator),
            durability: Some(durability),
            compactor: None,
        }
    }

    /// Adds the background compactor, stopped by raising `stop`.
    pub(crate) fn with_compactor(mut self, stop: Signal, thread: JoinHandle<()>) -> Self {
        self.compactor = Some((stop, thread));
        self
    }

    /// The commit queue; `None` only while shutting down.
    pub(crate) fn commits(&self) -> Option<&mpsc::Sender<Request>> {
        self.commits.as_ref()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Closing the queue ends the commit pipeline after what is queued:
        // the evaluator first, then the durability thread it feeds.
        drop(self.commits.take());
        if let Some((stop, thread)) = self.compactor.take() {
            stop.raise();
            join(thread);
        }
        for thread in [self.evaluator.take(), self.durability.take()]
            .into_iter()
            .flatten()
        {
            join(thread);
        }
    }
}

fn join(thread: JoinHandle<()>) {
    let name = thread.thread().name().unwrap_or("store worker").to_owned();
    if thread.thread().id() == std::thread::current().id() {
        return;
    }
    if thread.join().is_err() {
        tracing::error!(thread = %name, "store thread panicked");
    }
}
