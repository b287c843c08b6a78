// Copyright (c) K3s-DaaS authors
// SPDX-License-Identifier: Apache-2.0

#[test_only]
module k3s_daas::anchor_tests;

use k3s_daas::anchor;
use k3s_daas::cluster::{AdminCap, Cluster};
use k3s_daas::test_helpers::{setup, finish, enclave_key, other_key, register_v1, now_ms};
use sui::test_scenario::{Self as ts};

// Test vector shared with `chain/src/anchor.rs`: Ed25519 seed 01..20, cluster 0xc1,
// revision 42, chain hash ab x 32, timestamp 1770065100000.
const CHAIN_HASH: vector<u8> = x"abababababababababababababababababababababababababababababababab";
const MESSAGE: vector<u8> =
    x"01e0fc19209c01000000000000000000000000000000000000000000000000000000000000000000c12a0000000000000020abababababababababababababababababababababababababababababababab";
const SIGNATURE: vector<u8> =
    x"4debd58bcf7b5dee8def4c6a918066d12995e0ceee14509777cc8965f82315e6392b5ae3c930447e46d3ce6f236ffcd21deeb3960867a84a79ba222c2cd4140c";
const TIMESTAMP: u64 = 1770065100000;

fun vector_cluster(): ID { object::id_from_address(@0xc1) }

#[test]
fun anchor_message_layout_matches_vector() {
    assert!(anchor::anchor_message(vector_cluster(), 42, CHAIN_HASH, TIMESTAMP) == MESSAGE);
}

#[test]
fun signature_vector_verifies() {
    assert!(
        anchor::verify_anchor_signature(
            &enclave_key(),
            vector_cluster(),
            42,
            CHAIN_HASH,
            TIMESTAMP,
            &SIGNATURE,
        ),
    );
}

#[test]
fun signature_does_not_verify_for_other_revision_cluster_or_key() {
    let key = enclave_key();
    assert!(
        !anchor::verify_anchor_signature(&key, vector_cluster(), 43, CHAIN_HASH, TIMESTAMP, &SIGNATURE),
    );
    assert!(
        !anchor::verify_anchor_signature(
            &key,
            object::id_from_address(@0xc2),
            42,
            CHAIN_HASH,
            TIMESTAMP,
            &SIGNATURE,
        ),
    );
    assert!(
        !anchor::verify_anchor_signature(
            &other_key(),
            vector_cluster(),
            42,
            CHAIN_HASH,
            TIMESTAMP,
            &SIGNATURE,
        ),
    );
}

#[test]
fun anchors_increase_and_survive_enclave_replacement() {
    let (mut scenario, mut clock, cluster_id, _cap_id) = setup();
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    register_v1(&mut cluster, enclave_key(), now_ms(), &clock, &mut scenario);
    anchor::record_for_testing(&mut cluster, 10, CHAIN_HASH, now_ms(), &clock);
    anchor::record_for_testing(&mut cluster, 11, CHAIN_HASH, now_ms(), &clock);
    clock.increment_for_testing(1_000);
    register_v1(&mut cluster, other_key(), now_ms() + 1_000, &clock, &mut scenario);
    anchor::record_for_testing(&mut cluster, 12, CHAIN_HASH, now_ms() + 1_000, &clock);
    let latest = cluster.latest_anchor().borrow();
    assert!(latest.anchor_revision() == 12);
    assert!(*latest.anchor_chain_hash() == CHAIN_HASH);
    ts::return_shared(cluster);
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = anchor::EBadSignature)]
fun record_anchor_rejects_bad_signature() {
    let (mut scenario, clock, cluster_id, _cap_id) = setup();
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    register_v1(&mut cluster, enclave_key(), now_ms(), &clock, &mut scenario);
    // Signed for cluster 0xc1, not for this cluster: must not verify.
    anchor::record_anchor(&mut cluster, 42, CHAIN_HASH, TIMESTAMP, SIGNATURE, &clock);
    abort 99
}

#[test, expected_failure(abort_code = anchor::ENoLiveEnclave)]
fun record_anchor_requires_live_enclave() {
    let (mut scenario, clock, cluster_id, _cap_id) = setup();
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    anchor::record_anchor(&mut cluster, 42, CHAIN_HASH, TIMESTAMP, SIGNATURE, &clock);
    abort 99
}

#[test, expected_failure(abort_code = anchor::EBadChainHash)]
fun record_anchor_rejects_short_chain_hash() {
    let (mut scenario, clock, cluster_id, _cap_id) = setup();
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    register_v1(&mut cluster, enclave_key(), now_ms(), &clock, &mut scenario);
    anchor::record_anchor(&mut cluster, 42, x"abab", TIMESTAMP, SIGNATURE, &clock);
    abort 99
}

#[test, expected_failure(abort_code = anchor::EImageRetired)]
fun record_anchor_rejects_enclave_of_retired_image() {
    let (mut scenario, clock, cluster_id, cap_id) = setup();
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    let cap = scenario.take_from_sender_by_id<AdminCap>(cap_id);
    register_v1(&mut cluster, enclave_key(), now_ms(), &clock, &mut scenario);
    cluster.retire_image(&cap, 1);
    anchor::record_anchor(&mut cluster, 42, CHAIN_HASH, TIMESTAMP, SIGNATURE, &clock);
    abort 99
}

#[test, expected_failure(abort_code = anchor::ENotMonotonic)]
fun record_rejects_equal_revision() {
    let (mut scenario, clock, cluster_id, _cap_id) = setup();
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    register_v1(&mut cluster, enclave_key(), now_ms(), &clock, &mut scenario);
    anchor::record_for_testing(&mut cluster, 10, CHAIN_HASH, now_ms(), &clock);
    anchor::record_for_testing(&mut cluster, 10, CHAIN_HASH, now_ms(), &clock);
    abort 99
}

#[test, expected_failure(abort_code = anchor::ENotMonotonic)]
fun record_rejects_lower_revision() {
    let (mut scenario, clock, cluster_id, _cap_id) = setup();
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    register_v1(&mut cluster, enclave_key(), now_ms(), &clock, &mut scenario);
    anchor::record_for_testing(&mut cluster, 10, CHAIN_HASH, now_ms(), &clock);
    anchor::record_for_testing(&mut cluster, 9, CHAIN_HASH, now_ms(), &clock);
    abort 99
}
