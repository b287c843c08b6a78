//! The local registry's rules, on real AWS documents (production root) and on documents from a
//! test CA in the same format (chosen PCRs and enclave keys).

use std::sync::Arc;

use attestation::{Pcr, Verifier, VerifyError};
use ring::signature::{Ed25519KeyPair, KeyPair};

use super::test_docs::TestCa;
use super::*;
use crate::clock::ManualClock;
use crate::types::{MAX_CLOCK_SKEW_MS, MAX_DOCUMENT_AGE_LIMIT_MS};

const WEATHER_DOC: &[u8] = include_bytes!("../../testdata/nautilus-weather-2025-04-15.cbor");
const DEBUG_DOC: &[u8] = include_bytes!("../../testdata/fastcrypto-debug-2024-11-14.cbor");
const WEATHER_TS: u64 = 1_744_683_923_696;
const DEBUG_TS: u64 = 1_731_627_989_450;
const WEATHER_PCR01: &str = "cbe1afb6ed0ff89f10295af0b802247ec5670da8f886e71a4226373b032c322f4e42c9c98288e7211682b258684505a2";
const WEATHER_PCR2: &str = "21b9efbc184807662e966d34f390821309eeac6802309798826296bf3e8bec7c10edb30948c90ba67310f7b964fc500a";

const MAX_AGE_MS: u64 = 300_000;
const COOLDOWN_MS: u64 = 86_400_000;
const MIN_STAKE: u64 = 1_000_000_000;
/// Clock time of the test-CA scenarios.
const NOW: u64 = 1_770_065_100_000;

fn admin() -> Address {
    "0xad".parse().unwrap()
}
fn worker() -> Address {
    "0xb0".parse().unwrap()
}
fn stranger() -> Address {
    "0xee".parse().unwrap()
}

fn settings() -> ClusterSettings {
    ClusterSettings {
        min_stake: MIN_STAKE,
        unstake_cooldown_ms: COOLDOWN_MS,
        max_document_age_ms: MAX_AGE_MS,
    }
}

fn weather_pcrs() -> Pcrs {
    Pcrs {
        pcr0: Pcr::from_hex(WEATHER_PCR01).unwrap(),
        pcr1: Pcr::from_hex(WEATHER_PCR01).unwrap(),
        pcr2: Pcr::from_hex(WEATHER_PCR2).unwrap(),
    }
}

fn pcrs(byte: u8) -> Pcrs {
    Pcrs {
        pcr0: Pcr::new([byte; 48]),
        pcr1: Pcr::new([byte.wrapping_add(1); 48]),
        pcr2: Pcr::new([byte.wrapping_add(2); 48]),
    }
}

fn as_array(p: &Pcrs) -> [Pcr; 3] {
    [p.pcr0, p.pcr1, p.pcr2]
}

struct Fixture {
    _dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    admin: FileRegistry<ManualClock>,
}

impl Fixture {
    /// A registry at `now` that trusts `verifier` and allows `image` as version 1.
    async fn new(verifier: Verifier, now: u64, image: Pcrs) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(now));
        let admin = FileRegistry::init_with_clock(
            dir.path().join("registry.json"),
            "test",
            settings(),
            admin(),
            verifier,
            Arc::clone(&clock),
        )
        .unwrap();
        admin.allow_image(image, "v1", 1).await.unwrap();
        Self {
            _dir: dir,
            clock,
            admin,
        }
    }

    fn as_(&self, who: Address) -> FileRegistry<ManualClock> {
        self.admin.acting_as(who)
    }
}

fn enclave_key(seed: u8) -> (Ed25519KeyPair, [u8; 32]) {
    let key = Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap();
    let mut pk = [0u8; 32];
    pk.copy_from_slice(key.public_key().as_ref());
    (key, pk)
}

// ---- real AWS documents, production root ----

/// The Nautilus weather enclave puts its Ed25519 key in `public_key` and no `user_data`: it
/// passes the chain, PCR and freshness checks and is then refused, because a K3s-DaaS
/// enclave binds its TLS key digest in `public_key` and its anchor key in `user_data`.
#[tokio::test]
async fn real_document_passes_every_check_but_is_not_a_daas_enclave() {
    let f = Fixture::new(Verifier::aws_nitro(), WEATHER_TS + 1_000, weather_pcrs()).await;
    let err = f
        .as_(stranger())
        .register_enclave(WEATHER_DOC)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::MissingAnchorKey), "{err:?}");
    assert!(f.admin.cluster().await.unwrap().live_enclave.is_none());
}

#[tokio::test]
async fn real_document_with_wrong_pcrs_is_refused() {
    let f = Fixture::new(Verifier::aws_nitro(), WEATHER_TS + 1_000, pcrs(0x11)).await;
    let err = f.admin.register_enclave(WEATHER_DOC).await.unwrap_err();
    assert!(
        matches!(&err, Error::PcrsNotAllowed { pcr0 } if pcr0 == WEATHER_PCR01),
        "{err:?}"
    );
    assert!(f.admin.cluster().await.unwrap().live_enclave.is_none());
}

#[tokio::test]
async fn real_debug_mode_document_is_refused() {
    let f = Fixture::new(Verifier::aws_nitro(), DEBUG_TS + 1_000, weather_pcrs()).await;
    let err = f.admin.register_enclave(DEBUG_DOC).await.unwrap_err();
    assert!(matches!(err, Error::DebugEnclave { index: 0 }), "{err:?}");
}

#[tokio::test]
async fn real_document_older_than_the_bound_is_stale() {
    let f = Fixture::new(
        Verifier::aws_nitro(),
        WEATHER_TS + MAX_AGE_MS + 1,
        weather_pcrs(),
    )
    .await;
    let err = f.admin.register_enclave(WEATHER_DOC).await.unwrap_err();
    assert!(
        matches!(err, Error::DocumentTooOld { age_ms, max_ms: MAX_AGE_MS } if age_ms == MAX_AGE_MS + 1),
        "{err:?}"
    );
    // Exactly at the bound it is still fresh: it gets as far as the key checks.
    f.clock.set(WEATHER_TS + MAX_AGE_MS);
    let err = f.admin.register_enclave(WEATHER_DOC).await.unwrap_err();
    assert!(matches!(err, Error::MissingAnchorKey), "{err:?}");
}

#[tokio::test]
async fn the_same_document_cannot_register_twice() {
    let ca = TestCa::new(NOW);
    let f = Fixture::new(ca.verifier(), NOW, pcrs(0x11)).await;
    let (_, pk) = enclave_key(3);
    let doc = ca.document(as_array(&pcrs(0x11)), Some(&pk), NOW);
    let live = f.as_(stranger()).register_enclave(&doc).await.unwrap();
    assert_eq!(live.anchor_key, pk);
    assert_eq!(live.tls_key_digest, TestCa::TLS_KEY_DIGEST);
    assert_eq!(live.pcrs, pcrs(0x11));
    assert_eq!(live.image_version, 1);
    assert_eq!(live.document_timestamp_ms, NOW);
    assert_eq!(live.registered_by, stranger());
    assert_ne!(live.document_digest, [0; 32]);
    assert_eq!(f.admin.cluster().await.unwrap().live_enclave, Some(live));
    let err = f.admin.register_enclave(&doc).await.unwrap_err();
    assert!(matches!(err, Error::NotNewer { .. }), "{err:?}");
}

#[tokio::test]
async fn real_document_against_another_root_or_outside_its_chain_validity_fails() {
    let ca = TestCa::new(NOW);
    let f = Fixture::new(ca.verifier(), WEATHER_TS + 1_000, weather_pcrs()).await;
    let err = f.admin.register_enclave(WEATHER_DOC).await.unwrap_err();
    assert!(
        matches!(err, Error::Attestation(VerifyError::UntrustedRoot { .. })),
        "{err:?}"
    );
    // Production root, but a clock a day later: the leaf certificate has expired.
    let f = Fixture::new(
        Verifier::aws_nitro(),
        WEATHER_TS + 86_400_000,
        weather_pcrs(),
    )
    .await;
    let err = f.admin.register_enclave(WEATHER_DOC).await.unwrap_err();
    assert!(matches!(err, Error::Attestation(_)), "{err:?}");
    let err = f
        .admin
        .register_enclave(b"not a document")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Attestation(_)), "{err:?}");
}

// ---- test-CA documents: chosen keys and PCRs ----

#[tokio::test]
async fn document_without_key_with_bad_key_or_from_the_future_is_refused() {
    let ca = TestCa::new(NOW);
    let f = Fixture::new(ca.verifier(), NOW, pcrs(0x11)).await;
    let image = as_array(&pcrs(0x11));
    let anchor = [7u8; 32];
    let err = f
        .admin
        .register_enclave(&ca.document_with_keys(image, None, Some(&anchor), NOW))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::MissingPublicKey), "{err:?}");
    let err = f
        .admin
        .register_enclave(&ca.document_with_keys(image, Some(&[5; 48]), Some(&anchor), NOW))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadPublicKey { len: 48 }), "{err:?}");
    let err = f
        .admin
        .register_enclave(&ca.document(image, None, NOW))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::MissingAnchorKey), "{err:?}");
    let err = f
        .admin
        .register_enclave(&ca.document(image, Some(&[7; 65]), NOW))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadAnchorKey { len: 65 }), "{err:?}");
    let err = f
        .admin
        .register_enclave(&ca.document(image, Some(&[7; 32]), NOW + MAX_CLOCK_SKEW_MS + 1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DocumentFromFuture { .. }), "{err:?}");
    f.admin
        .register_enclave(&ca.document(image, Some(&[7; 32]), NOW + MAX_CLOCK_SKEW_MS))
        .await
        .unwrap();
}

#[tokio::test]
async fn debug_zero_pcrs_are_refused_for_documents_and_images() {
    let ca = TestCa::new(NOW);
    let f = Fixture::new(ca.verifier(), NOW, pcrs(0x11)).await;
    let mut debug = pcrs(0x11);
    debug.pcr2 = Pcr::ZERO;
    let err = f
        .admin
        .register_enclave(&ca.document(as_array(&debug), Some(&[7; 32]), NOW))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DebugEnclave { index: 2 }), "{err:?}");
    let err = f.admin.allow_image(debug, "debug", 2).await.unwrap_err();
    assert!(matches!(err, Error::DebugPcrs { index: 2 }), "{err:?}");
}

#[tokio::test]
async fn anchors_must_be_signed_by_the_live_enclave_and_increase() {
    let ca = TestCa::new(NOW);
    let f = Fixture::new(ca.verifier(), NOW, pcrs(0x11)).await;
    let cluster = f.admin.cluster().await.unwrap().id;
    let (key, pk) = enclave_key(1);
    let anchor = SignedAnchor::sign(&key, cluster, 10, [1; 32], NOW);

    let err = f.admin.record_anchor(anchor).await.unwrap_err();
    assert!(matches!(err, Error::NoLiveEnclave), "{err:?}");

    let doc = ca.document(as_array(&pcrs(0x11)), Some(&pk), NOW);
    f.admin.register_enclave(&doc).await.unwrap();
    // Anyone may submit an anchor; only the enclave's signature counts.
    let recorded = f.as_(stranger()).record_anchor(anchor).await.unwrap();
    assert_eq!(recorded.revision, 10);
    assert_eq!(recorded.recorded_at_ms, NOW);

    let err = f.admin.record_anchor(anchor).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotMonotonic {
                revision: 10,
                latest: 10
            }
        ),
        "{err:?}"
    );
    let lower = SignedAnchor::sign(&key, cluster, 9, [1; 32], NOW);
    let err = f.admin.record_anchor(lower).await.unwrap_err();
    assert!(
        matches!(err, Error::NotMonotonic { revision: 9, .. }),
        "{err:?}"
    );

    let (intruder, _) = enclave_key(2);
    let forged = SignedAnchor::sign(&intruder, cluster, 11, [1; 32], NOW);
    let err = f.admin.record_anchor(forged).await.unwrap_err();
    assert!(matches!(err, Error::BadSignature), "{err:?}");
    let other_cluster = SignedAnchor::sign(&key, Address([9; 32]), 11, [1; 32], NOW);
    let err = f.admin.record_anchor(other_cluster).await.unwrap_err();
    assert!(matches!(err, Error::BadSignature), "{err:?}");
    let mut tampered = SignedAnchor::sign(&key, cluster, 11, [1; 32], NOW);
    tampered.chain_hash = [2; 32];
    let err = f.admin.record_anchor(tampered).await.unwrap_err();
    assert!(matches!(err, Error::BadSignature), "{err:?}");

    let next = SignedAnchor::sign(&key, cluster, 11, [2; 32], NOW);
    f.admin.record_anchor(next).await.unwrap();
    let latest = f.admin.latest_anchor().await.unwrap().unwrap();
    assert_eq!((latest.revision, latest.chain_hash), (11, [2; 32]));
}

#[tokio::test]
async fn a_newer_enclave_replaces_the_live_one_and_inherits_the_anchor_floor() {
    let ca = TestCa::new(NOW);
    let f = Fixture::new(ca.verifier(), NOW, pcrs(0x11)).await;
    let cluster = f.admin.cluster().await.unwrap().id;
    let (old_key, old_pk) = enclave_key(1);
    let (new_key, new_pk) = enclave_key(2);
    let image = as_array(&pcrs(0x11));
    f.admin
        .register_enclave(&ca.document(image, Some(&old_pk), NOW))
        .await
        .unwrap();
    f.admin
        .record_anchor(SignedAnchor::sign(&old_key, cluster, 5, [1; 32], NOW))
        .await
        .unwrap();
    f.clock.advance(1_000);
    let older = ca.document(image, Some(&new_pk), NOW - 1);
    assert!(matches!(
        f.admin.register_enclave(&older).await.unwrap_err(),
        Error::NotNewer { .. }
    ));
    f.admin
        .register_enclave(&ca.document(image, Some(&new_pk), NOW + 1_000))
        .await
        .unwrap();
    let err = f
        .admin
        .record_anchor(SignedAnchor::sign(&old_key, cluster, 6, [1; 32], NOW))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadSignature), "{err:?}");
    let err = f
        .admin
        .record_anchor(SignedAnchor::sign(&new_key, cluster, 5, [1; 32], NOW))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotMonotonic { .. }), "{err:?}");
    f.admin
        .record_anchor(SignedAnchor::sign(&new_key, cluster, 6, [1; 32], NOW))
        .await
        .unwrap();
    let events = f.admin.events().await.unwrap();
    let replaced = events.iter().find_map(|e| match &e.kind {
        LocalEventKind::EnclaveRegistered {
            replaced_anchor_key: Some(k),
            ..
        } => Some(k.clone()),
        _ => None,
    });
    assert_eq!(replaced, Some(hex::encode(old_pk)));
}

#[tokio::test]
async fn retired_image_stops_registration_and_anchoring() {
    let ca = TestCa::new(NOW);
    let f = Fixture::new(ca.verifier(), NOW, pcrs(0x11)).await;
    let cluster = f.admin.cluster().await.unwrap().id;
    let (key, pk) = enclave_key(1);
    f.admin
        .register_enclave(&ca.document(as_array(&pcrs(0x11)), Some(&pk), NOW))
        .await
        .unwrap();
    f.admin.allow_image(pcrs(0x21), "v2", 2).await.unwrap();
    f.admin.retire_image(1).await.unwrap();
    let err = f
        .admin
        .record_anchor(SignedAnchor::sign(&key, cluster, 1, [1; 32], NOW))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ImageRetired { version: 1 }), "{err:?}");
    let err = f
        .admin
        .register_enclave(&ca.document(as_array(&pcrs(0x11)), Some(&pk), NOW + 1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PcrsNotAllowed { .. }), "{err:?}");
    let live = f
        .admin
        .register_enclave(&ca.document(as_array(&pcrs(0x21)), Some(&pk), NOW + 1))
        .await
        .unwrap();
    assert_eq!(live.image_version, 2);
}

// ---- allowed images ----

#[tokio::test]
async fn image_rules() {
    let f = Fixture::new(Verifier::aws_nitro(), NOW, pcrs(0x11)).await;
    let err = f
        .as_(stranger())
        .allow_image(pcrs(0x21), "v2", 2)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotAdmin { .. }), "{err:?}");
    let err = f.as_(stranger()).retire_image(1).await.unwrap_err();
    assert!(matches!(err, Error::NotAdmin { .. }), "{err:?}");
    let err = f
        .admin
        .allow_image(pcrs(0x21), "again", 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::VersionExists { version: 1 }),
        "{err:?}"
    );
    let err = f
        .admin
        .allow_image(pcrs(0x11), "same", 2)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ImageExists { version: 1 }), "{err:?}");
    let err = f.admin.retire_image(7).await.unwrap_err();
    assert!(
        matches!(err, Error::ImageNotFound { version: 7 }),
        "{err:?}"
    );
    f.admin.allow_image(pcrs(0x21), "v2", 2).await.unwrap();
    let images = f.admin.cluster().await.unwrap().images;
    assert_eq!(
        images.iter().map(|i| i.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
}

// ---- stakes ----

#[tokio::test]
async fn stake_rules_minimum_names_and_ownership() {
    let f = Fixture::new(Verifier::aws_nitro(), NOW, pcrs(0x11)).await;
    let w = f.as_(worker());
    let err = w.stake("node-a", MIN_STAKE - 1).await.unwrap_err();
    assert!(
        matches!(err, Error::BelowMinimum { amount, min: MIN_STAKE } if amount == MIN_STAKE - 1),
        "{err:?}"
    );
    let err = w.stake("", MIN_STAKE).await.unwrap_err();
    assert!(matches!(err, Error::BadNodeName { .. }), "{err:?}");
    let err = w.stake(&"a".repeat(254), MIN_STAKE).await.unwrap_err();
    assert!(matches!(err, Error::BadNodeName { .. }), "{err:?}");
    let info = w.stake("node-a", MIN_STAKE).await.unwrap();
    assert_eq!(info.owner, worker());
    assert!(info.is_active(&settings()));
    let err = f
        .as_(stranger())
        .stake("node-a", MIN_STAKE)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NodeNameTaken { .. }), "{err:?}");
    let err = f
        .as_(stranger())
        .request_unstake("node-a")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotOwner { .. }), "{err:?}");
    let err = w.request_unstake("node-b").await.unwrap_err();
    assert!(matches!(err, Error::NoStake { .. }), "{err:?}");
    assert_eq!(w.stake_info("node-a").await.unwrap(), Some(info));
    assert_eq!(w.stake_info("node-b").await.unwrap(), None);
}

#[tokio::test]
async fn unstake_waits_for_the_cooldown() {
    let f = Fixture::new(Verifier::aws_nitro(), NOW, pcrs(0x11)).await;
    let w = f.as_(worker());
    w.stake("node-a", MIN_STAKE).await.unwrap();
    let err = w.withdraw("node-a").await.unwrap_err();
    assert!(matches!(err, Error::NotUnstaking { .. }), "{err:?}");
    let available = w.request_unstake("node-a").await.unwrap();
    assert_eq!(available, NOW + COOLDOWN_MS);
    let info = w.stake_info("node-a").await.unwrap().unwrap();
    assert!(!info.is_active(&settings()));
    let err = w.request_unstake("node-a").await.unwrap_err();
    assert!(matches!(err, Error::AlreadyUnstaking { .. }), "{err:?}");
    f.clock.advance(COOLDOWN_MS - 1);
    let err = w.withdraw("node-a").await.unwrap_err();
    assert!(
        matches!(err, Error::CooldownNotOver { available_at_ms, .. } if available_at_ms == available),
        "{err:?}"
    );
    f.clock.advance(1);
    let err = f.as_(stranger()).withdraw("node-a").await.unwrap_err();
    assert!(matches!(err, Error::NotOwner { .. }), "{err:?}");
    assert_eq!(w.withdraw("node-a").await.unwrap(), MIN_STAKE);
    assert_eq!(w.stake_info("node-a").await.unwrap(), None);
    // The name is free again.
    f.as_(stranger()).stake("node-a", MIN_STAKE).await.unwrap();
}

#[tokio::test]
async fn only_the_admin_slashes_and_never_more_than_staked() {
    let f = Fixture::new(Verifier::aws_nitro(), NOW, pcrs(0x11)).await;
    f.as_(worker())
        .stake("node-a", 3 * MIN_STAKE)
        .await
        .unwrap();
    let err = f.as_(worker()).slash("node-a", 1).await.unwrap_err();
    assert!(matches!(err, Error::NotAdmin { .. }), "{err:?}");
    let err = f.admin.slash("node-a", 0).await.unwrap_err();
    assert!(matches!(err, Error::BadSlashAmount { .. }), "{err:?}");
    let err = f
        .admin
        .slash("node-a", 3 * MIN_STAKE + 1)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadSlashAmount { .. }), "{err:?}");
    f.admin.slash("node-a", 2 * MIN_STAKE + 1).await.unwrap();
    let state = f.admin.cluster().await.unwrap();
    let stake = &state.stakes["node-a"];
    assert_eq!(stake.amount, MIN_STAKE - 1);
    assert!(!stake.is_active(&state.settings));
    assert_eq!(state.slashed, 2 * MIN_STAKE + 1);
}

// ---- the file ----

#[tokio::test]
async fn concurrent_writers_lose_no_update() {
    let f = Fixture::new(Verifier::aws_nitro(), NOW, pcrs(0x11)).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16u8 {
        // A separate handle (own descriptors) per writer, as separate processes would have.
        let handle = FileRegistry::open_with_clock(
            f.admin.path(),
            Address([i; 32]),
            Verifier::aws_nitro(),
            Arc::clone(&f.clock),
        )
        .unwrap();
        tasks.spawn(async move { handle.stake(&format!("node-{i}"), MIN_STAKE).await });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    assert_eq!(f.admin.cluster().await.unwrap().stakes.len(), 16);
    let staked = f
        .admin
        .events()
        .await
        .unwrap()
        .iter()
        .filter(|e| matches!(e.kind, LocalEventKind::Staked { .. }))
        .count();
    assert_eq!(staked, 16);
}

#[tokio::test]
async fn init_open_and_corruption_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.json");
    let err = FileRegistry::open(&path, admin(), Verifier::aws_nitro()).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    let mut bad = settings();
    bad.min_stake = 0;
    let err = FileRegistry::init(&path, "c", bad, admin(), Verifier::aws_nitro()).unwrap_err();
    assert!(matches!(err, Error::BadSettings { .. }), "{err:?}");
    bad = settings();
    bad.max_document_age_ms = MAX_DOCUMENT_AGE_LIMIT_MS + 1;
    let err = FileRegistry::init(&path, "c", bad, admin(), Verifier::aws_nitro()).unwrap_err();
    assert!(matches!(err, Error::BadSettings { .. }), "{err:?}");
    FileRegistry::init(&path, "c", settings(), admin(), Verifier::aws_nitro()).unwrap();
    let err =
        FileRegistry::init(&path, "c", settings(), admin(), Verifier::aws_nitro()).unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    std::fs::write(&path, b"{not json").unwrap();
    let err = FileRegistry::open(&path, admin(), Verifier::aws_nitro()).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
}

#[test]
fn measurements_files_parse_and_bad_ones_are_explained() {
    let flat = format!(
        r#"{{"HashAlgorithm":"SHA384","PCR0":"{WEATHER_PCR01}","PCR1":"{WEATHER_PCR01}","PCR2":"{WEATHER_PCR2}"}}"#
    );
    assert_eq!(Pcrs::from_measurements_json(&flat).unwrap(), weather_pcrs());
    let nested = format!(
        r#"{{"Measurements":{{"HashAlgorithm":"Sha384 {{ ... }}","PCR0":"{WEATHER_PCR01}","PCR1":"{WEATHER_PCR01}","PCR2":"{WEATHER_PCR2}"}}}}"#
    );
    assert_eq!(
        Pcrs::from_measurements_json(&nested).unwrap(),
        weather_pcrs()
    );
    for bad in [
        "not json",
        r#"{"PCR0":"00"}"#,
        &format!(r#"{{"PCR0":"{WEATHER_PCR01}","PCR1":"{WEATHER_PCR01}","PCR2":"abc"}}"#),
    ] {
        let err = Pcrs::from_measurements_json(bad).unwrap_err();
        assert!(matches!(err, Error::BadMeasurements { .. }), "{err:?}");
    }
}
