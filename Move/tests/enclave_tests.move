// Copyright (c) K3s-DaaS authors
// SPDX-License-Identifier: Apache-2.0

// `enclave::EMissingPcr` is raised only while reading a `NitroAttestationDocument`, which only
// the native verifier can construct (it always carries PCR0..2), so no unit test reaches it.
#[test_only]
module k3s_daas::enclave_tests;

use k3s_daas::cluster::{AdminCap, Cluster};
use k3s_daas::enclave;
use k3s_daas::test_helpers::{
    setup,
    finish,
    pcr,
    enclave_key,
    other_key,
    tls_digest,
    digest,
    register_v1,
    now_ms,
    max_age_ms
};
use sui::test_scenario::{Self as ts};

#[test]
fun register_records_live_enclave() {
    let (mut scenario, clock, cluster_id, _cap_id) = setup();
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    register_v1(&mut cluster, enclave_key(), now_ms() - 1_000, &clock, &mut scenario);
    let live = cluster.live_enclave().borrow();
    assert!(*live.enclave_anchor_key() == enclave_key());
    assert!(*live.enclave_tls_key_digest() == tls_digest());
    assert!(live.enclave_image_version() == 1);
    assert!(live.enclave_document_timestamp_ms() == now_ms() - 1_000);
    assert!(*live.enclave_document_digest() == digest());
    assert!(*live.enclave_pcrs().pcr2() == pcr(0x13));
    ts::return_shared(cluster);
    finish(scenario, clock);
}

#[test]
fun register_accepts_document_exactly_at_freshness_bound() {
    let (mut scenario, clock, cluster_id, _cap_id) = setup();
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    register_v1(&mut cluster, enclave_key(), now_ms() - max_age_ms(), &clock, &mut scenario);
    assert!(cluster.live_enclave().is_some());
    ts::return_shared(cluster);
    finish(scenario, clock);
}

#[test]
fun newer_registration_replaces_live_enclave() {
    let (mut scenario, mut clock, cluster_id, _cap_id) = setup();
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    register_v1(&mut cluster, enclave_key(), now_ms() - 1_000, &clock, &mut scenario);
    clock.increment_for_testing(10_000);
    register_v1(&mut cluster, other_key(), now_ms() + 5_000, &clock, &mut scenario);
    assert!(*cluster.live_enclave().borrow().enclave_anchor_key() == other_key());
    ts::return_shared(cluster);
    finish(scenario, clock);
}

#[test]
fun registration_under_a_second_image_records_its_version() {
    let (mut scenario, clock, cluster_id, cap_id) = setup();
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    let cap = scenario.take_from_sender_by_id<AdminCap>(cap_id);
    cluster.allow_image(&cap, pcr(0x21), pcr(0x22), pcr(0x23), b"v2".to_string(), 2);
    enclave::register_for_testing(
        &mut cluster,
        pcr(0x21),
        pcr(0x22),
        pcr(0x23),
        option::some(tls_digest()),
        option::some(enclave_key()),
        now_ms(),
        digest(),
        &clock,
        scenario.ctx(),
    );
    assert!(cluster.live_enclave().borrow().enclave_image_version() == 2);
    scenario.return_to_sender(cap);
    ts::return_shared(cluster);
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = enclave::EDebugEnclave)]
fun register_rejects_debug_pcrs() {
    let (mut scenario, clock, cluster_id, _cap_id) = setup();
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    enclave::register_for_testing(
        &mut cluster,
        pcr(0),
        pcr(0),
        pcr(0),
        option::some(tls_digest()),
        option::some(enclave_key()),
        now_ms(),
        digest(),
        &clock,
        scenario.ctx(),
    );
    abort 99
}

#[test, expected_failure(abort_code = enclave::EPcrsNotAllowed)]
fun register_rejects_unknown_pcrs() {
    let (mut scenario, clock, cluster_id, _cap_id) = setup();
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    enclave::register_for_testing(
        &mut cluster,
        pcr(0x11),
        pcr(0x12),
        pcr(0x99),
        option::some(tls_digest()),
        option::some(enclave_key()),
        now_ms(),
        digest(),
        &clock,
        scenario.ctx(),
    );
    abort 99
}

#[test, expected_failure(abort_code = enclave::EPcrsNotAllowed)]
fun register_rejects_retired_image() {
    let (mut scenario, clock, cluster_id, cap_id) = setup();
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    let cap = scenario.take_from_sender_by_id<AdminCap>(cap_id);
    cluster.retire_image(&cap, 1);
    register_v1(&mut cluster, enclave_key(), now_ms(), &clock, &mut scenario);
    abort 99
}

#[test, expected_failure(abort_code = enclave::EMissingPublicKey)]
fun register_rejects_missing_public_key() {
    let (mut scenario, clock, cluster_id, _cap_id) = setup();
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    enclave::register_for_testing(
        &mut cluster,
        pcr(0x11),
        pcr(0x12),
        pcr(0x13),
        option::none(),
        option::some(enclave_key()),
        now_ms(),
        digest(),
        &clock,
        scenario.ctx(),
    );
    abort 99
}

#[test, expected_failure(abort_code = enclave::EBadPublicKey)]
fun register_rejects_public_key_of_wrong_length() {
    let (mut scenario, clock, cluster_id, _cap_id) = setup();
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    enclave::register_for_testing(
        &mut cluster,
        pcr(0x11),
        pcr(0x12),
        pcr(0x13),
        option::some(x"0102030405"),
        option::some(enclave_key()),
        now_ms(),
        digest(),
        &clock,
        scenario.ctx(),
    );
    abort 99
}

#[test, expected_failure(abort_code = enclave::EMissingAnchorKey)]
fun register_rejects_missing_anchor_key() {
    let (mut scenario, clock, cluster_id, _cap_id) = setup();
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    enclave::register_for_testing(
        &mut cluster,
        pcr(0x11),
        pcr(0x12),
        pcr(0x13),
        option::some(tls_digest()),
        option::none(),
        now_ms(),
        digest(),
        &clock,
        scenario.ctx(),
    );
    abort 99
}

#[test, expected_failure(abort_code = enclave::EBadAnchorKey)]
fun register_rejects_anchor_key_of_wrong_length() {
    let (mut scenario, clock, cluster_id, _cap_id) = setup();
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    register_v1(&mut cluster, x"0102030405", now_ms(), &clock, &mut scenario);
    abort 99
}

#[test, expected_failure(abort_code = enclave::EDocumentTooOld)]
fun register_rejects_stale_document() {
    let (mut scenario, clock, cluster_id, _cap_id) = setup();
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    register_v1(&mut cluster, enclave_key(), now_ms() - max_age_ms() - 1, &clock, &mut scenario);
    abort 99
}

#[test, expected_failure(abort_code = enclave::EDocumentFromFuture)]
fun register_rejects_document_from_the_future() {
    let (mut scenario, clock, cluster_id, _cap_id) = setup();
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    register_v1(&mut cluster, enclave_key(), now_ms() + 60_001, &clock, &mut scenario);
    abort 99
}

#[test, expected_failure(abort_code = enclave::ENotNewer)]
fun register_rejects_document_not_newer_than_live() {
    let (mut scenario, clock, cluster_id, _cap_id) = setup();
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    register_v1(&mut cluster, enclave_key(), now_ms() - 1_000, &clock, &mut scenario);
    register_v1(&mut cluster, other_key(), now_ms() - 1_000, &clock, &mut scenario);
    abort 99
}
