//! Routes from this node to the other nodes' pod CIDRs, as flannel's two common backends do:
//!
//! - [`Backend::HostGw`]: a direct route `POD_CIDR via NODE_IP` per peer. Needs the nodes on one L2
//!   network (each node's address reachable without a router), and is the fastest.
//! - [`Backend::Vxlan`]: the kernel's `vxlan` device `daas.1` (VNI 1, UDP port 8472, flannel's
//!   defaults) holding `POD_CIDR.0/32`; per peer a route `POD_CIDR via POD_CIDR.0 dev daas.1 onlink`,
//!   a permanent neighbour entry giving the peer's VTEP MAC, and a forwarding-database entry sending
//!   that MAC to the peer's node address. Works wherever nodes reach each other over UDP.
//!
//! Each node's VTEP MAC is derived from its node address ([`vtep_mac`]), so peers know it without
//! an annotation. Routes carry protocol number [`ROUTE_PROTO`]: a sync deletes routes of that
//! protocol it did not ask for (a node that left, a backend switched), and neighbour and FDB
//! entries on `daas.1` likewise, so a restarted worker converges from whatever it left behind.
//!
//! Everything goes through `ip` and `bridge` (iproute2): idempotent `replace` commands batched
//! through `-batch`, JSON (`-j`) to read back state. Netlink from Rust would save a fork per sync,
//! but routes change only when nodes join or leave, `nft` is a command anyway, and the same commands
//! work unchanged inside a named namespace for tests and `daas dev`.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use serde::Deserialize;

use super::error::{Error, Result};
use super::exec::Netns;
use super::model::ClusterState;

/// The VXLAN device's name (flannel's is `flannel.1`).
pub const VXLAN_DEVICE: &str = "daas.1";
/// The VXLAN network identifier (flannel's default).
pub const VXLAN_VNI: u32 = 1;
/// The VXLAN UDP port (flannel's and the Linux default, not IANA's 4789).
pub const VXLAN_PORT: u16 = 8472;
/// Bytes VXLAN adds to each packet (outer IPv4 + UDP + VXLAN + inner Ethernet headers).
pub const VXLAN_OVERHEAD: u32 = 50;
/// The routing protocol number our routes carry (`ip route ... proto 213`).
pub const ROUTE_PROTO: &str = "213";

/// How pod traffic reaches other nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Direct routes via the peer node's address (nodes share an L2 network).
    HostGw,
    /// The kernel's VXLAN device (nodes reach each other over UDP 8472).
    Vxlan,
}

impl FromStr for Backend {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "host-gw" => Ok(Self::HostGw),
            "vxlan" => Ok(Self::Vxlan),
            other => Err(Error::Config(format!(
                "backend `{other}`: expected `host-gw` or `vxlan`"
            ))),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::HostGw => "host-gw",
            Self::Vxlan => "vxlan",
        })
    }
}

/// Another node, as far as routing to its pods goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PeerNode {
    /// The Node's name.
    pub name: String,
    /// Its address (`status.addresses` InternalIP, else ExternalIP).
    pub ip: Ipv4Addr,
    /// Its pod CIDR (`spec.podCIDR`).
    pub pod_cidr: Ipv4Net,
}

impl PeerNode {
    /// The peer of a Node object; `None` until it has an address and a pod CIDR.
    pub fn from_node(node: &Node) -> Option<Self> {
        let name = node.metadata.name.clone()?;
        let pod_cidr = node.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok()?;
        let addresses = node.status.as_ref()?.addresses.as_ref()?;
        let find = |kind: &str| {
            addresses
                .iter()
                .filter(|a| a.type_ == kind)
                .find_map(|a| a.address.parse::<Ipv4Addr>().ok())
        };
        let ip = find("InternalIP").or_else(|| find("ExternalIP"))?;
        Some(Self { name, ip, pod_cidr })
    }

    /// Every node of `state` but `self_name` that is routable.
    pub fn all_except(state: &ClusterState, self_name: &str) -> Vec<Self> {
        state
            .nodes
            .values()
            .filter(|n| n.metadata.name.as_deref() != Some(self_name))
            .filter_map(|n| Self::from_node(n))
            .collect()
    }
}

/// The VTEP MAC of the node at `ip`: locally administered, unicast, `0e:d5:` and the address.
pub fn vtep_mac(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("0e:d5:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// The node's routes to its peers' pods.
#[derive(Debug, Clone)]
pub struct PodRoutes {
    netns: Netns,
    backend: Backend,
    node_ip: Ipv4Addr,
    interface: String,
    mtu: u32,
    pod_cidr: Ipv4Net,
}

#[derive(Debug, Deserialize)]
struct RouteEntry {
    dst: String,
}

#[derive(Debug, Deserialize)]
struct NeighEntry {
    dst: String,
}

#[derive(Debug, Deserialize)]
struct FdbEntry {
    mac: String,
    dst: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LinkEntry {
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    mtu: u32,
    #[serde(default)]
    linkinfo: Option<LinkInfo>,
}

#[derive(Debug, Deserialize)]
struct LinkInfo {
    #[serde(default)]
    info_data: Option<VxlanData>,
}

#[derive(Debug, Deserialize)]
struct VxlanData {
    id: Option<u32>,
    local: Option<String>,
    port: Option<u16>,
}

impl PodRoutes {
    /// Routes for the node at `node_ip` (on `interface`, whose MTU is `mtu`) with pod CIDR `pod_cidr`.
    pub fn new(
        netns: Netns,
        backend: Backend,
        node_ip: Ipv4Addr,
        interface: impl Into<String>,
        mtu: u32,
        pod_cidr: Ipv4Net,
    ) -> Self {
        Self {
            netns,
            backend,
            node_ip,
            interface: interface.into(),
            mtu,
            pod_cidr,
        }
    }

    /// The pods' MTU under this backend.
    pub fn pod_mtu(&self) -> u32 {
        match self.backend {
            Backend::HostGw => self.mtu,
            Backend::Vxlan => self.mtu.saturating_sub(VXLAN_OVERHEAD),
        }
    }

    /// Creates (or re-creates, if its parameters changed) the VXLAN device for the VXLAN backend;
    /// removes it under host-gw.
    ///
    /// # Errors
    /// When an `ip` command fails.
    pub async fn ensure_device(&self) -> Result<()> {
        let existing: Option<Vec<LinkEntry>> = self
            .netns
            .run_json("ip", &["-j", "-d", "link", "show", "dev", VXLAN_DEVICE])
            .await
            .ok();
        let existing = existing.and_then(|v| v.into_iter().next());
        if self.backend == Backend::HostGw {
            if existing.is_some() {
                self.netns
                    .run("ip", &["link", "del", "dev", VXLAN_DEVICE])
                    .await?;
            }
            return Ok(());
        }
        let mac = vtep_mac(self.node_ip);
        let mtu = self.pod_mtu().to_string();
        let local = self.node_ip.to_string();
        let matches = existing.as_ref().is_some_and(|link| {
            let data = link.linkinfo.as_ref().and_then(|i| i.info_data.as_ref());
            data.is_some_and(|d| {
                d.id == Some(VXLAN_VNI)
                    && d.local.as_deref() == Some(local.as_str())
                    && d.port == Some(VXLAN_PORT)
            }) && link.address.as_deref() == Some(mac.as_str())
                && link.mtu == self.pod_mtu()
        });
        if !matches {
            if existing.is_some() {
                self.netns
                    .run("ip", &["link", "del", "dev", VXLAN_DEVICE])
                    .await?;
            }
            let vni = VXLAN_VNI.to_string();
            let port = VXLAN_PORT.to_string();
            self.netns
                .run(
                    "ip",
                    &[
                        "link",
                        "add",
                        VXLAN_DEVICE,
                        "address",
                        &mac,
                        "mtu",
                        &mtu,
                        "type",
                        "vxlan",
                        "id",
                        &vni,
                        "local",
                        &local,
                        "dev",
                        &self.interface,
                        "dstport",
                        &port,
                        "nolearning",
                    ],
                )
                .await?;
        }
        let addr = format!("{}/32", self.pod_cidr.network());
        self.netns
            .run("ip", &["addr", "replace", &addr, "dev", VXLAN_DEVICE])
            .await?;
        self.netns
            .run("ip", &["link", "set", "dev", VXLAN_DEVICE, "up"])
            .await?;
        Ok(())
    }

    /// Makes the routes (and under VXLAN the neighbour and FDB entries) exactly those to `peers`.
    ///
    /// # Errors
    /// When an `ip` or `bridge` command fails.
    pub async fn sync(&self, peers: &[PeerNode]) -> Result<()> {
        let peers: Vec<&PeerNode> = peers
            .iter()
            .filter(|p| p.ip != self.node_ip && p.pod_cidr != self.pod_cidr)
            .collect();
        let mut ip_batch = String::new();
        let mut fdb_batch = String::new();
        for p in &peers {
            match self.backend {
                Backend::HostGw => ip_batch.push_str(&format!(
                    "route replace {} via {} dev {} proto {ROUTE_PROTO}\n",
                    p.pod_cidr, p.ip, self.interface
                )),
                Backend::Vxlan => {
                    let gw = p.pod_cidr.network();
                    let mac = vtep_mac(p.ip);
                    ip_batch.push_str(&format!(
                        "neigh replace {gw} lladdr {mac} dev {VXLAN_DEVICE} nud permanent\n\
                         route replace {} via {gw} dev {VXLAN_DEVICE} onlink proto {ROUTE_PROTO}\n",
                        p.pod_cidr
                    ));
                    fdb_batch.push_str(&format!(
                        "fdb replace {mac} dev {VXLAN_DEVICE} dst {} self permanent\n",
                        p.ip
                    ));
                }
            }
        }
        // Neighbours before routes (the batch's order): the route's gateway resolves at once.
        if !fdb_batch.is_empty() {
            self.netns
                .run_with_stdin("bridge", &["-batch", "-"], Some(fdb_batch.as_bytes()))
                .await?;
        }
        if !ip_batch.is_empty() {
            self.netns
                .run_with_stdin("ip", &["-batch", "-"], Some(ip_batch.as_bytes()))
                .await?;
        }
        self.remove_stale(&peers).await
    }

    async fn remove_stale(&self, peers: &[&PeerNode]) -> Result<()> {
        let wanted: BTreeSet<String> = peers.iter().map(|p| p.pod_cidr.to_string()).collect();
        let routes: Option<Vec<RouteEntry>> = self
            .netns
            .run_json("ip", &["-j", "route", "show", "proto", ROUTE_PROTO])
            .await?;
        let mut batch = String::new();
        for r in routes.unwrap_or_default() {
            if !wanted.contains(&r.dst) {
                batch.push_str(&format!("route del {} proto {ROUTE_PROTO}\n", r.dst));
            }
        }
        if self.backend == Backend::Vxlan {
            let gateways: BTreeSet<String> = peers
                .iter()
                .map(|p| p.pod_cidr.network().to_string())
                .collect();
            let neigh: Option<Vec<NeighEntry>> = self
                .netns
                .run_json("ip", &["-j", "neigh", "show", "dev", VXLAN_DEVICE])
                .await?;
            for n in neigh.unwrap_or_default() {
                if !gateways.contains(&n.dst) {
                    batch.push_str(&format!("neigh del {} dev {VXLAN_DEVICE}\n", n.dst));
                }
            }
            let fdb_wanted: BTreeSet<(String, String)> = peers
                .iter()
                .map(|p| (vtep_mac(p.ip), p.ip.to_string()))
                .collect();
            let fdb: Option<Vec<FdbEntry>> = self
                .netns
                .run_json("bridge", &["-j", "fdb", "show", "dev", VXLAN_DEVICE])
                .await?;
            let mut fdb_batch = String::new();
            for e in fdb.unwrap_or_default() {
                let Some(dst) = e.dst else { continue };
                if !fdb_wanted.contains(&(e.mac.clone(), dst.clone())) {
                    fdb_batch.push_str(&format!(
                        "fdb del {} dev {VXLAN_DEVICE} dst {dst} self\n",
                        e.mac
                    ));
                }
            }
            if !fdb_batch.is_empty() {
                self.netns
                    .run_with_stdin("bridge", &["-batch", "-"], Some(fdb_batch.as_bytes()))
                    .await?;
            }
        }
        if !batch.is_empty() {
            self.netns
                .run_with_stdin("ip", &["-batch", "-"], Some(batch.as_bytes()))
                .await?;
        }
        Ok(())
    }
}

/// The interface holding `ip` in `netns`, and its MTU.
///
/// # Errors
/// When `ip` fails, or [`Error::Config`] when no interface holds the address.
pub async fn interface_of(netns: &Netns, ip: Ipv4Addr) -> Result<(String, u32)> {
    #[derive(Deserialize)]
    struct Addr {
        ifname: String,
        mtu: u32,
        #[serde(default)]
        addr_info: Vec<AddrInfo>,
    }
    #[derive(Deserialize)]
    struct AddrInfo {
        local: Option<String>,
    }
    let links: Option<Vec<Addr>> = netns.run_json("ip", &["-j", "-4", "addr", "show"]).await?;
    let want = ip.to_string();
    links
        .unwrap_or_default()
        .into_iter()
        .find(|l| {
            l.addr_info
                .iter()
                .any(|a| a.local.as_deref() == Some(&want))
        })
        .map(|l| (l.ifname, l.mtu))
        .ok_or_else(|| Error::Config(format!("no interface holds the node address {ip}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeSpec, NodeStatus};

    #[test]
    fn vtep_macs_are_local_unicast_and_follow_the_address() {
        assert_eq!(vtep_mac(Ipv4Addr::new(10, 199, 0, 11)), "0e:d5:0a:c7:00:0b");
        // 0x0e: locally administered (bit 1) and unicast (bit 0 clear).
        assert_eq!(0x0e & 0b11, 0b10);
    }

    #[test]
    fn a_peer_needs_an_address_and_a_pod_cidr() {
        let mut node = Node::default();
        node.metadata.name = Some("w2".into());
        assert_eq!(PeerNode::from_node(&node), None);
        node.spec = Some(NodeSpec {
            pod_cidr: Some("10.42.2.0/24".into()),
            ..Default::default()
        });
        node.status = Some(NodeStatus {
            addresses: Some(vec![
                NodeAddress {
                    type_: "Hostname".into(),
                    address: "w2".into(),
                },
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: "10.199.0.12".into(),
                },
            ]),
            ..Default::default()
        });
        let peer = PeerNode::from_node(&node).unwrap();
        assert_eq!(peer.ip, Ipv4Addr::new(10, 199, 0, 12));
        assert_eq!(peer.pod_cidr.to_string(), "10.42.2.0/24");
    }

    #[test]
    fn backends_parse_from_their_flag_names() {
        assert_eq!("host-gw".parse::<Backend>().unwrap(), Backend::HostGw);
        assert_eq!("vxlan".parse::<Backend>().unwrap(), Backend::Vxlan);
        assert!("udp".parse::<Backend>().is_err());
    }
}
