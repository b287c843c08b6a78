//! `daas attestation verify` on the real AWS documents, through the built binary.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::path::PathBuf;
use std::process::{Command, Output};

const NAUTILUS_TS: &str = "1744683923696";
const FASTCRYPTO_TS: &str = "1731627989450";
const NAUTILUS_PCR2: &str = "21b9efbc184807662e966d34f390821309eeac6802309798826296bf3e8bec7c10edb30948c90ba67310f7b964fc500a";

fn data(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../attestation/tests/data")
        .join(name)
        .to_str()
        .unwrap()
        .to_owned()
}

fn daas(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_daas"))
        .arg("attestation")
        .arg("verify")
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[test]
fn verifies_a_real_document_at_its_own_time() {
    let doc = data("nautilus-weather-2025-04-15.cbor");
    let pcr = format!("2={NAUTILUS_PCR2}");
    let out = daas(&[
        "--document",
        &doc,
        "--at-ms",
        NAUTILUS_TS,
        "--expect-pcr",
        &pcr,
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("VALID"), "{stdout}");
    assert!(stdout.contains("AWS Nitro Enclaves Root-G1"), "{stdout}");
    assert!(stdout.contains(NAUTILUS_PCR2), "{stdout}");
    assert!(stdout.contains("debug mode:  no"), "{stdout}");
}

#[test]
fn json_output_has_the_decoded_fields() {
    let doc = data("nautilus-weather-2025-04-15.cbor");
    let out = daas(&["--document", &doc, "--at-ms", NAUTILUS_TS, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["aws_root"], true);
    assert_eq!(v["timestamp_ms"], 1_744_683_923_696_u64);
    assert_eq!(v["debug_mode"], false);
    assert_eq!(v["pcrs"]["2"], NAUTILUS_PCR2);
    assert_eq!(
        v["public_key"],
        "e8e62201dbe293b703c759f653107acbc2c911fa1d2e66f2c747bec95971a2af"
    );
    assert_eq!(v["nonce"], serde_json::Value::Null);
    assert_eq!(v["chain"].as_array().unwrap().len(), 5);
}

#[test]
fn rejects_a_document_an_hour_after_its_window() {
    let doc = data("nautilus-weather-2025-04-15.cbor");
    let at = (1_744_694_270_000_u64 + 3_600_000).to_string();
    let out = daas(&["--document", &doc, "--at-ms", &at]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("leaf certificate is valid"), "{stderr}");
}

#[test]
fn rejects_debug_mode_unless_allowed() {
    let doc = data("fastcrypto-debug-2024-11-14.cbor");
    let out = daas(&["--document", &doc, "--at-ms", FASTCRYPTO_TS]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("debug-mode enclave"),
        "{}",
        text(&out.stderr)
    );
    let out = daas(&[
        "--document",
        &doc,
        "--at-ms",
        FASTCRYPTO_TS,
        "--allow-debug",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("debug mode:  YES"));
}

#[test]
fn rejects_a_wrong_pcr_and_a_missing_nonce() {
    let doc = data("nautilus-weather-2025-04-15.cbor");
    let wrong = format!("0={}", "00".repeat(48));
    let out = daas(&[
        "--document",
        &doc,
        "--at-ms",
        NAUTILUS_TS,
        "--expect-pcr",
        &wrong,
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("PCR0 is cbe1afb6"),
        "{}",
        text(&out.stderr)
    );
    let out = daas(&[
        "--document",
        &doc,
        "--at-ms",
        NAUTILUS_TS,
        "--nonce",
        "abcd",
        "--json",
    ]);
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert!(v["error"].as_str().unwrap().contains("no nonce"), "{v}");
}

#[test]
fn rejects_a_flipped_signature_and_a_foreign_root() {
    let dir = std::env::temp_dir().join(format!("daas-attestation-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut bytes = std::fs::read(data("nautilus-weather-2025-04-15.cbor")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let bad = dir.join("flipped.cbor");
    std::fs::write(&bad, &bytes).unwrap();
    let out = daas(&["--document", bad.to_str().unwrap(), "--at-ms", NAUTILUS_TS]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("COSE signature does not verify"),
        "{}",
        text(&out.stderr)
    );

    // A PEM block that is not AWS's root: the verifier pins the SHA-256 of
    // its DER, and the real document's cabundle[0] does not match it.
    let foreign = dir.join("foreign.pem");
    std::fs::write(
        &foreign,
        "-----BEGIN CERTIFICATE-----\nMIIBszCCATqgAwIBAgIUAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let doc = data("nautilus-weather-2025-04-15.cbor");
    let out = daas(&[
        "--document",
        &doc,
        "--at-ms",
        NAUTILUS_TS,
        "--root",
        foreign.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is not the trusted root"),
        "{}",
        text(&out.stderr)
    );
    // The AWS root PEM from testdata is accepted as --root.
    let aws = data("aws-nitro-root-g1.pem");
    let out = daas(&["--document", &doc, "--at-ms", NAUTILUS_TS, "--root", &aws]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_arguments_are_clear_errors() {
    let doc = data("nautilus-weather-2025-04-15.cbor");
    let out = daas(&[
        "--document",
        &doc,
        "--at-ms",
        NAUTILUS_TS,
        "--expect-pcr",
        "0=abcd",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("96 hex digits"),
        "{}",
        text(&out.stderr)
    );
    let out = daas(&[
        "--document",
        &doc,
        "--at-ms",
        NAUTILUS_TS,
        "--expect-pcr",
        "40=00",
    ]);
    assert!(
        text(&out.stderr).contains("out of range"),
        "{}",
        text(&out.stderr)
    );
    let out = daas(&["--document", "/nonexistent/doc.cbor", "--at-ms", "1"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("reading /nonexistent/doc.cbor"),
        "{}",
        text(&out.stderr)
    );
    let out = daas(&["--document", &doc]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--at-ms"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn simulated_documents_verify_only_with_their_dev_root() {
    let dir = std::env::temp_dir().join(format!("daas-attestation-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let doc = dir.join("sim.cbor");
    let root = dir.join("dev-root.pem");
    let out = Command::new(env!("CARGO_BIN_EXE_daas"))
        .args(["attestation", "simulate", "--nonce", "0102"])
        .arg("--out")
        .arg(&doc)
        .arg("--root-out")
        .arg(&root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let at = stdout
        .lines()
        .find_map(|l| l.strip_prefix("timestamp: "))
        .and_then(|l| l.strip_suffix(" ms"))
        .unwrap()
        .to_owned();
    let (doc, root) = (doc.to_str().unwrap(), root.to_str().unwrap());
    let out = daas(&[
        "--document",
        doc,
        "--at-ms",
        &at,
        "--root",
        root,
        "--nonce",
        "0102",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["aws_root"], false);
    assert_eq!(v["nonce"], "0102");
    assert_eq!(v["debug_mode"], false);
    // The production root refuses it.
    let out = daas(&["--document", doc, "--at-ms", &at]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("is not the trusted root"),
        "{}",
        text(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
