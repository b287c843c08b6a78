//! Attested first contact: connect without trusting the server, fetch a document with a fresh
//! random nonce over that very connection, and run [`chain::attest::check_enclave`] on it (the
//! pinned root, our nonce, freshness, production mode, expected PCRs, the registry's allowed
//! images and live enclave, and that this connection's TLS key is the attested one). Only a
//! server that passes every check becomes an [`AttestedServer`], whose connection can then be
//! used (`daas-worker` joins over it). `daas verify`, `daas kubeconfig` and `daas dev` use the
//! same function.

use std::time::{SystemTime, UNIX_EPOCH};

use chain::ClusterState;
use chain::attest::{EnclaveReport, TrustPolicy, check_enclave};
use hyper::{Method, StatusCode};
use rustls_pki_types::CertificateDer;

use crate::client::{Connection, ServerTrust, ServerUrl, status_message};

/// A server whose attestation verified, and the connection it verified on.
#[derive(Debug)]
pub struct AttestedServer {
    /// The report (valid).
    pub report: EnclaveReport,
    /// The server's leaf certificate on the attested connection.
    pub certificate: CertificateDer<'static>,
    /// SHA-256 of that certificate's SubjectPublicKeyInfo: the attested TLS key.
    pub tls_key_sha256: [u8; 32],
    /// The verified attestation document, as served (COSE_Sign1).
    pub document: Vec<u8>,
    /// The connection the document came over (its TLS key is the attested one).
    pub connection: Connection,
}

/// Why first contact did not end with a verified server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// The server could not be reached, or answered `/attestation` with no document: it may
    /// not be up yet.
    #[error("{0}")]
    Unreachable(String),
    /// A document arrived and a check failed: a verdict. The report names the check.
    #[error("{} is NOT verified: {}", .0.server, .0.error.as_deref().unwrap_or("unknown failure"))]
    NotVerified(Box<EnclaveReport>),
}

impl AttestError {
    /// The report: the failing one, or a report that says why there is no document.
    #[must_use]
    pub fn report(&self, server: &ServerUrl, policy: &TrustPolicy) -> EnclaveReport {
        match self {
            Self::NotVerified(report) => (**report).clone(),
            Self::Unreachable(reason) => {
                EnclaveReport::new(&server.url, policy, &[], now_ms()).fail(reason.clone())
            }
        }
    }
}

/// Milliseconds since the UNIX epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

fn random_nonce() -> Result<[u8; 32], AttestError> {
    use ring::rand::SecureRandom as _;
    let mut nonce = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| AttestError::Unreachable("no system randomness for the nonce".into()))?;
    Ok(nonce)
}

/// Connects to `server` and verifies it under `policy` and, when given, the registry's
/// `cluster` state.
///
/// # Errors
///
/// [`AttestError::Unreachable`] when no document could be fetched, [`AttestError::NotVerified`]
/// when one was and a check failed.
pub async fn attest(
    server: &ServerUrl,
    policy: &TrustPolicy,
    cluster: Option<&ClusterState>,
) -> Result<AttestedServer, AttestError> {
    let nonce = random_nonce()?;
    let mut connection = Connection::open(server, ServerTrust::AttestLater, None)
        .await
        .map_err(|e| AttestError::Unreachable(e.to_string()))?;
    let path = format!("/attestation?nonce={}", hex::encode(nonce));
    let (status, body) = connection
        .send(Method::GET, &path, None)
        .await
        .map_err(|e| AttestError::Unreachable(e.to_string()))?;
    if status != StatusCode::OK {
        return Err(AttestError::Unreachable(format!(
            "{server} answered /attestation with {status}: {}",
            status_message(&body)
        )));
    }
    let certificate = connection
        .peer_certificate()
        .cloned()
        .ok_or_else(|| AttestError::Unreachable(format!("{server} presented no certificate")))?;
    let report = check_enclave(
        &server.url,
        policy,
        &nonce,
        &body,
        &certificate,
        cluster,
        now_ms(),
    );
    if !report.valid {
        return Err(AttestError::NotVerified(Box::new(report)));
    }
    let tls_key_sha256 = attestation::spki_sha256(&certificate)
        .map_err(|e| AttestError::Unreachable(format!("the server certificate: {e}")))?;
    Ok(AttestedServer {
        report,
        certificate,
        tls_key_sha256,
        document: body.to_vec(),
        connection,
    })
}
