//! Serving the enclave's requests on an upgraded tunnel connection (HTTP/2, this end the
//! server).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, header};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use protocol::tunnel::TunnelRequest;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::exec::{Body, bridge_connection, bridge_process};
use super::stats::Sampler;
use super::{ContainerStreams, StreamError};

/// How often an idle tunnel is pinged, and how long a ping may go unanswered before the
/// tunnel counts as lost (a host that silently drops it is noticed within both).
const KEEPALIVE: Duration = Duration::from_secs(15);

struct Context {
    streams: Arc<dyn ContainerStreams>,
    sampler: Sampler,
    tasks: TaskTracker,
    /// Cancelled when the connection ends: every stream of it stops.
    cancel: CancellationToken,
}

/// Serves the enclave on `io` until the connection ends (`Ok` for a clean close) or
/// `shutdown`.
pub(super) async fn serve(
    io: hyper::upgrade::Upgraded,
    streams: Arc<dyn ContainerStreams>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let ctx = Arc::new(Context {
        streams,
        sampler: Sampler::default(),
        tasks: TaskTracker::new(),
        cancel: shutdown.child_token(),
    });
    let service_ctx = ctx.clone();
    let service = hyper::service::service_fn(move |req| {
        let ctx = service_ctx.clone();
        async move { Ok::<_, Infallible>(handle(&ctx, req).await) }
    });
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(KEEPALIVE))
        .keep_alive_timeout(KEEPALIVE)
        .serve_connection(io, service);
    let result = tokio::select! {
        r = conn => r.map_err(|e| format!("tunnel: {e}")),
        () = shutdown.cancelled() => Ok(()),
    };
    ctx.cancel.cancel();
    ctx.tasks.close();
    ctx.tasks.wait().await;
    result
}

fn text(status: u16, message: &str) -> Response<Body> {
    let body = http_body_util::Full::new(Bytes::from(format!("{message}\n")))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut r = Response::new(body);
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn refused(e: &StreamError) -> Response<Body> {
    text(e.kind().status(), &e.to_string())
}

fn ok(body: Body) -> Response<Body> {
    Response::new(body)
}

async fn handle(ctx: &Context, req: Request<Incoming>) -> Response<Body> {
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let request = match TunnelRequest::parse(req.method().as_str(), &target) {
        Ok(r) => r,
        Err(e) => return text(400, &e.to_string()),
    };
    tracing::debug!(request = %target, "tunnel request");
    let streams = &ctx.streams;
    match request {
        TunnelRequest::Logs {
            pod,
            container,
            options,
        } => match streams.logs(pod, container, options).await {
            Ok(log) => ok(http_body_util::StreamBody::new(
                log.map(|c| c.map(hyper::body::Frame::data)),
            )
            .boxed_unsync()),
            Err(e) => refused(&e),
        },
        TunnelRequest::Exec {
            pod,
            container,
            command,
            streams: s,
        } => match streams.exec(pod, container, command, s).await {
            Ok(p) => ok(bridge_process(req.into_body(), p, &ctx.tasks, &ctx.cancel)),
            Err(e) => refused(&e),
        },
        TunnelRequest::Attach {
            pod,
            container,
            streams: s,
        } => match streams.attach(pod, container, s).await {
            Ok(p) => ok(bridge_process(req.into_body(), p, &ctx.tasks, &ctx.cancel)),
            Err(e) => refused(&e),
        },
        TunnelRequest::PortForward { pod, port } => match streams.port_forward(pod, port).await {
            Ok(conn) => ok(bridge_connection(
                req.into_body(),
                conn,
                &ctx.tasks,
                &ctx.cancel,
            )),
            Err(e) => refused(&e),
        },
        TunnelRequest::Stats => match ctx.sampler.stats(streams.as_ref()).await {
            Ok(s) => ok(http_body_util::Full::new(Bytes::from(s.encode()))
                .map_err(|never| match never {})
                .boxed_unsync()),
            Err(e) => refused(&e),
        },
    }
}
