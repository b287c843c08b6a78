//! Signed images: the EIF signature section and PCR8.
//!
//! A signed EIF carries a signature section: a CBOR array with one entry per signed PCR
//! (only PCR0 is signed), each a map `{"signing_certificate": [bytes of the PEM
//! certificate], "signature": [bytes of an untagged COSE_Sign1]}` — byte strings are
//! written as CBOR arrays of integers, as `nitro-cli` writes them. The COSE_Sign1
//! (protected header `{alg: ES384}`) signs the CBOR map
//! `{"register_index": 0, "register_value": [PCR0 bytes]}`. PCR8 is the measurement of the
//! certificate's DER.
//!
//! Only ECDSA P-384 keys in PKCS#8 PEM (`BEGIN PRIVATE KEY`) are supported. ECDSA
//! signatures are randomised, so two signed builds differ in the signature section; the
//! PCRs, PCR8 included, do not.

use ciborium::Value;
use coset::{CborSerializable, CoseSign1, CoseSign1Builder, HeaderBuilder, iana};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P384_SHA384_FIXED, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use x509_cert::Certificate;
use x509_cert::der::Decode;

use crate::error::{Error, Result};
use crate::pcr::Pcr;

fn section_error(reason: impl Into<String>) -> Error {
    Error::SignatureSection {
        reason: reason.into(),
    }
}

/// A signing key with its certificate, checked to belong together.
#[derive(Debug)]
pub struct SigningIdentity {
    key: EcdsaKeyPair,
    cert_pem: Vec<u8>,
    cert_der: Vec<u8>,
}

/// The uncompressed public point in a certificate's SubjectPublicKeyInfo.
fn cert_public_key(der: &[u8]) -> Result<Vec<u8>> {
    let cert = Certificate::from_der(der).map_err(|e| Error::SigningCert {
        reason: format!("not an X.509 certificate: {e}"),
    })?;
    Ok(cert
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes()
        .to_vec())
}

fn cert_der_from_pem(pem: &[u8]) -> Result<Vec<u8>> {
    CertificateDer::from_pem_slice(pem)
        .map(|c| c.as_ref().to_vec())
        .map_err(|e| Error::SigningCert {
            reason: format!("no PEM certificate: {e}"),
        })
}

fn bytes_value(bytes: &[u8]) -> Value {
    Value::Array(bytes.iter().map(|b| Value::Integer((*b).into())).collect())
}

fn value_bytes(value: &Value, what: &str) -> Result<Vec<u8>> {
    let items = value
        .as_array()
        .ok_or_else(|| section_error(format!("{what} is not an array of bytes")))?;
    items
        .iter()
        .map(|v| {
            v.as_integer()
                .and_then(|i| u8::try_from(i).ok())
                .ok_or_else(|| section_error(format!("{what} holds a non-byte")))
        })
        .collect()
}

fn map_get<'a>(value: &'a Value, key: &str) -> Result<&'a Value> {
    value
        .as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some(key)))
        .map(|(_, v)| v)
        .ok_or_else(|| section_error(format!("no {key:?} in the entry")))
}

fn to_cbor(value: &Value) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).map_err(|e| section_error(e.to_string()))?;
    Ok(out)
}

impl SigningIdentity {
    /// Loads a PKCS#8 PEM P-384 private key and the PEM certificate of its public key.
    ///
    /// # Errors
    /// [`Error::SigningKey`] for a key that is not PKCS#8 P-384 (convert SEC1
    /// `EC PRIVATE KEY` files with `openssl pkcs8 -topk8 -nocrypt`),
    /// [`Error::SigningCert`] for a bad certificate or one for another key.
    pub fn from_pem(key_pem: &[u8], cert_pem: Vec<u8>) -> Result<Self> {
        let pkcs8 = PrivatePkcs8KeyDer::from_pem_slice(key_pem).map_err(|e| Error::SigningKey {
            reason: format!(
                "no PKCS#8 PEM private key ({e}); convert an EC PRIVATE KEY with \
                 `openssl pkcs8 -topk8 -nocrypt`"
            ),
        })?;
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P384_SHA384_FIXED_SIGNING,
            pkcs8.secret_pkcs8_der(),
            &SystemRandom::new(),
        )
        .map_err(|e| Error::SigningKey {
            reason: format!("not an ECDSA P-384 key: {e}"),
        })?;
        let cert_der = cert_der_from_pem(&cert_pem)?;
        if cert_public_key(&cert_der)? != key.public_key().as_ref() {
            return Err(Error::SigningCert {
                reason: "the certificate is for a different key".to_owned(),
            });
        }
        Ok(Self {
            key,
            cert_pem,
            cert_der,
        })
    }

    /// The certificate's DER, whose measurement is PCR8.
    #[must_use]
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The signature section for an image whose PCR0 is `pcr0`.
    ///
    /// # Errors
    /// [`Error::SignatureSection`] if signing or encoding fails.
    pub fn signature_section(&self, pcr0: &Pcr) -> Result<Vec<u8>> {
        let payload = to_cbor(&Value::Map(vec![
            (
                Value::Text("register_index".into()),
                Value::Integer(0.into()),
            ),
            (Value::Text("register_value".into()), bytes_value(&pcr0.0)),
        ]))?;
        let rng = SystemRandom::new();
        let mut failure = None;
        let sign1 = CoseSign1Builder::new()
            .protected(
                HeaderBuilder::new()
                    .algorithm(iana::Algorithm::ES384)
                    .build(),
            )
            .payload(payload)
            .create_signature(b"", |tbs| match self.key.sign(&rng, tbs) {
                Ok(sig) => sig.as_ref().to_vec(),
                Err(e) => {
                    failure = Some(e);
                    Vec::new()
                }
            })
            .build();
        if let Some(e) = failure {
            return Err(section_error(format!("signing failed: {e}")));
        }
        let cose = sign1
            .to_vec()
            .map_err(|e| section_error(format!("COSE encoding: {e}")))?;
        to_cbor(&Value::Array(vec![Value::Map(vec![
            (
                Value::Text("signing_certificate".into()),
                bytes_value(&self.cert_pem),
            ),
            (Value::Text("signature".into()), bytes_value(&cose)),
        ])]))
    }
}

/// Checks a signature section against the image's PCR0 and returns the signing
/// certificate's DER (for PCR8): the first entry must sign PCR0 with the key of its
/// certificate.
///
/// # Errors
/// [`Error::SignatureSection`] for a malformed section, a signature over another PCR or
/// value, or a signature that does not verify; [`Error::SigningCert`] for a bad
/// certificate.
pub fn verify_signature_section(section: &[u8], pcr0: &Pcr) -> Result<Vec<u8>> {
    let value: Value =
        ciborium::from_reader(section).map_err(|e| section_error(format!("not CBOR: {e}")))?;
    let entry = value
        .as_array()
        .and_then(|a| a.first())
        .ok_or_else(|| section_error("no signature entry"))?;
    let cert_pem = value_bytes(
        map_get(entry, "signing_certificate")?,
        "signing_certificate",
    )?;
    let cose = value_bytes(map_get(entry, "signature")?, "signature")?;
    let cert_der = cert_der_from_pem(&cert_pem)?;
    let public_key = cert_public_key(&cert_der)?;

    let sign1 =
        CoseSign1::from_slice(&cose).map_err(|e| section_error(format!("COSE_Sign1: {e}")))?;
    let payload = sign1
        .payload
        .as_deref()
        .ok_or_else(|| section_error("COSE_Sign1 without payload"))?;
    let info: Value = ciborium::from_reader(payload)
        .map_err(|e| section_error(format!("PCR info is not CBOR: {e}")))?;
    let index = map_get(&info, "register_index")?.as_integer();
    if index != Some(0.into()) {
        return Err(section_error("the signature is not for PCR0"));
    }
    if value_bytes(map_get(&info, "register_value")?, "register_value")? != pcr0.0 {
        return Err(section_error("the signed PCR0 is not this image's PCR0"));
    }
    let key = UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, &public_key);
    sign1
        .verify_signature(b"", |sig, tbs| key.verify(tbs, sig))
        .map_err(|_| section_error("the signature does not verify with the certificate's key"))?;
    Ok(cert_der)
}
