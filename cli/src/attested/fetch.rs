//! First contact with a server we do not trust yet: a TLS connection that
//! accepts whatever certificate the server presents (but still checks that
//! the server holds its private key), and `GET /attestation` over that same
//! connection.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// Largest `/attestation` response read (a document is at most
/// [`attestation::MAX_DOCUMENT_LEN`] bytes; errors are small JSON).
const MAX_RESPONSE: usize = 64 * 1024;

/// An `https://HOST[:PORT]` server address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerUrl {
    /// The URL as written in kubeconfigs: `https://HOST:PORT`.
    pub(crate) url: String,
    /// Host name or IP address (no brackets).
    pub(crate) host: String,
    /// TCP port (default 443).
    pub(crate) port: u16,
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

/// Accepts any server certificate: nothing about the server is trusted until
/// its attestation has been verified and bound to this certificate. The
/// handshake signatures are still checked against the presented
/// certificate's key, so the peer proves it holds that key; that is what
/// makes the later binding check mean "this connection ends at the attested
/// key".
///
/// With `pinned`, only that exact certificate is accepted: a later
/// connection to a server whose certificate was already attested.
#[derive(Debug)]
struct AttestLater {
    provider: Arc<CryptoProvider>,
    pinned: Option<CertificateDer<'static>>,
}

impl ServerCertVerifier for AttestLater {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.pinned {
            Some(pinned) if pinned.as_ref() != end_entity.as_ref() => Err(rustls::Error::General(
                "the server presented another certificate than the attested one".into(),
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What one connection to the server gave us.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// The attestation document (raw CBOR).
    pub(crate) document: Vec<u8>,
    /// The certificate chain the server presented on the connection the
    /// document came over, leaf first.
    pub(crate) peer_chain: Vec<CertificateDer<'static>>,
}

/// Longest first contact (connect, handshake, request, response) before
/// giving up on a server that accepts but never answers.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Connects to `server`, then asks for `/attestation?nonce=<hex>` on that
/// connection.
///
/// # Errors
///
/// Connection, TLS or HTTP failures, a non-200 answer (with the server's
/// Status message), or no answer within 30 s.
pub(crate) async fn fetch_attestation(server: &ServerUrl, nonce: &[u8]) -> anyhow::Result<Fetched> {
    tokio::time::timeout(FETCH_TIMEOUT, fetch(server, nonce))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "{server} did not answer /attestation within {} s",
                FETCH_TIMEOUT.as_secs()
            )
        })?
}

/// An HTTP/1.1 connection over TLS to `server`.
struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    driver: tokio::task::JoinHandle<hyper::Result<()>>,
    peer_chain: Vec<CertificateDer<'static>>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Connects to `server`, accepting any certificate unless one is `pinned`.
async fn connect(
    server: &ServerUrl,
    pinned: Option<&CertificateDer<'static>>,
) -> anyhow::Result<Connection> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS configuration")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AttestLater {
            provider,
            pinned: pinned.cloned(),
        }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from(server.host.clone())
        .with_context(|| format!("{:?} is not a valid TLS server name", server.host))?;
    let tcp = tokio::net::TcpStream::connect((server.host.as_str(), server.port))
        .await
        .with_context(|| format!("connecting to {server}"))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS handshake with {server}"))?;
    let peer_chain: Vec<CertificateDer<'static>> = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default();
    if peer_chain.is_empty() {
        bail!("{server} presented no certificate");
    }
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .context("HTTP/1.1 over the TLS connection")?;
    Ok(Connection {
        sender,
        driver: tokio::spawn(connection),
        peer_chain,
    })
}

impl Connection {
    /// Sends `request`; the status and the body (at most 64 KiB).
    async fn send(
        &mut self,
        server: &ServerUrl,
        request: Request<Full<Bytes>>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let what = format!("{} {}", request.method(), request.uri());
        let response = self
            .sender
            .send_request(request)
            .await
            .with_context(|| format!("{what} to {server}"))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the answer to {what}: {e}"))?
            .to_bytes();
        Ok((status, body))
    }
}

/// The `message` of a `metav1.Status` body, or the body as text.
pub(crate) fn status_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

async fn fetch(server: &ServerUrl, nonce: &[u8]) -> anyhow::Result<Fetched> {
    let mut conn = connect(server, None).await?;
    let path = format!("/attestation?nonce={}", hex::encode(nonce));
    let request = Request::get(path.as_str())
        .header(header::HOST, format!("{}:{}", server.host, server.port))
        .header(header::ACCEPT, "application/cbor, application/json")
        .body(Full::new(Bytes::new()))
        .context("building the request")?;
    let (status, body) = conn.send(server, request).await?;
    if status != StatusCode::OK {
        bail!(
            "{server} answered /attestation with {status}: {}",
            status_message(&body)
        );
    }
    Ok(Fetched {
        document: body.to_vec(),
        peer_chain: std::mem::take(&mut conn.peer_chain),
    })
}

/// POSTs `body` (JSON) to `path` on a new connection that accepts only the
/// already attested `certificate`; the answer's status and body.
///
/// # Errors
///
/// Connection or TLS failures (including another certificate), HTTP
/// errors, or no answer within 30 s.
pub(crate) async fn post_json_to_attested(
    server: &ServerUrl,
    certificate: &CertificateDer<'static>,
    path: &str,
    body: Vec<u8>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let exchange = async {
        let mut conn = connect(server, Some(certificate)).await?;
        let request = Request::post(path)
            .header(header::HOST, format!("{}:{}", server.host, server.port))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body)))
            .context("building the request")?;
        conn.send(server, request).await
    };
    tokio::time::timeout(FETCH_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "{server} did not answer {path} within {} s",
                FETCH_TIMEOUT.as_secs()
            )
        })?
}

/// GETs `path` on a new connection that accepts only the already attested `certificate`; the
/// answer's status and body.
///
/// # Errors
///
/// As [`post_json_to_attested`].
pub(crate) async fn get_from_attested(
    server: &ServerUrl,
    certificate: &CertificateDer<'static>,
    path: &str,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let exchange = async {
        let mut conn = connect(server, Some(certificate)).await?;
        let request = Request::get(path)
            .header(header::HOST, format!("{}:{}", server.host, server.port))
            .body(Full::new(Bytes::new()))
            .context("building the request")?;
        conn.send(server, request).await
    };
    tokio::time::timeout(FETCH_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "{server} did not answer {path} within {} s",
                FETCH_TIMEOUT.as_secs()
            )
        })?
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
