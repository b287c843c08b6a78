//! The copy engine shared by the relay and the outbound proxy: two fixed buffers, one per direction, so memory per
//! connection is bounded and a slow reader slows its writer (backpressure) instead of growing a queue.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::metrics::CloseReason;
use crate::tls_watch::{TlsProgress, TlsWatch};

/// When the connection last moved a byte, as nanoseconds since `start`, and how long to busy-poll after that.
#[derive(Debug)]
pub(crate) struct Activity {
    start: Instant,
    last_nanos: AtomicU64,
    busy_poll: Duration,
}

impl Activity {
    pub(crate) fn new(busy_poll: Duration) -> Self {
        Self {
            start: Instant::now(),
            last_nanos: AtomicU64::new(0),
            busy_poll,
        }
    }

    /// Until when a read should spin rather than park, if busy-polling is on.
    fn spin_until(&self) -> Option<Instant> {
        (!self.busy_poll.is_zero()).then(|| self.last() + self.busy_poll)
    }

    fn touch(&self) {
        let nanos = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_nanos.store(nanos, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_nanos(self.last_nanos.load(Ordering::Relaxed))
    }

    /// Completes once no byte has moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let deadline = self.last() + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// What a splice must enforce besides copying.
#[derive(Debug)]
pub(crate) struct SpliceRules<'a> {
    /// Close when no byte moved in either direction for this long.
    pub(crate) idle_timeout: Duration,
    /// Bytes per direction buffer.
    pub(crate) buffer_size: usize,
    /// Watch the client's TLS records until the handshake completes, or cut at `handshake_deadline`.
    pub(crate) tls: Option<TlsWatch>,
    /// Absolute deadline for the handshake (only with `tls`).
    pub(crate) handshake_deadline: Instant,
    /// Counter for client -> upstream bytes.
    pub(crate) inbound: &'a Counter,
    /// Counter for upstream -> client bytes.
    pub(crate) outbound: &'a Counter,
    /// After a byte moved, keep polling for the next one this long before parking the thread (zero: never spin).
    pub(crate) busy_poll: Duration,
}

/// Copies both ways until both sides have finished, a rule cuts the connection, or an I/O error occurs.
/// `client_first` are bytes already read from the client; they have already been written upstream.
pub(crate) async fn splice<C, U>(client: C, upstream: U, rules: SpliceRules<'_>) -> CloseReason
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity::new(rules.busy_poll);
    let handshake_done = AtomicBool::new(rules.tls.is_none());
    let (client_r, client_w) = tokio::io::split(client);
    let (up_r, up_w) = tokio::io::split(upstream);
    let inbound = pump(
        client_r,
        up_w,
        rules.buffer_size,
        rules.inbound,
        &activity,
        rules.tls,
        &handshake_done,
    );
    let outbound = pump(
        up_r,
        client_w,
        rules.buffer_size,
        rules.outbound,
        &activity,
        None,
        &handshake_done,
    );
    let both = futures::future::try_join(inbound, outbound);
    let handshake = async {
        tokio::time::sleep_until(rules.handshake_deadline).await;
        if handshake_done.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        res = both => match res {
            Ok(_) => CloseReason::Done,
            Err(PumpError::NotTls) => CloseReason::NotTls,
            Err(PumpError::Io(e)) => {
                tracing::debug!(error = %e, "relay i/o error");
                CloseReason::IoError
            }
        },
        () = activity.idle_for(rules.idle_timeout) => CloseReason::IdleTimeout,
        () = handshake => CloseReason::HandshakeTimeout,
    }
}

#[derive(Debug)]
enum PumpError {
    NotTls,
    Io(io::Error),
}

impl From<io::Error> for PumpError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

async fn pump<R, W>(
    mut from: R,
    mut to: W,
    buffer_size: usize,
    counter: &Counter,
    activity: &Activity,
    mut tls: Option<TlsWatch>,
    handshake_done: &AtomicBool,
) -> Result<(), PumpError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; buffer_size];
    loop {
        let n = spin_then_await(from.read(&mut buf), activity.spin_until()).await?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            // EOF: pass the half-close on and let the other direction finish.
            to.shutdown().await?;
            return Ok(());
        };
        activity.touch();
        if let Some(watch) = tls.as_mut() {
            match watch.feed(chunk) {
                Ok(TlsProgress::Handshaking) => {}
                Ok(TlsProgress::Done) => {
                    handshake_done.store(true, Ordering::Relaxed);
                    tls = None;
                }
                Err(_) => return Err(PumpError::NotTls),
            }
        }
        to.write_all(chunk).await?;
        counter.inc_by(n as u64);
        activity.touch();
    }
}

/// Awaits `fut`, but until `spin_until` passes, yields instead of letting the thread park: tokio polls its I/O
/// driver without blocking (epoll with a zero timeout) before it resumes a yielded task, so data that arrives
/// within the window is picked up without the thread going to sleep and being woken again (a wake-up costs tens
/// of microseconds on a virtual machine). Request/response traffic spends most of its relay latency there.
async fn spin_then_await<F: std::future::Future>(fut: F, spin_until: Option<Instant>) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    if let Some(deadline) = spin_until {
        loop {
            if let std::task::Poll::Ready(out) = futures::poll!(fut.as_mut()) {
                return out;
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    fut.await
}
