//! `daas-image build` / `measure` end to end, checked against an independent reading of
//! the EIF (tests/independent_eif.py), for reproducibility and for which PCRs an input
//! change moves.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers panic on setup failure

use std::path::{Path, PathBuf};
use std::process::Command;

use image::{EifImage, ImageSpec};
use serde_json::Value;

/// A minimal file with the x86 boot headers a bzImage has (boot flag, `HdrS`, protocol
/// 2.15 and a version string), padded with a fixed pattern.
fn fake_bzimage() -> Vec<u8> {
    let mut k: Vec<u8> = (0..8192u32).map(|i| (i * 31 % 251) as u8).collect();
    k[0x1FE] = 0x55;
    k[0x1FF] = 0xAA;
    k[0x202..0x206].copy_from_slice(b"HdrS");
    k[0x206..0x208].copy_from_slice(&0x020Fu16.to_le_bytes());
    let version = b"6.1.0-test (builder@example) #1 SMP\0";
    k[0x20E..0x210].copy_from_slice(&(0x1000u16 - 0x200).to_le_bytes());
    k[0x1000..0x1000 + version.len()].copy_from_slice(version);
    k
}

struct Inputs {
    _dir: tempfile::TempDir,
    kernel: PathBuf,
    init: PathBuf,
    enclave: PathBuf,
    root: PathBuf,
}

fn inputs() -> Inputs {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let kernel = root.join("bzImage");
    let init = root.join("daas-init");
    let enclave = root.join("daas-enclave");
    std::fs::write(&kernel, fake_bzimage()).unwrap();
    std::fs::write(&init, b"\x7fELF init stand-in").unwrap();
    std::fs::write(&enclave, vec![0x42u8; 5000]).unwrap();
    Inputs {
        _dir: dir,
        kernel,
        init,
        enclave,
        root,
    }
}

fn daas_image(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_daas-image"))
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn build_cli(i: &Inputs, out: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "build",
        "--no-production-args",
        "--kernel",
        i.kernel.to_str().unwrap(),
        "--init",
        i.init.to_str().unwrap(),
        "--enclave-bin",
        i.enclave.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (ok, stdout, stderr) = daas_image(&args);
    assert!(ok, "build failed: {stderr}");
    assert!(
        stderr.contains("ramdisk 1:"),
        "progress output missing: {stderr}"
    );
    serde_json::from_str(&stdout).unwrap()
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
fn pcrs_match_an_independent_python_computation() {
    let i = inputs();
    let out = i.root.join("a.eif");
    let printed = build_cli(&i, &out, &["--enclave-arg", "--dev"]);
    let py = independent(&out);
    assert_eq!(py["crc_ok"], true);
    assert_eq!(py["version"], 4);
    assert_eq!(py["default_mem"], 1u64 << 30);
    let kinds: Vec<u64> = py["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[0].as_u64().unwrap())
        .collect();
    assert_eq!(kinds, [1, 2, 5, 3, 3]);
    for pcr in ["PCR0", "PCR1", "PCR2"] {
        assert_eq!(printed[pcr], py[pcr], "{pcr}");
        assert_eq!(printed[pcr].as_str().unwrap().len(), 96);
    }
    assert!(printed.get("PCR8").is_none());

    let (ok, measured, stderr) = daas_image(&["measure", out.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let measured: Value = serde_json::from_str(&measured).unwrap();
    assert_eq!(measured, printed);
}

#[test]
fn two_builds_are_byte_identical() {
    let i = inputs();
    let (a, b) = (i.root.join("a.eif"), i.root.join("b.eif"));
    let pa = build_cli(&i, &a, &[]);
    let pb = build_cli(&i, &b, &[]);
    assert_eq!(pa, pb);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

#[test]
fn metadata_is_fixed_and_unmeasured() {
    let i = inputs();
    let spec = ImageSpec::new(&i.kernel, &i.init, &i.enclave);
    let a = spec.clone().build(|_| {}).unwrap();
    let b = spec
        .with_build_epoch(1_700_000_000)
        .with_identity("other", "9")
        .build(|_| {})
        .unwrap();
    assert_ne!(a.bytes, b.bytes);
    assert_eq!(a.measurements, b.measurements);
    let meta: Value = serde_json::from_slice(&a.eif.metadata).unwrap();
    assert_eq!(meta["BuildMetadata"]["BuildTime"], "1970-01-01T00:00:00Z");
    assert_eq!(meta["BuildMetadata"]["KernelVersion"], "6.1.0-test");
    let meta: Value = serde_json::from_slice(&b.eif.metadata).unwrap();
    assert_eq!(meta["BuildMetadata"]["BuildTime"], "2023-11-14T22:13:20Z");
}

#[test]
fn a_one_byte_enclave_change_moves_pcr0_and_pcr2_only() {
    let i = inputs();
    let before = ImageSpec::new(&i.kernel, &i.init, &i.enclave)
        .build(|_| {})
        .unwrap();
    let mut bin = std::fs::read(&i.enclave).unwrap();
    bin[2500] ^= 0x01;
    std::fs::write(&i.enclave, bin).unwrap();
    let after = ImageSpec::new(&i.kernel, &i.init, &i.enclave)
        .build(|_| {})
        .unwrap();
    assert_ne!(before.measurements.pcr0, after.measurements.pcr0);
    assert_eq!(before.measurements.pcr1, after.measurements.pcr1);
    assert_ne!(before.measurements.pcr2, after.measurements.pcr2);
}

#[test]
fn init_cmdline_and_arg_changes_move_the_expected_pcrs() {
    let i = inputs();
    let base = ImageSpec::new(&i.kernel, &i.init, &i.enclave);
    let m = base.clone().build(|_| {}).unwrap().measurements;
    let cmd = base
        .clone()
        .with_cmdline("console=ttyS0")
        .build(|_| {})
        .unwrap()
        .measurements;
    assert!(cmd.pcr0 != m.pcr0 && cmd.pcr1 != m.pcr1 && cmd.pcr2 == m.pcr2);
    let arg = base
        .clone()
        .with_enclave_args(vec!["--dev".into()])
        .build(|_| {})
        .unwrap();
    let arg = arg.measurements;
    assert!(arg.pcr0 != m.pcr0 && arg.pcr1 == m.pcr1 && arg.pcr2 != m.pcr2);
    std::fs::write(&i.init, b"\x7fELF other init").unwrap();
    let init = base.build(|_| {}).unwrap().measurements;
    assert!(init.pcr0 != m.pcr0 && init.pcr1 != m.pcr1 && init.pcr2 == m.pcr2);
}

#[test]
fn ramdisks_hold_the_layout_the_init_expects() {
    let i = inputs();
    let module = i.root.join("nsm.ko");
    std::fs::write(&module, b"module").unwrap();
    let built = ImageSpec::new(&i.kernel, &i.init, &i.enclave)
        .with_modules(vec![module])
        .with_enclave_args(vec!["--listen".into(), "vsock://any:6443".into()])
        .with_env(vec!["RUST_LOG=info".into()])
        .build(|_| {})
        .unwrap();
    let back = EifImage::from_bytes(&built.bytes).unwrap();
    let list = |rd: &[u8]| {
        let mut child = Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(rd).unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
    };
    let rd0 = list(&back.ramdisks[0]);
    for want in [
        "init",
        "dev/console",
        "lib/daas-modules/00-nsm.ko",
        "proc",
        "sys",
        "tmp",
    ] {
        assert!(
            rd0.lines().any(|l| l == want),
            "{want} missing from ramdisk 0: {rd0}"
        );
    }
    let rd1 = list(&back.ramdisks[1]);
    assert_eq!(
        rd1.lines().collect::<Vec<_>>(),
        [
            "bin",
            "bin/daas-enclave",
            "etc",
            "etc/daas",
            "etc/daas/cmd",
            "etc/daas/env"
        ]
    );
}

#[test]
fn missing_inputs_and_non_bzimage_kernels_are_clear_errors() {
    let i = inputs();
    let out = i.root.join("x.eif");
    let missing = i.root.join("nope");
    let (ok, _, err) = daas_image(&[
        "build",
        "--no-production-args",
        "--kernel",
        missing.to_str().unwrap(),
        "--init",
        i.init.to_str().unwrap(),
        "--enclave-bin",
        i.enclave.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("cannot read kernel") && err.contains("nope"),
        "{err}"
    );

    let (ok, _, err) = daas_image(&[
        "build",
        "--no-production-args",
        "--kernel",
        i.kernel.to_str().unwrap(),
        "--init",
        i.init.to_str().unwrap(),
        "--enclave-bin",
        missing.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("cannot read enclave binary"), "{err}");

    // An ELF (e.g. vmlinux instead of bzImage) is refused by its missing boot headers.
    let (ok, _, err) = daas_image(&[
        "build",
        "--no-production-args",
        "--kernel",
        i.enclave.to_str().unwrap(),
        "--init",
        i.init.to_str().unwrap(),
        "--enclave-bin",
        i.enclave.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("not a bzImage") && err.contains("0xAA55"),
        "{err}"
    );
    let short = i.root.join("short");
    std::fs::write(&short, b"tiny").unwrap();
    let err = ImageSpec::new(&short, &i.init, &i.enclave)
        .build(|_| {})
        .unwrap_err();
    assert!(err.to_string().contains("shorter"), "{err}");
    let mut no_hdrs = fake_bzimage();
    no_hdrs[0x202] = b'X';
    std::fs::write(&short, no_hdrs).unwrap();
    let err = ImageSpec::new(&short, &i.init, &i.enclave)
        .build(|_| {})
        .unwrap_err();
    assert!(err.to_string().contains("HdrS"), "{err}");
    assert!(!out.exists());

    let err = ImageSpec::new(&i.kernel, &i.init, &i.enclave)
        .with_cmdline("a\0b")
        .build(|_| {})
        .unwrap_err();
    assert!(err.to_string().contains("NUL"), "{err}");
    let err = ImageSpec::new(&i.kernel, &i.init, &i.enclave)
        .with_enclave_args(vec!["two\nlines".into()])
        .build(|_| {})
        .unwrap_err();
    assert!(err.to_string().contains("enclave argument"), "{err}");
    let err = ImageSpec::new(&i.kernel, &i.init, &i.enclave)
        .with_env(vec!["NOEQUALS".into()])
        .build(|_| {})
        .unwrap_err();
    assert!(err.to_string().contains("KEY=VALUE"), "{err}");

    let (ok, _, err) = daas_image(&["measure", i.kernel.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("not a valid EIF") && err.contains("bad magic"),
        "{err}"
    );
}

#[test]
fn extra_files_go_to_the_application_ramdisk_and_move_pcr0_and_pcr2_only() {
    let i = inputs();
    let helper = i.root.join("helper");
    std::fs::write(&helper, b"\x7fELF helper").unwrap();
    let base = ImageSpec::new(&i.kernel, &i.init, &i.enclave);
    let m = base.clone().build(|_| {}).unwrap().measurements;
    let with = base
        .clone()
        .with_file("opt/tools/helper", &helper, 0o755)
        .build(|_| {})
        .unwrap();
    let w = &with.measurements;
    assert!(w.pcr0 != m.pcr0 && w.pcr1 == m.pcr1 && w.pcr2 != m.pcr2);
    let back = EifImage::from_bytes(&with.bytes).unwrap();
    let rd1 = &back.ramdisks[1];
    let at = rd1
        .windows(b"opt/tools/helper\0".len())
        .position(|w| w == b"opt/tools/helper\0")
        .expect("helper entry in ramdisk 1");
    // newc header: mode is the second 8-hex-digit field after the 6-byte magic.
    let header = at - 110;
    let mode = std::str::from_utf8(&rd1[header + 14..header + 22]).unwrap();
    assert_eq!(u32::from_str_radix(mode, 16).unwrap(), 0o100755);

    for reserved in ["bin/daas-enclave", "etc/daas/cmd", "etc/daas/env"] {
        let err = base
            .clone()
            .with_file(reserved, &helper, 0o644)
            .build(|_| {})
            .unwrap_err();
        assert!(err.to_string().contains("reserved"), "{reserved}: {err}");
    }
    let err = base
        .with_file("opt/x", i.root.join("missing"), 0o644)
        .build(|_| {})
        .unwrap_err();
    assert!(err.to_string().contains("extra file"), "{err}");
}

/// The text of `etc/daas/cmd` in an EIF's application ramdisk (GNU cpio extracts it).
fn cmd_file(eif: &Path) -> String {
    let back = EifImage::from_bytes(&std::fs::read(eif).unwrap()).unwrap();
    let mut child = Command::new("cpio")
        .args(["-i", "--quiet", "--to-stdout", "etc/daas/cmd"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&back.ramdisks[1])
        .unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

#[test]
fn production_arguments_carry_the_admin_token_digest_and_the_parent() {
    let i = inputs();
    let token_file = i.root.join("admin.token");
    let out = i.root.join("prod.eif");
    let common = [
        "build",
        "--kernel",
        i.kernel.to_str().unwrap(),
        "--init",
        i.init.to_str().unwrap(),
        "--enclave-bin",
        i.enclave.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    // Without a token file (and without --no-production-args) nothing is built.
    let (ok, _, err) = daas_image(&common);
    assert!(!ok && err.contains("--admin-token-file"), "{err}");

    let mut args = common.to_vec();
    args.extend([
        "--admin-token-file",
        token_file.to_str().unwrap(),
        "--parent-cid",
        "2",
        "--enclave-arg",
        "--anchor-interval=5s",
    ]);
    let (ok, stdout, err) = daas_image(&args);
    assert!(ok, "{err}");
    assert!(err.contains("created a new admin token"), "{err}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let token = std::fs::read_to_string(&token_file).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, token.trim().as_bytes());
    assert_eq!(
        cmd_file(&out),
        format!(
            "/bin/daas-enclave\n--data-dir\n/tmp/daas\n--root-secret-source\nkms\n--parent-cid\n2\n\
             --admin-token-sha256\n{}\n--anchor-interval=5s\n",
            hex::encode(digest.as_ref())
        )
    );
    // The same token file gives the same image (reproducible), and the token is never in it.
    let first: Value = serde_json::from_str(&stdout).unwrap();
    let (ok, again, _) = daas_image(&args);
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&again).unwrap(), first);
    let bytes = std::fs::read(&out).unwrap();
    assert!(
        !bytes
            .windows(token.trim().len())
            .any(|w| w == token.trim().as_bytes())
    );
}
