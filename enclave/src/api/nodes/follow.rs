//! Following the registry: nodes whose stake stopped admitting them lose their credentials,
//! their Node is tainted `NoExecute`, and once no pod is bound to it the Node and its Lease are
//! deleted and the name is free again.

use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use chain::Registry as _;

use super::{JoinError, NodeAdmission, stake};
use crate::registry::generic::WriteOptions;
use crate::registry::{DeleteOptions, Error, FieldSelector, ListOptions, ObjectStore, meta};

/// The taint a node whose stake no longer admits it gets (effect `NoExecute`, value the
/// reason's first word). Our own key rather than upstream's `node.kubernetes.io/...`: those
/// belong to the node lifecycle controller, which removes them when the node looks healthy
/// again, while only a new join clears this one.
pub const STAKE_INACTIVE_TAINT: &str = "k3s-daas.io/stake-inactive";

/// Field manager of the enclave's own writes to Nodes.
const FIELD_MANAGER: &str = "k3s-daas-node-admission";

fn opts() -> WriteOptions {
    WriteOptions {
        manager: Some(FIELD_MANAGER.to_owned()),
        ..Default::default()
    }
}

/// When `node`'s Lease was last renewed (ms since the epoch), if it has one.
pub(super) async fn lease_renewed_ms(objects: &ObjectStore, node: &str) -> Option<u64> {
    let info = objects
        .table()
        .lookup("coordination.k8s.io", "v1", "leases")?;
    let lease = objects
        .get(&info, Some("kube-node-lease"), node)
        .await
        .ok()?;
    let text = lease.pointer("/spec/renewTime")?.as_str()?;
    let at: jiff::Timestamp = text.parse().ok()?;
    u64::try_from(at.as_millisecond()).ok()
}

/// Removes [`STAKE_INACTIVE_TAINT`] from `node`, if it has it (a node that joins again).
pub(super) async fn clear_taint(objects: &ObjectStore, node: &str) {
    let Some(info) = objects.table().lookup("", "v1", "nodes") else {
        return;
    };
    let result = objects
        .patch(&info, None, node, &opts(), |cur| {
            let mut next = cur.clone();
            if let Some(taints) = next
                .pointer_mut("/spec/taints")
                .and_then(Value::as_array_mut)
            {
                taints
                    .retain(|t| t.get("key").and_then(Value::as_str) != Some(STAKE_INACTIVE_TAINT));
            }
            Ok(next)
        })
        .await;
    match result {
        Ok(_) | Err(Error::NotFound { .. }) => {}
        Err(e) => tracing::warn!(node, error = %e, "removing the stake taint failed"),
    }
}

/// Adds [`STAKE_INACTIVE_TAINT`] to `node` (once). Ok(false) when the Node does not exist.
async fn taint(objects: &ObjectStore, node: &str, reason: &str) -> Result<bool, Error> {
    let Some(info) = objects.table().lookup("", "v1", "nodes") else {
        return Ok(false);
    };
    let value: String = reason
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find(|w| !w.is_empty())
        .unwrap_or("inactive")
        .chars()
        .take(63)
        .collect();
    let added = meta::format_time(meta::now());
    let result = objects
        .patch(&info, None, node, &opts(), |cur| {
            let mut next = cur.clone();
            let spec = next
                .as_object_mut()
                .map(|o| o.entry("spec").or_insert_with(|| json!({})));
            let Some(spec) = spec.and_then(Value::as_object_mut) else {
                return Ok(next);
            };
            let taints = spec.entry("taints").or_insert_with(|| json!([]));
            if let Some(list) = taints.as_array_mut()
                && !list
                    .iter()
                    .any(|t| t.get("key").and_then(Value::as_str) == Some(STAKE_INACTIVE_TAINT))
            {
                list.push(json!({
                    "key": STAKE_INACTIVE_TAINT,
                    "value": value,
                    "effect": "NoExecute",
                    "timeAdded": added,
                }));
            }
            Ok(next)
        })
        .await;
    match result {
        Ok(_) => Ok(true),
        Err(Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// True when no pod has `spec.nodeName == node`.
async fn no_pods_bound(objects: &ObjectStore, node: &str) -> Result<bool, Error> {
    let Some(info) = objects.table().lookup("", "v1", "pods") else {
        return Ok(true);
    };
    let fields = FieldSelector::parse(&format!("spec.nodeName={node}"), &*info.strategy)?;
    let page = objects
        .list(
            &info,
            None,
            &ListOptions {
                fields,
                limit: 1,
                ..Default::default()
            },
        )
        .await?;
    Ok(page.items.is_empty())
}

/// Deletes `name` of `resource` (`group`, `version`), ignoring a missing object.
async fn delete_if_present(
    objects: &ObjectStore,
    (group, version, resource): (&str, &str, &str),
    ns: Option<&str>,
    name: &str,
) -> Result<(), Error> {
    let Some(info) = objects.table().lookup(group, version, resource) else {
        return Ok(());
    };
    match objects
        .delete(&info, ns, name, &DeleteOptions::default())
        .await
    {
        Ok(_) | Err(Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

impl NodeAdmission {
    /// Follows the registry every `every` until `stop`: see [`NodeAdmission::follow_once`].
    pub async fn follow_registry(self, every: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.follow_once().await {
                tracing::warn!(error = %e, "following the registry's stakes failed; retrying");
            }
        }
    }

    /// One pass: revokes every joined node whose stake no longer admits it (withdrawn,
    /// replaced, unstaking, slashed below the minimum), taints revoked nodes `NoExecute`, and
    /// deletes a revoked node's Node and Lease, and its binding, once no pod is bound to it.
    /// A registry that cannot be read changes nothing.
    ///
    /// # Errors
    ///
    /// [`JoinError::Unavailable`] when the registry cannot be read; store errors.
    pub async fn follow_once(&self) -> Result<(), JoinError> {
        let inner = &self.inner;
        let state = inner
            .registry
            .cluster()
            .await
            .map_err(|e| JoinError::Unavailable(format!("the registry cannot be read: {e}")))?;
        for binding in inner.book.all() {
            let name = binding.node_name.clone();
            let reason = match &binding.revoked {
                Some(revocation) => revocation.reason.clone(),
                None => match stake::revocation_reason(&state, &binding) {
                    Some(reason) => {
                        self.revoke(&name, &reason).await?;
                        reason
                    }
                    None => continue,
                },
            };
            let objects = &inner.objects;
            let retire = async {
                taint(objects, &name, &reason).await?;
                if no_pods_bound(objects, &name).await? {
                    delete_if_present(
                        objects,
                        ("coordination.k8s.io", "v1", "leases"),
                        Some("kube-node-lease"),
                        &name,
                    )
                    .await?;
                    delete_if_present(objects, ("", "v1", "nodes"), None, &name).await?;
                    return Ok::<bool, Error>(true);
                }
                Ok(false)
            };
            match retire.await {
                Ok(true) => {
                    let _changing = inner.changes.lock().await;
                    // A join may have replaced the binding since this pass read it.
                    if inner.book.get(&name).is_some_and(|b| b.revoked.is_some()) {
                        inner.book.remove(&name).await?;
                        tracing::info!(node = %name, "revoked node deleted (no pods bound)");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(node = %name, error = %e, "retiring a revoked node"),
            }
        }
        Ok(())
    }
}
