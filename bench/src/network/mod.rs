//! `daas bench network`: the cost of the worker's network, measured on two nodes emulated with
//! network namespaces (the worker's real pod network, CNI plugins, routes, service proxy and DNS;
//! see `worker::network::lab`), each path against the same traffic between the two nodes'
//! addresses directly:
//!
//! - throughput of one TCP stream and request latency (1-byte ping-pong, p50/p99) pod to pod across
//!   nodes and pod to ClusterIP (endpoint on the other node), as ratios to node to node;
//! - rule programming: a full sync of 1,000 Services x 10 endpoints (first into an empty table,
//!   then again over it), against kube-proxy's iptables mode loading the same Services with
//!   `iptables-restore` in the same run ([`rules`]);
//! - DNS queries per second from one pod to the node's cluster DNS (UDP, a window of queries in
//!   flight), against a UDP echo at the same address answering the same packets: the ceiling of
//!   the client and the kernel path ([`dns`]).
//!
//! Needs root and network namespaces, like the network tests.

mod dns;
mod paths;
mod rules;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use anyhow::Context;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use worker::network::lab::{Lab, LabNode};
use worker::network::model::{ClusterModel, ClusterObject, ObjectKind, SERVICE_NAME_LABEL};
use worker::network::routes::PeerNode;
use worker::network::{Backend, ClusterNetwork, PodNetwork, PodNetworkConfig};
use worker::proxy::{DEFAULT_TABLE, ProxyConfig, ServiceProxy};

/// Options for `daas bench network`.
#[derive(Debug, clap::Args)]
pub(crate) struct NetworkBenchArgs {
    /// Backends to measure (`host-gw`, `vxlan`).
    #[arg(long, value_delimiter = ',', default_value = "host-gw,vxlan")]
    backends: Vec<String>,
    /// Seconds per throughput measurement.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Sequential requests per latency measurement.
    #[arg(long, default_value_t = 5000)]
    requests: usize,
    /// Interleaved rounds over the paths; ratios are the median of the rounds' ratios.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Services for the rule-programming phase.
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Endpoints per Service for the rule-programming phase.
    #[arg(long, default_value_t = 10)]
    endpoints: usize,
    /// DNS queries kept in flight.
    #[arg(long, default_value_t = 64)]
    dns_window: usize,
}

pub(crate) fn run(args: NetworkBenchArgs) -> anyhow::Result<()> {
    Lab::check_available().map_err(|why| {
        anyhow::anyhow!("daas bench network needs root and network namespaces: {why}")
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        for b in &args.backends {
            let backend: Backend = b.parse().context("--backends")?;
            paths::run(&args, backend).await?;
        }
        rules::run(&args).await?;
        dns::run(&args).await
    })
}

struct Cluster {
    lab: Lab,
    nodes: Vec<LabNode>,
    nets: Vec<PodNetwork>,
    model: ClusterModel,
    net: ClusterNetwork,
}

async fn cluster(label: &str, backend: Backend) -> anyhow::Result<Cluster> {
    let mut lab = Lab::new(label).await?;
    let net = ClusterNetwork::default();
    let (mut nodes, mut nets) = (Vec::new(), Vec::new());
    for i in 1..=2u8 {
        let node = lab.add_node(&format!("node-{i}"), i).await?;
        let config = PodNetworkConfig {
            netns: node.netns.clone(),
            node_name: node.name.clone(),
            node_ip: node.ip,
            pod_cidr: node.pod_cidr,
            backend,
            cni_conf_dir: node.cni_conf_dir(),
            ipam_data_dir: node.ipam_dir(),
            bridge: "cni0".into(),
        };
        nets.push(PodNetwork::setup(config, &net).await?);
        nodes.push(node);
    }
    let model = ClusterModel::new();
    model.replace(
        ObjectKind::Node,
        nodes
            .iter()
            .map(|n| ClusterObject::Node(n.node_object()))
            .collect(),
    );
    let state = model.snapshot();
    for (node, n) in nodes.iter().zip(&nets) {
        n.sync_peers(&PeerNode::all_except(&state, &node.name))
            .await?;
    }
    Ok(Cluster {
        lab,
        nodes,
        nets,
        model,
        net,
    })
}

fn proxy_for(c: &Cluster, i: usize) -> ServiceProxy {
    ServiceProxy::new(ProxyConfig {
        netns: c.nodes[i].netns.clone(),
        node_name: c.nodes[i].name.clone(),
        cluster_cidr: c.net.cluster_cidr,
        skip_cluster_ips: vec![c.net.cluster_dns()],
        table: DEFAULT_TABLE.into(),
    })
}

fn service(name: &str, ip: Ipv4Addr, port: u16) -> ClusterObject {
    let mut s = Service::default();
    s.metadata.namespace = Some("bench".into());
    s.metadata.name = Some(name.into());
    s.spec = Some(ServiceSpec {
        cluster_ip: Some(ip.to_string()),
        cluster_ips: Some(vec![ip.to_string()]),
        ports: Some(vec![ServicePort {
            name: Some("p".into()),
            port: i32::from(port),
            ..Default::default()
        }]),
        ..Default::default()
    });
    ClusterObject::Service(s)
}

fn slice(name: &str, ips: &[Ipv4Addr], port: u16, node: &str) -> ClusterObject {
    let mut s = EndpointSlice {
        address_type: "IPv4".into(),
        endpoints: ips
            .iter()
            .map(|ip| Endpoint {
                addresses: vec![ip.to_string()],
                node_name: Some(node.into()),
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("p".into()),
            port: Some(i32::from(port)),
            ..Default::default()
        }]),
        ..Default::default()
    };
    s.metadata.namespace = Some("bench".into());
    s.metadata.name = Some(format!("{name}-1"));
    s.metadata.labels = Some(BTreeMap::from([(
        SERVICE_NAME_LABEL.to_owned(),
        name.to_owned(),
    )]));
    ClusterObject::EndpointSlice(s)
}

/// The median of `v` (zero when empty).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}
