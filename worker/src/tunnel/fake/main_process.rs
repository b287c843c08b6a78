//! A fake container's main process: its output goes to the container's CRI log file (as
//! containerd writes it) and to every attached session; attached sessions write its stdin.

use std::io;
use std::path::PathBuf;
use std::process::Stdio;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::tunnel::cri_log;

/// What an attached session holds on to.
#[derive(Debug, Clone)]
pub(super) struct MainProcess {
    /// Output as it happens: (channel, bytes).
    pub(super) output: broadcast::Sender<(u8, Bytes)>,
    /// Bytes for its stdin.
    pub(super) stdin: mpsc::Sender<Bytes>,
    /// Its exit code once it exited (after its output is all in the log).
    pub(super) exited: watch::Receiver<Option<i32>>,
    /// Kills it.
    pub(super) kill: CancellationToken,
}

/// Appends `chunk` to the log as CRI entries (a trailing piece without newline is partial).
async fn append(log: &PathBuf, stream: &str, chunk: &[u8]) -> io::Result<()> {
    let text = String::from_utf8_lossy(chunk);
    let mut out = String::new();
    let mut rest = text.as_ref();
    while !rest.is_empty() {
        let (line, partial, next) = match rest.split_once('\n') {
            Some((l, n)) => (l, false, n),
            None => (rest, true, ""),
        };
        out.push_str(&cri_log::entry(
            jiff::Timestamp::now(),
            stream,
            partial,
            line,
        ));
        rest = next;
    }
    let mut f = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .await?;
    f.write_all(out.as_bytes()).await
}

/// Starts `command` as the main process writing to `log`; its tasks run on `tasks`.
pub(super) fn start(
    command: &[String],
    log: PathBuf,
    tasks: &TaskTracker,
) -> io::Result<MainProcess> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "an empty command"))?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let (output, _) = broadcast::channel(64);
    let (stdin_tx, mut stdin_rx) = mpsc::channel::<Bytes>(16);
    let (exit_tx, exited) = watch::channel(None);
    if let Some(mut stdin) = child.stdin.take() {
        tasks.spawn(async move {
            while let Some(b) = stdin_rx.recv().await {
                if stdin.write_all(&b).await.is_err() {
                    return;
                }
            }
        });
    }
    let pipes = [
        (
            1u8,
            "stdout",
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ),
        (
            2u8,
            "stderr",
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ),
    ];
    let mut readers = Vec::new();
    for (ch, name, pipe) in pipes {
        let Some(mut pipe) = pipe else { continue };
        let (log, output) = (log.clone(), output.clone());
        readers.push(tasks.spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match pipe.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let chunk = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                if let Err(e) = append(&log, name, &chunk).await {
                    tracing::warn!(error = %e, "the fake could not write its log");
                }
                let _ = output.send((ch, chunk));
            }
        }));
    }
    let kill = CancellationToken::new();
    let killed = kill.clone();
    tasks.spawn(async move {
        let status = tokio::select! {
            s = child.wait() => s,
            () = killed.cancelled() => {
                let _ = child.start_kill();
                child.wait().await
            }
        };
        for r in readers {
            let _ = r.await;
        }
        let code = status.ok().and_then(|s| s.code()).unwrap_or(137);
        let _ = exit_tx.send(Some(code));
    });
    Ok(MainProcess {
        output,
        stdin: stdin_tx,
        exited,
        kill,
    })
}
