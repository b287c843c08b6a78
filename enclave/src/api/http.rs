//! Response bodies and helpers shared by every handler.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::{Response, StatusCode, header};
use serde_json::Value;

use crate::registry::Error;

/// Every response body: whole (JSON, text) or streamed (watch).
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A JSON response with `content_type` (usually `application/json`).
pub fn json_with(code: u16, v: &Value, content_type: &str, warnings: &[String]) -> Response<Body> {
    let mut b = Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-cache, private");
    for w in warnings {
        // Upstream's makeQuotedString: quotes and backslashes escaped.
        let text = w
            .replace(['\r', '\n'], " ")
            .replace('\\', "\\\\")
            .replace('"', "\\\"");
        b = b.header("Warning", format!("299 - \"{text}\""));
    }
    b.body(full(super::status::encode(v))).unwrap_or_else(|_| {
        let mut r = Response::new(full("{}"));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

/// A JSON response whose body is already encoded (and is not a `Status`).
pub fn json_bytes(code: u16, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(full(body))
        .unwrap_or_else(|_| {
            let mut r = Response::new(full("{}"));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        })
}

/// A JSON response.
pub fn json(code: u16, v: &Value) -> Response<Body> {
    json_with(code, v, "application/json", &[])
}

/// A `metav1.Status` error response.
pub fn error(e: &Error) -> Response<Body> {
    if let Error::Store(inner) = e {
        tracing::error!(error = %inner, "store failure");
    }
    let mut response = json(e.code(), &e.to_status());
    if let Error::TooManyRequests {
        retry_after_seconds,
        ..
    } = e
        && *retry_after_seconds > 0
        && let Ok(v) = hyper::header::HeaderValue::from_str(&retry_after_seconds.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// 404 for a path nothing serves, worded as upstream.
pub fn path_not_found() -> Response<Body> {
    status(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

/// 401 for requests without valid credentials, the body byte for byte as upstream's.
pub fn unauthorized() -> Response<Body> {
    Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(full(
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#,
        ))
        .unwrap_or_else(|_| json(401, &serde_json::json!({})))
}

/// A `metav1.Status` failure with `reason` and `message`, outside the
/// registry's [`Error`]s (e.g. the sealed phase's 503).
pub fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    json(
        code,
        &serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "details": {}, "code": code,
        }),
    )
}

/// A plain-text response (health endpoints).
pub fn text(code: u16, body: impl Into<bytes::Bytes>) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full(body))
        .unwrap_or_else(|_| json(500, &serde_json::json!({})))
}

/// How many times the body limit a too-large body may carry and still be
/// read to its end (and thrown away) before the 413 is sent.
///
/// Why read it at all: a server that answers early and then closes the
/// connection with the body unread makes the kernel reset it, and an
/// HTTP/1.1 client still writing (Go before 1.22, so kubectl 1.27 … 1.31
/// with HTTP/2 off, Python's `http.client`) sees a broken pipe instead of
/// the answer. Upstream reads the limit's worth first and Go's server waits
/// before closing; reading the rest here gets the same result without
/// timing, and keeps the connection usable. Beyond this the client is
/// sending something absurd and gets the early answer.
const DRAIN_FACTOR: u64 = 4;

/// How long a body being thrown away may pause before the server stops
/// waiting for the rest of it.
const DRAIN_IDLE: std::time::Duration = std::time::Duration::from_secs(10);

/// The request body, at most `limit` bytes: 413 when the declared or the
/// actual length is over it, 400 when reading fails. A too-large body of
/// up to `DRAIN_FACTOR` times the limit is read to its end and discarded
/// before the error is returned, so every client sees the 413 (see there);
/// a larger declared one is refused from its headers alone.
///
/// # Errors
/// [`Error::TooLarge`] and [`Error::BadRequest`] as above.
pub async fn read_body(
    req: hyper::Request<hyper::body::Incoming>,
    limit: usize,
) -> Result<Bytes, Error> {
    let too_large = || Error::TooLarge(format!("Request entity too large: limit is {limit}"));
    let limit_bytes = u64::try_from(limit).unwrap_or(u64::MAX);
    let drain_budget = limit_bytes.saturating_mul(DRAIN_FACTOR);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = req.into_body();
    if let Some(n) = declared.filter(|&n| n > limit_bytes) {
        if n <= drain_budget {
            discard(&mut body, drain_budget).await;
        }
        return Err(too_large());
    }
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| Error::BadRequest(format!("reading the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if buf.len().saturating_add(data.len()) > limit {
            let read = u64::try_from(buf.len().saturating_add(data.len())).unwrap_or(u64::MAX);
            discard(&mut body, drain_budget.saturating_sub(read)).await;
            return Err(too_large());
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
}

/// How much of the body of a request answered without reading it (e.g. a
/// 401) is read and dropped first: 256 KiB, what Go's server reads after a
/// handler that did not (`maxPostHandlerReadBytes`), so small uploads of
/// unauthenticated clients get the answer rather than a reset, while they
/// cannot make the server read much.
pub const UNREAD_BODY_DRAIN: u64 = 256 * 1024;

/// Reads and drops the body of a request answered without it, unless its
/// declared length is over `budget` bytes (see [`UNREAD_BODY_DRAIN`]).
pub async fn discard_body(req: hyper::Request<hyper::body::Incoming>, budget: u64) {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > budget) {
        return;
    }
    let mut body = req.into_body();
    discard(&mut body, budget).await;
}

/// Reads and drops the rest of `body`, giving up after `budget` bytes, a
/// read error or a [`DRAIN_IDLE`] pause (the connection then closes when
/// the body is dropped unread, as before).
async fn discard(body: &mut hyper::body::Incoming, budget: u64) {
    let mut left = budget;
    loop {
        let frame = match tokio::time::timeout(DRAIN_IDLE, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(None) => return,
            Ok(Some(Err(e))) => {
                tracing::debug!(error = %e, "reading a too-large body to its end failed");
                return;
            }
            Err(_) => {
                tracing::debug!("a too-large body stalled; not waiting for the rest");
                return;
            }
        };
        if let Some(data) = frame.data_ref() {
            let n = u64::try_from(data.len()).unwrap_or(u64::MAX);
            if n > left {
                return;
            }
            left -= n;
        }
    }
}
