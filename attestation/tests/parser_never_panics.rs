//! Stable-Rust stand-in for the fuzz target: thousands of deterministic
//! random and mutated inputs go through the parser and the verifier, which
//! must return (Ok or Err) and never panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use attestation::{ParsedDocument, Verifier};
use common::{FASTCRYPTO, NAUTILUS, NAUTILUS_TS, Rng};

fn exercise(input: &[u8]) -> bool {
    let parsed = ParsedDocument::parse(input).is_ok();
    let verified = Verifier::aws_nitro().verify(input, NAUTILUS_TS).is_ok();
    // Anything that verifies must parse.
    assert!(parsed || !verified);
    verified
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = rng.next_u64() as u8;
            }
            2 => {
                let cut = rng.below(out.len() + 1);
                out.truncate(cut);
            }
            3 if !out.is_empty() => {
                let i = rng.below(out.len());
                out.insert(i, rng.next_u64() as u8);
            }
            4 if !out.is_empty() => {
                let i = rng.below(out.len());
                out.remove(i);
            }
            _ => {
                // Interesting CBOR heads: huge lengths, indefinite markers,
                // tags, breaks, deep nesting.
                const HEADS: [&[u8]; 8] = [
                    &[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                    &[0x9b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                    &[0xbf],
                    &[0xff],
                    &[0xd2],
                    &[0x5f, 0x41, 0x00],
                    &[0x81; 64],
                    &[0xfb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0],
                ];
                let head = HEADS[rng.below(HEADS.len())];
                let i = rng.below(out.len() + 1);
                out.splice(i..i, head.iter().copied());
            }
        }
    }
    out
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng::new(0x5eed_0001);
    for _ in 0..3000 {
        let len = rng.below(300);
        let input: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        assert!(!exercise(&input));
    }
}

#[test]
fn mutated_real_documents_never_panic() {
    let mut rng = Rng::new(0x5eed_0002);
    let mut verified = 0;
    for i in 0..10_000 {
        let seed = if i % 2 == 0 { NAUTILUS } else { FASTCRYPTO };
        let input = mutate(&mut rng, seed);
        if exercise(&input) {
            verified += 1;
            assert_eq!(input, NAUTILUS, "a mutated document verified");
        }
    }
    // Mutations that happen to undo themselves can only yield the original.
    assert!(verified < 10_000);
}

#[test]
fn deeply_nested_cbor_does_not_overflow_the_stack() {
    for head in [0x81u8, 0xa1, 0xd8] {
        let mut input = vec![head; 100_000];
        if head == 0xd8 {
            input = [0xd8, 0x20].repeat(5000);
        }
        let _ = ParsedDocument::parse(&input);
        let mut payload_nest = vec![0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0, 0x59, 0x2f, 0x00];
        payload_nest.extend(vec![head; 0x2f00]);
        let _ = ParsedDocument::parse(&payload_nest);
    }
}
