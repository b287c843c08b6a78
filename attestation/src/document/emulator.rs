//! Documents from QEMU's `nitro-enclave` machine (QEMU >= 9.2, `hw/virtio/virtio-nsm.c`).
//!
//! QEMU emulates the NSM without any key: the COSE_Sign1 has the protected header
//! `{1: -1}` ("not signed"), a 64-byte all-zero signature, and the payload's `certificate`
//! and only `cabundle` entry are 64 zero bytes each. The payload itself is a normal
//! attestation payload (PCRs measured by QEMU from the EIF, the request's `public_key`,
//! `user_data` and `nonce` echoed). Such a document proves nothing about who made it; it is
//! parsed here only for tests that run an enclave image under the emulator, and only a
//! verifier built with [`crate::Verifier::dangerous_qemu_emulator`] reads it.

use ciborium::value::Value;

use super::AttestationDocument;
use super::payload::{decode_one, decode_payload};
use crate::error::VerifyError;

/// The serialized protected header QEMU writes: `{1: -1}`.
const PROTECTED: [u8; 3] = [0xa1, 0x01, 0x20];
/// Length of QEMU's zero signature, certificate and CA bundle entry.
const ZERO_LEN: usize = 64;

fn is_zero64(bytes: &[u8]) -> bool {
    bytes.len() == ZERO_LEN && bytes.iter().all(|b| *b == 0)
}

/// Parses a QEMU emulator document and checks that it has exactly the emulator's unsigned
/// shape; the payload gets the same format and limit checks as a real document's.
pub(crate) fn parse_emulator_document(bytes: &[u8]) -> Result<AttestationDocument, VerifyError> {
    let not = |reason| VerifyError::NotEmulatorDocument { reason };
    let Value::Array(items) = decode_one("document", bytes)? else {
        return Err(not("not a CBOR array of four items"));
    };
    let [protected, unprotected, payload, signature]: [Value; 4] = items
        .try_into()
        .map_err(|_| not("not a CBOR array of four items"))?;
    match protected {
        Value::Bytes(b) if b == PROTECTED => {}
        _ => return Err(not("the protected header is not {1: -1}")),
    }
    match unprotected {
        Value::Map(m) if m.is_empty() => {}
        _ => return Err(not("the unprotected header is not empty")),
    }
    match signature {
        Value::Bytes(b) if is_zero64(&b) => {}
        _ => return Err(not("the signature is not 64 zero bytes")),
    }
    let Value::Bytes(payload) = payload else {
        return Err(not("the payload is not a byte string"));
    };
    let document = decode_payload(&payload)?;
    if !is_zero64(&document.certificate) {
        return Err(not("the certificate is not 64 zero bytes"));
    }
    if document.cabundle.len() != 1 || !document.cabundle.iter().all(|c| is_zero64(c)) {
        return Err(not("the CA bundle is not one entry of 64 zero bytes"));
    }
    Ok(document)
}

/// A document in QEMU's exact layout (definite-length maps, as libcbor writes them), with
/// PCR0 and the signature given.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn qemu_document(pcr0: [u8; 48], signature: Vec<u8>) -> Vec<u8> {
    let payload = Value::Map(vec![
        (
            Value::Text("module_id".into()),
            Value::Text("i-test-enc".into()),
        ),
        (Value::Text("digest".into()), Value::Text("SHA384".into())),
        (
            Value::Text("timestamp".into()),
            Value::Integer(1_770_000_000_000u64.into()),
        ),
        (
            Value::Text("pcrs".into()),
            Value::Map(vec![(
                Value::Integer(0.into()),
                Value::Bytes(pcr0.to_vec()),
            )]),
        ),
        (Value::Text("certificate".into()), Value::Bytes(vec![0; 64])),
        (
            Value::Text("cabundle".into()),
            Value::Array(vec![Value::Bytes(vec![0; 64])]),
        ),
        (Value::Text("public_key".into()), Value::Bytes(vec![1; 32])),
        (Value::Text("user_data".into()), Value::Null),
        (Value::Text("nonce".into()), Value::Bytes(vec![2; 16])),
    ]);
    let mut payload_bytes = Vec::new();
    ciborium::ser::into_writer(&payload, &mut payload_bytes).unwrap();
    let cose = Value::Array(vec![
        Value::Bytes(PROTECTED.to_vec()),
        Value::Map(vec![]),
        Value::Bytes(payload_bytes),
        Value::Bytes(signature),
    ]);
    let mut out = Vec::new();
    ciborium::ser::into_writer(&cose, &mut out).unwrap();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_emulator_layout_parses_and_anything_signed_is_not_one() {
        let doc = parse_emulator_document(&qemu_document([7; 48], vec![0; 64])).unwrap();
        assert_eq!(doc.module_id, "i-test-enc");
        assert_eq!(doc.nonce.as_deref(), Some(&[2u8; 16][..]));
        assert_eq!(doc.user_data, None);
        let err = parse_emulator_document(&qemu_document([7; 48], vec![1; 64])).unwrap_err();
        assert!(
            matches!(err, VerifyError::NotEmulatorDocument { reason } if reason.contains("signature")),
            "{err:?}"
        );
        let err = parse_emulator_document(&qemu_document([7; 48], vec![0; 96])).unwrap_err();
        assert!(
            matches!(err, VerifyError::NotEmulatorDocument { .. }),
            "{err:?}"
        );
        let err = parse_emulator_document(b"\x80").unwrap_err();
        assert!(
            matches!(err, VerifyError::NotEmulatorDocument { .. }),
            "{err:?}"
        );
    }
}
