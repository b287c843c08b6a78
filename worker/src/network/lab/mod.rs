//! Nodes and pods emulated with network namespaces, for the network tests and `daas bench network`
//! on a machine without containerd: a "LAN" namespace holding a bridge, one namespace per node
//! attached to it by a veth pair (like separate machines on one switch), and one namespace per pod
//! attached to its node through the node's real CNI configuration, run with the real plugins from
//! `/usr/lib/cni` exactly as containerd would run them.
//!
//! Every namespace of a lab is named `dlab-PID-LABEL-...`; dropping the [`Lab`] deletes them (and
//! with them every interface, route and nftables table inside), and [`Lab::new`] first deletes what
//! labs of processes that no longer exist left behind (a test killed with SIGKILL).
//!
//! Needs root and network namespaces: [`Lab::check_available`] says why not.

pub mod cni_exec;

pub use super::exec::{in_netns, tcp_connect, tcp_listener, udp_socket};

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeSpec, NodeStatus};
use serde_json::Value;

use super::cni::{CniConfig, loopback_conf};
use super::error::{Error, Result};
use super::exec::Netns;

/// The LAN's prefix: the bridge holds `.1`, node `i` holds `.(10+i)`.
pub const LAN_PREFIX: [u8; 3] = [10, 199, 0];

const NAME_PREFIX: &str = "dlab-";

/// An emulated node: a namespace on the LAN.
#[derive(Debug, Clone)]
pub struct LabNode {
    /// The Node's name.
    pub name: String,
    /// Its namespace.
    pub netns: Netns,
    /// Its address on the LAN (interface `eth0`).
    pub ip: Ipv4Addr,
    /// Its pod CIDR (`10.42.INDEX.0/24`).
    pub pod_cidr: Ipv4Net,
    /// A directory of its own (CNI configuration, IPAM leases).
    pub dir: PathBuf,
}

impl LabNode {
    /// The Node object the API would hold for it (name, `spec.podCIDR`, InternalIP).
    pub fn node_object(&self) -> Node {
        let mut node = Node::default();
        node.metadata.name = Some(self.name.clone());
        node.spec = Some(NodeSpec {
            pod_cidr: Some(self.pod_cidr.to_string()),
            pod_cidrs: Some(vec![self.pod_cidr.to_string()]),
            ..Default::default()
        });
        node.status = Some(NodeStatus {
            addresses: Some(vec![NodeAddress {
                type_: "InternalIP".into(),
                address: self.ip.to_string(),
            }]),
            ..Default::default()
        });
        node
    }

    /// Where its CNI configuration goes.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.join("cni")
    }

    /// Where host-local keeps its leases.
    pub fn ipam_dir(&self) -> PathBuf {
        self.dir.join("ipam")
    }
}

/// An emulated pod: a namespace attached to its node by the CNI plugins.
#[derive(Debug, Clone)]
pub struct LabPod {
    /// The pod's name.
    pub name: String,
    /// Its namespace.
    pub netns: Netns,
    /// The address IPAM gave it.
    pub ip: Ipv4Addr,
    /// Its node's name.
    pub node: String,
    node_netns: Netns,
    conflist: Value,
    result: Value,
}

/// A set of namespaces that disappears with it.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    lan: Netns,
    namespaces: Vec<String>,
    dir: PathBuf,
}

impl Lab {
    /// Whether this machine can run labs (root, `ip netns`, `nft`, the CNI plugins); the reason when
    /// not. Probed once per process.
    pub fn check_available() -> std::result::Result<(), String> {
        static PROBED: std::sync::OnceLock<std::result::Result<(), String>> =
            std::sync::OnceLock::new();
        PROBED.get_or_init(Self::probe).clone()
    }

    fn probe() -> std::result::Result<(), String> {
        remove_leftovers();
        for tool in ["ip", "bridge", "nft", "sysctl"] {
            let found = std::env::var_os("PATH")
                .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
            if !found {
                return Err(format!(
                    "`{tool}` is not installed (scripts/setup installs it)"
                ));
            }
        }
        for plugin in ["bridge", "host-local", "loopback", "portmap"] {
            let path = Path::new(cni_exec::CNI_BIN_DIR).join(plugin);
            if !path.is_file() {
                return Err(format!(
                    "no CNI plugin {} (Debian's containernetworking-plugins)",
                    path.display()
                ));
            }
        }
        let probe = format!("{NAME_PREFIX}{}-probe", std::process::id());
        let out = std::process::Command::new("ip")
            .args(["netns", "add", &probe])
            .output()
            .map_err(|e| format!("cannot run `ip`: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cannot create a network namespace (needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &probe])
            .output();
        Ok(())
    }

    /// A new lab labelled `label` (letters and digits, short), with its LAN namespace and bridge.
    ///
    /// # Errors
    /// When a namespace or interface cannot be created.
    pub async fn new(label: &str) -> Result<Self> {
        remove_leftovers();
        let prefix = format!("{NAME_PREFIX}{}-{label}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir).map_err(|source| Error::File {
            path: dir.clone(),
            source,
        })?;
        let mut lab = Self {
            lan: Netns::named(format!("{prefix}-lan")),
            prefix,
            namespaces: Vec::new(),
            dir,
        };
        let lan = lab.add_netns("lan").await?;
        let [a, b, c] = LAN_PREFIX;
        let gw = format!("{a}.{b}.{c}.1/24");
        lan.run("ip", &["link", "add", "br0", "type", "bridge"])
            .await?;
        lan.run("ip", &["addr", "add", &gw, "dev", "br0"]).await?;
        lan.run("ip", &["link", "set", "br0", "up"]).await?;
        Ok(lab)
    }

    /// The LAN namespace (it holds the bridge and `10.199.0.1`: "outside" the cluster).
    pub fn lan(&self) -> &Netns {
        &self.lan
    }

    /// The LAN's own address (a machine outside the cluster).
    pub fn lan_ip(&self) -> Ipv4Addr {
        let [a, b, c] = LAN_PREFIX;
        Ipv4Addr::new(a, b, c, 1)
    }

    async fn add_netns(&mut self, suffix: &str) -> Result<Netns> {
        let name = format!("{}-{suffix}", self.prefix);
        let _ = Netns::Current.run("ip", &["netns", "del", &name]).await;
        Netns::Current.run("ip", &["netns", "add", &name]).await?;
        self.namespaces.push(name.clone());
        let ns = Netns::named(name);
        ns.run("ip", &["link", "set", "lo", "up"]).await?;
        Ok(ns)
    }

    /// Adds node number `index` (1..=200): its namespace, `eth0` with `10.199.0.(10+index)/24` on the
    /// LAN, a default route via the LAN, pod CIDR `10.42.INDEX.0/24`.
    ///
    /// # Errors
    /// When a namespace or interface cannot be created.
    pub async fn add_node(&mut self, name: &str, index: u8) -> Result<LabNode> {
        let netns = self.add_netns(name).await?;
        let [a, b, c] = LAN_PREFIX;
        let ip = Ipv4Addr::new(a, b, c, index.saturating_add(10));
        let lan_if = format!("n{index}");
        let lan_name = self.lan.name().unwrap_or_default().to_owned();
        let node_name = netns.name().unwrap_or_default().to_owned();
        self.lan
            .run(
                "ip",
                &[
                    "link", "add", &lan_if, "type", "veth", "peer", "name", "eth0", "netns",
                    &node_name,
                ],
            )
            .await?;
        let _ = lan_name;
        self.lan
            .run("ip", &["link", "set", &lan_if, "master", "br0", "up"])
            .await?;
        netns
            .run("ip", &["addr", "add", &format!("{ip}/24"), "dev", "eth0"])
            .await?;
        netns.run("ip", &["link", "set", "eth0", "up"]).await?;
        netns
            .run(
                "ip",
                &["route", "add", "default", "via", &self.lan_ip().to_string()],
            )
            .await?;
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir).map_err(|source| Error::File {
            path: dir.clone(),
            source,
        })?;
        Ok(LabNode {
            name: name.to_owned(),
            netns,
            ip,
            pod_cidr: Ipv4Net::new(Ipv4Addr::new(10, 42, index, 0), 24)
                .map_err(|e| Error::Config(e.to_string()))?,
            dir,
        })
    }

    /// Adds a pod on `node`: its namespace, `lo` through the `loopback` plugin and `eth0` through
    /// `cni`'s configuration list, both run in the node's namespace as containerd runs them.
    ///
    /// # Errors
    /// When a namespace cannot be created or a plugin fails.
    pub async fn add_pod(&mut self, node: &LabNode, cni: &CniConfig, name: &str) -> Result<LabPod> {
        let netns = self.add_netns(&format!("{}-{name}", node.name)).await?;
        let path = PathBuf::from("/run/netns").join(netns.name().unwrap_or_default());
        let container_id = netns.name().unwrap_or_default().to_owned();
        let lo = cni_exec::Attachment {
            container_id: &container_id,
            netns_path: &path,
            ifname: "lo",
            runtime_config: None,
        };
        cni_exec::add(&node.netns, &cni_exec::single(&loopback_conf()), &lo).await?;
        let conflist = cni.conflist();
        let eth0 = cni_exec::Attachment {
            ifname: "eth0",
            ..lo
        };
        let result = cni_exec::add(&node.netns, &conflist, &eth0).await?;
        let ip = cni_exec::result_ipv4(&result).ok_or_else(|| {
            Error::Config(format!("CNI result without an IPv4 address: {result}"))
        })?;
        Ok(LabPod {
            name: name.to_owned(),
            netns,
            ip,
            node: node.name.clone(),
            node_netns: node.netns.clone(),
            conflist,
            result,
        })
    }

    /// Removes a pod as the runtime would: CNI `DEL` (releasing its address), then its namespace.
    ///
    /// # Errors
    /// When a plugin fails or the namespace cannot be deleted.
    pub async fn remove_pod(&mut self, pod: &LabPod) -> Result<()> {
        let name = pod.netns.name().unwrap_or_default().to_owned();
        let path = PathBuf::from("/run/netns").join(&name);
        let att = cni_exec::Attachment {
            container_id: &name,
            netns_path: &path,
            ifname: "eth0",
            runtime_config: None,
        };
        cni_exec::del(&pod.node_netns, &pod.conflist, &att, &pod.result).await?;
        Netns::Current.run("ip", &["netns", "del", &name]).await?;
        self.namespaces.retain(|n| *n != name);
        Ok(())
    }

    /// Deletes every namespace of the lab and its directory (also done on drop).
    pub fn cleanup(&mut self) {
        for name in self.namespaces.drain(..).rev() {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &name])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Deletes the namespaces and directories of labs whose process is gone.
fn remove_leftovers() {
    let dead = |name: &str| {
        name.strip_prefix(NAME_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    };
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if dead(&name) {
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del", &name])
                    .output();
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if dead(&name) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}
