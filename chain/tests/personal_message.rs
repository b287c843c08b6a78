//! The join signature is a Sui personal message: `chain`'s ring + blake2 implementation (no
//! Sui SDK) must produce and accept exactly what `sui-crypto` (the Rust SDK) and `@mysten/sui`
//! (the TypeScript SDK, `chain/tests/ts/personal.mjs`) do, byte for byte, with the same
//! addresses, and keystore entries must mean the same keys. Needs `node` and `npm install` in
//! `chain/tests/ts` (done by `scripts/setup`).
#![cfg(feature = "sui")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use chain::{AccountKeystore, SuiAccount, verify_personal_message};
use protocol::join::JoinStatement;
use sui_crypto::ed25519::{Ed25519PrivateKey, Ed25519Verifier};
use sui_crypto::{SuiSigner, SuiVerifier};
use sui_sdk_types::{PersonalMessage, UserSignature};

const SEED: [u8; 32] = [7; 32];

fn statement() -> Vec<u8> {
    JoinStatement::new(
        [0xc1; 32],
        [0x5e; 32],
        [0xca; 32],
        "worker-1",
        vec![1, 2, 3],
    )
    .to_bcs()
}

#[test]
fn signatures_and_addresses_match_the_rust_sdk() {
    let ours = SuiAccount::from_seed(SEED);
    let sdk = Ed25519PrivateKey::new(SEED);
    assert_eq!(
        ours.address().0,
        sdk.public_key().derive_address().into_inner()
    );
    assert_eq!(ours.address(), chain::sui::address_of(&sdk));

    let message = statement();
    let sdk_signature = sdk
        .sign_personal_message(&PersonalMessage(message.clone().into()))
        .unwrap();
    let our_signature = ours.sign_personal_message(&message);
    // Ed25519 is deterministic: the same key and digest give the same bytes.
    assert_eq!(sdk_signature.to_bytes(), our_signature.to_vec());

    // Each side accepts the other's signature, and only for this message.
    assert_eq!(
        verify_personal_message(&sdk_signature.to_bytes(), &message),
        Ok(ours.address())
    );
    let theirs = UserSignature::from_bytes(&our_signature).unwrap();
    Ed25519Verifier::new()
        .verify_personal_message(&PersonalMessage(message.clone().into()), &theirs)
        .unwrap();
    assert!(
        Ed25519Verifier::new()
            .verify_personal_message(&PersonalMessage(b"another".to_vec().into()), &theirs)
            .is_err()
    );
}

#[test]
fn keystore_entries_are_the_sdks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sui.keystore");
    // Written by the SDK's keystore, read by ours, and the other way round.
    chain::sui::Keystore::new(&path, vec![Ed25519PrivateKey::new(SEED)])
        .save()
        .unwrap();
    let ours = AccountKeystore::load(&path).unwrap();
    assert_eq!(
        ours.account(None).unwrap().address(),
        SuiAccount::from_seed(SEED).address()
    );
    let mut fresh = AccountKeystore::load_or_empty(dir.path().join("new.keystore")).unwrap();
    fresh.push(SuiAccount::from_seed([9; 32]));
    fresh.save().unwrap();
    let sdk = chain::sui::Keystore::load(dir.path().join("new.keystore")).unwrap();
    assert_eq!(
        sdk.addresses(),
        vec![SuiAccount::from_seed([9; 32]).address()]
    );
}

#[test]
fn signatures_and_addresses_match_the_typescript_sdk() {
    let ts_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ts");
    assert!(
        ts_dir.join("node_modules/@mysten/sui").exists(),
        "run `npm install` in {} (scripts/setup does)",
        ts_dir.display()
    );
    let account = SuiAccount::from_seed(SEED);
    let message = statement();
    let b64 = base64::engine::general_purpose::STANDARD;
    let rust_signature = b64.encode(account.sign_personal_message(&message));
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.json");
    std::fs::write(
        &spec,
        serde_json::json!({
            "secret": hex::encode(SEED),
            "message": hex::encode(&message),
            "other_message": hex::encode(b"another message"),
            "rust_signature": rust_signature,
        })
        .to_string(),
    )
    .unwrap();
    let out = Command::new("node")
        .arg(ts_dir.join("personal.mjs"))
        .arg(&spec)
        .output()
        .expect("node must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["address"], account.address().to_string());
    assert_eq!(answer["signature"], rust_signature);
    assert_eq!(answer["rust_signer"], account.address().to_string());
    assert_eq!(answer["forged_accepted"], false);
}
