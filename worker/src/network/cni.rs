//! The node's CNI configuration: a `bridge` network on `cni0` with `host-local` IPAM over the node's
//! pod CIDR, chained with `portmap` for hostPorts, written where containerd's CRI plugin reads it
//! (`[plugins."io.containerd.grpc.v1.cri".cni] conf_dir`).
//!
//! containerd sets up each pod's loopback itself (go-cni runs the `loopback` plugin on `lo` before
//! this network), so the chain has no `loopback` entry; [`loopback_conf`] is the configuration to run
//! it with where no containerd does that (the network-namespace emulation in `network::lab`).
//!
//! Masquerading is not the bridge plugin's job here (`ipMasq: false`): the node masquerades only
//! traffic leaving the cluster CIDR ([`super::nat`]), so pod-to-pod traffic across nodes keeps its
//! source address.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde_json::{Value, json};

use super::error::{Error, Result};

/// The CNI spec version the configuration declares (containerd 1.6 and plugins 1.1 speak it).
pub const CNI_VERSION: &str = "1.0.0";

/// The network's name (host-local keeps its leases under `DATA_DIR/<name>`).
pub const NETWORK_NAME: &str = "daas";

/// The file name of the configuration in the conf dir (containerd takes the first file by name).
pub const CONFLIST_FILE: &str = "10-daas.conflist";

/// Everything the node's CNI configuration depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniConfig {
    /// The node's pod CIDR (`spec.podCIDR`).
    pub pod_cidr: Ipv4Net,
    /// The bridge's name (default `cni0`).
    pub bridge: String,
    /// The pods' MTU: the node interface's MTU, less 50 bytes for VXLAN's encapsulation.
    pub mtu: u32,
    /// Where host-local keeps its leases. One per worker: workers sharing a machine (`daas dev
    /// --workers N`) must not share it.
    pub ipam_data_dir: PathBuf,
}

impl CniConfig {
    /// The gateway address pods use: the first host address of the pod CIDR, held by the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        nth_host(self.pod_cidr, 1)
    }

    /// The conflist document.
    pub fn conflist(&self) -> Value {
        json!({
            "cniVersion": CNI_VERSION,
            "name": NETWORK_NAME,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    "isDefaultGateway": true,
                    "forceAddress": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "mtu": self.mtu,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{ "subnet": self.pod_cidr.to_string(), "gateway": self.gateway().to_string() }]],
                        "dataDir": self.ipam_data_dir,
                    }
                },
                {
                    "type": "portmap",
                    "capabilities": { "portMappings": true },
                    "snat": true
                }
            ]
        })
    }

    /// Writes the conflist into `conf_dir` (atomically: a temporary file renamed over it) and
    /// returns its path.
    ///
    /// # Errors
    /// [`Error::File`] when the directory or the file cannot be written.
    pub fn write(&self, conf_dir: &Path) -> Result<PathBuf> {
        let file_err = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::File { path, source }
        };
        std::fs::create_dir_all(conf_dir).map_err(file_err(conf_dir))?;
        std::fs::create_dir_all(&self.ipam_data_dir).map_err(file_err(&self.ipam_data_dir))?;
        let path = conf_dir.join(CONFLIST_FILE);
        let tmp = conf_dir.join(format!(".{CONFLIST_FILE}.tmp"));
        let text = serde_json::to_vec_pretty(&self.conflist())
            .map_err(|e| Error::Config(format!("CNI conflist: {e}")))?;
        std::fs::write(&tmp, text).map_err(file_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(file_err(&path))?;
        Ok(path)
    }
}

/// The configuration of the `loopback` plugin, for runtimes that do not bring `lo` up themselves.
pub fn loopback_conf() -> Value {
    json!({ "cniVersion": CNI_VERSION, "name": "cni-loopback", "type": "loopback" })
}

/// The `n`th address of `net` (0 is the network address). Saturates at the broadcast address.
pub fn nth_host(net: Ipv4Net, n: u32) -> Ipv4Addr {
    let base = u32::from(net.network());
    let last = u32::from(net.broadcast());
    Ipv4Addr::from(base.saturating_add(n).min(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_is_bridge_host_local_and_portmap_for_the_pod_cidr() {
        let cfg = CniConfig {
            pod_cidr: "10.42.3.0/24".parse().unwrap(),
            bridge: "cni0".into(),
            mtu: 1450,
            ipam_data_dir: "/var/lib/daas/w1/ipam".into(),
        };
        let doc = cfg.conflist();
        assert_eq!(doc["plugins"][0]["type"], "bridge");
        assert_eq!(doc["plugins"][0]["hairpinMode"], true);
        assert_eq!(doc["plugins"][0]["ipMasq"], false);
        assert_eq!(doc["plugins"][0]["mtu"], 1450);
        let ipam = &doc["plugins"][0]["ipam"];
        assert_eq!(ipam["type"], "host-local");
        assert_eq!(ipam["ranges"][0][0]["subnet"], "10.42.3.0/24");
        assert_eq!(ipam["ranges"][0][0]["gateway"], "10.42.3.1");
        assert_eq!(ipam["dataDir"], "/var/lib/daas/w1/ipam");
        assert_eq!(doc["plugins"][1]["type"], "portmap");
        assert_eq!(doc["plugins"][1]["capabilities"]["portMappings"], true);
    }

    #[test]
    fn nth_host_counts_from_the_network_address() {
        let net: Ipv4Net = "10.43.0.0/16".parse().unwrap();
        assert_eq!(nth_host(net, 10), Ipv4Addr::new(10, 43, 0, 10));
        assert_eq!(nth_host(net, u32::MAX), Ipv4Addr::new(10, 43, 255, 255));
    }
}
