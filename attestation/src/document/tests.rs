use super::*;

const NAUTILUS: &[u8] = include_bytes!("../../tests/data/nautilus-weather-2025-04-15.cbor");
const FASTCRYPTO: &[u8] = include_bytes!("../../tests/data/fastcrypto-debug-2024-11-14.cbor");

#[test]
fn parses_real_documents() {
    let parsed = ParsedDocument::parse(NAUTILUS).unwrap();
    let doc = parsed.document();
    assert_eq!(doc.timestamp_ms, 1_744_683_923_696);
    assert_eq!(doc.cabundle.len(), 4);
    assert_eq!(parsed.signature().len(), SIGNATURE_LEN);
    assert!(!doc.is_debug_mode());
    let debug = ParsedDocument::parse(FASTCRYPTO).unwrap();
    assert!(debug.document().is_debug_mode());
}

#[test]
fn pcr4_is_the_extend_of_the_instance_id() {
    // Nitro facts: PCR4 = SHA384(0^48 || instance id), no pre-hash.
    for bytes in [NAUTILUS, FASTCRYPTO] {
        let parsed = ParsedDocument::parse(bytes).unwrap();
        let doc = parsed.document();
        let instance = doc.module_id.split("-enc").next().unwrap();
        assert_eq!(
            doc.pcrs.get(4),
            Some(&Pcr::ZERO.extend(instance.as_bytes())),
            "{instance}"
        );
    }
}

#[test]
fn signed_data_is_the_sig_structure_over_original_bytes() {
    let parsed = ParsedDocument::parse(NAUTILUS).unwrap();
    let tbs = parsed.signed_data();
    // ["Signature1", h'a1013822', h'', payload]
    assert_eq!(&tbs[..1], &[0x84]);
    assert_eq!(&tbs[1..12], b"\x6aSignature1");
    assert_eq!(&tbs[12..17], &[0x44, 0xa1, 0x01, 0x38, 0x22]);
    assert_eq!(tbs[17], 0x40);
    let payload_start = NAUTILUS.len() - 96 - 2 - (tbs.len() - 18 - 3);
    assert_eq!(&tbs[21..], &NAUTILUS[payload_start..NAUTILUS.len() - 98]);
}

#[test]
fn pcr_measure_is_extend_of_digest() {
    let data = b"kernel";
    let digest = ring::digest::digest(&ring::digest::SHA384, data);
    assert_eq!(Pcr::measure(data), Pcr::ZERO.extend(digest.as_ref()));
    assert!(Pcr::ZERO.is_zero());
    assert!(!Pcr::measure(b"").is_zero());
    assert_eq!(
        Pcr::from_hex(&Pcr::measure(data).to_string()),
        Ok(Pcr::measure(data))
    );
    assert!(Pcr::from_hex("00").is_err());
}
