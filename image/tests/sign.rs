//! Signed images: PCR8 and the signature section, checked against an independent reading
//! (tests/independent_eif.py) and certificates made by OpenSSL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure

use std::path::{Path, PathBuf};
use std::process::Command;

use image::{EifImage, Error, ImageSpec, SigningIdentity};
use serde_json::Value;

fn fake_bzimage() -> Vec<u8> {
    let mut k = vec![0x11u8; 4096];
    k[0x1FE] = 0x55;
    k[0x1FF] = 0xAA;
    k[0x202..0x206].copy_from_slice(b"HdrS");
    k
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed certificate and PKCS#8 key on `curve`, made by OpenSSL.
fn key_and_cert(dir: &Path, name: &str, curve: &str) -> (PathBuf, PathBuf) {
    let key = format!("{name}.key");
    let cert = format!("{name}.pem");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            &format!("ec_paramgen_curve:{curve}"),
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-days",
            "1",
            "-subj",
            "/CN=daas-test",
        ],
    );
    (dir.join(key), dir.join(cert))
}

struct Inputs {
    dir: tempfile::TempDir,
    spec: ImageSpec,
}

fn inputs() -> Inputs {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(p.join("bzImage"), fake_bzimage()).unwrap();
    std::fs::write(p.join("init"), b"init").unwrap();
    std::fs::write(p.join("enclave"), b"enclave").unwrap();
    let spec = ImageSpec::new(p.join("bzImage"), p.join("init"), p.join("enclave"));
    Inputs { dir, spec }
}

fn independent(eif: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/independent_eif.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(eif)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn signed_image_has_pcr8_and_a_signature_over_pcr0() {
    let i = inputs();
    let (key, cert) = key_and_cert(i.dir.path(), "signer", "secp384r1");
    let unsigned = i.spec.clone().build(|_| {}).unwrap();
    let signed = i
        .spec
        .clone()
        .with_signing(&key, &cert)
        .build(|_| {})
        .unwrap();
    let m = &signed.measurements;
    assert_eq!(m.pcr0, unsigned.measurements.pcr0);
    assert_eq!(m.pcr1, unsigned.measurements.pcr1);
    assert_eq!(m.pcr2, unsigned.measurements.pcr2);
    let pcr8 = m.pcr8.expect("signed image has PCR8");

    let path = i.dir.path().join("signed.eif");
    std::fs::write(&path, &signed.bytes).unwrap();
    let py = independent(&path);
    assert_eq!(py["crc_ok"], true);
    assert_eq!(py["sections"][5][0], 4, "signature section last");
    assert_eq!(py["PCR8"], pcr8.to_hex());
    assert_eq!(py["PCR0"], m.pcr0.to_hex());
    assert_eq!(py["signed_pcr_index"], 0);
    assert_eq!(py["signed_pcr_value"], m.pcr0.to_hex());
    assert_eq!(py["cose_protected"]["1"], -35, "alg ES384");
    assert_eq!(py["signature_len"], 96);

    // PCR8 is the measurement of the DER certificate, as OpenSSL encodes it.
    openssl(
        i.dir.path(),
        &[
            "x509",
            "-in",
            "signer.pem",
            "-outform",
            "DER",
            "-out",
            "signer.der",
        ],
    );
    let der = std::fs::read(i.dir.path().join("signer.der")).unwrap();
    assert_eq!(pcr8, image::Pcr::measure(&[&der]));

    let back = EifImage::from_bytes(&signed.bytes).unwrap();
    assert_eq!(&back.measure().unwrap(), m);
    assert_eq!(back.measure().unwrap().pcr8, Some(pcr8));
    let json = serde_json::to_value(m).unwrap();
    assert_eq!(json["PCR8"], pcr8.to_hex());
}

#[test]
fn measure_refuses_a_signature_for_another_image() {
    let i = inputs();
    let (key, cert) = key_and_cert(i.dir.path(), "signer", "secp384r1");
    let signed = i
        .spec
        .clone()
        .with_signing(&key, &cert)
        .build(|_| {})
        .unwrap();
    let mut other = signed.eif.clone();
    other.ramdisks[1].push(0); // a different application, same signature section
    let err = EifImage::from_bytes(&other.to_bytes().unwrap())
        .unwrap()
        .measure()
        .unwrap_err();
    assert!(err.to_string().contains("not this image's PCR0"), "{err}");

    let mut garbage = signed.eif.clone();
    garbage.signature = Some(b"\xff\x00".to_vec());
    let err = garbage.measure().unwrap_err();
    assert!(matches!(err, Error::SignatureSection { .. }), "{err}");
}

#[test]
fn unusable_keys_and_certificates_are_clear_errors() {
    let i = inputs();
    let d = i.dir.path();
    let (key384, cert384) = key_and_cert(d, "a", "secp384r1");
    let (key256, cert256) = key_and_cert(d, "b", "prime256v1");
    let (_, other384) = key_and_cert(d, "c", "secp384r1");
    let cert_pem = std::fs::read(&cert384).unwrap();

    let err = SigningIdentity::from_pem(
        &std::fs::read(&key256).unwrap(),
        std::fs::read(&cert256).unwrap(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("P-384"), "{err}");

    openssl(d, &["ec", "-in", "a.key", "-out", "a-sec1.key"]);
    let sec1 = std::fs::read(d.join("a-sec1.key")).unwrap();
    assert!(String::from_utf8_lossy(&sec1).contains("EC PRIVATE KEY"));
    let err = SigningIdentity::from_pem(&sec1, cert_pem.clone()).unwrap_err();
    assert!(err.to_string().contains("openssl pkcs8 -topk8"), "{err}");

    let key = std::fs::read(&key384).unwrap();
    let err = SigningIdentity::from_pem(&key, std::fs::read(&other384).unwrap()).unwrap_err();
    assert!(err.to_string().contains("different key"), "{err}");
    let err = SigningIdentity::from_pem(&key, b"not a pem".to_vec()).unwrap_err();
    assert!(matches!(err, Error::SigningCert { .. }), "{err}");

    let err = i
        .spec
        .clone()
        .with_signing(d.join("missing.key"), &cert384)
        .build(|_| {})
        .unwrap_err();
    assert!(err.to_string().contains("cannot read signing key"), "{err}");
}

#[test]
fn cli_prints_pcr8_and_measure_agrees() {
    let i = inputs();
    let d = i.dir.path();
    let (key, cert) = key_and_cert(d, "signer", "secp384r1");
    let out = d.join("s.eif");
    let run = |args: &[&std::ffi::OsStr]| {
        let o = Command::new(env!("CARGO_BIN_EXE_daas-image"))
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    let built = run(&[
        "build".as_ref(),
        "--no-production-args".as_ref(),
        "--kernel".as_ref(),
        d.join("bzImage").as_os_str(),
        "--init".as_ref(),
        d.join("init").as_os_str(),
        "--enclave-bin".as_ref(),
        d.join("enclave").as_os_str(),
        "--signing-key".as_ref(),
        key.as_os_str(),
        "--signing-cert".as_ref(),
        cert.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(built["PCR8"].as_str().unwrap().len(), 96);
    let measured = run(&["measure".as_ref(), out.as_os_str()]);
    assert_eq!(built, measured);

    let o = Command::new(env!("CARGO_BIN_EXE_daas-image"))
        .args([
            "build",
            "--no-production-args",
            "--kernel",
            "k",
            "--out",
            "o",
            "--signing-key",
            "x",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--signing-cert"));
}
