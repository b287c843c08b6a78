// Copyright (c) K3s-DaaS authors
// SPDX-License-Identifier: Apache-2.0

#[test_only]
module k3s_daas::cluster_tests;

use k3s_daas::cluster::{Self, AdminCap, Cluster};
use k3s_daas::test_helpers::{admin, setup, finish, new_cluster, pcr, min_stake, max_age_ms};
use sui::test_scenario::{Self as ts};

#[test]
fun create_shares_cluster_with_settings_and_cap() {
    let (mut scenario, clock, cluster_id, cap_id) = setup();
    let cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    let cap = scenario.take_from_sender_by_id<AdminCap>(cap_id);
    assert!(cap.cap_cluster_id() == cluster_id);
    assert!(*cluster.name() == b"test".to_string());
    assert!(cluster.min_stake() == min_stake());
    assert!(cluster.max_document_age_ms() == max_age_ms());
    assert!(cluster.live_enclave().is_none());
    assert!(cluster.latest_anchor().is_none());
    assert!(cluster.stake_count() == 0);
    assert!(cluster.images().length() == 1);
    let image = cluster.images().borrow(0);
    assert!(image.image_version() == 1);
    assert!(*image.image_label() == b"v1".to_string());
    assert!(*image.image_pcrs().pcr0() == pcr(0x11));
    scenario.return_to_sender(cap);
    ts::return_shared(cluster);
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = cluster::EBadSettings)]
fun create_rejects_zero_min_stake() {
    let mut scenario = ts::begin(admin());
    let cap = cluster::create(b"c".to_string(), 0, 1, 1, scenario.ctx());
    transfer::public_transfer(cap, admin());
    scenario.end();
}

#[test, expected_failure(abort_code = cluster::EBadSettings)]
fun create_rejects_zero_document_age() {
    let mut scenario = ts::begin(admin());
    let cap = cluster::create(b"c".to_string(), 1, 1, 0, scenario.ctx());
    transfer::public_transfer(cap, admin());
    scenario.end();
}

#[test, expected_failure(abort_code = cluster::EBadSettings)]
fun create_rejects_document_age_over_three_hours() {
    let mut scenario = ts::begin(admin());
    let cap = cluster::create(b"c".to_string(), 1, 1, 3 * 60 * 60 * 1000 + 1, scenario.ctx());
    transfer::public_transfer(cap, admin());
    scenario.end();
}

#[test]
fun allow_then_retire_image() {
    let (mut scenario, clock, cluster_id, cap_id) = setup();
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    let cap = scenario.take_from_sender_by_id<AdminCap>(cap_id);
    cluster.allow_image(&cap, pcr(0x21), pcr(0x22), pcr(0x23), b"v2".to_string(), 2);
    assert!(cluster.images().length() == 2);
    let v2 = cluster::new_pcrs(pcr(0x21), pcr(0x22), pcr(0x23));
    assert!(cluster.image_version_for(&v2) == option::some(2));
    cluster.retire_image(&cap, 1);
    assert!(!cluster.is_image_allowed(1));
    assert!(cluster.is_image_allowed(2));
    assert!(cluster.images().length() == 1);
    scenario.return_to_sender(cap);
    ts::return_shared(cluster);
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = cluster::ENotAdmin)]
fun allow_image_rejects_other_clusters_cap() {
    let (mut scenario, _clock, cluster_id, _cap_id) = setup();
    let (_other_id, other_cap_id) = new_cluster(&mut scenario);
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    let other_cap = scenario.take_from_sender_by_id<AdminCap>(other_cap_id);
    cluster.allow_image(&other_cap, pcr(0x21), pcr(0x22), pcr(0x23), b"v2".to_string(), 2);
    abort 99
}

#[test, expected_failure(abort_code = cluster::ENotAdmin)]
fun retire_image_rejects_other_clusters_cap() {
    let (mut scenario, _clock, cluster_id, _cap_id) = setup();
    let (_other_id, other_cap_id) = new_cluster(&mut scenario);
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    let other_cap = scenario.take_from_sender_by_id<AdminCap>(other_cap_id);
    cluster.retire_image(&other_cap, 1);
    abort 99
}

#[test, expected_failure(abort_code = cluster::ENotAdmin)]
fun withdraw_slashed_rejects_other_clusters_cap() {
    let (mut scenario, _clock, cluster_id, _cap_id) = setup();
    let (_other_id, other_cap_id) = new_cluster(&mut scenario);
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    let other_cap = scenario.take_from_sender_by_id<AdminCap>(other_cap_id);
    let coin = cluster.withdraw_slashed(&other_cap, scenario.ctx());
    transfer::public_transfer(coin, admin());
    abort 99
}

#[test, expected_failure(abort_code = cluster::EBadPcrLength)]
fun allow_image_rejects_short_pcr() {
    let (mut scenario, _clock, cluster_id, cap_id) = setup();
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    let cap = scenario.take_from_sender_by_id<AdminCap>(cap_id);
    cluster.allow_image(&cap, x"0102", pcr(0x22), pcr(0x23), b"v2".to_string(), 2);
    abort 99
}

#[test, expected_failure(abort_code = cluster::EDebugPcrs)]
fun allow_image_rejects_debug_pcrs() {
    let (mut scenario, _clock, cluster_id, cap_id) = setup();
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    let cap = scenario.take_from_sender_by_id<AdminCap>(cap_id);
    cluster.allow_image(&cap, pcr(0), pcr(0), pcr(0), b"debug".to_string(), 2);
    abort 99
}

#[test, expected_failure(abort_code = cluster::EVersionExists)]
fun allow_image_rejects_duplicate_version() {
    let (mut scenario, _clock, cluster_id, cap_id) = setup();
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    let cap = scenario.take_from_sender_by_id<AdminCap>(cap_id);
    cluster.allow_image(&cap, pcr(0x21), pcr(0x22), pcr(0x23), b"v1 again".to_string(), 1);
    abort 99
}

#[test, expected_failure(abort_code = cluster::EImageExists)]
fun allow_image_rejects_duplicate_pcrs() {
    let (mut scenario, _clock, cluster_id, cap_id) = setup();
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    let cap = scenario.take_from_sender_by_id<AdminCap>(cap_id);
    cluster.allow_image(&cap, pcr(0x11), pcr(0x12), pcr(0x13), b"same".to_string(), 2);
    abort 99
}

#[test, expected_failure(abort_code = cluster::EImageNotFound)]
fun retire_image_rejects_unknown_version() {
    let (mut scenario, _clock, cluster_id, cap_id) = setup();
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    let cap = scenario.take_from_sender_by_id<AdminCap>(cap_id);
    cluster.retire_image(&cap, 7);
    abort 99
}
