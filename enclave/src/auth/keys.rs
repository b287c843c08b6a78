//! ECDSA P-256 keys derived deterministically from a root-secret purpose
//! key, so that they survive restarts and die with the cluster: the
//! service-account token signing key and the client certificate CA.
//!
//! The private scalar is SHA-256(`k3s-daas/p256/v1` || 0 || label || 0 ||
//! purpose key || counter), taking the first counter whose value is a valid
//! P-256 scalar (all but about 2^-32 of the first tries). The label keeps
//! keys derived from one purpose key for different uses independent.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine;
use zeroize::Zeroizing;

/// The DER of a P-256 `SubjectPublicKeyInfo` up to the 65-byte point.
const SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// An RFC 5915 `ECPrivateKey` without the public key, up to the scalar.
const EC_PRIVATE_KEY_PREFIX: [u8; 7] = [0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20];

/// A P-256 PKCS#8 v1 `PrivateKeyInfo` up to the scalar, in the layout ring
/// accepts (no curve parameters inside, the public key after the scalar).
const PKCS8_PREFIX: [u8; 36] = [
    0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02,
    0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x6d, 0x30, 0x6b, 0x02,
    0x01, 0x01, 0x04, 0x20,
];

/// Between the scalar and the public point in [`PKCS8_PREFIX`]'s layout.
const PKCS8_MIDDLE: [u8; 5] = [0xa1, 0x44, 0x03, 0x42, 0x00];

/// The named-curve parameter (`[0] prime256v1`) after the scalar.
const EC_PRIVATE_KEY_SUFFIX: [u8; 12] = [
    0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
];

/// Deriving a key failed (never for a real purpose key; kept as an error
/// rather than a panic).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// No candidate scalar was accepted.
    #[error("no valid P-256 scalar could be derived")]
    NoScalar,
    /// The key could not be encoded.
    #[error("encoding the derived key failed")]
    Encoding,
}

/// An ECDSA P-256 key pair with its public forms.
pub struct DerivedKey {
    pair: EcdsaKeyPair,
    pkcs8: Zeroizing<Vec<u8>>,
    point: [u8; 65],
}

impl std::fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DerivedKey")
            .field("kid", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl DerivedKey {
    /// The key derived from `seed` (a 32-byte purpose key) with no label.
    ///
    /// # Errors
    /// [`KeyError`] (not expected for any seed).
    pub fn derive(seed: &[u8; 32]) -> Result<Self, KeyError> {
        Self::derive_labeled(seed, "")
    }

    /// The key derived from `seed` for the use `label`.
    ///
    /// # Errors
    /// [`KeyError`] (not expected for any seed).
    pub fn derive_labeled(seed: &[u8; 32], label: &str) -> Result<Self, KeyError> {
        for counter in 0u32..16 {
            let mut h = ring::digest::Context::new(&ring::digest::SHA256);
            h.update(b"k3s-daas/p256/v1\0");
            h.update(label.as_bytes());
            h.update(b"\0");
            h.update(seed);
            h.update(&counter.to_be_bytes());
            let scalar = h.finish();
            let mut der = Zeroizing::new(Vec::with_capacity(51));
            der.extend_from_slice(&EC_PRIVATE_KEY_PREFIX);
            der.extend_from_slice(scalar.as_ref());
            der.extend_from_slice(&EC_PRIVATE_KEY_SUFFIX);
            let Ok(pair) =
                EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
            else {
                continue;
            };
            let point: [u8; 65] = pair
                .public_key()
                .as_ref()
                .try_into()
                .map_err(|_| KeyError::Encoding)?;
            let mut pkcs8 = Zeroizing::new(Vec::with_capacity(138));
            pkcs8.extend_from_slice(&PKCS8_PREFIX);
            pkcs8.extend_from_slice(scalar.as_ref());
            pkcs8.extend_from_slice(&PKCS8_MIDDLE);
            pkcs8.extend_from_slice(&point);
            return Ok(DerivedKey { pair, pkcs8, point });
        }
        Err(KeyError::NoScalar)
    }

    /// Signs `msg` (ES256: SHA-256, the fixed 64-byte `r || s` form).
    ///
    /// # Errors
    /// [`KeyError::Encoding`] if the signer fails.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.pair
            .sign(&rng, msg)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| KeyError::Encoding)
    }

    /// The uncompressed public point `04 || X || Y`.
    pub fn public_point(&self) -> &[u8; 65] {
        &self.point
    }

    /// The DER `SubjectPublicKeyInfo`.
    pub fn spki_der(&self) -> Vec<u8> {
        let mut v = SPKI_PREFIX.to_vec();
        v.extend_from_slice(&self.point);
        v
    }

    /// The PKCS#8 private key (for certificate signing).
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// Upstream's key id: base64url(SHA-256(SubjectPublicKeyInfo DER)).
    pub fn key_id(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.spki_der());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
    }

    /// Whether `sig` is this key's ES256 signature of `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
            self.point,
        )
        .verify(msg, sig)
        .is_ok()
    }

    /// The public key as a JSON Web Key (what `/openid/v1/jwks` lists).
    pub fn jwk(&self) -> serde_json::Value {
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        serde_json::json!({
            "use": "sig",
            "kty": "EC",
            "kid": self.key_id(),
            "crv": "P-256",
            "alg": "ES256",
            "x": b64(&self.point[1..33]),
            "y": b64(&self.point[33..]),
        })
    }
}

/// The keys a cluster derives from its root secret for identity.
#[derive(Debug)]
pub struct ClusterKeys {
    /// Signs service-account tokens (purpose `service-account-signing`).
    pub service_accounts: DerivedKey,
    /// The client certificate CA: from the purpose key of the CA that signs
    /// client certificates (`node-ca`), labelled `client-ca`, so it is
    /// independent of any other key drawn from that purpose.
    pub client_ca: DerivedKey,
}

impl ClusterKeys {
    /// Derives both from `root` in `mode`.
    ///
    /// # Errors
    /// [`KeyError`] (not expected).
    pub fn derive(
        root: &attestation::RootSecret,
        mode: attestation::Mode,
    ) -> Result<Self, KeyError> {
        use attestation::Purpose;
        Ok(ClusterKeys {
            service_accounts: DerivedKey::derive(
                root.derive(Purpose::ServiceAccountSigning, mode)
                    .expose_secret_bytes(),
            )?,
            client_ca: DerivedKey::derive_labeled(
                root.derive(Purpose::NodeCa, mode).expose_secret_bytes(),
                "client-ca",
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_is_deterministic_and_keys_sign() {
        let a = DerivedKey::derive(&[7; 32]).unwrap();
        let b = DerivedKey::derive(&[7; 32]).unwrap();
        let c = DerivedKey::derive(&[8; 32]).unwrap();
        let labeled = DerivedKey::derive_labeled(&[7; 32], "client-ca").unwrap();
        assert_ne!(a.public_point(), labeled.public_point());
        assert_eq!(a.public_point(), b.public_point());
        assert_ne!(a.public_point(), c.public_point());
        assert_eq!(a.key_id(), b.key_id());
        let sig = a.sign(b"hello").unwrap();
        assert_eq!(sig.len(), 64);
        assert!(b.verify(b"hello", &sig));
        assert!(!b.verify(b"hellO", &sig));
        assert!(!c.verify(b"hello", &sig));
        // The PKCS#8 form carries the public key, as ring (rcgen) requires.
        assert!(rcgen::KeyPair::try_from(a.pkcs8_der()).is_ok());
        assert_eq!(a.jwk()["crv"], "P-256");
    }
}
