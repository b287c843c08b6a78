//! Attested first contact: `GET /attestation?nonce=<hex>`.
//!
//! Anyone may ask (like `/readyz`): the answer proves what runs here, it
//! reveals nothing. The response body is the raw attestation document, an
//! untagged CBOR COSE_Sign1 exactly as the NSM returns it, with content type
//! `application/cbor` (RFC 8949); no base64 or JSON wrapping, so clients feed
//! the bytes straight to [`attestation::Verifier::verify`]. Its `public_key`
//! binds the SHA-256 of the serving certificate's SubjectPublicKeyInfo (see
//! [`attestation::attest_certificate`]) and its `nonce` is the caller's, so a
//! client that fetched it over a TLS connection checks, with
//! [`attestation::check_tls_binding`], that this very connection ends at the
//! attested key.
//!
//! Errors are `metav1.Status` JSON: 400 for a missing, non-hex, empty or
//! over-long nonce ([`MAX_NONCE_LEN`] bytes), 405 for other methods, 503
//! when the server has no attestation source or the NSM fails.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use attestation::{DevRoot, Nsm, SimNsm};
use bytes::Bytes;
use hyper::{Method, Response, header};
use tokio::sync::Semaphore;

use super::http::{self, Body};
use super::{ServeError, pki};
use crate::registry::Error;

/// Longest accepted nonce, in bytes (the attestation field limit:
/// [`attestation::MAX_USER_FIELD_LEN`]); at most twice as many hex digits.
pub const MAX_NONCE_LEN: usize = attestation::MAX_USER_FIELD_LEN;

/// Content type of the response body.
pub const CONTENT_TYPE: &str = "application/cbor";

/// Documents issued at once; more requests wait. Each simulated document
/// generates four P-384 keys and the hardware NSM serialises requests, so
/// an anonymous flood queues here instead of piling up blocking threads.
const CONCURRENT_DOCUMENTS: usize = 4;

/// Where `DIR/attestation/` keeps the dev root certificate and its key: defined by the attestation crate, which
/// the clients that read the certificate (`daas dev`, `daas verify --dev-root`) share with the enclave.
pub use attestation::{DEV_ROOT_CERT, DEV_ROOT_KEY};

type DocumentFuture<'a> = Pin<Box<dyn Future<Output = attestation::Result<Vec<u8>>> + Send + 'a>>;

/// An NSM seen through a trait object (the [`Nsm`] trait returns `impl
/// Future`, so it is not object safe).
trait CertificateAttester: Send + Sync + fmt::Debug {
    fn attest<'a>(
        &'a self,
        cert_der: &'a [u8],
        anchor_key: Option<[u8; 32]>,
        nonce: Vec<u8>,
    ) -> DocumentFuture<'a>;
}

impl<N: Nsm + fmt::Debug> CertificateAttester for N {
    fn attest<'a>(
        &'a self,
        cert_der: &'a [u8],
        anchor_key: Option<[u8; 32]>,
        nonce: Vec<u8>,
    ) -> DocumentFuture<'a> {
        match anchor_key {
            Some(key) => Box::pin(attestation::attest_enclave(self, cert_der, key, nonce)),
            None => Box::pin(attestation::attest_certificate(self, cert_der, nonce)),
        }
    }
}

/// The shared outcome of setting an NSM up in the background: `None` while it is being set up.
type Setup<N> = tokio::sync::watch::Receiver<Option<Result<Arc<N>, String>>>;

/// An NSM still being set up (the dev simulator hashes the running binary, which takes a second or more for a
/// large binary). Requests wait for it; the server does not, so it is ready to serve before it can attest.
#[derive(Debug)]
struct Deferred<N> {
    setup: Setup<N>,
}

impl<N: Nsm + fmt::Debug + Send + Sync + 'static> CertificateAttester for Deferred<N> {
    fn attest<'a>(
        &'a self,
        cert_der: &'a [u8],
        anchor_key: Option<[u8; 32]>,
        nonce: Vec<u8>,
    ) -> DocumentFuture<'a> {
        Box::pin(async move {
            let mut setup = self.setup.clone();
            let outcome = setup
                .wait_for(Option::is_some)
                .await
                .map(|ready| ready.clone())
                .ok()
                .flatten();
            match outcome {
                Some(Ok(nsm)) => nsm.attest(cert_der, anchor_key, nonce).await,
                Some(Err(reason)) => Err(attestation::Error::Nsm {
                    request: "setup",
                    reason,
                }),
                None => Err(attestation::Error::Nsm {
                    request: "setup",
                    reason: "the NSM setup task ended without a result".into(),
                }),
            }
        })
    }
}

/// Issues documents that bind the serving certificate: what
/// `GET /attestation` answers with. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Attestor {
    nsm: Arc<dyn CertificateAttester>,
    cert_der: Arc<[u8]>,
    anchor_key: Option<[u8; 32]>,
    permits: Arc<Semaphore>,
}

impl Attestor {
    /// Documents from `nsm` binding `serving_cert_der`, the leaf certificate
    /// the TLS listener presents.
    ///
    /// # Errors
    ///
    /// [`ServeError::Certificate`] when `serving_cert_der` is not a
    /// certificate the binding can be computed for.
    pub fn new<N: Nsm + fmt::Debug>(nsm: N, serving_cert_der: &[u8]) -> Result<Self, ServeError> {
        attestation::spki_sha256(serving_cert_der)
            .map_err(|e| ServeError::Certificate(format!("serving certificate: {e}")))?;
        Ok(Self {
            nsm: Arc::new(nsm),
            cert_der: serving_cert_der.into(),
            anchor_key: None,
            permits: Arc::new(Semaphore::new(CONCURRENT_DOCUMENTS)),
        })
    }

    /// Like [`Attestor::new`], with the NSM set up by `setup` on a blocking thread in the background: documents
    /// are issued once it is done (requests wait), or fail with its error. `on_ready` runs on that thread with
    /// the NSM once it is set up (e.g. to log its PCRs).
    ///
    /// # Errors
    ///
    /// [`ServeError::Certificate`] when `serving_cert_der` is not a certificate the binding can be computed for.
    pub fn set_up_in_background<N, E>(
        setup: impl FnOnce() -> Result<N, E> + Send + 'static,
        on_ready: impl FnOnce(&N) + Send + 'static,
        serving_cert_der: &[u8],
    ) -> Result<Self, ServeError>
    where
        N: Nsm + fmt::Debug + Send + Sync + 'static,
        E: fmt::Display,
    {
        attestation::spki_sha256(serving_cert_der)
            .map_err(|e| ServeError::Certificate(format!("serving certificate: {e}")))?;
        let (tx, rx) = tokio::sync::watch::channel(None);
        tokio::task::spawn_blocking(move || {
            let outcome = setup().map(Arc::new).map_err(|e| e.to_string());
            match &outcome {
                Ok(nsm) => on_ready(nsm),
                Err(reason) => {
                    tracing::error!(%reason, "the NSM could not be set up; attestation will fail")
                }
            }
            let _ = tx.send(Some(outcome));
        });
        Ok(Self {
            nsm: Arc::new(Deferred { setup: rx }),
            cert_der: serving_cert_der.into(),
            anchor_key: None,
            permits: Arc::new(Semaphore::new(CONCURRENT_DOCUMENTS)),
        })
    }

    /// Also binds the enclave's Ed25519 anchor key (raw public key) in each
    /// document's `user_data`, which the registry requires to register it.
    #[must_use]
    pub fn with_anchor_key(mut self, anchor_public_key: [u8; 32]) -> Self {
        self.anchor_key = Some(anchor_public_key);
        self
    }

    /// A fresh document binding the serving certificate, carrying `nonce`.
    ///
    /// # Errors
    ///
    /// The NSM's error ([`attestation::Error::NsmRequestTooLarge`] for a
    /// nonce over [`MAX_NONCE_LEN`] bytes).
    pub async fn document(&self, nonce: Vec<u8>) -> attestation::Result<Vec<u8>> {
        // The semaphore is never closed, so acquiring only fails if it were.
        let _permit = self.permits.acquire().await.ok();
        self.nsm
            .attest(&self.cert_der, self.anchor_key, nonce)
            .await
    }
}

/// The dev NSM of the data directory `dir`: its root is created on first
/// start under `dir/`[`DEV_ROOT_CERT`] and [`DEV_ROOT_KEY`] and reused
/// afterwards, so clients that pinned it keep working across restarts. PCR0..2
/// measure the running executable.
///
/// # Errors
///
/// [`ServeError::Io`] for file errors, [`ServeError::Certificate`] for a
/// damaged or mismatched root, [`ServeError::Config`] when only one of the
/// two files exists.
pub fn dev_nsm(dir: &Path) -> Result<SimNsm, ServeError> {
    SimNsm::new(dev_root(dir)?)
        .map_err(|e| ServeError::Certificate(format!("measuring the running binary: {e}")))
}

/// The dev attestation root of the data directory `dir`, created on first start under `dir/`[`DEV_ROOT_CERT`]
/// and [`DEV_ROOT_KEY`] and reused afterwards. Quick (no measurement): a server that sets its NSM up in the
/// background calls this first, so the root certificate is on disk before it says it is ready.
///
/// # Errors
///
/// As [`dev_nsm`], but for the measurement.
pub fn dev_root(dir: &Path) -> Result<DevRoot, ServeError> {
    let cert_path = dir.join(DEV_ROOT_CERT);
    let key_path = dir.join(DEV_ROOT_KEY);
    let io = |path: &PathBuf| {
        let path = path.clone();
        move |cause| ServeError::Io { path, cause }
    };
    let root = match (cert_path.exists(), key_path.exists()) {
        (true, true) => {
            let cert = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
            let key = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
            DevRoot::from_pem(&cert, &key).map_err(|e| {
                ServeError::Certificate(format!("dev root in {}: {e}", cert_path.display()))
            })?
        }
        (false, false) => {
            let root = DevRoot::generate()
                .map_err(|e| ServeError::Certificate(format!("generating the dev root: {e}")))?;
            if let Some(parent) = cert_path.parent() {
                std::fs::create_dir_all(parent).map_err(io(&parent.to_path_buf()))?;
            }
            let (cert, key) = root.to_pem();
            // Key first: a crash in between leaves no certificate without a key.
            pki::write_private(&key_path, key.as_bytes())?;
            std::fs::write(&cert_path, cert.as_bytes()).map_err(io(&cert_path))?;
            root
        }
        _ => {
            return Err(ServeError::Config(format!(
                "{} holds only half of the dev attestation root; remove it to regenerate",
                cert_path.parent().unwrap_or(dir).display()
            )));
        }
    };
    Ok(root)
}

/// Parses the query's `nonce` parameter.
fn nonce(query: Option<&str>) -> Result<Vec<u8>, Error> {
    let mut found = None;
    for pair in query.unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "nonce" {
            if found.is_some() {
                return Err(Error::BadRequest("nonce: given more than once".into()));
            }
            found = Some(value);
        }
    }
    let hex_nonce =
        found.ok_or_else(|| Error::BadRequest("nonce: required (?nonce=<hex>)".into()))?;
    if hex_nonce.is_empty() {
        return Err(Error::BadRequest("nonce: must not be empty".into()));
    }
    if hex_nonce.len() > 2 * MAX_NONCE_LEN {
        return Err(Error::BadRequest(format!(
            "nonce: {} hex digits, at most {} ({MAX_NONCE_LEN} bytes) allowed",
            hex_nonce.len(),
            2 * MAX_NONCE_LEN
        )));
    }
    hex::decode(hex_nonce).map_err(|e| Error::BadRequest(format!("nonce: not hex: {e}")))
}

fn unavailable(message: &str) -> Response<Body> {
    http::json(
        503,
        &serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": "ServiceUnavailable", "code": 503,
        }),
    )
}

/// Serves `GET /attestation`.
pub(super) async fn serve(
    attestor: Option<&Attestor>,
    method: &Method,
    query: Option<&str>,
) -> Response<Body> {
    if method != Method::GET {
        return http::error(&Error::MethodNotAllowed(
            "the server does not allow this method on the requested resource".into(),
        ));
    }
    let nonce = match nonce(query) {
        Ok(n) => n,
        Err(e) => return http::error(&e),
    };
    let Some(attestor) = attestor else {
        return unavailable("this server has no attestation source");
    };
    match attestor.document(nonce).await {
        Ok(document) => Response::builder()
            .status(200)
            .header(header::CONTENT_TYPE, CONTENT_TYPE)
            .header(header::CACHE_CONTROL, "no-store")
            .body(http::full(Bytes::from(document)))
            .unwrap_or_else(|_| unavailable("building the response failed")),
        Err(e) => {
            tracing::warn!(error = %e, "attestation failed");
            unavailable(&format!("attestation failed: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_root_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = dev_nsm(dir.path()).unwrap();
        let again = dev_nsm(dir.path()).unwrap();
        assert_eq!(first.root().cert_der(), again.root().cert_der());
        let key = std::fs::metadata(dir.path().join(DEV_ROOT_KEY)).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(key.permissions().mode() & 0o777, 0o600);

        // Half a root is refused rather than silently replaced.
        std::fs::remove_file(dir.path().join(DEV_ROOT_KEY)).unwrap();
        assert!(matches!(dev_nsm(dir.path()), Err(ServeError::Config(_))));
        // So is a key that does not belong to the certificate.
        let (_, other_key) = DevRoot::generate().unwrap().to_pem();
        std::fs::write(dir.path().join(DEV_ROOT_KEY), other_key).unwrap();
        assert!(matches!(
            dev_nsm(dir.path()),
            Err(ServeError::Certificate(m)) if m.contains("dev root")
        ));
    }

    #[test]
    fn nonce_parameter_rules() {
        assert_eq!(nonce(Some("nonce=00ff")).ok(), Some(vec![0, 255]));
        assert_eq!(nonce(Some("a=b&nonce=01")).ok(), Some(vec![1]));
        for bad in [
            None,
            Some(""),
            Some("nonce="),
            Some("nonce"),
            Some("nonce=zz"),
            Some("nonce=abc"),
            Some("nonce=01&nonce=02"),
        ] {
            assert!(
                matches!(nonce(bad), Err(Error::BadRequest(_))),
                "{bad:?} accepted"
            );
        }
        let max = "ab".repeat(MAX_NONCE_LEN);
        assert_eq!(
            nonce(Some(&format!("nonce={max}"))).map(|n| n.len()).ok(),
            Some(MAX_NONCE_LEN)
        );
        assert!(matches!(
            nonce(Some(&format!("nonce={max}ab"))),
            Err(Error::BadRequest(m)) if m.contains("at most")
        ));
    }
}
