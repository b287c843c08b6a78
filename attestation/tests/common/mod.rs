//! Test helpers: take a real document apart and put it back together with one
//! field changed, so each mutation reaches the check it targets.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use ciborium::value::Value;

pub const NAUTILUS: &[u8] = include_bytes!("../data/nautilus-weather-2025-04-15.cbor");
pub const NAUTILUS_TS: u64 = 1_744_683_923_696;
pub const FASTCRYPTO: &[u8] = include_bytes!("../data/fastcrypto-debug-2024-11-14.cbor");
pub const FASTCRYPTO_TS: u64 = 1_731_627_989_450;

/// The four COSE_Sign1 elements.
#[derive(Debug, Clone)]
pub struct Cose {
    pub protected: Vec<u8>,
    pub unprotected: Value,
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out).unwrap();
    out
}

pub fn split(doc: &[u8]) -> Cose {
    let Value::Array(items) = ciborium::de::from_reader::<Value, _>(doc).unwrap() else {
        panic!("not an array")
    };
    let [p, u, pl, s]: [Value; 4] = items.try_into().unwrap();
    Cose {
        protected: p.into_bytes().unwrap(),
        unprotected: u,
        payload: pl.into_bytes().unwrap(),
        signature: s.into_bytes().unwrap(),
    }
}

pub fn join(c: &Cose) -> Vec<u8> {
    encode(&Value::Array(vec![
        Value::Bytes(c.protected.clone()),
        c.unprotected.clone(),
        Value::Bytes(c.payload.clone()),
        Value::Bytes(c.signature.clone()),
    ]))
}

pub fn entries(payload: &[u8]) -> Vec<(Value, Value)> {
    match ciborium::de::from_reader::<Value, _>(payload).unwrap() {
        Value::Map(m) => m,
        _ => panic!("payload not a map"),
    }
}

/// Encodes a map, definite (`0xa_`) or indefinite (`0xbf ... 0xff`) length.
pub fn encode_map(entries: &[(Value, Value)], indefinite: bool) -> Vec<u8> {
    if !indefinite {
        return encode(&Value::Map(entries.to_vec()));
    }
    let mut out = vec![0xbf];
    for (k, v) in entries {
        out.extend(encode(k));
        out.extend(encode(v));
    }
    out.push(0xff);
    out
}

pub fn field<'a>(entries: &'a mut [(Value, Value)], name: &str) -> &'a mut Value {
    &mut entries
        .iter_mut()
        .find(|(k, _)| k.as_text() == Some(name))
        .unwrap()
        .1
}

/// Re-encodes the document with its payload map edited (signature unchanged).
pub fn with_payload(doc: &[u8], edit: impl FnOnce(&mut Vec<(Value, Value)>)) -> Vec<u8> {
    let mut cose = split(doc);
    let mut map = entries(&cose.payload);
    edit(&mut map);
    cose.payload = encode_map(&map, false);
    join(&cose)
}

/// Re-encodes the document with its cabundle edited.
pub fn with_cabundle(doc: &[u8], edit: impl FnOnce(&mut Vec<Value>)) -> Vec<u8> {
    with_payload(doc, |map| {
        let Value::Array(bundle) = field(map, "cabundle") else {
            panic!("cabundle")
        };
        edit(bundle);
    })
}

pub fn cabundle(doc: &[u8]) -> Vec<Vec<u8>> {
    let mut map = entries(&split(doc).payload);
    let Value::Array(bundle) = field(&mut map, "cabundle").clone() else {
        panic!("cabundle")
    };
    bundle
        .into_iter()
        .map(|v| v.into_bytes().unwrap())
        .collect()
}

pub fn leaf(doc: &[u8]) -> Vec<u8> {
    let mut map = entries(&split(doc).payload);
    field(&mut map, "certificate").clone().into_bytes().unwrap()
}

/// Position of `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}

/// Deterministic xorshift64* generator for mutation loops.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}
