//! `daas dev --workers N`'s network: each worker in a network namespace of its own, with its own
//! address on a dev bridge, like separate machines on one switch, so that traffic between workers
//! really crosses from one node to another (routes, VXLAN, NodePorts, policies all apply).
//!
//! | what | default ([`DevTopology::slot`] `n` for others) |
//! |---|---|
//! | bridge (host namespace) | `daas-dev0`, `10.199.0.1/24` |
//! | worker `i` (1-based) | namespace `daas-dev-w<i>`, `eth0` `10.199.0.(10+i)/24`, default route via `10.199.0.1` |
//! | host-side veth | `daas-dev-v<i>` |
//!
//! Workers reach the host at the bridge address (`10.199.0.1`): the host relay must listen there
//! (or on `0.0.0.0`), not only on `127.0.0.1`, which inside a worker's namespace is the worker's
//! own loopback. Nothing is forwarded beyond the host: the topology uses only addresses this
//! machine owns.
//!
//! [`DevTopology::setup`] first removes whatever an earlier run left (a `daas dev` killed with
//! SIGKILL leaves its namespaces and bridge behind), so it is idempotent; [`DevTopology::cleanup`]
//! removes everything (deleting a namespace deletes its veth pair with it).
//!
//! ```no_run
//! # async fn dev() -> worker::network::Result<()> {
//! use worker::network::devnet::DevTopology;
//! let topo = DevTopology::default();
//! for node in topo.setup(2).await? {
//!     // Start the worker inside its namespace: `ip netns exec daas-dev-w1 daas-worker ...`.
//!     let _cmd = node.netns.command("daas-worker");
//! }
//! topo.cleanup().await?;
//! # Ok(()) }
//! ```

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::cni::nth_host;
use super::error::{Error, Result};
use super::exec::Netns;

/// The dev topology's names and addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevTopology {
    /// Namespaces are `PREFIX-w<i>`, host-side veths `PREFIX-v<i>` (default `daas-dev`).
    pub prefix: String,
    /// The bridge in the host namespace (default `daas-dev0`).
    pub bridge: String,
    /// The nodes' network: the bridge holds the first address, worker `i` the `(10+i)`th
    /// (default `10.199.0.0/24`).
    pub subnet: Ipv4Net,
}

impl Default for DevTopology {
    fn default() -> Self {
        Self::slot(0)
    }
}

/// One worker's place in the topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevNode {
    /// The worker's number (1-based).
    pub index: usize,
    /// The Node name to register (`worker-<i>`).
    pub node_name: String,
    /// The worker's namespace: run the worker with `netns.command(...)`.
    pub netns: Netns,
    /// The worker's address (its InternalIP).
    pub ip: Ipv4Addr,
    /// The host's address on the bridge (where the worker reaches the relay).
    pub host_ip: Ipv4Addr,
}

impl DevTopology {
    /// The topology of dev network number `n`, so that several `daas dev` clusters can run on
    /// one machine side by side: slot 0 is the default (`daas-dev0`, namespaces `daas-dev-w<i>`,
    /// `10.199.0.0/24`), slot `n` has the bridge `daas-dev<n>`, namespaces `daas-dev<n>-w<i>`,
    /// host-side veths `daas-dev<n>-v<i>` and `10.199.<n>.0/24`. Whoever runs a slot must hold
    /// it exclusively ([`DevTopology::setup`] removes what the slot's names hold).
    pub fn slot(n: u8) -> Self {
        let prefix = if n == 0 {
            "daas-dev".to_owned()
        } else {
            format!("daas-dev{n}")
        };
        Self {
            prefix,
            bridge: format!("daas-dev{n}"),
            subnet: Ipv4Net::new_assert(Ipv4Addr::new(10, 199, n, 0), 24),
        }
    }

    /// The host's address on the bridge.
    pub fn host_ip(&self) -> Ipv4Addr {
        nth_host(self.subnet, 1)
    }

    fn netns_name(&self, i: usize) -> String {
        format!("{}-w{i}", self.prefix)
    }

    fn veth_name(&self, i: usize) -> String {
        format!("{}-v{i}", self.prefix)
    }

    /// Creates the bridge and `workers` namespaces, after removing what an earlier run left.
    ///
    /// # Errors
    /// [`Error::Config`] for more workers than the subnet holds or names longer than Linux allows;
    /// otherwise when an `ip` command fails.
    pub async fn setup(&self, workers: usize) -> Result<Vec<DevNode>> {
        let capacity = (1u32 << (32 - u32::from(self.subnet.prefix_len()))).saturating_sub(12);
        if u32::try_from(workers).map_or(true, |w| w > capacity) {
            return Err(Error::Config(format!(
                "{workers} workers do not fit in {}",
                self.subnet
            )));
        }
        if self.bridge.len() > 15 || self.veth_name(workers).len() > 15 {
            return Err(Error::Config(format!(
                "interface names `{}`/`{}` exceed 15 characters",
                self.bridge,
                self.veth_name(workers)
            )));
        }
        self.cleanup().await?;
        let host = Netns::Current;
        let host_ip = self.host_ip();
        let prefix_len = self.subnet.prefix_len();
        host.run("ip", &["link", "add", &self.bridge, "type", "bridge"])
            .await?;
        host.run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{host_ip}/{prefix_len}"),
                "dev",
                &self.bridge,
            ],
        )
        .await?;
        host.run("ip", &["link", "set", &self.bridge, "up"]).await?;
        let mut nodes = Vec::with_capacity(workers);
        for i in 1..=workers {
            let name = self.netns_name(i);
            let veth = self.veth_name(i);
            let ip = nth_host(self.subnet, u32::try_from(i + 10).unwrap_or(u32::MAX));
            host.run("ip", &["netns", "add", &name]).await?;
            let ns = Netns::named(name.clone());
            host.run(
                "ip",
                &[
                    "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &name,
                ],
            )
            .await?;
            host.run("ip", &["link", "set", &veth, "master", &self.bridge, "up"])
                .await?;
            ns.run("ip", &["link", "set", "lo", "up"]).await?;
            ns.run(
                "ip",
                &["addr", "add", &format!("{ip}/{prefix_len}"), "dev", "eth0"],
            )
            .await?;
            ns.run("ip", &["link", "set", "eth0", "up"]).await?;
            ns.run(
                "ip",
                &["route", "add", "default", "via", &host_ip.to_string()],
            )
            .await?;
            nodes.push(DevNode {
                index: i,
                node_name: format!("worker-{i}"),
                netns: ns,
                ip,
                host_ip,
            });
        }
        Ok(nodes)
    }

    /// The namespaces of this topology that exist now.
    fn existing_namespaces(&self) -> Vec<String> {
        let mine = format!("{}-w", self.prefix);
        let entries: Vec<String> = match std::fs::read_dir("/run/netns") {
            Ok(e) => e
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        entries
            .into_iter()
            .filter(|name| {
                name.strip_prefix(&mine)
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .collect()
    }

    /// Host-side veths of this topology that exist now. Deleting a namespace deletes its veth pair,
    /// but only once nothing holds the namespace: sockets of killed workers still closing keep it
    /// (unnamed) for minutes, so cleanup deletes the host ends too.
    fn existing_veths(&self) -> Vec<String> {
        let mine = format!("{}-v", self.prefix);
        let entries: Vec<String> = match std::fs::read_dir("/sys/class/net") {
            Ok(e) => e
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        entries
            .into_iter()
            .filter(|name| {
                name.strip_prefix(&mine)
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .collect()
    }

    fn bridge_exists(&self) -> bool {
        std::path::Path::new("/sys/class/net")
            .join(&self.bridge)
            .exists()
    }

    /// Removes every namespace named `PREFIX-w<N>`, host-side veth `PREFIX-v<N>` and the bridge;
    /// nothing if they are not there.
    ///
    /// # Errors
    /// When a namespace or the bridge exists and cannot be deleted.
    pub async fn cleanup(&self) -> Result<()> {
        let host = Netns::Current;
        for name in self.existing_namespaces() {
            host.run("ip", &["netns", "del", &name]).await?;
        }
        for veth in self.existing_veths() {
            // Gone already if its namespace was freed meanwhile.
            let _ = host.run("ip", &["link", "del", &veth]).await;
        }
        if self.bridge_exists() {
            host.run("ip", &["link", "del", &self.bridge]).await?;
        }
        Ok(())
    }

    /// [`DevTopology::cleanup`] without an async runtime (for `Drop` and exit paths); best effort.
    pub fn cleanup_blocking(&self) {
        for name in self.existing_namespaces() {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &name])
                .output();
        }
        for veth in self.existing_veths() {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", &veth])
                .output();
        }
        if self.bridge_exists() {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", &self.bridge])
                .output();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `name` is one of `topo`'s namespaces or veths, by the filters cleanup uses.
    fn claims(topo: &DevTopology, name: &str) -> bool {
        [format!("{}-w", topo.prefix), format!("{}-v", topo.prefix)]
            .iter()
            .any(|p| {
                name.strip_prefix(p.as_str())
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            || name == topo.bridge
    }

    #[test]
    fn slots_share_no_name_or_subnet() {
        let slots: Vec<DevTopology> = [0u8, 1, 2, 12, 255]
            .into_iter()
            .map(DevTopology::slot)
            .collect();
        assert_eq!(slots[0], DevTopology::default());
        assert_eq!(slots[0].netns_name(1), "daas-dev-w1");
        assert_eq!(slots[3].veth_name(7), "daas-dev12-v7");
        for (i, a) in slots.iter().enumerate() {
            for (j, b) in slots.iter().enumerate() {
                let names = [b.netns_name(1), b.veth_name(1), b.bridge.clone()];
                for name in names {
                    assert_eq!(claims(a, &name), i == j, "{a:?} vs {name}");
                }
                if i != j {
                    assert_ne!(a.subnet, b.subnet);
                }
            }
            assert!(a.veth_name(99).len() <= 15, "{}", a.veth_name(99));
        }
    }
}
