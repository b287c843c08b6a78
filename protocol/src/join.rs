//! A worker's attested join, on one TLS connection to the API endpoint (through the host's
//! relay):
//!
//! 1. `GET /attestation?nonce=<worker nonce>`: the worker verifies the document (root, nonce,
//!    freshness, production mode, the registry's allowed PCRs and live enclave, and that this
//!    connection's TLS key is the attested one). On any failure it stops and sends nothing.
//! 2. `POST` [`CHALLENGE_PATH`] → [`ChallengeResponse`]: a single-use challenge that expires
//!    after [`ChallengeResponse::expires_in_seconds`].
//! 3. The Sui account that owns the node's stake signs the BCS of a [`JoinStatement`] as a Sui
//!    personal message (so any Sui wallet or `sui.keystore` can), binding the challenge, the
//!    cluster, the attested enclave's TLS key, the node name and the node's new public key.
//! 4. `POST` [`JOIN_PATH`] with a [`JoinRequest`] → [`NodeCredentials`]: a short-lived client
//!    certificate (`CN=system:node:NAME`, `O=system:nodes`) for the node's key.
//!
//! Before the certificate expires the node asks again with it: `POST` [`RENEW_PATH`] over
//! mutual TLS → [`NodeCredentials`] for the same key, as long as the same stake is still
//! active. Errors are `metav1.Status` JSON whose `message` says which check failed.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Issues a challenge (anonymous, empty body).
pub const CHALLENGE_PATH: &str = "/join/v1/challenge";
/// Takes a [`JoinRequest`] (anonymous: the signature is the credential).
pub const JOIN_PATH: &str = "/join/v1/nodes";
/// Renews a node's certificate (mutual TLS with the current node certificate, empty body).
pub const RENEW_PATH: &str = "/join/v1/renew";
/// The domain separator at the start of every [`JoinStatement`]: a signature over a join
/// statement is never a valid signature over anything else the account signs.
pub const JOIN_DOMAIN: &str = "k3s-daas/join/v1";
/// Length of a challenge, in bytes.
pub const CHALLENGE_LEN: usize = 32;
/// Longest node name (a DNS subdomain, as Kubernetes requires).
pub const MAX_NODE_NAME_LEN: usize = 253;
/// Largest node public key accepted (a SubjectPublicKeyInfo, DER).
pub const MAX_PUBLIC_KEY_LEN: usize = 512;
/// Kubernetes user-name prefix of node identities.
pub const NODE_USER_PREFIX: &str = "system:node:";
/// Kubernetes group of node identities.
pub const NODES_GROUP: &str = "system:nodes";

/// A request body that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A hex or base64 field is malformed or has the wrong length.
    #[error("{field}: {reason}")]
    Field {
        /// The JSON field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// What [`CHALLENGE_PATH`] answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeResponse {
    /// The challenge, [`CHALLENGE_LEN`] bytes as hex.
    pub challenge: String,
    /// How long the enclave keeps it.
    pub expires_in_seconds: u64,
}

/// What the stake owner's Sui account signs: the BCS bytes of this struct, as a Sui personal
/// message (intent `[3, 0, 0]`, then BCS `vector<u8>` of these bytes, BLAKE2b-256, Ed25519).
///
/// Field order is the BCS layout; changing it changes every signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JoinStatement {
    /// Always [`JOIN_DOMAIN`].
    pub domain: String,
    /// The registry's cluster object ID.
    pub cluster_id: [u8; 32],
    /// SHA-256 of the attested enclave's TLS SubjectPublicKeyInfo (the document's `public_key`).
    pub enclave_tls_key_sha256: [u8; 32],
    /// The enclave's single-use challenge.
    pub challenge: [u8; CHALLENGE_LEN],
    /// The node name the stake admits.
    pub node_name: String,
    /// The node's new public key (SubjectPublicKeyInfo, DER; ECDSA P-256).
    pub node_public_key: Vec<u8>,
}

impl JoinStatement {
    /// A statement in the current domain.
    #[must_use]
    pub fn new(
        cluster_id: [u8; 32],
        enclave_tls_key_sha256: [u8; 32],
        challenge: [u8; CHALLENGE_LEN],
        node_name: &str,
        node_public_key: Vec<u8>,
    ) -> Self {
        Self {
            domain: JOIN_DOMAIN.to_owned(),
            cluster_id,
            enclave_tls_key_sha256,
            challenge,
            node_name: node_name.to_owned(),
            node_public_key,
        }
    }

    /// The bytes the account signs (the personal message).
    #[must_use]
    pub fn to_bcs(&self) -> Vec<u8> {
        // BCS of strings, byte vectors and fixed arrays cannot fail.
        bcs::to_bytes(self).unwrap_or_default()
    }
}

/// What [`JOIN_PATH`] takes: the statement's fields and the Sui signature over it. The enclave
/// rebuilds the statement from these fields, so what it checks is what was signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    /// [`JoinStatement::cluster_id`], `0x` and 64 hex digits.
    pub cluster_id: String,
    /// [`JoinStatement::enclave_tls_key_sha256`], hex.
    pub enclave_tls_key_sha256: String,
    /// [`JoinStatement::challenge`], hex.
    pub challenge: String,
    /// [`JoinStatement::node_name`].
    pub node_name: String,
    /// [`JoinStatement::node_public_key`], base64.
    pub node_public_key: String,
    /// The Sui signature: base64 of `flag || signature || public key` (flag 0x00, Ed25519),
    /// as Sui wallets and the Sui CLI print it.
    pub signature: String,
}

fn fixed<const N: usize>(field: &'static str, text: &str) -> Result<[u8; N], DecodeError> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    let mut out = [0u8; N];
    hex::decode_to_slice(digits, &mut out).map_err(|e| DecodeError::Field {
        field,
        reason: format!("expected {N} bytes of hex: {e}"),
    })?;
    Ok(out)
}

fn base64_field(field: &'static str, text: &str, max: usize) -> Result<Vec<u8>, DecodeError> {
    if text.len() > max.saturating_mul(2) {
        return Err(DecodeError::Field {
            field,
            reason: format!("longer than {max} bytes"),
        });
    }
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| DecodeError::Field {
            field,
            reason: format!("not base64: {e}"),
        })
}

impl JoinRequest {
    /// The request for `statement`, signed with `signature` (Sui serialized signature bytes).
    #[must_use]
    pub fn new(statement: &JoinStatement, signature: &[u8]) -> Self {
        let b64 = base64::engine::general_purpose::STANDARD;
        Self {
            cluster_id: format!("0x{}", hex::encode(statement.cluster_id)),
            enclave_tls_key_sha256: hex::encode(statement.enclave_tls_key_sha256),
            challenge: hex::encode(statement.challenge),
            node_name: statement.node_name.clone(),
            node_public_key: b64.encode(&statement.node_public_key),
            signature: b64.encode(signature),
        }
    }

    /// The signed statement these fields describe.
    ///
    /// # Errors
    ///
    /// [`DecodeError::Field`] for a malformed or wrong-length field.
    pub fn statement(&self) -> Result<JoinStatement, DecodeError> {
        Ok(JoinStatement::new(
            fixed("clusterId", &self.cluster_id)?,
            fixed("enclaveTlsKeySha256", &self.enclave_tls_key_sha256)?,
            fixed("challenge", &self.challenge)?,
            &self.node_name,
            base64_field("nodePublicKey", &self.node_public_key, MAX_PUBLIC_KEY_LEN)?,
        ))
    }

    /// The signature's bytes.
    ///
    /// # Errors
    ///
    /// [`DecodeError::Field`] when it is not base64 (or absurdly long).
    pub fn signature_bytes(&self) -> Result<Vec<u8>, DecodeError> {
        base64_field("signature", &self.signature, 512)
    }
}

/// A node's client certificate, from [`JOIN_PATH`] or [`RENEW_PATH`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeCredentials {
    /// The node name (the certificate's CN is `system:node:` and this).
    pub node_name: String,
    /// The certificate, PEM.
    pub certificate: String,
    /// When it expires, ms since the UNIX epoch.
    pub not_after_ms: u64,
    /// When the node should renew it, ms since the UNIX epoch (two thirds of its life).
    pub renew_after_ms: u64,
}

/// The node name of a Kubernetes user name `system:node:NAME`.
#[must_use]
pub fn node_name_of_user(user: &str) -> Option<&str> {
    user.strip_prefix(NODE_USER_PREFIX)
        .filter(|n| !n.is_empty())
}

/// Why `name` is not a valid node name (a DNS-1123 subdomain of at most 253 bytes), or `None`.
#[must_use]
pub fn node_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("must not be empty");
    }
    if name.len() > MAX_NODE_NAME_LEN {
        return Some("must be at most 253 characters");
    }
    let label_ok = |label: &str| {
        let bytes = label.as_bytes();
        match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => {
                first.is_ascii_alphanumeric()
                    && last.is_ascii_alphanumeric()
                    && bytes
                        .iter()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            }
            _ => false,
        }
    };
    if name.split('.').all(label_ok) {
        None
    } else {
        Some(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, \
             '-' or '.', and must start and end with an alphanumeric character",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement() -> JoinStatement {
        JoinStatement::new([1; 32], [2; 32], [3; 32], "node-a", vec![4, 5])
    }

    #[test]
    fn bcs_layout_is_pinned() {
        // domain (len 16 + bytes), cluster id, tls key digest, challenge (32 each, no length),
        // node name (len 6 + bytes), public key (len 2 + bytes).
        let mut expected = vec![16u8];
        expected.extend_from_slice(JOIN_DOMAIN.as_bytes());
        expected.extend_from_slice(&[1; 32]);
        expected.extend_from_slice(&[2; 32]);
        expected.extend_from_slice(&[3; 32]);
        expected.push(6);
        expected.extend_from_slice(b"node-a");
        expected.extend_from_slice(&[2, 4, 5]);
        assert_eq!(statement().to_bcs(), expected);
    }

    #[test]
    fn request_round_trips_through_json() {
        let request = JoinRequest::new(&statement(), &[9; 97]);
        let json = serde_json::to_string(&request).unwrap();
        assert!(json.contains("\"nodePublicKey\""), "{json}");
        let back: JoinRequest = serde_json::from_str(&json).unwrap();
        assert_eq!(back.statement().unwrap(), statement());
        assert_eq!(back.signature_bytes().unwrap(), vec![9; 97]);
    }

    #[test]
    fn malformed_fields_name_the_field() {
        let mut request = JoinRequest::new(&statement(), &[9; 97]);
        request.challenge = "abcd".into();
        let err = request.statement().unwrap_err();
        assert!(err.to_string().starts_with("challenge:"), "{err}");
        request = JoinRequest::new(&statement(), &[9; 97]);
        request.node_public_key = "***".into();
        let err = request.statement().unwrap_err();
        assert!(err.to_string().starts_with("nodePublicKey:"), "{err}");
    }

    #[test]
    fn node_names() {
        assert_eq!(node_name_problem("worker-1.example"), None);
        for bad in ["", "Worker", "-a", "a-", "a..b", "a_b", &"a".repeat(254)] {
            assert!(node_name_problem(bad).is_some(), "{bad:?}");
        }
        assert_eq!(node_name_of_user("system:node:n1"), Some("n1"));
        assert_eq!(node_name_of_user("system:node:"), None);
        assert_eq!(node_name_of_user("admin"), None);
    }
}
