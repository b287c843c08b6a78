//! Upstream's NodeRestriction admission for node writes the node authorizer lets through: a
//! node may create, update and delete only its own Node, never change its taints (so a node
//! cannot shed the `NoExecute` taint of an inactive stake, or steer workloads to itself) nor
//! labels outside the kubelet's own, create only its own Lease, and delete, evict or update the
//! status of only the pods bound to it. [`NodeRestriction`] is the admission plugin (its slot
//! of [`crate::admission::Chain`]); evictions, which the store serves as deletes, are checked
//! before they are served by `admit_eviction`.

use std::collections::BTreeSet;

use futures::future::BoxFuture;
use hyper::{Method, Response};
use serde_json::Value;

use super::node_identity;
use crate::admission::{Operation, Outcome, Plugin, Request};
use crate::api::http::{self, Body};
use crate::api::resource::ResourceRequest;
use crate::registry::{Error, ObjectStore, Result};

/// Labels the kubelet may set on its own Node (upstream's `kubeletapis` list).
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "kubernetes.io/instance-type",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "kubernetes.io/os",
    "kubernetes.io/arch",
];

fn in_namespace(namespace: &str, domain: &str) -> bool {
    namespace == domain || namespace.ends_with(&format!(".{domain}"))
}

fn is_kubelet_label(key: &str) -> bool {
    if KUBELET_LABELS.contains(&key) {
        return true;
    }
    let namespace = key.split_once('/').map_or("", |(ns, _)| ns);
    in_namespace(namespace, "kubelet.kubernetes.io")
        || in_namespace(namespace, "node.kubernetes.io")
}

/// The labels among `keys` a node may not set or change.
fn forbidden_labels<'k>(keys: impl Iterator<Item = &'k String>) -> Vec<String> {
    keys.filter(|key| {
        let namespace = key.split_once('/').map_or("", |(ns, _)| ns);
        if in_namespace(namespace, "node-restriction.kubernetes.io") {
            return true;
        }
        (in_namespace(namespace, "kubernetes.io") || in_namespace(namespace, "k8s.io"))
            && !is_kubelet_label(key)
    })
    .cloned()
    .collect()
}

fn labels(obj: &Value) -> std::collections::BTreeMap<String, Value> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

fn taints(obj: &Value) -> Value {
    match obj.pointer("/spec/taints") {
        Some(Value::Array(list)) if !list.is_empty() => Value::Array(list.clone()),
        _ => Value::Array(Vec::new()),
    }
}

fn deny(req: &Request<'_>, name: &str, cause: String) -> Error {
    Error::forbidden(&req.info.group, &req.info.resource, name, &cause)
}

fn bound_to(pod: Option<&Value>, node: &str) -> bool {
    pod.and_then(|p| p.pointer("/spec/nodeName"))
        .and_then(Value::as_str)
        == Some(node)
}

/// Upstream's NodeRestriction admission plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeRestriction;

impl Plugin for NodeRestriction {
    fn validate<'a>(
        &'a self,
        _objects: &'a ObjectStore,
        req: &'a Request<'a>,
        obj: &'a Value,
        _out: &'a mut Outcome,
    ) -> BoxFuture<'a, Result<()>> {
        let result = match req.user.and_then(node_identity) {
            Some(node) => check(node, req, obj),
            None => Ok(()),
        };
        Box::pin(std::future::ready(result))
    }
}

/// Checks a write by `node`: `obj` is the object as it would be stored (on a delete, the
/// stored object).
fn check(node: &str, req: &Request<'_>, obj: &Value) -> Result<()> {
    let sub = req.subresource.unwrap_or("");
    match (req.info.group.as_str(), req.info.resource.as_str()) {
        ("", "nodes") => check_node(node, req, obj, sub),
        ("coordination.k8s.io", "leases") if req.operation == Operation::Create => {
            let lease = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            if lease == node {
                Ok(())
            } else {
                Err(deny(
                    req,
                    lease,
                    "can only access node lease with the same name as the requesting node".into(),
                ))
            }
        }
        ("", "pods") => {
            let what = match (req.operation, sub) {
                (Operation::Delete, "") => "delete pods",
                (Operation::Update, "status") => "update pod status for pods",
                _ => return Ok(()),
            };
            if bound_to(req.old, node) {
                Ok(())
            } else {
                Err(deny(
                    req,
                    req.name,
                    format!("node {node:?} can only {what} with spec.nodeName set to itself"),
                ))
            }
        }
        _ => Ok(()),
    }
}

fn check_node(node: &str, req: &Request<'_>, obj: &Value, sub: &str) -> Result<()> {
    let name = req.name;
    match req.operation {
        Operation::Create => {
            if name != node {
                return Err(deny(
                    req,
                    name,
                    format!("node {node:?} is not allowed to modify node {name:?}"),
                ));
            }
            let bad = forbidden_labels(labels(obj).keys());
            if !bad.is_empty() {
                return Err(deny(
                    req,
                    name,
                    format!(
                        "node {node:?} is not allowed to set the following labels: {}",
                        bad.join(", ")
                    ),
                ));
            }
            Ok(())
        }
        Operation::Delete if name != node => Err(deny(
            req,
            name,
            format!("node {node:?} is not allowed to delete node {name:?}"),
        )),
        Operation::Update if name != node => Err(deny(
            req,
            name,
            format!("node {node:?} is not allowed to modify node {name:?}"),
        )),
        Operation::Update if sub.is_empty() => {
            let Some(current) = req.old else {
                return Ok(());
            };
            if taints(obj) != taints(current) {
                return Err(deny(
                    req,
                    name,
                    format!("node {node:?} is not allowed to modify taints"),
                ));
            }
            let (old, new) = (labels(current), labels(obj));
            let changed: BTreeSet<&String> = old
                .keys()
                .chain(new.keys())
                .filter(|k| old.get(*k) != new.get(*k))
                .collect();
            let bad = forbidden_labels(changed.into_iter());
            if !bad.is_empty() {
                return Err(deny(
                    req,
                    name,
                    format!(
                        "node {node:?} is not allowed to modify labels: {}",
                        bad.join(", ")
                    ),
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A node may evict only the pods bound to it; checked before the eviction is served. `Err` is
/// the response to send instead.
pub(crate) async fn admit_eviction(
    objects: &ObjectStore,
    node: &str,
    req: &ResourceRequest,
) -> std::result::Result<(), Response<Body>> {
    let info = &req.target.info;
    if !(info.group.is_empty()
        && info.resource == "pods"
        && req.method == Method::POST
        && req.target.subresource.as_deref() == Some("eviction"))
    {
        return Ok(());
    }
    let name = req.target.name.as_deref().unwrap_or("");
    match objects
        .get(info, req.target.namespace.as_deref(), name)
        .await
    {
        Ok(pod) if bound_to(Some(&pod), node) => Ok(()),
        Ok(_) => Err(http::error(&Error::forbidden(
            &info.group,
            &info.resource,
            name,
            &format!("node {node:?} can only evict pods with spec.nodeName set to itself"),
        ))),
        // Let the handler answer 404 as it would for anyone.
        Err(Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(http::error(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_labels_only() {
        let keys: Vec<String> = [
            "kubernetes.io/hostname",
            "node.kubernetes.io/instance-type",
            "kubelet.kubernetes.io/x",
            "example.com/team",
            "node-role.kubernetes.io/control-plane",
            "node-restriction.kubernetes.io/pool",
            "x.k8s.io/y",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        assert_eq!(
            forbidden_labels(keys.iter()),
            [
                "node-role.kubernetes.io/control-plane",
                "node-restriction.kubernetes.io/pool",
                "x.k8s.io/y"
            ]
        );
    }
}
