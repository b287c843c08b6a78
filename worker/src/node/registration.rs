//! Registering the Node: create it with its labels and status; if it exists (a restart, or a
//! node joining again), bring its labels and status up to date instead, as the kubelet's
//! `tryRegisterWithAPIServer` does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeSpec, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;

use super::node_path;
use crate::client::{ClientError, KubeClient};

/// The labels the node sets on itself (all among the kubelet's own, which NodeRestriction
/// lets a node set).
#[must_use]
pub fn labels(
    node_name: &str,
    arch: &str,
    instance_type: Option<&str>,
) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname", node_name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", arch),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", arch),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if let Some(t) = instance_type {
        labels.insert("node.kubernetes.io/instance-type".to_owned(), t.to_owned());
    }
    labels
}

/// Creates the Node, or updates the existing one's labels and status. Returns the Node as
/// stored.
///
/// # Errors
///
/// The API's error.
pub async fn register(
    client: &mut KubeClient,
    name: &str,
    labels: BTreeMap<String, String>,
    status: NodeStatus,
) -> Result<Node, ClientError> {
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(status.clone()),
    };
    if let Some(created) = client.create("/api/v1/nodes", &node).await? {
        tracing::info!(node = name, "Node registered");
        return Ok(created);
    }
    // It exists: reconcile our labels (others' labels stay), then the status.
    client
        .merge_patch::<Node>(&node_path(name), &json!({"metadata": {"labels": labels}}))
        .await?;
    let status = serde_json::to_value(&status).map_err(|e| ClientError::Decode {
        what: "node status".into(),
        reason: e.to_string(),
    })?;
    let updated = client
        .merge_patch::<Node>(
            &format!("{}/status", node_path(name)),
            &json!({ "status": status }),
        )
        .await?;
    tracing::info!(
        node = name,
        "Node already registered; labels and status updated"
    );
    Ok(updated)
}
