// Copyright (c) K3s-DaaS authors
// SPDX-License-Identifier: Apache-2.0

/// Worker stakes ("stake tickets"): SUI locked in a shared `Stake` bound to one node name and one
/// owner. A worker proves it may join as `node_name` by controlling an active stake; the enclave
/// reads it from chain. Unstaking is two steps (request, then withdraw after the cluster's
/// cool-down) so a misbehaving worker cannot pull its stake before the admin can slash it.
///
/// `Stake` is shared, not owned, so that the admin can slash it without the owner's consent.
module k3s_daas::stake;

use k3s_daas::cluster::{AdminCap, Cluster};
use std::string::String;
use sui::balance::Balance;
use sui::clock::Clock;
use sui::coin::{Self, Coin};
use sui::event;
use sui::sui::SUI;

/// Longest node name (a DNS subdomain, as Kubernetes requires).
const MAX_NODE_NAME_LENGTH: u64 = 253;

/// The coin is smaller than the cluster's minimum stake.
const EBelowMinimum: u64 = 0;
/// Another stake already holds this node name.
const ENodeNameTaken: u64 = 1;
/// The node name is empty or longer than 253 bytes.
const EBadNodeName: u64 = 2;
/// Only the stake's owner may unstake.
const ENotOwner: u64 = 3;
/// The stake belongs to another cluster.
const EWrongCluster: u64 = 4;
/// Unstaking was already requested.
const EAlreadyUnstaking: u64 = 5;
/// Withdraw was called before `request_unstake`.
const ENotUnstaking: u64 = 6;
/// The cool-down has not passed yet.
const ECooldownNotOver: u64 = 7;
/// The slash amount is zero or larger than the stake.
const EBadSlashAmount: u64 = 8;

/// SUI locked for one node name of one cluster. Shared.
public struct Stake has key {
    id: UID,
    cluster_id: ID,
    node_name: String,
    owner: address,
    balance: Balance<SUI>,
    staked_at_ms: u64,
    unstake_requested_at_ms: Option<u64>,
}

/// Emitted by `stake`.
public struct Staked has copy, drop {
    cluster_id: ID,
    stake_id: ID,
    node_name: String,
    owner: address,
    amount: u64,
}

/// Emitted by `request_unstake`.
public struct UnstakeRequested has copy, drop {
    cluster_id: ID,
    stake_id: ID,
    node_name: String,
    available_at_ms: u64,
}

/// Emitted by `withdraw`.
public struct Unstaked has copy, drop {
    cluster_id: ID,
    stake_id: ID,
    node_name: String,
    amount: u64,
}

/// Emitted by `slash`.
public struct Slashed has copy, drop {
    cluster_id: ID,
    stake_id: ID,
    node_name: String,
    amount: u64,
    remaining: u64,
}

/// Locks `coin` as the stake for `node_name`, owned by the sender, and shares it.
public fun stake(
    cluster: &mut Cluster,
    node_name: String,
    coin: Coin<SUI>,
    clock: &Clock,
    ctx: &mut TxContext,
) {
    let length = node_name.length();
    assert!(length > 0 && length <= MAX_NODE_NAME_LENGTH, EBadNodeName);
    assert!(cluster.stake_of(&node_name).is_none(), ENodeNameTaken);
    let amount = coin.value();
    assert!(amount >= cluster.min_stake(), EBelowMinimum);
    let cluster_id = object::id(cluster);
    let stake = Stake {
        id: object::new(ctx),
        cluster_id,
        node_name,
        owner: ctx.sender(),
        balance: coin.into_balance(),
        staked_at_ms: clock.timestamp_ms(),
        unstake_requested_at_ms: option::none(),
    };
    let stake_id = object::id(&stake);
    cluster.add_stake_record(node_name, stake_id);
    event::emit(Staked { cluster_id, stake_id, node_name, owner: ctx.sender(), amount });
    transfer::share_object(stake);
}

/// Starts the cool-down; from now on the stake no longer admits its node.
public fun request_unstake(stake: &mut Stake, cluster: &Cluster, clock: &Clock, ctx: &TxContext) {
    assert!(stake.cluster_id == object::id(cluster), EWrongCluster);
    assert!(stake.owner == ctx.sender(), ENotOwner);
    assert!(stake.unstake_requested_at_ms.is_none(), EAlreadyUnstaking);
    let now = clock.timestamp_ms();
    stake.unstake_requested_at_ms = option::some(now);
    event::emit(UnstakeRequested {
        cluster_id: stake.cluster_id,
        stake_id: object::id(stake),
        node_name: stake.node_name,
        available_at_ms: now + cluster.unstake_cooldown_ms(),
    });
}

/// After the cool-down, deletes the stake, frees its node name and returns the SUI.
public fun withdraw(
    stake: Stake,
    cluster: &mut Cluster,
    clock: &Clock,
    ctx: &mut TxContext,
): Coin<SUI> {
    assert!(stake.cluster_id == object::id(cluster), EWrongCluster);
    assert!(stake.owner == ctx.sender(), ENotOwner);
    assert!(stake.unstake_requested_at_ms.is_some(), ENotUnstaking);
    let requested = *stake.unstake_requested_at_ms.borrow();
    assert!(clock.timestamp_ms() >= requested + cluster.unstake_cooldown_ms(), ECooldownNotOver);
    let stake_id = object::id(&stake);
    let Stake {
        id,
        cluster_id,
        node_name,
        owner: _,
        balance,
        staked_at_ms: _,
        unstake_requested_at_ms: _,
    } = stake;
    id.delete();
    cluster.remove_stake_record(&node_name);
    let amount = balance.value();
    event::emit(Unstaked { cluster_id, stake_id, node_name, amount });
    coin::from_balance(balance, ctx)
}

/// Takes `amount` MIST from a stake into the cluster's slashed balance. Admin only.
public fun slash(cluster: &mut Cluster, cap: &AdminCap, stake: &mut Stake, amount: u64) {
    cluster.assert_admin(cap);
    assert!(stake.cluster_id == object::id(cluster), EWrongCluster);
    assert!(amount > 0 && amount <= stake.balance.value(), EBadSlashAmount);
    cluster.deposit_slashed(stake.balance.split(amount));
    event::emit(Slashed {
        cluster_id: stake.cluster_id,
        stake_id: object::id(stake),
        node_name: stake.node_name,
        amount,
        remaining: stake.balance.value(),
    });
}

/// True when the stake admits its node: not unstaking and at least the cluster's minimum.
public fun is_active(stake: &Stake, cluster: &Cluster): bool {
    stake.cluster_id == object::id(cluster)
        && stake.unstake_requested_at_ms.is_none()
        && stake.balance.value() >= cluster.min_stake()
}

/// The node name this stake holds.
public fun node_name(stake: &Stake): &String { &stake.node_name }

/// The address allowed to unstake.
public fun owner(stake: &Stake): address { stake.owner }

/// Staked MIST.
public fun amount(stake: &Stake): u64 { stake.balance.value() }

/// The cluster this stake belongs to.
public fun cluster_id(stake: &Stake): ID { stake.cluster_id }

/// When unstaking was requested, if it was.
public fun unstake_requested_at_ms(stake: &Stake): Option<u64> { stake.unstake_requested_at_ms }
