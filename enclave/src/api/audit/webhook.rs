//! The audit webhook backend, as kube-apiserver's `--audit-webhook-config-file`: the events
//! of the sealed audit log POSTed as `audit.k8s.io/v1 EventList`s to an HTTPS server outside
//! the enclave.
//!
//! The enclave has no network of its own. It dials one outbound route of the host
//! (`daas-host outbound --route ENDPOINT=HOST:PORT`, a fixed destination the host allowlists)
//! and speaks TLS through it to the server named in the configuration, so the host relays
//! encrypted bytes and reads nothing. That is why only `https://` servers are accepted and
//! `insecure-skip-tls-verify` is refused.
//!
//! Delivery follows the sealed log, not the requests: an event is sent once it is in the
//! store, and the key of the last batch delivered is kept in the store as well. An
//! unreachable webhook or an enclave restart therefore delays events but loses none while the
//! log retains them (upstream's batch backend drops a batch after its retries). Delivery is at
//! least once: a batch cut short by a failure is sent again whole, so receivers drop repeats
//! by `auditID`. A webhook configured for the first time receives what happens from then on,
//! not the history the log already holds.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::log::AuditLog;
use crate::boot::parent;
use crate::store::{Store, StoreError};

/// Where the key of the last delivered batch is kept (outside the log's `/audit/` prefix, so
/// retention never deletes it).
const CURSOR_KEY: &[u8] = b"/audit-webhook/delivered";
/// Batches read from the log per round.
const BATCHES_PER_ROUND: usize = 16;
/// Longest wait between tries (the wait doubles from the initial backoff).
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long one POST (connect, TLS, request and answer) may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Upstream's `--audit-webhook-batch-max-size`.
pub const DEFAULT_BATCH_MAX_SIZE: usize = 400;
/// Upstream's `--audit-webhook-initial-backoff`.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_secs(10);

/// Why the webhook configuration cannot be used, or a delivery failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The configuration file is not a usable kubeconfig.
    #[error("audit webhook configuration: {0}")]
    Config(String),
    /// Reaching the webhook or its answer failed.
    #[error("audit webhook {server}: {reason}")]
    Delivery {
        /// The configured server URL.
        server: String,
        /// What went wrong.
        reason: String,
    },
    /// The sealed store could not be read or written.
    #[error("audit webhook: {0}")]
    Store(#[from] StoreError),
}

#[derive(Deserialize)]
struct Kubeconfig {
    #[serde(default)]
    clusters: Vec<Named<Cluster>>,
    #[serde(default)]
    users: Vec<Named<User>>,
    #[serde(default)]
    contexts: Vec<Named<Context>>,
    #[serde(default, rename = "current-context")]
    current_context: String,
}

#[derive(Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    item: T,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    server: String,
    certificate_authority_data: Option<String>,
    certificate_authority: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
    tls_server_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct User {
    token: Option<String>,
    token_file: Option<String>,
    client_certificate_data: Option<String>,
    client_certificate: Option<String>,
    client_key_data: Option<String>,
    client_key: Option<String>,
}

#[derive(Deserialize, Default)]
struct Context {
    cluster: String,
    #[serde(default)]
    user: String,
}

/// A webhook server and how to reach it securely, from a kubeconfig.
#[derive(Clone)]
pub struct WebhookConfig {
    server: String,
    authority: String,
    path: String,
    server_name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
    token: Option<String>,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of logs.
        f.debug_struct("WebhookConfig")
            .field("server", &self.server)
            .field("client_token", &self.token.is_some())
            .finish_non_exhaustive()
    }
}

fn config_error(msg: impl Into<String>) -> WebhookError {
    WebhookError::Config(msg.into())
}

/// Inline `*-data` (base64) or a file named relative to the kubeconfig's directory.
fn material(
    data: Option<&str>,
    file: Option<&str>,
    dir: &Path,
    what: &str,
) -> Result<Option<Vec<u8>>, WebhookError> {
    if let Some(d) = data.filter(|d| !d.is_empty()) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(d.trim())
            .map_err(|e| config_error(format!("{what}-data is not base64: {e}")))?;
        return Ok(Some(bytes));
    }
    match file.filter(|f| !f.is_empty()) {
        Some(f) => {
            let path = dir.join(f);
            std::fs::read(&path)
                .map(Some)
                .map_err(|e| config_error(format!("{what} {}: {e}", path.display())))
        }
        None => Ok(None),
    }
}

impl WebhookConfig {
    /// Reads a kubeconfig (`text`; relative file names are resolved in `dir`): the current
    /// context's cluster and user, or the first of each when it names none. The server must
    /// be `https://`; its certificate is checked against `certificate-authority(-data)`, or
    /// against the Mozilla roots when none is given. The user may bring a bearer token or a
    /// client certificate.
    ///
    /// # Errors
    /// [`WebhookError::Config`] naming what is wrong.
    pub fn from_kubeconfig(text: &str, dir: &Path) -> Result<Self, WebhookError> {
        let kc: Kubeconfig = serde_norway::from_str(text)
            .map_err(|e| config_error(format!("not a kubeconfig: {e}")))?;
        let context = if kc.current_context.is_empty() {
            kc.contexts.first()
        } else {
            Some(
                kc.contexts
                    .iter()
                    .find(|c| c.name == kc.current_context)
                    .ok_or_else(|| {
                        config_error(format!(
                            "current-context {:?} is not among the contexts",
                            kc.current_context
                        ))
                    })?,
            )
        }
        .map(|c| &c.item);
        let cluster = match context {
            Some(c) => kc
                .clusters
                .iter()
                .find(|n| n.name == c.cluster)
                .ok_or_else(|| {
                    config_error(format!(
                        "context names cluster {:?}, which is not defined",
                        c.cluster
                    ))
                })?,
            None => kc
                .clusters
                .first()
                .ok_or_else(|| config_error("no cluster is defined"))?,
        };
        let user = match context {
            Some(c) if !c.user.is_empty() => {
                Some(kc.users.iter().find(|n| n.name == c.user).ok_or_else(|| {
                    config_error(format!(
                        "context names user {:?}, which is not defined",
                        c.user
                    ))
                })?)
            }
            Some(_) => None,
            None => kc.users.first(),
        };
        let cluster = &cluster.item;
        let server = cluster.server.trim().to_string();
        let Some(rest) = server.strip_prefix("https://") else {
            return Err(config_error(format!(
                "server {server:?} must be https:// (the events cross the host, which must not read them)"
            )));
        };
        if cluster.insecure_skip_tls_verify {
            return Err(config_error(
                "insecure-skip-tls-verify is refused: the host between the enclave and the webhook could read the events",
            ));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(config_error(format!(
                "server {server:?} has no usable host"
            )));
        }
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => authority.rsplit_once(':').map_or(authority, |(h, p)| {
                if p.chars().all(|c| c.is_ascii_digit()) {
                    h
                } else {
                    authority
                }
            }),
        };
        let name = cluster
            .tls_server_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(host);
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|e| config_error(format!("server name {name:?}: {e}")))?;

        let mut roots = rustls::RootCertStore::empty();
        match material(
            cluster.certificate_authority_data.as_deref(),
            cluster.certificate_authority.as_deref(),
            dir,
            "certificate-authority",
        )? {
            Some(pem) => {
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert =
                        cert.map_err(|e| config_error(format!("certificate-authority: {e}")))?;
                    roots
                        .add(cert)
                        .map_err(|e| config_error(format!("certificate-authority: {e}")))?;
                }
                if roots.is_empty() {
                    return Err(config_error("certificate-authority holds no certificate"));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(format!("TLS: {e}")))?
        .with_root_certificates(roots);

        let user = user.map(|u| &u.item);
        let cert = match user {
            Some(u) => material(
                u.client_certificate_data.as_deref(),
                u.client_certificate.as_deref(),
                dir,
                "client-certificate",
            )?,
            None => None,
        };
        let key = match user {
            Some(u) => material(
                u.client_key_data.as_deref(),
                u.client_key.as_deref(),
                dir,
                "client-key",
            )?,
            None => None,
        };
        let tls = match (cert, key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_slice_iter(&cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| config_error(format!("client-certificate: {e}")))?;
                let key = PrivateKeyDer::from_pem_slice(&key)
                    .map_err(|e| config_error(format!("client-key: {e}")))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| config_error(format!("client certificate and key: {e}")))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(config_error(
                    "a client certificate needs its key, and a key its certificate",
                ));
            }
        };
        let token = match user {
            Some(u) => match (
                u.token.as_deref().filter(|t| !t.is_empty()),
                u.token_file.as_deref(),
            ) {
                (Some(t), _) => Some(t.to_string()),
                (None, Some(f)) => {
                    let path = dir.join(f);
                    let t = std::fs::read_to_string(&path)
                        .map_err(|e| config_error(format!("tokenFile {}: {e}", path.display())))?;
                    Some(t.trim().to_string())
                }
                (None, None) => None,
            },
            None => None,
        };
        Ok(WebhookConfig {
            server: server.clone(),
            authority: authority.to_string(),
            path: path.to_string(),
            server_name,
            tls: Arc::new(tls),
            token,
        })
    }

    /// The server URL, for logs.
    pub fn server(&self) -> &str {
        &self.server
    }

    fn delivery_error(&self, reason: impl std::fmt::Display) -> WebhookError {
        WebhookError::Delivery {
            server: self.server.clone(),
            reason: reason.to_string(),
        }
    }

    /// POSTs `body` over a fresh connection through `via`; success is any 2xx answer.
    async fn post(&self, via: &protocol::Endpoint, body: Bytes) -> Result<(), WebhookError> {
        let stream = parent::dial(via, "audit webhook route")
            .await
            .map_err(|e| self.delivery_error(format!("connecting through {via}: {e}")))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(self.server_name.clone(), stream)
            .await
            .map_err(|e| self.delivery_error(format!("TLS: {e}")))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| self.delivery_error(format!("HTTP: {e}")))?;
        let driver = tokio::spawn(conn);
        let mut request = Request::post(self.path.as_str())
            .header(header::HOST, self.authority.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json");
        if let Some(t) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| self.delivery_error(format!("request: {e}")))?;
        let answer = sender.send_request(request).await;
        let result = match answer {
            Ok(response) => {
                let status = response.status();
                // Read the answer whole so the server sees a clean close.
                let text = response
                    .into_body()
                    .collect()
                    .await
                    .map(|b| {
                        String::from_utf8_lossy(&b.to_bytes())
                            .chars()
                            .take(256)
                            .collect::<String>()
                    })
                    .unwrap_or_default();
                if status.is_success() {
                    Ok(())
                } else {
                    Err(self.delivery_error(format!("answered {status}: {text}")))
                }
            }
            Err(e) => Err(self.delivery_error(format!("HTTP: {e}"))),
        };
        driver.abort();
        result
    }
}

/// One `audit.k8s.io/v1 EventList` of `events` (JSON objects as the log holds them).
fn event_list(events: &[&[u8]]) -> Bytes {
    let mut body = Vec::with_capacity(events.iter().map(|e| e.len() + 1).sum::<usize>() + 80);
    body.extend_from_slice(
        br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":["#,
    );
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(e);
    }
    body.extend_from_slice(b"]}");
    Bytes::from(body)
}

/// Sends the audit log's batches to the webhook as they are written.
#[derive(Debug)]
pub struct WebhookBackend {
    config: WebhookConfig,
    via: protocol::Endpoint,
    log: Arc<AuditLog>,
    store: Store,
    batch_max_size: usize,
    initial_backoff: Duration,
}

impl WebhookBackend {
    /// Delivers `log`'s events to `config`'s server through the host route `via`, at most
    /// `batch_max_size` events per request, waiting `initial_backoff` (doubling) after a
    /// failure. The delivery cursor is kept in `store`.
    pub fn new(
        config: WebhookConfig,
        via: protocol::Endpoint,
        log: Arc<AuditLog>,
        store: Store,
        batch_max_size: usize,
        initial_backoff: Duration,
    ) -> Self {
        WebhookBackend {
            config,
            via,
            log,
            store,
            batch_max_size: batch_max_size.max(1),
            initial_backoff: initial_backoff.max(Duration::from_millis(10)),
        }
    }

    /// The key of the last batch delivered; the first time, the log's newest batch (stored,
    /// so that what is written from now on is delivered even across a restart).
    async fn cursor(&self) -> Result<Option<Vec<u8>>, WebhookError> {
        if let (Some(kv), _) = self.store.get(CURSOR_KEY)? {
            return Ok(Some(kv.value));
        }
        let start = self.log.newest();
        self.save(start.as_deref().unwrap_or(b"")).await?;
        Ok(start)
    }

    async fn save(&self, key: &[u8]) -> Result<(), WebhookError> {
        // An unconditional put: it always commits.
        let _ = self.store.put(CURSOR_KEY, key).await?;
        Ok(())
    }

    /// Delivers every batch after `cursor`, advancing it batch by batch.
    async fn deliver(&self, cursor: &mut Option<Vec<u8>>) -> Result<usize, WebhookError> {
        let mut events_sent = 0;
        loop {
            let after = cursor.as_deref().filter(|c| !c.is_empty());
            let batches = self.log.batches_after(after, BATCHES_PER_ROUND)?;
            if batches.is_empty() {
                return Ok(events_sent);
            }
            for batch in batches {
                let events: Vec<&[u8]> = batch
                    .lines
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .collect();
                for chunk in events.chunks(self.batch_max_size) {
                    let body = event_list(chunk);
                    tokio::time::timeout(SEND_TIMEOUT, self.config.post(&self.via, body))
                        .await
                        .map_err(|_| {
                            self.config
                                .delivery_error(format!("no answer within {SEND_TIMEOUT:?}"))
                        })??;
                    events_sent += chunk.len();
                }
                self.save(&batch.key).await?;
                *cursor = Some(batch.key);
            }
        }
    }

    /// Delivers what the log holds after the cursor, then each new batch as it is written,
    /// until `stop`. Failures are logged and retried with backoff.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        tracing::info!(server = %self.config.server(), via = %self.via, "audit webhook enabled");
        let mut written = self.log.subscribe();
        let mut backoff = self.initial_backoff;
        let mut cursor = None;
        let mut started = false;
        loop {
            let round = async {
                if !started {
                    cursor = self.cursor().await?;
                    started = true;
                }
                self.deliver(&mut cursor).await
            };
            match round.await {
                Ok(sent) => {
                    if sent > 0 {
                        tracing::debug!(events = sent, "audit events delivered to the webhook");
                    }
                    backoff = self.initial_backoff;
                    tokio::select! {
                        () = stop.cancelled() => return,
                        r = written.changed() => if r.is_err() { return },
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "audit events not delivered to the webhook yet; they are kept in the sealed log");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<WebhookConfig, WebhookError> {
        WebhookConfig::from_kubeconfig(text, Path::new("/nonexistent"))
    }

    const CA: &str = "-----BEGIN CERTIFICATE-----
MIIBfTCCASOgAwIBAgIUfake";

    fn ca_data() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["webhook.example".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        base64::engine::general_purpose::STANDARD.encode(cert.pem())
    }

    fn kubeconfig(server: &str, extra_cluster: &str, user: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: hook\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\n{extra_cluster}users:\n- name: u\n  user:\n{user}contexts:\n- name: c\n  context:\n    cluster: hook\n    user: u\ncurrent-context: c\n",
            ca_data()
        )
    }

    #[test]
    fn an_https_server_with_its_ca_and_a_token_is_accepted() {
        let c = parse(&kubeconfig(
            "https://webhook.example:8443/audit?x=1",
            "",
            "    token: secret-token\n",
        ))
        .unwrap();
        assert_eq!(c.authority, "webhook.example:8443");
        assert_eq!(c.path, "/audit?x=1");
        assert_eq!(c.token.as_deref(), Some("secret-token"));
        assert_eq!(
            format!("{:?}", c.server_name),
            "DnsName(\"webhook.example\")"
        );
        assert!(
            !format!("{c:?}").contains("secret-token"),
            "the token stays out of logs"
        );
    }

    #[test]
    fn plain_http_and_skipped_verification_are_refused() {
        let e = parse(&kubeconfig(
            "http://webhook.example/audit",
            "",
            "    token: t\n",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("must be https://"), "{e}");
        let e = parse(&kubeconfig(
            "https://webhook.example/audit",
            "    insecure-skip-tls-verify: true\n",
            "    token: t\n",
        ))
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("insecure-skip-tls-verify is refused"),
            "{e}"
        );
    }

    #[test]
    fn broken_configurations_name_what_is_wrong() {
        let good = kubeconfig("https://w.example", "", "    token: t\n");
        let bad_ca = format!(
            "apiVersion: v1\nclusters:\n- name: hook\n  cluster:\n    server: https://w.example\n    certificate-authority-data: {}\n",
            base64::engine::general_purpose::STANDARD.encode(CA)
        );
        for (text, says) in [
            ("clusters: [".to_string(), "not a kubeconfig"),
            (
                good.replace("current-context: c", "current-context: other"),
                "\"other\" is not among the contexts",
            ),
            (
                good.replace("cluster: hook", "cluster: gone"),
                "cluster \"gone\", which is not defined",
            ),
            (bad_ca, "certificate-authority"),
            (
                kubeconfig("https://w.example", "", "    client-key-data: AAAA\n"),
                "needs its key",
            ),
        ] {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(says), "{says}: {e}");
        }
    }

    #[test]
    fn without_a_ca_the_public_roots_are_used() {
        let text =
            "clusters:\n- name: hook\n  cluster:\n    server: https://audit.example.com/ingest\n";
        let c = parse(text).unwrap();
        assert_eq!(c.path, "/ingest");
        assert!(c.token.is_none());
    }

    #[test]
    fn an_event_list_wraps_the_logged_lines() {
        let body = event_list(&[br#"{"auditID":"a"}"#, br#"{"auditID":"b"}"#]);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["kind"], "EventList");
        assert_eq!(v["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(v["items"][1]["auditID"], "b");
    }
}
