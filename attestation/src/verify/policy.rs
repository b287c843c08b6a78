//! What a verified document must also say to be trusted here.

use std::collections::BTreeMap;
use std::time::Duration;

use super::VerifiedDocument;
use crate::document::Pcr;
use crate::error::VerifyError;

/// Application policy over a [`VerifiedDocument`].
///
/// The default ([`Policy::new`]) rejects debug-mode documents and checks
/// nothing else; add expected PCRs, the caller's nonce and a maximum age.
/// Allowing debug mode is [`Policy::dangerous_allow_debug`].
///
/// ```
/// # use attestation::{Pcr, Policy};
/// # use std::time::Duration;
/// let policy = Policy::new()
///     .expect_pcr(0, Pcr::measure(b"image"))
///     .require_nonce(b"challenge".to_vec())
///     .max_age(Duration::from_secs(300));
/// # let _ = policy;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Policy {
    pcrs: BTreeMap<u8, Pcr>,
    allow_debug: bool,
    allow_qemu_emulator: bool,
    nonce: Option<Vec<u8>>,
    max_age_ms: Option<u64>,
}

impl Policy {
    /// The production default: debug mode rejected, nothing else required.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires PCR `index` to equal `value`.
    pub fn expect_pcr(mut self, index: u8, value: Pcr) -> Self {
        self.pcrs.insert(index, value);
        self
    }

    /// Requires the document's nonce to equal `nonce` (the caller's challenge).
    pub fn require_nonce(mut self, nonce: Vec<u8>) -> Self {
        self.nonce = Some(nonce);
        self
    }

    /// Rejects documents older than `max_age` at verification time, and
    /// documents stamped after it.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age_ms = Some(u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Accepts documents from debug-mode enclaves (PCR0..2 zero), whose
    /// measurements prove nothing. Dev and tests only.
    pub fn dangerous_allow_debug(mut self) -> Self {
        self.allow_debug = true;
        self
    }

    /// Accepts the unsigned documents of QEMU's `nitro-enclave` emulator
    /// (see [`crate::Verifier::dangerous_qemu_emulator`]); every other
    /// policy refuses them with [`VerifyError::EmulatorDocument`]. Tests of
    /// enclave images under the emulator only.
    pub fn dangerous_allow_qemu_emulator(mut self) -> Self {
        self.allow_qemu_emulator = true;
        self
    }

    /// Checks `doc` at `at_ms` (ms since the UNIX epoch).
    ///
    /// # Errors
    ///
    /// [`VerifyError::EmulatorDocument`], [`VerifyError::DebugMode`], [`VerifyError::PcrMissing`],
    /// [`VerifyError::PcrMismatch`], [`VerifyError::NonceMissing`],
    /// [`VerifyError::NonceMismatch`], [`VerifyError::FromTheFuture`] or
    /// [`VerifyError::TooOld`], for the first rule broken, in that order.
    pub fn check(&self, doc: &VerifiedDocument, at_ms: u64) -> Result<(), VerifyError> {
        if doc.is_qemu_emulator() && !self.allow_qemu_emulator {
            return Err(VerifyError::EmulatorDocument);
        }
        if doc.is_debug_mode() && !self.allow_debug {
            return Err(VerifyError::DebugMode);
        }
        for (&index, expected) in &self.pcrs {
            let actual = doc
                .pcrs()
                .get(index)
                .ok_or(VerifyError::PcrMissing { index })?;
            if actual != expected {
                return Err(VerifyError::PcrMismatch {
                    index,
                    expected: expected.as_bytes().to_vec(),
                    actual: actual.as_bytes().to_vec(),
                });
            }
        }
        if let Some(expected) = &self.nonce {
            let actual = doc.nonce().ok_or(VerifyError::NonceMissing)?;
            if actual != expected.as_slice() {
                return Err(VerifyError::NonceMismatch);
            }
        }
        if let Some(max_age_ms) = self.max_age_ms {
            let timestamp_ms = doc.timestamp_ms();
            let age_ms = at_ms
                .checked_sub(timestamp_ms)
                .ok_or(VerifyError::FromTheFuture {
                    timestamp_ms,
                    at_ms,
                })?;
            if age_ms > max_age_ms {
                return Err(VerifyError::TooOld { age_ms, max_age_ms });
            }
        }
        Ok(())
    }
}
