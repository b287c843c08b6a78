//! A watch: one `GET ...?watch=1` on a connection of its own, read as the newline-delimited
//! `{"type","object"}` events the API server streams.

use std::time::Duration;

use bytes::BytesMut;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

use super::{ApiAccess, ClientError, Connection, MAX_RESPONSE, status_message};

/// One watch event.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    /// `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` or `ERROR`.
    pub kind: String,
    /// The object (a `metav1.Status` for `ERROR`).
    pub object: serde_json::Value,
}

/// An open watch. Dropping it closes its connection.
#[derive(Debug)]
pub struct Watch {
    what: String,
    body: Incoming,
    buffer: BytesMut,
    idle: Duration,
    _connection: Connection,
}

impl Watch {
    /// Opens a watch at `path` (which carries `watch=1` and its options) on a new connection
    /// as `access`'s current identity. The watch ends with an error when nothing (not even a
    /// bookmark) arrives for `idle`.
    ///
    /// # Errors
    ///
    /// Transport errors, or [`ClientError::Status`] when the server refused the watch.
    pub async fn open(access: &ApiAccess, path: &str, idle: Duration) -> Result<Self, ClientError> {
        let what = format!("GET {path}");
        let (_, mut connection) = access.connect().await?;
        let response = connection.stream(path).await?;
        let code = response.status();
        if !code.is_success() {
            let body = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(ClientError::Status {
                what,
                code,
                message: status_message(&body),
            });
        }
        Ok(Self {
            what,
            body: response.into_body(),
            buffer: BytesMut::new(),
            idle,
            _connection: connection,
        })
    }

    /// The next event; `None` when the server ended the watch.
    ///
    /// # Errors
    ///
    /// [`ClientError::Http`] when the stream broke, [`ClientError::Timeout`] when it stayed
    /// silent too long, [`ClientError::Decode`] for an event that is not JSON.
    pub async fn next(&mut self) -> Result<Option<WatchEvent>, ClientError> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line = self.buffer.split_to(end + 1);
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                return self.decode(line).map(Some);
            }
            let frame = tokio::time::timeout(self.idle, self.body.frame())
                .await
                .map_err(|_| ClientError::Timeout {
                    what: self.what.clone(),
                })?;
            match frame {
                None => {
                    let rest = self.buffer.split().freeze();
                    let rest = rest.trim_ascii();
                    return if rest.is_empty() {
                        Ok(None)
                    } else {
                        self.decode(rest).map(Some)
                    };
                }
                Some(Err(e)) => {
                    return Err(ClientError::Http {
                        what: self.what.clone(),
                        reason: e.to_string(),
                    });
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                    if self.buffer.len() > MAX_RESPONSE {
                        return Err(ClientError::Decode {
                            what: self.what.clone(),
                            reason: format!("an event larger than {MAX_RESPONSE} bytes"),
                        });
                    }
                }
            }
        }
    }

    fn decode(&self, line: &[u8]) -> Result<WatchEvent, ClientError> {
        #[derive(serde::Deserialize)]
        struct Line {
            #[serde(rename = "type")]
            kind: String,
            object: serde_json::Value,
        }
        serde_json::from_slice::<Line>(line)
            .map(|l| WatchEvent {
                kind: l.kind,
                object: l.object,
            })
            .map_err(|e| ClientError::Decode {
                what: self.what.clone(),
                reason: e.to_string(),
            })
    }
}
