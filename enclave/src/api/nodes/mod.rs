//! Nodes joining with stake tickets (the enclave's side of `protocol::join`).
//!
//! A worker that verified this enclave's attestation asks for a single-use challenge, has the
//! Sui account owning its stake sign a [`protocol::join::JoinStatement`] binding that
//! challenge, the cluster, this enclave's TLS key, its node name and its new public key, and
//! sends it. The enclave
//! checks the signature, the challenge, and the stake on the registry (it exists for this node
//! name, the signer owns it, it is active), that no other live node holds the name with
//! another key, then issues a short-lived client certificate from the [node CA](NodeCa), whose
//! key is derived from the root secret. The node renews it over mutual TLS while the same stake
//! stays active.
//!
//! [`NodeAdmission::follow_registry`] keeps following the registry: when a stake starts
//! unstaking, is withdrawn or slashed below the minimum, its node's certificates stop being
//! accepted at once (the TLS client verifier, [`NodeClientVerifier`], and every request check
//! [`NodeAdmission::admits`]), the Node gets the `NoExecute` taint [`STAKE_INACTIVE_TAINT`],
//! and once no pod is bound to it the Node and its Lease are deleted.
//!
//! Certificates live [`DEFAULT_CERT_LIFETIME`] (one hour) unless configured otherwise: the
//! enclave revokes online anyway (above), so the lifetime only bounds how long a stolen node
//! key stays useful should that check ever be bypassed, while a renewal costs one registry read
//! and one signature, an hour being cheap even against a Sui fullnode with many nodes; a
//! worker that was down longer joins again with its stake, without a new one.

mod book;
mod ca;
mod challenge;
mod follow;
mod http;
mod stake;
mod tls;

pub use book::{Binding, NodeBook, Revocation};
pub use ca::{NODE_CA_NAME, NodeCa, NodePublicKey};
pub use follow::STAKE_INACTIVE_TAINT;
pub use tls::{NodeClientVerifier, tls_config_with_nodes};

pub(crate) use http::serve;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chain::{AnyRegistry, Registry};
use protocol::join::{ChallengeResponse, JoinRequest, NodeCredentials, node_name_problem};

use self::challenge::{CHALLENGE_TTL, Challenges, IssueError};
use crate::registry::ObjectStore;
use crate::store::StoreError;

/// Default lifetime of a node certificate.
pub const DEFAULT_CERT_LIFETIME: Duration = Duration::from_secs(3600);
/// How long a node whose Lease stopped renewing still holds its name against a join with
/// another key (upstream's node lease duration).
pub const NODE_LEASE_DURATION: Duration = Duration::from_secs(40);

/// Why a join or renewal was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The request is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// A check failed (403); the message says which.
    #[error("{0}")]
    Refused(String),
    /// The registry or the CA cannot answer now (503).
    #[error("{0}")]
    Unavailable(String),
    /// The store failed (500).
    #[error("storing the node binding: {0}")]
    Store(#[from] StoreError),
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Admission of nodes: challenges, joins, renewals, revocation. Cheap to clone.
#[derive(Debug, Clone)]
pub struct NodeAdmission {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: AnyRegistry,
    ca: NodeCa,
    book: NodeBook,
    challenges: Challenges,
    objects: ObjectStore,
    tls_key_sha256: [u8; 32],
    cert_lifetime: Duration,
    /// Serializes joins, renewals and revocations: each reads and replaces a binding.
    changes: tokio::sync::Mutex<()>,
}

impl NodeAdmission {
    /// Admission against `registry`, issuing from `ca`, for the enclave whose TLS key's SPKI
    /// digest is `tls_key_sha256`. Loads the bindings from `objects`' store.
    ///
    /// # Errors
    ///
    /// The store's error.
    pub async fn open(
        registry: AnyRegistry,
        ca: NodeCa,
        objects: ObjectStore,
        tls_key_sha256: [u8; 32],
        cert_lifetime: Duration,
    ) -> Result<Self, StoreError> {
        let store = objects.store().clone();
        let book = tokio::task::spawn_blocking(move || NodeBook::load(store))
            .await
            .map_err(|e| StoreError::Closed(e.to_string()))??;
        Ok(Self {
            inner: Arc::new(Inner {
                registry,
                ca,
                book,
                challenges: Challenges::new(CHALLENGE_TTL),
                objects,
                tls_key_sha256,
                cert_lifetime,
                changes: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The node CA's certificate (DER).
    pub fn ca_cert_der(&self) -> &[u8] {
        self.inner.ca.cert_der()
    }

    /// The bindings (the TLS verifier reads them).
    pub fn book(&self) -> &NodeBook {
        &self.inner.book
    }

    /// True while `node`'s credentials are accepted.
    pub fn admits(&self, node: &str) -> bool {
        self.inner.book.admits(node)
    }

    /// A single-use challenge.
    ///
    /// # Errors
    ///
    /// [`JoinError::Unavailable`] when too many are outstanding.
    pub fn challenge(&self) -> Result<ChallengeResponse, JoinError> {
        let challenge = self.inner.challenges.issue().map_err(|e| match e {
            IssueError::Full => JoinError::Unavailable(
                "too many join challenges are outstanding; try again in a minute".into(),
            ),
            IssueError::Random => JoinError::Unavailable("no system randomness".into()),
        })?;
        Ok(ChallengeResponse {
            challenge: hex::encode(challenge),
            expires_in_seconds: self.inner.challenges.ttl().as_secs(),
        })
    }

    /// Admits the node `request` describes, or says why not.
    ///
    /// # Errors
    ///
    /// [`JoinError::BadRequest`] for malformed fields, [`JoinError::Refused`] for a failed
    /// check, [`JoinError::Unavailable`] when the registry cannot be read.
    #[tracing::instrument(skip_all, fields(node = %request.node_name))]
    pub async fn join(&self, request: &JoinRequest) -> Result<NodeCredentials, JoinError> {
        let inner = &self.inner;
        let statement = request
            .statement()
            .map_err(|e| JoinError::BadRequest(e.to_string()))?;
        let signature = request
            .signature_bytes()
            .map_err(|e| JoinError::BadRequest(e.to_string()))?;
        if let Some(problem) = node_name_problem(&statement.node_name) {
            return Err(JoinError::BadRequest(format!(
                "node name {:?}: {problem}",
                statement.node_name
            )));
        }
        let key = NodePublicKey::from_spki(&statement.node_public_key)
            .map_err(|e| JoinError::BadRequest(e.to_owned()))?;
        // The challenge is used up by this attempt whatever its outcome: a signature is good
        // for one try at most.
        if !inner.challenges.take(&statement.challenge) {
            return Err(JoinError::Refused(
                "the challenge is unknown, expired or already used (a join statement is good \
                 for one attempt; ask for a new challenge)"
                    .into(),
            ));
        }
        let signer = chain::verify_personal_message(&signature, &statement.to_bcs())
            .map_err(|e| JoinError::Refused(format!("the join signature is refused: {e}")))?;
        if statement.enclave_tls_key_sha256 != inner.tls_key_sha256 {
            return Err(JoinError::Refused(
                "the join statement names another enclave's TLS key than this one's".into(),
            ));
        }
        let state = inner
            .registry
            .cluster()
            .await
            .map_err(|e| JoinError::Unavailable(format!("the registry cannot be read: {e}")))?;
        if statement.cluster_id != state.id.0 {
            return Err(JoinError::Refused(format!(
                "the join statement names cluster 0x{}, this enclave serves {}",
                hex::encode(statement.cluster_id),
                state.id
            )));
        }
        let stake = stake::admitting_stake(&state, &statement.node_name, signer)
            .map_err(JoinError::Refused)?
            .clone();
        let _changing = inner.changes.lock().await;
        let key_sha256 = sha256(&statement.node_public_key);
        if let Some(held) = inner.book.get(&statement.node_name)
            && held.is_admitted()
            && held.key_sha256 != key_sha256
            && self.is_live(&held).await
        {
            return Err(JoinError::Refused(format!(
                "node name {:?} is already held by a live node with another key (its Lease is \
                 renewed); stop that node first, or wait until its Lease expires",
                statement.node_name
            )));
        }
        let credentials = self.issue(&statement.node_name, &key)?;
        inner
            .book
            .put(Binding {
                node_name: statement.node_name.clone(),
                public_key: statement.node_public_key.clone(),
                key_sha256,
                stake_id: stake.id,
                owner: stake.owner,
                joined_at_ms: now_ms(),
                not_after_ms: credentials.not_after_ms,
                revoked: None,
            })
            .await?;
        follow::clear_taint(&inner.objects, &statement.node_name).await;
        tracing::info!(owner = %signer, stake = %stake.id, "node joined");
        Ok(credentials)
    }

    fn issue(&self, node_name: &str, key: &NodePublicKey) -> Result<NodeCredentials, JoinError> {
        let now = SystemTime::now();
        let lifetime = self.inner.cert_lifetime;
        let issued = self
            .inner
            .ca
            .issue(node_name, key, now, lifetime)
            .map_err(|e| JoinError::Unavailable(e.to_string()))?;
        let issued_ms = now_ms();
        let renew_after_ms =
            issued_ms.saturating_add(u64::try_from(lifetime.as_millis() * 2 / 3).unwrap_or(0));
        Ok(NodeCredentials {
            node_name: node_name.to_owned(),
            certificate: issued.pem,
            not_after_ms: issued.not_after_ms,
            renew_after_ms,
        })
    }

    /// A new certificate for the joined `node`'s key, if the stake it joined with still admits
    /// it.
    ///
    /// # Errors
    ///
    /// [`JoinError::Refused`] when the node is not joined, revoked, or its stake changed;
    /// [`JoinError::Unavailable`] when the registry cannot be read.
    #[tracing::instrument(skip_all, fields(node = %node))]
    pub async fn renew(&self, node: &str) -> Result<NodeCredentials, JoinError> {
        let inner = &self.inner;
        let state = inner
            .registry
            .cluster()
            .await
            .map_err(|e| JoinError::Unavailable(format!("the registry cannot be read: {e}")))?;
        let _changing = inner.changes.lock().await;
        let mut binding = inner
            .book
            .get(node)
            .filter(Binding::is_admitted)
            .ok_or_else(|| JoinError::Refused(format!("node {node:?} is not joined")))?;
        if let Some(reason) = stake::revocation_reason(&state, &binding) {
            drop(_changing);
            self.revoke(node, &reason).await?;
            return Err(JoinError::Refused(format!(
                "node {node:?} is no longer admitted: {reason}"
            )));
        }
        let key = NodePublicKey::from_spki(&binding.public_key)
            .map_err(|e| JoinError::Unavailable(e.to_owned()))?;
        let credentials = self.issue(node, &key)?;
        binding.not_after_ms = credentials.not_after_ms;
        inner.book.put(binding).await?;
        tracing::info!("node certificate renewed");
        Ok(credentials)
    }

    /// True when the node of `binding` still looks alive: its certificate has not expired and
    /// its Lease was renewed within [`NODE_LEASE_DURATION`] (or it joined that recently).
    async fn is_live(&self, binding: &Binding) -> bool {
        let now = now_ms();
        if binding.not_after_ms <= now {
            return false;
        }
        let window = u64::try_from(NODE_LEASE_DURATION.as_millis()).unwrap_or(u64::MAX);
        if now.saturating_sub(binding.joined_at_ms) < window {
            return true;
        }
        follow::lease_renewed_ms(&self.inner.objects, &binding.node_name)
            .await
            .is_some_and(|renewed| now.saturating_sub(renewed) < window)
    }

    /// Stops accepting `node`'s credentials for `reason`.
    ///
    /// # Errors
    ///
    /// The store's error.
    pub async fn revoke(&self, node: &str, reason: &str) -> Result<(), StoreError> {
        let _changing = self.inner.changes.lock().await;
        let Some(mut binding) = self.inner.book.get(node) else {
            return Ok(());
        };
        if binding.revoked.is_some() {
            return Ok(());
        }
        binding.revoked = Some(Revocation {
            reason: reason.to_owned(),
            at_ms: now_ms(),
        });
        tracing::warn!(node, reason, "node credentials revoked");
        self.inner.book.put(binding).await
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}
