//! A kind's store hooks: what its writes do besides storing the object, as
//! upstream's REST decorators of the generic store (the Service REST's IP and
//! port allocators, the CRD REST's effect on what is served). A kind names its
//! hook with [`crate::registry::Strategy::store_hook`]; the generic write
//! path calls it and settles what it claimed, and knows nothing else of it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

use super::ObjectStore;
use crate::registry::{Result, StoreHook};
use crate::store::TxnOutcome;

/// A hook's future, borrowed for the write it serves.
pub type HookFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Store keys a hook created for one write, and keys it gives up. Each claim
/// is a key only its holder writes (e.g. `/registry/core/serviceips/<ip>`),
/// created by compare-and-swap, so two writes can never claim the same one.
#[derive(Debug, Default)]
pub struct Claims {
    /// Claimed for the written object; deleted again if the write is not stored.
    pub claimed: Vec<Vec<u8>>,
    /// Held by the object before the write and not after; deleted once it is stored.
    pub released: Vec<Vec<u8>>,
}

/// What a kind's writes do besides storing the object. Every method has a
/// default that does nothing.
pub trait StoreHooks: Send + Sync + fmt::Debug {
    /// Before an admitted, valid object is first stored: claims what it needs
    /// and fills in what it got (a Service's ClusterIP and node ports).
    ///
    /// # Errors
    /// Why the object cannot have what it asks for (422 Invalid); nothing
    /// stays claimed.
    fn before_create<'a>(
        &'a self,
        _objects: &'a ObjectStore,
        _obj: &'a mut Value,
    ) -> HookFuture<'a, Result<Claims>> {
        Box::pin(async { Ok(Claims::default()) })
    }

    /// Before an admitted, valid update of the main endpoint is stored (`old`
    /// as stored, `new` as it will be).
    ///
    /// # Errors
    /// As [`StoreHooks::before_create`].
    fn before_update<'a>(
        &'a self,
        _objects: &'a ObjectStore,
        _old: &'a Value,
        _new: &'a mut Value,
    ) -> HookFuture<'a, Result<Claims>> {
        Box::pin(async { Ok(Claims::default()) })
    }

    /// The claims a stored object holds, released when it is deleted.
    fn held(&self, _obj: &Value) -> Vec<Vec<u8>> {
        Vec::new()
    }

    /// After a write of the kind was stored (create, update or delete).
    fn after_write<'a>(&'a self, _objects: &'a ObjectStore) -> HookFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// The hooks a kind's strategy names ([`crate::registry::Strategy::store_hook`]).
pub(super) fn hooks_of(info: &crate::registry::ResourceInfo) -> Option<&'static dyn StoreHooks> {
    match info.strategy.store_hook()? {
        StoreHook::ServiceAllocation => Some(&crate::registry::service_alloc::ServiceAllocators),
        StoreHook::ServedDefinitions => Some(&crate::registry::custom::ServedDefinitions),
    }
}

impl ObjectStore {
    /// Creates `key` (owned by `owner`) unless it exists: whether this call claimed it.
    ///
    /// # Errors
    /// The store's.
    pub async fn claim(&self, key: &[u8], owner: &str) -> Result<bool> {
        Ok(matches!(
            self.store().create(key, owner.as_bytes()).await?,
            TxnOutcome::Committed { .. }
        ))
    }

    /// Deletes claim keys. A failure is logged: that claim stays taken, never handed out twice.
    pub async fn release_claims(&self, keys: Vec<Vec<u8>>) {
        for key in keys {
            if let Err(e) = self.store().delete(&key, None).await {
                tracing::warn!(key = %String::from_utf8_lossy(&key), error = %e, "releasing a claim failed");
            }
        }
    }

    /// Ends a write's claims: when it was stored, what the object gave up is
    /// released; otherwise what was claimed for it.
    pub(super) async fn settle(&self, claims: Claims, stored: bool) {
        self.release_claims(if stored {
            claims.released
        } else {
            claims.claimed
        })
        .await;
    }

    /// After `obj` of `info` was deleted: releases its claims and runs the
    /// kind's after-write hook.
    pub(super) async fn after_delete(&self, info: &crate::registry::ResourceInfo, obj: &Value) {
        if let Some(hooks) = hooks_of(info) {
            self.release_claims(hooks.held(obj)).await;
            hooks.after_write(self).await;
        }
    }
}
