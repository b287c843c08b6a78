//! The QEMU emulator opt-in: accepted only where asked for, refused by every policy that did not.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use super::*;
use crate::document::qemu_document;
use crate::error::VerifyError;

const AT: u64 = 1_770_000_000_500;

#[test]
fn only_the_emulator_verifier_reads_emulator_documents_and_marks_them() {
    let doc = qemu_document([7; 48], vec![0; 64]);
    // Every root-pinning verifier refuses it as a document (the header is not ES384).
    for verifier in [
        Verifier::aws_nitro(),
        Verifier::dangerous_trust_root_der(b"some root"),
    ] {
        let err = verifier.verify(&doc, AT).unwrap_err();
        assert!(
            matches!(
                err,
                VerifyError::CoseStructure(_) | VerifyError::ProtectedHeader
            ),
            "{err:?}"
        );
    }
    let emulator = Verifier::dangerous_qemu_emulator();
    assert!(emulator.is_qemu_emulator() && !emulator.is_aws_nitro());
    let verified = emulator.verify(&doc, AT).unwrap();
    assert!(verified.is_qemu_emulator());
    assert!(verified.chain_subjects().is_empty());
    assert_eq!(verified.pcrs().get(0).unwrap().as_bytes(), &[7; 48]);
    // A document with a real-looking signature is not an emulator document.
    let err = emulator
        .verify(&qemu_document([7; 48], vec![9; 64]), AT)
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::NotEmulatorDocument { .. }),
        "{err:?}"
    );
}

#[test]
fn every_policy_refuses_emulator_documents_unless_told_otherwise() {
    let doc = qemu_document([7; 48], vec![0; 64]);
    let verified = Verifier::dangerous_qemu_emulator()
        .verify(&doc, AT)
        .unwrap();
    let production = [
        Policy::new(),
        Policy::new().dangerous_allow_debug(),
        Policy::new().expect_pcr(0, crate::Pcr::new([7; 48])),
        Policy::new()
            .require_nonce(vec![2; 16])
            .max_age(Duration::from_secs(60)),
    ];
    for policy in production {
        let err = policy.check(&verified, AT).unwrap_err();
        assert!(matches!(err, VerifyError::EmulatorDocument), "{err:?}");
        assert!(err.to_string().contains("emulator"), "{err}");
    }
    let allowed = Policy::new()
        .dangerous_allow_qemu_emulator()
        .expect_pcr(0, crate::Pcr::new([7; 48]))
        .require_nonce(vec![2; 16]);
    allowed.check(&verified, AT).unwrap();
    // The opt-in does not weaken the other rules.
    let err = Policy::new()
        .dangerous_allow_qemu_emulator()
        .expect_pcr(0, crate::Pcr::new([8; 48]))
        .check(&verified, AT)
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::PcrMismatch { index: 0, .. }),
        "{err:?}"
    );
}
