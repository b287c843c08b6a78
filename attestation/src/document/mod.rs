//! The attestation document: an untagged COSE_Sign1 whose payload is a CBOR
//! map (definite or indefinite length) of the fields AWS specifies.
//!
//! [`ParsedDocument::parse`] is the syntactic half of verification: it decodes
//! and checks the format and limits, but trusts nothing. Only
//! [`crate::Verifier`] turns a document into a [`crate::VerifiedDocument`].

mod emulator;
mod payload;
mod pcr;

pub(crate) use emulator::parse_emulator_document;
#[cfg(test)]
pub(crate) use emulator::qemu_document;

pub use pcr::{Pcr, PcrSet};

use coset::{AsCborValue, CoseSign1, HeaderBuilder, iana};

use crate::error::VerifyError;

/// Maximum size of a whole document: the NSM driver's response buffer
/// (0x3000 bytes) bounds anything a real NSM can return.
pub const MAX_DOCUMENT_LEN: usize = 0x3000;
/// Maximum length of `user_data` and `nonce` accepted here (the AWS
/// validation rules' 512 bytes, stricter than the NSM's 1024).
pub const MAX_USER_FIELD_LEN: usize = 512;
/// Maximum length of `public_key` (AWS: 1..=1024 bytes; an RSA-4096 public
/// key in PEM is about 800).
pub const MAX_PUBLIC_KEY_LEN: usize = 1024;
/// Maximum length of any certificate (AWS: 1..=1024 bytes).
pub const MAX_CERT_LEN: usize = 1024;
/// Length of a raw r||s ES384 signature.
pub const SIGNATURE_LEN: usize = 96;

/// The decoded payload of an attestation document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationDocument {
    /// Issuing NSM's module id (instance id and enclave id on real hardware).
    pub module_id: String,
    /// Creation time, ms since the UNIX epoch.
    pub timestamp_ms: u64,
    /// Platform configuration registers (digest is always SHA384).
    pub pcrs: PcrSet,
    /// DER leaf certificate whose key signed the document.
    pub certificate: Vec<u8>,
    /// DER certificates, root first, then intermediates down to the leaf's issuer.
    pub cabundle: Vec<Vec<u8>>,
    /// Optional public key chosen by the enclave (free-form bytes).
    pub public_key: Option<Vec<u8>>,
    /// Optional user data chosen by the enclave.
    pub user_data: Option<Vec<u8>>,
    /// Optional nonce, normally the verifier's challenge.
    pub nonce: Option<Vec<u8>>,
}

impl AttestationDocument {
    /// True when PCR0, PCR1 and PCR2 are all zero (or absent): the enclave
    /// ran in debug mode and its measurements mean nothing.
    #[must_use]
    pub fn is_debug_mode(&self) -> bool {
        (0..3).all(|i| self.pcrs.get(i).is_none_or(Pcr::is_zero))
    }
}

/// A syntactically valid document and the exact bytes its signature covers.
#[derive(Debug, Clone)]
pub struct ParsedDocument {
    sign1: CoseSign1,
    document: AttestationDocument,
}

impl ParsedDocument {
    /// Decodes an untagged COSE_Sign1 attestation document and checks its
    /// format and field limits. Never panics, whatever the input.
    ///
    /// # Errors
    ///
    /// A [`VerifyError`] naming the first format rule the input breaks.
    pub fn parse(bytes: &[u8]) -> Result<Self, VerifyError> {
        let value = payload::decode_one("document", bytes)?;
        if let coset::cbor::Value::Tag(tag, _) = value {
            return Err(VerifyError::Tagged { tag });
        }
        let sign1 = CoseSign1::from_cbor_value(value).map_err(VerifyError::CoseStructure)?;
        let es384 = HeaderBuilder::new()
            .algorithm(iana::Algorithm::ES384)
            .build();
        if sign1.protected.header != es384 {
            return Err(VerifyError::ProtectedHeader);
        }
        if !sign1.unprotected.is_empty() {
            return Err(VerifyError::UnprotectedHeader);
        }
        if sign1.signature.len() != SIGNATURE_LEN {
            return Err(VerifyError::SignatureLength {
                len: sign1.signature.len(),
            });
        }
        let payload_bytes = sign1
            .payload
            .as_deref()
            .ok_or(VerifyError::MissingPayload)?;
        let document = payload::decode_payload(payload_bytes)?;
        Ok(Self { sign1, document })
    }

    /// The decoded payload (not yet verified).
    #[must_use]
    pub fn document(&self) -> &AttestationDocument {
        &self.document
    }

    /// The raw r||s signature.
    #[must_use]
    pub fn signature(&self) -> &[u8] {
        &self.sign1.signature
    }

    /// The COSE Sig_structure the signature covers, built from the original
    /// protected-header and payload bytes (never re-encoded).
    #[must_use]
    pub fn signed_data(&self) -> Vec<u8> {
        self.sign1.tbs_data(b"")
    }

    pub(crate) fn into_document(self) -> AttestationDocument {
        self.document
    }
}

#[cfg(test)]
mod tests;
