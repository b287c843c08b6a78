//! Sealing keys: the cluster's 32-byte root secret and the purpose keys
//! expanded from it with HKDF-SHA384.
//!
//! ```text
//! salt = SHA-384("k3s-daas/seal/salt/v1" || mode)
//! PRK  = HKDF-Extract(salt, root secret)
//! key  = HKDF-Expand(PRK, info = "k3s-daas/seal/v1" || 0x00 || mode || 0x00 || purpose, L = 32)
//! ```
//!
//! `mode` is `"dev"` or `"production"`, so a key derived in dev mode never
//! equals the production key for the same purpose, even from the same secret:
//! dev-sealed data never opens in production.
//!
//! In production the root secret comes from KMS, encrypted to the enclave's
//! attested [`RecipientKey`] (module `kms`, BER reading in `ber`).

mod ber;
mod file;
mod kms;

use std::fmt;

use ring::hkdf;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, Result};

pub use kms::RecipientKey;

/// Length of the root secret and of every purpose key.
pub const KEY_LEN: usize = 32;

/// What a derived key is for. Each purpose gets an independent key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// Sealing values in the RocksDB store.
    Store,
    /// Sealing journal records and snapshots kept by the host.
    Journal,
    /// Signing service-account tokens.
    ServiceAccountSigning,
    /// The node client-certificate CA.
    NodeCa,
    /// The Ed25519 seed of the enclave's anchor key, which signs state
    /// anchors on the registry and is bound in the document's `user_data`.
    AnchorSigning,
}

impl Purpose {
    /// The label mixed into the HKDF info (stable: changing it changes keys).
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::Store => "store",
            Self::Journal => "journal",
            Self::ServiceAccountSigning => "service-account-signing",
            Self::NodeCa => "node-ca",
            Self::AnchorSigning => "anchor-signing",
        }
    }
}

/// Which world a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Dev mode: root secret from a local file, simulated NSM.
    Dev,
    /// Production: root secret released to an attested enclave.
    Production,
}

impl Mode {
    /// The label mixed into the HKDF salt and info.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::Dev => "dev",
            Self::Production => "production",
        }
    }
}

/// The cluster's 32-byte root secret. Zeroized on drop, printed as
/// `RootSecret(<redacted>)`, and not serializable: it leaves memory only
/// wrapped (KMS, operator recovery key) or, in dev mode, in a 0600 file.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct RootSecret([u8; KEY_LEN]);

impl fmt::Debug for RootSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootSecret(<redacted>)")
    }
}

impl RootSecret {
    /// Wraps secret bytes (from KMS, the operator, or a file).
    #[must_use]
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// A fresh secret from the system random generator.
    ///
    /// # Errors
    ///
    /// [`Error::Random`] when the generator fails.
    pub fn generate() -> Result<Self> {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; KEY_LEN];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| Error::Random)?;
        Ok(Self(bytes))
    }

    /// The purpose key for `purpose` in `mode`.
    ///
    /// ```
    /// # use attestation::{Mode, Purpose, RootSecret};
    /// let secret = RootSecret::from_bytes([7; 32]);
    /// let store = secret.derive(Purpose::Store, Mode::Production);
    /// assert_ne!(
    ///     store.expose_secret_bytes(),
    ///     secret.derive(Purpose::Store, Mode::Dev).expose_secret_bytes()
    /// );
    /// ```
    #[must_use]
    pub fn derive(&self, purpose: Purpose, mode: Mode) -> PurposeKey {
        let salt_digest = {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA384);
            ctx.update(b"k3s-daas/seal/salt/v1");
            ctx.update(mode.label().as_bytes());
            ctx.finish()
        };
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA384, salt_digest.as_ref()).extract(&self.0);
        let info: [&[u8]; 5] = [
            b"k3s-daas/seal/v1",
            &[0],
            mode.label().as_bytes(),
            &[0],
            purpose.label().as_bytes(),
        ];
        let mut key = [0u8; KEY_LEN];
        // 32 bytes is far below HKDF-SHA384's 255 * 48-byte limit and equals
        // the requested length, so neither call can fail.
        #[allow(clippy::expect_used)]
        prk.expand(&info, KeyLen)
            .and_then(|okm| okm.fill(&mut key))
            .expect("invariant: HKDF-SHA384 output of 32 bytes is always in range");
        PurposeKey {
            bytes: key,
            purpose,
            mode,
        }
    }
    /// The raw Ed25519 public key of the anchor signing key
    /// ([`Purpose::AnchorSigning`]): what an enclave binds in its attestation
    /// documents' `user_data` and signs registry anchors with. Whoever holds
    /// the secret can recompute it, e.g. to confirm an enclave took theirs.
    #[must_use]
    pub fn anchor_public_key(&self, mode: Mode) -> [u8; 32] {
        use ring::signature::KeyPair as _;
        let seed = self.derive(Purpose::AnchorSigning, mode);
        // A 32-byte seed is the only input Ed25519 key generation rejects
        // by length, and its public key is always 32 bytes.
        #[allow(clippy::expect_used)]
        let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(seed.expose_secret_bytes())
            .expect("invariant: a 32-byte seed is a valid Ed25519 seed");
        let mut public = [0u8; 32];
        public.copy_from_slice(pair.public_key().as_ref());
        public
    }
}

struct KeyLen;

impl hkdf::KeyType for KeyLen {
    fn len(&self) -> usize {
        KEY_LEN
    }
}

/// A 32-byte key for one [`Purpose`] and [`Mode`]. Zeroized on drop; Debug
/// shows only its purpose and mode.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PurposeKey {
    bytes: [u8; KEY_LEN],
    #[zeroize(skip)]
    purpose: Purpose,
    #[zeroize(skip)]
    mode: Mode,
}

impl fmt::Debug for PurposeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PurposeKey")
            .field("purpose", &self.purpose)
            .field("mode", &self.mode)
            .field("bytes", &"<redacted>")
            .finish()
    }
}

impl PurposeKey {
    /// The raw key, e.g. for `ring::aead::UnboundKey::new(&AES_256_GCM, ..)`.
    /// Do not log, copy into long-lived buffers, or send it anywhere.
    #[must_use]
    pub fn expose_secret_bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    /// The purpose this key was derived for.
    #[must_use]
    pub fn purpose(&self) -> Purpose {
        self.purpose
    }

    /// The mode this key was derived in.
    #[must_use]
    pub fn mode(&self) -> Mode {
        self.mode
    }
}

#[cfg(test)]
mod tests;
