//! Checks that a kernel file is an x86 bzImage, and reads its version string.
//!
//! The x86 boot protocol puts the boot flag `0xAA55` at offset `0x1FE` and the magic
//! `HdrS` at `0x202`; from protocol 2.00 the `u16` at `0x20E` points (minus `0x200`) to a
//! NUL-terminated version string.

use std::path::Path;

use crate::error::{Error, Result};

const BOOT_FLAG_AT: usize = 0x1FE;
const HEADER_MAGIC_AT: usize = 0x202;
const PROTOCOL_AT: usize = 0x206;
const VERSION_PTR_AT: usize = 0x20E;

/// Fails unless `kernel` carries the x86 boot flag and the `HdrS` setup header magic.
///
/// # Errors
/// [`Error::NotBzImage`] naming `path` and what is missing.
pub fn check_bzimage(path: &Path, kernel: &[u8]) -> Result<()> {
    let not = |reason| {
        Err(Error::NotBzImage {
            path: path.to_owned(),
            reason,
        })
    };
    if kernel.len() < VERSION_PTR_AT + 2 {
        return not("the file is shorter than an x86 boot sector and setup header");
    }
    if kernel[BOOT_FLAG_AT..BOOT_FLAG_AT + 2] != [0x55, 0xAA] {
        return not("no 0xAA55 boot flag at offset 0x1FE");
    }
    if &kernel[HEADER_MAGIC_AT..HEADER_MAGIC_AT + 4] != b"HdrS" {
        return not("no \"HdrS\" setup header magic at offset 0x202");
    }
    Ok(())
}

/// The kernel's version string (e.g. `6.1.0-56-cloud-amd64`), when the setup header has
/// one; `None` for anything unexpected. Only informational: it goes into the unmeasured
/// metadata.
#[must_use]
pub fn bzimage_version(kernel: &[u8]) -> Option<String> {
    let protocol = u16::from_le_bytes([*kernel.get(PROTOCOL_AT)?, *kernel.get(PROTOCOL_AT + 1)?]);
    if protocol < 0x0200 {
        return None;
    }
    let ptr = u16::from_le_bytes([
        *kernel.get(VERSION_PTR_AT)?,
        *kernel.get(VERSION_PTR_AT + 1)?,
    ]);
    let start = usize::from(ptr).checked_add(0x200)?;
    let rest = kernel.get(start..)?;
    let end = rest.iter().take(256).position(|&b| b == 0)?;
    let text = std::str::from_utf8(&rest[..end]).ok()?;
    text.split_whitespace().next().map(str::to_owned)
}
