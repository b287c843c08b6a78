//! A minimal AWS KMS client for the key broker: `Decrypt` and `GenerateDataKey` with a Nitro `Recipient`, over
//! the real AWS JSON 1.1 protocol (`POST /`, `X-Amz-Target: TrentService.<Operation>`, `Content-Type:
//! application/x-amz-json-1.1`, blobs base64 in JSON, SigV4 with service `kms`).
//!
//! The host only ever sees ciphertext: with a `Recipient`, KMS answers with `CiphertextForRecipient` (a CMS
//! envelope to the enclave's attested RSA key) and no `Plaintext`. A response that carries a `Plaintext` anyway
//! is refused, so a misconfigured endpoint cannot make the host handle the root secret.
//!
//! HTTPS uses rustls with the Mozilla roots (`webpki-roots`); plain `http://` is accepted for test endpoints.

pub mod imds;
pub mod sigv4;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;

pub use imds::InstanceMetadata;
pub use sigv4::Credentials;

/// The only key-encryption algorithm KMS offers for a Nitro `Recipient`.
pub const KEY_ENCRYPTION_ALGORITHM: &str = "RSAES_OAEP_SHA_256";
/// Largest KMS response body read.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// What can go wrong talking to KMS.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// The endpoint URL is not `http://HOST[:PORT][/]` or `https://HOST[:PORT][/]`.
    #[error("invalid KMS endpoint {input:?}: {reason}")]
    InvalidEndpoint {
        /// The URL as given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The TLS client configuration could not be built.
    #[error("TLS configuration for KMS")]
    Tls(#[source] rustls::Error),
    /// No credentials in the environment.
    #[error(
        "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN)"
    )]
    NoCredentials,
    /// The instance metadata service did not give the instance role's credentials.
    #[error("instance metadata service: {step}: {reason}")]
    Imds {
        /// What was being done.
        step: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The TCP connection or the TLS handshake failed.
    #[error("cannot connect to KMS at {endpoint}")]
    Connect {
        /// `host:port`.
        endpoint: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("KMS {operation}: HTTP exchange failed")]
    Http {
        /// The operation.
        operation: &'static str,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// KMS did not answer in time.
    #[error("KMS {operation}: no answer within {timeout:?}")]
    Timeout {
        /// The operation.
        operation: &'static str,
        /// The limit.
        timeout: Duration,
    },
    /// KMS answered with an error (`__type` and `message` of its JSON error body).
    #[error("KMS {operation} refused (HTTP {status}): {kind}: {message}")]
    Service {
        /// The operation.
        operation: &'static str,
        /// The HTTP status.
        status: u16,
        /// The error type without its namespace, e.g. `AccessDeniedException`.
        kind: String,
        /// KMS's message.
        message: String,
    },
    /// KMS answered 200 with a body that is not what the operation returns.
    #[error("KMS {operation}: unexpected response: {reason}")]
    Response {
        /// The operation.
        operation: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Where KMS is: scheme, host and port, parsed from a URL such as `https://kms.us-east-1.amazonaws.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsEndpoint {
    tls: bool,
    host: String,
    port: u16,
}

impl std::str::FromStr for KmsEndpoint {
    type Err = KmsError;

    fn from_str(input: &str) -> Result<Self, KmsError> {
        let bad = |reason| KmsError::InvalidEndpoint {
            input: input.to_owned(),
            reason,
        };
        let uri: hyper::Uri = input.parse().map_err(|_| bad("not a URL"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("the scheme must be http or https")),
        };
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("KMS is addressed at `/`: give no path or query"));
        }
        let host = uri.host().ok_or_else(|| bad("no host"))?.to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Self { tls, host, port })
    }
}

impl std::fmt::Display for KmsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.host_header())
    }
}

impl KmsEndpoint {
    /// The `Host` header: the port only when it is not the scheme's default (as SigV4 signers canonicalize it).
    fn host_header(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// What `GenerateDataKey` with a `Recipient` returns that the broker needs.
#[derive(Debug, Clone)]
pub struct GeneratedDataKey {
    /// The data key wrapped under the KMS key: stored by the host, opened again only through `Decrypt`.
    pub ciphertext_blob: Vec<u8>,
    /// The data key encrypted to the enclave's attested key (CMS EnvelopedData).
    pub ciphertext_for_recipient: Vec<u8>,
}

/// Where a [`KmsClient`] gets the credentials it signs with.
#[derive(Debug, Clone)]
pub enum CredentialSource {
    /// Fixed credentials (e.g. from the `AWS_*` environment variables).
    Static(Credentials),
    /// The instance role's, from the instance metadata service, refreshed before they expire.
    InstanceRole(Arc<InstanceMetadata>),
}

impl From<Credentials> for CredentialSource {
    fn from(c: Credentials) -> Self {
        Self::Static(c)
    }
}

impl CredentialSource {
    /// The AWS SDKs' order: the `AWS_*` environment variables if set, else the instance role through the
    /// metadata service at `AWS_EC2_METADATA_SERVICE_ENDPOINT` or [`imds::DEFAULT_IMDS_ENDPOINT`].
    ///
    /// # Errors
    ///
    /// [`KmsError::InvalidEndpoint`] for a malformed `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
    pub fn from_environment() -> Result<Self, KmsError> {
        if let Ok(credentials) = KmsClient::credentials_from_env() {
            return Ok(Self::Static(credentials));
        }
        let endpoint = std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| imds::DEFAULT_IMDS_ENDPOINT.to_owned());
        Ok(Self::InstanceRole(Arc::new(InstanceMetadata::new(
            endpoint.trim_end_matches('/'),
        )?)))
    }

    async fn current(&self) -> Result<Credentials, KmsError> {
        match self {
            Self::Static(c) => Ok(c.clone()),
            Self::InstanceRole(imds) => imds.credentials().await,
        }
    }
}

/// A KMS client for one endpoint, region and credential source.
#[derive(Debug, Clone)]
pub struct KmsClient {
    endpoint: KmsEndpoint,
    region: String,
    credentials: CredentialSource,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RecipientResponse {
    ciphertext_for_recipient: Option<String>,
    ciphertext_blob: Option<String>,
    plaintext: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(rename = "__type")]
    kind: Option<String>,
    #[serde(alias = "Message")]
    message: Option<String>,
}

impl KmsClient {
    /// A client for `endpoint` in `region`. Requests time out after 30 s.
    ///
    /// # Errors
    ///
    /// [`KmsError::Tls`] if the TLS client configuration cannot be built.
    pub fn new(
        endpoint: KmsEndpoint,
        region: String,
        credentials: impl Into<CredentialSource>,
    ) -> Result<Self, KmsError> {
        let credentials = credentials.into();
        let tls = if endpoint.tls {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(KmsError::Tls)?
            .with_root_certificates(roots)
            .with_no_client_auth();
            Some(Arc::new(config))
        } else {
            None
        };
        Ok(Self {
            endpoint,
            region,
            credentials,
            tls,
            timeout: Duration::from_secs(30),
        })
    }

    /// Credentials from the standard environment variables `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
    /// optionally `AWS_SESSION_TOKEN` ([`CredentialSource::from_environment`] falls back to the instance role).
    ///
    /// # Errors
    ///
    /// [`KmsError::NoCredentials`] if either required variable is unset or empty.
    pub fn credentials_from_env() -> Result<Credentials, KmsError> {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        Ok(Credentials {
            access_key_id: var("AWS_ACCESS_KEY_ID").ok_or(KmsError::NoCredentials)?,
            secret_access_key: var("AWS_SECRET_ACCESS_KEY").ok_or(KmsError::NoCredentials)?,
            session_token: var("AWS_SESSION_TOKEN"),
        })
    }

    /// `GenerateDataKey{KeyId, NumberOfBytes, Recipient}`.
    ///
    /// # Errors
    ///
    /// Any [`KmsError`]; [`KmsError::Service`] carries KMS's own refusal (e.g. `AccessDeniedException` when the
    /// attestation does not satisfy the key policy).
    pub async fn generate_data_key(
        &self,
        key_id: &str,
        number_of_bytes: u32,
        attestation_document: &[u8],
    ) -> Result<GeneratedDataKey, KmsError> {
        const OP: &str = "GenerateDataKey";
        let body = serde_json::json!({
            "KeyId": key_id,
            "NumberOfBytes": number_of_bytes,
            "Recipient": recipient(attestation_document),
        });
        let response = self.call(OP, &body).await?;
        Ok(GeneratedDataKey {
            ciphertext_blob: blob(OP, "CiphertextBlob", response.ciphertext_blob)?,
            ciphertext_for_recipient: blob(
                OP,
                "CiphertextForRecipient",
                response.ciphertext_for_recipient,
            )?,
        })
    }

    /// `Decrypt{CiphertextBlob, KeyId, Recipient}`; returns `CiphertextForRecipient`.
    ///
    /// # Errors
    ///
    /// As [`Self::generate_data_key`]; a damaged blob comes back as [`KmsError::Service`] with
    /// `InvalidCiphertextException`.
    pub async fn decrypt(
        &self,
        key_id: &str,
        ciphertext_blob: &[u8],
        attestation_document: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        const OP: &str = "Decrypt";
        let body = serde_json::json!({
            "CiphertextBlob": BASE64.encode(ciphertext_blob),
            "KeyId": key_id,
            "Recipient": recipient(attestation_document),
        });
        let response = self.call(OP, &body).await?;
        blob(
            OP,
            "CiphertextForRecipient",
            response.ciphertext_for_recipient,
        )
    }

    async fn call(
        &self,
        operation: &'static str,
        body: &serde_json::Value,
    ) -> Result<RecipientResponse, KmsError> {
        tokio::time::timeout(self.timeout, self.exchange(operation, body))
            .await
            .map_err(|_| KmsError::Timeout {
                operation,
                timeout: self.timeout,
            })?
    }

    async fn exchange(
        &self,
        operation: &'static str,
        body: &serde_json::Value,
    ) -> Result<RecipientResponse, KmsError> {
        let http =
            |source: Box<dyn std::error::Error + Send + Sync>| KmsError::Http { operation, source };
        let body = serde_json::to_vec(body).map_err(|e| http(e.into()))?;
        let target = format!("TrentService.{operation}");
        let host = self.endpoint.host_header();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let date = sigv4::amz_date(now);
        let credentials = self.credentials.current().await?;
        let signed = sigv4::sign(
            &sigv4::SigningInput {
                host: &host,
                headers: &[
                    ("Content-Type", "application/x-amz-json-1.1"),
                    ("X-Amz-Target", &target),
                ],
                body: &body,
                region: &self.region,
                service: "kms",
                amz_date: &date,
            },
            &credentials,
        );
        let mut request = Request::post("/");
        for (name, value) in &signed.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request
            .header("authorization", signed.authorization)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| http(e.into()))?;

        let addr = format!("{}:{}", self.endpoint.host, self.endpoint.port);
        let connect_err = |source| KmsError::Connect {
            endpoint: addr.clone(),
            source,
        };
        let tcp = TcpStream::connect(&addr).await.map_err(connect_err)?;
        let response = match &self.tls {
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(self.endpoint.host.clone())
                    .map_err(|e| connect_err(std::io::Error::other(e)))?;
                let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
                    .connect(name, tcp)
                    .await
                    .map_err(connect_err)?;
                send(TokioIo::new(tls), request).await
            }
            None => send(TokioIo::new(tcp), request).await,
        }
        .map_err(http)?;

        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(http)?
            .to_bytes();
        if !status.is_success() {
            let parsed: Option<ErrorBody> = serde_json::from_slice(&bytes).ok();
            let kind = parsed
                .as_ref()
                .and_then(|e| e.kind.as_deref())
                .map(|k| k.rsplit('#').next().unwrap_or(k).to_owned())
                .unwrap_or_else(|| "UnknownError".into());
            let message = parsed
                .and_then(|e| e.message)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(300).collect());
            return Err(KmsError::Service {
                operation,
                status: status.as_u16(),
                kind,
                message,
            });
        }
        let parsed: RecipientResponse =
            serde_json::from_slice(&bytes).map_err(|e| KmsError::Response {
                operation,
                reason: format!("not the expected JSON: {e}"),
            })?;
        if parsed.plaintext.as_ref().is_some_and(|p| !p.is_null()) {
            return Err(KmsError::Response {
                operation,
                reason: "it carries a Plaintext: the host must never see the key (was the Recipient ignored?)"
                    .into(),
            });
        }
        Ok(parsed)
    }
}

/// Sends one request on a fresh HTTP/1.1 connection.
async fn send<I>(
    io: I,
    request: Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, Box<dyn std::error::Error + Send + Sync>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await;
    if response.is_err() {
        driver.abort();
    }
    Ok(response?)
}

fn recipient(document: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "AttestationDocument": BASE64.encode(document),
        "KeyEncryptionAlgorithm": KEY_ENCRYPTION_ALGORITHM,
    })
}

fn blob(
    operation: &'static str,
    field: &'static str,
    value: Option<String>,
) -> Result<Vec<u8>, KmsError> {
    let value = value.ok_or_else(|| KmsError::Response {
        operation,
        reason: format!("no {field}"),
    })?;
    BASE64.decode(value).map_err(|_| KmsError::Response {
        operation,
        reason: format!("{field} is not base64"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let e: KmsEndpoint = "https://kms.us-east-1.amazonaws.com".parse().unwrap();
        assert_eq!(e.host_header(), "kms.us-east-1.amazonaws.com");
        assert_eq!(e.port, 443);
        let e: KmsEndpoint = "http://127.0.0.1:4599/".parse().unwrap();
        assert_eq!(e.host_header(), "127.0.0.1:4599");
        assert_eq!(e.to_string(), "http://127.0.0.1:4599");
        for bad in [
            "ftp://x",
            "kms.amazonaws.com",
            "https://x/path",
            "https://x/?q=1",
        ] {
            assert!(bad.parse::<KmsEndpoint>().is_err(), "{bad}");
        }
    }
}
