//! The tunnel side of an exec or attach session, shared by the WebSocket and SPDY clients:
//! frames to the worker (stdin, resize, close) and from it (stdout, stderr, the end), and the
//! `Status` the client gets at the end.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use protocol::tunnel::channel::{
    self, CLOSE, END, RESIZE, STDERR, STDIN, STDOUT, StreamEnd, TerminalSize,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// What goes to the worker.
#[derive(Debug, Clone)]
pub(super) struct TunnelInput {
    tx: mpsc::Sender<Bytes>,
}

impl TunnelInput {
    pub(super) fn new(tx: mpsc::Sender<Bytes>) -> Self {
        TunnelInput { tx }
    }

    async fn send(&self, ch: u8, payload: &[u8]) {
        for chunk in payload.chunks(channel::MAX_PAYLOAD) {
            if let Ok(frame) = channel::encode(ch, chunk) {
                // The worker is gone when this fails; the output side reports it.
                let _ = self.tx.send(Bytes::from(frame)).await;
            }
        }
    }

    /// Bytes for the process's stdin.
    pub(super) async fn stdin(&self, data: &[u8]) {
        if !data.is_empty() {
            self.send(STDIN, data).await;
        }
    }

    /// The client closed stdin.
    pub(super) async fn close_stdin(&self) {
        self.send(CLOSE, &[STDIN]).await;
    }

    /// A new terminal size.
    pub(super) async fn resize(&self, size: TerminalSize) {
        self.send(RESIZE, &size.encode()).await;
    }
}

/// What comes from the worker.
#[derive(Debug)]
pub(super) enum Output {
    /// Process stdout (or its terminal).
    Stdout(Vec<u8>),
    /// Process stderr.
    Stderr(Vec<u8>),
    /// The end; nothing follows.
    End(StreamEnd),
}

/// Reads the worker's frames.
#[derive(Debug)]
pub(super) struct TunnelOutput {
    body: Incoming,
    decoder: channel::Decoder,
    node: String,
    failed: Option<String>,
}

impl TunnelOutput {
    pub(super) fn new(body: Incoming, node: &str) -> Self {
        TunnelOutput {
            body,
            decoder: channel::Decoder::new(),
            node: node.to_string(),
            failed: None,
        }
    }

    /// The next output; a body that ends (or fails) without an end frame is a lost tunnel.
    /// Cancel-safe: received bytes are buffered before any other await.
    pub(super) async fn next(&mut self) -> Output {
        loop {
            match self.decoder.next_frame() {
                Ok(Some(f)) => match f.channel {
                    STDOUT => return Output::Stdout(f.payload),
                    STDERR => return Output::Stderr(f.payload),
                    END => {
                        return Output::End(StreamEnd::decode(&f.payload).unwrap_or_else(|| {
                            StreamEnd::Failed("the worker sent a malformed end".into())
                        }));
                    }
                    _ => continue,
                },
                Ok(None) => {}
                Err(e) => return Output::End(StreamEnd::Failed(e.to_string())),
            }
            if let Some(why) = &self.failed {
                return Output::End(StreamEnd::Failed(format!(
                    "the tunnel to node {:?} was lost: {why}",
                    self.node
                )));
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.decoder.push(&data);
                    }
                }
                Some(Err(e)) => self.failed = Some(e.to_string()),
                None => self.failed = Some("the stream ended before the command did".into()),
            }
        }
    }
}

/// The `metav1.Status` of v4 and v5 for how a session ended (what kubectl turns into its exit
/// code).
pub(super) fn status_json(end: &StreamEnd) -> Value {
    match end {
        StreamEnd::Exited(0) => json!({"metadata": {}, "status": "Success"}),
        StreamEnd::Exited(code) => {
            // Exit codes travel as 0..=255, as a process's status does.
            let code = code & 0xff;
            json!({
                "metadata": {},
                "status": "Failure",
                "message": format!("command terminated with non-zero exit code: error executing command, exit code {code}"),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            })
        }
        StreamEnd::Failed(message) => json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "InternalError",
            "code": 500,
        }),
    }
}

/// The plain-text error of v1–v3 (`None`: success, nothing is written).
pub(super) fn status_text(end: &StreamEnd) -> Option<String> {
    match end {
        StreamEnd::Exited(0) => None,
        StreamEnd::Exited(code) => Some(format!(
            "command terminated with non-zero exit code: error executing command, exit code {}",
            code & 0xff
        )),
        StreamEnd::Failed(message) => Some(message.clone()),
    }
}

/// A resize message (`{"Width":…,"Height":…}`).
pub(super) fn parse_resize(json: &[u8]) -> Option<TerminalSize> {
    let v: Value = serde_json::from_slice(json).ok()?;
    Some(TerminalSize {
        width: u16::try_from(v.get("Width")?.as_u64()?).ok()?,
        height: u16::try_from(v.get("Height")?.as_u64()?).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_exit_codes_as_kubectl_reads_them() {
        assert_eq!(status_json(&StreamEnd::Exited(0))["status"], "Success");
        let s = status_json(&StreamEnd::Exited(3));
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
        assert_eq!(
            status_json(&StreamEnd::Exited(-1))["details"]["causes"][0]["message"],
            "255"
        );
        assert_eq!(status_json(&StreamEnd::Failed("x".into()))["message"], "x");
        assert_eq!(status_text(&StreamEnd::Exited(0)), None);
        assert_eq!(
            parse_resize(br#"{"Width":80,"Height":24}"#),
            Some(TerminalSize {
                width: 80,
                height: 24
            })
        );
        assert_eq!(parse_resize(b"{}"), None);
    }
}
