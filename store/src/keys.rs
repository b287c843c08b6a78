//! Where sealing keys come from. The store does not derive keys itself: it
//! asks a [`SealingKeys`] provider (the attestation crate derives them from
//! the enclave's root secret; tests and dev use [`StaticKeys`]).

use std::collections::BTreeMap;
use std::fmt;

use attestation::{Mode, Purpose, RootSecret};

/// A key epoch. Every sealed value records the epoch of the key that sealed
/// it; rotation adds a newer epoch while older ones stay readable.
pub type KeyEpoch = u32;

/// What a key is used for. Different purposes never share a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SealPurpose {
    /// Values in the RocksDB index.
    Store,
    /// Journal records and snapshots shipped to the host.
    Journal,
}

impl SealPurpose {
    /// The label bound into associated data.
    pub fn label(self) -> &'static [u8] {
        match self {
            SealPurpose::Store => b"k3s-daas/store/v1",
            SealPurpose::Journal => b"k3s-daas/journal/v1",
        }
    }
}

/// 32 bytes of AES-256 key material. Never printed.
#[derive(Clone)]
pub struct KeyMaterial(pub(crate) [u8; 32]);

impl KeyMaterial {
    /// Wraps raw key bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        KeyMaterial(bytes)
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyMaterial(<redacted>)")
    }
}

impl Drop for KeyMaterial {
    fn drop(&mut self) {
        // Best effort: overwrite the key before the memory is reused.
        self.0 = [0; 32];
    }
}

/// Supplies sealing keys by purpose and epoch.
pub trait SealingKeys: Send + Sync + 'static {
    /// The epoch new writes are sealed under.
    fn current_epoch(&self) -> KeyEpoch;
    /// The key for `purpose` at `epoch`, or `None` if this provider has no
    /// such epoch (values sealed under it cannot be opened).
    fn key(&self, purpose: SealPurpose, epoch: KeyEpoch) -> Option<KeyMaterial>;
}

/// Fixed keys per epoch, for dev mode and tests. The journal key of each
/// epoch is derived from the store key with a distinct label so the two
/// purposes never share a key.
#[derive(Debug, Clone)]
pub struct StaticKeys {
    epochs: BTreeMap<KeyEpoch, KeyMaterial>,
}

impl StaticKeys {
    /// One key at epoch 1.
    pub fn single(key: [u8; 32]) -> Self {
        let mut epochs = BTreeMap::new();
        epochs.insert(1, KeyMaterial(key));
        StaticKeys { epochs }
    }

    /// Adds (or replaces) the key of `epoch`; the highest epoch is current.
    #[must_use]
    pub fn with_epoch(mut self, epoch: KeyEpoch, key: [u8; 32]) -> Self {
        self.epochs.insert(epoch, KeyMaterial(key));
        self
    }
}

impl SealingKeys for StaticKeys {
    fn current_epoch(&self) -> KeyEpoch {
        self.epochs.keys().next_back().copied().unwrap_or(0)
    }

    fn key(&self, purpose: SealPurpose, epoch: KeyEpoch) -> Option<KeyMaterial> {
        let base = self.epochs.get(&epoch)?;
        let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"k3s-daas static keys");
        let prk = salt.extract(&base.0);
        let info = [purpose.label()];
        let okm = prk.expand(&info, ring::hkdf::HKDF_SHA256).ok()?;
        let mut out = [0u8; 32];
        okm.fill(&mut out).ok()?;
        Some(KeyMaterial(out))
    }
}

/// Keys derived from the cluster's root secret (the attestation crate's
/// HKDF-SHA384 purpose keys, labelled dev or production so dev-sealed data
/// never opens in production). Each epoch's key is a further HKDF expansion
/// of the purpose key with the epoch number, so rotating is bumping the
/// epoch: no new secret has to be distributed, and old epochs stay readable.
#[derive(Clone)]
pub struct RootSecretKeys {
    secret: RootSecret,
    mode: Mode,
    current: KeyEpoch,
}

impl fmt::Debug for RootSecretKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootSecretKeys")
            .field("mode", &self.mode)
            .field("current_epoch", &self.current)
            .finish_non_exhaustive()
    }
}

impl RootSecretKeys {
    /// Keys of `secret` in `mode`, with `current_epoch` (at least 1) for new writes.
    pub fn new(secret: RootSecret, mode: Mode, current_epoch: KeyEpoch) -> Self {
        RootSecretKeys {
            secret,
            mode,
            current: current_epoch.max(1),
        }
    }
}

impl SealingKeys for RootSecretKeys {
    fn current_epoch(&self) -> KeyEpoch {
        self.current
    }

    fn key(&self, purpose: SealPurpose, epoch: KeyEpoch) -> Option<KeyMaterial> {
        if epoch == 0 || epoch > self.current {
            return None;
        }
        let purpose = match purpose {
            SealPurpose::Store => Purpose::Store,
            SealPurpose::Journal => Purpose::Journal,
        };
        let base = self.secret.derive(purpose, self.mode);
        let prk =
            ring::hkdf::Prk::new_less_safe(ring::hkdf::HKDF_SHA256, base.expose_secret_bytes());
        let epoch_bytes = epoch.to_be_bytes();
        let info = [&b"k3s-daas/seal-epoch/v1"[..], &epoch_bytes];
        let okm = prk.expand(&info, ring::hkdf::HKDF_SHA256).ok()?;
        let mut out = [0u8; 32];
        okm.fill(&mut out).ok()?;
        Some(KeyMaterial(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_secret_keys_differ_by_purpose_epoch_and_mode() {
        let secret = RootSecret::from_bytes([1; 32]);
        let dev = RootSecretKeys::new(secret.clone(), Mode::Dev, 2);
        let prod = RootSecretKeys::new(secret, Mode::Production, 2);
        let k = |keys: &RootSecretKeys, p, e| keys.key(p, e).map(|m| m.0);
        let all = [
            k(&dev, SealPurpose::Store, 1),
            k(&dev, SealPurpose::Store, 2),
            k(&dev, SealPurpose::Journal, 1),
            k(&prod, SealPurpose::Store, 1),
        ];
        for (i, a) in all.iter().enumerate() {
            assert!(a.is_some());
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(
            k(&dev, SealPurpose::Store, 1),
            k(&dev, SealPurpose::Store, 1)
        );
        assert!(dev.key(SealPurpose::Store, 3).is_none());
        assert!(dev.key(SealPurpose::Store, 0).is_none());
    }
}
