//! Verification of attestation documents against a pinned root, and the
//! policy layer on top.

mod chain;
mod policy;

pub use policy::Policy;

use ring::signature::{ECDSA_P384_SHA384_FIXED, UnparsedPublicKey};

use crate::document::{AttestationDocument, ParsedDocument, PcrSet, parse_emulator_document};
use crate::error::VerifyError;

/// SHA-256 of the DER of AWS Nitro Enclaves Root-G1 (the fingerprint AWS
/// publishes; not the hash of the zip file it ships in).
pub const AWS_NITRO_ROOT_G1_SHA256: [u8; 32] = [
    0x64, 0x1a, 0x03, 0x21, 0xa3, 0xe2, 0x44, 0xef, 0xe4, 0x56, 0x46, 0x31, 0x95, 0xd6, 0x06, 0x31,
    0x7e, 0xd7, 0xcd, 0xcc, 0x3c, 0x17, 0x56, 0xe0, 0x98, 0x93, 0xf3, 0xc6, 0x8f, 0x79, 0xbb, 0x5b,
];

/// Checks documents against one pinned root certificate.
///
/// The production verifier is [`Verifier::aws_nitro`]. Trusting any other
/// root (the dev simulator's, a test CA) is spelled
/// [`Verifier::dangerous_trust_root_der`] so it stands out in review, and
/// accepting the unsigned documents of QEMU's Nitro emulator is
/// [`Verifier::dangerous_qemu_emulator`].
///
/// ```
/// # use attestation::{Verifier, VerifyError};
/// let verifier = Verifier::aws_nitro();
/// let err = verifier.verify(b"not a document", 1_744_683_923_696).unwrap_err();
/// assert!(matches!(err, VerifyError::MalformedCbor { .. } | VerifyError::Truncated { .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    root_sha256: [u8; 32],
    qemu_emulator: bool,
}

impl Verifier {
    /// The production verifier: AWS Nitro Enclaves Root-G1, pinned by the
    /// SHA-256 of its DER.
    #[must_use]
    pub const fn aws_nitro() -> Self {
        Self {
            root_sha256: AWS_NITRO_ROOT_G1_SHA256,
            qemu_emulator: false,
        }
    }

    /// A verifier for documents from QEMU's `nitro-enclave` machine, an
    /// independent Nitro emulator used to test enclave images: it accepts
    /// only documents in the emulator's unsigned format (protected header
    /// `{1: -1}`, zero signature, zero certificate and CA bundle) and checks
    /// their format and limits, nothing else. Everything in such a document
    /// could have been written by anyone. Documents it passes are marked
    /// [`VerifiedDocument::is_qemu_emulator`], and every [`Policy`] refuses
    /// them unless built with [`Policy::dangerous_allow_qemu_emulator`].
    /// Tests only.
    #[must_use]
    pub const fn dangerous_qemu_emulator() -> Self {
        Self {
            root_sha256: [0; 32],
            qemu_emulator: true,
        }
    }

    /// A verifier that trusts the given root certificate (DER) instead of
    /// AWS's: documents from the dev simulator, or from a test CA, verify.
    /// Never use it where production documents are expected.
    #[must_use]
    pub fn dangerous_trust_root_der(root_der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, root_der);
        let mut root_sha256 = [0u8; 32];
        root_sha256.copy_from_slice(digest.as_ref());
        Self {
            root_sha256,
            qemu_emulator: false,
        }
    }

    /// A verifier for the root in a PEM file's first certificate. If that is
    /// AWS's root this equals [`Verifier::aws_nitro`]; otherwise it is as
    /// dangerous as [`Verifier::dangerous_trust_root_der`].
    ///
    /// # Errors
    ///
    /// [`crate::Error::Pem`] when the input holds no PEM certificate.
    pub fn dangerous_trust_root_pem(pem: &[u8]) -> crate::Result<Self> {
        use rustls_pki_types::pem::PemObject;
        let der =
            rustls_pki_types::CertificateDer::from_pem_slice(pem).map_err(crate::Error::Pem)?;
        Ok(Self::dangerous_trust_root_der(&der))
    }

    /// SHA-256 of the DER of the pinned root (all zero for
    /// [`Verifier::dangerous_qemu_emulator`], which pins none).
    #[must_use]
    pub fn root_sha256(&self) -> &[u8; 32] {
        &self.root_sha256
    }

    /// True when this verifier pins AWS's production root.
    #[must_use]
    pub fn is_aws_nitro(&self) -> bool {
        !self.qemu_emulator && self.root_sha256 == AWS_NITRO_ROOT_G1_SHA256
    }

    /// True for [`Verifier::dangerous_qemu_emulator`].
    #[must_use]
    pub fn is_qemu_emulator(&self) -> bool {
        self.qemu_emulator
    }

    /// Parses `document` and verifies it cryptographically at `at_ms` (ms
    /// since the UNIX epoch): `cabundle[0]` is the pinned root, the chain is in
    /// order root → leaf, every certificate is valid at `at_ms` with the right
    /// key usage and path constraints, and the leaf's ES384 signature covers
    /// the original payload bytes. Policy (PCRs, debug mode, nonce, age) is
    /// [`Policy::check`]'s job.
    ///
    /// Pass `at_ms = now` for live authentication; pass the document's own
    /// timestamp only to re-check stored documents.
    ///
    /// # Errors
    ///
    /// The [`VerifyError`] for the first check that fails.
    pub fn verify(&self, document: &[u8], at_ms: u64) -> Result<VerifiedDocument, VerifyError> {
        if self.qemu_emulator {
            return Ok(VerifiedDocument {
                document: parse_emulator_document(document)?,
                chain_subjects: Vec::new(),
                qemu_emulator: true,
            });
        }
        let parsed = ParsedDocument::parse(document)?;
        let summary = chain::verify_chain(parsed.document(), &self.root_sha256, at_ms)?;
        let key = UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, &summary.leaf_point);
        key.verify(&parsed.signed_data(), parsed.signature())
            .map_err(|_| VerifyError::BadSignature)?;
        Ok(VerifiedDocument {
            document: parsed.into_document(),
            chain_subjects: summary.subjects,
            qemu_emulator: false,
        })
    }

    /// [`Verifier::verify`], then [`Policy::check`].
    ///
    /// # Errors
    ///
    /// The [`VerifyError`] for the first check that fails.
    pub fn verify_with_policy(
        &self,
        document: &[u8],
        at_ms: u64,
        policy: &Policy,
    ) -> Result<VerifiedDocument, VerifyError> {
        let verified = self.verify(document, at_ms)?;
        policy.check(&verified, at_ms)?;
        Ok(verified)
    }
}

/// A document whose chain and signature verified. Only [`Verifier`] makes
/// one.
#[derive(Debug, Clone)]
pub struct VerifiedDocument {
    document: AttestationDocument,
    chain_subjects: Vec<String>,
    qemu_emulator: bool,
}

impl VerifiedDocument {
    /// All decoded fields.
    #[must_use]
    pub fn document(&self) -> &AttestationDocument {
        &self.document
    }

    /// The issuing NSM's module id.
    #[must_use]
    pub fn module_id(&self) -> &str {
        &self.document.module_id
    }

    /// Creation time, ms since the UNIX epoch.
    #[must_use]
    pub fn timestamp_ms(&self) -> u64 {
        self.document.timestamp_ms
    }

    /// The reported PCRs.
    #[must_use]
    pub fn pcrs(&self) -> &PcrSet {
        &self.document.pcrs
    }

    /// The enclave-chosen public key, if any.
    #[must_use]
    pub fn public_key(&self) -> Option<&[u8]> {
        self.document.public_key.as_deref()
    }

    /// The enclave-chosen user data, if any.
    #[must_use]
    pub fn user_data(&self) -> Option<&[u8]> {
        self.document.user_data.as_deref()
    }

    /// The nonce, if any.
    #[must_use]
    pub fn nonce(&self) -> Option<&[u8]> {
        self.document.nonce.as_deref()
    }

    /// True when the enclave ran in debug mode (PCR0..2 all zero).
    #[must_use]
    pub fn is_debug_mode(&self) -> bool {
        self.document.is_debug_mode()
    }

    /// Certificate subjects, root first, leaf last (none for an emulator
    /// document).
    #[must_use]
    pub fn chain_subjects(&self) -> &[String] {
        &self.chain_subjects
    }

    /// True when the document came from QEMU's emulator and was accepted
    /// unsigned by [`Verifier::dangerous_qemu_emulator`].
    #[must_use]
    pub fn is_qemu_emulator(&self) -> bool {
        self.qemu_emulator
    }
}

#[cfg(test)]
mod tests;
