//! PCR values of an enclave image, computed the way the Nitro hypervisor does.
//!
//! Each boot-time PCR is a single SHA-384 extend of a zeroed register with the SHA-384 of
//! its data: `PCRn = SHA384(0^48 || SHA384(data))`, where the data is
//!
//! | PCR | data |
//! |---|---|
//! | 0 | kernel ‖ cmdline ‖ every ramdisk, in order |
//! | 1 | kernel ‖ cmdline ‖ first ramdisk |
//! | 2 | the ramdisks after the first, in order (empty input if there is only one) |
//! | 8 | the DER of the signing certificate (signed images only) |
//!
//! Section headers, the metadata section and the signature section are not measured.

use std::fmt;

use ring::digest::{Context, SHA384, SHA384_OUTPUT_LEN};
use serde::{Serialize, Serializer};

/// One 48-byte SHA-384 PCR value.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pcr(pub [u8; SHA384_OUTPUT_LEN]);

impl Pcr {
    /// The PCR after one extend of a zeroed register with the SHA-384 of the concatenated
    /// `parts`.
    #[must_use]
    pub fn measure(parts: &[&[u8]]) -> Self {
        let mut data = Context::new(&SHA384);
        for part in parts {
            data.update(part);
        }
        let mut extend = Context::new(&SHA384);
        extend.update(&[0u8; SHA384_OUTPUT_LEN]);
        extend.update(data.finish().as_ref());
        let mut out = [0u8; SHA384_OUTPUT_LEN];
        out.copy_from_slice(extend.finish().as_ref());
        Self(out)
    }

    /// Lower-case hex, the form `nitro-cli`, KMS policies and the registry use.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Pcr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Pcr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pcr({})", self.to_hex())
    }
}

impl Serialize for Pcr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

/// The measurements of an image, serialised with `nitro-cli`'s key names:
/// `{"HashAlgorithm":"SHA384","PCR0":"…","PCR1":"…","PCR2":"…"}` plus `"PCR8"` when signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Measurements {
    /// Always `"SHA384"`.
    #[serde(rename = "HashAlgorithm")]
    pub hash_algorithm: &'static str,
    /// The whole image: kernel, cmdline and all ramdisks.
    #[serde(rename = "PCR0")]
    pub pcr0: Pcr,
    /// The bootstrap: kernel, cmdline and the first ramdisk (our init).
    #[serde(rename = "PCR1")]
    pub pcr1: Pcr,
    /// The application: the ramdisks after the first (the enclave binary).
    #[serde(rename = "PCR2")]
    pub pcr2: Pcr,
    /// The signing certificate, for signed images.
    #[serde(rename = "PCR8", skip_serializing_if = "Option::is_none")]
    pub pcr8: Option<Pcr>,
}

impl Measurements {
    /// Computes PCR0, PCR1, PCR2 and (given the DER signing certificate) PCR8.
    #[must_use]
    pub fn compute(
        kernel: &[u8],
        cmdline: &[u8],
        ramdisks: &[&[u8]],
        signing_cert_der: Option<&[u8]>,
    ) -> Self {
        let mut all: Vec<&[u8]> = vec![kernel, cmdline];
        all.extend_from_slice(ramdisks);
        let first = ramdisks.len().min(1);
        let bootstrap = &all[..2 + first];
        let app = ramdisks.get(1..).unwrap_or_default();
        Self {
            hash_algorithm: "SHA384",
            pcr0: Pcr::measure(&all),
            pcr1: Pcr::measure(bootstrap),
            pcr2: Pcr::measure(app),
            pcr8: signing_cert_der.map(|der| Pcr::measure(&[der])),
        }
    }
}
