//! The TLS accept loop shared by the API server and the sealed server: accept
//! on a [`Listener`], handshake with a deadline, then serve HTTP/1.1 or
//! HTTP/2 (by ALPN) with a [`Handler`] per request.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ServerConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::http::Body;
use super::{Authenticator, Listener, UserInfo};

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers one request; `cert_user` is the verified TLS client certificate's user, if any.
pub(crate) trait Handler: Send + Sync + 'static {
    /// Serves `req`.
    fn handle(
        &self,
        req: Request<Incoming>,
        cert_user: Option<UserInfo>,
    ) -> impl Future<Output = Response<Body>> + Send;
}

/// What open connections get when `stop` fires.
#[derive(Debug, Clone, Copy)]
pub(crate) enum OnStop {
    /// Cut them at once (the API server: watches would otherwise hold them open).
    Cut,
    /// Let in-flight responses finish, up to this long, then close.
    Drain(Duration),
}

/// Accepts TLS connections on `listener` until `stop` fires; each connection
/// runs on `tasks`.
pub(crate) async fn serve_tls<H: Handler>(
    listener: &Listener,
    tls: Arc<ServerConfig>,
    handler: Arc<H>,
    tasks: &TaskTracker,
    stop: &CancellationToken,
    on_stop: OnStop,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = stop.cancelled() => break,
        };
        let (conn, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let handler = handler.clone();
        let acceptor = acceptor.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(conn)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::debug!(peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let cert_user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(Authenticator::client_certificate);
            let peer_ext = super::access::Peer(Arc::from(peer.as_str()));
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let handler = handler.clone();
                let user = cert_user.clone();
                req.extensions_mut().insert(peer_ext.clone());
                async move { Ok::<_, Infallible>(handler.handle(req, user).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => Some(r),
                () = stop.cancelled() => None,
            };
            let result = match (result, on_stop) {
                (Some(r), _) => r,
                (None, OnStop::Cut) => return,
                (None, OnStop::Drain(limit)) => {
                    conn.as_mut().graceful_shutdown();
                    match tokio::time::timeout(limit, conn).await {
                        Ok(r) => r,
                        Err(_) => return,
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(peer, error = %e, "connection ended with an error");
            }
        });
    }
}
