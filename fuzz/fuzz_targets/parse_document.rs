//! Fuzz the attestation document parser and the full verifier: any input
//! must produce Ok or Err, never a panic, hang or runaway allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = attestation::ParsedDocument::parse(data);
    // The time of the real nautilus document, so mutations of it reach the
    // chain and signature checks.
    let _ = attestation::Verifier::aws_nitro().verify(data, 1_744_683_923_696);
});
