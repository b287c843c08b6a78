// Copyright (c) K3s-DaaS authors
// SPDX-License-Identifier: Apache-2.0

/// The shared `Cluster` object: who administers it, which enclave images are allowed, which
/// enclave is live, which node names are staked and how far the sealed state has been anchored.
///
/// The rules that change the live enclave, the stakes and the anchors live in
/// `k3s_daas::enclave`, `k3s_daas::stake` and `k3s_daas::anchor`; this module owns the object
/// and gives them package-only mutators.
module k3s_daas::cluster;

use std::string::String;
use sui::balance::{Self, Balance};
use sui::coin::{Self, Coin};
use sui::event;
use sui::sui::SUI;
use sui::vec_map::{Self, VecMap};

/// Length in bytes of a PCR value (SHA-384).
const PCR_LENGTH: u64 = 48;
/// The longest freshness bound a cluster may set: the Nitro leaf certificate lives about 3 h.
const MAX_DOCUMENT_AGE_LIMIT_MS: u64 = 3 * 60 * 60 * 1000;

/// The capability does not belong to this cluster.
const ENotAdmin: u64 = 0;
/// A PCR value is not 48 bytes long.
const EBadPcrLength: u64 = 1;
/// A PCR value is all zeros, as in a debug-mode enclave.
const EDebugPcrs: u64 = 2;
/// An allowed image with this version already exists.
const EVersionExists: u64 = 3;
/// An allowed image with these PCRs already exists.
const EImageExists: u64 = 4;
/// No allowed image has this version.
const EImageNotFound: u64 = 5;
/// A setting is out of range (zero minimum stake, or a freshness bound of 0 or over 3 h).
const EBadSettings: u64 = 6;

/// One cluster's public facts. Shared.
public struct Cluster has key {
    id: UID,
    /// Human-readable name, chosen by the admin.
    name: String,
    /// Per-cluster limits.
    settings: Settings,
    /// Images whose enclaves may register, oldest first.
    images: vector<AllowedImage>,
    /// The enclave instance that currently serves the cluster.
    live_enclave: Option<LiveEnclave>,
    /// The newest state anchor recorded by the live enclave.
    latest_anchor: Option<Anchor>,
    /// Node name -> ID of the `Stake` that holds it.
    stakes: VecMap<String, ID>,
    /// SUI taken from slashed stakes, withdrawable by the admin.
    slashed: Balance<SUI>,
}

/// Per-cluster limits, fixed at creation.
public struct Settings has copy, drop, store {
    /// Smallest stake, in MIST, that lets a worker join.
    min_stake: u64,
    /// How long a stake stays locked after the owner asks to unstake.
    unstake_cooldown_ms: u64,
    /// How old an attestation document may be, against the `Clock`, when it is registered.
    max_document_age_ms: u64,
}

/// Grants administration of one cluster.
public struct AdminCap has key, store {
    id: UID,
    cluster_id: ID,
}

/// PCR0 (enclave image), PCR1 (kernel and boot ramfs), PCR2 (application), 48 bytes each.
public struct Pcrs has copy, drop, store {
    pcr0: vector<u8>,
    pcr1: vector<u8>,
    pcr2: vector<u8>,
}

/// An enclave image the admin allows to serve the cluster.
public struct AllowedImage has copy, drop, store {
    pcrs: Pcrs,
    label: String,
    version: u64,
}

/// The registered enclave instance.
public struct LiveEnclave has copy, drop, store {
    /// Raw 32-byte Ed25519 key from the document's `user_data`; it signs anchors.
    anchor_key: vector<u8>,
    /// The document's `public_key`: SHA-256 of the enclave's TLS SubjectPublicKeyInfo, which
    /// clients compare with the certificate the enclave serves.
    tls_key_digest: vector<u8>,
    pcrs: Pcrs,
    /// Version of the allowed image the PCRs matched.
    image_version: u64,
    /// The document's own timestamp.
    document_timestamp_ms: u64,
    /// blake2b256 of the BCS of the parsed `NitroAttestationDocument`.
    document_digest: vector<u8>,
    registered_at_ms: u64,
    registered_by: address,
}

/// A (revision, journal chain hash) pair the live enclave vouched for.
public struct Anchor has copy, drop, store {
    revision: u64,
    chain_hash: vector<u8>,
    /// When the enclave signed it.
    timestamp_ms: u64,
    /// Clock time of the transaction that recorded it.
    recorded_at_ms: u64,
    /// The enclave's Ed25519 signature over the anchor message, kept so that a booting enclave
    /// can check the anchor it reads was signed with the cluster's anchor key.
    signature: vector<u8>,
}

/// Emitted by `create`.
public struct ClusterCreated has copy, drop {
    cluster_id: ID,
    name: String,
    min_stake: u64,
    unstake_cooldown_ms: u64,
    max_document_age_ms: u64,
}

/// Emitted by `allow_image`.
public struct ImageAllowed has copy, drop {
    cluster_id: ID,
    pcrs: Pcrs,
    label: String,
    version: u64,
}

/// Emitted by `retire_image`.
public struct ImageRetired has copy, drop {
    cluster_id: ID,
    version: u64,
}

/// Creates and shares a cluster; returns its admin capability.
public fun create(
    name: String,
    min_stake: u64,
    unstake_cooldown_ms: u64,
    max_document_age_ms: u64,
    ctx: &mut TxContext,
): AdminCap {
    assert!(min_stake > 0, EBadSettings);
    assert!(
        max_document_age_ms > 0 && max_document_age_ms <= MAX_DOCUMENT_AGE_LIMIT_MS,
        EBadSettings,
    );
    let cluster = Cluster {
        id: object::new(ctx),
        name,
        settings: Settings { min_stake, unstake_cooldown_ms, max_document_age_ms },
        images: vector[],
        live_enclave: option::none(),
        latest_anchor: option::none(),
        stakes: vec_map::empty(),
        slashed: balance::zero(),
    };
    let cluster_id = object::id(&cluster);
    event::emit(ClusterCreated {
        cluster_id,
        name,
        min_stake,
        unstake_cooldown_ms,
        max_document_age_ms,
    });
    transfer::share_object(cluster);
    AdminCap { id: object::new(ctx), cluster_id }
}

/// Admits an image: its enclaves may register from now on.
public fun allow_image(
    cluster: &mut Cluster,
    cap: &AdminCap,
    pcr0: vector<u8>,
    pcr1: vector<u8>,
    pcr2: vector<u8>,
    label: String,
    version: u64,
) {
    cluster.assert_admin(cap);
    let pcrs = new_pcrs(pcr0, pcr1, pcr2);
    assert!(!pcrs.is_debug(), EDebugPcrs);
    assert!(cluster.image_index(version).is_none(), EVersionExists);
    assert!(cluster.image_version_for(&pcrs).is_none(), EImageExists);
    cluster.images.push_back(AllowedImage { pcrs, label, version });
    event::emit(ImageAllowed { cluster_id: object::id(cluster), pcrs, label, version });
}

/// Retires an image: its enclaves may no longer register or anchor.
public fun retire_image(cluster: &mut Cluster, cap: &AdminCap, version: u64) {
    cluster.assert_admin(cap);
    let index = cluster.image_index(version);
    assert!(index.is_some(), EImageNotFound);
    cluster.images.remove(index.destroy_some());
    event::emit(ImageRetired { cluster_id: object::id(cluster), version });
}

/// Moves every slashed MIST out of the cluster.
public fun withdraw_slashed(cluster: &mut Cluster, cap: &AdminCap, ctx: &mut TxContext): Coin<SUI> {
    cluster.assert_admin(cap);
    coin::from_balance(cluster.slashed.withdraw_all(), ctx)
}

/// Builds a PCR triple; aborts with `EBadPcrLength` unless each value is 48 bytes.
public fun new_pcrs(pcr0: vector<u8>, pcr1: vector<u8>, pcr2: vector<u8>): Pcrs {
    assert!(
        pcr0.length() == PCR_LENGTH && pcr1.length() == PCR_LENGTH && pcr2.length() == PCR_LENGTH,
        EBadPcrLength,
    );
    Pcrs { pcr0, pcr1, pcr2 }
}

/// True when any of PCR0..2 is all zeros (a debug-mode enclave).
public fun is_debug(pcrs: &Pcrs): bool {
    is_zero(&pcrs.pcr0) || is_zero(&pcrs.pcr1) || is_zero(&pcrs.pcr2)
}

/// Version of the allowed image with exactly these PCRs, if any.
public fun image_version_for(cluster: &Cluster, pcrs: &Pcrs): Option<u64> {
    let mut i = 0;
    while (i < cluster.images.length()) {
        let image = &cluster.images[i];
        if (&image.pcrs == pcrs) return option::some(image.version);
        i = i + 1;
    };
    option::none()
}

/// True when an allowed image has this version.
public fun is_image_allowed(cluster: &Cluster, version: u64): bool {
    cluster.image_index(version).is_some()
}

// === Getters ===

/// The cluster's name.
public fun name(cluster: &Cluster): &String { &cluster.name }

/// Smallest stake, in MIST.
public fun min_stake(cluster: &Cluster): u64 { cluster.settings.min_stake }

/// Unstake cool-down in milliseconds.
public fun unstake_cooldown_ms(cluster: &Cluster): u64 { cluster.settings.unstake_cooldown_ms }

/// Freshness bound for attestation documents in milliseconds.
public fun max_document_age_ms(cluster: &Cluster): u64 { cluster.settings.max_document_age_ms }

/// The allowed images, oldest first.
public fun images(cluster: &Cluster): &vector<AllowedImage> { &cluster.images }

/// The live enclave, if one registered.
public fun live_enclave(cluster: &Cluster): &Option<LiveEnclave> { &cluster.live_enclave }

/// The newest anchor, if any.
public fun latest_anchor(cluster: &Cluster): &Option<Anchor> { &cluster.latest_anchor }

/// ID of the stake holding `node_name`, if any.
public fun stake_of(cluster: &Cluster, node_name: &String): Option<ID> {
    if (cluster.stakes.contains(node_name)) option::some(*cluster.stakes.get(node_name))
    else option::none()
}

/// Number of staked node names.
public fun stake_count(cluster: &Cluster): u64 { cluster.stakes.size() }

/// MIST waiting in the slashed balance.
public fun slashed_value(cluster: &Cluster): u64 { cluster.slashed.value() }

/// The cluster this capability administers.
public fun cap_cluster_id(cap: &AdminCap): ID { cap.cluster_id }

/// PCR0 of a triple.
public fun pcr0(pcrs: &Pcrs): &vector<u8> { &pcrs.pcr0 }

/// PCR1 of a triple.
public fun pcr1(pcrs: &Pcrs): &vector<u8> { &pcrs.pcr1 }

/// PCR2 of a triple.
public fun pcr2(pcrs: &Pcrs): &vector<u8> { &pcrs.pcr2 }

/// An allowed image's PCRs.
public fun image_pcrs(image: &AllowedImage): &Pcrs { &image.pcrs }

/// An allowed image's label.
public fun image_label(image: &AllowedImage): &String { &image.label }

/// An allowed image's version.
public fun image_version(image: &AllowedImage): u64 { image.version }

/// The live enclave's Ed25519 anchor key.
public fun enclave_anchor_key(enclave: &LiveEnclave): &vector<u8> { &enclave.anchor_key }

/// SHA-256 of the live enclave's TLS SubjectPublicKeyInfo.
public fun enclave_tls_key_digest(enclave: &LiveEnclave): &vector<u8> { &enclave.tls_key_digest }

/// The live enclave's PCRs.
public fun enclave_pcrs(enclave: &LiveEnclave): &Pcrs { &enclave.pcrs }

/// Version of the image the live enclave runs.
public fun enclave_image_version(enclave: &LiveEnclave): u64 { enclave.image_version }

/// Timestamp of the live enclave's attestation document.
public fun enclave_document_timestamp_ms(enclave: &LiveEnclave): u64 {
    enclave.document_timestamp_ms
}

/// Digest of the live enclave's attestation document.
public fun enclave_document_digest(enclave: &LiveEnclave): &vector<u8> {
    &enclave.document_digest
}

/// An anchor's revision.
public fun anchor_revision(anchor: &Anchor): u64 { anchor.revision }

/// An anchor's journal chain hash.
public fun anchor_chain_hash(anchor: &Anchor): &vector<u8> { &anchor.chain_hash }

/// An anchor's Ed25519 signature (by the enclave that recorded it).
public fun anchor_signature(anchor: &Anchor): &vector<u8> { &anchor.signature }

// === Package-only mutators used by `enclave`, `stake` and `anchor` ===

public(package) fun assert_admin(cluster: &Cluster, cap: &AdminCap) {
    assert!(cap.cluster_id == object::id(cluster), ENotAdmin);
}

public(package) fun new_live_enclave(
    anchor_key: vector<u8>,
    tls_key_digest: vector<u8>,
    pcrs: Pcrs,
    image_version: u64,
    document_timestamp_ms: u64,
    document_digest: vector<u8>,
    registered_at_ms: u64,
    registered_by: address,
): LiveEnclave {
    LiveEnclave {
        anchor_key,
        tls_key_digest,
        pcrs,
        image_version,
        document_timestamp_ms,
        document_digest,
        registered_at_ms,
        registered_by,
    }
}

public(package) fun set_live_enclave(cluster: &mut Cluster, enclave: LiveEnclave) {
    cluster.live_enclave = option::some(enclave);
}

public(package) fun new_anchor(
    revision: u64,
    chain_hash: vector<u8>,
    timestamp_ms: u64,
    recorded_at_ms: u64,
    signature: vector<u8>,
): Anchor {
    Anchor { revision, chain_hash, timestamp_ms, recorded_at_ms, signature }
}

public(package) fun set_latest_anchor(cluster: &mut Cluster, anchor: Anchor) {
    cluster.latest_anchor = option::some(anchor);
}

public(package) fun add_stake_record(cluster: &mut Cluster, node_name: String, stake_id: ID) {
    cluster.stakes.insert(node_name, stake_id);
}

public(package) fun remove_stake_record(cluster: &mut Cluster, node_name: &String) {
    let (_, _) = cluster.stakes.remove(node_name);
}

public(package) fun deposit_slashed(cluster: &mut Cluster, slashed: Balance<SUI>) {
    cluster.slashed.join(slashed);
}

// === Private ===

fun image_index(cluster: &Cluster, version: u64): Option<u64> {
    let mut i = 0;
    while (i < cluster.images.length()) {
        if (cluster.images[i].version == version) return option::some(i);
        i = i + 1;
    };
    option::none()
}

fun is_zero(value: &vector<u8>): bool {
    let mut i = 0;
    while (i < value.length()) {
        if (value[i] != 0) return false;
        i = i + 1;
    };
    true
}
