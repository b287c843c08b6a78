//! The Enclave Image File (EIF) format, version 4, as `nitro-cli run-enclave` loads it.
//!
//! All integers are big-endian. A file is a 548-byte header followed by sections, each a
//! 12-byte section header (type `u16`, flags `u16`, size `u64`) and its data:
//!
//! ```text
//! header | kernel | cmdline | metadata | ramdisk 0 | ramdisk 1 .. | [signature]
//! ```
//!
//! The header holds the magic `.eif`, the version (4), flags (0 for x86_64), the default
//! memory (1 GiB) and CPU count (2), the number of sections, the file offset of each
//! section's *header* and each section's data size (32 slots each), then a CRC-32
//! (zlib/ISO-HDLC) over the header without its last four bytes followed by every section
//! header and data in file order. The metadata section is JSON and is not measured.

mod read;
pub use read::section_table;
mod write;

#[cfg(test)]
mod tests;

use crate::pcr::Measurements;

/// The magic at the start of every EIF.
pub const EIF_MAGIC: [u8; 4] = *b".eif";
/// The EIF version this crate writes and reads.
pub const EIF_VERSION: u16 = 4;
/// Size of the EIF header in bytes.
pub const EIF_HEADER_LEN: usize = 548;
/// Size of a section header in bytes.
pub const SECTION_HEADER_LEN: usize = 12;
/// Most sections an EIF header can describe.
pub const MAX_SECTIONS: usize = 32;
/// The default enclave memory recorded in the header (what `nitro-cli` writes).
pub const DEFAULT_MEM: u64 = 1024 * 1024 * 1024;
/// The default CPU count recorded in the header (what `nitro-cli` writes).
pub const DEFAULT_CPUS: u64 = 2;
/// Header flag for an aarch64 image; cleared for x86_64.
pub const FLAG_ARCH_ARM64: u16 = 0x1;

/// The kind of an EIF section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionType {
    /// The kernel (a bzImage on x86_64).
    Kernel,
    /// The kernel command line, without a terminating NUL.
    Cmdline,
    /// An initramfs (cpio) archive; the kernel unpacks them in order over one rootfs.
    Ramdisk,
    /// CBOR list of PCR signatures (signed images only).
    Signature,
    /// JSON identity and build information; not measured.
    Metadata,
}

impl SectionType {
    /// The on-disk number.
    #[must_use]
    pub const fn code(self) -> u16 {
        match self {
            Self::Kernel => 1,
            Self::Cmdline => 2,
            Self::Ramdisk => 3,
            Self::Signature => 4,
            Self::Metadata => 5,
        }
    }

    /// The type for an on-disk number (0, "invalid", and unknown numbers give `None`).
    #[must_use]
    pub const fn from_code(code: u16) -> Option<Self> {
        match code {
            1 => Some(Self::Kernel),
            2 => Some(Self::Cmdline),
            3 => Some(Self::Ramdisk),
            4 => Some(Self::Signature),
            5 => Some(Self::Metadata),
            _ => None,
        }
    }

    /// A lower-case name for messages.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Kernel => "kernel",
            Self::Cmdline => "cmdline",
            Self::Ramdisk => "ramdisk",
            Self::Signature => "signature",
            Self::Metadata => "metadata",
        }
    }
}

/// Where a section sits in a file, as recorded in the EIF header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionInfo {
    /// The section's kind.
    pub section_type: SectionType,
    /// File offset of the section header.
    pub offset: u64,
    /// Size of the section data (without its 12-byte header).
    pub size: u64,
}

/// The contents of an EIF: what is measured (kernel, cmdline, ramdisks) and what is not
/// (metadata, signature), plus the header's defaults.
///
/// [`EifImage::to_bytes`] writes the canonical layout; [`EifImage::from_bytes`] parses and
/// checks a file (magic, version, section table, layout and CRC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EifImage {
    /// Header flags (0 for x86_64).
    pub flags: u16,
    /// Default memory in bytes.
    pub default_mem: u64,
    /// Default CPU count.
    pub default_cpus: u64,
    /// The kernel image.
    pub kernel: Vec<u8>,
    /// The kernel command line bytes (no NUL).
    pub cmdline: Vec<u8>,
    /// The metadata JSON bytes.
    pub metadata: Vec<u8>,
    /// The ramdisks, in boot order; the first is the bootstrap (PCR1), the rest the
    /// application (PCR2).
    pub ramdisks: Vec<Vec<u8>>,
    /// The signature section, for signed images.
    pub signature: Option<Vec<u8>>,
}

impl EifImage {
    /// An x86_64 image with `nitro-cli`'s default memory and CPU count and no signature.
    #[must_use]
    pub fn new(
        kernel: Vec<u8>,
        cmdline: Vec<u8>,
        metadata: Vec<u8>,
        ramdisks: Vec<Vec<u8>>,
    ) -> Self {
        Self {
            flags: 0,
            default_mem: DEFAULT_MEM,
            default_cpus: DEFAULT_CPUS,
            kernel,
            cmdline,
            metadata,
            ramdisks,
            signature: None,
        }
    }

    /// PCR0, PCR1 and PCR2 of this image (PCR8 needs the signing certificate; see
    /// [`Measurements::compute`]).
    #[must_use]
    pub fn measurements(&self, signing_cert_der: Option<&[u8]>) -> Measurements {
        let ramdisks: Vec<&[u8]> = self.ramdisks.iter().map(Vec::as_slice).collect();
        Measurements::compute(&self.kernel, &self.cmdline, &ramdisks, signing_cert_der)
    }

    /// PCR0, PCR1, PCR2 and, for a signed image, PCR8 — after checking that the signature
    /// section signs this image's PCR0 with its certificate's key.
    ///
    /// # Errors
    /// The errors of [`crate::sign::verify_signature_section`] for a signed image.
    pub fn measure(&self) -> crate::Result<Measurements> {
        let unsigned = self.measurements(None);
        match &self.signature {
            None => Ok(unsigned),
            Some(section) => {
                let der = crate::sign::verify_signature_section(section, &unsigned.pcr0)?;
                Ok(self.measurements(Some(&der)))
            }
        }
    }

    /// The sections in file order.
    fn sections(&self) -> Vec<(SectionType, &[u8])> {
        let mut out = vec![
            (SectionType::Kernel, self.kernel.as_slice()),
            (SectionType::Cmdline, self.cmdline.as_slice()),
            (SectionType::Metadata, self.metadata.as_slice()),
        ];
        out.extend(
            self.ramdisks
                .iter()
                .map(|r| (SectionType::Ramdisk, r.as_slice())),
        );
        if let Some(sig) = &self.signature {
            out.push((SectionType::Signature, sig.as_slice()));
        }
        out
    }
}
