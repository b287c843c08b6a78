//! Which key holds each node name, on which stake: one [`Binding`] per joined node, kept in the
//! sealed store under `/daas/nodes/NAME` (outside `/registry/`, so no API serves it) so that a
//! restarted enclave keeps its nodes, and mirrored in memory for the TLS client verifier, which
//! cannot wait on the store.

use std::collections::HashMap;
use std::sync::RwLock;

use chain::Address;
use serde::{Deserialize, Serialize};

use crate::store::{RangeRequest, Store, StoreError};

/// Store prefix of the bindings.
pub(super) const PREFIX: &str = "/daas/nodes/";

/// Why a node's credentials stopped being accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revocation {
    /// What the registry said.
    pub reason: String,
    /// When it was noticed, ms since the UNIX epoch.
    pub at_ms: u64,
}

/// One joined node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Binding {
    /// The node name.
    pub node_name: String,
    /// Its public key (SubjectPublicKeyInfo, DER).
    #[serde(with = "hex::serde")]
    pub public_key: Vec<u8>,
    /// SHA-256 of `public_key`.
    #[serde(with = "hex::serde")]
    pub key_sha256: [u8; 32],
    /// The stake object that admitted it.
    pub stake_id: Address,
    /// The stake's owner, who signed the join.
    pub owner: Address,
    /// When it (last) joined.
    pub joined_at_ms: u64,
    /// Expiry of its newest certificate.
    pub not_after_ms: u64,
    /// Set when the stake stopped admitting it.
    pub revoked: Option<Revocation>,
}

impl Binding {
    /// True while its certificates are accepted.
    pub fn is_admitted(&self) -> bool {
        self.revoked.is_none()
    }
}

/// The bindings, in the store and in memory.
#[derive(Debug)]
pub struct NodeBook {
    store: Store,
    bindings: RwLock<HashMap<String, Binding>>,
}

fn key(name: &str) -> Vec<u8> {
    format!("{PREFIX}{name}").into_bytes()
}

impl NodeBook {
    /// Loads every binding from `store`. Blocking (a store range).
    ///
    /// # Errors
    ///
    /// The store's error, or [`StoreError::Corrupt`] for a binding that does not decode.
    pub fn load(store: Store) -> Result<Self, StoreError> {
        let page = store.range(&RangeRequest::prefix(PREFIX.as_bytes().to_vec()))?;
        let mut bindings = HashMap::new();
        for kv in page.kvs {
            let binding: Binding = serde_json::from_slice(&kv.value).map_err(|e| {
                StoreError::Corrupt(format!(
                    "node binding {}: {e}",
                    String::from_utf8_lossy(&kv.key)
                ))
            })?;
            bindings.insert(binding.node_name.clone(), binding);
        }
        Ok(Self {
            store,
            bindings: RwLock::new(bindings),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Binding>> {
        match self.bindings.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Binding>> {
        match self.bindings.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The binding of `name`.
    pub fn get(&self, name: &str) -> Option<Binding> {
        self.read().get(name).cloned()
    }

    /// Every binding.
    pub fn all(&self) -> Vec<Binding> {
        self.read().values().cloned().collect()
    }

    /// True when `name` is joined and not revoked.
    pub fn admits(&self, name: &str) -> bool {
        self.read().get(name).is_some_and(Binding::is_admitted)
    }

    /// True when `name` is joined with the key whose SPKI digest is `key_sha256` and not
    /// revoked: a certificate for any other key (a superseded one) is refused.
    pub fn admits_key(&self, name: &str, key_sha256: &[u8; 32]) -> bool {
        self.read()
            .get(name)
            .is_some_and(|b| b.is_admitted() && &b.key_sha256 == key_sha256)
    }

    /// Stores `binding` (replacing the node's previous one), durably, then serves it.
    ///
    /// # Errors
    ///
    /// The store's error; memory is unchanged then.
    pub async fn put(&self, binding: Binding) -> Result<(), StoreError> {
        let value = serde_json::to_vec(&binding)
            .map_err(|e| StoreError::Corrupt(format!("encoding a node binding: {e}")))?;
        let _ = self.store.put(&key(&binding.node_name), &value).await?;
        self.write().insert(binding.node_name.clone(), binding);
        Ok(())
    }

    /// Forgets `name`.
    ///
    /// # Errors
    ///
    /// The store's error.
    pub async fn remove(&self, name: &str) -> Result<(), StoreError> {
        self.write().remove(name);
        // A missing key is a failed comparison, not an error.
        let _ = self.store.delete(&key(name), None).await?;
        Ok(())
    }
}
