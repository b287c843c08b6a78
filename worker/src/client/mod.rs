//! The API client: HTTP/1.1 over rustls to the API endpoint (through the host's relay), trusting
//! the server only as [`ServerTrust`] says (first contact, or the attested key), optionally
//! presenting the node's client certificate. [`Connection`] is one TLS connection;
//! [`KubeClient`] keeps one open and speaks typed Kubernetes objects over it.

mod kube;
mod tls;
mod watch;

pub use kube::{ApiAccess, ClientIdentity, KubeClient};
pub use tls::ServerTrust;
pub use watch::{Watch, WatchEvent};

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use rustls_pki_types::{CertificateDer, ServerName};

/// Largest response body read (API objects, attestation documents, errors).
pub const MAX_RESPONSE: usize = 4 * 1024 * 1024;
/// Longest a request may take on an open connection (watches are not made here).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The TCP connection failed.
    #[error("connecting to {server}: {source}")]
    Connect {
        /// The server.
        server: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed (including a server key that is not the attested one).
    #[error("TLS handshake with {server}: {source}")]
    Tls {
        /// The server.
        server: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TLS configuration or a credential was refused.
    #[error("TLS configuration: {0}")]
    Config(String),
    /// The HTTP exchange failed.
    #[error("{what}: {reason}")]
    Http {
        /// The request.
        what: String,
        /// The cause.
        reason: String,
    },
    /// No answer in time.
    #[error("{what}: no answer within {} s", REQUEST_TIMEOUT.as_secs())]
    Timeout {
        /// The request.
        what: String,
    },
    /// The server answered with an error status.
    #[error("{what}: {code}: {message}")]
    Status {
        /// The request.
        what: String,
        /// The HTTP status.
        code: StatusCode,
        /// The `metav1.Status` message, or the body.
        message: String,
    },
    /// The answer did not decode.
    #[error("{what}: undecodable answer: {reason}")]
    Decode {
        /// The request.
        what: String,
        /// The cause.
        reason: String,
    },
}

impl ClientError {
    /// The HTTP status, when the server answered one.
    #[must_use]
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True when the connection, not the server, failed (worth reconnecting).
    #[must_use]
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. } | Self::Tls { .. } | Self::Http { .. } | Self::Timeout { .. }
        )
    }
}

/// An `https://HOST[:PORT]` server address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// The URL as written in kubeconfigs: `https://HOST:PORT`.
    pub url: String,
    /// Host name or IP address (no brackets).
    pub host: String,
    /// TCP port (default 443).
    pub port: u16,
}

impl std::str::FromStr for ServerUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s.strip_prefix("https://").ok_or_else(|| {
            format!("{s:?}: the server URL must start with https:// (TLS is required)")
        })?;
        let authority = rest.split('/').next().unwrap_or("");
        if authority.is_empty() {
            return Err(format!("{s:?}: no host"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{s:?}: unterminated [IPv6] address"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            Some(p) => p.parse().map_err(|e| format!("{s:?}: port {p:?}: {e}"))?,
            None => 443,
        };
        let shown = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        Ok(Self {
            url: format!("https://{shown}:{port}"),
            host: host.to_owned(),
            port,
        })
    }
}

impl std::fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

/// The `message` of a `metav1.Status` body, or the body as text.
#[must_use]
pub fn status_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

/// One HTTP/1.1 connection over TLS to the server.
#[derive(Debug)]
pub struct Connection {
    server: ServerUrl,
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    driver: tokio::task::JoinHandle<hyper::Result<()>>,
    peer_chain: Vec<CertificateDer<'static>>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// The TLS client configuration accepting the server's certificate as `trust` says and
/// presenting `identity` when given (no ALPN set): for connections made elsewhere, such as the
/// node tunnel.
///
/// # Errors
///
/// [`ClientError::Config`] when the identity does not parse.
pub fn tls_client_config(
    trust: ServerTrust,
    identity: Option<&ClientIdentity>,
) -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(tls::Verifier::new(provider, trust)));
    Ok(match identity {
        Some(identity) => {
            let (chain, key) = identity.rustls()?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ClientError::Config(format!("the node certificate: {e}")))?
        }
        None => builder.with_no_client_auth(),
    })
}

impl Connection {
    /// Connects to `server`, accepting its certificate as `trust` says and presenting
    /// `identity` when given.
    ///
    /// # Errors
    ///
    /// [`ClientError::Connect`], [`ClientError::Tls`] or [`ClientError::Config`].
    pub async fn open(
        server: &ServerUrl,
        trust: ServerTrust,
        identity: Option<&ClientIdentity>,
    ) -> Result<Self, ClientError> {
        tokio::time::timeout(REQUEST_TIMEOUT, Self::open_now(server, trust, identity))
            .await
            .map_err(|_| ClientError::Timeout {
                what: format!("connecting to {server}"),
            })?
    }

    async fn open_now(
        server: &ServerUrl,
        trust: ServerTrust,
        identity: Option<&ClientIdentity>,
    ) -> Result<Self, ClientError> {
        let mut config = tls_client_config(trust, identity)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = ServerName::try_from(server.host.clone())
            .map_err(|e| ClientError::Config(format!("{:?}: {e}", server.host)))?;
        let tcp = tokio::net::TcpStream::connect((server.host.as_str(), server.port))
            .await
            .map_err(|source| ClientError::Connect {
                server: server.url.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|source| ClientError::Tls {
                server: server.url.clone(),
                source,
            })?;
        let peer_chain: Vec<CertificateDer<'static>> = tls
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| ClientError::Http {
                what: format!("HTTP/1.1 with {server}"),
                reason: e.to_string(),
            })?;
        Ok(Self {
            server: server.clone(),
            sender,
            driver: tokio::spawn(connection),
            peer_chain,
        })
    }

    /// The server.
    #[must_use]
    pub fn server(&self) -> &ServerUrl {
        &self.server
    }

    /// The certificate the server presented (its leaf).
    #[must_use]
    pub fn peer_certificate(&self) -> Option<&CertificateDer<'static>> {
        self.peer_chain.first()
    }

    /// True while the connection can take another request.
    #[must_use]
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed() && !self.driver.is_finished()
    }

    /// Sends a request; the answer's status and body (any status).
    ///
    /// # Errors
    ///
    /// [`ClientError::Http`] or [`ClientError::Timeout`].
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<(&str, Bytes)>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let what = format!("{method} {path}");
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(
                header::HOST,
                format!("{}:{}", self.server.host, self.server.port),
            )
            .header(header::ACCEPT, "application/json, application/cbor")
            .header(
                header::USER_AGENT,
                concat!("daas-worker/", env!("CARGO_PKG_VERSION")),
            );
        let body = match body {
            Some((content_type, bytes)) => {
                request = request.header(header::CONTENT_TYPE, content_type);
                bytes
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(body))
            .map_err(|e| ClientError::Http {
                what: what.clone(),
                reason: e.to_string(),
            })?;
        let exchange = async {
            self.sender.ready().await.map_err(|e| ClientError::Http {
                what: what.clone(),
                reason: e.to_string(),
            })?;
            let response =
                self.sender
                    .send_request(request)
                    .await
                    .map_err(|e| ClientError::Http {
                        what: what.clone(),
                        reason: e.to_string(),
                    })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| ClientError::Http {
                    what: what.clone(),
                    reason: format!("reading the answer: {e}"),
                })?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| ClientError::Timeout { what: what.clone() })?
    }

    /// Sends a `GET` whose answer streams (a watch): waits up to [`REQUEST_TIMEOUT`] for the
    /// answer's head only, and hands back the body unread.
    ///
    /// # Errors
    ///
    /// [`ClientError::Http`] or [`ClientError::Timeout`].
    pub async fn stream(
        &mut self,
        path: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let what = format!("GET {path}");
        let http = |e: &dyn std::fmt::Display| ClientError::Http {
            what: what.clone(),
            reason: e.to_string(),
        };
        let request = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(
                header::HOST,
                format!("{}:{}", self.server.host, self.server.port),
            )
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("daas-worker/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::new()))
            .map_err(|e| http(&e))?;
        let exchange = async {
            self.sender.ready().await.map_err(|e| http(&e))?;
            self.sender
                .send_request(request)
                .await
                .map_err(|e| http(&e))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| ClientError::Timeout { what: what.clone() })?
    }

    /// Sends a request and requires a 2xx answer.
    ///
    /// # Errors
    ///
    /// As [`Connection::send`], and [`ClientError::Status`] for any other status.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<(&str, Bytes)>,
    ) -> Result<Bytes, ClientError> {
        let what = format!("{method} {path}");
        let (code, body) = self.send(method, path, body).await?;
        if code.is_success() {
            Ok(body)
        } else {
            Err(ClientError::Status {
                what,
                code,
                message: status_message(&body),
            })
        }
    }

    /// POSTs `value` as JSON and decodes the JSON answer.
    ///
    /// # Errors
    ///
    /// As [`Connection::call`], and [`ClientError::Decode`].
    pub async fn post_json<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
        value: &impl serde::Serialize,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(value).map_err(|e| ClientError::Decode {
            what: format!("POST {path}"),
            reason: e.to_string(),
        })?;
        let answer = self
            .call(
                Method::POST,
                path,
                Some(("application/json", Bytes::from(body))),
            )
            .await?;
        serde_json::from_slice(&answer).map_err(|e| ClientError::Decode {
            what: format!("POST {path}"),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ServerUrl;

    #[test]
    fn server_urls() {
        let u: ServerUrl = "https://127.0.0.1:6443"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 6443));
        let u: ServerUrl = "https://example.com/"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((u.url.as_str(), u.port), ("https://example.com:443", 443));
        let u: ServerUrl = "https://[::1]:7".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (u.host.as_str(), u.url.as_str()),
            ("::1", "https://[::1]:7")
        );
        assert!("http://x:1".parse::<ServerUrl>().is_err());
        assert!("https://x:port".parse::<ServerUrl>().is_err());
        assert!("https://".parse::<ServerUrl>().is_err());
    }
}
