//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while building, reading or measuring an image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An input file could not be read (missing, unreadable).
    #[error("cannot read {what} {path}")]
    ReadInput {
        /// Which input (`kernel`, `enclave binary`, ...).
        what: &'static str,
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The output file could not be written.
    #[error("cannot write {path}")]
    WriteOutput {
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel is not an x86 bzImage (no `0xAA55` boot flag at 0x1FE or no `HdrS` at 0x202).
    #[error("{path} is not a bzImage kernel: {reason}")]
    NotBzImage {
        /// The kernel path.
        path: PathBuf,
        /// What is missing.
        reason: &'static str,
    },
    /// The kernel command line contains a NUL byte or is too long.
    #[error("invalid kernel command line: {reason}")]
    InvalidCmdline {
        /// Why it was refused.
        reason: &'static str,
    },
    /// An enclave argument or environment variable cannot be stored one per line.
    #[error("invalid {what}: {value:?}")]
    InvalidEnclaveArg {
        /// The value given.
        value: String,
        /// Which kind of value.
        what: &'static str,
    },
    /// A path inside a ramdisk is not acceptable.
    #[error("invalid archive path {path:?}: {reason}")]
    InvalidArchivePath {
        /// The path.
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A mode has bits outside `0o7777`.
    #[error("invalid mode {mode:o} for {path:?}: only permission bits (0o7777) may be set")]
    InvalidMode {
        /// The path.
        path: String,
        /// The mode given.
        mode: u32,
    },
    /// A file or the entry count does not fit the 32-bit fields of `newc`.
    #[error("{path:?} does not fit in a newc archive (4 GiB limit)")]
    ArchiveTooLarge {
        /// The entry.
        path: String,
    },
    /// An EIF has more sections than the 32 the header can describe, or none.
    #[error("an EIF holds 1 to 32 sections, not {count}")]
    SectionCount {
        /// The number found or requested.
        count: usize,
    },
    /// An image was requested without the ramdisk holding the init.
    #[error("an EIF needs at least one ramdisk")]
    NoRamdisk,
    /// The file is shorter than a structure it must contain.
    #[error("EIF truncated: {what} needs {needed} bytes at offset {offset}, file has {len}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Where it starts.
        offset: u64,
        /// How many bytes it needs.
        needed: u64,
        /// The file length.
        len: u64,
    },
    /// The file does not start with `.eif`.
    #[error("not an EIF: bad magic {found:02x?}")]
    BadMagic {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// The EIF version is one this reader does not understand.
    #[error("unsupported EIF version {version} (this reader handles 4)")]
    UnsupportedVersion {
        /// The version in the header.
        version: u16,
    },
    /// A section header names an unknown section type.
    #[error("section {index} has unknown type {section_type}")]
    UnknownSectionType {
        /// Position in the header's table.
        index: usize,
        /// The raw type.
        section_type: u16,
    },
    /// The size in a section header differs from the size in the EIF header.
    #[error("section {index}: header says {in_section} bytes, EIF header says {in_table}")]
    SectionSizeMismatch {
        /// Position in the header's table.
        index: usize,
        /// Size in the section header.
        in_section: u64,
        /// Size in the EIF header's table.
        in_table: u64,
    },
    /// A section is not where the previous one ends, or data follows the last one.
    #[error("section layout: {reason}")]
    Layout {
        /// What is wrong.
        reason: String,
    },
    /// A required section is missing or appears twice.
    #[error("EIF must have exactly one {kind} section, found {count}")]
    SectionMultiplicity {
        /// The section kind.
        kind: &'static str,
        /// How many were found.
        count: usize,
    },
    /// The stored CRC does not match the contents.
    #[error("EIF CRC mismatch: header says {stored:08x}, contents give {computed:08x}")]
    CrcMismatch {
        /// The CRC in the header.
        stored: u32,
        /// The CRC computed over the file.
        computed: u32,
    },
    /// The signing key cannot be used.
    #[error("signing key: {reason}")]
    SigningKey {
        /// What is wrong.
        reason: String,
    },
    /// The signing certificate cannot be used.
    #[error("signing certificate: {reason}")]
    SigningCert {
        /// What is wrong.
        reason: String,
    },
    /// The signature section is malformed or does not verify.
    #[error("signature section: {reason}")]
    SignatureSection {
        /// What is wrong.
        reason: String,
    },
    /// The metadata section could not be encoded or decoded.
    #[error("EIF metadata JSON")]
    Metadata(#[source] serde_json::Error),
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
