//! The worker's basic CNI configuration: a local bridge with host-local addresses. Pod
//! networking across nodes is the pod network's job (another issue); this gives each pod an
//! address on a bridge of its node.

use std::net::Ipv4Addr;

/// A bridge network for the pods of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeNetwork {
    /// The Linux bridge's name (at most 15 bytes).
    pub bridge: String,
    /// The pods' subnet's address (a /24 here: `10.88.0.0`).
    pub subnet: Ipv4Addr,
    /// The prefix length.
    pub prefix: u8,
}

impl Default for BridgeNetwork {
    /// `daas0`, 10.88.0.0/24.
    fn default() -> Self {
        Self {
            bridge: "daas0".to_owned(),
            subnet: Ipv4Addr::new(10, 88, 0, 0),
            prefix: 24,
        }
    }
}

impl BridgeNetwork {
    /// The conflist: bridge (gateway on the bridge, no masquerade, hairpin) with host-local
    /// addresses kept under `ipam_dir`, portmap and loopback.
    #[must_use]
    pub fn conflist(&self, ipam_dir: &std::path::Path) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "k3s-daas",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": ipam_dir,
                        "ranges": [[{ "subnet": format!("{}/{}", self.subnet, self.prefix) }]],
                        "routes": [{ "dst": "0.0.0.0/0" }]
                    }
                },
                { "type": "portmap", "capabilities": { "portMappings": true } },
                { "type": "loopback" }
            ]
        })
    }
}
