//! The pod network of one node: kernel settings, the CNI configuration, routes to the other nodes'
//! pods and the masquerade table, kept in step with the Nodes of the cluster model.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::Ipv4Net;
use tokio_util::sync::CancellationToken;

use super::cni::CniConfig;
use super::error::Result;
use super::exec::Netns;
use super::model::{ClusterModel, ObjectKind};
use super::routes::{Backend, PeerNode, PodRoutes, interface_of};
use super::{ClusterNetwork, nat};

/// What one node's pod network is made of.
#[derive(Debug, Clone)]
pub struct PodNetworkConfig {
    /// Where the node's network lives (the worker's own namespace in production).
    pub netns: Netns,
    /// The Node's name.
    pub node_name: String,
    /// The node's address (its InternalIP), on the interface other nodes reach it through.
    pub node_ip: Ipv4Addr,
    /// The node's pod CIDR (`spec.podCIDR`, from the node IPAM controller).
    pub pod_cidr: Ipv4Net,
    /// How pod traffic reaches other nodes.
    pub backend: Backend,
    /// Where containerd reads CNI configuration (`conf_dir`).
    pub cni_conf_dir: PathBuf,
    /// host-local's lease directory (one per worker).
    pub ipam_data_dir: PathBuf,
    /// The pods' bridge (default `cni0`).
    pub bridge: String,
}

/// One node's pod network, set up.
#[derive(Debug)]
pub struct PodNetwork {
    config: PodNetworkConfig,
    routes: PodRoutes,
    cni: CniConfig,
}

impl PodNetwork {
    /// Sets the node up: IP forwarding, bridged traffic through netfilter (Service and
    /// NetworkPolicy rules then see traffic between pods of the same bridge), the VXLAN device (or
    /// its removal), the masquerade table and the CNI configuration.
    ///
    /// # Errors
    /// When a command fails, the node address is on no interface, or the CNI file cannot be written.
    pub async fn setup(config: PodNetworkConfig, cluster: &ClusterNetwork) -> Result<Self> {
        let netns = &config.netns;
        netns.set_sysctl("net.ipv4.ip_forward", "1").await?;
        if let Err(e) = netns
            .set_sysctl("net.bridge.bridge-nf-call-iptables", "1")
            .await
        {
            tracing::warn!(error = %e, "br_netfilter unavailable: Services between pods of one node need it");
        }
        let (interface, mtu) = interface_of(netns, config.node_ip).await?;
        let routes = PodRoutes::new(
            netns.clone(),
            config.backend,
            config.node_ip,
            interface,
            mtu,
            config.pod_cidr,
        );
        routes.ensure_device().await?;
        nat::apply(netns, cluster.cluster_cidr).await?;
        let cni = CniConfig {
            pod_cidr: config.pod_cidr,
            bridge: config.bridge.clone(),
            mtu: routes.pod_mtu(),
            ipam_data_dir: config.ipam_data_dir.clone(),
        };
        let path = cni.write(&config.cni_conf_dir)?;
        tracing::info!(node = %config.node_name, backend = %config.backend, pod_cidr = %config.pod_cidr,
            cni = %path.display(), "pod network set up");
        Ok(Self {
            config,
            routes,
            cni,
        })
    }

    /// The CNI configuration written.
    pub fn cni(&self) -> &CniConfig {
        &self.cni
    }

    /// Routes to exactly `peers`.
    ///
    /// # Errors
    /// When an `ip` or `bridge` command fails.
    pub async fn sync_peers(&self, peers: &[PeerNode]) -> Result<()> {
        self.routes.sync(peers).await
    }

    /// Keeps the routes in step with the model's Nodes until `cancel`: a sync after each change (once
    /// Nodes are synced), and again every `resync` to repair what someone else removed.
    pub async fn run(&self, model: ClusterModel, resync: Duration, cancel: CancellationToken) {
        let mut rx = model.subscribe();
        let mut last: Option<Vec<PeerNode>> = None;
        loop {
            let state = rx.borrow_and_update().clone();
            if state.is_synced(&[ObjectKind::Node]) {
                let mut peers = PeerNode::all_except(&state, &self.config.node_name);
                peers.sort();
                if last.as_ref() != Some(&peers) || last.is_none() {
                    match self.sync_peers(&peers).await {
                        Ok(()) => last = Some(peers),
                        Err(e) => {
                            tracing::warn!(error = %e, "pod routes: sync failed; retrying");
                            last = None;
                        }
                    }
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                changed = rx.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(resync) => last = None,
            }
        }
    }
}
