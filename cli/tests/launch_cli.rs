//! `daas launch` refuses an image the registry does not allow before it starts anything: no
//! nitro-cli call (a stand-in records every call it gets), no host service, no state written.
//! The full launch runs under QEMU in `production_qemu.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;

use std::path::Path;

use common::{daas, text};

/// A minimal file with the x86 boot headers of a bzImage.
fn fake_bzimage() -> Vec<u8> {
    let mut k: Vec<u8> = (0..8192u32).map(|i| (i * 31 % 251) as u8).collect();
    k[0x1FE] = 0x55;
    k[0x1FF] = 0xAA;
    k[0x202..0x206].copy_from_slice(b"HdrS");
    k[0x206..0x208].copy_from_slice(&0x020Fu16.to_le_bytes());
    k
}

fn fake_nitro_cli() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/qemu_nitro_cli.py")
}

#[test]
fn an_image_the_registry_does_not_allow_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("bzImage"), fake_bzimage()).unwrap();
    std::fs::write(d.join("init"), b"init").unwrap();
    std::fs::write(d.join("enclave"), b"enclave").unwrap();
    let path = |n: &str| d.join(n).to_str().unwrap().to_owned();
    let build = |out: &str, payload: &str| {
        std::fs::write(d.join("enclave"), payload).unwrap();
        let o = daas(&[
            "image",
            "build",
            "--kernel",
            &path("bzImage"),
            "--init",
            &path("init"),
            "--enclave-bin",
            &path("enclave"),
            "--admin-token-file",
            &path("admin.token"),
            "--out",
            &path(out),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        std::fs::write(d.join(format!("{out}.json")), &o.stdout).unwrap();
    };
    build("allowed.eif", "v1");
    build("other.eif", "v2");
    let registry = format!("local:{}", path("registry.json"));
    // The local registry's admin is an account of a Sui CLI keystore, as on Sui.
    let keystore = path("admin.keystore");
    for args in [
        vec!["registry", "new-account", "--keystore", &keystore],
        vec![
            "registry",
            "init",
            "--registry",
            &registry,
            "--keystore",
            &keystore,
            "--name",
            "launch",
        ],
        vec![
            "registry",
            "allow-image",
            "--registry",
            &registry,
            "--keystore",
            &keystore,
            "--pcrs",
            &path("allowed.eif.json"),
            "--label",
            "v1",
            "--version",
            "1",
        ],
    ] {
        let o = daas(&args);
        assert!(o.status.success(), "{}", text(&o));
    }

    let calls = d.join("nitro-cli-calls");
    let o = std::process::Command::new(common::bin("daas"))
        .args([
            "launch",
            "--eif",
            &path("other.eif"),
            "--registry",
            &registry,
        ])
        .args([
            "--state-dir",
            &path("state"),
            "--admin-token-file",
            &path("admin.token"),
        ])
        .arg("--nitro-cli")
        .arg(fake_nitro_cli())
        .args(["--listen", "127.0.0.1:0"])
        .env("QEMU_NITRO_CLI_LOG", &calls)
        .output()
        .unwrap();
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    let other: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("other.eif.json")).unwrap()).unwrap();
    let pcr0 = other["PCR0"].as_str().unwrap();
    assert!(
        out.contains("other.eif is not an allowed image")
            && out.contains(pcr0)
            && out.contains("nothing was started"),
        "{out}"
    );
    assert!(!calls.exists(), "nitro-cli was called: {out}");
    assert!(
        !d.join("state/journal").exists(),
        "no host service was started"
    );
}
