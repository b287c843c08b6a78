//! The copy engine shared by the relay and the outbound proxy: two fixed buffers, one per direction, so memory per
//! connection is bounded and a slow reader slows its writer (backpressure) instead of growing a queue.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::metrics::CloseReason;
use crate::tls_watch::{TlsProgress, TlsWatch};

/// When the connection last moved a byte, as nanoseconds since `start`; whether it is waiting for the upstream's
/// answer; and how long to busy-poll for that answer.
#[derive(Debug)]
pub(crate) struct Activity {
    start: Instant,
    last_nanos: AtomicU64,
    /// The client's bytes went upstream last: an answer is due (request/response traffic).
    awaiting_answer: AtomicBool,
    busy_poll: Duration,
}

impl Activity {
    pub(crate) fn new(busy_poll: Duration) -> Self {
        Self {
            start: Instant::now(),
            last_nanos: AtomicU64::new(0),
            awaiting_answer: AtomicBool::new(false),
            busy_poll,
        }
    }

    /// Whether to keep polling instead of parking: the client's bytes went upstream within the busy-poll window
    /// and no answer has been passed back yet. Only then is data due soon; after an answer, the client's next
    /// request may be a long way off, and spinning would only take a CPU from others.
    fn spinning(&self) -> bool {
        !self.busy_poll.is_zero()
            && self.awaiting_answer.load(Ordering::Relaxed)
            && Instant::now() < self.last() + self.busy_poll
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
///
/// Both directions are driven by one `copy_bidirectional` over the two streams themselves (no split halves,
/// so no lock between the directions); [`Watched`] wraps each stream to count, time and watch the bytes.
pub(crate) async fn splice<C, U>(client: C, upstream: U, rules: SpliceRules<'_>) -> CloseReason
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity::new(rules.busy_poll);
    let handshake_done = AtomicBool::new(rules.tls.is_none());
    let mut client = Watched {
        inner: client,
        side: Side::Client,
        activity: &activity,
        written: rules.outbound,
        tls: rules.tls,
        handshake_done: &handshake_done,
    };
    let mut upstream = Watched {
        inner: upstream,
        side: Side::Upstream,
        activity: &activity,
        written: rules.inbound,
        tls: None,
        handshake_done: &handshake_done,
    };
    let copy = tokio::io::copy_bidirectional_with_sizes(
        &mut client,
        &mut upstream,
        rules.buffer_size,
        rules.buffer_size,
    );
    let handshake = async {
        tokio::time::sleep_until(rules.handshake_deadline).await;
        if handshake_done.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        res = spin_while_active(copy, &activity) => match res {
            Ok(_) => CloseReason::Done,
            Err(e) if e.get_ref().is_some_and(|inner| inner.is::<NotTlsStream>()) => CloseReason::NotTls,
            Err(e) => {
                tracing::debug!(error = %e, "relay i/o error");
                CloseReason::IoError
            }
        },
        () = activity.idle_for(rules.idle_timeout) => CloseReason::IdleTimeout,
        () = handshake => CloseReason::HandshakeTimeout,
    }
}

/// Which end of the splice a [`Watched`] stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Upstream,
}

/// The client's bytes stopped being a TLS record stream (carried inside an `io::Error`).
#[derive(Debug)]
struct NotTlsStream;

impl std::fmt::Display for NotTlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the client's bytes are not a TLS record stream")
    }
}

impl std::error::Error for NotTlsStream {}

/// One side of a splice: marks activity on every byte read or written, counts the bytes written into it, and
/// (on the client side, until the handshake is done) feeds the bytes read from it to a [`TlsWatch`].
struct Watched<'a, S> {
    inner: S,
    side: Side,
    activity: &'a Activity,
    /// Bytes written into this side, i.e. relayed towards it.
    written: &'a Counter,
    tls: Option<TlsWatch>,
    handshake_done: &'a AtomicBool,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let chunk = buf.filled().get(before..).unwrap_or_default();
        if chunk.is_empty() {
            return Poll::Ready(Ok(()));
        }
        this.activity.touch();
        if let Some(watch) = this.tls.as_mut() {
            match watch.feed(chunk) {
                Ok(TlsProgress::Handshaking) => {}
                Ok(TlsProgress::Done) => {
                    this.handshake_done.store(true, Ordering::Relaxed);
                    this.tls = None;
                }
                Err(_) => return Poll::Ready(Err(io::Error::other(NotTlsStream))),
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.written.inc_by(n as u64);
        this.activity.touch();
        this.activity
            .awaiting_answer
            .store(this.side == Side::Upstream, Ordering::Relaxed);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Drives `fut` to completion; while an answer is due (see [`Activity::spinning`]), yields instead of letting
/// the thread park: tokio polls its I/O driver without blocking (epoll with a zero timeout) before it resumes a
/// yielded task, so data that arrives within the window is picked up without the thread going to sleep and being
/// woken again (a wake-up costs tens of microseconds on a virtual machine). Request/response traffic spends most
/// of its relay latency there.
async fn spin_while_active<F: Future>(fut: F, activity: &Activity) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(out) = futures::poll!(fut.as_mut()) {
            return out;
        }
        if activity.spinning() {
            tokio::task::yield_now().await;
            continue;
        }
        // Park until the copy is woken; once it moves a byte, spin again.
        let woken = std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
            Poll::Ready(out) => Poll::Ready(Some(out)),
            Poll::Pending if activity.spinning() => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        })
        .await;
        if let Some(out) = woken {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    fn watched<'a, S>(
        inner: S,
        side: Side,
        activity: &'a Activity,
        written: &'a Counter,
        done: &'a AtomicBool,
    ) -> Watched<'a, S> {
        Watched {
            inner,
            side,
            activity,
            written,
            tls: None,
            handshake_done: done,
        }
    }

    #[tokio::test]
    async fn spins_only_while_the_enclaves_answer_is_due() {
        let activity = Activity::new(Duration::from_secs(3600));
        let (counter, done) = (Counter::default(), AtomicBool::new(true));
        let (up, _up_peer) = tokio::io::duplex(64);
        let (client, _client_peer) = tokio::io::duplex(64);
        let mut up = watched(up, Side::Upstream, &activity, &counter, &done);
        let mut client = watched(client, Side::Client, &activity, &counter, &done);
        assert!(!activity.spinning(), "nothing forwarded yet");
        up.write_all(b"GET").await.unwrap();
        assert!(
            activity.spinning(),
            "a request went upstream: its answer is due"
        );
        client.write_all(b"200").await.unwrap();
        assert!(
            !activity.spinning(),
            "the answer went back: the next request may be far off"
        );
        assert_eq!(counter.get(), 6);

        let off = Activity::new(Duration::ZERO);
        let (up, _peer) = tokio::io::duplex(64);
        let mut up = watched(up, Side::Upstream, &off, &counter, &done);
        up.write_all(b"GET").await.unwrap();
        assert!(!off.spinning(), "busy-polling off");
    }
}
