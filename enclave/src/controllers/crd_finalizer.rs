//! The CustomResourceDefinition finalizer (upstream apiextensions-apiserver
//! `pkg/controller/finalizer`): a definition deleted through the API keeps
//! the `customresourcecleanup.apiextensions.k8s.io` finalizer and a
//! `Terminating` condition until this controller has deleted its custom
//! resources; then it drops the finalizer and the definition goes.
//!
//! Unlike upstream it does not wait inside a reconcile for instances held
//! by their own finalizers: it requeues until none is left.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::Error;
use super::client::{Api, is_deleting, text};
use super::runtime::{Action, Reconciler};
use crate::registry::generic::{DeleteOptions, ListOptions};
use crate::registry::kinds::{CUSTOM_RESOURCE_CLEANUP_FINALIZER, set_crd_condition};
use crate::registry::{ObjectStore, ResourceInfo, WatchEvent, meta};

/// How long to wait before looking again at instances that are still
/// there (held by finalizers of their own).
const RECHECK: Duration = Duration::from_secs(1);

/// The CRD finalizer controller.
#[derive(Debug)]
pub(crate) struct CrdFinalizer {
    objects: ObjectStore,
    crds: Api,
}

impl CrdFinalizer {
    /// The controller over the definitions `crds` describes.
    pub(crate) fn new(objects: ObjectStore, crds: Arc<ResourceInfo>) -> Self {
        CrdFinalizer {
            crds: Api::new(objects.clone(), crds),
            objects,
        }
    }

    fn err(
        &self,
        verb: &'static str,
        resource: impl Into<crate::registry::Name>,
        name: &str,
    ) -> impl FnOnce(crate::registry::Error) -> Error {
        let name = name.to_string();
        let resource = resource.into();
        move |source| Error::Api {
            verb,
            resource,
            namespace: String::new(),
            name,
            source: Box::new(source),
        }
    }

    /// Writes the `Terminating` condition through `/status` when it differs.
    async fn set_terminating(
        &self,
        mut crd: Value,
        status: &str,
        reason: &str,
        message: &str,
    ) -> Result<Value, Error> {
        if set_crd_condition(&mut crd, "Terminating", status, reason, message) {
            self.crds.replace_status(crd).await
        } else {
            Ok(crd)
        }
    }

    /// Deletes every instance of `info` (all namespaces, background
    /// propagation, through the registry so that their own finalizers
    /// hold them); whether none is left.
    async fn delete_instances(&self, info: &ResourceInfo, crd: &str) -> Result<bool, Error> {
        self.objects
            .delete_collection(
                info,
                None,
                &ListOptions::default(),
                &DeleteOptions::default(),
            )
            .await
            .map_err(self.err("delete", info.resource.clone(), crd))?;
        let left = self
            .objects
            .list(info, None, &ListOptions::default())
            .await
            .map_err(self.err("list", info.resource.clone(), crd))?;
        Ok(left.items.is_empty())
    }
}

fn has_cleanup_finalizer(crd: &Value) -> bool {
    crd.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| {
            f.iter()
                .any(|x| x.as_str() == Some(CUSTOM_RESOURCE_CLEANUP_FINALIZER))
        })
}

/// `crd` without the cleanup finalizer; `None` if it has none.
fn without_cleanup_finalizer(crd: &Value) -> Option<Value> {
    if !has_cleanup_finalizer(crd) {
        return None;
    }
    let mut out = crd.clone();
    if let Some(list) = out
        .pointer_mut("/metadata/finalizers")
        .and_then(Value::as_array_mut)
    {
        list.retain(|x| x.as_str() != Some(CUSTOM_RESOURCE_CLEANUP_FINALIZER));
    }
    Some(out)
}

impl Reconciler for CrdFinalizer {
    type Key = String;

    const NAME: &'static str = "crd-finalizer";

    async fn keys_for(&mut self, _kind: usize, event: &WatchEvent) -> Vec<String> {
        match event {
            WatchEvent::Added(o) | WatchEvent::Modified(o)
                if is_deleting(o) && has_cleanup_finalizer(o) =>
            {
                vec![meta::name(o).to_string()]
            }
            _ => Vec::new(),
        }
    }

    async fn reconcile(&mut self, name: &String) -> Result<Action, Error> {
        let Some(crd) = self.crds.get("", name).await? else {
            return Ok(Action::await_change());
        };
        if !is_deleting(&crd) || !has_cleanup_finalizer(&crd) {
            return Ok(Action::await_change());
        }
        let served = self
            .objects
            .custom_resource(text(&crd, "/spec/group"), text(&crd, "/spec/names/plural"));
        match served {
            Some(info) => {
                let crd = self
                    .set_terminating(
                        crd,
                        "True",
                        "InstanceDeletionInProgress",
                        "CustomResource deletion is in progress",
                    )
                    .await?;
                if !self.delete_instances(&info, name).await? {
                    return Ok(Action::requeue(RECHECK));
                }
                self.set_terminating(
                    crd,
                    "False",
                    "InstanceDeletionCompleted",
                    "removed all instances",
                )
                .await?;
            }
            None => {
                self.set_terminating(
                    crd,
                    "False",
                    "NeverEstablished",
                    "resource was never established",
                )
                .await?;
            }
        }
        match self.crds.edit("", name, without_cleanup_finalizer).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        // The definition's store hook stops serving its resources once it is gone.
        tracing::info!(crd = %name, "custom resources deleted; finalizer removed");
        Ok(Action::await_change())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_cleanup_finalizer_is_removed() {
        let crd = json!({"metadata": {"finalizers": ["a", CUSTOM_RESOURCE_CLEANUP_FINALIZER]}});
        let out = without_cleanup_finalizer(&crd);
        assert_eq!(out, Some(json!({"metadata": {"finalizers": ["a"]}})));
        assert_eq!(without_cleanup_finalizer(&json!({"metadata": {}})), None);
    }
}
