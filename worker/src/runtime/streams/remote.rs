//! A client of the runtime's streaming server for exec and attach: CRI `Exec`/`Attach` answer
//! with a URL on containerd's streaming server (the kubelet's `cri/streaming` package inside
//! containerd); we upgrade an HTTP/1.1 request on it to SPDY/3.1 with the
//! `v4.channel.k8s.io` remote-command protocol, open the error, stdin, stdout, stderr and
//! resize streams the request asked for, and turn them into a [`Process`].
//!
//! SPDY rather than WebSocket because only SPDY can close stdin (a stream's FIN): containerd
//! 1.6 has no `v5.channel.k8s.io`, and without a close `cat` or `tar x` fed from
//! `kubectl exec -i` would never see the end of their input.
//!
//! The v4 protocol: the client opens every stream (header `streamType`), the server writes the
//! process's output on stdout/stderr and, when the process ends, a `metav1.Status` on the
//! error stream (`Success`, or `Failure` with reason `NonZeroExitCode` and the code as the
//! `ExitCode` cause); terminal sizes go on the resize stream as JSON `{"Width":…,"Height":…}`.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header;
use hyper_util::rt::TokioIo;
use protocol::tunnel::StdStreams;
use protocol::tunnel::channel::{StreamEnd, TerminalSize};
use spdy::{Headers, Role, StreamReader, StreamWriter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::tunnel::{Process, StreamError};

/// The remote-command protocol we ask for (containerd 1.6 offers v1 to v4).
const PROTOCOL: &str = "v4.channel.k8s.io";

/// The most the error stream's status may take.
const STATUS_LIMIT: usize = 64 * 1024;

/// How long the streaming server may take to connect and answer the upgrade.
const UPGRADE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn runtime(what: &str, e: impl std::fmt::Display) -> StreamError {
    StreamError::Runtime(format!("{what}: {e}"))
}

/// Upgrades a request on `url` (the runtime's streaming URL) to a SPDY session; returns the
/// session and its driver.
async fn upgrade(url: &str) -> Result<(spdy::Session, spdy::Driver), StreamError> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| runtime("the runtime's streaming URL", e))?;
    let authority = uri
        .authority()
        .ok_or_else(|| StreamError::Runtime(format!("the streaming URL {url:?} has no host")))?
        .clone();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let tcp = TcpStream::connect(authority.as_str())
        .await
        .map_err(|e| runtime("connecting to the runtime's streaming server", e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| runtime("the runtime's streaming server", e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "the streaming server's connection");
        }
    });
    let request = hyper::Request::post(path)
        .header(header::HOST, authority.as_str())
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .header("X-Stream-Protocol-Version", PROTOCOL)
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| runtime("the upgrade request", e))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| runtime("the runtime's streaming server", e))?;
    if response.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
            .unwrap_or_default();
        return Err(StreamError::Runtime(format!(
            "the runtime's streaming server answered {status}: {body}"
        )));
    }
    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(|e| runtime("upgrading to SPDY", e))?;
    let (session, _incoming, driver) = spdy::start(TokioIo::new(upgraded), Role::Client)
        .map_err(|e| runtime("starting the SPDY session", e))?;
    Ok((session, driver))
}

async fn open(session: &spdy::Session, kind: &str) -> Result<spdy::Stream, StreamError> {
    session
        .open_stream(Headers::from_pairs([("streamType", kind)]), false)
        .await
        .map_err(|e| runtime("opening a SPDY stream", e))
}

/// Aborts the session's driver when the [`Process`] is dropped or done.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Connects to the streaming `url` an `Exec` or `Attach` returned for `streams` (`exec`: the
/// end is the process's exit code; attach ends with 0).
pub(super) async fn session(
    url: &str,
    streams: StdStreams,
    exec: bool,
) -> Result<Process, StreamError> {
    let (session, driver) = tokio::time::timeout(UPGRADE_TIMEOUT, upgrade(url))
        .await
        .map_err(|_| {
            StreamError::Runtime(format!(
                "the runtime's streaming server did not answer within {UPGRADE_TIMEOUT:?}"
            ))
        })??;
    let driver = tokio::spawn(async move {
        if let Err(e) = driver.await {
            tracing::debug!(error = %e, "the runtime's SPDY session ended");
        }
    });
    let guard = AbortOnDrop(driver.abort_handle());
    // The order upstream's client opens them in; the server waits for all it expects.
    let (mut status, error_writer) = open(&session, "error").await?.split();
    let stdin = if streams.stdin {
        Some(open(&session, "stdin").await?.split())
    } else {
        None
    };
    let stdout = if streams.stdout {
        Some(open(&session, "stdout").await?.split())
    } else {
        None
    };
    let stderr = if streams.stderr && !streams.tty {
        Some(open(&session, "stderr").await?.split())
    } else {
        None
    };
    let resize = if streams.tty {
        Some(open(&session, "resize").await?.split())
    } else {
        None
    };
    let mut process = Process {
        stdin: None,
        stdout: None,
        stderr: None,
        resize: None,
        done: Box::pin(std::future::ready(StreamEnd::Exited(0))),
    };
    // The writers of the output streams stay open with the session (upstream's client never
    // finishes them).
    let mut keep: Vec<StreamWriter> = vec![error_writer];
    if let Some((_, writer)) = stdin {
        // The server writes nothing on stdin; the writer goes to its pump.
        process.stdin = Some(Box::pin(input(writer)));
    }
    if let Some((reader, writer)) = stdout {
        process.stdout = Some(Box::pin(output(reader)));
        keep.push(writer);
    }
    if let Some((reader, writer)) = stderr {
        process.stderr = Some(Box::pin(output(reader)));
        keep.push(writer);
    }
    if let Some((_, writer)) = resize {
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(resizes(rx, writer));
        process.resize = Some(tx);
    }
    process.done = Box::pin(async move {
        let _guard = guard;
        let _session = session;
        let _keep = keep;
        let mut bytes = Vec::new();
        let mut broken = None;
        loop {
            match status.read().await {
                Ok(Some(b)) => {
                    let room = STATUS_LIMIT.saturating_sub(bytes.len());
                    bytes.extend_from_slice(b.get(..room.min(b.len())).unwrap_or_default());
                }
                Ok(None) => break,
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            }
        }
        match (bytes.is_empty(), broken) {
            (true, Some(e)) => {
                StreamEnd::Failed(format!("the runtime's stream ended without a status: {e}"))
            }
            _ => end_of(&bytes, exec),
        }
    });
    Ok(process)
}

/// A reader of what the server writes on `stream`.
fn output(mut stream: StreamReader) -> tokio::io::DuplexStream {
    let (mut w, r) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        while let Ok(Some(chunk)) = stream.read().await {
            if w.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    r
}

/// A writer whose bytes go on `stream`; its shutdown finishes the stream (stdin's end).
fn input(mut stream: StreamWriter) -> tokio::io::DuplexStream {
    let (w, mut r) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let chunk = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                    if stream.write(chunk).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = stream.finish().await;
    });
    w
}

async fn resizes(mut rx: mpsc::Receiver<TerminalSize>, mut stream: StreamWriter) {
    while let Some(size) = rx.recv().await {
        let json = serde_json::json!({"Width": size.width, "Height": size.height});
        let mut line = json.to_string().into_bytes();
        line.push(b'\n');
        if stream.write(Bytes::from(line)).await.is_err() {
            return;
        }
    }
}

/// How the session ended, from the v4 status on the error stream (empty: success).
fn end_of(status: &[u8], exec: bool) -> StreamEnd {
    if status.iter().all(u8::is_ascii_whitespace) {
        return StreamEnd::Exited(0);
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(status) else {
        return StreamEnd::Failed(String::from_utf8_lossy(status).trim().to_string());
    };
    if value["status"] == "Success" {
        return StreamEnd::Exited(0);
    }
    let code = value["details"]["causes"].as_array().and_then(|causes| {
        causes
            .iter()
            .find(|c| c["reason"] == "ExitCode")
            .and_then(|c| c["message"].as_str())
            .and_then(|m| m.parse::<i32>().ok())
    });
    match code {
        Some(code) if exec || value["reason"] == "NonZeroExitCode" => StreamEnd::Exited(code),
        _ => StreamEnd::Failed(
            value["message"]
                .as_str()
                .unwrap_or("the session failed")
                .to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_become_ends() {
        assert_eq!(end_of(b"", true), StreamEnd::Exited(0));
        assert_eq!(
            end_of(br#"{"metadata":{},"status":"Success"}"#, true),
            StreamEnd::Exited(0)
        );
        let failed = br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
        assert_eq!(end_of(failed, true), StreamEnd::Exited(3));
        let broken = br#"{"metadata":{},"status":"Failure","message":"failed to exec in container: OCI runtime exec failed"}"#;
        assert_eq!(
            end_of(broken, true),
            StreamEnd::Failed("failed to exec in container: OCI runtime exec failed".into())
        );
        assert_eq!(end_of(b"oops", false), StreamEnd::Failed("oops".into()));
    }
}
