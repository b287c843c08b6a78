//! Upstream's NodeRestriction admission for node writes the node authorizer lets through: a
//! node may create, update and delete only its own Node, never change its taints (so a node
//! cannot shed the `NoExecute` taint of an inactive stake, or steer workloads to itself) nor
//! labels outside the kubelet's own, create only its own Lease, and delete, evict or update the
//! status of only the pods bound to it.

use std::collections::BTreeSet;

use hyper::{Method, Response};
use serde_json::Value;

use super::forbidden_status;
use crate::api::http::{self, Body};
use crate::api::resource::{self, ResourceRequest};
use crate::registry::{ObjectStore, patch};

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

fn deny(req: &ResourceRequest, name: &str, cause: &str) -> Response<Body> {
    let info = &req.target.info;
    forbidden_status(info.group, info.resource, name, cause)
}

/// Checks a write by `node` after the node authorizer allowed it. `Err` is the response to
/// send instead of serving the request.
pub(crate) async fn admit(
    objects: &ObjectStore,
    node: &str,
    req: &ResourceRequest,
) -> Result<(), Response<Body>> {
    let info = &req.target.info;
    let name = req.target.name.as_deref().unwrap_or("");
    let sub = req.target.subresource.as_deref().unwrap_or("");
    match (info.group, info.resource) {
        ("", "nodes") => admit_node(objects, node, req, name, sub).await,
        ("coordination.k8s.io", "leases") if req.method == Method::POST => {
            let body = resource::json_body(req).map_err(|e| http::error(&e))?;
            let lease = body
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            if lease == node {
                Ok(())
            } else {
                Err(deny(
                    req,
                    lease,
                    "can only access node lease with the same name as the requesting node",
                ))
            }
        }
        ("", "pods") => {
            let what = match (&req.method, sub) {
                (&Method::DELETE, "") => "delete pods",
                (&Method::PUT | &Method::PATCH, "status") => "update pod status for pods",
                (&Method::POST, "eviction") => "evict pods",
                _ => return Ok(()),
            };
            let bound = match objects
                .get(info, req.target.namespace.as_deref(), name)
                .await
            {
                Ok(pod) => pod.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node),
                // Let the handler answer 404 as it would for anyone.
                Err(crate::registry::Error::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(http::error(&e)),
            };
            if bound {
                Ok(())
            } else {
                Err(deny(
                    req,
                    name,
                    &format!("node {node:?} can only {what} with spec.nodeName set to itself"),
                ))
            }
        }
        _ => Ok(()),
    }
}

async fn admit_node(
    objects: &ObjectStore,
    node: &str,
    req: &ResourceRequest,
    name: &str,
    sub: &str,
) -> Result<(), Response<Body>> {
    let info = &req.target.info;
    match req.method {
        Method::POST => {
            let body = resource::json_body(req).map_err(|e| http::error(&e))?;
            let created = body
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            if created != node {
                return Err(deny(
                    req,
                    created,
                    &format!("node {node:?} is not allowed to modify node {created:?}"),
                ));
            }
            let set = labels(&body);
            let bad = forbidden_labels(set.keys());
            if !bad.is_empty() {
                return Err(deny(
                    req,
                    created,
                    &format!(
                        "node {node:?} is not allowed to set the following labels: {}",
                        bad.join(", ")
                    ),
                ));
            }
            Ok(())
        }
        Method::DELETE if name != node => Err(deny(
            req,
            name,
            &format!("node {node:?} is not allowed to delete node {name:?}"),
        )),
        Method::PUT | Method::PATCH if name != node => Err(deny(
            req,
            name,
            &format!("node {node:?} is not allowed to modify node {name:?}"),
        )),
        Method::PUT | Method::PATCH if sub.is_empty() => {
            let current = match objects.get(info, None, name).await {
                Ok(c) => c,
                Err(crate::registry::Error::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(http::error(&e)),
            };
            let next = if req.method == Method::PUT {
                resource::json_body(req).map_err(|e| http::error(&e))?
            } else if resource::is_apply(req) {
                // An apply changes what it names: compare only the fields it sets.
                let mut body = resource::apply_body(req).map_err(|e| http::error(&e))?;
                if body.pointer("/spec/taints").is_none()
                    && let Some(obj) = body.as_object_mut()
                {
                    let spec = obj
                        .entry("spec")
                        .or_insert_with(|| Value::Object(Default::default()));
                    if let Some(spec) = spec.as_object_mut() {
                        spec.insert("taints".into(), taints(&current));
                    }
                }
                let mut merged = labels(&current);
                merged.extend(labels(&body));
                if let Some(meta) = body.pointer_mut("/metadata").and_then(Value::as_object_mut) {
                    meta.insert("labels".into(), Value::Object(merged.into_iter().collect()));
                }
                body
            } else {
                let ty = resource::patch_type(req).map_err(|e| http::error(&e))?;
                patch::apply(ty, &current, &req.body).map_err(|e| http::error(&e))?
            };
            if taints(&next) != taints(&current) {
                return Err(deny(
                    req,
                    name,
                    &format!("node {node:?} is not allowed to modify taints"),
                ));
            }
            let (old, new) = (labels(&current), labels(&next));
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
                    &format!(
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
