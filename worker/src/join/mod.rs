//! The worker's side of the attested join (`protocol::join`): read the registry, verify the
//! enclave on a first-contact connection ([`crate::attested`]), and only then, on that same
//! connection, ask for a challenge, have the stake owner's Sui account sign the join statement,
//! and receive the node's client certificate. Renewal later runs over mutual TLS with the
//! current certificate.

mod state;

pub use state::{JoinRecord, NodeFiles, NodeKey, StateError, kubeconfig};

use std::path::PathBuf;

use chain::attest::TrustPolicy;
use chain::{
    AccountKeystore, Address, AnyRegistry, ClusterState, OpenOptions, Registry, RegistryUrl,
    SuiAccount,
};
use protocol::join::{
    CHALLENGE_PATH, ChallengeResponse, JOIN_PATH, JoinRequest, JoinStatement, NodeCredentials,
    RENEW_PATH,
};

use crate::attested::{AttestError, AttestedServer, attest, now_ms};
use crate::client::{ApiAccess, ClientError, Connection, ServerUrl};

/// Everything a join needs.
#[derive(Debug, Clone)]
pub struct JoinConfig {
    /// The API endpoint.
    pub server: ServerUrl,
    /// The registry holding the enclave's record and the stake.
    pub registry: RegistryUrl,
    /// The Sui CLI keystore of the account owning the stake.
    pub keystore: PathBuf,
    /// Which account of the keystore (the first Ed25519 one when `None`).
    pub address: Option<Address>,
    /// The node name the stake admits.
    pub node_name: String,
    /// How the enclave's attestation is verified (root, freshness, expected PCRs).
    pub policy: TrustPolicy,
}

/// Why a join (or renewal) did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The registry could not be read.
    #[error("reading the registry {url}: {source}")]
    Registry {
        /// The registry.
        url: String,
        /// The cause.
        #[source]
        source: chain::Error,
    },
    /// The keystore has no usable account.
    #[error("{0}")]
    Keystore(#[source] chain::Error),
    /// The enclave was not verified (or not reachable); nothing was sent to it.
    #[error("{0}")]
    Attest(#[from] AttestError),
    /// The enclave refused the join or renewal; its message says which check failed.
    #[error("the enclave refused: {0}")]
    Refused(String),
    /// The exchange failed after verification.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// The data directory could not be used.
    #[error("{0}")]
    State(#[from] StateError),
}

impl JoinError {
    /// True when trying again later may succeed (the server or registry was unreachable).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Attest(AttestError::Unreachable(_)) | Self::Registry { .. } => true,
            Self::Client(e) => e.is_transport() || e.status().is_some_and(|s| s.is_server_error()),
            _ => false,
        }
    }
}

/// A 4xx answer is the enclave's verdict; anything else (a 5xx: the registry could not be
/// read, a transport failure) may pass.
fn refused(e: ClientError) -> JoinError {
    match e {
        ClientError::Status { message, code, .. } if code.is_client_error() => {
            JoinError::Refused(message)
        }
        other => JoinError::Client(other),
    }
}

/// The registry's state, read as the keystore's account.
///
/// # Errors
///
/// [`JoinError::Registry`].
pub async fn read_cluster(config: &JoinConfig) -> Result<ClusterState, JoinError> {
    let options = OpenOptions {
        keystore: Some(config.keystore.clone()),
        address: config.address,
        ..OpenOptions::default()
    };
    let fail = |source| JoinError::Registry {
        url: config.registry.to_string(),
        source,
    };
    let registry = AnyRegistry::open(&config.registry, &options)
        .await
        .map_err(fail)?;
    registry.cluster().await.map_err(fail)
}

/// The keystore holding the account that signs joins (checked to hold it).
///
/// # Errors
///
/// [`JoinError::Keystore`].
pub fn load_keystore(config: &JoinConfig) -> Result<AccountKeystore, JoinError> {
    let keystore = AccountKeystore::load(&config.keystore).map_err(JoinError::Keystore)?;
    keystore
        .account(config.address)
        .map_err(JoinError::Keystore)?;
    Ok(keystore)
}

/// On a verified connection: challenge, signed statement, certificate.
///
/// # Errors
///
/// [`JoinError::Refused`] with the enclave's reason, or [`JoinError::Client`].
pub async fn join_on(
    connection: &mut Connection,
    cluster_id: Address,
    tls_key_sha256: [u8; 32],
    node_name: &str,
    node_spki: Vec<u8>,
    account: &SuiAccount,
) -> Result<NodeCredentials, JoinError> {
    let challenge: ChallengeResponse = connection
        .post_json(CHALLENGE_PATH, &serde_json::json!({}))
        .await
        .map_err(refused)?;
    let mut bytes = [0u8; protocol::join::CHALLENGE_LEN];
    hex::decode_to_slice(&challenge.challenge, &mut bytes).map_err(|e| ClientError::Decode {
        what: CHALLENGE_PATH.into(),
        reason: e.to_string(),
    })?;
    let statement = JoinStatement::new(cluster_id.0, tls_key_sha256, bytes, node_name, node_spki);
    let signature = account.sign_personal_message(&statement.to_bcs());
    let request = JoinRequest::new(&statement, &signature);
    connection
        .post_json(JOIN_PATH, &request)
        .await
        .map_err(refused)
}

/// Asks for a new certificate over mutual TLS with the current one.
///
/// # Errors
///
/// [`JoinError::Refused`] when the enclave no longer admits the node, [`JoinError::Client`].
pub async fn renew(access: &ApiAccess) -> Result<NodeCredentials, JoinError> {
    let (_, mut connection) = access.connect().await?;
    connection
        .post_json(RENEW_PATH, &serde_json::json!({}))
        .await
        .map_err(refused)
}

/// A node that joined (or resumed), ready to run.
#[derive(Debug)]
pub struct Joined {
    /// How to reach the API as the node.
    pub access: ApiAccess,
    /// What was recorded.
    pub record: JoinRecord,
    /// True when a new certificate was issued; false when the saved one was reused.
    pub fresh: bool,
    /// The attestation report of this start.
    pub report: chain::attest::EnclaveReport,
    /// The attested server certificate (DER).
    pub server_certificate: Vec<u8>,
}

/// Whether a saved certificate may be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinMode {
    /// Reuse it when it is for this server, node, cluster and attested key and has more than a
    /// minute left (a restart).
    Resume,
    /// Join again with the stake (the certificate expired or was refused).
    Fresh,
}

/// Verifies the enclave (always), then resumes with the saved certificate or joins with the
/// stake over the verified connection, as `mode` says. Saves what it got and writes the
/// kubeconfig.
///
/// # Errors
///
/// Any [`JoinError`]; on an attestation failure nothing was sent to the server.
pub async fn join_or_resume(
    config: &JoinConfig,
    files: &NodeFiles,
    mode: JoinMode,
) -> Result<Joined, JoinError> {
    let key = files.node_key()?;
    let keystore = load_keystore(config)?;
    let account = keystore
        .account(config.address)
        .map_err(JoinError::Keystore)?;
    let cluster = read_cluster(config).await?;
    let AttestedServer {
        report,
        certificate,
        tls_key_sha256,
        mut connection,
        ..
    } = attest(&config.server, &config.policy, Some(&cluster)).await?;
    let tls_hex = hex::encode(tls_key_sha256);
    if mode == JoinMode::Resume
        && let Some((record, cert_pem)) = files.saved()
        && record.server == config.server.url
        && record.node_name == config.node_name
        && record.cluster_id == cluster.id.to_string()
        && record.tls_key_sha256 == tls_hex
        && record.not_after_ms > now_ms().saturating_add(60_000)
    {
        // The same key may come with a re-issued certificate: pin the one attested now.
        let credentials = NodeCredentials {
            node_name: record.node_name.clone(),
            certificate: cert_pem,
            not_after_ms: record.not_after_ms,
            renew_after_ms: record.renew_after_ms,
        };
        let identity = files.save(&record, &credentials, &config.server, &certificate, &key)?;
        let access = ApiAccess::new(config.server.clone(), tls_key_sha256, identity);
        return Ok(Joined {
            access,
            record,
            fresh: false,
            report,
            server_certificate: certificate.to_vec(),
        });
    }
    let credentials = join_on(
        &mut connection,
        cluster.id,
        tls_key_sha256,
        &config.node_name,
        key.spki_der(),
        account,
    )
    .await?;
    let record = JoinRecord {
        server: config.server.url.clone(),
        node_name: config.node_name.clone(),
        cluster_id: cluster.id.to_string(),
        tls_key_sha256: tls_hex,
        not_after_ms: credentials.not_after_ms,
        renew_after_ms: credentials.renew_after_ms,
    };
    let identity = files.save(&record, &credentials, &config.server, &certificate, &key)?;
    Ok(Joined {
        access: ApiAccess::new(config.server.clone(), tls_key_sha256, identity),
        record,
        fresh: true,
        report,
        server_certificate: certificate.to_vec(),
    })
}
