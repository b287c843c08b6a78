//! State anchors: the bytes the enclave signs (the Nautilus `IntentMessage` pattern, byte for
//! byte what `k3s_daas::anchor::anchor_message` builds in Move) and their Ed25519 check.

use ring::signature::{ED25519, Ed25519KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::types::Address;

/// Intent scope of anchor messages (`anchor::ANCHOR_INTENT`).
pub const ANCHOR_INTENT: u8 = 1;

/// An anchor as the enclave submits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAnchor {
    /// Store revision.
    pub revision: u64,
    /// Journal chain hash at that revision.
    #[serde(with = "hex::serde")]
    pub chain_hash: [u8; 32],
    /// When the enclave signed it (ms since the epoch).
    pub timestamp_ms: u64,
    /// Ed25519 signature over [`anchor_message`].
    #[serde(with = "hex::serde")]
    pub signature: [u8; 64],
}

impl SignedAnchor {
    /// Signs (revision, chain hash) for `cluster` with the enclave's key.
    #[must_use]
    pub fn sign(
        key: &Ed25519KeyPair,
        cluster: Address,
        revision: u64,
        chain_hash: [u8; 32],
        timestamp_ms: u64,
    ) -> Self {
        let message = anchor_message(cluster, revision, &chain_hash, timestamp_ms);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(key.sign(&message).as_ref());
        Self {
            revision,
            chain_hash,
            timestamp_ms,
            signature,
        }
    }
}

#[derive(Serialize)]
struct IntentMessage<'a> {
    intent: u8,
    timestamp_ms: u64,
    payload: AnchorPayload<'a>,
}

#[derive(Serialize)]
struct AnchorPayload<'a> {
    cluster_id: [u8; 32],
    revision: u64,
    chain_hash: &'a [u8],
}

/// `bcs(IntentMessage { intent: 1, timestamp_ms, payload: AnchorPayload { cluster_id, revision,
/// chain_hash } })`.
#[must_use]
pub fn anchor_message(
    cluster: Address,
    revision: u64,
    chain_hash: &[u8; 32],
    timestamp_ms: u64,
) -> Vec<u8> {
    let message = IntentMessage {
        intent: ANCHOR_INTENT,
        timestamp_ms,
        payload: AnchorPayload {
            cluster_id: cluster.0,
            revision,
            chain_hash,
        },
    };
    // BCS of fixed-shape structs of integers and byte strings cannot fail.
    bcs::to_bytes(&message).unwrap_or_default()
}

/// True when `anchor.signature` is `public_key`'s signature over the anchor message for
/// `cluster` (`anchor::verify_anchor_signature`).
#[must_use]
pub fn verify_anchor_signature(
    public_key: &[u8; 32],
    cluster: Address,
    anchor: &SignedAnchor,
) -> bool {
    let message = anchor_message(
        cluster,
        anchor.revision,
        &anchor.chain_hash,
        anchor.timestamp_ms,
    );
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(&message, &anchor.signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The vector pinned in Move/tests/anchor_tests.move.
    const SEED: [u8; 32] = [
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
        26, 27, 28, 29, 30, 31, 32,
    ];
    const PUBLIC_KEY: &str = "79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664";
    const MESSAGE: &str = "01e0fc19209c01000000000000000000000000000000000000000000000000000000000000000000c12a0000000000000020abababababababababababababababababababababababababababababababab";
    const SIGNATURE: &str = "4debd58bcf7b5dee8def4c6a918066d12995e0ceee14509777cc8965f82315e6392b5ae3c930447e46d3ce6f236ffcd21deeb3960867a84a79ba222c2cd4140c";

    fn cluster() -> Address {
        "0xc1".parse().unwrap()
    }

    #[test]
    fn message_matches_move_vector() {
        let msg = anchor_message(cluster(), 42, &[0xab; 32], 1_770_065_100_000);
        assert_eq!(hex::encode(msg), MESSAGE);
    }

    #[test]
    fn signature_matches_move_vector_and_verifies() {
        use ring::signature::KeyPair;
        let key = Ed25519KeyPair::from_seed_unchecked(&SEED).unwrap();
        assert_eq!(hex::encode(key.public_key().as_ref()), PUBLIC_KEY);
        let anchor = SignedAnchor::sign(&key, cluster(), 42, [0xab; 32], 1_770_065_100_000);
        assert_eq!(hex::encode(anchor.signature), SIGNATURE);
        let mut pk = [0u8; 32];
        pk.copy_from_slice(key.public_key().as_ref());
        assert!(verify_anchor_signature(&pk, cluster(), &anchor));
        let other_cluster: Address = "0xc2".parse().unwrap();
        assert!(!verify_anchor_signature(&pk, other_cluster, &anchor));
        let mut bumped = anchor;
        bumped.revision = 43;
        assert!(!verify_anchor_signature(&pk, cluster(), &bumped));
    }
}
