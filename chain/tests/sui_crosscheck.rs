//! Byte-for-byte cross-check of the registry's Sui transactions: every call is built by
//! `chain::sui::tx::build` (Rust SDK) and by `chain/tests/ts/build.mjs` (`@mysten/sui`, offline
//! `tx.build()`), and the BCS bytes, transaction digests and Ed25519 signatures must be equal.
//! Needs `node` and `npm install` in `chain/tests/ts` (done by `scripts/setup`).
#![cfg(feature = "sui")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use attestation::Pcr;
use chain::sui::tx::{self, Call, GasConfig, OwnedRef, SharedRef};
use chain::sui::{Keystore, address_of};
use chain::{Address, ClusterSettings, Pcrs, SignedAnchor};
use serde_json::{Value, json};
use sui_crypto::SuiSigner;
use sui_crypto::ed25519::Ed25519PrivateKey;

const SECRET: [u8; 32] = [7; 32];
const PACKAGE: &str = "0x5a1e";

fn addr(text: &str) -> Address {
    text.parse().unwrap()
}

fn shared_json(r: SharedRef) -> Value {
    json!({"id": r.id.to_string(), "initial_shared_version": r.initial_shared_version})
}

fn owned_json(r: OwnedRef) -> Value {
    json!({"id": r.id.to_string(), "version": r.version, "digest": sui_sdk_types::Digest::new(r.digest).to_string()})
}

/// Every registry call, as a Rust `Call` and as the JSON the TypeScript builder reads.
fn calls() -> Vec<(Call, Value)> {
    let cluster = SharedRef {
        id: addr("0xc1"),
        initial_shared_version: 17,
    };
    let stake = SharedRef {
        id: addr("0x57"),
        initial_shared_version: 23,
    };
    let cap = OwnedRef {
        id: addr("0xca"),
        version: 5,
        digest: [9; 32],
    };
    let pcrs = Pcrs {
        pcr0: Pcr::new([0x11; 48]),
        // PCR0 == PCR1, as in real single-ramdisk EIFs: identical pure inputs stay separate.
        pcr1: Pcr::new([0x11; 48]),
        pcr2: Pcr::new([0x13; 48]),
    };
    let document = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/nautilus-weather-2025-04-15.cbor"),
    )
    .unwrap();
    let key = ring::signature::Ed25519KeyPair::from_seed_unchecked(&[1; 32]).unwrap();
    let anchor = SignedAnchor::sign(&key, cluster.id, 42, [0xab; 32], 1_770_065_100_000);
    let settings = ClusterSettings {
        min_stake: 1_000_000_000,
        unstake_cooldown_ms: 86_400_000,
        max_document_age_ms: 300_000,
    };
    let hex48 = |p: &Pcr| hex::encode(p.as_bytes());
    vec![
        (
            Call::CreateCluster {
                name: "demo".into(),
                settings,
            },
            json!({"kind": "create_cluster", "name": "demo", "min_stake": settings.min_stake,
                   "unstake_cooldown_ms": settings.unstake_cooldown_ms,
                   "max_document_age_ms": settings.max_document_age_ms}),
        ),
        (
            Call::AllowImage {
                cluster,
                cap,
                pcrs,
                label: "v1".into(),
                version: 1,
            },
            json!({"kind": "allow_image", "cluster": shared_json(cluster), "cap": owned_json(cap),
                   "pcr0": hex48(&pcrs.pcr0), "pcr1": hex48(&pcrs.pcr1), "pcr2": hex48(&pcrs.pcr2),
                   "label": "v1", "version": 1}),
        ),
        (
            Call::RetireImage {
                cluster,
                cap,
                version: 1,
            },
            json!({"kind": "retire_image", "cluster": shared_json(cluster), "cap": owned_json(cap), "version": 1}),
        ),
        (
            Call::RegisterEnclave {
                cluster,
                document: document.clone(),
            },
            json!({"kind": "register_enclave", "cluster": shared_json(cluster), "document": hex::encode(&document)}),
        ),
        (
            Call::Stake {
                cluster,
                node_name: "node-a".into(),
                amount: 1_500_000_000,
            },
            json!({"kind": "stake", "cluster": shared_json(cluster), "node_name": "node-a", "amount": 1_500_000_000u64}),
        ),
        (
            Call::RequestUnstake { stake, cluster },
            json!({"kind": "request_unstake", "stake": shared_json(stake), "cluster": shared_json(cluster)}),
        ),
        (
            Call::Withdraw { stake, cluster },
            json!({"kind": "withdraw", "stake": shared_json(stake), "cluster": shared_json(cluster)}),
        ),
        (
            Call::Slash {
                cluster,
                cap,
                stake,
                amount: 7,
            },
            json!({"kind": "slash", "cluster": shared_json(cluster), "cap": owned_json(cap), "stake": shared_json(stake), "amount": 7}),
        ),
        (
            Call::RecordAnchor { cluster, anchor },
            json!({"kind": "record_anchor", "cluster": shared_json(cluster), "revision": 42,
                   "chain_hash": hex::encode(anchor.chain_hash), "timestamp_ms": anchor.timestamp_ms,
                   "signature": hex::encode(anchor.signature)}),
        ),
    ]
}

#[test]
fn rust_and_typescript_build_identical_transactions() {
    let ts_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ts");
    assert!(
        ts_dir.join("node_modules/@mysten/sui").exists(),
        "@mysten/sui is not installed: run scripts/setup (npm install in {})",
        ts_dir.display()
    );
    let key = Ed25519PrivateKey::new(SECRET);
    let sender = address_of(&key);
    let gas = GasConfig {
        sender,
        coins: vec![OwnedRef {
            id: addr("0x9a5"),
            version: 3,
            digest: [4; 32],
        }],
        budget: 100_000_000,
        price: 1_000,
    };
    let calls = calls();
    let spec = json!({
        "package": addr(PACKAGE).to_string(),
        "sender_secret": hex::encode(SECRET),
        "gas": {"budget": gas.budget, "price": gas.price,
                "coins": gas.coins.iter().map(|c| owned_json(*c)).collect::<Vec<_>>()},
        "calls": calls.iter().map(|(_, j)| j.clone()).collect::<Vec<_>>(),
    });
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let out = Command::new("node")
        .arg(ts_dir.join("build.mjs"))
        .arg(&spec_path)
        .current_dir(&ts_dir)
        .output()
        .expect("node must be installed");
    assert!(
        out.status.success(),
        "build.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ts: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ts["sender"], sender.to_string(), "sender addresses differ");
    let ts_txs = ts["transactions"].as_array().unwrap();
    assert_eq!(ts_txs.len(), calls.len());
    for ((call, spec), ts_tx) in calls.iter().zip(ts_txs) {
        let kind = &spec["kind"];
        let transaction = tx::build(addr(PACKAGE), call, &gas).unwrap();
        let bytes = bcs::to_bytes(&transaction).unwrap();
        assert_eq!(
            ts_tx["bytes"],
            hex::encode(&bytes),
            "{kind}: BCS bytes differ"
        );
        assert_eq!(
            ts_tx["digest"],
            transaction.digest().to_string(),
            "{kind}: digests differ"
        );
        let signature = key.sign_transaction(&transaction).unwrap();
        assert_eq!(
            ts_tx["signature"],
            signature.to_base64(),
            "{kind}: signatures differ"
        );
    }
}

#[test]
fn keystore_round_trips_in_the_sui_cli_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sui.keystore");
    let keys = vec![
        Ed25519PrivateKey::new(SECRET),
        Ed25519PrivateKey::new([8; 32]),
    ];
    Keystore::new(&path, keys).save().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let entries: Vec<String> = serde_json::from_str(&text).unwrap();
    // Base64 of 0x00 || 32 bytes: 44 characters, starting with "AA" (the Ed25519 flag).
    assert!(
        entries.iter().all(|e| e.len() == 44 && e.starts_with("AA")),
        "{entries:?}"
    );
    let loaded = Keystore::load(&path).unwrap();
    let first = address_of(&Ed25519PrivateKey::new(SECRET));
    assert_eq!(loaded.addresses()[0], first);
    assert_eq!(address_of(loaded.key(None).unwrap()), first);
    let second = loaded.addresses()[1];
    assert_eq!(address_of(loaded.key(Some(second)).unwrap()), second);
    assert!(loaded.key(Some(addr("0x1"))).is_err());

    std::fs::write(&path, r#"["not base64!"]"#).unwrap();
    let err = Keystore::load(&path).unwrap_err();
    assert!(err.to_string().contains("entry 0"), "{err}");
    std::fs::write(&path, r#"{"a": 1}"#).unwrap();
    let err = Keystore::load(&path).unwrap_err();
    assert!(err.to_string().contains("JSON array"), "{err}");
}
