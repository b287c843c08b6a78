// Copyright (c) K3s-DaaS authors
// SPDX-License-Identifier: Apache-2.0

#[test_only]
module k3s_daas::stake_tests;

use k3s_daas::cluster::{Self, AdminCap, Cluster};
use k3s_daas::stake::{Self, Stake};
use k3s_daas::test_helpers::{
    admin,
    worker,
    stranger,
    setup,
    finish,
    new_cluster,
    min_stake,
    cooldown_ms
};
use std::string::String;
use sui::clock::Clock;
use sui::coin;
use sui::sui::SUI;
use sui::test_scenario::{Self as ts, Scenario};

/// As the worker, stakes `amount` for `node_name` and moves to a new worker transaction.
fun stake_as_worker(
    scenario: &mut Scenario,
    cluster_id: ID,
    node_name: String,
    amount: u64,
    clock: &Clock,
) {
    scenario.next_tx(worker());
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    let coin = coin::mint_for_testing<SUI>(amount, scenario.ctx());
    stake::stake(&mut cluster, node_name, coin, clock, scenario.ctx());
    ts::return_shared(cluster);
    scenario.next_tx(worker());
}

#[test]
fun stake_request_and_withdraw_after_cooldown() {
    let (mut scenario, mut clock, cluster_id, _cap_id) = setup();
    stake_as_worker(&mut scenario, cluster_id, b"node-a".to_string(), min_stake(), &clock);
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    let mut stake = scenario.take_shared<Stake>();
    assert!(cluster.stake_of(&b"node-a".to_string()) == option::some(object::id(&stake)));
    assert!(stake.is_active(&cluster));
    assert!(stake.owner() == worker());
    assert!(stake.amount() == min_stake());
    assert!(*stake.node_name() == b"node-a".to_string());
    assert!(stake.cluster_id() == cluster_id);

    stake.request_unstake(&cluster, &clock, scenario.ctx());
    assert!(!stake.is_active(&cluster));
    assert!(stake.unstake_requested_at_ms() == option::some(clock.timestamp_ms()));
    clock.increment_for_testing(cooldown_ms());
    let coin = stake.withdraw(&mut cluster, &clock, scenario.ctx());
    assert!(coin.burn_for_testing() == min_stake());
    assert!(cluster.stake_of(&b"node-a".to_string()).is_none());
    assert!(cluster.stake_count() == 0);
    ts::return_shared(cluster);
    finish(scenario, clock);
}

#[test]
fun node_name_is_free_again_after_withdraw() {
    let (mut scenario, mut clock, cluster_id, _cap_id) = setup();
    stake_as_worker(&mut scenario, cluster_id, b"node-a".to_string(), min_stake(), &clock);
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    let mut stake = scenario.take_shared<Stake>();
    stake.request_unstake(&cluster, &clock, scenario.ctx());
    clock.increment_for_testing(cooldown_ms());
    stake.withdraw(&mut cluster, &clock, scenario.ctx()).burn_for_testing();
    ts::return_shared(cluster);
    stake_as_worker(&mut scenario, cluster_id, b"node-a".to_string(), min_stake(), &clock);
    let cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    assert!(cluster.stake_count() == 1);
    ts::return_shared(cluster);
    finish(scenario, clock);
}

#[test]
fun admin_slashes_into_cluster_balance_and_withdraws_it() {
    let (mut scenario, clock, cluster_id, cap_id) = setup();
    stake_as_worker(&mut scenario, cluster_id, b"node-a".to_string(), 3 * min_stake(), &clock);
    scenario.next_tx(admin());
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    let mut stake = scenario.take_shared<Stake>();
    let cap = scenario.take_from_sender_by_id<AdminCap>(cap_id);
    stake::slash(&mut cluster, &cap, &mut stake, 2 * min_stake() + 1);
    assert!(stake.amount() == min_stake() - 1);
    assert!(!stake.is_active(&cluster));
    assert!(cluster.slashed_value() == 2 * min_stake() + 1);
    let slashed = cluster.withdraw_slashed(&cap, scenario.ctx());
    assert!(slashed.burn_for_testing() == 2 * min_stake() + 1);
    assert!(cluster.slashed_value() == 0);
    scenario.return_to_sender(cap);
    ts::return_shared(stake);
    ts::return_shared(cluster);
    finish(scenario, clock);
}

#[test, expected_failure(abort_code = stake::EBelowMinimum)]
fun stake_rejects_amount_below_minimum() {
    let (mut scenario, clock, cluster_id, _cap_id) = setup();
    stake_as_worker(&mut scenario, cluster_id, b"node-a".to_string(), min_stake() - 1, &clock);
    abort 99
}

#[test, expected_failure(abort_code = stake::ENodeNameTaken)]
fun stake_rejects_taken_node_name() {
    let (mut scenario, clock, cluster_id, _cap_id) = setup();
    stake_as_worker(&mut scenario, cluster_id, b"node-a".to_string(), min_stake(), &clock);
    stake_as_worker(&mut scenario, cluster_id, b"node-a".to_string(), min_stake(), &clock);
    abort 99
}

#[test, expected_failure(abort_code = stake::EBadNodeName)]
fun stake_rejects_empty_node_name() {
    let (mut scenario, clock, cluster_id, _cap_id) = setup();
    stake_as_worker(&mut scenario, cluster_id, b"".to_string(), min_stake(), &clock);
    abort 99
}

#[test, expected_failure(abort_code = stake::EBadNodeName)]
fun stake_rejects_node_name_over_253_bytes() {
    let (mut scenario, clock, cluster_id, _cap_id) = setup();
    let mut name = vector[];
    let mut i = 0;
    while (i < 254) {
        name.push_back(0x61);
        i = i + 1;
    };
    stake_as_worker(&mut scenario, cluster_id, name.to_string(), min_stake(), &clock);
    abort 99
}

#[test, expected_failure(abort_code = stake::ENotOwner)]
fun request_unstake_rejects_non_owner() {
    let (mut scenario, clock, cluster_id, _cap_id) = setup();
    stake_as_worker(&mut scenario, cluster_id, b"node-a".to_string(), min_stake(), &clock);
    scenario.next_tx(stranger());
    let cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    let mut stake = scenario.take_shared<Stake>();
    stake.request_unstake(&cluster, &clock, scenario.ctx());
    abort 99
}

#[test, expected_failure(abort_code = stake::EWrongCluster)]
fun request_unstake_rejects_other_cluster() {
    let (mut scenario, clock, cluster_id, _cap_id) = setup();
    stake_as_worker(&mut scenario, cluster_id, b"node-a".to_string(), min_stake(), &clock);
    let (other_id, _other_cap) = new_cluster(&mut scenario);
    scenario.next_tx(worker());
    let other = scenario.take_shared_by_id<Cluster>(other_id);
    let mut stake = scenario.take_shared<Stake>();
    stake.request_unstake(&other, &clock, scenario.ctx());
    abort 99
}

#[test, expected_failure(abort_code = stake::EAlreadyUnstaking)]
fun request_unstake_twice_fails() {
    let (mut scenario, clock, cluster_id, _cap_id) = setup();
    stake_as_worker(&mut scenario, cluster_id, b"node-a".to_string(), min_stake(), &clock);
    let cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    let mut stake = scenario.take_shared<Stake>();
    stake.request_unstake(&cluster, &clock, scenario.ctx());
    stake.request_unstake(&cluster, &clock, scenario.ctx());
    abort 99
}

#[test, expected_failure(abort_code = stake::ENotUnstaking)]
fun withdraw_without_request_fails() {
    let (mut scenario, clock, cluster_id, _cap_id) = setup();
    stake_as_worker(&mut scenario, cluster_id, b"node-a".to_string(), min_stake(), &clock);
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    let stake = scenario.take_shared<Stake>();
    stake.withdraw(&mut cluster, &clock, scenario.ctx()).burn_for_testing();
    abort 99
}

#[test, expected_failure(abort_code = stake::ECooldownNotOver)]
fun withdraw_before_cooldown_fails() {
    let (mut scenario, mut clock, cluster_id, _cap_id) = setup();
    stake_as_worker(&mut scenario, cluster_id, b"node-a".to_string(), min_stake(), &clock);
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    let mut stake = scenario.take_shared<Stake>();
    stake.request_unstake(&cluster, &clock, scenario.ctx());
    clock.increment_for_testing(cooldown_ms() - 1);
    stake.withdraw(&mut cluster, &clock, scenario.ctx()).burn_for_testing();
    abort 99
}

#[test, expected_failure(abort_code = stake::ENotOwner)]
fun withdraw_rejects_non_owner() {
    let (mut scenario, mut clock, cluster_id, _cap_id) = setup();
    stake_as_worker(&mut scenario, cluster_id, b"node-a".to_string(), min_stake(), &clock);
    let cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    let mut stake = scenario.take_shared<Stake>();
    stake.request_unstake(&cluster, &clock, scenario.ctx());
    ts::return_shared(stake);
    ts::return_shared(cluster);
    clock.increment_for_testing(cooldown_ms());
    scenario.next_tx(stranger());
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    let stake = scenario.take_shared<Stake>();
    stake.withdraw(&mut cluster, &clock, scenario.ctx()).burn_for_testing();
    abort 99
}

#[test, expected_failure(abort_code = stake::EWrongCluster)]
fun withdraw_rejects_other_cluster() {
    let (mut scenario, mut clock, cluster_id, _cap_id) = setup();
    stake_as_worker(&mut scenario, cluster_id, b"node-a".to_string(), min_stake(), &clock);
    let (other_id, _other_cap) = new_cluster(&mut scenario);
    scenario.next_tx(worker());
    let cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    let mut other = scenario.take_shared_by_id<Cluster>(other_id);
    let mut stake = scenario.take_shared<Stake>();
    stake.request_unstake(&cluster, &clock, scenario.ctx());
    clock.increment_for_testing(cooldown_ms());
    stake.withdraw(&mut other, &clock, scenario.ctx()).burn_for_testing();
    abort 99
}

#[test, expected_failure(abort_code = stake::EBadSlashAmount)]
fun slash_rejects_more_than_staked() {
    let (mut scenario, clock, cluster_id, cap_id) = setup();
    stake_as_worker(&mut scenario, cluster_id, b"node-a".to_string(), min_stake(), &clock);
    scenario.next_tx(admin());
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    let mut stake = scenario.take_shared<Stake>();
    let cap = scenario.take_from_sender_by_id<AdminCap>(cap_id);
    stake::slash(&mut cluster, &cap, &mut stake, min_stake() + 1);
    abort 99
}

#[test, expected_failure(abort_code = stake::EBadSlashAmount)]
fun slash_rejects_zero() {
    let (mut scenario, clock, cluster_id, cap_id) = setup();
    stake_as_worker(&mut scenario, cluster_id, b"node-a".to_string(), min_stake(), &clock);
    scenario.next_tx(admin());
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    let mut stake = scenario.take_shared<Stake>();
    let cap = scenario.take_from_sender_by_id<AdminCap>(cap_id);
    stake::slash(&mut cluster, &cap, &mut stake, 0);
    abort 99
}

#[test, expected_failure(abort_code = cluster::ENotAdmin)]
fun slash_rejects_other_clusters_cap() {
    let (mut scenario, clock, cluster_id, _cap_id) = setup();
    stake_as_worker(&mut scenario, cluster_id, b"node-a".to_string(), min_stake(), &clock);
    scenario.next_tx(admin());
    let (_other_id, other_cap_id) = new_cluster(&mut scenario);
    let mut cluster = scenario.take_shared_by_id<Cluster>(cluster_id);
    let mut stake = scenario.take_shared<Stake>();
    let cap = scenario.take_from_sender_by_id<AdminCap>(other_cap_id);
    stake::slash(&mut cluster, &cap, &mut stake, 1);
    abort 99
}

#[test, expected_failure(abort_code = stake::EWrongCluster)]
fun slash_rejects_stake_of_other_cluster() {
    let (mut scenario, clock, cluster_id, _cap_id) = setup();
    stake_as_worker(&mut scenario, cluster_id, b"node-a".to_string(), min_stake(), &clock);
    scenario.next_tx(admin());
    let (other_id, other_cap_id) = new_cluster(&mut scenario);
    let mut other = scenario.take_shared_by_id<Cluster>(other_id);
    let mut stake = scenario.take_shared<Stake>();
    let cap = scenario.take_from_sender_by_id<AdminCap>(other_cap_id);
    stake::slash(&mut other, &cap, &mut stake, 1);
    abort 99
}
