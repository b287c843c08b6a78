//! `pods/portforward`: kubectl's SPDY/3.1 session (raw, or tunnelled in WebSocket messages
//! with `SPDY/3.1+portforward.k8s.io`), where each local connection opens an `error` and a
//! `data` stream sharing a `requestID`; each pair becomes one connection to the port through
//! the pod's worker, as upstream's kubelet pairs them.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use protocol::tunnel::TunnelRequest;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use super::StreamPod;
use super::body::ChannelBody;
use super::tunnel::{TunnelError, Tunnels};
use super::upgrade::{self, Transport};
use crate::api::ApiServer;
use crate::api::http::Body;

/// The SPDY stream protocol of port-forward.
const PORT_FORWARD: &str = "portforward.k8s.io";
/// The WebSocket subprotocol of SPDY tunnelled in WebSocket (kubectl 1.31+).
const TUNNELLED: &str = "SPDY/3.1+portforward.k8s.io";
/// How long a worker may take to connect to the port.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

impl ApiServer {
    /// `pods/portforward`.
    pub(super) fn port_forward(
        &self,
        mut req: Request<Incoming>,
        pod: StreamPod,
    ) -> Response<Body> {
        let Some(transport) = upgrade::transport(&req) else {
            return upgrade::upgrade_required();
        };
        let accept = match &transport {
            Transport::WebSocket { key, protocols } => {
                if !protocols.iter().any(|p| p == TUNNELLED) {
                    return upgrade::unsupported(protocols, &[TUNNELLED]);
                }
                upgrade::accept_websocket(key, TUNNELLED)
            }
            Transport::Spdy { protocols } => {
                if upgrade::negotiate(protocols, &[PORT_FORWARD]).is_none() {
                    return upgrade::unsupported(protocols, &[PORT_FORWARD]);
                }
                upgrade::accept_spdy(PORT_FORWARD)
            }
        };
        // Without a tunnel every connection would fail: say so before upgrading.
        if !self.tunnels.is_connected(&pod.node) {
            return TunnelError::NoTunnel { node: pod.node }.response();
        }
        let on_upgrade = hyper::upgrade::on(&mut req);
        let (tunnels, stop) = (self.tunnels.clone(), self.shutdown.clone());
        self.tasks.spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    tracing::debug!(error = %e, "port-forward upgrade failed");
                    return;
                }
            };
            match transport {
                Transport::WebSocket { .. } => {
                    let ws = upgrade::websocket(upgraded).await;
                    let (io, pump) = upgrade::websocket_bytes(ws);
                    tokio::join!(session(io, &pod, &tunnels, &stop), pump);
                }
                Transport::Spdy { .. } => {
                    session(TokioIo::new(upgraded), &pod, &tunnels, &stop).await
                }
            }
        });
        accept
    }
}

/// The two streams of one forwarded connection.
#[derive(Default)]
struct Pair {
    error: Option<spdy::Stream>,
    data: Option<spdy::Stream>,
}

async fn session<Io>(io: Io, pod: &StreamPod, tunnels: &Tunnels, stop: &CancellationToken)
where
    Io: AsyncRead + AsyncWrite + Send + 'static,
{
    let (session, mut incoming, driver) = match spdy::start(io, spdy::Role::Server) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "starting a SPDY session");
            return;
        }
    };
    let logic = async {
        let mut pairs: HashMap<String, Pair> = HashMap::new();
        let mut forwards = FuturesUnordered::new();
        loop {
            tokio::select! {
                s = incoming.accept() => {
                    let Some(s) = s else { break };
                    let port = s.headers().get("port").and_then(|p| p.parse::<u16>().ok()).filter(|p| *p != 0);
                    let kind = s.headers().get("streamtype").map(str::to_string);
                    let Some(port) = port else {
                        let (_, mut w) = s.split();
                        let _ = w.reset(spdy::frame::rst::PROTOCOL_ERROR).await;
                        continue;
                    };
                    // Clients without request ids (before 1.x) are paired by stream id, as the
                    // kubelet does: the data stream follows its error stream.
                    let request_id = s.headers().get("requestid").map(str::to_string).unwrap_or_else(|| {
                        let id = s.id();
                        if kind.as_deref() == Some("data") { id.saturating_sub(2) } else { id }.to_string()
                    });
                    let pair = pairs.entry(request_id.clone()).or_default();
                    match kind.as_deref() {
                        Some("error") if pair.error.is_none() => pair.error = Some(s),
                        Some("data") if pair.data.is_none() => pair.data = Some(s),
                        _ => {
                            let (_, mut w) = s.split();
                            let _ = w.reset(spdy::frame::rst::PROTOCOL_ERROR).await;
                            continue;
                        }
                    }
                    if pair.error.is_some() && pair.data.is_some()
                        && let Some(Pair { error: Some(error), data: Some(data) }) = pairs.remove(&request_id)
                    {
                        forwards.push(forward(error, data, port, pod, tunnels));
                    }
                }
                Some(()) = forwards.next() => {}
            }
        }
        let _ = session.go_away().await;
    };
    tokio::pin!(driver, logic);
    tokio::select! {
        () = &mut logic => {
            let _ = tokio::time::timeout(CONNECT_TIMEOUT, &mut driver).await;
        }
        r = &mut driver => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "port-forward SPDY session ended");
            }
        }
        () = stop.cancelled() => {}
    }
}

/// One forwarded connection: `data` joined to a connection to `port` through the worker;
/// failures are written on `error`, worded as the kubelet words them.
async fn forward(
    error: spdy::Stream,
    data: spdy::Stream,
    port: u16,
    pod: &StreamPod,
    tunnels: &Tunnels,
) {
    let (_, mut error_w) = error.split();
    let (mut data_r, mut data_w) = data.split();
    let fail = |why: String| {
        format!(
            "error forwarding port {port} to pod {}, uid {}: {why}",
            pod.pod.name, pod.pod.uid
        )
    };
    let (tx, body) = ChannelBody::channel(16);
    let request = TunnelRequest::PortForward {
        pod: pod.pod.clone(),
        port,
    };
    let result = match tunnels
        .request(&pod.node, &request, body, CONNECT_TIMEOUT)
        .await
    {
        Err(e) => Err(e.to_string()),
        Ok(response) => {
            let mut from_pod = response.into_body();
            let up = async move {
                while let Ok(Some(b)) = data_r.read().await {
                    if tx.send(b).await.is_err() {
                        break;
                    }
                }
                // The client finished sending: the request body ends, the worker shuts the
                // connection's write side.
                drop(tx);
                std::future::pending::<()>().await;
            };
            let down = async {
                loop {
                    match from_pod.frame().await {
                        Some(Ok(frame)) => {
                            if let Ok(d) = frame.into_data()
                                && data_w.write(d).await.is_err()
                            {
                                return Ok(());
                            }
                        }
                        Some(Err(e)) => {
                            return Err(format!("the tunnel to node {:?} failed: {e}", pod.node));
                        }
                        None => return Ok(()),
                    }
                }
            };
            // The connection is over when the pod's side is (the client may still be sending).
            tokio::select! {
                r = down => r,
                () = up => Ok(()),
            }
        }
    };
    let _ = data_w.finish().await;
    if let Err(why) = result {
        let _ = error_w.write(bytes::Bytes::from(fail(why))).await;
    }
    let _ = error_w.finish().await;
}
