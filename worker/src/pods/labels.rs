//! The labels and annotations the kubelet puts on sandboxes and containers, and reads back
//! after a restart: everything the runtime must remember lives here, on the containers, not
//! in a file that can go stale.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Container, Pod};

pub(crate) const POD_NAME: &str = "io.kubernetes.pod.name";
pub(crate) const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub(crate) const POD_UID: &str = "io.kubernetes.pod.uid";
pub(crate) const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// Which node's runtime created the sandbox or container (a machine's containerd may be
/// shared with other users).
pub(crate) const NODE: &str = "k3s-daas.io/node";
pub(crate) const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
pub(crate) const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
pub(crate) const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
pub(crate) const TERMINATION_MESSAGE_POLICY: &str =
    "io.kubernetes.container.terminationMessagePolicy";
pub(crate) const TERMINATION_GRACE: &str = "io.kubernetes.pod.terminationGracePeriod";
pub(crate) const PRE_STOP: &str = "io.kubernetes.container.preStopHandler";
/// The host file the termination message is written to (ours; the kubelet keeps it in memory).
pub(crate) const TERMINATION_MESSAGE_HOST_PATH: &str = "k3s-daas.io/terminationMessageHostPath";
/// When the pod's status first reported it started (kept across restarts of the agent).
pub(crate) const POD_START_TIME: &str = "k3s-daas.io/podStartTime";

/// The pod's identifying labels.
pub(crate) fn pod_labels(pod: &Pod, node: &str) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = pod
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.insert(
        POD_NAME.to_owned(),
        pod.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(
        POD_NAMESPACE.to_owned(),
        pod.metadata.namespace.clone().unwrap_or_default(),
    );
    labels.insert(
        POD_UID.to_owned(),
        pod.metadata.uid.clone().unwrap_or_default(),
    );
    labels.insert(NODE.to_owned(), node.to_owned());
    labels
}

/// A container's labels.
pub(crate) fn container_labels(
    pod: &Pod,
    container: &Container,
    node: &str,
) -> HashMap<String, String> {
    let mut labels = HashMap::new();
    labels.insert(
        POD_NAME.to_owned(),
        pod.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(
        POD_NAMESPACE.to_owned(),
        pod.metadata.namespace.clone().unwrap_or_default(),
    );
    labels.insert(
        POD_UID.to_owned(),
        pod.metadata.uid.clone().unwrap_or_default(),
    );
    labels.insert(CONTAINER_NAME.to_owned(), container.name.clone());
    labels.insert(NODE.to_owned(), node.to_owned());
    labels
}

/// The hash of a container's spec: a changed spec (a new image) restarts the container.
pub(crate) fn container_hash(container: &Container) -> String {
    let mut c = container.clone();
    // Fields that may change without a restart, as upstream leaves them out of the hash.
    c.resources = None;
    c.resize_policy = None;
    let encoded = serde_json::to_vec(&c).unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, &encoded);
    digest
        .as_ref()
        .iter()
        .take(4)
        .fold(0_u32, |acc, b| (acc << 8) | u32::from(*b))
        .to_string()
}

/// upstream's `format.Pod`: `name_namespace(uid)`.
pub(crate) fn format_pod(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}
