//! Ed25519 keys in the Sui CLI's keystore format: `sui.keystore` is a JSON array of strings,
//! each the Base64 of `flag || private_key` (flag 0x00 for Ed25519).

use std::path::{Path, PathBuf};

use sui_crypto::ed25519::Ed25519PrivateKey;

use crate::error::{Error, Result};
use crate::types::Address;

/// The Ed25519 keys of one keystore file.
#[derive(Debug)]
pub struct Keystore {
    path: PathBuf,
    keys: Vec<Ed25519PrivateKey>,
}

impl Keystore {
    /// Reads a keystore; entries that are not Ed25519 keys are an error.
    ///
    /// # Errors
    ///
    /// [`Error::Keystore`] when the file is unreadable, not a JSON array of strings, or holds a
    /// key that is not Base64 `0x00 || 32 bytes`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let bad = |reason: String| Error::Keystore {
            path: path.clone(),
            reason,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
        let entries: Vec<String> = serde_json::from_str(&text)
            .map_err(|e| bad(format!("not a JSON array of strings: {e}")))?;
        let keys = entries
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                Ed25519PrivateKey::from_base64(entry)
                    .map_err(|e| bad(format!("entry {i} is not a Base64 Ed25519 key: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { path, keys })
    }

    /// A keystore holding `keys`, to be written to `path`.
    #[must_use]
    pub fn new(path: impl AsRef<Path>, keys: Vec<Ed25519PrivateKey>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            keys,
        }
    }

    /// Writes the keystore in the Sui CLI format.
    ///
    /// # Errors
    ///
    /// [`Error::Keystore`] when the file cannot be written.
    pub fn save(&self) -> Result<()> {
        let entries: Vec<String> = self.keys.iter().map(Ed25519PrivateKey::to_base64).collect();
        let json = serde_json::to_string_pretty(&entries).map_err(|e| Error::Keystore {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        std::fs::write(&self.path, json).map_err(|e| Error::Keystore {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }

    /// Addresses of the keys, in file order.
    #[must_use]
    pub fn addresses(&self) -> Vec<Address> {
        self.keys.iter().map(address_of).collect()
    }

    /// The key for `address`, or the first key when `address` is `None`.
    ///
    /// # Errors
    ///
    /// [`Error::Keystore`] when the keystore is empty or has no key for `address`.
    pub fn key(&self, address: Option<Address>) -> Result<&Ed25519PrivateKey> {
        let found = match address {
            None => self.keys.first(),
            Some(a) => self.keys.iter().find(|k| address_of(k) == a),
        };
        found.ok_or_else(|| Error::Keystore {
            path: self.path.clone(),
            reason: match address {
                None => "no keys".to_owned(),
                Some(a) => format!("no key for {a}"),
            },
        })
    }
}

/// The Sui address of an Ed25519 key: `blake2b256(0x00 || public_key)`.
#[must_use]
pub fn address_of(key: &Ed25519PrivateKey) -> Address {
    Address(key.public_key().derive_address().into_inner())
}
