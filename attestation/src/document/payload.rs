//! CBOR decoding of one item and of the attestation payload map.

use std::collections::BTreeMap;

use ciborium::value::Value;

use super::{
    AttestationDocument, MAX_CERT_LEN, MAX_DOCUMENT_LEN, MAX_PUBLIC_KEY_LEN, MAX_USER_FIELD_LEN,
    Pcr, PcrSet,
};
use crate::error::VerifyError;

/// Decodes exactly one CBOR item from `bytes`: no truncation, no trailing bytes.
pub(super) fn decode_one(what: &'static str, bytes: &[u8]) -> Result<Value, VerifyError> {
    if bytes.len() > MAX_DOCUMENT_LEN {
        return Err(VerifyError::TooLarge {
            what,
            len: bytes.len(),
            max: MAX_DOCUMENT_LEN,
        });
    }
    let mut rest = bytes;
    let value: Value = ciborium::de::from_reader(&mut rest).map_err(|e| match e {
        ciborium::de::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            VerifyError::Truncated { what }
        }
        source => VerifyError::MalformedCbor { what, source },
    })?;
    if !rest.is_empty() {
        return Err(VerifyError::TrailingBytes {
            what,
            count: rest.len(),
        });
    }
    Ok(value)
}

/// The payload fields, each at most once.
#[derive(Default)]
struct Fields {
    module_id: Option<Value>,
    digest: Option<Value>,
    timestamp: Option<Value>,
    pcrs: Option<Value>,
    certificate: Option<Value>,
    cabundle: Option<Value>,
    public_key: Option<Value>,
    user_data: Option<Value>,
    nonce: Option<Value>,
}

impl Fields {
    fn slot(&mut self, name: &str) -> Option<&mut Option<Value>> {
        Some(match name {
            "module_id" => &mut self.module_id,
            "digest" => &mut self.digest,
            "timestamp" => &mut self.timestamp,
            "pcrs" => &mut self.pcrs,
            "certificate" => &mut self.certificate,
            "cabundle" => &mut self.cabundle,
            "public_key" => &mut self.public_key,
            "user_data" => &mut self.user_data,
            "nonce" => &mut self.nonce,
            _ => return None,
        })
    }
}

/// Decodes and checks the payload map. Unknown text keys are ignored (they are
/// signed like everything else); known keys must appear at most once.
pub(super) fn decode_payload(bytes: &[u8]) -> Result<AttestationDocument, VerifyError> {
    let Value::Map(entries) = decode_one("payload", bytes)? else {
        return Err(VerifyError::PayloadNotMap);
    };
    let mut fields = Fields::default();
    let mut seen_unknown = Vec::new();
    for (key, value) in entries {
        let Value::Text(name) = key else {
            return Err(VerifyError::KeyType { map: "payload" });
        };
        match fields.slot(&name) {
            Some(slot) if slot.is_some() => return Err(VerifyError::DuplicateField { name }),
            Some(slot) => *slot = Some(value),
            None if seen_unknown.contains(&name) => {
                return Err(VerifyError::DuplicateField { name });
            }
            None => seen_unknown.push(name),
        }
    }

    let module_id = text(fields.module_id, "module_id")?;
    if module_id.is_empty() {
        return Err(VerifyError::EmptyField { name: "module_id" });
    }
    let digest = text(fields.digest, "digest")?;
    if digest != "SHA384" {
        return Err(VerifyError::UnsupportedDigest { digest });
    }
    let timestamp_ms = match fields.timestamp {
        None => return Err(VerifyError::MissingField { name: "timestamp" }),
        Some(Value::Integer(i)) => {
            u64::try_from(i).map_err(|_| VerifyError::FieldType { name: "timestamp" })?
        }
        Some(_) => return Err(VerifyError::FieldType { name: "timestamp" }),
    };
    if timestamp_ms == 0 {
        return Err(VerifyError::ZeroTimestamp);
    }
    let pcrs = decode_pcrs(fields.pcrs)?;
    let certificate = bytes_field(fields.certificate, "certificate")?;
    check_len("certificate", certificate.len(), 1, MAX_CERT_LEN)?;
    let cabundle = match fields.cabundle {
        None => return Err(VerifyError::MissingField { name: "cabundle" }),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::Bytes(der) => {
                    check_len("cabundle", der.len(), 1, MAX_CERT_LEN)?;
                    Ok(der)
                }
                _ => Err(VerifyError::FieldType { name: "cabundle" }),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(VerifyError::FieldType { name: "cabundle" }),
    };
    if cabundle.is_empty() {
        return Err(VerifyError::EmptyCabundle);
    }
    let public_key = optional_bytes(fields.public_key, "public_key")?;
    if let Some(key) = &public_key {
        check_len("public_key", key.len(), 1, MAX_PUBLIC_KEY_LEN)?;
    }
    let user_data = optional_bytes(fields.user_data, "user_data")?;
    if let Some(data) = &user_data {
        check_len("user_data", data.len(), 0, MAX_USER_FIELD_LEN)?;
    }
    let nonce = optional_bytes(fields.nonce, "nonce")?;
    if let Some(nonce) = &nonce {
        check_len("nonce", nonce.len(), 0, MAX_USER_FIELD_LEN)?;
    }
    Ok(AttestationDocument {
        module_id,
        timestamp_ms,
        pcrs,
        certificate,
        cabundle,
        public_key,
        user_data,
        nonce,
    })
}

fn text(value: Option<Value>, name: &'static str) -> Result<String, VerifyError> {
    match value {
        None => Err(VerifyError::MissingField { name }),
        Some(Value::Text(s)) => Ok(s),
        Some(_) => Err(VerifyError::FieldType { name }),
    }
}

fn bytes_field(value: Option<Value>, name: &'static str) -> Result<Vec<u8>, VerifyError> {
    match value {
        None => Err(VerifyError::MissingField { name }),
        Some(Value::Bytes(b)) => Ok(b),
        Some(_) => Err(VerifyError::FieldType { name }),
    }
}

/// Optional byte fields: absent or CBOR null (real NSM documents encode an
/// absent `user_data`/`nonce` as null) mean "not present".
fn optional_bytes(
    value: Option<Value>,
    name: &'static str,
) -> Result<Option<Vec<u8>>, VerifyError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bytes(b)) => Ok(Some(b)),
        Some(_) => Err(VerifyError::FieldType { name }),
    }
}

fn check_len(name: &'static str, len: usize, min: usize, max: usize) -> Result<(), VerifyError> {
    if len < min {
        return Err(VerifyError::EmptyField { name });
    }
    if len > max {
        return Err(VerifyError::FieldTooLong { name, len, max });
    }
    Ok(())
}

fn decode_pcrs(value: Option<Value>) -> Result<PcrSet, VerifyError> {
    let entries = match value {
        None => return Err(VerifyError::MissingField { name: "pcrs" }),
        Some(Value::Map(entries)) => entries,
        Some(_) => return Err(VerifyError::FieldType { name: "pcrs" }),
    };
    if entries.is_empty() || entries.len() > PcrSet::MAX_PCRS {
        return Err(VerifyError::PcrCount {
            count: entries.len(),
        });
    }
    let mut pcrs = BTreeMap::new();
    for (key, value) in entries {
        let index = match key {
            Value::Integer(i) => {
                u64::try_from(i).map_err(|_| VerifyError::KeyType { map: "pcrs" })?
            }
            _ => return Err(VerifyError::KeyType { map: "pcrs" }),
        };
        let small = u8::try_from(index)
            .ok()
            .filter(|i| usize::from(*i) < PcrSet::MAX_PCRS)
            .ok_or(VerifyError::PcrIndex { index })?;
        let Value::Bytes(bytes) = value else {
            return Err(VerifyError::FieldType { name: "pcrs" });
        };
        let pcr = Pcr::try_from(bytes.as_slice()).map_err(|_| VerifyError::PcrLength {
            index: small,
            len: bytes.len(),
        })?;
        if pcrs.insert(small, pcr).is_some() {
            return Err(VerifyError::DuplicatePcr { index });
        }
    }
    Ok(PcrSet::from_map(pcrs))
}
