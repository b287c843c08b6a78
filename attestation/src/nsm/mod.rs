//! Access to the Nitro Secure Module: one trait, two backends.
//!
//! [`NitroNsm`] talks to `/dev/nsm` inside a real enclave; [`SimNsm`] is the
//! dev-mode simulator that issues documents in the exact Nitro format under a
//! dev root. Code above this seam is generic over [`Nsm`].

mod nitro;
mod sim;

pub use nitro::NitroNsm;
pub use sim::{DEV_ROOT_CERT, DEV_ROOT_KEY, DevRoot, SimNsm, measure_binary, measure_binary_file};

use std::future::Future;

use crate::document::MAX_USER_FIELD_LEN;
use crate::error::{Error, Result};

/// Largest random buffer one `GetRandom` returns.
pub const MAX_RANDOM_LEN: usize = 256;

/// What the enclave asks the NSM to put into a document. Each field is at
/// most [`MAX_USER_FIELD_LEN`] bytes (the NSM allows 1024, but strict
/// verifiers, including ours, accept 512).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct AttestationRequest {
    user_data: Option<Vec<u8>>,
    nonce: Option<Vec<u8>>,
    public_key: Option<Vec<u8>>,
}

impl AttestationRequest {
    /// A request with no optional fields.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `user_data`.
    pub fn user_data(mut self, data: Vec<u8>) -> Self {
        self.user_data = Some(data);
        self
    }

    /// Sets `nonce` (normally the verifier's challenge).
    pub fn nonce(mut self, nonce: Vec<u8>) -> Self {
        self.nonce = Some(nonce);
        self
    }

    /// Sets `public_key` (free-form bytes; KMS expects RSA SPKI DER, the
    /// attested TLS binding uses the SHA-256 of the TLS SPKI).
    pub fn public_key(mut self, key: Vec<u8>) -> Self {
        self.public_key = Some(key);
        self
    }

    /// Checks the field limits.
    ///
    /// # Errors
    ///
    /// [`Error::NsmRequestTooLarge`] naming the first field over the limit.
    pub fn validate(&self) -> Result<()> {
        for (field, value) in [
            ("user_data", &self.user_data),
            ("nonce", &self.nonce),
            ("public_key", &self.public_key),
        ] {
            if let Some(v) = value
                && v.len() > MAX_USER_FIELD_LEN
            {
                return Err(Error::NsmRequestTooLarge {
                    field,
                    len: v.len(),
                    max: MAX_USER_FIELD_LEN,
                });
            }
        }
        Ok(())
    }
}

/// One PCR as the NSM describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrDescription {
    /// Register index.
    pub index: u16,
    /// True once locked (PCR0..15 are locked at boot).
    pub locked: bool,
    /// Current value (48 bytes with SHA384).
    pub value: Vec<u8>,
}

/// The Nitro Secure Module, hardware or simulated. Calls may block on the
/// device, so implementations run them off the async runtime.
pub trait Nsm: Send + Sync + 'static {
    /// A fresh attestation document (untagged COSE_Sign1 bytes) binding the
    /// request's fields.
    ///
    /// # Errors
    ///
    /// [`Error::NsmRequestTooLarge`] for oversized fields, [`Error::Nsm`] when
    /// the module refuses.
    fn attestation(
        &self,
        request: AttestationRequest,
    ) -> impl Future<Output = Result<Vec<u8>>> + Send;

    /// Up to [`MAX_RANDOM_LEN`] random bytes from the module.
    ///
    /// # Errors
    ///
    /// [`Error::Nsm`] or [`Error::Random`] when no randomness is available.
    fn random(&self) -> impl Future<Output = Result<Vec<u8>>> + Send;

    /// The state of PCR `index`.
    ///
    /// # Errors
    ///
    /// [`Error::Nsm`] for an index the module does not have.
    fn describe_pcr(&self, index: u16) -> impl Future<Output = Result<PcrDescription>> + Send;
}

#[cfg(test)]
mod tests;
