//! AES-256-GCM sealing with random 96-bit nonces and associated data that
//! binds the cluster, the purpose, the key epoch and a caller context (for
//! values: key and revision), so a sealed blob moved anywhere else fails.
//!
//! Sealed layout: `epoch (u32 BE) | nonce (12) | ciphertext | tag (16)`.

use std::collections::BTreeMap;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use super::error::StoreError;
use super::keys::{KeyEpoch, SealPurpose, SealingKeys};

/// Overhead of a sealed blob over its plaintext.
pub(crate) const SEAL_OVERHEAD: usize = 4 + NONCE_LEN + 16;

/// Why a sealed blob did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// Shorter than the fixed header and tag.
    Truncated,
    /// No key for the recorded epoch.
    UnknownEpoch(KeyEpoch),
    /// Authentication failed: tampered, moved, or another cluster's key.
    Authentication,
}

impl OpenError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            OpenError::Truncated => "sealed blob is truncated",
            OpenError::UnknownEpoch(_) => "no key for the recorded key epoch",
            OpenError::Authentication => {
                "authentication failed (tampered, moved to another key or revision, or sealed under another cluster's key)"
            }
        }
    }
}

/// Seals and opens blobs for one purpose of one cluster.
pub(crate) struct Sealer {
    cluster_id: [u8; 16],
    purpose: SealPurpose,
    current: KeyEpoch,
    keys: BTreeMap<KeyEpoch, LessSafeKey>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("purpose", &self.purpose)
            .field("current_epoch", &self.current)
            .field("epochs", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Sealer {
    /// Loads every epoch from 1 to the provider's current epoch that it has a key for.
    pub(crate) fn new(
        cluster_id: [u8; 16],
        purpose: SealPurpose,
        provider: &dyn SealingKeys,
    ) -> Option<Self> {
        let current = provider.current_epoch();
        let mut keys = BTreeMap::new();
        for epoch in 0..=current {
            if let Some(material) = provider.key(purpose, epoch) {
                let unbound = UnboundKey::new(&AES_256_GCM, &material.0).ok()?;
                keys.insert(epoch, LessSafeKey::new(unbound));
            }
        }
        keys.contains_key(&current).then_some(Sealer {
            cluster_id,
            purpose,
            current,
            keys,
            rng: SystemRandom::new(),
        })
    }

    fn aad(&self, epoch: KeyEpoch, context: &[&[u8]]) -> Vec<u8> {
        let label = self.purpose.label();
        let mut aad = Vec::with_capacity(
            16 + label.len() + 8 + context.iter().map(|c| c.len() + 4).sum::<usize>(),
        );
        aad.extend_from_slice(&self.cluster_id);
        aad.extend_from_slice(&(label.len() as u32).to_be_bytes());
        aad.extend_from_slice(label);
        aad.extend_from_slice(&epoch.to_be_bytes());
        for part in context {
            aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
            aad.extend_from_slice(part);
        }
        aad
    }

    /// Seals `plaintext` under the current epoch, appending the sealed blob to `out`.
    pub(crate) fn seal_into(
        &self,
        context: &[&[u8]],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        // SystemRandom only fails if the OS has no entropy source; never
        // seal with a nonce that is not fresh.
        self.rng
            .fill(&mut nonce)
            .map_err(|_| StoreError::Seal("the operating system's random source failed".into()))?;
        let start = out.len();
        out.extend_from_slice(&self.current.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let aad = self.aad(self.current, context);
        let key = self.keys.get(&self.current).ok_or_else(|| {
            StoreError::Seal(format!("no key for the current epoch {}", self.current))
        })?;
        let mut body = out.split_off(start + 4 + NONCE_LEN);
        // AES-GCM refuses only messages over its length limit (64 GiB).
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut body,
        )
        .map_err(|_| {
            StoreError::Seal(format!("AES-GCM refused a {} byte value", plaintext.len()))
        })?;
        out.extend_from_slice(&body);
        Ok(())
    }

    /// Seals into a fresh vector.
    pub(crate) fn seal(&self, context: &[&[u8]], plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        self.seal_into(context, plaintext, &mut out)?;
        Ok(out)
    }

    /// Opens a sealed blob produced by [`Sealer::seal`] with the same context.
    pub(crate) fn open(&self, context: &[&[u8]], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(OpenError::Truncated);
        }
        let (epoch_bytes, rest) = sealed.split_at(4);
        let epoch = u32::from_be_bytes([
            epoch_bytes[0],
            epoch_bytes[1],
            epoch_bytes[2],
            epoch_bytes[3],
        ]);
        let (nonce_bytes, body) = rest.split_at(NONCE_LEN);
        let key = self
            .keys
            .get(&epoch)
            .ok_or(OpenError::UnknownEpoch(epoch))?;
        let nonce =
            Nonce::try_assume_unique_for_key(nonce_bytes).map_err(|_| OpenError::Truncated)?;
        let mut buf = body.to_vec();
        let aad = self.aad(epoch, context);
        let plain = key
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .map_err(|_| OpenError::Authentication)?;
        let n = plain.len();
        buf.truncate(n);
        Ok(buf)
    }
}
