//! `pods/exec` and `pods/attach`: the client's WebSocket (`v5.channel.k8s.io`,
//! `v4.channel.k8s.io`) or SPDY/3.1 (`v5`…`v2`) session, joined to a session on the pod's
//! worker. The worker is asked first, so a refusal (no tunnel, container not running) is an
//! ordinary error answer instead of a 101.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use protocol::tunnel::channel::StreamEnd;
use protocol::tunnel::{StdStreams, TunnelRequest};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::body::ChannelBody;
use super::remote::{Output, TunnelInput, TunnelOutput, parse_resize, status_json, status_text};
use super::upgrade::{self, Transport, Ws};
use super::{StreamPod, flag, param, query};
use crate::api::ApiServer;
use crate::api::http::{self, Body};

/// How long a worker may take to start the session.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a SPDY client may take to open its streams (upstream's default).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a WebSocket session holds its first frame unless the client writes first.
///
/// client-go registers its channels in one goroutine while another already reads the socket,
/// and drops frames for channels not yet registered; a command that fails at once would
/// otherwise lose its status and leave kubectl with "closed all streams". Upstream's path
/// (apiserver to kubelet to runtime) delays the first frame naturally; a worker asked before
/// the 101 may have it ready immediately.
const CLIENT_SETUP_GRACE: Duration = Duration::from_millis(100);

/// WebSocket subprotocols served, most preferred first.
const WEBSOCKET_PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// SPDY stream protocols served (v5 is v4 on SPDY, as upstream's kubelet has it).
const SPDY_PROTOCOLS: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
];

impl ApiServer {
    /// `pods/exec` (`exec`) or `pods/attach`.
    pub(super) async fn remote_command(
        &self,
        mut req: Request<Incoming>,
        pod: StreamPod,
        exec: bool,
    ) -> Response<Body> {
        let q = query(&req);
        let parsed = (|| {
            let mut s = StdStreams {
                stdin: flag(&q, "stdin")?,
                stdout: flag(&q, "stdout")?,
                stderr: flag(&q, "stderr")?,
                tty: flag(&q, "tty")?,
            };
            // A terminal merges stderr into stdout (the kubelet drops stderr likewise).
            s.stderr &= !s.tty;
            Ok::<_, Response<Body>>(s)
        })();
        let streams = match parsed {
            Ok(s) => s,
            Err(r) => return r,
        };
        let command: Vec<String> = q
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.clone())
            .collect();
        if exec && command.is_empty() {
            return http::status(
                400,
                "BadRequest",
                "you must specify at least one command for the container",
            );
        }
        if !streams.stdin && !streams.stdout && !streams.stderr {
            return http::status(
                400,
                "BadRequest",
                "you must specify at least 1 of stdin, stdout, stderr",
            );
        }
        let Some(transport) = upgrade::transport(&req) else {
            return upgrade::upgrade_required();
        };
        let (accept, session): (Response<Body>, Negotiated) = match &transport {
            Transport::WebSocket { key, protocols } => {
                let Some(p) = upgrade::negotiate(protocols, WEBSOCKET_PROTOCOLS) else {
                    return upgrade::unsupported(protocols, WEBSOCKET_PROTOCOLS);
                };
                let v5 = p == "v5.channel.k8s.io";
                (
                    upgrade::accept_websocket(key, &p),
                    Negotiated::WebSocket { v5 },
                )
            }
            Transport::Spdy { protocols } => {
                let Some(p) = upgrade::negotiate(protocols, SPDY_PROTOCOLS) else {
                    return upgrade::unsupported(protocols, SPDY_PROTOCOLS);
                };
                let version = p.get(1..2).and_then(|v| v.parse().ok()).unwrap_or(4);
                (upgrade::accept_spdy(&p), Negotiated::Spdy { version })
            }
        };
        let container = match pod.container(param(&q, "container")) {
            Ok(c) => c,
            Err(r) => return r,
        };
        let request = if exec {
            TunnelRequest::Exec {
                pod: pod.pod.clone(),
                container,
                command,
                streams,
            }
        } else {
            TunnelRequest::Attach {
                pod: pod.pod.clone(),
                container,
                streams,
            }
        };
        let (tx, body) = ChannelBody::channel(16);
        let response = match self
            .tunnels
            .request(&pod.node, &request, body, START_TIMEOUT)
            .await
        {
            Ok(r) => r,
            Err(e) => return e.response(),
        };
        let input = TunnelInput::new(tx);
        let output = TunnelOutput::new(response.into_body(), &pod.node);
        let on_upgrade = hyper::upgrade::on(&mut req);
        let stop = self.shutdown.clone();
        self.tasks.spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!(error = %e, "exec upgrade failed");
                    return;
                }
            };
            match session {
                Negotiated::WebSocket { v5 } => {
                    let ws = upgrade::websocket(upgraded).await;
                    websocket_session(ws, v5, streams, input, output, stop).await;
                }
                Negotiated::Spdy { version } => {
                    spdy_session(
                        TokioIo::new(upgraded),
                        version,
                        streams,
                        input,
                        output,
                        stop,
                    )
                    .await;
                }
            }
        });
        accept
    }
}

/// The client protocol chosen.
#[derive(Debug, Clone, Copy)]
enum Negotiated {
    WebSocket { v5: bool },
    Spdy { version: u8 },
}

async fn websocket_session(
    ws: Ws,
    v5: bool,
    streams: StdStreams,
    input: TunnelInput,
    mut output: TunnelOutput,
    stop: CancellationToken,
) {
    let (sink, mut incoming) = ws.split();
    let sink = tokio::sync::Mutex::new(sink);
    let setup_deadline = tokio::time::Instant::now() + CLIENT_SETUP_GRACE;
    // A client writing on a channel has registered its channels.
    let client_ready = tokio::sync::Notify::new();
    let from_client = async {
        while let Some(msg) = incoming.next().await {
            if matches!(msg, Ok(Message::Binary(_) | Message::Text(_))) {
                client_ready.notify_one();
            }
            // Text frames carry channel data too, as upstream reads them (the Python client
            // writes a `str` to stdin as a text frame).
            let frame: &[u8] = match &msg {
                Ok(Message::Binary(b)) => b,
                Ok(Message::Text(t)) => t.as_bytes(),
                _ => &[],
            };
            match msg {
                Ok(Message::Binary(_) | Message::Text(_)) => {
                    match (frame.first(), frame.get(1..).unwrap_or_default()) {
                        (Some(0), data) if streams.stdin => input.stdin(data).await,
                        (Some(4), json) => {
                            if let Some(size) = parse_resize(json) {
                                input.resize(size).await;
                            }
                        }
                        (Some(255), [0]) if v5 => input.close_stdin().await,
                        _ => {}
                    }
                }
                // tungstenite queued the pong; it goes out with a flush.
                Ok(Message::Ping(_)) => {
                    let _ = sink.lock().await.flush().await;
                }
                Ok(Message::Close(_)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let to_client = async {
        let mut first = true;
        loop {
            let next = output.next().await;
            if std::mem::take(&mut first) {
                tokio::select! {
                    () = client_ready.notified() => {}
                    () = tokio::time::sleep_until(setup_deadline) => {}
                }
            }
            let (ch, payload) = match next {
                Output::Stdout(d) => (1u8, d),
                Output::Stderr(d) => (2, d),
                Output::End(end) => (3, status_json(&end).to_string().into_bytes()),
            };
            let mut message = BytesMut::with_capacity(payload.len() + 1);
            message.extend_from_slice(&[ch]);
            message.extend_from_slice(&payload);
            let mut sink = sink.lock().await;
            if sink.send(Message::Binary(message.freeze())).await.is_err() {
                return;
            }
            if ch == 3 {
                let _ = sink
                    .send(Message::Close(Some(
                        tokio_tungstenite::tungstenite::protocol::CloseFrame {
                            code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
                            reason: "".into(),
                        },
                    )))
                    .await;
                let _ = sink.flush().await;
                return;
            }
        }
    };
    tokio::select! {
        () = to_client => {}
        // The client went: dropping the tunnel's bodies ends the worker's session.
        () = from_client => {}
        () = stop.cancelled() => {}
    }
}

/// A client stream of an exec session, by its `streamType`.
#[derive(Default)]
struct SpdyStreams {
    error: Option<spdy::Stream>,
    stdin: Option<spdy::Stream>,
    stdout: Option<spdy::Stream>,
    stderr: Option<spdy::Stream>,
    resize: Option<spdy::Stream>,
}

impl SpdyStreams {
    fn count(&self) -> usize {
        [
            &self.error,
            &self.stdin,
            &self.stdout,
            &self.stderr,
            &self.resize,
        ]
        .iter()
        .filter(|s| s.is_some())
        .count()
    }
}

async fn spdy_session(
    io: TokioIo<hyper::upgrade::Upgraded>,
    version: u8,
    streams: StdStreams,
    input: TunnelInput,
    mut output: TunnelOutput,
    stop: CancellationToken,
) {
    let (session, mut incoming, driver) = match spdy::start(io, spdy::Role::Server) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "starting a SPDY session");
            return;
        }
    };
    let expected = 1
        + usize::from(streams.stdin)
        + usize::from(streams.stdout)
        + usize::from(streams.stderr)
        + usize::from(streams.tty && version >= 3);
    let logic = async {
        let mut got = SpdyStreams::default();
        let collect = async {
            while got.count() < expected {
                let Some(s) = incoming.accept().await else {
                    return false;
                };
                let slot = match s.headers().get("streamtype") {
                    Some("error") => &mut got.error,
                    Some("stdin") => &mut got.stdin,
                    Some("stdout") => &mut got.stdout,
                    Some("stderr") => &mut got.stderr,
                    Some("resize") => &mut got.resize,
                    other => {
                        tracing::debug!(stream_type = ?other, "unexpected exec stream");
                        continue;
                    }
                };
                *slot = Some(s);
            }
            true
        };
        match tokio::time::timeout(STREAM_CREATION_TIMEOUT, collect).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(_) => {
                tracing::debug!("timed out waiting for client to create streams");
                let _ = session.go_away().await;
                return;
            }
        }
        let (mut stdin_r, mut stdin_w) = got.stdin.map(spdy::Stream::split).unzip();
        let (mut resize_r, _resize_w) = got.resize.map(spdy::Stream::split).unzip();
        let (_stdout_r, mut stdout_w) = got.stdout.map(spdy::Stream::split).unzip();
        let (_stderr_r, mut stderr_w) = got.stderr.map(spdy::Stream::split).unzip();
        let (_error_r, mut error_w) = got.error.map(spdy::Stream::split).unzip();
        let stdin_pump = async {
            if let Some(r) = stdin_r.as_mut() {
                while let Ok(Some(b)) = r.read().await {
                    input.stdin(&b).await;
                }
                input.close_stdin().await;
            }
            std::future::pending::<()>().await;
        };
        let resize_pump = async {
            if let Some(r) = resize_r.as_mut() {
                let mut buf = Vec::new();
                while let Ok(Some(b)) = r.read().await {
                    buf.extend_from_slice(&b);
                    // Sizes arrive as JSON values back to back (Go's json.Encoder).
                    let mut values =
                        serde_json::Deserializer::from_slice(&buf).into_iter::<serde_json::Value>();
                    let mut used = 0;
                    while let Some(Ok(v)) = values.next() {
                        used = values.byte_offset();
                        if let Some(size) = parse_resize(v.to_string().as_bytes()) {
                            input.resize(size).await;
                        }
                    }
                    buf.drain(..used);
                }
            }
            std::future::pending::<()>().await;
        };
        let to_client = async {
            let end = loop {
                let (w, data) = match output.next().await {
                    Output::Stdout(d) => (stdout_w.as_mut(), d),
                    Output::Stderr(d) => (stderr_w.as_mut(), d),
                    Output::End(end) => break end,
                };
                if let Some(w) = w
                    && w.write(Bytes::from(data)).await.is_err()
                {
                    break StreamEnd::Failed("the client went away".into());
                }
            };
            if let Some(w) = error_w.as_mut() {
                let message = if version >= 4 {
                    Some(status_json(&end).to_string())
                } else {
                    status_text(&end)
                };
                if let Some(m) = message {
                    let _ = w.write(Bytes::from(m)).await;
                }
            }
            for w in [&mut error_w, &mut stdout_w, &mut stderr_w, &mut stdin_w]
                .into_iter()
                .flatten()
            {
                let _ = w.finish().await;
            }
        };
        tokio::select! {
            () = to_client => {}
            () = stdin_pump => {}
            () = resize_pump => {}
        }
        let _ = session.go_away().await;
    };
    tokio::pin!(driver, logic);
    tokio::select! {
        () = &mut logic => {
            // Gone away: let the driver write that and see the client close.
            let _ = tokio::time::timeout(STREAM_CREATION_TIMEOUT, &mut driver).await;
        }
        // The client's connection ended: the worker's session ends with the tunnel's bodies.
        r = &mut driver => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "exec SPDY session ended");
            }
        }
        () = stop.cancelled() => {}
    }
}
