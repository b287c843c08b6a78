//! Starting a worker's networking from `daas-worker`: where each value comes from.
//!
//! ```text
//! after the join (the agent has an ApiAccess and has registered the Node):
//!   node    = network::wiring::wait_for_pod_cidr(&mut access.client(), node_name, &cancel).await?
//!             (the enclave's node IPAM controller sets spec.podCIDR after the Node is created)
//!   cluster = ClusterNetwork { cluster_cidr, service_cidr, cluster_domain }
//!             (flags of daas-worker defaulting to k3s's 10.42.0.0/16, 10.43.0.0/16,
//!              cluster.local; they must equal daas-enclave's --cluster-cidr / service CIDR)
//!   config  = NodeNetworkConfig::for_node(&node, cluster, backend, data_dir)?
//!             (backend: a --flannel-backend-like flag, host-gw or vxlan; data_dir: the same
//!              directory given to runtime::ContainerdConfig::new)
//!   net     = NodeNetworking::start_from_api(config, access.client(), FEED_PERIOD, cancel).await?
//!   pods    = PodRuntimeConfig::new(..).with_cluster_dns(net.pod_dns_servers(), domain)
//! ```
//!
//! - Start networking before containerd: containerd's CRI reads the first conflist by file name
//!   in its `conf_dir` (`DATA_DIR/cni/net.d`); ours, [`super::cni::CONFLIST_FILE`], sorts before
//!   the pod runtime's own bridge fallback ([`crate::runtime::CONFLIST_FILE`]), so pods get
//!   addresses from the node's pod CIDR on `cni0` and the runtime's file is ignored.
//! - Pods' DNS: the pod runtime builds each sandbox's DNS config from
//!   `PodRuntimeConfig::with_cluster_dns` (ClusterFirst: the cluster DNS address, the
//!   `NS.svc.DOMAIN svc.DOMAIN DOMAIN` search list, `ndots:5`), as
//!   [`NodeNetworking::resolv_conf`] renders it.
//! - The API identity: [`super::feed`] lists Nodes, Services, EndpointSlices, Pods, Namespaces
//!   and NetworkPolicies cluster-wide. The enclave's node authorizer lets a node read only its
//!   own Node and its own pods, so these lists are refused (and logged) until the node identity
//!   (or a separate networking identity, as k3s's `system:kube-proxy`) may list them.
//! - `daas dev --workers N`: start each daas-worker inside its namespace
//!   ([`super::devnet`]); the worker's own namespace is then [`super::Netns::Current`].

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use tokio_util::sync::CancellationToken;

use super::ClusterNetwork;
use super::agent::{NodeNetworkConfig, NodeNetworking};
use super::error::{Error, Result};
use super::exec::Netns;
use super::feed;
use super::model::ClusterModel;
use super::resolv::ResolvConf;
use super::routes::{Backend, PeerNode};
use crate::client::KubeClient;

/// How often [`NodeNetworking::start_from_api`] re-lists the API.
pub const FEED_PERIOD: Duration = Duration::from_secs(2);

impl NodeNetworkConfig {
    /// The settings of this worker from its Node object (name, InternalIP, `spec.podCIDR`), the
    /// cluster's CIDRs, the backend and the data directory containerd uses
    /// (`runtime::ContainerdConfig::new(data_dir)`: CNI configuration in `DATA_DIR/cni/net.d`,
    /// leases in `DATA_DIR/cni/ipam`). The node's resolvers come from `/etc/resolv.conf`.
    ///
    /// # Errors
    /// [`Error::Config`] when the Node has no InternalIP (or ExternalIP) or no pod CIDR yet.
    pub fn for_node(
        node: &Node,
        cluster: ClusterNetwork,
        backend: Backend,
        data_dir: &Path,
    ) -> Result<Self> {
        let me = PeerNode::from_node(node).ok_or_else(|| {
            Error::Config(format!(
                "Node {:?} has no IPv4 InternalIP or no spec.podCIDR yet",
                node.metadata.name.as_deref().unwrap_or_default()
            ))
        })?;
        if !cluster.cluster_cidr.contains(&me.pod_cidr) {
            return Err(Error::Config(format!(
                "the Node's pod CIDR {} is outside the cluster CIDR {}",
                me.pod_cidr, cluster.cluster_cidr
            )));
        }
        let node_resolv = std::fs::read_to_string("/etc/resolv.conf")
            .map(|text| ResolvConf::parse(&text))
            .unwrap_or_default();
        Ok(Self {
            netns: Netns::Current,
            node_name: me.name,
            node_ip: me.ip,
            pod_cidr: me.pod_cidr,
            backend,
            cluster,
            cni_conf_dir: data_dir.join("cni/net.d"),
            ipam_data_dir: data_dir.join("cni/ipam"),
            node_resolv,
            dns_upstreams: None,
        })
    }
}

impl NodeNetworking {
    /// [`NodeNetworking::start`] with its model fed from the API by [`feed::run`] through
    /// `client` every `period`, until `cancel`.
    ///
    /// # Errors
    /// As [`NodeNetworking::start`].
    pub async fn start_from_api(
        config: NodeNetworkConfig,
        client: KubeClient,
        period: Duration,
        cancel: CancellationToken,
    ) -> Result<Self> {
        let model = ClusterModel::new();
        let mut networking = Self::start(config, model.clone(), cancel.clone()).await?;
        networking.spawn(feed::run(client, model, &feed::ALL_KINDS, period, cancel));
        Ok(networking)
    }

    /// The cluster DNS servers for `PodRuntimeConfig::with_cluster_dns`.
    pub fn pod_dns_servers(&self) -> Vec<IpAddr> {
        vec![IpAddr::V4(self.cluster_dns())]
    }
}

/// Reads this worker's Node every second until the enclave's IPAM has given it a pod CIDR (and
/// it has an address); `None` when `cancel` fires first.
///
/// # Errors
/// [`Error::Config`] when the API refuses to read the Node (other failures are retried).
pub async fn wait_for_pod_cidr(
    client: &mut KubeClient,
    node_name: &str,
    cancel: &CancellationToken,
) -> Result<Option<Node>> {
    let path = format!("/api/v1/nodes/{node_name}");
    loop {
        match client.get::<Node>(&path).await {
            Ok(Some(node)) if PeerNode::from_node(&node).is_some() => return Ok(Some(node)),
            Ok(_) => tracing::info!(node = node_name, "waiting for the Node's spec.podCIDR"),
            Err(e)
                if e.status()
                    .is_some_and(|s| s.as_u16() == 401 || s.as_u16() == 403) =>
            {
                return Err(Error::Config(format!("reading Node {node_name}: {e}")));
            }
            Err(e) => tracing::warn!(node = node_name, error = %e, "reading the Node; retrying"),
        }
        tokio::select! {
            () = cancel.cancelled() => return Ok(None),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{NodeAddress, NodeSpec, NodeStatus};

    use std::net::Ipv4Addr;

    use super::*;

    fn node(pod_cidr: Option<&str>) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some("w1".into());
        n.spec = Some(NodeSpec {
            pod_cidr: pod_cidr.map(str::to_owned),
            ..Default::default()
        });
        n.status = Some(NodeStatus {
            addresses: Some(vec![NodeAddress {
                type_: "InternalIP".into(),
                address: "10.199.0.11".into(),
            }]),
            ..Default::default()
        });
        n
    }

    #[test]
    fn config_comes_from_the_node_and_containerds_data_dir() {
        let dir = Path::new("/var/lib/daas-worker");
        let c = NodeNetworkConfig::for_node(
            &node(Some("10.42.1.0/24")),
            ClusterNetwork::default(),
            Backend::Vxlan,
            dir,
        )
        .unwrap();
        assert_eq!(c.node_name, "w1");
        assert_eq!(c.node_ip, Ipv4Addr::new(10, 199, 0, 11));
        assert_eq!(c.pod_cidr.to_string(), "10.42.1.0/24");
        assert_eq!(c.netns, Netns::Current);
        assert_eq!(c.cni_conf_dir, dir.join("cni/net.d"));
        assert_eq!(c.ipam_data_dir, dir.join("cni/ipam"));
    }

    #[test]
    fn a_node_without_pod_cidr_or_outside_the_cluster_is_refused() {
        let dir = Path::new("/d");
        let net = ClusterNetwork::default();
        assert!(
            NodeNetworkConfig::for_node(&node(None), net.clone(), Backend::HostGw, dir).is_err()
        );
        let outside = node(Some("10.99.1.0/24"));
        assert!(NodeNetworkConfig::for_node(&outside, net, Backend::HostGw, dir).is_err());
    }

    #[test]
    fn our_conflist_is_the_one_containerd_picks() {
        // containerd's CRI loads the first conflist of its conf_dir by name.
        assert!(super::super::cni::CONFLIST_FILE < crate::runtime::CONFLIST_FILE);
    }
}
