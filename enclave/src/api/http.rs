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
        let text = w.replace(['"', '\\'], "'").replace(['\r', '\n'], " ");
        b = b.header("Warning", format!("299 - \"{text}\""));
    }
    b.body(full(v.to_string())).unwrap_or_else(|_| {
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
    json(e.code(), &e.to_status())
}

/// 404 for a path nothing serves, worded as upstream.
pub fn path_not_found() -> Response<Body> {
    status(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

/// 401 for requests without valid credentials.
pub fn unauthorized() -> Response<Body> {
    json(
        401,
        &serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "Unauthorized", "reason": "Unauthorized", "code": 401,
        }),
    )
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
pub fn text(code: u16, body: &'static str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full(body))
        .unwrap_or_else(|_| json(500, &serde_json::json!({})))
}

/// The request body, at most `limit` bytes: 413 when the declared or the
/// actual length is over it (checked before reading when declared), 400
/// when reading fails.
pub async fn read_body(
    req: hyper::Request<hyper::body::Incoming>,
    limit: usize,
) -> Result<Bytes, Error> {
    let too_large = || Error::TooLarge(format!("Request entity too large: limit is {limit}"));
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match http_body_util::Limited::new(req.into_body(), limit)
        .collect()
        .await
    {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(Error::BadRequest(format!("reading the request body: {e}"))),
    }
}
