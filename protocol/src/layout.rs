//! Where things live inside the enclave image's ramdisks: the contract between the image
//! builder (`image`, on the host side) and `daas-init` (the `init` crate, PID 1 inside the
//! enclave), and the boot heartbeat the init sends to the parent instance.
//!
//! Ramdisk 0 (the bootstrap, measured into PCR1) holds the init, the kernel modules it
//! loads and the mount points. Ramdisk 1 (the application, PCR2) holds the enclave binary
//! and its command line. The kernel unpacks both over one rootfs.

/// The init, run by the kernel as PID 1.
pub const INIT: &str = "init";
/// Kernel modules (`*.ko`), loaded by the init in byte order of their names; the builder
/// prefixes each with a two-digit position so the given order holds.
pub const MODULES_DIR: &str = "lib/daas-modules";
/// The enclave binary.
pub const ENCLAVE: &str = "bin/daas-enclave";
/// The enclave's command line: one argument per line, the first is the program.
pub const CMD_FILE: &str = "etc/daas/cmd";
/// The enclave's environment: one `KEY=VALUE` per line.
pub const ENV_FILE: &str = "etc/daas/env";
/// Directories the init mounts file systems on; created empty in ramdisk 0.
pub const MOUNT_POINTS: [&str; 5] = ["dev", "proc", "run", "sys", "tmp"];
/// The kernel command line parameter that sets the boot heartbeat address:
/// `daas.heartbeat=CID:PORT`, or `daas.heartbeat=off`.
pub const HEARTBEAT_PARAM: &str = "daas.heartbeat";
/// The heartbeat address on Nitro: the parent instance, port 9000.
pub const HEARTBEAT_DEFAULT: (u32, u32) = (3, 9000);
/// The byte the init sends and expects echoed.
pub const HEARTBEAT_BYTE: u8 = 0xB7;
/// The kernel command line `nitro-cli` uses on x86_64.
pub const NITRO_CMDLINE: &str = "reboot=k panic=30 pci=off nomodules console=ttyS0 \
                                 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd \
                                 random.trust_cpu=on";
