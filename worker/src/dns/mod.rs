//! Cluster DNS, answered on every node by the worker itself with `hickory-server`: the records of
//! the Kubernetes DNS specification from the cluster model ([`records`]), everything else forwarded
//! to the node's own resolvers (hickory's forwarder, with its cache).
//!
//! The server listens on the cluster DNS address (the tenth address of the service CIDR,
//! `10.43.0.10`), port 53, UDP and TCP, in the node's network namespace; [`add_listen_address`]
//! puts that address on the node's loopback interface so that pods reach it through their default
//! route, and the service proxy is told not to program that ClusterIP
//! ([`crate::proxy::ProxyConfig::skip_cluster_ips`]). Pods get it as their nameserver from
//! [`crate::network::resolv::pod_resolv_conf`].

pub mod handler;
pub mod records;

/// hickory's DNS message types, for clients of the server (tests, `daas bench network`).
pub use hickory_server::proto;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_server::Server;
use hickory_server::proto::rr::{LowerName, Name};
use hickory_server::resolver::config::NameServerConfig;
use hickory_server::store::forwarder::{ForwardConfig, ForwardZoneHandler};
use hickory_server::zone_handler::Catalog;
use tokio_util::sync::CancellationToken;

use crate::network::ClusterNetwork;
use crate::network::error::{Error, Result};
use crate::network::exec::{self, Netns};
use crate::network::model::ClusterModel;
use handler::{ClusterDnsHandler, SharedIndex};
use records::DnsIndex;

/// The DNS server's settings.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Where it listens (the node's namespace).
    pub netns: Netns,
    /// The address it answers on (the cluster DNS address).
    pub listen: Ipv4Addr,
    /// The port (53).
    pub port: u16,
    /// The cluster's CIDRs and domain.
    pub network: ClusterNetwork,
    /// The node's resolvers, for names outside the cluster. Empty: refuse them. The forwarder opens
    /// its sockets in the worker process's own namespace (where a worker runs), not in `netns`.
    pub upstreams: Vec<SocketAddr>,
}

/// The nameservers of a `resolv.conf` text to forward to: all but the cluster DNS address itself
/// (which would loop).
pub fn upstreams_from_resolv_conf(text: &str, cluster_dns: Ipv4Addr) -> Vec<SocketAddr> {
    crate::network::resolv::ResolvConf::parse(text)
        .nameservers
        .iter()
        .filter_map(|n| n.parse::<IpAddr>().ok())
        .filter(|ip| *ip != IpAddr::V4(cluster_dns))
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Puts `ip/32` on the loopback interface of `netns` (idempotent).
///
/// # Errors
/// When `ip` fails.
pub async fn add_listen_address(netns: &Netns, ip: Ipv4Addr) -> Result<()> {
    netns
        .run("ip", &["addr", "replace", &format!("{ip}/32"), "dev", "lo"])
        .await
        .map(drop)
}

/// A running cluster DNS server.
#[derive(Debug)]
pub struct ClusterDns {
    index: SharedIndex,
}

impl ClusterDns {
    /// The index the server answers from (for tests and the benchmark).
    pub fn index(&self) -> Arc<DnsIndex> {
        match self.index.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

fn forwarder(upstreams: &[SocketAddr]) -> Result<Option<Catalog>> {
    if upstreams.is_empty() {
        return Ok(None);
    }
    let name_servers = upstreams
        .iter()
        .map(|addr| {
            let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
            for c in &mut ns.connections {
                c.port = addr.port();
            }
            ns
        })
        .collect();
    let config = ForwardConfig {
        name_servers,
        options: None,
    };
    let zone = ForwardZoneHandler::builder_tokio(config)
        .with_origin(Name::root())
        .build()
        .map_err(|e| Error::Config(format!("DNS forwarder: {e}")))?;
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::from(Name::root()), vec![Arc::new(zone)]);
    Ok(Some(catalog))
}

/// Binds the server's sockets and serves until `cancel`, rebuilding the records whenever the model
/// changes. Returns once the sockets are bound; the server runs on spawned tasks owned by the
/// returned [`tokio::task::JoinHandle`].
///
/// # Errors
/// When the sockets cannot be bound (the address is not on the node, the port is taken) or the
/// forwarder cannot be built.
pub async fn serve(
    config: DnsConfig,
    model: ClusterModel,
    cancel: CancellationToken,
) -> Result<(ClusterDns, tokio::task::JoinHandle<()>)> {
    let addr = SocketAddr::from((config.listen, config.port));
    let udp = exec::udp_socket(&config.netns, addr)?;
    let tcp = exec::tcp_listener(&config.netns, addr)?;
    let sock_err = |what: &str| {
        let what = format!("{what} {addr}");
        move |source| Error::Socket { what, source }
    };
    let udp = tokio::net::UdpSocket::from_std(udp).map_err(sock_err("udp"))?;
    let tcp = tokio::net::TcpListener::from_std(tcp).map_err(sock_err("tcp"))?;
    let network = config.network.clone();
    let index: SharedIndex = Arc::new(RwLock::new(Arc::new(DnsIndex::build(
        &model.snapshot(),
        &network,
    ))));
    let handler = ClusterDnsHandler::new(index.clone(), forwarder(&config.upstreams)?);
    let mut server = Server::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 64);
    let shared = index.clone();
    let task = tokio::spawn(async move {
        let mut rx = model.subscribe();
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                changed = rx.changed() => {
                    if changed.is_err() { break }
                    let state = rx.borrow_and_update().clone();
                    let fresh = Arc::new(DnsIndex::build(&state, &network));
                    match shared.write() {
                        Ok(mut g) => *g = fresh,
                        Err(p) => *p.into_inner() = fresh,
                    }
                }
            }
        }
        if let Err(e) = server.shutdown_gracefully().await {
            tracing::warn!(error = %e, "cluster DNS: shutdown");
        }
    });
    tracing::info!(%addr, "cluster DNS serving");
    Ok((ClusterDns { index }, task))
}

#[cfg(test)]
mod tests;
