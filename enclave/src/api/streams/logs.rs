//! `GET pods/{name}/log`: validated as upstream's `PodLogOptions`, then streamed from the
//! pod's worker as it sends it.

use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, header};
use protocol::tunnel::{LogOptions, TunnelRequest};

use super::body::ChannelBody;
use super::{StreamPod, flag, param, query};
use crate::api::ApiServer;
use crate::api::http::{self, Body};
use crate::registry::{Error, FieldError};

/// How long a worker may take to start answering a log request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

fn number<T: std::str::FromStr>(
    q: &[(String, String)],
    key: &str,
) -> Result<Option<T>, Response<Body>> {
    param(q, key)
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse().map_err(|_| {
                http::status(
                    400,
                    "BadRequest",
                    &format!("invalid value {v:?} for parameter {key}"),
                )
            })
        })
        .transpose()
}

/// The options of a log request, checked as upstream's `ValidatePodLogOptions`.
fn options(
    q: &[(String, String)],
    name: &str,
) -> Result<(LogOptions, Option<String>), Response<Body>> {
    let tail: Option<i64> = number(q, "tailLines")?;
    let limit: Option<i64> = number(q, "limitBytes")?;
    let since_seconds: Option<i64> = number(q, "sinceSeconds")?;
    let since_time = match param(q, "sinceTime").filter(|v| !v.is_empty()) {
        Some(t) => Some(t.parse::<jiff::Timestamp>().map_err(|e| {
            http::status(
                400,
                "BadRequest",
                &format!("invalid value {t:?} for parameter sinceTime: {e}"),
            )
        })?),
        None => None,
    };
    let mut causes = Vec::new();
    if let Some(t) = tail.filter(|t| *t < 0) {
        causes.push(FieldError::invalid_int(
            "tailLines",
            t,
            "must be greater than or equal to 0",
        ));
    }
    if let Some(l) = limit.filter(|l| *l < 1) {
        causes.push(FieldError::invalid_int(
            "limitBytes",
            l,
            "must be greater than 0",
        ));
    }
    if let Some(s) = since_seconds.filter(|s| *s < 1) {
        causes.push(FieldError::invalid_int(
            "sinceSeconds",
            s,
            "must be greater than 0",
        ));
    }
    if since_seconds.is_some() && since_time.is_some() {
        causes.push(FieldError {
            reason: "FieldValueForbidden",
            field: String::new(),
            message: "at most one of `sinceTime` or `sinceSeconds` may be specified".into(),
        });
    }
    if !causes.is_empty() {
        return Err(http::error(&Error::Invalid {
            kind: "PodLogOptions".into(),
            group: String::new(),
            name: name.to_string(),
            causes,
        }));
    }
    let unsigned = |v: Option<i64>| v.and_then(|n| u64::try_from(n).ok());
    Ok((
        LogOptions {
            follow: flag(q, "follow")?,
            previous: flag(q, "previous")?,
            timestamps: flag(q, "timestamps")?,
            tail_lines: unsigned(tail),
            limit_bytes: unsigned(limit),
            since_seconds: unsigned(since_seconds),
            since_unix_seconds: since_time.map(|t| t.as_second()),
        },
        param(q, "container").map(str::to_string),
    ))
}

impl ApiServer {
    /// `pods/log`.
    pub(super) async fn pod_log(&self, req: Request<Incoming>, pod: StreamPod) -> Response<Body> {
        if req.method() != Method::GET {
            return http::error(&Error::MethodNotAllowed(
                "the server does not allow this method on the requested resource".into(),
            ));
        }
        let q = query(&req);
        let (options, container) = match options(&q, &pod.pod.name) {
            Ok(o) => o,
            Err(r) => return r,
        };
        let container = match pod.container(container.as_deref()) {
            Ok(c) => c,
            Err(r) => return r,
        };
        let request = TunnelRequest::Logs {
            pod: pod.pod.clone(),
            container,
            options,
        };
        let response = match self
            .tunnels
            .request(&pod.node, &request, ChannelBody::empty(), ANSWER_TIMEOUT)
            .await
        {
            Ok(r) => r,
            Err(e) => return e.response(),
        };
        // A tunnel lost mid-stream fails the body: the client sees the response cut, not an
        // orderly end.
        let node = pod.node.clone();
        let body = response
            .into_body()
            .map_err(move |e| {
                std::io::Error::other(format!("the tunnel to node {node:?} failed: {e}"))
            })
            .boxed_unsync();
        let mut r = Response::new(body);
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain"),
        );
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Vec<(String, String)> {
        crate::api::route::query_pairs(s)
    }

    #[test]
    fn options_are_validated_as_upstream() {
        let (o, c) = options(
            &q("follow=true&tailLines=3&container=app&sinceTime=2024-01-02T03:04:05Z"),
            "p",
        )
        .unwrap();
        assert!(o.follow);
        assert_eq!(o.tail_lines, Some(3));
        assert_eq!(o.since_unix_seconds, Some(1_704_164_645));
        assert_eq!(c.as_deref(), Some("app"));
        for bad in [
            "tailLines=-1",
            "limitBytes=0",
            "sinceSeconds=0",
            "sinceSeconds=5&sinceTime=2024-01-02T03:04:05Z",
        ] {
            assert_eq!(options(&q(bad), "p").unwrap_err().status(), 422, "{bad}");
        }
        for bad in ["tailLines=x", "sinceTime=yesterday", "follow=maybe"] {
            assert_eq!(options(&q(bad), "p").unwrap_err().status(), 400, "{bad}");
        }
    }
}
