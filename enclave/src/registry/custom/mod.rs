//! Serving custom resources: [`ObjectStore::sync_custom_resources`] rebuilds
//! the resource table from the stored definitions (after each definition
//! write, through the definitions' store hook `ServedDefinitions`, and at
//! boot) and deletes the objects of resources whose definition is gone. What
//! a definition defines is [`registry::custom`]'s.

pub use registry::custom::*;

use std::sync::Arc;

use super::generic::{HookFuture, ListOptions, StoreHooks};
use super::kinds::CRD_GROUP_VERSION_RESOURCE;
use super::{Error, ObjectStore, ResourceInfo, Result};
use crate::store::{RangeRequest, StoreError, TxnOutcome};

/// The definitions' store hook: once a definition is written (created,
/// changed, marked for deletion or deleted), the served table follows it.
#[derive(Debug)]
pub(crate) struct ServedDefinitions;

impl StoreHooks for ServedDefinitions {
    fn after_write<'a>(&'a self, objects: &'a ObjectStore) -> HookFuture<'a, ()> {
        Box::pin(async move {
            if let Err(e) = objects.sync_custom_resources().await {
                tracing::error!(error = %e, "rebuilding the custom resources' table failed");
            }
        })
    }
}

impl ObjectStore {
    /// Rebuilds the served table from the stored definitions and swaps it
    /// in; then deletes the objects of custom resources no longer defined.
    /// A resource a built-in already serves is never replaced.
    ///
    /// # Errors
    /// The store's errors reading definitions or deleting objects.
    pub async fn sync_custom_resources(&self) -> Result<()> {
        let tables = self.tables();
        let _one_at_a_time = tables.rebuild.lock().await;
        let base = tables.base.clone();
        let (g, v, r) = CRD_GROUP_VERSION_RESOURCE;
        let Some(crd_info) = base.lookup(g, v, r) else {
            return Ok(());
        };
        let crds = self.list(&crd_info, None, &ListOptions::default()).await?;
        let mut custom = Vec::new();
        for crd in &crds.items {
            for info in resources_of(crd) {
                let taken = base
                    .lookup(&info.group, &info.version, &info.resource)
                    .is_some()
                    || custom.iter().any(|c: &ResourceInfo| {
                        c.group == info.group
                            && c.version == info.version
                            && c.resource == info.resource
                    });
                if !taken {
                    custom.push(info);
                }
            }
        }
        let old = self.table();
        let new = old.extended(&base, custom);
        let gone: Vec<Vec<u8>> = old
            .iter()
            .filter(|o| base.lookup(&o.group, &o.version, &o.resource).is_none())
            .filter(|o| {
                !new.iter()
                    .any(|n| n.group == o.group && n.resource == o.resource)
            })
            .map(|o| o.key_prefix(None))
            .collect();
        self.set_table(new);
        for prefix in gone {
            self.delete_prefix(prefix).await?;
        }
        Ok(())
    }

    /// The served custom resource `resource` in `group` (any one of its
    /// versions: they share their objects), unless a built-in serves it.
    pub fn custom_resource(&self, group: &str, resource: &str) -> Option<Arc<ResourceInfo>> {
        let base = self.tables().base.clone();
        self.table()
            .iter()
            .find(|r| r.group == group && r.resource == resource)
            .filter(|r| base.lookup(&r.group, &r.version, &r.resource).is_none())
            .cloned()
    }

    /// Deletes every object under a key prefix (watchers see DELETED).
    async fn delete_prefix(&self, prefix: Vec<u8>) -> Result<()> {
        let store = self.store().clone();
        let page = tokio::task::spawn_blocking(move || store.range(&RangeRequest::prefix(prefix)))
            .await
            .map_err(|e| Error::Store(StoreError::Closed(e.to_string())))??;
        for kv in page.kvs {
            match self.store().delete(&kv.key, None).await? {
                TxnOutcome::Committed { .. } | TxnOutcome::Failed { .. } => {}
            }
        }
        Ok(())
    }
}
