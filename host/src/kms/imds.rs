//! Instance-role credentials from the EC2 instance metadata service (IMDSv2), for a key broker on a Nitro
//! parent instance that has no static keys: `PUT /latest/api/token` (with
//! `X-aws-ec2-metadata-token-ttl-seconds`), then with that token `GET
//! /latest/meta-data/iam/security-credentials/` for the role name and `GET …/<role>` for `AccessKeyId`,
//! `SecretAccessKey`, `Token` and `Expiration`. Credentials are cached until five minutes before they expire,
//! as the AWS SDKs do. The fake service in the tests is cross-checked with botocore's own IMDS fetcher.

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::{Credentials, KmsError};

/// The metadata service's address on every EC2 instance.
pub const DEFAULT_IMDS_ENDPOINT: &str = "http://169.254.169.254";
/// Refresh credentials this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// Each IMDS request must answer within this (the service is on the instance).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Session token lifetime asked for (the maximum, 6 hours).
const TOKEN_TTL_SECONDS: &str = "21600";
/// Largest IMDS response body read.
const MAX_BODY: usize = 64 * 1024;
const CREDENTIALS_PATH: &str = "/latest/meta-data/iam/security-credentials/";

/// Fetches and caches the instance role's credentials.
#[derive(Debug)]
pub struct InstanceMetadata {
    /// `host:port`.
    addr: String,
    cached: Mutex<Option<(Credentials, jiff::Timestamp)>>,
}

/// The role credentials document.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoleCredentials {
    code: String,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    token: Option<String>,
    expiration: Option<String>,
}

impl InstanceMetadata {
    /// A client for the metadata service at `endpoint` (`http://HOST[:PORT]`, e.g. [`DEFAULT_IMDS_ENDPOINT`];
    /// the AWS SDKs read the same setting from `AWS_EC2_METADATA_SERVICE_ENDPOINT`).
    ///
    /// # Errors
    ///
    /// [`KmsError::InvalidEndpoint`] if `endpoint` is not a plain `http://` URL without a path.
    pub fn new(endpoint: &str) -> Result<Self, KmsError> {
        let bad = |reason| KmsError::InvalidEndpoint {
            input: endpoint.to_owned(),
            reason,
        };
        let uri: hyper::Uri = endpoint.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("the instance metadata service is plain http"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("give the metadata service's address without a path"));
        }
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        Ok(Self {
            addr: format!("{host}:{port}"),
            cached: Mutex::new(None),
        })
    }

    /// The role's current credentials: cached ones while they have more than five minutes left, else fresh
    /// ones from the service.
    ///
    /// # Errors
    ///
    /// [`KmsError::Imds`] naming the step that failed (no role attached, IMDSv2 token refused, …).
    pub async fn credentials(&self) -> Result<Credentials, KmsError> {
        let mut cached = self.cached.lock().await;
        let now = jiff::Timestamp::now();
        if let Some((credentials, expires)) = cached.as_ref()
            && now + REFRESH_BEFORE_EXPIRY < *expires
        {
            return Ok(credentials.clone());
        }
        let (credentials, expires) = self.fetch().await?;
        *cached = Some((credentials.clone(), expires));
        Ok(credentials)
    }

    async fn fetch(&self) -> Result<(Credentials, jiff::Timestamp), KmsError> {
        let token = self
            .request(
                "getting an IMDSv2 session token",
                Request::put("/latest/api/token")
                    .header("x-aws-ec2-metadata-token-ttl-seconds", TOKEN_TTL_SECONDS),
            )
            .await?;
        let roles = self
            .request(
                "listing the instance's role",
                Request::get(CREDENTIALS_PATH).header("x-aws-ec2-metadata-token", &token),
            )
            .await?;
        let role = roles
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .ok_or_else(|| imds("listing the instance's role", "no IAM role is attached"))?;
        let document = self
            .request(
                "reading the role's credentials",
                Request::get(format!("{CREDENTIALS_PATH}{role}"))
                    .header("x-aws-ec2-metadata-token", &token),
            )
            .await?;
        let step = "reading the role's credentials";
        let parsed: RoleCredentials = serde_json::from_str(&document)
            .map_err(|e| imds(step, format!("not the credentials document: {e}")))?;
        if parsed.code != "Success" {
            return Err(imds(step, format!("the service says {:?}", parsed.code)));
        }
        let field = |v: Option<String>, name: &str| {
            v.filter(|s| !s.is_empty())
                .ok_or_else(|| imds(step, format!("no {name}")))
        };
        let expiration = field(parsed.expiration, "Expiration")?;
        let expires: jiff::Timestamp = expiration
            .parse()
            .map_err(|e| imds(step, format!("Expiration {expiration:?}: {e}")))?;
        let credentials = Credentials {
            access_key_id: field(parsed.access_key_id, "AccessKeyId")?,
            secret_access_key: field(parsed.secret_access_key, "SecretAccessKey")?,
            session_token: Some(field(parsed.token, "Token")?),
        };
        Ok((credentials, expires))
    }

    /// One request on a fresh connection; the body of a 200 answer, as text.
    async fn request(
        &self,
        step: &'static str,
        builder: hyper::http::request::Builder,
    ) -> Result<String, KmsError> {
        let request = builder
            .header("host", &self.addr)
            .body(Empty::<Bytes>::new())
            .map_err(|e| imds(step, e.to_string()))?;
        let exchange = async {
            let tcp = TcpStream::connect(&self.addr)
                .await
                .map_err(|e| imds(step, format!("cannot connect to {}: {e}", self.addr)))?;
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(|e| imds(step, e.to_string()))?;
            let driver = tokio::spawn(connection);
            let response = sender.send_request(request).await;
            let response = match response {
                Ok(r) => r,
                Err(e) => {
                    driver.abort();
                    return Err(imds(step, e.to_string()));
                }
            };
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| imds(step, e.to_string()))?
                .to_bytes();
            if !status.is_success() {
                return Err(imds(step, format!("HTTP {status}")));
            }
            String::from_utf8(body.to_vec()).map_err(|_| imds(step, "the answer is not UTF-8"))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| imds(step, format!("no answer within {REQUEST_TIMEOUT:?}")))?
    }
}

fn imds(step: &'static str, reason: impl Into<String>) -> KmsError {
    KmsError::Imds {
        step,
        reason: reason.into(),
    }
}
