//! KMS Recipient support: the enclave's ephemeral RSA key and the opening of
//! the CMS envelope KMS returns in `CiphertextForRecipient`.
//!
//! # Flow
//!
//! 1. The enclave makes a [`RecipientKey`] and asks its NSM for an attestation
//!    document whose `public_key` is [`RecipientKey::public_key_spki_der`].
//! 2. The host relay calls KMS `Decrypt` (or `GenerateDataKey`) with its own
//!    credentials and `Recipient = { AttestationDocument: <that document>,
//!    KeyEncryptionAlgorithm: RSAES_OAEP_SHA_256 }`. KMS checks the document
//!    and the key policy's `kms:RecipientAttestation:*` conditions and returns
//!    `CiphertextForRecipient` instead of `Plaintext`.
//! 3. The host passes `CiphertextForRecipient` to the enclave, which opens it
//!    with [`RecipientKey::open_root_secret`] (or
//!    [`RecipientKey::decrypt_envelope`] for other payloads). Only the holder
//!    of the RSA private key, which never leaves the enclave, can do that; a
//!    replayed document is useless to the host without it.
//!
//! # Envelope format
//!
//! `CiphertextForRecipient` is a BER-encoded CMS `ContentInfo` (RFC 5652)
//! holding `EnvelopedData` with exactly one `KeyTransRecipientInfo`:
//! RSAES-OAEP (SHA-256, MGF1-SHA-256, empty label) wraps a 32-byte key that
//! encrypts the content with AES-256-CBC and PKCS#7 padding, the IV being the
//! cipher's OCTET STRING parameter. Anything else is refused with its own
//! [`EnvelopeError`] variant.
//!
//! CMS content encryption is not authenticated. An attacker who can submit
//! altered envelopes and learn whether each one opened has a padding oracle,
//! so use a fresh key per KMS request, discard it after one attempt, and do
//! not report the error detail to the host.

use std::borrow::Cow;
use std::fmt;

use aws_lc_rs::cipher::{AES_256, DecryptionContext, PaddedBlockDecryptingKey, UnboundCipherKey};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rsa::{KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey};
use aws_lc_rs::rsa::{PrivateDecryptingKey, PublicEncryptingKey};
use zeroize::Zeroizing;

use super::ber::{Element, Reader, oid_to_string, tag};
use super::{KEY_LEN, RootSecret};
use crate::error::{EnvelopeError, Error, Result};

/// DER contents of the OIDs the envelope must carry.
mod oid {
    /// id-envelopedData, 1.2.840.113549.1.7.3.
    pub(super) const ENVELOPED_DATA: &[u8] =
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03];
    /// id-data, 1.2.840.113549.1.7.1.
    pub(super) const DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
    /// id-RSAES-OAEP, 1.2.840.113549.1.1.7.
    pub(super) const RSAES_OAEP: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x07];
    /// id-mgf1, 1.2.840.113549.1.1.8.
    pub(super) const MGF1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08];
    /// id-pSpecified, 1.2.840.113549.1.1.9.
    pub(super) const P_SPECIFIED: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x09];
    /// id-sha256, 2.16.840.1.101.3.4.2.1.
    pub(super) const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
    /// id-aes256-CBC, 2.16.840.1.101.3.4.1.42.
    pub(super) const AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];
}

/// RSA modulus size KMS works with, in bits.
const RSA_BITS: usize = 2048;
/// AES block and IV length.
const BLOCK_LEN: usize = 16;

/// The enclave's ephemeral RSA-2048 key for one KMS request: KMS encrypts
/// the response to its public key, which the attestation document carries.
///
/// The private key lives in aws-lc memory (freed and cleansed on drop), is
/// never exported, and is not printed by `Debug`. Make one per request: see
/// the padding-oracle note in the module docs.
pub struct RecipientKey {
    key: OaepPrivateDecryptingKey,
    spki: Vec<u8>,
}

impl fmt::Debug for RecipientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecipientKey")
            .field("bits", &self.key.key_size_bits())
            .field("private_key", &"<redacted>")
            .finish()
    }
}

impl RecipientKey {
    /// A fresh RSA-2048 key (public exponent 65537) from aws-lc's generator.
    ///
    /// # Errors
    ///
    /// [`Error::RecipientKeyGeneration`] if key generation fails.
    pub fn generate() -> Result<Self> {
        let key = PrivateDecryptingKey::generate(KeySize::Rsa2048)
            .map_err(|_| Error::RecipientKeyGeneration)?;
        Self::from_key(key).ok_or(Error::RecipientKeyGeneration)
    }

    /// A key from PKCS#8 DER, for tests and fuzzing with fixed envelopes.
    /// Production code uses [`Self::generate`]: a recipient key must be
    /// ephemeral.
    ///
    /// # Errors
    ///
    /// [`Error::RecipientKeyRejected`] unless `der` is an RSA-2048 private
    /// key in PKCS#8.
    #[doc(hidden)]
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        let key = PrivateDecryptingKey::from_pkcs8(der).map_err(|_| Error::RecipientKeyRejected)?;
        if key.key_size_bits() != RSA_BITS {
            return Err(Error::RecipientKeyRejected);
        }
        Self::from_key(key).ok_or(Error::RecipientKeyRejected)
    }

    fn from_key(key: PrivateDecryptingKey) -> Option<Self> {
        let spki = key.public_key().as_der().ok()?.as_ref().to_vec();
        // The public key must parse back: KMS will parse it too.
        PublicEncryptingKey::from_der(&spki).ok()?;
        let key = OaepPrivateDecryptingKey::new(key).ok()?;
        Some(Self { key, spki })
    }

    /// The public key as X.509 SubjectPublicKeyInfo DER (rsaEncryption,
    /// 294 bytes): the value for the attestation document's `public_key`,
    /// exactly what KMS expects there.
    #[must_use]
    pub fn public_key_spki_der(&self) -> Vec<u8> {
        self.spki.clone()
    }

    /// Opens a KMS `CiphertextForRecipient` (BER CMS EnvelopedData, see the
    /// module docs) and returns the plaintext.
    ///
    /// # Errors
    ///
    /// [`Error::Envelope`] with the [`EnvelopeError`] that says what is wrong:
    /// malformed or truncated BER, trailing bytes, nesting too deep, another
    /// content type, not exactly one key-transport recipient, another key
    /// encryption algorithm or OAEP hash, another content cipher, an IV that
    /// is not 16 bytes, a key that does not unwrap with this key, or bad
    /// padding.
    pub fn decrypt_envelope(&self, ciphertext_for_recipient: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let envelope = parse_envelope(ciphertext_for_recipient)?;
        Ok(self.decrypt_parsed(&envelope)?)
    }

    /// Opens a KMS `CiphertextForRecipient` whose plaintext is the cluster's
    /// 32-byte root secret (`GenerateDataKey` with `NumberOfBytes = 32`, or
    /// `Decrypt` of such a data key).
    ///
    /// # Errors
    ///
    /// The errors of [`Self::decrypt_envelope`], and
    /// [`EnvelopeError::PlaintextLength`] if the plaintext is not 32 bytes.
    pub fn open_root_secret(&self, ciphertext_for_recipient: &[u8]) -> Result<RootSecret> {
        let plaintext = self.decrypt_envelope(ciphertext_for_recipient)?;
        let bytes = Zeroizing::new(<[u8; KEY_LEN]>::try_from(plaintext.as_slice()).map_err(
            |_| EnvelopeError::PlaintextLength {
                len: plaintext.len(),
                expected: KEY_LEN,
            },
        )?);
        Ok(RootSecret::from_bytes(*bytes))
    }

    fn decrypt_parsed(&self, envelope: &Envelope<'_>) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
        let ciphertext = &envelope.encrypted_content;
        if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(BLOCK_LEN) {
            return Err(EnvelopeError::CiphertextLength {
                len: ciphertext.len(),
            });
        }

        let mut key_buf = Zeroizing::new(vec![0u8; self.key.min_output_size()]);
        let content_key = self
            .key
            .decrypt(
                &OAEP_SHA256_MGF1SHA256,
                &envelope.encrypted_key,
                &mut key_buf,
                None,
            )
            .map_err(|_| EnvelopeError::KeyUnwrap)?;
        if content_key.len() != KEY_LEN {
            return Err(EnvelopeError::ContentKeyLength {
                len: content_key.len(),
            });
        }

        let aes = UnboundCipherKey::new(&AES_256, content_key)
            .and_then(PaddedBlockDecryptingKey::cbc_pkcs7)
            .map_err(|_| EnvelopeError::ContentKeyLength {
                len: content_key.len(),
            })?;
        let mut buf = Zeroizing::new(ciphertext.to_vec());
        let plaintext_len = aes
            .decrypt(
                &mut buf,
                DecryptionContext::Iv128(FixedLength::from(envelope.iv)),
            )
            .map_err(|_| EnvelopeError::Padding)?
            .len();
        buf.truncate(plaintext_len);
        Ok(buf)
    }
}

/// The parts of a checked envelope that decryption needs.
struct Envelope<'a> {
    encrypted_key: Cow<'a, [u8]>,
    iv: [u8; BLOCK_LEN],
    encrypted_content: Cow<'a, [u8]>,
}

/// Parses and checks the whole envelope, down to the algorithms.
fn parse_envelope(input: &[u8]) -> Result<Envelope<'_>, EnvelopeError> {
    // ContentInfo ::= SEQUENCE { contentType OID, content [0] EXPLICIT ANY }
    let mut top = Reader::new(input);
    let content_info = top.read(tag::SEQUENCE, "ContentInfo")?;
    top.finish("ContentInfo")?;
    let mut ci = content_info.children("ContentInfo")?;
    let content_type = ci.read(tag::OID, "ContentInfo.contentType")?;
    expect_oid(content_type, oid::ENVELOPED_DATA, |oid| {
        EnvelopeError::ContentType {
            which: "outer",
            oid,
            expected: "1.2.840.113549.1.7.3 (envelopedData)",
        }
    })?;
    let content = ci.read(tag::context_constructed(0), "ContentInfo.content")?;
    ci.finish("ContentInfo")?;
    let mut explicit = content.children("ContentInfo.content")?;
    let enveloped = explicit.read(tag::SEQUENCE, "EnvelopedData")?;
    explicit.finish("ContentInfo.content")?;

    // EnvelopedData ::= SEQUENCE { version, originatorInfo [0] OPTIONAL,
    //   recipientInfos SET, encryptedContentInfo, unprotectedAttrs [1] OPTIONAL }
    let mut ed = enveloped.children("EnvelopedData")?;
    let version = ed
        .read(tag::INTEGER, "EnvelopedData.version")?
        .small_uint("EnvelopedData.version")?;
    // 0 with issuerAndSerialNumber recipients, 2 with subjectKeyIdentifier
    // ones (KMS); 3 and 4 come with recipient kinds refused below.
    if version != 0 && version != 2 {
        return Err(EnvelopeError::Version {
            structure: "EnvelopedData",
            version,
        });
    }
    // Certificates and CRLs of the originator: unused by key transport.
    ed.read_optional(tag::context_constructed(0), "EnvelopedData.originatorInfo")?;
    let recipients = ed.read(tag::SET, "EnvelopedData.recipientInfos")?;
    let encrypted_content_info = ed.read(tag::SEQUENCE, "EncryptedContentInfo")?;
    ed.read_optional(
        tag::context_constructed(1),
        "EnvelopedData.unprotectedAttrs",
    )?;
    ed.finish("EnvelopedData")?;

    let encrypted_key = parse_recipients(recipients)?;
    let (iv, encrypted_content) = parse_encrypted_content_info(encrypted_content_info)?;
    Ok(Envelope {
        encrypted_key,
        iv,
        encrypted_content,
    })
}

/// Checks that the SET holds exactly one acceptable KeyTransRecipientInfo
/// and returns its encrypted key.
fn parse_recipients(set: Element<'_>) -> Result<Cow<'_, [u8]>, EnvelopeError> {
    let mut reader = set.children("EnvelopedData.recipientInfos")?;
    let mut infos = Vec::new();
    while !reader.is_empty() {
        infos.push(reader.read_any("RecipientInfo")?);
    }
    let [info] = infos[..] else {
        return Err(EnvelopeError::RecipientCount { count: infos.len() });
    };
    // ktri is an untagged SEQUENCE; kari [1], kekri [2], pwri [3], ori [4].
    if info.tag != tag::SEQUENCE {
        return Err(EnvelopeError::RecipientKind);
    }

    // KeyTransRecipientInfo ::= SEQUENCE { version, rid, keyEncryptionAlgorithm,
    //   encryptedKey OCTET STRING }
    let mut ktri = info.children("KeyTransRecipientInfo")?;
    let version = ktri
        .read(tag::INTEGER, "KeyTransRecipientInfo.version")?
        .small_uint("KeyTransRecipientInfo.version")?;
    let rid = ktri.read_any("KeyTransRecipientInfo.rid")?;
    // rid names our key: issuerAndSerialNumber (version 0) or
    // subjectKeyIdentifier [0] (version 2). With one ephemeral key there is
    // nothing to look up, so only the form is checked.
    let rid_ok = match version {
        0 => rid.tag == tag::SEQUENCE,
        2 => rid.tag == tag::context(0) || rid.tag == tag::context_constructed(0),
        _ => {
            return Err(EnvelopeError::Version {
                structure: "KeyTransRecipientInfo",
                version,
            });
        }
    };
    if !rid_ok {
        return Err(EnvelopeError::Malformed {
            field: "KeyTransRecipientInfo.rid",
        });
    }
    let algorithm = ktri.read(tag::SEQUENCE, "keyEncryptionAlgorithm")?;
    check_oaep(algorithm)?;
    let encrypted_key = ktri.read_octet_string("KeyTransRecipientInfo.encryptedKey")?;
    ktri.finish("KeyTransRecipientInfo")?;
    Ok(encrypted_key)
}

/// Checks keyEncryptionAlgorithm: id-RSAES-OAEP with
/// `RSAES-OAEP-params ::= SEQUENCE { hashFunc [0] DEFAULT sha1,
/// maskGenFunc [1] DEFAULT mgf1SHA1, pSourceFunc [2] DEFAULT pSpecifiedEmpty }`
/// naming SHA-256, MGF1-SHA-256 and an empty label.
fn check_oaep(algorithm: Element<'_>) -> Result<(), EnvelopeError> {
    let mut alg = algorithm.children("keyEncryptionAlgorithm")?;
    let id = alg.read(tag::OID, "keyEncryptionAlgorithm.algorithm")?;
    expect_oid(id, oid::RSAES_OAEP, |oid| {
        EnvelopeError::KeyEncryptionAlgorithm { oid }
    })?;
    let Some(params) = alg.read_optional(tag::SEQUENCE, "RSAES-OAEP-params")? else {
        return Err(EnvelopeError::OaepParameters {
            problem: "absent, so SHA-1 by default",
        });
    };
    alg.finish("keyEncryptionAlgorithm")?;

    let mut p = params.children("RSAES-OAEP-params")?;
    let hash_ok =
        match p.read_optional(tag::context_constructed(0), "RSAES-OAEP-params.hashFunc")? {
            Some(hash) => is_sha256(hash, "RSAES-OAEP-params.hashFunc")?,
            None => false,
        };
    if !hash_ok {
        return Err(EnvelopeError::OaepParameters {
            problem: "hash function is not SHA-256",
        });
    }
    let mgf_ok =
        match p.read_optional(tag::context_constructed(1), "RSAES-OAEP-params.maskGenFunc")? {
            Some(mgf) => is_mgf1_sha256(mgf)?,
            None => false,
        };
    if !mgf_ok {
        return Err(EnvelopeError::OaepParameters {
            problem: "mask generation function is not MGF1 with SHA-256",
        });
    }
    if let Some(source) =
        p.read_optional(tag::context_constructed(2), "RSAES-OAEP-params.pSourceFunc")?
        && !is_empty_label(source)?
    {
        return Err(EnvelopeError::OaepParameters {
            problem: "label is not empty",
        });
    }
    p.finish("RSAES-OAEP-params")?;
    Ok(())
}

/// Whether an EXPLICIT-tagged AlgorithmIdentifier names SHA-256 (with
/// absent or NULL parameters).
fn is_sha256(explicit: Element<'_>, field: &'static str) -> Result<bool, EnvelopeError> {
    let mut outer = explicit.children(field)?;
    let alg = outer.read(tag::SEQUENCE, field)?;
    outer.finish(field)?;
    is_sha256_algorithm(alg, field)
}

fn is_sha256_algorithm(alg: Element<'_>, field: &'static str) -> Result<bool, EnvelopeError> {
    let mut a = alg.children(field)?;
    let id = a.read(tag::OID, field)?;
    if let Some(null) = a.read_optional(tag::NULL, field)?
        && !null.contents.is_empty()
    {
        return Err(EnvelopeError::Malformed { field });
    }
    a.finish(field)?;
    Ok(id.contents == oid::SHA256)
}

/// An EXPLICIT-tagged AlgorithmIdentifier: its OID's contents and a reader
/// positioned at its parameters.
fn explicit_algorithm<'a>(
    explicit: Element<'a>,
    field: &'static str,
) -> Result<(&'a [u8], Reader<'a>), EnvelopeError> {
    let mut outer = explicit.children(field)?;
    let alg = outer.read(tag::SEQUENCE, field)?;
    outer.finish(field)?;
    let mut a = alg.children(field)?;
    let id = a.read(tag::OID, field)?;
    Ok((id.contents, a))
}

/// Whether `[1] EXPLICIT AlgorithmIdentifier` is id-mgf1 with SHA-256.
fn is_mgf1_sha256(explicit: Element<'_>) -> Result<bool, EnvelopeError> {
    const FIELD: &str = "RSAES-OAEP-params.maskGenFunc";
    let (id, mut a) = explicit_algorithm(explicit, FIELD)?;
    if id != oid::MGF1 {
        return Ok(false);
    }
    let Some(hash) = a.read_optional(tag::SEQUENCE, FIELD)? else {
        return Ok(false);
    };
    a.finish(FIELD)?;
    is_sha256_algorithm(hash, FIELD)
}

/// Whether `[2] EXPLICIT AlgorithmIdentifier` is id-pSpecified with an
/// empty OCTET STRING.
fn is_empty_label(explicit: Element<'_>) -> Result<bool, EnvelopeError> {
    const FIELD: &str = "RSAES-OAEP-params.pSourceFunc";
    let (id, mut a) = explicit_algorithm(explicit, FIELD)?;
    if id != oid::P_SPECIFIED {
        return Ok(false);
    }
    let label = a.read_octet_string(FIELD)?;
    a.finish(FIELD)?;
    Ok(label.is_empty())
}

/// Checks `EncryptedContentInfo ::= SEQUENCE { contentType, contentEncryptionAlgorithm,
/// encryptedContent [0] IMPLICIT OCTET STRING OPTIONAL }` and returns the IV
/// and the ciphertext.
#[allow(clippy::type_complexity)]
fn parse_encrypted_content_info(
    eci: Element<'_>,
) -> Result<([u8; BLOCK_LEN], Cow<'_, [u8]>), EnvelopeError> {
    let mut r = eci.children("EncryptedContentInfo")?;
    let content_type = r.read(tag::OID, "EncryptedContentInfo.contentType")?;
    expect_oid(content_type, oid::DATA, |oid| EnvelopeError::ContentType {
        which: "encrypted",
        oid,
        expected: "1.2.840.113549.1.7.1 (data)",
    })?;

    let algorithm = r.read(tag::SEQUENCE, "contentEncryptionAlgorithm")?;
    let mut alg = algorithm.children("contentEncryptionAlgorithm")?;
    let id = alg.read(tag::OID, "contentEncryptionAlgorithm.algorithm")?;
    expect_oid(id, oid::AES256_CBC, |oid| EnvelopeError::ContentCipher {
        oid,
    })?;
    if alg.is_empty() {
        return Err(EnvelopeError::IvLength { len: 0 });
    }
    let iv = alg.read_octet_string("contentEncryptionAlgorithm.iv")?;
    alg.finish("contentEncryptionAlgorithm")?;
    let iv =
        <[u8; BLOCK_LEN]>::try_from(&*iv).map_err(|_| EnvelopeError::IvLength { len: iv.len() })?;

    let content = match r.peek_tag() {
        Some(t) if t == tag::context(0) || t == tag::context_constructed(0) => r
            .read_any("EncryptedContentInfo.encryptedContent")?
            .octets("EncryptedContentInfo.encryptedContent")?,
        None => return Err(EnvelopeError::MissingContent),
        Some(_) => {
            return Err(EnvelopeError::Malformed {
                field: "EncryptedContentInfo.encryptedContent",
            });
        }
    };
    r.finish("EncryptedContentInfo")?;
    Ok((iv, content))
}

/// Checks an OID element against the expected contents octets.
fn expect_oid(
    element: Element<'_>,
    expected: &[u8],
    error: impl FnOnce(String) -> EnvelopeError,
) -> Result<(), EnvelopeError> {
    if element.contents == expected {
        Ok(())
    } else {
        Err(error(oid_to_string(element.contents)))
    }
}
