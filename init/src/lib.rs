//! `daas-init`, the enclave's PID 1: what it does and the pieces it is made of.
//!
//! Layering: enclave-side, beside the `enclave` crate (the init starts `daas-enclave`, it links none of it).
//! It depends only on `protocol` ([`protocol::layout`], the contract with the image builder in `image`) and on
//! `nix`/`vsock` for its system calls; it is built fully static by `scripts/build-enclave-static`.
//!
//! In order, [`boot`]:
//! 1. mounts devtmpfs on `/dev`, proc on `/proc`, sysfs on `/sys`, tmpfs on `/tmp` and
//!    `/run`;
//! 2. loads every kernel module under [`protocol::layout::MODULES_DIR`] in name order (the NSM
//!    driver and the vsock modules when the image carries them; "already loaded" is fine);
//! 3. starts the enclave binary from [`protocol::layout::CMD_FILE`] and [`protocol::layout::ENV_FILE`];
//! 4. sends the Nitro boot heartbeat: connect to vsock `3:9000` (or the address in
//!    `daas.heartbeat=CID:PORT` on the kernel command line, or `off`), write `0xB7`, expect
//!    `0xB7` back — `nitro-cli run-enclave` terminates an enclave that never does;
//! 5. reaps every child; when the enclave exits it syncs and reboots, which ends the
//!    enclave (and, under `qemu -no-reboot`, the VM).
//!
//! The enclave is started before the heartbeat so that the heartbeat's listener can be a
//! process inside the same guest when no parent exists (the QEMU smoke test); on Nitro the
//! parent listens before the enclave boots, so the order makes no difference there.

mod steps;
mod system;

pub use steps::{
    Heartbeat, heartbeat_exchange, heartbeat_from_cmdline, module_files, parse_cmd, parse_env,
    retry_until,
};
pub use system::boot;
