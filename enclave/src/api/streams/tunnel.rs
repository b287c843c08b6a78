//! Node tunnels, the enclave's end: a worker upgrades `GET /daas/v1/tunnel` (authenticated as
//! `system:node:NAME`), and this end then speaks HTTP/2 as the *client* on that connection:
//! every stream to the node is one request. [`Tunnels`] keeps the live tunnel of each node;
//! a node has at most one (a newer one replaces the older).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::{Request, Response, header};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use protocol::tunnel::{RefusalKind, TUNNEL_UPGRADE, TunnelRequest};
use tokio_util::sync::CancellationToken;

use super::body::ChannelBody;
use crate::api::ApiServer;
use crate::api::http::{self, Body};
use crate::registry::UserInfo;

/// How often an idle tunnel is pinged and how long an answer may take; a tunnel the host
/// silently dropped is gone within both.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// The longest refusal message read from a worker.
const REFUSAL_LIMIT: usize = 16 * 1024;

/// Why a stream to a node could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TunnelError {
    /// The node has no tunnel: its worker is down or cannot reach the enclave.
    #[error(
        "node {node:?} has no tunnel to the control plane (its worker is down or cannot reach it)"
    )]
    NoTunnel {
        /// The node.
        node: String,
    },
    /// The tunnel failed or the node took too long.
    #[error("the tunnel to node {node:?} failed: {cause}")]
    Lost {
        /// The node.
        node: String,
        /// What happened.
        cause: String,
    },
    /// The worker refused the request.
    #[error("{message}")]
    Refused {
        /// How.
        kind: RefusalKind,
        /// The worker's message.
        message: String,
    },
}

impl TunnelError {
    /// The `metav1.Status` response a user gets for it.
    pub(crate) fn response(&self) -> Response<Body> {
        let message = self.to_string();
        match self {
            TunnelError::NoTunnel { .. } | TunnelError::Lost { .. } => {
                http::status(503, "ServiceUnavailable", &message)
            }
            TunnelError::Refused { kind, .. } => match kind {
                RefusalKind::NotFound => http::status(404, "NotFound", &message),
                RefusalKind::BadRequest | RefusalKind::NotRunning => {
                    http::status(400, "BadRequest", &message)
                }
                RefusalKind::Internal => http::status(
                    500,
                    "InternalError",
                    &format!("Internal error occurred: {message}"),
                ),
            },
        }
    }
}

#[derive(Debug, Clone)]
struct Live {
    id: u64,
    sender: SendRequest<ChannelBody>,
    /// Cancelled when a newer tunnel of the node replaces this one.
    replaced: CancellationToken,
}

/// The live tunnel of each node. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Tunnels {
    live: Arc<Mutex<HashMap<String, Live>>>,
    next_id: Arc<AtomicU64>,
}

impl Tunnels {
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        match self.live.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Whether `node` has a tunnel now.
    pub fn is_connected(&self, node: &str) -> bool {
        self.live().contains_key(node)
    }

    /// The nodes with a tunnel, sorted.
    pub fn nodes(&self) -> Vec<String> {
        let mut n: Vec<String> = self.live().keys().cloned().collect();
        n.sort();
        n
    }

    fn register(&self, node: &str, sender: SendRequest<ChannelBody>) -> (u64, CancellationToken) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let replaced = CancellationToken::new();
        let old = self.live().insert(
            node.to_string(),
            Live {
                id,
                sender,
                replaced: replaced.clone(),
            },
        );
        if let Some(old) = old {
            old.replaced.cancel();
        }
        (id, replaced)
    }

    fn remove(&self, node: &str, id: u64) {
        let mut live = self.live();
        if live.get(node).is_some_and(|l| l.id == id) {
            live.remove(node);
        }
    }

    /// Sends `request` to `node` with `body`; the response once its headers arrive (within
    /// `timeout`) and say 200.
    ///
    /// # Errors
    ///
    /// [`TunnelError::NoTunnel`], [`TunnelError::Lost`] (the tunnel failed, or no answer in
    /// time), [`TunnelError::Refused`] with the worker's message.
    pub(crate) async fn request(
        &self,
        node: &str,
        request: &TunnelRequest,
        body: ChannelBody,
        timeout: Duration,
    ) -> Result<Response<Incoming>, TunnelError> {
        let lost = |cause: String| TunnelError::Lost {
            node: node.to_string(),
            cause,
        };
        let mut sender = self
            .live()
            .get(node)
            .map(|l| l.sender.clone())
            .ok_or_else(|| TunnelError::NoTunnel {
                node: node.to_string(),
            })?;
        let req = Request::builder()
            .method(request.method())
            .uri(format!("http://{node}.tunnel{}", request.target()))
            .body(body)
            .map_err(|e| lost(e.to_string()))?;
        let exchange = async {
            sender.ready().await.map_err(|e| lost(e.to_string()))?;
            sender
                .send_request(req)
                .await
                .map_err(|e| lost(e.to_string()))
        };
        let response = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| lost(format!("no answer within {}s", timeout.as_secs())))??;
        if response.status().is_success() {
            return Ok(response);
        }
        let kind = RefusalKind::from_status(response.status().as_u16());
        let text = tokio::time::timeout(
            timeout,
            http_body_util::Limited::new(response.into_body(), REFUSAL_LIMIT).collect(),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
        .unwrap_or_default();
        Err(TunnelError::Refused {
            kind,
            message: text,
        })
    }
}

/// Whether the request asks for the tunnel upgrade.
fn asks_for_tunnel(req: &Request<Incoming>) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, TUNNEL_UPGRADE)
}

impl ApiServer {
    /// `GET /daas/v1/tunnel`: a node's worker opens its tunnel.
    pub(crate) fn accept_tunnel(
        &self,
        mut req: Request<Incoming>,
        user: Option<&UserInfo>,
    ) -> Response<Body> {
        let Some(node) = user.and_then(|u| protocol::tunnel::node_name(&u.name, &u.groups)) else {
            let who = user.map(|u| u.name.as_str()).unwrap_or("");
            return http::status(
                403,
                "Forbidden",
                &format!(
                    "tunnels are opened by nodes (system:node:NAME in system:nodes), not by user {who:?}"
                ),
            );
        };
        // Node restriction once nodes can join: only an admitted node's credentials get here
        // (the join work's `NodeAdmission` check in `handle` refuses the others).
        if req.method() != hyper::Method::GET || !asks_for_tunnel(&req) {
            return http::status(
                400,
                "BadRequest",
                &format!(
                    "the tunnel is GET with Connection: Upgrade and Upgrade: {TUNNEL_UPGRADE}"
                ),
            );
        }
        let node = node.to_string();
        let upgrade = hyper::upgrade::on(&mut req);
        let (tunnels, stop) = (self.tunnels.clone(), self.shutdown.clone());
        self.tasks.spawn(async move {
            let io = match upgrade.await {
                Ok(io) => io,
                Err(e) => {
                    tracing::debug!(node, error = %e, "tunnel upgrade failed");
                    return;
                }
            };
            let handshake = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(KEEPALIVE)
                .keep_alive_timeout(KEEPALIVE)
                .keep_alive_while_idle(true)
                .handshake::<_, ChannelBody>(io)
                .await;
            let (sender, conn) = match handshake {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(node, error = %e, "tunnel HTTP/2 handshake failed");
                    return;
                }
            };
            let (id, replaced) = tunnels.register(&node, sender);
            tracing::info!(node, "node tunnel up");
            let ended = tokio::select! {
                r = conn => r.map_err(|e| e.to_string()).err(),
                () = replaced.cancelled() => Some("replaced by a newer tunnel".into()),
                () = stop.cancelled() => None,
            };
            tunnels.remove(&node, id);
            tracing::info!(
                node,
                reason = ended.as_deref().unwrap_or("closed"),
                "node tunnel down"
            );
        });
        let mut response = Response::new(http::full(Bytes::new()));
        *response.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
        let h = response.headers_mut();
        h.insert(
            header::CONNECTION,
            header::HeaderValue::from_static("Upgrade"),
        );
        h.insert(
            header::UPGRADE,
            header::HeaderValue::from_static(TUNNEL_UPGRADE),
        );
        response
    }
}
