//! Watch responses: a chunked stream of newline-delimited
//! `{"type","object"}` events, flushed one by one, held open until
//! `timeoutSeconds` (or a randomised 30–60 minutes), with periodic
//! BOOKMARKs when asked for. Objects are Table rows when the client asked
//! for Tables; the first carries the column definitions.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::Response;
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::mpsc;

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
        WatchEvent::Error(status) => status.clone(),
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

/// Starts streaming `stream` as the response body.
pub(crate) fn respond(
    server: &ApiServer,
    info: Arc<ResourceInfo>,
    mut stream: WatchStream,
    q: &Query,
    include: Option<IncludeObject>,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let deadline = tokio::time::Instant::now() + timeout(q);
    let bookmarks = q
        .allow_watch_bookmarks
        .then_some(server.config.bookmark_interval);
    let cancel = server.shutdown.clone();
    server.tasks.spawn(async move {
        let mut first = true;
        let mut tick = tokio::time::interval(bookmarks.unwrap_or(Duration::from_secs(3600)));
        tick.reset();
        loop {
            let ev = tokio::select! {
                ev = stream.next() => match ev {
                    Some(ev) => ev,
                    None => break,
                },
                _ = tick.tick(), if bookmarks.is_some() => WatchEvent::Bookmark(stream.progress()),
                () = tokio::time::sleep_until(deadline) => break,
                () = tx.closed() => break,
                () = cancel.cancelled() => break,
            };
            let is_error = matches!(ev, WatchEvent::Error(_));
            let line = encode_line(&info, &ev, include, &mut first);
            if tx.send(line).await.is_err() || is_error {
                break;
            }
        }
    });
    let body = StreamBody::new(futures::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, std::io::Error>(Frame::data(chunk)), rx))
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
}
