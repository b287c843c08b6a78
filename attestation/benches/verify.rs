//! Verifications per second on a real AWS document (`cargo bench -p
//! attestation`): full verification (parse, root pin, chain order, validity,
//! key usage, webpki path of four signatures, ES384), parsing alone, and the
//! dev simulator issuing documents. Single-threaded; prints one line each.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use attestation::{AttestationRequest, DevRoot, ParsedDocument, Pcr, SimNsm, Verifier};

const NAUTILUS: &[u8] = include_bytes!("../tests/data/nautilus-weather-2025-04-15.cbor");
const NAUTILUS_TS: u64 = 1_744_683_923_696;

/// Runs `f` for at least `budget` (after a warm-up) and returns ops/s.
fn rate(name: &str, budget: Duration, mut f: impl FnMut()) -> f64 {
    for _ in 0..20 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..10 {
            f();
        }
        n += 10;
    }
    let secs = start.elapsed().as_secs_f64();
    let per_sec = n as f64 / secs;
    println!(
        "{name:<40} {per_sec:>10.0} /s  ({n} in {secs:.2} s, {:.1} us each)",
        secs * 1e6 / n as f64
    );
    per_sec
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this
    // binary without it, and then one short round is enough to prove it works.
    let measuring = std::env::args().any(|a| a == "--bench");
    let budget = if measuring {
        Duration::from_secs(
            std::env::var("BENCH_SECS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(3),
        )
    } else {
        Duration::ZERO
    };
    let verifier = Verifier::aws_nitro();
    rate("verify real AWS document (full)", budget, || {
        black_box(verifier.verify(black_box(NAUTILUS), NAUTILUS_TS).unwrap());
    });
    rate("parse real AWS document (no crypto)", budget, || {
        black_box(ParsedDocument::parse(black_box(NAUTILUS)).unwrap());
    });
    let sim = SimNsm::with_image_pcrs(
        DevRoot::generate().unwrap(),
        Pcr::measure(b"bench image"),
        Pcr::measure(b"bench kernel"),
        Pcr::measure(b"bench app"),
    );
    rate("SimNsm issue document (4 certs + sign)", budget, || {
        black_box(
            sim.document_at(
                AttestationRequest::new().nonce(vec![1; 32]),
                SystemTime::now(),
            )
            .unwrap(),
        );
    });
}
