//! `public_key` up to AWS's 1024 bytes: a document binding an RSA-4096 public key in PEM (800
//! bytes, as real AWS-signed documents carry) is made by the simulated NSM and verifies; 1025
//! bytes is refused by the NSM request check.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::SystemTime;

use attestation::{
    AttestationRequest, DevRoot, Error, MAX_PUBLIC_KEY_LEN, Policy, SimNsm, Verifier,
};

/// An RSA-4096 SubjectPublicKeyInfo in PEM, made with `openssl genrsa 4096` + `openssl rsa -pubout`.
const RSA4096_PEM: &[u8] = include_bytes!("data/rsa4096-public.pem");

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

#[test]
fn an_800_byte_rsa_4096_pem_public_key_verifies() {
    assert_eq!(RSA4096_PEM.len(), 800);
    assert!(RSA4096_PEM.starts_with(b"-----BEGIN PUBLIC KEY-----"));
    let nsm = SimNsm::new(DevRoot::generate().unwrap()).unwrap();
    let document = nsm
        .document_at(
            AttestationRequest::new()
                .public_key(RSA4096_PEM.to_vec())
                .nonce(vec![3; 20]),
            SystemTime::now(),
        )
        .unwrap();
    let verified = Verifier::dangerous_trust_root_der(nsm.root().cert_der())
        .verify_with_policy(
            &document,
            now_ms(),
            &Policy::new().require_nonce(vec![3; 20]),
        )
        .unwrap();
    assert_eq!(verified.public_key(), Some(RSA4096_PEM));
}

#[test]
fn public_keys_up_to_1024_bytes_are_accepted_and_longer_are_refused() {
    let nsm = SimNsm::new(DevRoot::generate().unwrap()).unwrap();
    let verifier = Verifier::dangerous_trust_root_der(nsm.root().cert_der());
    let document = nsm
        .document_at(
            AttestationRequest::new().public_key(vec![0x42; MAX_PUBLIC_KEY_LEN]),
            SystemTime::now(),
        )
        .unwrap();
    let verified = verifier.verify(&document, now_ms()).unwrap();
    assert_eq!(verified.public_key().map(<[u8]>::len), Some(1024));
    let err = nsm
        .document_at(
            AttestationRequest::new().public_key(vec![0x42; MAX_PUBLIC_KEY_LEN + 1]),
            SystemTime::now(),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NsmRequestTooLarge {
                field: "public_key",
                len: 1025,
                max: 1024
            }
        ),
        "{err:?}"
    );
}
