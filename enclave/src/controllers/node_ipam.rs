//! Node IPAM (upstream's `nodeipam` controller with the range allocator):
//! every node gets `spec.podCIDR` and `spec.podCIDRs` — one subnet of
//! `--node-cidr-mask-size` bits (24) from `--cluster-cidr` (k3s's
//! `10.42.0.0/16`). Subnets are taken round-robin, as upstream's CIDR set
//! does; those overlapping the service range are never handed out; a
//! deleted node's subnet becomes free again. Which subnets are taken is
//! memory only, rebuilt from the stored nodes when the controller starts.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Node;

use super::Error;
use super::client::Api;
use super::events::{EventRecorder, EventType};
use super::runtime::{Action, Reconciler};
use super::typed::Typed;
use crate::registry::kinds::ServiceCidr;
use crate::registry::{WatchEvent, meta};

/// An IPv4 range nodes' pod subnets come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterCidr {
    base: u32,
    prefix: u8,
}

impl ClusterCidr {
    /// k3s's `10.42.0.0/16`.
    pub const DEFAULT: ClusterCidr = ClusterCidr {
        base: u32::from_be_bytes([10, 42, 0, 0]),
        prefix: 16,
    };

    /// Parses `a.b.c.d/n`.
    ///
    /// # Errors
    /// A message for a malformed range.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (ip, n) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: expected a.b.c.d/n"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| format!("{s:?}: bad address"))?;
        let prefix: u8 = n.parse().map_err(|_| format!("{s:?}: bad prefix length"))?;
        if !(1..=30).contains(&prefix) {
            return Err(format!("{s:?}: prefix length must be between 1 and 30"));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(ClusterCidr {
            base: u32::from(ip) & mask,
            prefix,
        })
    }

    /// The prefix length.
    pub fn prefix(self) -> u8 {
        self.prefix
    }
}

impl std::fmt::Display for ClusterCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

/// The most subnets a cluster range may be cut into (upstream's 16 bits).
const MAX_SUBNET_BITS: u8 = 16;

/// Which subnets of the cluster range are taken, and by which node.
#[derive(Debug)]
pub(crate) struct CidrSet {
    cluster: ClusterCidr,
    mask: u8,
    owners: Vec<Option<String>>,
    next: usize,
}

/// A reserved slot: the service range overlaps it.
const RESERVED: &str = "";

impl CidrSet {
    /// The subnets of size `/mask` in `cluster`.
    ///
    /// # Errors
    /// When `mask` is not longer than the range's prefix, or cuts it into
    /// more than 2^16 subnets.
    pub(crate) fn new(
        cluster: ClusterCidr,
        mask: u8,
        service: ServiceCidr,
    ) -> Result<Self, String> {
        if mask <= cluster.prefix || mask > 32 {
            return Err(format!(
                "--node-cidr-mask-size {mask} must be longer than the cluster CIDR's prefix /{} and at most 32",
                cluster.prefix
            ));
        }
        if mask - cluster.prefix > MAX_SUBNET_BITS {
            return Err(format!(
                "--node-cidr-mask-size {mask} cuts {cluster} into more than 2^{MAX_SUBNET_BITS} subnets"
            ));
        }
        let n = 1usize << (mask - cluster.prefix);
        let mut set = CidrSet {
            cluster,
            mask,
            owners: vec![None; n],
            next: 0,
        };
        for i in 0..n {
            if service.overlaps(set.network(i), mask) {
                set.owners[i] = Some(RESERVED.to_string());
            }
        }
        Ok(set)
    }

    fn network(&self, i: usize) -> Ipv4Addr {
        let step = 1u64 << (32 - u32::from(self.mask));
        let offset = u32::try_from(step * i as u64).unwrap_or(0);
        Ipv4Addr::from(self.cluster.base.wrapping_add(offset))
    }

    /// The subnet `i` as `a.b.c.d/mask`.
    pub(crate) fn cidr(&self, i: usize) -> String {
        format!("{}/{}", self.network(i), self.mask)
    }

    /// The slot of a subnet of this set, if `cidr` is one.
    pub(crate) fn index_of(&self, cidr: &str) -> Option<usize> {
        let (ip, n) = cidr.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        if n.parse::<u8>().ok()? != self.mask {
            return None;
        }
        let offset = u32::from(ip).checked_sub(self.cluster.base)?;
        let i = usize::try_from(offset >> (32 - u32::from(self.mask))).ok()?;
        (i < self.owners.len() && self.network(i) == ip).then_some(i)
    }

    /// Marks `cidr` as `node`'s.
    pub(crate) fn occupy(&mut self, cidr: &str, node: &str) {
        if let Some(i) = self.index_of(cidr)
            && let Some(slot) = self.owners.get_mut(i)
        {
            *slot = Some(node.to_string());
        }
    }

    /// Frees `cidr` if `node` holds it.
    pub(crate) fn release(&mut self, cidr: &str, node: &str) {
        if let Some(i) = self.index_of(cidr)
            && let Some(slot) = self.owners.get_mut(i)
            && slot.as_deref() == Some(node)
        {
            *slot = None;
        }
    }

    /// Takes the next free subnet for `node`, round-robin.
    pub(crate) fn allocate(&mut self, node: &str) -> Option<String> {
        let n = self.owners.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            if self.owners[i].is_none() {
                self.owners[i] = Some(node.to_string());
                self.next = (i + 1) % n;
                return Some(self.cidr(i));
            }
        }
        None
    }
}

/// The node IPAM controller; keys are node names.
#[derive(Debug)]
pub(crate) struct NodeIpam {
    nodes: Typed<Node>,
    cidrs: CidrSet,
    /// node → its subnet, as last seen.
    assigned: HashMap<String, String>,
    /// Nodes waiting for a subnet to be freed.
    waiting: std::collections::BTreeSet<String>,
    synced: bool,
    events: EventRecorder,
}

impl NodeIpam {
    /// Allocates from `cidrs`; watches 0: nodes.
    pub(crate) fn new(nodes: Typed<Node>, cidrs: CidrSet, events: Api) -> Self {
        NodeIpam {
            nodes,
            cidrs,
            assigned: HashMap::new(),
            waiting: std::collections::BTreeSet::new(),
            synced: false,
            events: EventRecorder::new(events, "cidrAllocator"),
        }
    }

    fn note(&mut self, node: &str, cidr: Option<&str>) {
        match (self.assigned.get(node).cloned(), cidr) {
            (Some(old), Some(new)) if old == new => {}
            (old, new) => {
                if let Some(old) = old {
                    self.cidrs.release(&old, node);
                    self.assigned.remove(node);
                }
                if let Some(new) = new {
                    self.cidrs.occupy(new, node);
                    self.assigned.insert(node.to_string(), new.to_string());
                }
            }
        }
    }
}

fn pod_cidr(node: &serde_json::Value) -> Option<&str> {
    node.pointer("/spec/podCIDR")
        .and_then(serde_json::Value::as_str)
        .filter(|c| !c.is_empty())
}

impl Reconciler for NodeIpam {
    type Key = String;
    const NAME: &'static str = "nodeipam";

    async fn keys_for(&mut self, _kind: usize, event: &WatchEvent) -> Vec<String> {
        match event {
            WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                let name = meta::name(o).to_string();
                match pod_cidr(o) {
                    Some(c) => {
                        self.note(&name, Some(c));
                        Vec::new()
                    }
                    None => vec![name],
                }
            }
            WatchEvent::Deleted(o) => {
                self.waiting.remove(meta::name(o));
                let freed = pod_cidr(o).is_some();
                self.note(meta::name(o), None);
                // A freed subnet goes to the nodes waiting for one.
                if freed {
                    std::mem::take(&mut self.waiting).into_iter().collect()
                } else {
                    Vec::new()
                }
            }
            _ => Vec::new(),
        }
    }

    async fn reconcile(&mut self, name: &String) -> Result<Action, Error> {
        if !self.synced {
            // Every stored node's subnet is taken before the first allocation.
            for n in self.nodes.api().list("").await? {
                let node = meta::name(&n).to_string();
                if let Some(c) = pod_cidr(&n) {
                    self.note(&node, Some(c));
                }
            }
            self.synced = true;
        }
        let Some(node) = self.nodes.get("", name).await? else {
            return Ok(Action::await_change());
        };
        if let Some(c) = node
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.clone())
            .filter(|c| !c.is_empty())
        {
            self.note(name, Some(&c));
            return Ok(Action::await_change());
        }
        let Some(cidr) = self.cidrs.allocate(name) else {
            let obj = serde_json::to_value(&node).unwrap_or_default();
            let message = format!("Node {name} status is now: CIDRNotAvailable");
            self.events
                .record(&obj, EventType::Normal, "CIDRNotAvailable", &message)
                .await;
            // Woken when a node's deletion frees a subnet.
            self.waiting.insert(name.clone());
            return Ok(Action::await_change());
        };
        let written = self
            .nodes
            .edit("", name, |n| {
                let spec = n.spec.get_or_insert_with(Default::default);
                if spec.pod_cidr.as_deref().is_some_and(|c| !c.is_empty()) {
                    return false;
                }
                spec.pod_cidr = Some(cidr.clone());
                spec.pod_cidrs = Some(vec![cidr.clone()]);
                true
            })
            .await;
        match written {
            Ok(n) => {
                let got = n.spec.and_then(|s| s.pod_cidr);
                if got.as_deref() != Some(cidr.as_str()) {
                    // Set by someone else meanwhile: ours is free again.
                    self.cidrs.release(&cidr, name);
                }
                self.note(name, got.as_deref());
                tracing::debug!(node = %name, %cidr, "pod CIDR assigned");
                Ok(Action::await_change())
            }
            Err(e) => {
                self.cidrs.release(&cidr, name);
                if e.is_not_found() {
                    Ok(Action::await_change())
                } else {
                    Err(e)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_release_and_reserved() {
        let svc = ServiceCidr::parse("10.43.0.0/16").unwrap();
        let mut set = CidrSet::new(ClusterCidr::DEFAULT, 24, svc).unwrap();
        assert_eq!(set.allocate("a").unwrap(), "10.42.0.0/24");
        assert_eq!(set.allocate("b").unwrap(), "10.42.1.0/24");
        set.release("10.42.0.0/24", "a");
        assert_eq!(set.allocate("c").unwrap(), "10.42.2.0/24");
        set.occupy("10.42.3.0/24", "d");
        assert_eq!(set.allocate("e").unwrap(), "10.42.4.0/24");
        assert_eq!(set.index_of("10.42.3.0/24"), Some(3));
        assert_eq!(set.index_of("10.42.3.0/25"), None);
        assert_eq!(set.index_of("10.41.0.0/24"), None);
        let overlap = ServiceCidr::parse("10.42.0.0/23").unwrap();
        let mut set =
            CidrSet::new(ClusterCidr::parse("10.42.0.0/22").unwrap(), 24, overlap).unwrap();
        assert_eq!(set.allocate("a").unwrap(), "10.42.2.0/24");
        assert_eq!(set.allocate("b").unwrap(), "10.42.3.0/24");
        assert_eq!(set.allocate("c"), None);
        assert!(CidrSet::new(ClusterCidr::DEFAULT, 8, svc).is_err());
    }
}
