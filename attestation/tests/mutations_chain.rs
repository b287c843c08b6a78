//! Certificate-chain mutations of a real AWS document are rejected, each
//! with its own error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use attestation::{CertPosition, Verifier, VerifyError};
use ciborium::value::Value;
use common::*;

fn verify(doc: &[u8]) -> VerifyError {
    Verifier::aws_nitro().verify(doc, NAUTILUS_TS).unwrap_err()
}

#[test]
fn flipped_byte_in_each_certificate() {
    let bundle = cabundle(NAUTILUS);
    let certs: Vec<Vec<u8>> = bundle.iter().cloned().chain([leaf(NAUTILUS)]).collect();
    for (i, cert) in certs.iter().enumerate() {
        // The last byte of a certificate is inside its ECDSA signature.
        let mut doc = NAUTILUS.to_vec();
        let at = find(&doc, cert) + cert.len() - 1;
        doc[at] ^= 0x01;
        let err = verify(&doc);
        if i == 0 {
            assert!(
                matches!(err, VerifyError::UntrustedRoot { .. }),
                "root: {err:?}"
            );
        } else {
            assert!(
                matches!(
                    err,
                    VerifyError::Chain(webpki::Error::InvalidSignatureForPublicKey)
                ),
                "cert {i}: {err:?}"
            );
        }
    }
}

#[test]
fn flipped_byte_in_an_intermediate_public_key() {
    // Changing cabundle[2]'s key breaks the signature on cabundle[3].
    let bundle = cabundle(NAUTILUS);
    let cert = &bundle[2];
    let mut doc = NAUTILUS.to_vec();
    // The P-384 point (0x04 || X || Y) of a subject key.
    let spki_point = find(cert, &[0x03, 0x62, 0x00, 0x04]) + 10;
    let at = find(&doc, cert) + spki_point;
    doc[at] ^= 0x01;
    let err = verify(&doc);
    assert!(
        matches!(
            err,
            VerifyError::Chain(
                webpki::Error::InvalidSignatureForPublicKey | webpki::Error::UnknownIssuer
            )
        ),
        "{err:?}"
    );
}

#[test]
fn substituted_root() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "aws.nitro-enclaves");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let fake = params.self_signed(&key).unwrap();
    let doc = with_cabundle(NAUTILUS, |b| b[0] = Value::Bytes(fake.der().to_vec()));
    let err = verify(&doc);
    let VerifyError::UntrustedRoot { actual_sha256 } = err else {
        panic!("{err:?}")
    };
    assert_eq!(
        actual_sha256.as_slice(),
        ring::digest::digest(&ring::digest::SHA256, fake.der()).as_ref()
    );
    // Even a verifier told to trust the fake root refuses the chain: AWS's
    // regional certificate was not issued by it.
    let err = Verifier::dangerous_trust_root_der(fake.der())
        .verify(&doc, NAUTILUS_TS)
        .unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::ChainOrder {
                position: CertPosition::Cabundle(1)
            }
        ),
        "{err:?}"
    );
}

#[test]
fn reordered_cabundle() {
    let doc = with_cabundle(NAUTILUS, |b| b.swap(1, 2));
    assert!(matches!(
        verify(&doc),
        VerifyError::ChainOrder {
            position: CertPosition::Cabundle(1)
        }
    ));
    let doc = with_cabundle(NAUTILUS, |b| b.reverse());
    assert!(matches!(verify(&doc), VerifyError::UntrustedRoot { .. }));
    let doc = with_cabundle(NAUTILUS, |b| b.swap(2, 3));
    assert!(matches!(
        verify(&doc),
        VerifyError::ChainOrder {
            position: CertPosition::Cabundle(2)
        }
    ));
}

#[test]
fn truncated_cabundle() {
    let doc = with_cabundle(NAUTILUS, |b| {
        b.pop();
    });
    assert!(matches!(
        verify(&doc),
        VerifyError::ChainOrder {
            position: CertPosition::Leaf
        }
    ));
    let doc = with_cabundle(NAUTILUS, |b| b.truncate(1));
    assert!(matches!(
        verify(&doc),
        VerifyError::ChainOrder {
            position: CertPosition::Leaf
        }
    ));
    let doc = with_cabundle(NAUTILUS, |b| {
        b.remove(1);
    });
    assert!(matches!(
        verify(&doc),
        VerifyError::ChainOrder {
            position: CertPosition::Cabundle(1)
        }
    ));
    let doc = with_cabundle(NAUTILUS, |b| b.clear());
    assert!(matches!(verify(&doc), VerifyError::EmptyCabundle));
}

#[test]
fn duplicated_cabundle_entry() {
    let doc = with_cabundle(NAUTILUS, |b| {
        let again = b[2].clone();
        b.insert(2, again);
    });
    assert!(matches!(
        verify(&doc),
        VerifyError::ChainOrder {
            position: CertPosition::Cabundle(3)
        }
    ));
}

#[test]
fn leaf_replaced_by_an_intermediate() {
    let doc = with_payload(NAUTILUS, |m| {
        let inter = cabundle(NAUTILUS)[3].clone();
        *field(m, "certificate") = Value::Bytes(inter);
    });
    assert!(matches!(
        verify(&doc),
        VerifyError::ChainOrder {
            position: CertPosition::Leaf
        }
    ));
}
