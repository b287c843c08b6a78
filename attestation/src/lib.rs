//! Nitro attestation for K3s-DaaS: attestation documents verified against a
//! pinned root, the policy applied on top, NSM access (hardware `/dev/nsm`
//! and a dev simulator in the exact Nitro format), attested TLS identity, and
//! the sealing keys derived from the cluster's root secret.
//!
//! This crate sits at the bottom of the workspace: `enclave`, `cli` and the
//! others depend on it; it depends on no workspace crate, never on a store, a
//! chain client or an HTTP stack.
//!
//! Start with [`Verifier`] (production: [`Verifier::aws_nitro`]) and
//! [`Policy`]. Documents come from an [`Nsm`]: [`NitroNsm`] inside an
//! enclave, [`SimNsm`] in dev mode and tests. Sealing keys come from
//! [`RootSecret::derive`].
//!
//! | module | what |
//! |---|---|
//! | document | [`ParsedDocument::parse`]: untagged COSE_Sign1, payload map (definite or indefinite), field limits |
//! | verify | [`Verifier`]: root pin, chain order, validity, key usage, webpki path, ES384; [`Policy`] on top |
//! | nsm | [`Nsm`] trait, [`NitroNsm`] (`/dev/nsm`), [`SimNsm`] + [`DevRoot`] |
//! | tls | [`spki_sha256`], [`attest_certificate`], [`attest_enclave`], [`check_tls_binding`] |
//! | sealing | [`RootSecret`] (zeroized, redacted), [`RootSecret::derive`] → [`PurposeKey`]; [`RecipientKey`] opens KMS `CiphertextForRecipient` |
//!
//! In production the root secret comes from AWS KMS and only an attested
//! enclave can read it: the enclave makes a [`RecipientKey`] (ephemeral
//! RSA-2048) and puts its [`RecipientKey::public_key_spki_der`] in the
//! `public_key` of an attestation document. The host relay calls KMS
//! `Decrypt` or `GenerateDataKey` with its own credentials and
//! `Recipient = { AttestationDocument, KeyEncryptionAlgorithm:
//! RSAES_OAEP_SHA_256 }`; KMS checks the document against the key policy's
//! `kms:RecipientAttestation:*` conditions and answers with
//! `CiphertextForRecipient`, a CMS envelope that only the enclave, holder of
//! the private key, can open with [`RecipientKey::open_root_secret`]. The
//! host sees only ciphertext.
//!
//! The crate has no cargo features: the hardware NSM client is small and
//! always compiled (it fails cleanly outside an enclave).

mod document;
mod error;
mod nsm;
mod sealing;
mod tls;
mod verify;

pub use document::{
    AttestationDocument, MAX_CERT_LEN, MAX_DOCUMENT_LEN, MAX_USER_FIELD_LEN, ParsedDocument, Pcr,
    PcrSet, SIGNATURE_LEN,
};
pub use error::{CertPosition, EnvelopeError, Error, Result, VerifyError};
pub use nsm::{
    AttestationRequest, DEV_ROOT_CERT, DEV_ROOT_KEY, DevRoot, MAX_RANDOM_LEN, NitroNsm, Nsm,
    PcrDescription, SimNsm, measure_binary, measure_binary_file,
};
pub use sealing::{KEY_LEN, Mode, Purpose, PurposeKey, RecipientKey, RootSecret};
pub use tls::{attest_certificate, attest_enclave, check_tls_binding, spki_sha256};
pub use verify::{AWS_NITRO_ROOT_G1_SHA256, Policy, VerifiedDocument, Verifier};
