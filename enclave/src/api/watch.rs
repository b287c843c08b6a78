//! Watch responses: a chunked stream of newline-delimited
//! `{"type","object"}` events, flushed one by one, held open until
//! `timeoutSeconds` (or a randomised 30–60 minutes), with periodic
//! BOOKMARKs when asked for. Objects are Table rows when the client asked
//! for Tables; the first carries the column definitions.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::Response;
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::ApiServer;
use super::http::{self, Body};
use super::query::Query;
use crate::registry::table::{self, IncludeObject};
use crate::registry::{ResourceInfo, WatchEvent, WatchStream, meta};

fn timeout(q: &Query) -> Duration {
    match q.timeout_seconds {
        Some(s) => Duration::from_secs(s),
        None => {
            let jitter = u64::from(meta::random_suffix().as_bytes()[0]) * 7;
            Duration::from_secs(1800 + jitter % 1800)
        }
    }
}

/// One event as a line of the stream. A plain object's JSON is shared by every watcher receiving the change, so the
/// line is assembled around it rather than serialized again.
fn encode_line(
    info: &ResourceInfo,
    ev: &WatchEvent,
    include: Option<IncludeObject>,
    first: &mut bool,
) -> Bytes {
    let object = match ev {
        WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => match include {
            Some(inc) => {
                let meta = json!({"resourceVersion": o.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null)});
                let t = table::table(info, std::slice::from_ref::<Value>(o), meta, inc, *first);
                *first = false;
                t
            }
            None => return line_around(ev.type_name(), o.json()),
        },
        WatchEvent::Bookmark(rv) => json!({
            "kind": info.kind, "apiVersion": info.api_version(),
            "metadata": {"resourceVersion": rv.to_string()},
        }),
        WatchEvent::Error(status) => {
            return line_around(ev.type_name(), super::status::encode(status).as_bytes());
        }
    };
    line_around(ev.type_name(), object.to_string().as_bytes())
}

/// `{"type":"<type_name>","object":<object>}` and a newline.
fn line_around(type_name: &str, object: &[u8]) -> Bytes {
    const OBJECT: &[u8] = b"\",\"object\":";
    let mut line = Vec::with_capacity(object.len() + type_name.len() + 24);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(type_name.as_bytes());
    line.extend_from_slice(OBJECT);
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

/// What the response body polls: the watch itself, so an event is encoded
/// when hyper can take it (backpressure without a buffer) and reaches the
/// connection without a hand-off to another task.
struct Streaming {
    info: Arc<ResourceInfo>,
    stream: WatchStream,
    include: Option<IncludeObject>,
    first: bool,
    bookmarks: Option<tokio::time::Interval>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    cancel: CancellationToken,
    ended: bool,
}

impl Streaming {
    /// The next line, `None` when the watch is over (its end, an `ERROR`
    /// sent, `timeoutSeconds`, or the server shutting down).
    async fn next_line(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        let ev = tokio::select! {
            ev = self.stream.next() => ev?,
            _ = tick(&mut self.bookmarks) => WatchEvent::Bookmark(self.stream.progress()),
            () = &mut self.deadline => return None,
            () = self.cancel.cancelled() => return None,
        };
        self.ended = matches!(ev, WatchEvent::Error(_));
        Some(encode_line(&self.info, &ev, self.include, &mut self.first))
    }
}

/// The next bookmark tick; never, without bookmarks.
async fn tick(bookmarks: &mut Option<tokio::time::Interval>) {
    match bookmarks {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Streams `stream` as the response body.
pub(crate) fn respond(
    server: &ApiServer,
    info: Arc<ResourceInfo>,
    stream: WatchStream,
    q: &Query,
    include: Option<IncludeObject>,
) -> Response<Body> {
    let bookmarks = q.allow_watch_bookmarks.then(|| {
        let mut interval = tokio::time::interval(server.config.bookmark_interval);
        interval.reset();
        interval
    });
    let streaming = Streaming {
        info,
        stream,
        include,
        first: true,
        bookmarks,
        deadline: Box::pin(tokio::time::sleep(timeout(q))),
        cancel: server.shutdown.clone(),
        ended: false,
    };
    let body = StreamBody::new(futures::stream::unfold(streaming, |mut s| async move {
        let line = s.next_line().await?;
        Some((Ok::<_, std::io::Error>(Frame::data(line)), s))
    }));
    Response::builder()
        .status(200)
        .header("Content-Type", "application/json")
        .header("Cache-Control", "no-cache, private")
        .body(body.boxed_unsync())
        .unwrap_or_else(|_| http::path_not_found())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_one_json_event_and_a_newline() {
        let object = json!({"kind": "ConfigMap", "metadata": {"name": "a \"quoted\" name"}});
        let line = line_around("MODIFIED", object.to_string().as_bytes());
        let (event, rest) = line.split_at(line.len() - 1);
        assert_eq!(rest, b"\n");
        let event: Value = serde_json::from_slice(event).unwrap();
        assert_eq!(event, json!({"type": "MODIFIED", "object": object}));
    }

    #[test]
    fn an_error_event_carries_the_status_in_upstreams_field_order() {
        let info = crate::registry::kinds::builtin()
            .into_iter()
            .find(|i| i.resource == "configmaps")
            .unwrap();
        let status =
            crate::registry::Error::Expired("too old resource version: 1 (9)".into()).to_status();
        let line = encode_line(&info, &WatchEvent::Error(status), None, &mut true);
        assert_eq!(
            std::str::from_utf8(&line).unwrap(),
            "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"too old resource version: 1 (9)\",\"reason\":\"Expired\",\"code\":410}}\n"
        );
    }
}
