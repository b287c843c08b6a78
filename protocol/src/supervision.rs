//! The `--exit-with-parent PID` contract between `daas` and the processes it starts
//! (`daas-enclave`, `daas-host`, `daas-worker`): a child stops when the process that started
//! it is gone, so a `daas dev` killed with SIGKILL leaves nothing running.
//!
//! A parent killed by SIGKILL sends nothing, so the child polls its parent pid: once the
//! parent dies the child is reparented and [`std::os::unix::process::parent_id`] changes.
//! The poll runs on a plain thread, so [`ParentGone`] is a future any runtime can await.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// How often the parent pid is checked.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug, Default)]
struct Watch {
    gone: bool,
    waker: Option<Waker>,
}

/// Resolves once the parent process is no longer the one given to [`parent_gone`]; never
/// when none was given. Dropping it stops the polling thread at its next check.
#[derive(Debug)]
pub struct ParentGone {
    watch: Option<Arc<Mutex<Watch>>>,
}

/// A future that resolves when this process's parent is no longer `pid` (pending forever
/// for `None`). Fails only if the polling thread cannot be started.
pub fn parent_gone(pid: Option<u32>) -> std::io::Result<ParentGone> {
    let Some(pid) = pid else {
        return Ok(ParentGone { watch: None });
    };
    let watch = Arc::new(Mutex::new(Watch::default()));
    let weak = Arc::downgrade(&watch);
    std::thread::Builder::new()
        .name("parent-watch".into())
        .spawn(move || poll_parent(pid, &weak))?;
    Ok(ParentGone { watch: Some(watch) })
}

fn poll_parent(pid: u32, watch: &Weak<Mutex<Watch>>) {
    loop {
        let Some(watch) = watch.upgrade() else {
            return; // nobody waits any more
        };
        if std::os::unix::process::parent_id() != pid {
            let mut state = watch.lock().unwrap_or_else(PoisonError::into_inner);
            state.gone = true;
            if let Some(waker) = state.waker.take() {
                waker.wake();
            }
            return;
        }
        drop(watch);
        std::thread::sleep(POLL_INTERVAL);
    }
}

impl Future for ParentGone {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(watch) = &self.watch else {
            return Poll::Pending;
        };
        let mut state = watch.lock().unwrap_or_else(PoisonError::into_inner);
        if state.gone {
            return Poll::Ready(());
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll_once(f: &mut ParentGone) -> Poll<()> {
        let waker = Waker::noop();
        Pin::new(f).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn no_pid_never_resolves() {
        let mut f = parent_gone(None).unwrap();
        assert!(poll_once(&mut f).is_pending());
    }

    #[test]
    fn the_current_parent_is_not_gone_and_another_pid_is() {
        let mut current = parent_gone(Some(std::os::unix::process::parent_id())).unwrap();
        // A pid that is not our parent: the watch sees it "gone" at its first check.
        let mut other = parent_gone(Some(u32::MAX)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while poll_once(&mut other).is_pending() {
            assert!(std::time::Instant::now() < deadline, "never resolved");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(poll_once(&mut current).is_pending());
    }
}
