//! Parsing and checking an EIF file.

use super::{
    EIF_HEADER_LEN, EIF_MAGIC, EIF_VERSION, EifImage, MAX_SECTIONS, SECTION_HEADER_LEN,
    SectionInfo, SectionType,
};
use crate::error::{Error, Result};

/// The EIF CRC of a whole file: CRC-32 (ISO-HDLC) over the header without its last four
/// bytes, then everything after the header.
pub(super) fn crc_of(file: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(file.get(..EIF_HEADER_LEN - 4).unwrap_or(file));
    crc.update(file.get(EIF_HEADER_LEN..).unwrap_or_default());
    crc.finalize()
}

/// A bounds-checked big-endian cursor over the file.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn slice(&self, what: &'static str, offset: u64, len: u64) -> Result<&'a [u8]> {
        let truncated = || Error::Truncated {
            what,
            offset,
            needed: len,
            len: self.bytes.len() as u64,
        };
        let start = usize::try_from(offset).map_err(|_| truncated())?;
        let n = usize::try_from(len).map_err(|_| truncated())?;
        let end = start.checked_add(n).ok_or_else(truncated)?;
        self.bytes.get(start..end).ok_or_else(truncated)
    }

    fn u16_at(&self, what: &'static str, offset: u64) -> Result<u16> {
        let b = self.slice(what, offset, 2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32_at(&self, what: &'static str, offset: u64) -> Result<u32> {
        let b = self.slice(what, offset, 4)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        Ok(u32::from_be_bytes(a))
    }

    fn u64_at(&self, what: &'static str, offset: u64) -> Result<u64> {
        let b = self.slice(what, offset, 8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
}

/// Header field offsets.
const VERSION_AT: u64 = 4;
const FLAGS_AT: u64 = 6;
const MEM_AT: u64 = 8;
const CPUS_AT: u64 = 16;
const NUM_SECTIONS_AT: u64 = 26;
const OFFSETS_AT: u64 = 28;
const SIZES_AT: u64 = OFFSETS_AT + 8 * MAX_SECTIONS as u64;
const CRC_AT: u64 = EIF_HEADER_LEN as u64 - 4;

/// Reads the header's section table and checks it against each section header: types
/// known, sizes equal, sections contiguous from the end of the header to the end of the
/// file.
///
/// # Errors
/// Any of the layout errors of [`Error`]; see [`EifImage::from_bytes`].
pub fn section_table(file: &[u8]) -> Result<Vec<SectionInfo>> {
    let r = Reader { bytes: file };
    let header = r.slice("EIF header", 0, EIF_HEADER_LEN as u64)?;
    let mut magic = [0u8; 4];
    magic.copy_from_slice(&header[..4]);
    if magic != EIF_MAGIC {
        return Err(Error::BadMagic { found: magic });
    }
    let version = r.u16_at("version", VERSION_AT)?;
    if version != EIF_VERSION {
        return Err(Error::UnsupportedVersion { version });
    }
    let count = usize::from(r.u16_at("section count", NUM_SECTIONS_AT)?);
    if count == 0 || count > MAX_SECTIONS {
        return Err(Error::SectionCount { count });
    }
    let mut sections = Vec::with_capacity(count);
    let mut expected_offset = EIF_HEADER_LEN as u64;
    for index in 0..count {
        let offset = r.u64_at("section offset", OFFSETS_AT + 8 * index as u64)?;
        let in_table = r.u64_at("section size", SIZES_AT + 8 * index as u64)?;
        if offset != expected_offset {
            return Err(Error::Layout {
                reason: format!(
                    "section {index} starts at {offset}, expected {expected_offset} \
                     (end of the previous one)"
                ),
            });
        }
        let code = r.u16_at("section header", offset)?;
        let section_type = SectionType::from_code(code).ok_or(Error::UnknownSectionType {
            index,
            section_type: code,
        })?;
        let in_section = r.u64_at("section header", offset + 4)?;
        if in_section != in_table {
            return Err(Error::SectionSizeMismatch {
                index,
                in_section,
                in_table,
            });
        }
        // Bounds-check the data now so later slicing cannot fail.
        r.slice(
            section_type.name(),
            offset + SECTION_HEADER_LEN as u64,
            in_section,
        )?;
        expected_offset = offset + SECTION_HEADER_LEN as u64 + in_section;
        sections.push(SectionInfo {
            section_type,
            offset,
            size: in_section,
        });
    }
    // The slots past the count must be empty.
    for index in count..MAX_SECTIONS {
        let offset = r.u64_at("section offset", OFFSETS_AT + 8 * index as u64)?;
        let size = r.u64_at("section size", SIZES_AT + 8 * index as u64)?;
        if offset != 0 || size != 0 {
            return Err(Error::Layout {
                reason: format!("unused section slot {index} is not zero"),
            });
        }
    }
    if expected_offset != file.len() as u64 {
        return Err(Error::Layout {
            reason: format!(
                "{} bytes follow the last section",
                (file.len() as u64).saturating_sub(expected_offset)
            ),
        });
    }
    Ok(sections)
}

impl EifImage {
    /// Parses an EIF and checks its magic, version, section table, layout and CRC.
    ///
    /// # Errors
    /// [`Error::Truncated`], [`Error::BadMagic`], [`Error::UnsupportedVersion`],
    /// [`Error::SectionCount`], [`Error::UnknownSectionType`],
    /// [`Error::SectionSizeMismatch`], [`Error::Layout`], [`Error::CrcMismatch`], or
    /// [`Error::SectionMultiplicity`] unless there is exactly one kernel, cmdline and
    /// metadata section, at most one signature and at least one ramdisk.
    pub fn from_bytes(file: &[u8]) -> Result<Self> {
        let table = section_table(file)?;
        let r = Reader { bytes: file };
        let stored = r.u32_at("CRC", CRC_AT)?;
        let computed = crc_of(file);
        if stored != computed {
            return Err(Error::CrcMismatch { stored, computed });
        }
        let mut kernel = Vec::new();
        let mut cmdline = Vec::new();
        let mut metadata = Vec::new();
        let mut signature = Vec::new();
        let mut ramdisks = Vec::new();
        for s in &table {
            let data = r
                .slice(
                    s.section_type.name(),
                    s.offset + SECTION_HEADER_LEN as u64,
                    s.size,
                )?
                .to_vec();
            match s.section_type {
                SectionType::Kernel => kernel.push(data),
                SectionType::Cmdline => cmdline.push(data),
                SectionType::Metadata => metadata.push(data),
                SectionType::Signature => signature.push(data),
                SectionType::Ramdisk => ramdisks.push(data),
            }
        }
        let one = |mut v: Vec<Vec<u8>>, kind| match v.len() {
            1 => Ok(v.remove(0)),
            count => Err(Error::SectionMultiplicity { kind, count }),
        };
        if ramdisks.is_empty() {
            return Err(Error::SectionMultiplicity {
                kind: "ramdisk",
                count: 0,
            });
        }
        let signature = match signature.len() {
            0 => None,
            _ => Some(one(signature, "signature")?),
        };
        Ok(Self {
            flags: r.u16_at("flags", FLAGS_AT)?,
            default_mem: r.u64_at("default memory", MEM_AT)?,
            default_cpus: r.u64_at("default cpus", CPUS_AT)?,
            kernel: one(kernel, "kernel")?,
            cmdline: one(cmdline, "cmdline")?,
            metadata: one(metadata, "metadata")?,
            ramdisks,
            signature,
        })
    }
}
