//! The HTTP upgrades kubectl's streams use: WebSocket (RFC 6455, with a Kubernetes
//! subprotocol) and SPDY/3.1 (`X-Stream-Protocol-Version`), and a WebSocket carried as a
//! plain byte stream (SPDY tunnelled in WebSocket messages).

use std::future::Future;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, frame::coding::CloseCode};

use crate::api::http::{self, Body};

/// SPDY's request header listing the stream protocols a client speaks.
pub(super) const STREAM_PROTOCOL: &str = "x-stream-protocol-version";

/// The connection an upgraded request gets.
pub(super) type Io = TokioIo<Upgraded>;

/// A WebSocket on an upgraded connection.
pub(super) type Ws = WebSocketStream<Io>;

/// How a client asked to upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Transport {
    /// WebSocket, with its key and the subprotocols offered (in the client's order).
    WebSocket {
        /// `Sec-WebSocket-Key`.
        key: String,
        /// `Sec-WebSocket-Protocol`.
        protocols: Vec<String>,
    },
    /// SPDY/3.1, with the stream protocols offered (in the client's order).
    Spdy {
        /// `X-Stream-Protocol-Version`.
        protocols: Vec<String>,
    },
}

/// Every value of `name`, comma-separated lists split, in order.
pub(super) fn header_list(req: &Request<Incoming>, name: &str) -> Vec<String> {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The upgrade `req` asks for, if any.
pub(super) fn transport(req: &Request<Incoming>) -> Option<Transport> {
    let connection = header_list(req, "connection");
    if !connection.iter().any(|t| t.eq_ignore_ascii_case("upgrade")) {
        return None;
    }
    let upgrade = header_list(req, "upgrade");
    if upgrade.iter().any(|t| t.eq_ignore_ascii_case("websocket")) {
        let key = req
            .headers()
            .get("sec-websocket-key")
            .and_then(|v| v.to_str().ok())?
            .trim()
            .to_string();
        return Some(Transport::WebSocket {
            key,
            protocols: header_list(req, "sec-websocket-protocol"),
        });
    }
    if upgrade.iter().any(|t| t.eq_ignore_ascii_case("SPDY/3.1")) {
        return Some(Transport::Spdy {
            protocols: header_list(req, STREAM_PROTOCOL),
        });
    }
    None
}

/// The first protocol of `client` that `server` supports.
pub(super) fn negotiate(client: &[String], server: &[&str]) -> Option<String> {
    client
        .iter()
        .find(|c| server.contains(&c.as_str()))
        .cloned()
}

/// 400 for a streaming subresource requested without an upgrade, as upstream words it.
pub(super) fn upgrade_required() -> Response<Body> {
    http::status(400, "BadRequest", "Upgrade request required")
}

/// 400 for protocols nothing here speaks.
pub(super) fn unsupported(client: &[String], server: &[&str]) -> Response<Body> {
    http::status(
        400,
        "BadRequest",
        &format!(
            "unable to upgrade: unable to negotiate protocol: client supports {client:?}, server supports {server:?}"
        ),
    )
}

fn switching(headers: &[(header::HeaderName, String)]) -> Response<Body> {
    let mut r = Response::new(http::full(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (name, value) in headers {
        if let Ok(v) = header::HeaderValue::from_str(value) {
            r.headers_mut().append(name.clone(), v);
        }
    }
    r
}

/// The 101 answer accepting a WebSocket with `protocol`.
pub(super) fn accept_websocket(key: &str, protocol: &str) -> Response<Body> {
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    switching(&[
        (header::CONNECTION, "Upgrade".into()),
        (header::UPGRADE, "websocket".into()),
        (
            header::SEC_WEBSOCKET_ACCEPT,
            derive_accept_key(key.as_bytes()),
        ),
        (header::SEC_WEBSOCKET_PROTOCOL, protocol.into()),
    ])
}

/// The 101 answer accepting SPDY/3.1 with `protocol`.
pub(super) fn accept_spdy(protocol: &str) -> Response<Body> {
    switching(&[
        (header::CONNECTION, "Upgrade".into()),
        (header::UPGRADE, "SPDY/3.1".into()),
        (
            header::HeaderName::from_static(STREAM_PROTOCOL),
            protocol.into(),
        ),
    ])
}

/// The server side of a WebSocket on an upgraded connection.
pub(super) async fn websocket(upgraded: Upgraded) -> Ws {
    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await
}

/// `ws` as a byte stream both ways (each write one binary message, as client-go's
/// `TunnelingConnection` does): the stream to use, and the pump to run alongside it.
pub(super) fn websocket_bytes(ws: Ws) -> (DuplexStream, impl Future<Output = ()> + Send) {
    let (ours, mut theirs) = tokio::io::duplex(256 * 1024);
    let pump = async move {
        let (mut sink, mut stream) = ws.split();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(Ok(Message::Binary(b))) => {
                        if theirs.write_all(&b).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(Message::Ping(_))) => {
                        // The pong tungstenite queued goes out with a flush.
                        let _ = sink.flush().await;
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
                n = theirs.read(&mut buf) => match n {
                    Ok(0) | Err(_) => {
                        let _ = sink
                            .send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() })))
                            .await;
                        break;
                    }
                    Ok(n) => {
                        let chunk = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                        if sink.send(Message::Binary(chunk)).await.is_err() {
                            break;
                        }
                    }
                },
            }
        }
        let _ = theirs.shutdown().await;
    };
    (ours, pump)
}
