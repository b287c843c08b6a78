// Copyright (c) K3s-DaaS authors
// SPDX-License-Identifier: Apache-2.0

/// State anchors: the live enclave vouches for (revision, journal chain hash) by signing an
/// intent message with the Ed25519 key its attestation document carried (the Nautilus pattern).
/// Anchors only move forward, so a host that replays an old journal is caught on boot.
///
/// Signed bytes: `bcs(IntentMessage { intent: 1, timestamp_ms, payload: AnchorPayload {
/// cluster_id, revision, chain_hash } })`, i.e. `01 || u64le(timestamp_ms) || cluster_id (32) ||
/// u64le(revision) || uleb128(len) || chain_hash`.
module k3s_daas::anchor;

use k3s_daas::cluster::Cluster;
use std::bcs;
use sui::clock::Clock;
use sui::ed25519;
use sui::event;

/// Intent scope of anchor messages.
const ANCHOR_INTENT: u8 = 1;
/// Length of a journal chain hash (SHA-256).
const CHAIN_HASH_LENGTH: u64 = 32;

/// No enclave is live, so nobody can anchor.
const ENoLiveEnclave: u64 = 0;
/// The signature does not verify under the live enclave's key.
const EBadSignature: u64 = 1;
/// The revision is not greater than the latest anchor's.
const ENotMonotonic: u64 = 2;
/// The chain hash is not 32 bytes.
const EBadChainHash: u64 = 3;
/// The live enclave's image has been retired.
const EImageRetired: u64 = 4;

/// Envelope of every message an enclave signs (same layout as Nautilus's `IntentMessage`).
public struct IntentMessage<T: drop> has copy, drop {
    intent: u8,
    timestamp_ms: u64,
    payload: T,
}

/// What an anchor signature covers.
public struct AnchorPayload has copy, drop {
    cluster_id: ID,
    revision: u64,
    chain_hash: vector<u8>,
}

/// Emitted by `record_anchor`.
public struct AnchorRecorded has copy, drop {
    cluster_id: ID,
    revision: u64,
    chain_hash: vector<u8>,
    timestamp_ms: u64,
    enclave_key: vector<u8>,
}

/// Records an anchor signed by the live enclave.
///
/// Aborts with `EBadChainHash`, `ENoLiveEnclave`, `EImageRetired`, `EBadSignature` or
/// `ENotMonotonic`.
public fun record_anchor(
    cluster: &mut Cluster,
    revision: u64,
    chain_hash: vector<u8>,
    timestamp_ms: u64,
    signature: vector<u8>,
    clock: &Clock,
) {
    assert!(chain_hash.length() == CHAIN_HASH_LENGTH, EBadChainHash);
    let live = cluster.live_enclave();
    assert!(live.is_some(), ENoLiveEnclave);
    let enclave = *live.borrow();
    assert!(cluster.is_image_allowed(enclave.enclave_image_version()), EImageRetired);
    let message = anchor_message(object::id(cluster), revision, chain_hash, timestamp_ms);
    assert!(
        ed25519::ed25519_verify(&signature, enclave.enclave_anchor_key(), &message),
        EBadSignature,
    );
    record(
        cluster,
        revision,
        chain_hash,
        timestamp_ms,
        signature,
        *enclave.enclave_anchor_key(),
        clock,
    );
}

/// The state rules of `record_anchor` after the signature check. Test scenarios cannot choose
/// the cluster's object ID, so they cannot carry a precomputed signature over it; the signature
/// check itself is covered by `verify_anchor_signature` tests on a fixed ID.
#[test_only]
public fun record_for_testing(
    cluster: &mut Cluster,
    revision: u64,
    chain_hash: vector<u8>,
    timestamp_ms: u64,
    clock: &Clock,
) {
    assert!(chain_hash.length() == CHAIN_HASH_LENGTH, EBadChainHash);
    let live = cluster.live_enclave();
    assert!(live.is_some(), ENoLiveEnclave);
    let enclave = *live.borrow();
    assert!(cluster.is_image_allowed(enclave.enclave_image_version()), EImageRetired);
    record(cluster, revision, chain_hash, timestamp_ms, vector[], *enclave.enclave_anchor_key(), clock);
}

/// The BCS bytes an enclave signs for an anchor.
public fun anchor_message(
    cluster_id: ID,
    revision: u64,
    chain_hash: vector<u8>,
    timestamp_ms: u64,
): vector<u8> {
    bcs::to_bytes(&IntentMessage {
        intent: ANCHOR_INTENT,
        timestamp_ms,
        payload: AnchorPayload { cluster_id, revision, chain_hash },
    })
}

/// True when `signature` is `public_key`'s Ed25519 signature over the anchor message.
public fun verify_anchor_signature(
    public_key: &vector<u8>,
    cluster_id: ID,
    revision: u64,
    chain_hash: vector<u8>,
    timestamp_ms: u64,
    signature: &vector<u8>,
): bool {
    let message = anchor_message(cluster_id, revision, chain_hash, timestamp_ms);
    ed25519::ed25519_verify(signature, public_key, &message)
}

fun record(
    cluster: &mut Cluster,
    revision: u64,
    chain_hash: vector<u8>,
    timestamp_ms: u64,
    signature: vector<u8>,
    enclave_key: vector<u8>,
    clock: &Clock,
) {
    let latest = cluster.latest_anchor();
    if (latest.is_some()) {
        assert!(revision > latest.borrow().anchor_revision(), ENotMonotonic);
    };
    cluster.set_latest_anchor(
        k3s_daas::cluster::new_anchor(
            revision,
            chain_hash,
            timestamp_ms,
            clock.timestamp_ms(),
            signature,
        ),
    );
    event::emit(AnchorRecorded {
        cluster_id: object::id(cluster),
        revision,
        chain_hash,
        timestamp_ms,
        enclave_key,
    });
}
