//! PCR values and sets.

use std::collections::BTreeMap;
use std::fmt;

/// One SHA-384 platform configuration register value.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pcr([u8; Pcr::LEN]);

impl Pcr {
    /// Length of a SHA-384 PCR.
    pub const LEN: usize = 48;
    /// The all-zero value (unused register, or any register in debug mode).
    pub const ZERO: Pcr = Pcr([0; Pcr::LEN]);

    /// Wraps raw register bytes.
    #[must_use]
    pub const fn new(bytes: [u8; Pcr::LEN]) -> Self {
        Self(bytes)
    }

    /// Parses 96 hex digits.
    ///
    /// # Errors
    ///
    /// [`hex::FromHexError`] when the input is not exactly 48 bytes of hex.
    pub fn from_hex(s: &str) -> Result<Self, hex::FromHexError> {
        let mut out = [0u8; Pcr::LEN];
        hex::decode_to_slice(s, &mut out)?;
        Ok(Self(out))
    }

    /// The register as bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; Pcr::LEN] {
        &self.0
    }

    /// True when every byte is zero.
    #[must_use]
    pub fn is_zero(&self) -> bool {
        self.0 == [0; Pcr::LEN]
    }

    /// The Nitro measurement of `data`: `SHA384(0^48 || SHA384(data))`, i.e.
    /// one extend of a zero register with the data's digest.
    #[must_use]
    pub fn measure(data: &[u8]) -> Self {
        Self::ZERO.extend(ring::digest::digest(&ring::digest::SHA384, data).as_ref())
    }

    /// The register after extending it with `data`: `SHA384(self || data)`.
    #[must_use]
    pub fn extend(&self, data: &[u8]) -> Self {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA384);
        ctx.update(&self.0);
        ctx.update(data);
        let mut out = [0u8; Pcr::LEN];
        out.copy_from_slice(ctx.finish().as_ref());
        Self(out)
    }
}

impl TryFrom<&[u8]> for Pcr {
    type Error = std::array::TryFromSliceError;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        <[u8; Pcr::LEN]>::try_from(bytes).map(Self)
    }
}

impl fmt::Display for Pcr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Pcr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pcr({self})")
    }
}

/// The PCRs a document reports, by index (0..32).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PcrSet(BTreeMap<u8, Pcr>);

impl PcrSet {
    /// Number of PCRs an NSM has.
    pub const MAX_PCRS: usize = 32;

    pub(crate) fn from_map(map: BTreeMap<u8, Pcr>) -> Self {
        Self(map)
    }

    /// The register at `index`, if the document reports it.
    #[must_use]
    pub fn get(&self, index: u8) -> Option<&Pcr> {
        self.0.get(&index)
    }

    /// All reported registers in index order.
    pub fn iter(&self) -> impl Iterator<Item = (u8, &Pcr)> {
        self.0.iter().map(|(i, p)| (*i, p))
    }

    /// Number of reported registers.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no register is reported (never for a parsed document).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
