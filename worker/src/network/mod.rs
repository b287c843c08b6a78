//! The pod network of a worker, and what the rest of the worker's networking shares.
//!
//! - [`agent`]: all of the worker's networking started in one call ([`NodeNetworking`]).
//! - [`wiring`]: how `daas-worker` starts it: which value comes from where.
//! - [`model`]: the in-memory cluster model the API watch feeds (the seam to the watch).
//! - [`feed`]: fills the model from the API server (lists every period, for now).
//! - [`cni`]: the CNI configuration containerd uses for pods (the seam to the runtime).
//! - [`routes`]: routes to the other nodes' pod CIDRs, host-gw or VXLAN.
//! - [`nat`]: masquerade for traffic leaving the cluster CIDR.
//! - [`node`]: one node's pod network set up and kept in step with the Nodes.
//! - [`resolv`]: pods' `resolv.conf` per `dnsPolicy` (the seam to the runtime).
//! - [`devnet`]: `daas dev --workers N`'s topology: one network namespace per worker on a bridge.
//! - [`lab`]: nodes and pods emulated with network namespaces (tests, `daas bench network`).
//! - [`exec`]: running `ip`/`bridge`/`nft` here or in a named namespace.
//!
//! The service proxy ([`crate::proxy`]), cluster DNS ([`crate::dns`]) and NetworkPolicy
//! ([`crate::netpol`]) read the same model. Addresses are IPv4 only.

pub mod agent;
pub mod cni;
pub mod devnet;
pub mod error;
pub mod exec;
pub mod feed;
pub mod lab;
pub mod model;
pub mod nat;
pub mod node;
pub mod resolv;
pub mod routes;
pub mod wiring;

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

pub use agent::{NodeNetworkConfig, NodeNetworking};
pub use error::{Error, Result};
pub use exec::Netns;
pub use node::{PodNetwork, PodNetworkConfig};
pub use routes::Backend;

/// The cluster-wide network settings (k3s's defaults unless configured otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNetwork {
    /// Where pods get addresses; each node gets a /24 of it (`10.42.0.0/16`).
    pub cluster_cidr: Ipv4Net,
    /// Where Services get ClusterIPs (`10.43.0.0/16`).
    pub service_cidr: Ipv4Net,
    /// The DNS domain of the cluster (`cluster.local`).
    pub cluster_domain: String,
}

impl Default for ClusterNetwork {
    fn default() -> Self {
        Self {
            cluster_cidr: Ipv4Net::new_assert(Ipv4Addr::new(10, 42, 0, 0), 16),
            service_cidr: Ipv4Net::new_assert(Ipv4Addr::new(10, 43, 0, 0), 16),
            cluster_domain: "cluster.local".into(),
        }
    }
}

impl ClusterNetwork {
    /// The cluster DNS address: the tenth address of the service CIDR (`10.43.0.10`), as kubeadm
    /// and k3s choose it for the `kube-system/kube-dns` Service.
    pub fn cluster_dns(&self) -> Ipv4Addr {
        cni::nth_host(self.service_cidr, 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k3s_defaults() {
        let net = ClusterNetwork::default();
        assert_eq!(net.cluster_cidr.to_string(), "10.42.0.0/16");
        assert_eq!(net.service_cidr.to_string(), "10.43.0.0/16");
        assert_eq!(net.cluster_dns(), Ipv4Addr::new(10, 43, 0, 10));
    }
}
