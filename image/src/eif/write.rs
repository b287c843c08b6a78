//! Writing an [`EifImage`] in the canonical section order.

use super::{
    EIF_HEADER_LEN, EIF_MAGIC, EIF_VERSION, EifImage, MAX_SECTIONS, SECTION_HEADER_LEN, SectionType,
};
use crate::error::{Error, Result};

/// Encodes a section header.
pub(super) fn section_header(section_type: SectionType, size: u64) -> [u8; SECTION_HEADER_LEN] {
    let mut out = [0u8; SECTION_HEADER_LEN];
    out[..2].copy_from_slice(&section_type.code().to_be_bytes());
    // flags (2 bytes) stay zero
    out[4..].copy_from_slice(&size.to_be_bytes());
    out
}

impl EifImage {
    /// Encodes the image: header (with CRC), then kernel, cmdline, metadata, ramdisks and
    /// the signature if any.
    ///
    /// # Errors
    /// [`Error::NoRamdisk`] without ramdisks, [`Error::SectionCount`] with more than 32
    /// sections.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        if self.ramdisks.is_empty() {
            return Err(Error::NoRamdisk);
        }
        let sections = self.sections();
        if sections.len() > MAX_SECTIONS {
            return Err(Error::SectionCount {
                count: sections.len(),
            });
        }
        let total: usize = EIF_HEADER_LEN
            + sections
                .iter()
                .map(|(_, d)| SECTION_HEADER_LEN + d.len())
                .sum::<usize>();

        let mut offsets = [0u64; MAX_SECTIONS];
        let mut sizes = [0u64; MAX_SECTIONS];
        let mut at = EIF_HEADER_LEN as u64;
        for (i, (_, data)) in sections.iter().enumerate() {
            offsets[i] = at;
            sizes[i] = data.len() as u64;
            at += (SECTION_HEADER_LEN + data.len()) as u64;
        }

        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&EIF_MAGIC);
        out.extend_from_slice(&EIF_VERSION.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.extend_from_slice(&self.default_mem.to_be_bytes());
        out.extend_from_slice(&self.default_cpus.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes()); // reserved
        // At most 32 sections (checked above), so this never saturates.
        let count = u16::try_from(sections.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for offset in offsets {
            out.extend_from_slice(&offset.to_be_bytes());
        }
        for size in sizes {
            out.extend_from_slice(&size.to_be_bytes());
        }
        out.extend_from_slice(&0u32.to_be_bytes()); // unused
        let crc_at = out.len();
        out.extend_from_slice(&0u32.to_be_bytes()); // CRC, filled in below
        debug_assert_eq!(out.len(), EIF_HEADER_LEN);

        for (section_type, data) in &sections {
            out.extend_from_slice(&section_header(*section_type, data.len() as u64));
            out.extend_from_slice(data);
        }
        let crc = super::read::crc_of(&out);
        out[crc_at..EIF_HEADER_LEN].copy_from_slice(&crc.to_be_bytes());
        Ok(out)
    }
}
