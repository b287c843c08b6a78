//! Boot smoke test: a real kernel boots our EIF's sections under QEMU (software
//! emulation), `daas-init` runs as PID 1, loads the vsock modules and starts the payload,
//! `examples/enclave_smoke.rs`. That driver starts the real static `daas-enclave` in dev
//! mode listening on vsock `1:6443` (guest-internal `vsock_loopback`) with its data
//! directory on a tmpfs, and the real static `daas-host relay` forwarding TCP
//! `127.0.0.1:6443` to it; then, as a client trusting the dev CA the enclave wrote, it
//! requests `GET /readyz` straight over `AF_VSOCK` and through the relay, and
//! `GET /api/v1/namespaces` through the relay anonymously (refused), with the admin bearer
//! token and with the admin client certificate. It also plays the Nitro parent for the
//! init's boot heartbeat. The results are read from the serial console.
//!
//! `daas-init` (the `init` crate) and `daas-enclave` are built as a release is
//! (`scripts/build-enclave-static` with its default selection, static and path-independent),
//! but with `DAAS_STATIC_QUICK=1` (opt-level 1, 16 codegen units: a boot test publishes no
//! PCRs); the driver and `daas-host` by the same script in a second run.
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
/// check: under software emulation a boot with the enclave takes a few minutes at most.
const HANG_GUARD: Duration = Duration::from_secs(1800);
/// Guest memory, MiB: the unpacked ramdisks, the enclave's RocksDB and its tmpfs data.
const GUEST_MEMORY_MIB: &str = "1536";
/// Where the driver finds the two binaries it starts (extra files of the application
/// ramdisk).
const GUEST_ENCLAVE: &str = "smoke/daas-enclave";
const GUEST_HOST: &str = "smoke/daas-host";

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

/// `SOURCE_DATE_EPOCH` for the smoke test's static builds. The script defaults it to the
/// last commit's time, and the `cc` crate makes cargo rerun a C build script whenever it
/// changes, so every commit would recompile RocksDB's C++ (half an hour); a fixed value
/// keeps later runs incremental. Nothing in the binaries stamps it; the value is arbitrary
/// (a past commit time).
const SMOKE_SOURCE_DATE_EPOCH: &str = "1795257238";

/// Runs `scripts/build-enclave-static --unlocked --out OUT` with `selection`.
fn build_static(out: &Path, selection: &[&str]) {
    let started = Instant::now();
    // --unlocked: the smoke test checks the image, not the lock file (a release build
    // keeps --locked).
    let status = Command::new(repo_root().join("scripts/build-enclave-static"))
        .env("SOURCE_DATE_EPOCH", SMOKE_SOURCE_DATE_EPOCH)
        // opt-level 1, 16 codegen units: this test boots the binaries, it publishes no PCRs.
        .env("DAAS_STATIC_QUICK", "1")
        .args(["--unlocked", "--out"])
        .arg(out)
        .args(selection)
        .status()
        .unwrap();
    assert!(status.success(), "scripts/build-enclave-static failed");
    eprintln!(
        "static build of {selection:?} took {:.1?}",
        started.elapsed()
    );
}

/// The static binaries the guest runs, in `out`: `daas-init` and `daas-enclave` from the
/// release selection, then the driver and `daas-host`.
struct StaticBinaries {
    init: PathBuf,
    enclave: PathBuf,
    driver: PathBuf,
    host: PathBuf,
}

fn static_binaries(out: &Path) -> StaticBinaries {
    build_static(out, &[]);
    build_static(
        out,
        &[
            "-p",
            "image",
            "--example",
            "enclave_smoke",
            "-p",
            "host",
            "--bin",
            "daas-host",
        ],
    );
    let bins = StaticBinaries {
        init: out.join("daas-init"),
        enclave: out.join("daas-enclave"),
        driver: out.join("enclave_smoke"),
        host: out.join("daas-host"),
    };
    for bin in [&bins.init, &bins.enclave, &bins.driver, &bins.host] {
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
    bins
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
    let bins = static_binaries(&dir.path().join("bin"));

    let cmdline = format!(
        "{} {}=1:9000 quiet",
        layout::NITRO_CMDLINE,
        layout::HEARTBEAT_PARAM
    );
    let built = ImageSpec::new(&kernel, &bins.init, &bins.driver)
        .with_modules(modules)
        .with_cmdline(cmdline)
        .with_enclave_args(vec![format!("/{GUEST_ENCLAVE}"), format!("/{GUEST_HOST}")])
        .with_file(GUEST_ENCLAVE, &bins.enclave, 0o755)
        .with_file(GUEST_HOST, &bins.host, 0o755)
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
        .args(["-accel", "tcg", "-cpu", "max", "-smp", "1"])
        .args(["-m", GUEST_MEMORY_MIB])
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
    let mut hung = false;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > HANG_GUARD && !hung {
            hung = true;
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let elapsed = started.elapsed();
    let console = reader.join().unwrap();
    eprintln!("--- serial console ---\n{console}--- end ({elapsed:.1?}, {status}) ---");
    assert!(!hung, "guest still running after {HANG_GUARD:?}; killed");

    for expected in [
        "daas-init: loaded /lib/daas-modules/02-vsock_loopback.ko",
        "smoke: /proc, /sys, /dev and /tmp are mounted; data dir /tmp/daas is on tmpfs",
        "smoke: lo is up",
        "smoke: daas-enclave says \"ready https://127.0.0.1:6443\"",
        "smoke: daas-host relay says \"relay listening on tcp:127.0.0.1:6443\"",
        "smoke: readyz over AF_VSOCK: 200 ok",
        "smoke: readyz through the relay: 200 ok",
        "smoke: anonymous namespaces refused: 40",
        "smoke: namespaces with the admin token: 200 NamespaceList [\"default\", \"kube-node-lease\", \"kube-public\", \"kube-system\"]",
        "smoke: namespaces with the admin certificate: 200 NamespaceList [\"default\", \"kube-node-lease\", \"kube-public\", \"kube-system\"]",
        "daas-init: heartbeat to 1:9000 ok",
        "smoke: heartbeat 0xb7 from cid 1",
        "smoke: daas-host relay stopped by SIGTERM: exit status: 0",
        "smoke: daas-enclave stopped by SIGTERM: exit status: 0",
        "SMOKE-RESULT: PASS",
        "daas-init: enclave exited with status 0",
    ] {
        assert!(console.contains(expected), "console lacks {expected:?}");
    }
    assert!(status.success(), "qemu exited with {status}");
}
