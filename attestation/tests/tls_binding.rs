//! Attested TLS identity: a document binds the TLS certificate's key, and the
//! client-side check accepts that certificate and no other.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::SystemTime;

use attestation::{
    AttestationRequest, DevRoot, Error, Policy, SimNsm, Verifier, attest_certificate,
    check_tls_binding, spki_sha256,
};
use x509_cert::der::{Decode, Encode};

fn tls_cert() -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params = rcgen::CertificateParams::new(vec!["enclave.k3s-daas.local".to_owned()]).unwrap();
    params.self_signed(&key).unwrap().der().to_vec()
}

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
fn spki_hash_matches_an_independent_encoding() {
    let cert = tls_cert();
    let parsed = x509_cert::Certificate::from_der(&cert).unwrap();
    let spki = parsed
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .unwrap();
    let expected = ring::digest::digest(&ring::digest::SHA256, &spki);
    assert_eq!(spki_sha256(&cert).unwrap().as_slice(), expected.as_ref());
    assert!(matches!(
        spki_sha256(b"not a cert"),
        Err(Error::Certificate(_))
    ));
}

#[tokio::test]
async fn document_binds_the_tls_certificate() {
    let nsm = SimNsm::new(DevRoot::generate().unwrap()).unwrap();
    let cert = tls_cert();
    let nonce = b"client challenge".to_vec();
    let doc = attest_certificate(&nsm, &cert, nonce.clone())
        .await
        .unwrap();
    let verified = Verifier::dangerous_trust_root_der(nsm.root().cert_der())
        .verify_with_policy(&doc, now_ms(), &Policy::new().require_nonce(nonce))
        .unwrap();
    assert_eq!(
        verified.public_key(),
        Some(spki_sha256(&cert).unwrap().as_slice())
    );
    check_tls_binding(&cert, &verified).unwrap();

    // A man in the middle presenting its own certificate is caught.
    let other = tls_cert();
    assert!(matches!(
        check_tls_binding(&other, &verified),
        Err(Error::TlsBindingMismatch)
    ));
    assert!(matches!(
        check_tls_binding(b"garbage", &verified),
        Err(Error::Certificate(_))
    ));
}

#[tokio::test]
async fn document_without_binding_is_refused() {
    let nsm = SimNsm::new(DevRoot::generate().unwrap()).unwrap();
    let doc = nsm
        .document_at(AttestationRequest::new(), SystemTime::now())
        .unwrap();
    let verified = Verifier::dangerous_trust_root_der(nsm.root().cert_der())
        .verify(&doc, now_ms())
        .unwrap();
    assert!(matches!(
        check_tls_binding(&tls_cert(), &verified),
        Err(Error::TlsBindingMissing)
    ));
}

#[tokio::test]
async fn oversized_nonce_is_refused_before_the_nsm() {
    let nsm = SimNsm::new(DevRoot::generate().unwrap()).unwrap();
    let err = attest_certificate(&nsm, &tls_cert(), vec![0; 600])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NsmRequestTooLarge {
                field: "nonce",
                len: 600,
                ..
            }
        ),
        "{err:?}"
    );
}
