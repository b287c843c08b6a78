// Copyright (c) K3s-DaaS authors
// SPDX-License-Identifier: Apache-2.0

/// Enclave registration: a Nitro attestation document, verified on chain by
/// `sui::nitro_attestation::load_nitro_attestation` in the same transaction, makes its enclave
/// the cluster's live enclave when its PCRs match an allowed image and it is fresh.
///
/// A transaction looks like:
/// ```text
/// doc = 0x2::nitro_attestation::load_nitro_attestation(attestation_bytes, @0x6)
/// k3s_daas::enclave::register_enclave(cluster, doc, @0x6)
/// ```
/// Registration is permissionless: the document itself is the credential.
module k3s_daas::enclave;

use k3s_daas::cluster::{Self, Cluster, Pcrs};
use std::bcs;
use sui::clock::Clock;
use sui::event;
use sui::hash;
use sui::nitro_attestation::{NitroAttestationDocument, PCREntry};

/// Length of a raw Ed25519 public key.
const ED25519_PUBLIC_KEY_LENGTH: u64 = 32;
/// Length of a SHA-256 digest.
const SHA256_LENGTH: u64 = 32;
/// How far a document's timestamp may run ahead of the `Clock` (clock skew between AWS and Sui).
const MAX_CLOCK_SKEW_MS: u64 = 60_000;

/// PCR0, PCR1 or PCR2 is all zeros: a debug-mode enclave.
const EDebugEnclave: u64 = 0;
/// The PCRs match no allowed image.
const EPcrsNotAllowed: u64 = 1;
/// The document lacks PCR0, PCR1 or PCR2.
const EMissingPcr: u64 = 2;
/// The document has no `public_key` (the binding of the enclave's TLS key).
const EMissingPublicKey: u64 = 3;
/// The `public_key` is not a 32-byte SHA-256 digest.
const EBadPublicKey: u64 = 4;
/// The document is older than the cluster's freshness bound.
const EDocumentTooOld: u64 = 5;
/// The document's timestamp is ahead of the clock by more than the allowed skew.
const EDocumentFromFuture: u64 = 6;
/// The document is not newer than the live enclave's.
const ENotNewer: u64 = 7;
/// The document has no `user_data` (the enclave's Ed25519 anchor key).
const EMissingAnchorKey: u64 = 8;
/// The `user_data` is not a 32-byte Ed25519 key.
const EBadAnchorKey: u64 = 9;

/// Emitted when an enclave becomes live. The previous live enclave's anchor key, if any, is in
/// `replaced_anchor_key`.
public struct EnclaveRegistered has copy, drop {
    cluster_id: ID,
    anchor_key: vector<u8>,
    tls_key_digest: vector<u8>,
    pcrs: Pcrs,
    image_version: u64,
    document_timestamp_ms: u64,
    document_digest: vector<u8>,
    replaced_anchor_key: Option<vector<u8>>,
    registered_by: address,
}

/// Makes the enclave that produced `document` the cluster's live enclave.
///
/// The document binds two keys: `public_key` is the SHA-256 of the enclave's TLS
/// SubjectPublicKeyInfo (what kubectl users and workers check against the served certificate),
/// `user_data` is the enclave's Ed25519 key that signs state anchors.
///
/// Aborts with `EMissingPcr`, `EDebugEnclave`, `EPcrsNotAllowed`, `EMissingPublicKey`,
/// `EBadPublicKey`, `EMissingAnchorKey`, `EBadAnchorKey`, `EDocumentTooOld`,
/// `EDocumentFromFuture` or `ENotNewer`.
public fun register_enclave(
    cluster: &mut Cluster,
    document: NitroAttestationDocument,
    clock: &Clock,
    ctx: &TxContext,
) {
    let document_digest = hash::blake2b256(&bcs::to_bytes(&document));
    let entries = document.pcrs();
    let pcr0 = pcr_value(entries, 0);
    let pcr1 = pcr_value(entries, 1);
    let pcr2 = pcr_value(entries, 2);
    register(
        cluster,
        pcr0,
        pcr1,
        pcr2,
        *document.public_key(),
        *document.user_data(),
        *document.timestamp(),
        document_digest,
        clock,
        ctx.sender(),
    )
}

/// The rules of `register_enclave` on already-extracted document fields. `NitroAttestationDocument`
/// can only be made by the native verifier, so unit tests enter here.
#[test_only]
public fun register_for_testing(
    cluster: &mut Cluster,
    pcr0: vector<u8>,
    pcr1: vector<u8>,
    pcr2: vector<u8>,
    public_key: Option<vector<u8>>,
    user_data: Option<vector<u8>>,
    document_timestamp_ms: u64,
    document_digest: vector<u8>,
    clock: &Clock,
    ctx: &TxContext,
) {
    register(
        cluster,
        pcr0,
        pcr1,
        pcr2,
        public_key,
        user_data,
        document_timestamp_ms,
        document_digest,
        clock,
        ctx.sender(),
    )
}

fun register(
    cluster: &mut Cluster,
    pcr0: vector<u8>,
    pcr1: vector<u8>,
    pcr2: vector<u8>,
    public_key: Option<vector<u8>>,
    user_data: Option<vector<u8>>,
    document_timestamp_ms: u64,
    document_digest: vector<u8>,
    clock: &Clock,
    sender: address,
) {
    let pcrs = cluster::new_pcrs(pcr0, pcr1, pcr2);
    assert!(!pcrs.is_debug(), EDebugEnclave);
    let version = cluster.image_version_for(&pcrs);
    assert!(version.is_some(), EPcrsNotAllowed);

    let now = clock.timestamp_ms();
    assert!(document_timestamp_ms <= now + MAX_CLOCK_SKEW_MS, EDocumentFromFuture);
    assert!(
        document_timestamp_ms >= now || now - document_timestamp_ms <= cluster.max_document_age_ms(),
        EDocumentTooOld,
    );
    let live = cluster.live_enclave();
    let replaced_anchor_key = if (live.is_some()) {
        let previous = live.borrow();
        assert!(
            document_timestamp_ms > previous.enclave_document_timestamp_ms(),
            ENotNewer,
        );
        option::some(*previous.enclave_anchor_key())
    } else option::none();
    // The document binds two keys: `public_key` the TLS key (SHA-256 of its
    // SubjectPublicKeyInfo, checked by clients), `user_data` the Ed25519 key signing anchors.
    assert!(public_key.is_some(), EMissingPublicKey);
    let tls_key_digest = public_key.destroy_some();
    assert!(tls_key_digest.length() == SHA256_LENGTH, EBadPublicKey);
    assert!(user_data.is_some(), EMissingAnchorKey);
    let anchor_key = user_data.destroy_some();
    assert!(anchor_key.length() == ED25519_PUBLIC_KEY_LENGTH, EBadAnchorKey);

    let image_version = version.destroy_some();
    cluster.set_live_enclave(
        cluster::new_live_enclave(
            anchor_key,
            tls_key_digest,
            pcrs,
            image_version,
            document_timestamp_ms,
            document_digest,
            now,
            sender,
        ),
    );
    event::emit(EnclaveRegistered {
        cluster_id: object::id(cluster),
        anchor_key,
        tls_key_digest,
        pcrs,
        image_version,
        document_timestamp_ms,
        document_digest,
        replaced_anchor_key,
        registered_by: sender,
    });
}

/// The value of PCR `index`, found by index (not by position); aborts with `EMissingPcr`.
fun pcr_value(entries: &vector<PCREntry>, index: u8): vector<u8> {
    let mut i = 0;
    while (i < entries.length()) {
        let entry = &entries[i];
        if (entry.index() == index) return *entry.value();
        i = i + 1;
    };
    abort EMissingPcr
}
