//! The real AWS documents in `tests/data/` verify at their own time with the
//! production verifier, and are rejected outside their certificates' window.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use attestation::{CertPosition, Pcr, Policy, Verifier, VerifyError};

const NAUTILUS: &[u8] = include_bytes!("data/nautilus-weather-2025-04-15.cbor");
const NAUTILUS_TS: u64 = 1_744_683_923_696;
const NAUTILUS_WINDOW: (u64, u64) = (1_744_683_467_000, 1_744_694_270_000);
const FASTCRYPTO: &[u8] = include_bytes!("data/fastcrypto-debug-2024-11-14.cbor");
const FASTCRYPTO_TS: u64 = 1_731_627_989_450;
const FASTCRYPTO_WINDOW: (u64, u64) = (1_731_619_466_000, 1_731_630_269_000);
const HOUR_MS: u64 = 3_600_000;

fn pcr(hex: &str) -> Pcr {
    Pcr::from_hex(hex).unwrap()
}

#[test]
fn nautilus_verifies_at_its_own_time() {
    let doc = Verifier::aws_nitro().verify(NAUTILUS, NAUTILUS_TS).unwrap();
    assert_eq!(doc.timestamp_ms(), NAUTILUS_TS);
    assert!(doc.module_id().starts_with("i-"), "{}", doc.module_id());
    assert!(!doc.is_debug_mode());
    let p01 = pcr(
        "cbe1afb6ed0ff89f10295af0b802247ec5670da8f886e71a4226373b032c322f4e42c9c98288e7211682b258684505a2",
    );
    assert_eq!(doc.pcrs().get(0), Some(&p01));
    assert_eq!(doc.pcrs().get(1), Some(&p01));
    assert_eq!(
        doc.pcrs().get(2),
        Some(&pcr(
            "21b9efbc184807662e966d34f390821309eeac6802309798826296bf3e8bec7c10edb30948c90ba67310f7b964fc500a"
        ))
    );
    assert_eq!(doc.pcrs().len(), 16);
    for i in 5..16 {
        assert!(doc.pcrs().get(i).unwrap().is_zero(), "PCR{i}");
    }
    assert_eq!(
        hex::encode(doc.public_key().unwrap()),
        "e8e62201dbe293b703c759f653107acbc2c911fa1d2e66f2c747bec95971a2af"
    );
    // Encoded as CBOR null in the real document: absent.
    assert_eq!(doc.user_data(), None);
    assert_eq!(doc.nonce(), None);
    assert_eq!(doc.chain_subjects().len(), 5);
    assert!(doc.chain_subjects()[0].contains("aws.nitro-enclaves"));
}

#[test]
fn fastcrypto_verifies_and_is_debug_mode() {
    let doc = Verifier::aws_nitro()
        .verify(FASTCRYPTO, FASTCRYPTO_TS)
        .unwrap();
    assert!(doc.is_debug_mode());
    assert_eq!(
        hex::encode(doc.user_data().unwrap()),
        "5a264748a62368075d34b9494634a3e096e0e48f6647f965b81d2a653de684f2"
    );
    assert_eq!(doc.public_key(), None);
    assert_eq!(doc.nonce(), None);
    assert_eq!(
        doc.pcrs().get(3),
        Some(&pcr(
            "639a8b65f68b0223cbb14a0032487e5656d260434e3d1a10e7ec1407fb86143860717fc8afee90df7a1604111709af46"
        ))
    );
}

#[test]
fn documents_verify_across_their_whole_window() {
    for (doc, (start, end)) in [(NAUTILUS, NAUTILUS_WINDOW), (FASTCRYPTO, FASTCRYPTO_WINDOW)] {
        Verifier::aws_nitro().verify(doc, start).unwrap();
        Verifier::aws_nitro().verify(doc, end).unwrap();
    }
}

#[test]
fn documents_are_rejected_an_hour_outside_their_window() {
    for (doc, (start, end)) in [(NAUTILUS, NAUTILUS_WINDOW), (FASTCRYPTO, FASTCRYPTO_WINDOW)] {
        for at in [end + HOUR_MS, start - HOUR_MS] {
            let err = Verifier::aws_nitro().verify(doc, at).unwrap_err();
            assert!(
                matches!(err, VerifyError::CertificateTime { at_ms, .. } if at_ms == at),
                "{err:?}"
            );
        }
    }
    // The leaf (3 hours) expires first.
    let err = Verifier::aws_nitro()
        .verify(NAUTILUS, NAUTILUS_WINDOW.1 + HOUR_MS)
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::CertificateTime {
                position: CertPosition::Leaf,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn documents_are_rejected_today() {
    let now = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    for doc in [NAUTILUS, FASTCRYPTO] {
        assert!(matches!(
            Verifier::aws_nitro().verify(doc, now),
            Err(VerifyError::CertificateTime { .. })
        ));
    }
}

#[test]
fn production_policy_rejects_debug_mode() {
    let err = Verifier::aws_nitro()
        .verify_with_policy(FASTCRYPTO, FASTCRYPTO_TS, &Policy::new())
        .unwrap_err();
    assert!(matches!(err, VerifyError::DebugMode), "{err:?}");
    Verifier::aws_nitro()
        .verify_with_policy(
            FASTCRYPTO,
            FASTCRYPTO_TS,
            &Policy::new().dangerous_allow_debug(),
        )
        .unwrap();
    Verifier::aws_nitro()
        .verify_with_policy(NAUTILUS, NAUTILUS_TS, &Policy::new())
        .unwrap();
}

#[test]
fn policy_checks_pcrs() {
    let p2 = pcr(
        "21b9efbc184807662e966d34f390821309eeac6802309798826296bf3e8bec7c10edb30948c90ba67310f7b964fc500a",
    );
    let ok = Policy::new().expect_pcr(2, p2);
    Verifier::aws_nitro()
        .verify_with_policy(NAUTILUS, NAUTILUS_TS, &ok)
        .unwrap();
    let wrong = Policy::new().expect_pcr(2, Pcr::measure(b"another image"));
    let err = Verifier::aws_nitro()
        .verify_with_policy(NAUTILUS, NAUTILUS_TS, &wrong)
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::PcrMismatch { index: 2, .. }),
        "{err:?}"
    );
    let absent = Policy::new().expect_pcr(20, Pcr::ZERO);
    let err = Verifier::aws_nitro()
        .verify_with_policy(NAUTILUS, NAUTILUS_TS, &absent)
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::PcrMissing { index: 20 }),
        "{err:?}"
    );
}

#[test]
fn policy_requires_the_callers_nonce() {
    // The real documents carry no nonce.
    let policy = Policy::new().require_nonce(b"challenge".to_vec());
    let err = Verifier::aws_nitro()
        .verify_with_policy(NAUTILUS, NAUTILUS_TS, &policy)
        .unwrap_err();
    assert!(matches!(err, VerifyError::NonceMissing), "{err:?}");
}

#[test]
fn policy_enforces_max_age() {
    let policy = Policy::new().max_age(Duration::from_secs(300));
    Verifier::aws_nitro()
        .verify_with_policy(NAUTILUS, NAUTILUS_TS + 300_000, &policy)
        .unwrap();
    let err = Verifier::aws_nitro()
        .verify_with_policy(NAUTILUS, NAUTILUS_TS + 300_001, &policy)
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::TooOld {
                age_ms: 300_001,
                max_age_ms: 300_000
            }
        ),
        "{err:?}"
    );
    let err = Verifier::aws_nitro()
        .verify_with_policy(NAUTILUS, NAUTILUS_TS - 1, &policy)
        .unwrap_err();
    assert!(matches!(err, VerifyError::FromTheFuture { .. }), "{err:?}");
}

#[test]
fn root_pem_from_testdata_is_the_pinned_root() {
    let pem = include_bytes!("data/aws-nitro-root-g1.pem");
    let verifier = Verifier::dangerous_trust_root_pem(pem).unwrap();
    assert!(verifier.is_aws_nitro());
    assert_eq!(verifier, Verifier::aws_nitro());
}
