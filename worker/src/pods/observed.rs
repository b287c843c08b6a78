//! What the runtime holds for a pod, read back through CRI: its sandboxes and containers with
//! the state the kubelet keeps in their labels and annotations.

use std::collections::{BTreeMap, HashMap};

use k8s_cri::v1 as cri;

use super::labels;
use crate::runtime::{Cri, Result};

/// A container as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObservedContainer {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) sandbox_id: String,
    pub(crate) state: cri::ContainerState,
    /// Unix nanoseconds.
    pub(crate) created_at: i64,
    pub(crate) started_at: i64,
    pub(crate) finished_at: i64,
    pub(crate) exit_code: i32,
    pub(crate) reason: String,
    pub(crate) message: String,
    pub(crate) image: String,
    pub(crate) image_ref: String,
    pub(crate) restart_count: i32,
    pub(crate) hash: String,
    pub(crate) annotations: HashMap<String, String>,
}

impl ObservedContainer {
    pub(crate) fn running(&self) -> bool {
        self.state == cri::ContainerState::ContainerRunning
    }

    pub(crate) fn exited(&self) -> bool {
        self.state == cri::ContainerState::ContainerExited
    }
}

/// A sandbox as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObservedSandbox {
    pub(crate) id: String,
    pub(crate) ready: bool,
    pub(crate) created_at: i64,
    pub(crate) attempt: u32,
    pub(crate) annotations: HashMap<String, String>,
}

/// A pod's sandboxes and containers, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ObservedPod {
    pub(crate) sandboxes: Vec<ObservedSandbox>,
    pub(crate) containers: Vec<ObservedContainer>,
    /// The newest ready sandbox's IPs.
    pub(crate) ips: Vec<String>,
}

impl ObservedPod {
    /// The newest container named `name`, and the one before it.
    pub(crate) fn latest(
        &self,
        name: &str,
    ) -> (Option<&ObservedContainer>, Option<&ObservedContainer>) {
        let mut it = self.containers.iter().filter(|c| c.name == name);
        (it.next(), it.next())
    }

    pub(crate) fn ready_sandbox(&self) -> Option<&ObservedSandbox> {
        self.sandboxes.first().filter(|s| s.ready)
    }
}

fn uid_filter(uid: &str, node: &str) -> HashMap<String, String> {
    HashMap::from([
        (labels::POD_UID.to_owned(), uid.to_owned()),
        (labels::NODE.to_owned(), node.to_owned()),
    ])
}

/// Reads one pod's sandboxes and containers.
pub(crate) async fn observe(cri: &Cri, uid: &str, node: &str) -> Result<ObservedPod> {
    let mut sandboxes: Vec<ObservedSandbox> = cri
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: uid_filter(uid, node),
                ..Default::default()
            }),
        })
        .await?
        .items
        .into_iter()
        .map(|s| ObservedSandbox {
            ready: s.state == cri::PodSandboxState::SandboxReady as i32,
            created_at: s.created_at,
            attempt: s.metadata.as_ref().map_or(0, |m| m.attempt),
            annotations: s.annotations,
            id: s.id,
        })
        .collect();
    sandboxes.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    let listed = cri
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                label_selector: uid_filter(uid, node),
                ..Default::default()
            }),
        })
        .await?
        .containers;
    let mut containers = Vec::with_capacity(listed.len());
    for c in listed {
        let Some(s) = cri.container_status_if_present(&c.id).await? else {
            continue;
        };
        let annotations = s.annotations.clone();
        containers.push(ObservedContainer {
            name: s
                .labels
                .get(labels::CONTAINER_NAME)
                .cloned()
                .unwrap_or_default(),
            sandbox_id: c.pod_sandbox_id,
            state: cri::ContainerState::try_from(s.state)
                .unwrap_or(cri::ContainerState::ContainerUnknown),
            created_at: s.created_at,
            started_at: s.started_at,
            finished_at: s.finished_at,
            exit_code: s.exit_code,
            reason: s.reason,
            message: s.message,
            image: s
                .image
                .as_ref()
                .map(|i| i.image.clone())
                .unwrap_or_default(),
            image_ref: s.image_ref,
            restart_count: annotations
                .get(labels::RESTART_COUNT)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            hash: annotations
                .get(labels::CONTAINER_HASH)
                .cloned()
                .unwrap_or_default(),
            annotations,
            id: s.id,
        });
    }
    containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    let mut ips = Vec::new();
    if let Some(sandbox) = sandboxes.first().filter(|s| s.ready)
        && let Ok(status) = cri
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: sandbox.id.clone(),
                verbose: false,
            })
            .await
        && let Some(network) = status.status.and_then(|s| s.network)
    {
        if !network.ip.is_empty() {
            ips.push(network.ip);
        }
        ips.extend(network.additional_ips.into_iter().map(|ip| ip.ip));
    }
    Ok(ObservedPod {
        sandboxes,
        containers,
        ips,
    })
}

/// A cheap fingerprint of every pod the runtime holds for this node (the PLEG's relist):
/// pod UID -> sorted (id, state) of its sandboxes and containers.
pub(crate) async fn relist(cri: &Cri, node: &str) -> Result<BTreeMap<String, Vec<(String, i32)>>> {
    let node_filter = HashMap::from([(labels::NODE.to_owned(), node.to_owned())]);
    let mut out: BTreeMap<String, Vec<(String, i32)>> = BTreeMap::new();
    let sandboxes = cri
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: node_filter.clone(),
                ..Default::default()
            }),
        })
        .await?
        .items;
    for s in sandboxes {
        let uid = s.labels.get(labels::POD_UID).cloned().unwrap_or_default();
        out.entry(uid).or_default().push((s.id, 100 + s.state));
    }
    let containers = cri
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                label_selector: node_filter,
                ..Default::default()
            }),
        })
        .await?
        .containers;
    for c in containers {
        let uid = c.labels.get(labels::POD_UID).cloned().unwrap_or_default();
        out.entry(uid).or_default().push((c.id, c.state));
    }
    for v in out.values_mut() {
        v.sort();
    }
    Ok(out)
}
