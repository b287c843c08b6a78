//! The workspace's crates depend on each other as `docs/architecture.md` draws
//! them: read from `cargo metadata`, so a new arrow against the design fails
//! here rather than in a review.
#![allow(clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Each workspace crate's normal (not dev) dependencies on other workspace crates.
fn arrows() -> BTreeMap<String, BTreeSet<String>> {
    let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace)
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let names: BTreeSet<String> = packages
        .iter()
        .filter_map(|p| p["name"].as_str().map(String::from))
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| d["name"].as_str())
                .filter(|d| names.contains(*d))
                .map(String::from)
                .collect();
            (p["name"].as_str().unwrap_or_default().to_string(), deps)
        })
        .collect()
}

#[test]
fn no_arrow_goes_against_the_design() {
    let arrows = arrows();
    let expect = |krate: &str, allowed: &[&str]| {
        let deps = arrows
            .get(krate)
            .unwrap_or_else(|| panic!("{krate} is a workspace crate"));
        let extra: Vec<&String> = deps
            .iter()
            .filter(|d| !allowed.contains(&d.as_str()))
            .collect();
        assert!(
            extra.is_empty(),
            "{krate} depends on {extra:?}, against the design"
        );
    };
    // The trusted computing base: no host, worker, image, cli or bench code.
    expect(
        "enclave",
        &[
            "attestation",
            "chain",
            "protocol",
            "registry",
            "spdy",
            "store",
        ],
    );
    // The registry's pure half names the store for its error type only.
    expect("registry", &["store"]);
    expect("store", &["attestation", "protocol"]);
    expect("protocol", &[]);
    expect("init", &["protocol"]);
    // `daas` runs the benchmarks as a separate binary: it links no enclave code.
    expect(
        "cli",
        &[
            "attestation",
            "chain",
            "host",
            "image",
            "protocol",
            "worker",
        ],
    );
    for (krate, deps) in &arrows {
        for leaf in ["cli", "bench"] {
            assert!(!deps.contains(leaf), "{krate} depends on {leaf}");
        }
    }
}
