//! Typed Kubernetes requests for the node agent, over a connection pinned to the attested key
//! and authenticated with the node's current certificate (swapped on renewal).

use std::sync::{Arc, RwLock};

use bytes::Bytes;
use hyper::{Method, StatusCode};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use super::{ClientError, Connection, ServerTrust, ServerUrl, status_message};

/// The node's client certificate and key (PEM).
#[derive(Clone)]
pub struct ClientIdentity {
    cert_pem: String,
    key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity").finish_non_exhaustive()
    }
}

impl ClientIdentity {
    /// A certificate (chain, PEM) and its private key (PKCS#8 PEM).
    #[must_use]
    pub fn new(cert_pem: String, key_pem: Zeroizing<String>) -> Self {
        Self { cert_pem, key_pem }
    }

    /// The certificate, PEM.
    #[must_use]
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key, PEM.
    #[must_use]
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    pub(super) fn rustls(
        &self,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ClientError> {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| ClientError::Config(format!("the node certificate: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| ClientError::Config(format!("the node key: {e}")))?;
        Ok((chain, key))
    }
}

/// How the node agent reaches the API: the server, its attested key, and the node's current
/// identity. Cheap to clone; every clone sees identity changes.
#[derive(Debug, Clone)]
pub struct ApiAccess {
    server: ServerUrl,
    current: Arc<RwLock<Current>>,
}

/// What changes over an agent's life: renewed certificates, and a new attested key after the
/// enclave's TLS key changed.
#[derive(Debug, Clone)]
struct Current {
    generation: u64,
    pinned_key: [u8; 32],
    identity: Arc<ClientIdentity>,
}

impl ApiAccess {
    /// Access to `server`, trusting only the key whose SPKI digest is `pinned_key`, as
    /// `identity`.
    #[must_use]
    pub fn new(server: ServerUrl, pinned_key: [u8; 32], identity: ClientIdentity) -> Self {
        Self {
            server,
            current: Arc::new(RwLock::new(Current {
                generation: 0,
                pinned_key,
                identity: Arc::new(identity),
            })),
        }
    }

    fn current(&self) -> Current {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn update(&self, change: impl FnOnce(&mut Current)) {
        let mut guard = match self.current.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        change(&mut guard);
        guard.generation = guard.generation.wrapping_add(1);
    }

    /// The server.
    #[must_use]
    pub fn server(&self) -> &ServerUrl {
        &self.server
    }

    /// SHA-256 of the attested server key's SubjectPublicKeyInfo.
    #[must_use]
    pub fn pinned_key(&self) -> [u8; 32] {
        self.current().pinned_key
    }

    /// The current identity and its generation (bumped by every change).
    #[must_use]
    pub fn identity(&self) -> (u64, Arc<ClientIdentity>) {
        let current = self.current();
        (current.generation, current.identity)
    }

    /// Replaces the identity (a renewed certificate): new connections present it.
    pub fn set_identity(&self, identity: ClientIdentity) {
        self.update(|c| c.identity = Arc::new(identity));
    }

    /// Pins another attested server key (the enclave's TLS key changed and was verified
    /// again) with the identity issued by it.
    pub fn set_server_key(&self, pinned_key: [u8; 32], identity: ClientIdentity) {
        self.update(|c| {
            c.pinned_key = pinned_key;
            c.identity = Arc::new(identity);
        });
    }

    /// A client with its own connection (opened on first use).
    #[must_use]
    pub fn client(&self) -> KubeClient {
        KubeClient {
            access: self.clone(),
            connection: None,
        }
    }

    /// The TLS client configuration of a new connection: the attested key pinned, the current
    /// identity presented.
    ///
    /// # Errors
    ///
    /// [`ClientError::Config`] when the identity does not parse.
    pub fn tls_config(&self) -> Result<rustls::ClientConfig, ClientError> {
        let current = self.current();
        super::tls_client_config(
            ServerTrust::PinnedKey(current.pinned_key),
            Some(&current.identity),
        )
    }

    /// Opens a connection presenting the current identity.
    ///
    /// # Errors
    ///
    /// As [`Connection::open`].
    pub async fn connect(&self) -> Result<(u64, Connection), ClientError> {
        let current = self.current();
        let connection = Connection::open(
            &self.server,
            ServerTrust::PinnedKey(current.pinned_key),
            Some(&current.identity),
        )
        .await?;
        Ok((current.generation, connection))
    }
}

/// Kubernetes requests over one kept-open connection, reopened when it breaks or the identity
/// changes.
#[derive(Debug)]
pub struct KubeClient {
    access: ApiAccess,
    connection: Option<(u64, Connection)>,
}

fn decode<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Decode {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

fn encode(what: &str, value: &impl Serialize) -> Result<Bytes, ClientError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| ClientError::Decode {
            what: what.to_owned(),
            reason: e.to_string(),
        })
}

impl KubeClient {
    /// The access this client uses.
    #[must_use]
    pub fn access(&self) -> &ApiAccess {
        &self.access
    }

    async fn connection(&mut self) -> Result<&mut Connection, ClientError> {
        let current = self.access.identity().0;
        let usable = self
            .connection
            .as_ref()
            .is_some_and(|(generation, c)| *generation == current && c.is_open());
        if !usable {
            self.connection = None;
            self.connection = Some(self.access.connect().await?);
        }
        match self.connection.as_mut() {
            Some((_, c)) => Ok(c),
            None => Err(ClientError::Config("no connection".into())),
        }
    }

    /// Sends a request (reconnecting once if the kept connection broke); any status.
    ///
    /// # Errors
    ///
    /// Transport errors.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<(&str, Bytes)>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let first = {
            let connection = self.connection().await?;
            connection.send(method.clone(), path, body.clone()).await
        };
        match first {
            Err(e) if e.is_transport() => {
                self.connection = None;
                let connection = self.connection().await?;
                connection.send(method, path, body).await
            }
            other => other,
        }
    }

    async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<(&str, Bytes)>,
    ) -> Result<Bytes, ClientError> {
        let what = format!("{method} {path}");
        let (code, answer) = self.send(method, path, body).await?;
        if code.is_success() {
            Ok(answer)
        } else {
            Err(ClientError::Status {
                what,
                code,
                message: status_message(&answer),
            })
        }
    }

    /// GETs `path`; `None` on 404.
    ///
    /// # Errors
    ///
    /// Transport errors, another error status, or an undecodable answer.
    pub async fn get<T: DeserializeOwned>(&mut self, path: &str) -> Result<Option<T>, ClientError> {
        match self.call(Method::GET, path, None).await {
            Ok(body) => decode(path, &body).map(Some),
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// POSTs `object` to the collection `path`; `None` when it already exists (409).
    ///
    /// # Errors
    ///
    /// Transport errors, another error status, or an undecodable answer.
    pub async fn create<T: Serialize + DeserializeOwned>(
        &mut self,
        path: &str,
        object: &T,
    ) -> Result<Option<T>, ClientError> {
        let body = encode(path, object)?;
        match self
            .call(Method::POST, path, Some(("application/json", body)))
            .await
        {
            Ok(answer) => decode(path, &answer).map(Some),
            Err(e) if e.status() == Some(StatusCode::CONFLICT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// PUTs `object` at `path`.
    ///
    /// # Errors
    ///
    /// Transport errors, an error status (409 on a stale resourceVersion), or an undecodable
    /// answer.
    pub async fn replace<T: Serialize + DeserializeOwned>(
        &mut self,
        path: &str,
        object: &T,
    ) -> Result<T, ClientError> {
        let body = encode(path, object)?;
        let answer = self
            .call(Method::PUT, path, Some(("application/json", body)))
            .await?;
        decode(path, &answer)
    }

    /// Applies a JSON merge patch at `path`.
    ///
    /// # Errors
    ///
    /// Transport errors, an error status, or an undecodable answer.
    pub async fn merge_patch<T: DeserializeOwned>(
        &mut self,
        path: &str,
        patch: &serde_json::Value,
    ) -> Result<T, ClientError> {
        let body = encode(path, patch)?;
        let answer = self
            .call(
                Method::PATCH,
                path,
                Some(("application/merge-patch+json", body)),
            )
            .await?;
        decode(path, &answer)
    }

    /// The server's `gitVersion` (`/version`).
    ///
    /// # Errors
    ///
    /// Transport errors, an error status, or an answer without it.
    pub async fn git_version(&mut self) -> Result<String, ClientError> {
        let version: serde_json::Value =
            decode("/version", &self.call(Method::GET, "/version", None).await?)?;
        version
            .get("gitVersion")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Decode {
                what: "/version".into(),
                reason: "no gitVersion".into(),
            })
    }
}
