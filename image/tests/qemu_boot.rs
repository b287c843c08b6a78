//! Boot smoke test: a real kernel boots our EIF's sections under QEMU (software
//! emulation), `daas-init` runs as PID 1, loads the vsock modules, starts the payload and
//! sends the boot heartbeat over real `AF_VSOCK` (guest-internal `vsock_loopback`), and the
//! payload answers `GET /readyz` over vsock. The result is read from the serial console.
//!
//! Needs `qemu-system-x86_64` and Debian's `linux-image-cloud-amd64` (scripts/setup
//! installs both). Without them the test says so and passes, except under CI (`CI` set),
//! where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test setup panics on failure

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use image::{EifImage, ImageSpec, layout};

/// Upper bound on one boot, only so a hung guest cannot hang the suite. Not a performance
/// check: a boot takes seconds.
const HANG_GUARD: Duration = Duration::from_secs(600);

/// The newest Debian cloud kernel and its vsock modules, in load order.
fn debian_kernel() -> Option<(PathBuf, Vec<PathBuf>)> {
    let mut kernels: Vec<PathBuf> = std::fs::read_dir("/boot")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-") && n.ends_with("-cloud-amd64"))
        })
        .collect();
    kernels.sort();
    let kernel = kernels.pop()?;
    let version = kernel
        .file_name()?
        .to_str()?
        .strip_prefix("vmlinuz-")?
        .to_owned();
    let dir = Path::new("/lib/modules")
        .join(version)
        .join("kernel/net/vmw_vsock");
    let modules: Vec<PathBuf> = [
        "vsock.ko",
        "vmw_vsock_virtio_transport_common.ko",
        "vsock_loopback.ko",
    ]
    .iter()
    .map(|m| dir.join(m))
    .collect();
    modules
        .iter()
        .all(|m| m.exists())
        .then_some((kernel, modules))
}

fn have_qemu() -> bool {
    Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Builds `daas-init` and the probe payload with the documented static build.
fn static_binaries(out: &Path) -> (PathBuf, PathBuf) {
    let started = Instant::now();
    // --unlocked: the smoke test checks the image, not the lock file (a release build
    // keeps --locked).
    let status = Command::new(repo_root().join("scripts/build-enclave-static"))
        .args(["--unlocked", "--out"])
        .arg(out)
        .args([
            "-p",
            "image",
            "--bin",
            "daas-init",
            "--example",
            "vsock_probe",
        ])
        .status()
        .unwrap();
    assert!(status.success(), "scripts/build-enclave-static failed");
    eprintln!("static build took {:.1?}", started.elapsed());
    let init = out.join("daas-init");
    let probe = out.join("vsock_probe");
    for bin in [&init, &probe] {
        let file = Command::new("file").arg(bin).output();
        if let Ok(file) = file {
            let text = String::from_utf8_lossy(&file.stdout).into_owned();
            assert!(
                text.contains("static"),
                "{} is not statically linked: {text}",
                bin.display()
            );
        }
    }
    (init, probe)
}

#[test]
fn eif_boots_under_qemu_with_real_vsock() {
    let (Some((kernel, modules)), true) = (debian_kernel(), have_qemu()) else {
        let msg = "qemu-system-x86_64 or linux-image-cloud-amd64 missing (run scripts/setup)";
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("SKIPPED: {msg}");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (init, probe) = static_binaries(&dir.path().join("bin"));

    let cmdline = format!(
        "{} {}=1:9000 quiet",
        layout::NITRO_CMDLINE,
        layout::HEARTBEAT_PARAM
    );
    let built = ImageSpec::new(&kernel, &init, &probe)
        .with_modules(modules)
        .with_cmdline(cmdline)
        .build(|_| {})
        .unwrap();
    let eif_path = dir.path().join("smoke.eif");
    std::fs::write(&eif_path, &built.bytes).unwrap();

    // Boot what the EIF holds, read back through our reader.
    let eif = EifImage::from_bytes(&std::fs::read(&eif_path).unwrap()).unwrap();
    assert_eq!(eif.measurements(None), built.measurements);
    let kernel_file = dir.path().join("bzImage");
    std::fs::write(&kernel_file, &eif.kernel).unwrap();
    let initrd = dir.path().join("initrd.cpio");
    std::fs::write(&initrd, eif.ramdisks.concat()).unwrap();
    let cmdline = String::from_utf8(eif.cmdline.clone()).unwrap();

    let started = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-cpu", "max", "-m", "512", "-smp", "1"])
        .args([
            "-nographic",
            "-no-reboot",
            "-nodefaults",
            "-serial",
            "stdio",
        ])
        .arg("-kernel")
        .arg(&kernel_file)
        .arg("-initrd")
        .arg(&initrd)
        .arg("-append")
        .arg(&cmdline)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut { stdout }, &mut s).unwrap();
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > HANG_GUARD {
            let _ = child.kill();
            panic!("guest still running after {HANG_GUARD:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let elapsed = started.elapsed();
    let console = reader.join().unwrap();
    eprintln!("--- serial console ---\n{console}--- end ({elapsed:.1?}, {status}) ---");

    for expected in [
        "daas-init: loaded /lib/daas-modules/02-vsock_loopback.ko",
        "probe: /proc, /sys, /dev and /tmp are mounted",
        "probe: GET /readyz over AF_VSOCK -> \"HTTP/1.1 200 OK",
        "daas-init: heartbeat to 1:9000 ok",
        "probe: heartbeat 0xb7 from cid 1",
        "PROBE-RESULT: PASS",
        "daas-init: enclave exited with status 0",
    ] {
        assert!(console.contains(expected), "console lacks {expected:?}");
    }
    assert!(status.success(), "qemu exited with {status}");
}
