//! Bridging an exec or attach [`Process`] and a port-forward connection to the tunnel's
//! HTTP/2 request and response bodies.

use std::io;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use protocol::tunnel::channel::{self, CLOSE, END, RESIZE, STDERR, STDIN, STDOUT, TerminalSize};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Duplex, Process};

/// Response bodies on the tunnel.
pub(super) type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, io::Error>;

/// A body of what arrives on `rx`.
pub(super) fn channel_body(rx: mpsc::Receiver<io::Result<Bytes>>) -> Body {
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    http_body_util::StreamBody::new(stream.map(|b| b.map(hyper::body::Frame::data))).boxed_unsync()
}

/// Runs `process` against the request body (stdin, resize, close frames) and returns the
/// response body (stdout, stderr, then the end). The work runs on `tasks` until done or
/// `cancel` (the tunnel ended).
pub(super) fn bridge_process(
    body: Incoming,
    process: Process,
    tasks: &TaskTracker,
    cancel: &CancellationToken,
) -> Body {
    let (tx, rx) = mpsc::channel(16);
    let Process {
        stdin,
        stdout,
        stderr,
        resize,
        done,
    } = process;
    tasks.spawn(input(body, stdin, resize, cancel.clone()));
    let cancel = cancel.clone();
    tasks.spawn(async move {
        let pumps = async {
            tokio::join!(pump(stdout, STDOUT, &tx), pump(stderr, STDERR, &tx));
        };
        tokio::select! {
            () = pumps => {}
            () = cancel.cancelled() => return,
        }
        // Dropping `done` unresolved ends the session (the process is killed).
        let end = tokio::select! {
            e = done => e,
            () = cancel.cancelled() => return,
            () = tx.closed() => return,
        };
        if let Ok(frame) = channel::encode(END, &end.encode()) {
            let _ = tx.send(Ok(Bytes::from(frame))).await;
        }
    });
    channel_body(rx)
}

/// Copies `from` as frames on `ch` until it ends or the receiver is gone.
async fn pump(
    from: Option<std::pin::Pin<Box<dyn AsyncRead + Send>>>,
    ch: u8,
    tx: &mpsc::Sender<io::Result<Bytes>>,
) {
    let Some(from) = from else { return };
    let mut chunks = ReaderStream::with_capacity(from, 32 * 1024);
    // A read error (a terminal's EIO once the process is gone) ends the output like EOF.
    while let Some(Ok(chunk)) = chunks.next().await {
        let Ok(frame) = channel::encode(ch, &chunk) else {
            return;
        };
        if tx.send(Ok(Bytes::from(frame))).await.is_err() {
            return;
        }
    }
}

async fn input(
    mut body: Incoming,
    mut stdin: Option<std::pin::Pin<Box<dyn AsyncWrite + Send>>>,
    resize: Option<mpsc::Sender<TerminalSize>>,
    cancel: CancellationToken,
) {
    let mut decoder = channel::Decoder::new();
    loop {
        let frame = tokio::select! {
            f = body.frame() => f,
            () = cancel.cancelled() => return,
        };
        let Some(Ok(frame)) = frame else { break };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        decoder.push(&data);
        loop {
            let f = match decoder.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "bad frame from the enclave");
                    return;
                }
            };
            match f.channel {
                STDIN => {
                    if let Some(w) = stdin.as_mut()
                        && w.write_all(&f.payload).await.is_err()
                    {
                        stdin = None;
                    }
                }
                CLOSE if f.payload == [STDIN] => {
                    if let Some(mut w) = stdin.take() {
                        let _ = w.shutdown().await;
                    }
                }
                RESIZE => {
                    if let (Some(r), Some(size)) = (&resize, TerminalSize::decode(&f.payload)) {
                        let _ = r.try_send(size);
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(mut w) = stdin.take() {
        let _ = w.shutdown().await;
    }
}

/// Joins the request body to `conn` (its write side is shut when the body ends) and returns
/// the response body (what `conn` sends, to its end).
pub(super) fn bridge_connection(
    mut body: Incoming,
    conn: Duplex,
    tasks: &TaskTracker,
    cancel: &CancellationToken,
) -> Body {
    let (read, mut write) = tokio::io::split(conn);
    let cancel_in = cancel.clone();
    tasks.spawn(async move {
        loop {
            let frame = tokio::select! {
                f = body.frame() => f,
                () = cancel_in.cancelled() => return,
            };
            let Some(Ok(frame)) = frame else { break };
            if let Ok(data) = frame.into_data()
                && write.write_all(&data).await.is_err()
            {
                return;
            }
        }
        let _ = write.shutdown().await;
    });
    let (tx, rx) = mpsc::channel(16);
    let cancel = cancel.clone();
    tasks.spawn(async move {
        let mut chunks = ReaderStream::with_capacity(read, 32 * 1024);
        loop {
            let next = tokio::select! {
                n = chunks.next() => n,
                () = cancel.cancelled() => return,
            };
            match next {
                Some(Ok(chunk)) => {
                    if tx.send(Ok(chunk)).await.is_err() {
                        return;
                    }
                }
                Some(Err(e)) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                None => return,
            }
        }
    });
    channel_body(rx)
}
