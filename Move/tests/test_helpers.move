// Copyright (c) K3s-DaaS authors
// SPDX-License-Identifier: Apache-2.0

/// Shared fixtures for the package's unit tests.
#[test_only]
module k3s_daas::test_helpers;

use k3s_daas::cluster::{Self, AdminCap, Cluster};
use k3s_daas::enclave;
use sui::clock::{Self, Clock};
use sui::test_scenario::{Self as ts, Scenario};

/// The cluster admin.
public fun admin(): address { @0xAD }

/// A worker that stakes.
public fun worker(): address { @0xB0 }

/// Someone with no rights.
public fun stranger(): address { @0xEE }

/// Minimum stake of the test cluster: 1 SUI.
public fun min_stake(): u64 { 1_000_000_000 }

/// Unstake cool-down of the test cluster: one day.
public fun cooldown_ms(): u64 { 86_400_000 }

/// Freshness bound of the test cluster: five minutes.
public fun max_age_ms(): u64 { 300_000 }

/// Clock time at the start of every scenario.
public fun now_ms(): u64 { 1_770_065_100_000 }

/// A 48-byte PCR made of one repeated byte.
public fun pcr(byte: u8): vector<u8> {
    let mut value = vector[];
    let mut i = 0;
    while (i < 48) {
        value.push_back(byte);
        i = i + 1;
    };
    value
}

/// The Ed25519 public key of seed 01..20 (the key behind `anchor_tests`' signature vector).
public fun enclave_key(): vector<u8> {
    x"79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664"
}

/// A second 32-byte key, for replacement tests.
public fun other_key(): vector<u8> {
    x"1111111111111111111111111111111111111111111111111111111111111111"
}

/// SHA-256 of a TLS SubjectPublicKeyInfo (the document's `public_key`).
public fun tls_digest(): vector<u8> {
    x"5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e"
}

/// A document digest placeholder.
public fun digest(): vector<u8> {
    x"d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1"
}

/// Begins a scenario as the admin, creates a cluster that allows image v1 (PCR bytes 11/12/13),
/// and returns the scenario (in a fresh admin transaction), a clock at `now_ms` and the IDs of
/// the cluster and its capability.
public fun setup(): (Scenario, Clock, ID, ID) {
    let mut scenario = ts::begin(admin());
    let (cluster_id, cap_id) = new_cluster(&mut scenario);
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    let cap = scenario.take_from_sender_by_id<AdminCap>(cap_id);
    cluster.allow_image(&cap, pcr(0x11), pcr(0x12), pcr(0x13), b"v1".to_string(), 1);
    scenario.return_to_sender(cap);
    ts::return_shared(cluster);
    let mut clock = clock::create_for_testing(scenario.ctx());
    clock.set_for_testing(now_ms());
    scenario.next_tx(admin());
    (scenario, clock, cluster_id, cap_id)
}

/// Creates a cluster with the test settings, gives the cap to the admin, moves to the next
/// admin transaction and returns (cluster ID, cap ID).
public fun new_cluster(scenario: &mut Scenario): (ID, ID) {
    let cap = cluster::create(
        b"test".to_string(),
        min_stake(),
        cooldown_ms(),
        max_age_ms(),
        scenario.ctx(),
    );
    let cluster_id = cap.cap_cluster_id();
    let cap_id = object::id(&cap);
    transfer::public_transfer(cap, admin());
    scenario.next_tx(admin());
    (cluster_id, cap_id)
}

/// Registers `key` as the live enclave of image v1 with a document made at `timestamp_ms`.
public fun register_v1(
    cluster: &mut Cluster,
    key: vector<u8>,
    timestamp_ms: u64,
    clock: &Clock,
    scenario: &mut Scenario,
) {
    enclave::register_for_testing(
        cluster,
        pcr(0x11),
        pcr(0x12),
        pcr(0x13),
        option::some(tls_digest()),
        option::some(key),
        timestamp_ms,
        digest(),
        clock,
        scenario.ctx(),
    );
}

/// Destroys the clock and ends the scenario.
public fun finish(scenario: Scenario, clock: Clock) {
    clock.destroy_for_testing();
    scenario.end();
}
