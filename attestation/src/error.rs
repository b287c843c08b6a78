//! The crate's error types: [`Error`] for everything, [`VerifyError`] for a
//! rejected attestation document and [`EnvelopeError`] for a rejected KMS
//! `CiphertextForRecipient`, the two things callers match on in detail.

use std::fmt;
use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a certificate sits in a document: in the `cabundle` (index 0 is the
/// root) or the signing `certificate` (the leaf).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertPosition {
    /// `cabundle[index]`; index 0 is the root.
    Cabundle(usize),
    /// The document's `certificate` field, the key that signed the document.
    Leaf,
}

impl fmt::Display for CertPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cabundle(0) => f.write_str("cabundle[0] (root)"),
            Self::Cabundle(i) => write!(f, "cabundle[{i}]"),
            Self::Leaf => f.write_str("leaf certificate"),
        }
    }
}

/// Why an attestation document was rejected. Every check has its own variant,
/// so tests and callers can tell a bad signature from an expired chain.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The input (document or payload) is larger than any NSM can emit.
    #[error("{what} is {len} bytes, more than the {max}-byte maximum")]
    TooLarge {
        /// `"document"` or `"payload"`.
        what: &'static str,
        /// Actual length.
        len: usize,
        /// Maximum accepted length.
        max: usize,
    },
    /// The CBOR ended before the item was complete.
    #[error("{what} CBOR is truncated")]
    Truncated {
        /// `"document"` or `"payload"`.
        what: &'static str,
    },
    /// Bytes follow the single CBOR item.
    #[error("{count} trailing bytes after the {what} CBOR item")]
    TrailingBytes {
        /// `"document"` or `"payload"`.
        what: &'static str,
        /// Number of extra bytes.
        count: usize,
    },
    /// The bytes are not well-formed CBOR.
    #[error("{what} is not well-formed CBOR")]
    MalformedCbor {
        /// `"document"` or `"payload"`.
        what: &'static str,
        /// The decoder's complaint.
        #[source]
        source: ciborium::de::Error<std::io::Error>,
    },
    /// The COSE_Sign1 carries a CBOR tag. The NSM emits untagged documents,
    /// and this verifier accepts exactly what the NSM emits.
    #[error("COSE_Sign1 is tagged ({tag}); Nitro documents are untagged")]
    Tagged {
        /// The tag number found.
        tag: u64,
    },
    /// The outer structure is not a COSE_Sign1 (4-element array, header maps,
    /// byte strings) or a header repeats a label.
    #[error("not a COSE_Sign1 structure")]
    CoseStructure(#[source] coset::CoseError),
    /// The protected header is not exactly `{1: -35}` (alg ES384).
    #[error("protected header must be exactly {{alg: ES384}}")]
    ProtectedHeader,
    /// The unprotected header is not empty.
    #[error("unprotected header must be empty")]
    UnprotectedHeader,
    /// The payload is detached (nil).
    #[error("COSE_Sign1 has no payload")]
    MissingPayload,
    /// The signature is not a 96-byte raw r||s ES384 value.
    #[error("signature is {len} bytes; ES384 signatures are 96")]
    SignatureLength {
        /// Actual length.
        len: usize,
    },
    /// The payload is not a CBOR map.
    #[error("payload is not a CBOR map")]
    PayloadNotMap,
    /// A map has a key that is not of the expected type (text for the
    /// payload, unsigned integer for `pcrs`).
    #[error("{map} map has a key of the wrong type")]
    KeyType {
        /// `"payload"` or `"pcrs"`.
        map: &'static str,
    },
    /// A payload field appears more than once.
    #[error("duplicate payload field {name:?}")]
    DuplicateField {
        /// Field name.
        name: String,
    },
    /// A PCR index appears more than once.
    #[error("duplicate PCR index {index}")]
    DuplicatePcr {
        /// PCR index.
        index: u64,
    },
    /// A mandatory payload field is absent.
    #[error("payload field {name} is missing")]
    MissingField {
        /// Field name.
        name: &'static str,
    },
    /// A payload field has the wrong CBOR type.
    #[error("payload field {name} has the wrong CBOR type")]
    FieldType {
        /// Field name.
        name: &'static str,
    },
    /// A payload field is empty where the format requires content.
    #[error("payload field {name} is empty")]
    EmptyField {
        /// Field name.
        name: &'static str,
    },
    /// A payload field is longer than the format allows.
    #[error("payload field {name} is {len} bytes, more than {max}")]
    FieldTooLong {
        /// Field name (`cabundle` for any bundle entry).
        name: &'static str,
        /// Actual length.
        len: usize,
        /// Maximum.
        max: usize,
    },
    /// `digest` is not `"SHA384"`.
    #[error("digest {digest:?} is not SHA384")]
    UnsupportedDigest {
        /// The digest named by the document.
        digest: String,
    },
    /// `timestamp` is zero.
    #[error("timestamp is zero")]
    ZeroTimestamp,
    /// `pcrs` has no entries or more than 32.
    #[error("document has {count} PCRs; 1..=32 allowed")]
    PcrCount {
        /// Number of entries.
        count: usize,
    },
    /// A PCR index is 32 or more.
    #[error("PCR index {index} is out of range 0..32")]
    PcrIndex {
        /// The index found.
        index: u64,
    },
    /// A PCR value is not 48 bytes (SHA-384).
    #[error("PCR{index} is {len} bytes; SHA384 PCRs are 48")]
    PcrLength {
        /// PCR index.
        index: u8,
        /// Actual length.
        len: usize,
    },
    /// `cabundle` has no certificates.
    #[error("cabundle is empty")]
    EmptyCabundle,
    /// `cabundle[0]` is not the pinned root.
    #[error("cabundle[0] is not the trusted root (its SHA-256 is {})", hex::encode(.actual_sha256))]
    UntrustedRoot {
        /// SHA-256 of the DER the document offered as its root.
        actual_sha256: [u8; 32],
    },
    /// A certificate is not valid DER X.509.
    #[error("{position} is not a valid X.509 certificate")]
    CertificateParse {
        /// Which certificate.
        position: CertPosition,
        /// The parser's complaint.
        #[source]
        source: x509_cert::der::Error,
    },
    /// The chain is out of order: this certificate's issuer is not the
    /// subject of the one before it (root first, leaf last).
    #[error("{position} is not issued by the certificate before it (cabundle order is root first)")]
    ChainOrder {
        /// The certificate whose issuer does not match.
        position: CertPosition,
    },
    /// A certificate is not valid at the verification time.
    #[error("{position} is valid {not_before_ms}..={not_after_ms} ms, not at {at_ms} ms")]
    CertificateTime {
        /// Which certificate.
        position: CertPosition,
        /// The verification time, ms since the UNIX epoch.
        at_ms: u64,
        /// Start of validity, ms since the UNIX epoch.
        not_before_ms: u64,
        /// End of validity, ms since the UNIX epoch.
        not_after_ms: u64,
    },
    /// A certificate lacks the key usage its place in the chain needs
    /// (keyCertSign for CAs, digitalSignature for the leaf).
    #[error("{position} lacks key usage {usage}")]
    KeyUsage {
        /// Which certificate.
        position: CertPosition,
        /// The missing usage.
        usage: &'static str,
    },
    /// Path validation (signatures, basic constraints, path length) failed.
    /// (The cause is part of the message, so it is not also the `source`: `{:#}` chains would repeat it.)
    #[error("certificate chain does not verify: {0}")]
    Chain(webpki::Error),
    /// The leaf's key is not an uncompressed P-384 EC point.
    #[error("leaf certificate key is not a P-384 EC key")]
    LeafKey,
    /// The ES384 signature over the Sig_structure does not verify.
    #[error("COSE signature does not verify with the leaf key")]
    BadSignature,
    /// Policy: a required PCR is absent.
    #[error("PCR{index} is required by the policy but absent")]
    PcrMissing {
        /// PCR index.
        index: u8,
    },
    /// Policy: a PCR differs from the expected value.
    #[error("PCR{index} is {}, expected {}", hex::encode(.actual), hex::encode(.expected))]
    PcrMismatch {
        /// PCR index.
        index: u8,
        /// Expected value.
        expected: Vec<u8>,
        /// Value in the document.
        actual: Vec<u8>,
    },
    /// Policy: the document comes from QEMU's `nitro-enclave` emulator: nothing in it is
    /// signed, so it proves nothing about the machine that made it.
    #[error(
        "document comes from QEMU's nitro-enclave emulator (unsigned: zero signature, no certificates); \
         production policy never accepts it"
    )]
    EmulatorDocument,
    /// A verifier for QEMU emulator documents got a document that is not one.
    #[error("not a QEMU nitro-enclave emulator document: {reason}")]
    NotEmulatorDocument {
        /// Which part differs from the emulator's fixed format.
        reason: &'static str,
    },
    /// Policy: the enclave ran in debug mode (PCR0..2 all zero).
    #[error("document is from a debug-mode enclave (PCR0..2 are zero)")]
    DebugMode,
    /// Policy: the caller's nonce is absent from the document.
    #[error("document has no nonce, but the policy requires one")]
    NonceMissing,
    /// Policy: the document's nonce is not the caller's.
    #[error("document nonce does not match the challenge")]
    NonceMismatch,
    /// Policy: the document is older than the maximum age.
    #[error("document is {age_ms} ms old; at most {max_age_ms} ms allowed")]
    TooOld {
        /// Age at verification time.
        age_ms: u64,
        /// Policy maximum.
        max_age_ms: u64,
    },
    /// Policy: the document's timestamp is after the verification time.
    #[error("document timestamp {timestamp_ms} is after the verification time {at_ms}")]
    FromTheFuture {
        /// Document timestamp.
        timestamp_ms: u64,
        /// Verification time.
        at_ms: u64,
    },
}

/// Why a KMS `CiphertextForRecipient` (CMS EnvelopedData) was not opened.
/// Structure errors come first, then the algorithm checks, then the
/// cryptographic failures.
///
/// The cryptographic variants ([`Self::KeyUnwrap`], [`Self::Padding`]) tell
/// an attacker who can submit envelopes and see the error something about the
/// plaintext: never send them back to the host, and open one envelope per
/// [`crate::RecipientKey`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The input ends inside an element.
    #[error("envelope is truncated ({context})")]
    Truncated {
        /// The element being read.
        context: &'static str,
    },
    /// Bytes follow the outer ContentInfo or the last field of a structure.
    #[error("{count} unexpected trailing bytes after {context}")]
    TrailingBytes {
        /// The structure they follow.
        context: &'static str,
        /// Number of extra bytes.
        count: usize,
    },
    /// Elements are nested deeper than any CMS envelope needs.
    #[error("envelope nests more than {max} levels deep")]
    TooDeep {
        /// The nesting limit.
        max: usize,
    },
    /// A field is missing, has the wrong ASN.1 tag, or its encoding is not
    /// valid BER (reserved length octet, indefinite length on a primitive,
    /// high tag number, an over-long length, ...).
    #[error("envelope field {field} is malformed")]
    Malformed {
        /// The field being read.
        field: &'static str,
    },
    /// A content type is not the one KMS uses: `id-envelopedData` for the
    /// outer ContentInfo, `id-data` for the encrypted content.
    #[error("{which} content type is {oid}, expected {expected}")]
    ContentType {
        /// `"outer"` or `"encrypted"`.
        which: &'static str,
        /// The OID found, dotted.
        oid: String,
        /// The OID required, dotted.
        expected: &'static str,
    },
    /// A version number is not one this structure can have with a
    /// key-transport recipient.
    #[error("{structure} version {version} is not supported")]
    Version {
        /// `"EnvelopedData"` or `"KeyTransRecipientInfo"`.
        structure: &'static str,
        /// The version found (`u64::MAX` if it does not fit).
        version: u64,
    },
    /// The envelope has no recipient or more than one; KMS makes exactly one.
    #[error("envelope has {count} recipients; exactly one expected")]
    RecipientCount {
        /// Number of RecipientInfos.
        count: usize,
    },
    /// The recipient is not a KeyTransRecipientInfo (key agreement, KEK,
    /// password or other).
    #[error("recipient is not a key-transport (RSA) recipient")]
    RecipientKind,
    /// The key-encryption algorithm is not RSAES-OAEP (PKCS#1 v1.5, for
    /// example).
    #[error("key-encryption algorithm {oid} is not RSAES-OAEP (1.2.840.113549.1.1.7)")]
    KeyEncryptionAlgorithm {
        /// The OID found, dotted.
        oid: String,
    },
    /// The RSAES-OAEP parameters are not SHA-256, MGF1 with SHA-256 and an
    /// empty label.
    #[error("RSAES-OAEP parameters: {problem}")]
    OaepParameters {
        /// What differs.
        problem: &'static str,
    },
    /// The content cipher is not AES-256-CBC.
    #[error("content cipher {oid} is not AES-256-CBC (2.16.840.1.101.3.4.1.42)")]
    ContentCipher {
        /// The OID found, dotted.
        oid: String,
    },
    /// The AES-CBC IV is not 16 bytes.
    #[error("content IV is {len} bytes; AES-CBC IVs are 16")]
    IvLength {
        /// Actual length.
        len: usize,
    },
    /// The envelope carries no encrypted content (detached content).
    #[error("envelope has no encrypted content")]
    MissingContent,
    /// The encrypted content is empty or not a whole number of AES blocks.
    #[error("encrypted content is {len} bytes, not a positive multiple of 16")]
    CiphertextLength {
        /// Actual length.
        len: usize,
    },
    /// RSA-OAEP decryption of the content key failed: the envelope was made
    /// for another key, or the encrypted key was altered.
    #[error("the content key does not decrypt with this recipient key")]
    KeyUnwrap,
    /// The unwrapped content key is not a 32-byte AES-256 key.
    #[error("content key is {len} bytes; AES-256 keys are 32")]
    ContentKeyLength {
        /// Actual length.
        len: usize,
    },
    /// AES-256-CBC decryption produced invalid PKCS#7 padding: wrong key, IV
    /// or ciphertext.
    #[error("content does not decrypt (bad PKCS#7 padding)")]
    Padding,
    /// The plaintext does not have the length the caller needs (32 bytes
    /// for a root secret).
    #[error("plaintext is {len} bytes, expected {expected}")]
    PlaintextLength {
        /// Actual length.
        len: usize,
        /// Required length.
        expected: usize,
    },
}

/// Every error this crate returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An attestation document was rejected.
    #[error("attestation document rejected")]
    Verify(#[from] VerifyError),
    /// A KMS `CiphertextForRecipient` envelope was rejected.
    #[error("KMS recipient envelope rejected")]
    Envelope(#[from] EnvelopeError),
    /// Generating the RSA recipient key failed.
    #[error("generating the RSA-2048 recipient key failed")]
    RecipientKeyGeneration,
    /// A recipient key given as PKCS#8 is not a valid RSA-2048 private key.
    #[error("recipient key is not a valid RSA-2048 PKCS#8 private key")]
    RecipientKeyRejected,
    /// The NSM (hardware or simulator) failed a request.
    #[error("NSM request {request} failed: {reason}")]
    Nsm {
        /// The request kind, e.g. `"Attestation"`.
        request: &'static str,
        /// The NSM's error code or the reason.
        reason: String,
    },
    /// A request exceeded an NSM limit.
    #[error("NSM request field {field} is {len} bytes, more than {max}")]
    NsmRequestTooLarge {
        /// Field name.
        field: &'static str,
        /// Actual length.
        len: usize,
        /// Maximum.
        max: usize,
    },
    /// Generating or parsing a simulator certificate failed.
    #[error("simulator certificate authority")]
    DevCa(#[from] rcgen::Error),
    /// A saved dev root's key does not belong to its certificate.
    #[error("dev root key does not match the dev root certificate")]
    DevRootKeyMismatch,
    /// Encoding a simulator document failed.
    #[error("encoding the simulator document")]
    Encode,
    /// Signing failed in the simulator.
    #[error("signing with the simulator key")]
    Sign,
    /// The system random generator failed.
    #[error("random generator failed")]
    Random,
    /// A certificate given to a TLS helper is not valid DER X.509.
    #[error("certificate is not valid X.509")]
    Certificate(#[source] webpki::Error),
    /// The peer's TLS key is not the one the document binds.
    #[error("TLS certificate key is not bound by the attestation document")]
    TlsBindingMismatch,
    /// The document binds no TLS key (no public_key field).
    #[error("attestation document has no public_key binding")]
    TlsBindingMissing,
    /// A PEM file held no certificate.
    #[error("no certificate in PEM input")]
    Pem(#[source] rustls_pki_types::pem::Error),
    /// File I/O on a secret or certificate file failed.
    #[error("I/O on {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A root-secret file has the wrong length.
    #[error("root secret file {path} is {len} bytes, expected 32")]
    SecretLength {
        /// The file.
        path: PathBuf,
        /// Actual length.
        len: u64,
    },
    /// A root-secret file is readable by group or others.
    #[error(
        "root secret file {path} has mode {mode:o}; it must not be accessible to group or others"
    )]
    SecretPermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A blocking task (hardware NSM, file I/O) panicked or was cancelled.
    #[error("blocking task failed")]
    Join(#[from] tokio::task::JoinError),
}
