//! One admission webhook call: an `admission.k8s.io/v1` AdmissionReview POSTed over HTTPS to the
//! webhook's `clientConfig.url`, its certificate checked against `caBundle` (or the Mozilla
//! roots), within `timeoutSeconds`; the answer checked as upstream checks it (same `uid`,
//! `allowed`, a JSONPatch for mutating webhooks).
//!
//! With a `via` endpoint (the host's CONNECT proxy, `daas-host outbound --connect`), the
//! connection is a `CONNECT host:port` through it, and TLS runs end to end from the enclave, so
//! the host relays bytes it cannot read; without one (dev mode) the webhook is dialed directly.
//!
//! A webhook named by `clientConfig.service` runs in a pod, whose network the enclave does not
//! reach; calling it fails, and the webhook's `failurePolicy` decides (as upstream does for a
//! webhook it cannot reach).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, header};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest answer read from a webhook (upstream does not bound it; a bound keeps a broken
/// webhook from filling the enclave's memory).
const MAX_ANSWER: usize = 3 * 1024 * 1024;

/// Why a call gave no usable answer (upstream's `ErrCallingWebhook`).
#[derive(Debug, thiserror::Error)]
#[error("failed to call webhook: {0}")]
pub(crate) struct CallError(pub(crate) String);

/// A webhook's answer.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    pub(crate) allowed: bool,
    /// `response.status` on a denial.
    pub(crate) status: Option<Value>,
    /// The decoded JSONPatch of a mutating webhook.
    pub(crate) patch: Option<Value>,
    pub(crate) warnings: Vec<String>,
}

/// Where and how to call a webhook.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    url: String,
    host: String,
    port: u16,
    path: String,
    ca_bundle: Option<Vec<u8>>,
    timeout: Duration,
    /// The host's CONNECT proxy, if calls go through one.
    via: Option<protocol::Endpoint>,
}

/// Longest answer head read from the CONNECT proxy.
const MAX_PROXY_HEAD: usize = 4096;

impl Target {
    /// From a webhook's `clientConfig` and `timeoutSeconds`, called through `via` if given.
    pub(crate) fn of(
        webhook: &Value,
        via: Option<&protocol::Endpoint>,
    ) -> Result<Target, CallError> {
        let config = webhook.get("clientConfig").unwrap_or(&Value::Null);
        let timeout = Duration::from_secs(
            webhook
                .get("timeoutSeconds")
                .and_then(Value::as_u64)
                .unwrap_or(10)
                .clamp(1, 30),
        );
        let ca_bundle = match config.get("caBundle").and_then(Value::as_str) {
            Some(b) if !b.is_empty() => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| CallError(format!("caBundle is not base64: {e}")))?,
            ),
            _ => None,
        };
        let Some(url) = config.get("url").and_then(Value::as_str) else {
            let svc = config.get("service").unwrap_or(&Value::Null);
            let name = |f: &str| svc.get(f).and_then(Value::as_str).unwrap_or("").to_string();
            return Err(CallError(format!(
                "service {}/{}: Service webhooks run in the cluster's pod network, which this control plane does not reach; use clientConfig.url",
                name("namespace"),
                name("name")
            )));
        };
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| CallError(format!("{url:?} is not a URL: {e}")))?;
        if uri.scheme_str() != Some("https") {
            return Err(CallError(format!("{url:?}: only https URLs are called")));
        }
        let host = uri
            .host()
            .ok_or_else(|| CallError(format!("{url:?} names no host")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(Target {
            url: url.to_string(),
            host,
            port: uri.port_u16().unwrap_or(443),
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
            ca_bundle,
            timeout,
            via: via.cloned(),
        })
    }

    fn tls(&self) -> Result<rustls::ClientConfig, CallError> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_bundle {
            Some(pem) => {
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| CallError(format!("caBundle: {e}")))?;
                    roots
                        .add(cert)
                        .map_err(|e| CallError(format!("caBundle: {e}")))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| CallError(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }

    /// POSTs `review` and returns its answer to `uid`.
    pub(crate) async fn call(&self, review: &Value, uid: &str) -> Result<Answer, CallError> {
        let post = format!("Post {:?}", self.url);
        let answer = tokio::time::timeout(self.timeout, self.exchange(review))
            .await
            .map_err(|_| CallError(format!("{post}: context deadline exceeded")))?
            .map_err(|e| CallError(format!("{post}: {e}")))?;
        parse_answer(&answer, uid)
    }

    /// A connection to the webhook's `host:port`: through the CONNECT proxy when there is one.
    async fn connect(&self) -> Result<Box<dyn crate::boot::parent::ParentStream>, String> {
        let Some(via) = &self.via else {
            let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| format!("dial tcp {}:{}: {e}", self.host, self.port))?;
            return Ok(Box::new(tcp));
        };
        let mut stream = crate::boot::parent::dial(via, "admission webhook proxy")
            .await
            .map_err(|e| format!("connecting to the host's proxy {via}: {e}"))?;
        let authority = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("the host's proxy {via}: {e}"))?;
        // Read the answer's head byte by byte: what follows it is the webhook's TLS.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() >= MAX_PROXY_HEAD {
                return Err(format!("the host's proxy {via}: answer head too long"));
            }
            let mut byte = [0u8; 1];
            let n = stream
                .read(&mut byte)
                .await
                .map_err(|e| format!("the host's proxy {via}: {e}"))?;
            if n == 0 {
                return Err(format!("the host's proxy {via} closed the connection"));
            }
            head.push(byte[0]);
        }
        let status_line = String::from_utf8_lossy(&head);
        let status_line = status_line.lines().next().unwrap_or_default();
        if status_line.split_whitespace().nth(1) != Some("200") {
            return Err(format!(
                "the host's proxy {via} refused CONNECT {authority}: {status_line}"
            ));
        }
        Ok(stream)
    }

    async fn exchange(&self, review: &Value) -> Result<Vec<u8>, String> {
        let stream = self.connect().await?;
        let name = ServerName::try_from(self.host.clone()).map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(self.tls().map_err(|e| e.0)?))
            .connect(name, stream)
            .await
            .map_err(|e| format!("tls: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(conn);
        let body = serde_json::to_vec(review).map_err(|e| e.to_string())?;
        let request = Request::post(self.path.as_str())
            .header(header::HOST, format!("{}:{}", self.host, self.port))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let result = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            if !status.is_success() {
                return Err(format!(
                    "the server answered {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(256)])
                ));
            }
            Ok(body.to_vec())
        }
        .await;
        driver.abort();
        result
    }
}

/// Checks an answer as upstream does: an AdmissionReview whose `response.uid` is the request's.
fn parse_answer(body: &[u8], uid: &str) -> Result<Answer, CallError> {
    let review: Value = serde_json::from_slice(body)
        .map_err(|e| CallError(format!("the answer is not JSON: {e}")))?;
    let response = review
        .get("response")
        .filter(|r| r.is_object())
        .ok_or_else(|| CallError("webhook response was absent".into()))?;
    if response.get("uid").and_then(Value::as_str) != Some(uid) {
        return Err(CallError(format!(
            "expected response.uid={uid:?}, got {:?}",
            response.get("uid").and_then(Value::as_str).unwrap_or("")
        )));
    }
    let patch = match response.get("patch").and_then(Value::as_str) {
        None | Some("") => None,
        Some(p) => {
            if response.get("patchType").and_then(Value::as_str) != Some("JSONPatch") {
                return Err(CallError(format!(
                    "unsupported patch type {:?}",
                    response
                        .get("patchType")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                )));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(p)
                .map_err(|e| CallError(format!("the patch is not base64: {e}")))?;
            Some(
                serde_json::from_slice(&bytes)
                    .map_err(|e| CallError(format!("the patch is not JSON: {e}")))?,
            )
        }
    };
    Ok(Answer {
        allowed: response
            .get("allowed")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        status: response.get("status").cloned(),
        patch,
        warnings: response
            .get("warnings")
            .and_then(Value::as_array)
            .map(|w| {
                w.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// The `admission.k8s.io/v1` AdmissionReview of a request.
pub(crate) fn review(request: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": request,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_checked_as_upstream_checks_them() {
        let ok = json!({"response": {"uid": "u1", "allowed": true}}).to_string();
        assert!(parse_answer(ok.as_bytes(), "u1").unwrap().allowed);
        let e = parse_answer(ok.as_bytes(), "u2").unwrap_err().to_string();
        assert_eq!(
            e,
            "failed to call webhook: expected response.uid=\"u2\", got \"u1\""
        );
        assert!(parse_answer(b"{}", "u1").is_err());
        assert!(parse_answer(b"not json", "u1").is_err());
        let patch = base64::engine::general_purpose::STANDARD
            .encode(r#"[{"op":"add","path":"/x","value":1}]"#);
        let mutating = json!({"response": {"uid": "u1", "allowed": true, "patchType": "JSONPatch", "patch": patch}});
        let a = parse_answer(mutating.to_string().as_bytes(), "u1").unwrap();
        assert_eq!(a.patch.unwrap()[0]["op"], "add");
        let bad_type = json!({"response": {"uid": "u1", "allowed": true, "patchType": "Merge", "patch": "e30="}});
        assert!(parse_answer(bad_type.to_string().as_bytes(), "u1").is_err());
        let denied = json!({"response": {"uid": "u1", "allowed": false, "status": {"message": "no", "code": 403}, "warnings": ["w"]}});
        let a = parse_answer(denied.to_string().as_bytes(), "u1").unwrap();
        assert!(!a.allowed);
        assert_eq!(a.warnings, ["w"]);
    }

    #[test]
    fn targets_need_https_urls() {
        let t = Target::of(&json!({"clientConfig": {"url": "https://127.0.0.1:8443/validate?x=1"}, "timeoutSeconds": 5}), None).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8443, "/validate?x=1")
        );
        assert_eq!(t.timeout, Duration::from_secs(5));
        assert!(Target::of(&json!({"clientConfig": {"url": "http://x/"}}), None).is_err());
        let e = Target::of(
            &json!({"clientConfig": {"service": {"namespace": "a", "name": "b"}}}),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("service a/b"), "{e}");
    }
}
