use super::*;

#[test]
fn placeholder_parse_real() {
    let bytes = include_bytes!("../../tests/data/nautilus-weather-2025-04-15.cbor");
    let parsed = ParsedDocument::parse(bytes).unwrap();
    assert_eq!(parsed.document().timestamp_ms, 1_744_683_923_696);
}
