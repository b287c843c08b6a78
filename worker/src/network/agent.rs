//! Everything networking a worker runs, started in one call: the pod network, its route sync, the
//! service proxy, cluster DNS and NetworkPolicy, all fed by one [`ClusterModel`].
//!
//! [`super::wiring`] says how `daas-worker` starts it. What the rest of the worker wires to it:
//! - the API watch fills the [`ClusterModel`] (Nodes, Services, EndpointSlices, Pods,
//!   Namespaces, NetworkPolicies: list then watch, [`ClusterModel::replace`] after each list);
//! - containerd's CRI `conf_dir` is [`NodeNetworkConfig::cni_conf_dir`] (its `bin_dir`
//!   `/usr/lib/cni`), where [`NodeNetworking::start`] writes the node's configuration;
//! - the runtime writes each pod's `/etc/resolv.conf` from [`NodeNetworking::resolv_conf`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Pod;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::error::Result;
use super::exec::Netns;
use super::model::ClusterModel;
use super::resolv::{NodeDns, ResolvConf, pod_resolv_conf};
use super::{Backend, ClusterNetwork, PodNetwork, PodNetworkConfig};
use crate::dns::{self, DnsConfig};
use crate::netpol::NetworkPolicies;
use crate::proxy::{self, ProxyConfig, ServiceProxy};

/// How often everything is re-applied even without a change (repairs what others removed).
pub const RESYNC: Duration = Duration::from_secs(60);
/// How soon a failed sync is retried.
pub const RETRY: Duration = Duration::from_secs(1);

/// A worker's network settings.
#[derive(Debug, Clone)]
pub struct NodeNetworkConfig {
    /// The worker's namespace (its own in production).
    pub netns: Netns,
    /// The Node's name.
    pub node_name: String,
    /// The node's InternalIP.
    pub node_ip: std::net::Ipv4Addr,
    /// The node's `spec.podCIDR`.
    pub pod_cidr: Ipv4Net,
    /// host-gw or VXLAN.
    pub backend: Backend,
    /// Cluster CIDRs and domain.
    pub cluster: ClusterNetwork,
    /// containerd's CNI `conf_dir`.
    pub cni_conf_dir: PathBuf,
    /// host-local's lease directory (per worker).
    pub ipam_data_dir: PathBuf,
    /// The node's own `resolv.conf` (pods with `dnsPolicy: Default`, and where DNS forwards to).
    pub node_resolv: ResolvConf,
    /// Where names outside the cluster are forwarded (default: the node's nameservers, port 53).
    pub dns_upstreams: Option<Vec<SocketAddr>>,
}

/// The running networking of one worker.
#[derive(Debug)]
pub struct NodeNetworking {
    pod_network: Arc<PodNetwork>,
    node_dns: NodeDns,
    tasks: JoinSet<()>,
}

impl NodeNetworking {
    /// Sets the node's network up, binds cluster DNS, and starts the route, proxy, DNS and policy
    /// loops; they run until `cancel`.
    ///
    /// # Errors
    /// When the pod network cannot be set up or DNS cannot bind its address.
    pub async fn start(
        config: NodeNetworkConfig,
        model: ClusterModel,
        cancel: CancellationToken,
    ) -> Result<Self> {
        let cluster_dns = config.cluster.cluster_dns();
        let pod_network = Arc::new(
            PodNetwork::setup(
                PodNetworkConfig {
                    netns: config.netns.clone(),
                    node_name: config.node_name.clone(),
                    node_ip: config.node_ip,
                    pod_cidr: config.pod_cidr,
                    backend: config.backend,
                    cni_conf_dir: config.cni_conf_dir.clone(),
                    ipam_data_dir: config.ipam_data_dir.clone(),
                    bridge: "cni0".into(),
                },
                &config.cluster,
            )
            .await?,
        );
        dns::add_listen_address(&config.netns, cluster_dns).await?;
        let upstreams = config.dns_upstreams.clone().unwrap_or_else(|| {
            config
                .node_resolv
                .nameservers
                .iter()
                .filter_map(|n| n.parse::<std::net::IpAddr>().ok())
                .filter(|ip| *ip != std::net::IpAddr::V4(cluster_dns))
                .map(|ip| SocketAddr::new(ip, 53))
                .collect()
        });
        let (_dns, dns_task) = dns::serve(
            DnsConfig {
                netns: config.netns.clone(),
                listen: cluster_dns,
                port: 53,
                network: config.cluster.clone(),
                upstreams,
            },
            model.clone(),
            cancel.clone(),
        )
        .await?;
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let _ = dns_task.await;
        });
        let routes = pod_network.clone();
        let (m, c) = (model.clone(), cancel.clone());
        tasks.spawn(async move { routes.run(m, RESYNC, c).await });
        let proxy = ServiceProxy::new(ProxyConfig {
            netns: config.netns.clone(),
            node_name: config.node_name.clone(),
            cluster_cidr: config.cluster.cluster_cidr,
            skip_cluster_ips: vec![cluster_dns],
            table: proxy::DEFAULT_TABLE.into(),
        });
        tasks.spawn(proxy.run(model.clone(), RESYNC, RETRY, cancel.clone()));
        let policies = NetworkPolicies::new(config.netns.clone(), config.node_name.clone());
        tasks.spawn(policies.run(model, RESYNC, RETRY, cancel));
        Ok(Self {
            pod_network,
            node_dns: NodeDns {
                cluster_dns,
                cluster_domain: config.cluster.cluster_domain.clone(),
                node: config.node_resolv,
            },
            tasks,
        })
    }

    /// The cluster DNS address this node answers on (and pods use).
    pub fn cluster_dns(&self) -> std::net::Ipv4Addr {
        self.node_dns.cluster_dns
    }

    /// Runs `task` beside the networking loops (stopped with them).
    pub(super) fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// The pod network (its CNI configuration, for the runtime).
    pub fn pod_network(&self) -> &PodNetwork {
        &self.pod_network
    }

    /// The `resolv.conf` the runtime writes for `pod`.
    pub fn resolv_conf(&self, pod: &Pod) -> ResolvConf {
        pod_resolv_conf(pod, &self.node_dns)
    }

    /// Waits until every loop has stopped (after the cancellation token fired).
    pub async fn stopped(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}
