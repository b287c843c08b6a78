//! The digest a registry records for an attestation document.
//!
//! On chain, `register_enclave` only sees the parsed `NitroAttestationDocument`, so it records
//! `blake2b256(bcs(document))`. This is the same computation on the Rust side, with the PCR list
//! as Sui's parser returns it: entries 0, 1, 2, 3, 4 and 8, in that order, when present.
//! (Sui protocol flags can make the parser return more PCRs; the on-chain record is then the
//! authority and this value differs.)

use attestation::AttestationDocument;
use blake2::Digest as _;
use serde::Serialize;

/// The PCR indices Sui's parser reports, in its order.
const SUI_PCR_INDICES: [u8; 6] = [0, 1, 2, 3, 4, 8];

#[derive(Serialize)]
struct PcrEntry<'a> {
    index: u8,
    value: &'a [u8],
}

#[derive(Serialize)]
struct NitroAttestationDocument<'a> {
    module_id: &'a [u8],
    timestamp: u64,
    digest: &'a [u8],
    pcrs: Vec<PcrEntry<'a>>,
    public_key: Option<&'a [u8]>,
    user_data: Option<&'a [u8]>,
    nonce: Option<&'a [u8]>,
}

/// `blake2b256(bcs(NitroAttestationDocument))` of a parsed document.
#[must_use]
pub fn document_digest(document: &AttestationDocument) -> [u8; 32] {
    let pcrs = SUI_PCR_INDICES
        .iter()
        .filter_map(|&index| {
            document.pcrs.get(index).map(|p| PcrEntry {
                index,
                value: p.as_bytes(),
            })
        })
        .collect();
    let doc = NitroAttestationDocument {
        module_id: document.module_id.as_bytes(),
        timestamp: document.timestamp_ms,
        digest: b"SHA384",
        pcrs,
        public_key: document.public_key.as_deref(),
        user_data: document.user_data.as_deref(),
        nonce: document.nonce.as_deref(),
    };
    // BCS of byte strings, integers and options cannot fail.
    let bytes = bcs::to_bytes(&doc).unwrap_or_default();
    blake2::Blake2b::<blake2::digest::consts::U32>::digest(&bytes).into()
}
