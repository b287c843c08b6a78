//! Every mutation of a real AWS document is rejected, each with its own error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use attestation::{ParsedDocument, Verifier, VerifyError};
use ciborium::value::Value;
use common::*;

fn verify(doc: &[u8]) -> VerifyError {
    Verifier::aws_nitro().verify(doc, NAUTILUS_TS).unwrap_err()
}

#[test]
fn reencoding_unchanged_fields_keeps_the_document_valid() {
    // The helpers themselves do not break anything: a definite-length
    // re-encoding of the nautilus payload is byte-identical.
    let same = with_payload(NAUTILUS, |_| {});
    assert_eq!(same, NAUTILUS);
    Verifier::aws_nitro().verify(&same, NAUTILUS_TS).unwrap();
}

#[test]
fn flipped_signature_byte() {
    for i in [0usize, 47, 48, 95] {
        let mut doc = NAUTILUS.to_vec();
        let at = doc.len() - 96 + i;
        doc[at] ^= 0x01;
        assert!(
            matches!(verify(&doc), VerifyError::BadSignature),
            "byte {i}"
        );
    }
}

#[test]
fn flipped_payload_byte() {
    let mut doc = NAUTILUS.to_vec();
    let at = find(&doc, b"i-0");
    doc[at + 5] ^= 0x01; // inside module_id
    assert!(matches!(verify(&doc), VerifyError::BadSignature));
    let mut doc = NAUTILUS.to_vec();
    let at = find(&doc, &hex::decode("21b9efbc184807662e966d34").unwrap());
    doc[at] ^= 0x80; // inside PCR2
    assert!(matches!(verify(&doc), VerifyError::BadSignature));
}

#[test]
fn truncated_document() {
    for cut in [1, 96, NAUTILUS.len() / 2, NAUTILUS.len() - 1] {
        let err = verify(&NAUTILUS[..NAUTILUS.len() - cut]);
        assert!(
            matches!(err, VerifyError::Truncated { what: "document" }),
            "cut {cut}: {err:?}"
        );
    }
    assert!(matches!(verify(&[]), VerifyError::Truncated { .. }));
}

#[test]
fn truncated_payload() {
    let mut cose = split(NAUTILUS);
    cose.payload.truncate(cose.payload.len() - 10);
    let err = verify(&join(&cose));
    assert!(
        matches!(err, VerifyError::Truncated { what: "payload" }),
        "{err:?}"
    );
}

#[test]
fn trailing_bytes() {
    let mut doc = NAUTILUS.to_vec();
    doc.push(0x00);
    assert!(matches!(
        verify(&doc),
        VerifyError::TrailingBytes {
            what: "document",
            count: 1
        }
    ));
    let mut cose = split(NAUTILUS);
    cose.payload.extend([0xf6, 0xf6]);
    assert!(matches!(
        verify(&join(&cose)),
        VerifyError::TrailingBytes {
            what: "payload",
            count: 2
        }
    ));
}

#[test]
fn tagged_document_is_rejected() {
    // The NSM emits untagged COSE_Sign1 (both real documents start 0x84), so
    // this verifier accepts exactly that and refuses tag 18.
    assert_eq!(NAUTILUS[0], 0x84);
    assert_eq!(FASTCRYPTO[0], 0x84);
    let mut doc = vec![0xd2];
    doc.extend_from_slice(NAUTILUS);
    assert!(matches!(verify(&doc), VerifyError::Tagged { tag: 18 }));
    let mut doc = vec![0xd8, 0x62]; // tag 98, COSE_Sign
    doc.extend_from_slice(NAUTILUS);
    assert!(matches!(verify(&doc), VerifyError::Tagged { tag: 98 }));
}

#[test]
fn duplicate_payload_field() {
    for name in ["module_id", "timestamp", "nonce", "cabundle"] {
        let doc = with_payload(NAUTILUS, |m| {
            let entry = m
                .iter()
                .find(|(k, _)| k.as_text() == Some(name))
                .unwrap()
                .clone();
            m.push(entry);
        });
        let err = verify(&doc);
        assert!(
            matches!(&err, VerifyError::DuplicateField { name: n } if n == name),
            "{name}: {err:?}"
        );
    }
}

#[test]
fn duplicate_pcr_index() {
    let doc = with_payload(NAUTILUS, |m| {
        let Value::Map(pcrs) = field(m, "pcrs") else {
            panic!()
        };
        let first = pcrs[0].clone();
        pcrs.push(first);
    });
    assert!(matches!(
        verify(&doc),
        VerifyError::DuplicatePcr { index: 0 }
    ));
}

#[test]
fn duplicate_protected_header_label() {
    let mut cose = split(NAUTILUS);
    cose.protected = vec![0xa2, 0x01, 0x38, 0x22, 0x01, 0x38, 0x22];
    let err = verify(&join(&cose));
    assert!(
        matches!(
            err,
            VerifyError::CoseStructure(coset::CoseError::DuplicateMapKey)
        ),
        "{err:?}"
    );
}

#[test]
fn oversized_fields() {
    // user_data and nonce: AWS's validation rules cap them at 512 bytes; public_key at 1024.
    for (name, len, max) in [
        ("user_data", 513, 512),
        ("nonce", 513, 512),
        ("public_key", 1025, 1024),
    ] {
        let doc = with_payload(NAUTILUS, |m| *field(m, name) = Value::Bytes(vec![7; len]));
        let err = verify(&doc);
        assert!(
            matches!(err, VerifyError::FieldTooLong { name: n, len: l, max: m } if n == name && l == len && m == max),
            "{name}: {err:?}"
        );
    }
    // The largest allowed sizes are fine for parsing (the signature then fails).
    for (name, len) in [("user_data", 512), ("public_key", 1024)] {
        let doc = with_payload(NAUTILUS, |m| *field(m, name) = Value::Bytes(vec![7; len]));
        assert!(matches!(verify(&doc), VerifyError::BadSignature), "{name}");
    }
    let doc = with_cabundle(NAUTILUS, |b| b[2] = Value::Bytes(vec![0x30; 1025]));
    assert!(matches!(
        verify(&doc),
        VerifyError::FieldTooLong {
            name: "cabundle",
            len: 1025,
            ..
        }
    ));
    let doc = with_payload(NAUTILUS, |m| {
        *field(m, "certificate") = Value::Bytes(vec![0x30; 1025])
    });
    assert!(matches!(
        verify(&doc),
        VerifyError::FieldTooLong {
            name: "certificate",
            ..
        }
    ));
    let mut big = NAUTILUS.to_vec();
    big.resize(attestation::MAX_DOCUMENT_LEN + 1, 0);
    assert!(matches!(
        verify(&big),
        VerifyError::TooLarge {
            what: "document",
            ..
        }
    ));
}

#[test]
fn wrong_field_values() {
    type Expect = fn(&VerifyError) -> bool;
    let cases: Vec<(&str, Value, Expect)> = vec![
        (
            "digest",
            Value::Text("SHA256".into()),
            |e| matches!(e, VerifyError::UnsupportedDigest { digest } if digest == "SHA256"),
        ),
        ("timestamp", Value::Integer(0.into()), |e| {
            matches!(e, VerifyError::ZeroTimestamp)
        }),
        ("timestamp", Value::Integer((-5).into()), |e| {
            matches!(e, VerifyError::FieldType { name: "timestamp" })
        }),
        ("module_id", Value::Text(String::new()), |e| {
            matches!(e, VerifyError::EmptyField { name: "module_id" })
        }),
        ("module_id", Value::Bytes(b"i-0".to_vec()), |e| {
            matches!(e, VerifyError::FieldType { name: "module_id" })
        }),
        ("public_key", Value::Bytes(vec![]), |e| {
            matches!(e, VerifyError::EmptyField { name: "public_key" })
        }),
        ("nonce", Value::Text("abc".into()), |e| {
            matches!(e, VerifyError::FieldType { name: "nonce" })
        }),
        ("pcrs", Value::Map(vec![]), |e| {
            matches!(e, VerifyError::PcrCount { count: 0 })
        }),
        (
            "pcrs",
            Value::Map(vec![(Value::Integer(32.into()), Value::Bytes(vec![0; 48]))]),
            |e| matches!(e, VerifyError::PcrIndex { index: 32 }),
        ),
        (
            "pcrs",
            Value::Map(vec![(Value::Integer(0.into()), Value::Bytes(vec![0; 32]))]),
            |e| matches!(e, VerifyError::PcrLength { index: 0, len: 32 }),
        ),
        (
            "pcrs",
            Value::Map(vec![(Value::Text("0".into()), Value::Bytes(vec![0; 48]))]),
            |e| matches!(e, VerifyError::KeyType { map: "pcrs" }),
        ),
        ("cabundle", Value::Bytes(vec![1]), |e| {
            matches!(e, VerifyError::FieldType { name: "cabundle" })
        }),
    ];
    for (name, value, expect) in cases {
        let doc = with_payload(NAUTILUS, |m| *field(m, name) = value.clone());
        let err = verify(&doc);
        assert!(expect(&err), "{name} = {value:?}: {err:?}");
    }
}

#[test]
fn missing_fields() {
    for name in [
        "module_id",
        "digest",
        "timestamp",
        "pcrs",
        "certificate",
        "cabundle",
    ] {
        let doc = with_payload(NAUTILUS, |m| m.retain(|(k, _)| k.as_text() != Some(name)));
        let err = verify(&doc);
        assert!(
            matches!(err, VerifyError::MissingField { name: n } if n == name),
            "{name}: {err:?}"
        );
    }
    // Optional fields may be absent.
    let doc = with_payload(NAUTILUS, |m| {
        m.retain(|(k, _)| !matches!(k.as_text(), Some("nonce" | "user_data" | "public_key")));
    });
    assert!(matches!(verify(&doc), VerifyError::BadSignature));
}

#[test]
fn non_text_payload_key() {
    let doc = with_payload(NAUTILUS, |m| {
        m.push((Value::Integer(1.into()), Value::Null))
    });
    assert!(matches!(
        verify(&doc),
        VerifyError::KeyType { map: "payload" }
    ));
}

#[test]
fn cose_header_and_shape() {
    let mut cose = split(NAUTILUS);
    cose.protected = vec![0xa1, 0x01, 0x26]; // ES256
    assert!(matches!(verify(&join(&cose)), VerifyError::ProtectedHeader));
    let mut cose = split(NAUTILUS);
    cose.protected = vec![0xa2, 0x01, 0x38, 0x22, 0x04, 0x41, 0x00]; // + kid
    assert!(matches!(verify(&join(&cose)), VerifyError::ProtectedHeader));
    let mut cose = split(NAUTILUS);
    cose.unprotected = Value::Map(vec![(Value::Integer(4.into()), Value::Bytes(vec![1]))]);
    assert!(matches!(
        verify(&join(&cose)),
        VerifyError::UnprotectedHeader
    ));
    let mut cose = split(NAUTILUS);
    cose.signature.truncate(64);
    assert!(matches!(
        verify(&join(&cose)),
        VerifyError::SignatureLength { len: 64 }
    ));
    let cose = split(NAUTILUS);
    let detached = encode(&Value::Array(vec![
        Value::Bytes(cose.protected.clone()),
        cose.unprotected.clone(),
        Value::Null,
        Value::Bytes(cose.signature.clone()),
    ]));
    assert!(matches!(verify(&detached), VerifyError::MissingPayload));
    let three = encode(&Value::Array(vec![
        Value::Bytes(cose.protected.clone()),
        cose.unprotected.clone(),
        Value::Bytes(cose.payload.clone()),
    ]));
    assert!(matches!(verify(&three), VerifyError::CoseStructure(_)));
    let mut not_map = cose.clone();
    not_map.payload = encode(&Value::Array(vec![]));
    assert!(matches!(
        verify(&join(&not_map)),
        VerifyError::PayloadNotMap
    ));
}

#[test]
fn indefinite_and_definite_payload_maps_decode_alike() {
    let cose = split(NAUTILUS);
    assert_eq!(
        cose.payload[0] & 0xe0,
        0xa0,
        "nautilus payload is a definite map"
    );
    let definite = ParsedDocument::parse(NAUTILUS).unwrap();
    let mut indefinite = cose.clone();
    indefinite.payload = encode_map(&entries(&cose.payload), true);
    assert_eq!(indefinite.payload[0], 0xbf);
    let parsed = ParsedDocument::parse(&join(&indefinite)).unwrap();
    assert_eq!(parsed.document(), definite.document());
    // Re-encoding changes the signed bytes, so the signature no longer holds.
    assert!(matches!(
        verify(&join(&indefinite)),
        VerifyError::BadSignature
    ));
}

#[test]
fn every_single_byte_flip_is_rejected() {
    // Every byte of the document is covered by the structure, the chain or
    // the COSE signature: no single-bit change may verify.
    for i in 0..NAUTILUS.len() {
        let mut doc = NAUTILUS.to_vec();
        doc[i] ^= 0x01;
        assert!(
            Verifier::aws_nitro().verify(&doc, NAUTILUS_TS).is_err(),
            "flip at {i} verified"
        );
    }
}
