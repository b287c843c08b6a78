//! The pod manager with the node's networking: as [`crate::network::wiring`] lays it out, once
//! the Node is registered it waits for the node's `spec.podCIDR`, starts the pod network, the
//! service proxy, cluster DNS and network policies ([`NodeNetworking::start_from_api`]), then
//! the node's own containerd (so that containerd's CRI picks the pod network's CNI
//! configuration), then the pod manager with cluster DNS for `ClusterFirst` pods. On stop the
//! pods go first, then containerd, then the networking.

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use super::{ContainerLogs, PodManagerConfig, pod_manager};
use crate::agent::{AgentContext, AgentError, AgentTask};
use crate::network::wiring::{FEED_PERIOD, wait_for_pod_cidr};
use crate::network::{Backend, ClusterNetwork, NodeNetworkConfig, NodeNetworking};
use crate::pods::Shutdown;
use crate::runtime::{Containerd, ContainerdConfig};

/// What [`networked_pod_manager`] needs.
#[derive(Debug)]
pub struct NetworkedPodsConfig {
    /// The cluster's CIDRs and DNS domain (must equal the enclave's).
    pub cluster: ClusterNetwork,
    /// How pod traffic reaches other nodes.
    pub backend: Backend,
    /// The node's own containerd (its data directory also holds the CNI configuration).
    pub containerd: ContainerdConfig,
    /// The directory given to `ContainerdConfig::new`.
    pub containerd_dir: PathBuf,
    /// The cgroup under which pods go.
    pub cgroup_root: String,
    /// When container logs are rotated.
    pub container_logs: ContainerLogs,
}

fn failed(reason: impl std::fmt::Display) -> AgentError {
    AgentError::Task {
        task: "pods",
        reason: reason.to_string(),
    }
}

/// The agent task running the node's networking, its own containerd and the pod manager.
#[must_use]
pub fn networked_pod_manager(config: NetworkedPodsConfig) -> AgentTask {
    Box::new(move |context, stop| Box::pin(run(context, config, stop)))
}

async fn run(
    context: AgentContext,
    config: NetworkedPodsConfig,
    stop: CancellationToken,
) -> Result<(), AgentError> {
    let mut client = context.access.client();
    let Some(node) = wait_for_pod_cidr(&mut client, &context.node_name, &stop)
        .await
        .map_err(failed)?
    else {
        return Ok(());
    };
    let domain = config.cluster.cluster_domain.clone();
    let network = NodeNetworkConfig::for_node(
        &node,
        config.cluster,
        config.backend,
        &config.containerd_dir,
    )
    .map_err(failed)?;
    tracing::info!(
        node = %context.node_name,
        ip = %network.node_ip,
        pod_cidr = %network.pod_cidr,
        backend = %network.backend,
        "starting the node's networking"
    );
    // Stopped only after the pods and containerd are gone (their CNI teardown needs it).
    let net_stop = CancellationToken::new();
    let networking = NodeNetworking::start_from_api(
        network,
        context.access.client(),
        FEED_PERIOD,
        net_stop.clone(),
    )
    .await
    .map_err(|e| failed(format!("starting the node's networking: {e}")))?;
    let dns = networking.pod_dns_servers();
    let outcome = async {
        let containerd = Containerd::start(config.containerd)
            .await
            .map_err(|e| failed(format!("starting containerd: {e}")))?;
        let pods = pod_manager(PodManagerConfig {
            cri: containerd.cri(),
            cgroup_root: config.cgroup_root,
            on_stop: Shutdown::RemovePods,
            cluster_dns: Some((dns, domain)),
            container_logs: config.container_logs,
        })(context, stop)
        .await;
        if let Err(e) = containerd.stop().await {
            tracing::warn!(error = %e, "stopping containerd's pods");
        }
        pods
    }
    .await;
    net_stop.cancel();
    networking.stopped().await;
    outcome
}
