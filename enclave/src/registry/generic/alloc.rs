//! ClusterIP and NodePort allocation for kinds whose strategy asks for it
//! (Services). Each allocated address is claimed by creating the store key
//! `/registry/core/serviceips/<ip>` (compare-and-swap), each node port by
//! creating `/registry/core/servicenodeports/<port>`, so two concurrent
//! creates can never get the same one; deleting the Service releases them.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::ObjectStore;
use crate::registry::{Error, FieldError, ResourceInfo, Result, meta};
use crate::store::TxnOutcome;

/// An IPv4 range to allocate ClusterIPs from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceCidr {
    base: u32,
    prefix: u8,
}

impl std::fmt::Display for ServiceCidr {
    /// `10.43.0.0/16`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

impl ServiceCidr {
    /// `10.43.0.0/16`, as k3s uses.
    pub const DEFAULT: ServiceCidr = ServiceCidr {
        base: u32::from_be_bytes([10, 43, 0, 0]),
        prefix: 16,
    };

    /// Parses `a.b.c.d/n` (n between 8 and 30).
    ///
    /// # Errors
    /// A message for malformed ranges.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let (ip, n) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: expected a.b.c.d/n"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| format!("{s:?}: bad address"))?;
        let prefix: u8 = n.parse().map_err(|_| format!("{s:?}: bad prefix length"))?;
        if !(8..=30).contains(&prefix) {
            return Err(format!("{s:?}: prefix length must be between 8 and 30"));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(ServiceCidr {
            base: u32::from(ip) & mask,
            prefix,
        })
    }

    /// The range's first usable address, reserved for the `default/kubernetes`
    /// Service (upstream's `kubernetes` ClusterIP, e.g. `10.43.0.1`).
    pub fn first_ip(self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    /// Whether the range and `base/prefix` share any address.
    pub fn overlaps(self, base: Ipv4Addr, prefix: u8) -> bool {
        let shorter = self.prefix.min(prefix);
        let mask = u32::MAX.checked_shl(32 - u32::from(shorter)).unwrap_or(0);
        self.base & mask == u32::from(base) & mask
    }

    fn size(self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    fn contains(self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == self.base
    }

    /// The n-th usable address (network and broadcast excluded; .1 is the
    /// `kubernetes` Service's, as upstream reserves it).
    fn nth(self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 2 + n % (self.size() - 3))
    }
}

fn ip_key(ip: Ipv4Addr) -> Vec<u8> {
    format!("/registry/core/serviceips/{ip}").into_bytes()
}

fn alloc_error(ip: &str, why: &str) -> Error {
    Error::Invalid {
        kind: "Service".into(),
        group: String::new(),
        name: String::new(),
        causes: vec![FieldError {
            reason: "FieldValueInvalid",
            field: "spec.clusterIPs".into(),
            message: format!(
                "spec.clusterIPs: Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: {why}"
            ),
        }],
    }
}

impl ObjectStore {
    /// Claims a ClusterIP and node ports for `obj` if its strategy allocates
    /// them and it needs them. Returns whether anything was claimed (to
    /// release with [`ObjectStore::release_ip`] if the create fails).
    pub(super) async fn allocate_ip(&self, info: &ResourceInfo, obj: &mut Value) -> Result<bool> {
        let ip = self.allocate_cluster_ip(info, obj).await?;
        match self.allocate_node_ports(info, obj).await {
            Ok(ports) => Ok(ip.is_some() || ports),
            Err(e) => {
                self.release_cluster_ip(info, obj).await;
                Err(e)
            }
        }
    }

    /// Claims a ClusterIP for `obj` if its strategy allocates them and it
    /// needs one. Returns the claimed address.
    async fn allocate_cluster_ip(
        &self,
        info: &ResourceInfo,
        obj: &mut Value,
    ) -> Result<Option<Ipv4Addr>> {
        if !info.strategy.allocates_cluster_ip()
            || obj.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName")
        {
            return Ok(None);
        }
        let requested = obj
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if requested == "None" {
            obj["spec"]["clusterIPs"] = json!(["None"]);
            return Ok(None);
        }
        let owner = format!("{}/{}", meta::namespace(obj), meta::name(obj));
        let cidr = self.service_cidr;
        if !requested.is_empty() {
            let ip: Ipv4Addr = requested
                .parse()
                .map_err(|_| alloc_error(&requested, "not a valid IPv4 address"))?;
            if !cidr.contains(ip) {
                return Err(alloc_error(
                    &requested,
                    "provided IP is not in the valid range",
                ));
            }
            return match self.store.create(&ip_key(ip), owner.as_bytes()).await? {
                TxnOutcome::Committed { .. } => {
                    obj["spec"]["clusterIPs"] = json!([requested]);
                    Ok(Some(ip))
                }
                TxnOutcome::Failed { .. } => {
                    Err(alloc_error(&requested, "provided IP is already allocated"))
                }
            };
        }
        let start = u32::from_be_bytes(rand4());
        for i in 0..cidr.size().min(4096) {
            let ip = cidr.nth(start.wrapping_add(i));
            if let TxnOutcome::Committed { .. } =
                self.store.create(&ip_key(ip), owner.as_bytes()).await?
            {
                obj["spec"]["clusterIP"] = json!(ip.to_string());
                obj["spec"]["clusterIPs"] = json!([ip.to_string()]);
                return Ok(Some(ip));
            }
        }
        Err(Error::Invalid {
            kind: "Service".into(),
            group: String::new(),
            name: meta::name(obj).to_string(),
            causes: vec![FieldError {
                reason: "FieldValueInvalid",
                field: "spec.clusterIPs".into(),
                message:
                    "spec.clusterIPs: Internal error: failed to allocate a serviceIP: range is full"
                        .into(),
            }],
        })
    }

    /// Releases the ClusterIP and node ports of a deleted (or never created)
    /// object.
    pub(super) async fn release_ip(&self, info: &ResourceInfo, obj: &Value) {
        self.release_cluster_ip(info, obj).await;
        if info.strategy.allocates_cluster_ip() {
            for port in node_ports(obj) {
                self.release_node_port(port).await;
            }
        }
    }

    /// Releases the ClusterIP of a deleted (or never created) object.
    async fn release_cluster_ip(&self, info: &ResourceInfo, obj: &Value) {
        if !info.strategy.allocates_cluster_ip() {
            return;
        }
        if let Some(ip) = obj
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Ipv4Addr>().ok())
            && let Err(e) = self.store.delete(&ip_key(ip), None).await
        {
            tracing::warn!(%ip, error = %e, "releasing a ClusterIP failed");
        }
    }
}

impl ObjectStore {
    /// Claims a node port for every port of a `NodePort` Service (and of a
    /// `LoadBalancer` one unless `allocateLoadBalancerNodePorts: false`):
    /// the one asked for if it is in range and free, else a free one from
    /// [`NODE_PORTS`]. On an error, what this call claimed is released.
    async fn allocate_node_ports(&self, info: &ResourceInfo, obj: &mut Value) -> Result<bool> {
        if !info.strategy.allocates_cluster_ip() || !wants_node_ports(obj) {
            return Ok(false);
        }
        let owner = format!("{}/{}", meta::namespace(obj), meta::name(obj));
        let count = obj
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let mut claimed = Vec::new();
        for i in 0..count {
            let pointer = format!("/spec/ports/{i}/nodePort");
            let requested = obj.pointer(&pointer).and_then(Value::as_i64).unwrap_or(0);
            let port = if requested == 0 {
                self.claim_free_node_port(&owner).await
            } else {
                self.claim_node_port(requested, &owner, i).await
            };
            match port {
                Ok(port) => {
                    claimed.push(port);
                    if let Some(slot) = obj.pointer_mut(&pointer.replace("/nodePort", "")) {
                        slot["nodePort"] = json!(port);
                    }
                }
                Err(e) => {
                    for port in claimed {
                        self.release_node_port(port).await;
                    }
                    return Err(e);
                }
            }
        }
        Ok(!claimed.is_empty())
    }

    async fn claim_node_port(&self, requested: i64, owner: &str, index: usize) -> Result<u16> {
        let field = format!("spec.ports[{index}].nodePort");
        let refused = |why: String| Error::Invalid {
            kind: "Service".into(),
            group: String::new(),
            name: owner.rsplit('/').next().unwrap_or_default().to_string(),
            causes: vec![FieldError {
                reason: "FieldValueInvalid",
                message: format!("{field}: Invalid value: {requested}: {why}"),
                field: field.clone(),
            }],
        };
        let port = u16::try_from(requested)
            .ok()
            .filter(|p| NODE_PORTS.contains(p))
            .ok_or_else(|| {
                refused(format!(
                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                    NODE_PORTS.start(),
                    NODE_PORTS.end()
                ))
            })?;
        match self
            .store
            .create(&node_port_key(port), owner.as_bytes())
            .await?
        {
            TxnOutcome::Committed { .. } => Ok(port),
            TxnOutcome::Failed { .. } => Err(refused("provided port is already allocated".into())),
        }
    }

    async fn claim_free_node_port(&self, owner: &str) -> Result<u16> {
        let span = u32::from(NODE_PORTS.end() - NODE_PORTS.start()) + 1;
        let start = u32::from_be_bytes(rand4());
        for i in 0..span {
            let offset = start.wrapping_add(i) % span;
            let port = NODE_PORTS.start() + u16::try_from(offset).unwrap_or(0);
            if let TxnOutcome::Committed { .. } = self
                .store
                .create(&node_port_key(port), owner.as_bytes())
                .await?
            {
                return Ok(port);
            }
        }
        Err(Error::Invalid {
            kind: "Service".into(),
            group: String::new(),
            name: owner.rsplit('/').next().unwrap_or_default().to_string(),
            causes: vec![FieldError {
                reason: "FieldValueInvalid",
                field: "spec.ports".into(),
                message: "spec.ports: Internal error: failed to allocate a nodePort: range is full"
                    .into(),
            }],
        })
    }

    /// The node ports of a Service being updated (`old` as stored, `new` as it will be):
    /// a port `new` names that `old` did not hold is claimed (refused if taken), a port that
    /// names none gets a free one, and a Service that no longer wants node ports (type
    /// `ClusterIP` again) drops them, as upstream's Service REST `Update`. What `old` held and
    /// `new` does not is only released by [`ObjectStore::settle_node_ports`] once the update
    /// is stored.
    pub(super) async fn reallocate_node_ports(
        &self,
        info: &ResourceInfo,
        old: &Value,
        new: &mut Value,
    ) -> Result<NodePortChange> {
        if !info.strategy.allocates_cluster_ip() {
            return Ok(NodePortChange::default());
        }
        let held = node_ports(old);
        if !wants_node_ports(new) {
            if let Some(Value::Array(ports)) = new.pointer_mut("/spec/ports") {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    p.remove("nodePort");
                }
            }
            return Ok(NodePortChange {
                claimed: Vec::new(),
                released: held,
            });
        }
        let owner = format!("{}/{}", meta::namespace(new), meta::name(new));
        let count = new
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let mut change = NodePortChange::default();
        let mut kept = Vec::new();
        for i in 0..count {
            let pointer = format!("/spec/ports/{i}/nodePort");
            let requested = new.pointer(&pointer).and_then(Value::as_i64).unwrap_or(0);
            let already = u16::try_from(requested)
                .ok()
                .filter(|p| held.contains(p) && !kept.contains(p));
            let port = match already {
                Some(port) => {
                    kept.push(port);
                    continue;
                }
                None if requested == 0 => self.claim_free_node_port(&owner).await,
                None => self.claim_node_port(requested, &owner, i).await,
            };
            match port {
                Ok(port) => {
                    change.claimed.push(port);
                    if let Some(slot) = new.pointer_mut(&format!("/spec/ports/{i}")) {
                        slot["nodePort"] = json!(port);
                    }
                }
                Err(e) => {
                    self.settle_node_ports(change, false).await;
                    return Err(e);
                }
            }
        }
        change.released = held.into_iter().filter(|p| !kept.contains(p)).collect();
        Ok(change)
    }

    /// Ends a [`ObjectStore::reallocate_node_ports`]: when the update was stored, the ports
    /// the Service gave up are released; otherwise the ones claimed for it.
    pub(super) async fn settle_node_ports(&self, change: NodePortChange, stored: bool) {
        let ports = if stored {
            change.released
        } else {
            change.claimed
        };
        for port in ports {
            self.release_node_port(port).await;
        }
    }

    async fn release_node_port(&self, port: u16) {
        if let Err(e) = self.store.delete(&node_port_key(port), None).await {
            tracing::warn!(port, error = %e, "releasing a node port failed");
        }
    }
}

/// What an update did to a Service's node ports (see
/// [`ObjectStore::reallocate_node_ports`]).
#[derive(Debug, Default)]
pub(super) struct NodePortChange {
    /// Claimed for the updated Service; released if the update is not stored.
    claimed: Vec<u16>,
    /// Held by the old Service and not the new one; released once the update is stored.
    released: Vec<u16>,
}

/// The node port range, kube-apiserver's default `--service-node-port-range`.
const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

fn node_port_key(port: u16) -> Vec<u8> {
    format!("/registry/core/servicenodeports/{port}").into_bytes()
}

/// Whether a Service of this type gets node ports.
fn wants_node_ports(obj: &Value) -> bool {
    match obj.pointer("/spec/type").and_then(Value::as_str) {
        Some("NodePort") => true,
        Some("LoadBalancer") => obj
            .pointer("/spec/allocateLoadBalancerNodePorts")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        _ => false,
    }
}

/// The node ports a stored Service holds.
fn node_ports(obj: &Value) -> Vec<u16> {
    if !wants_node_ports(obj) {
        return Vec::new();
    }
    obj.pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
                .filter_map(|p| u16::try_from(p).ok())
                .filter(|p| NODE_PORTS.contains(p))
                .collect()
        })
        .unwrap_or_default()
}

fn rand4() -> [u8; 4] {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr() {
        let c = ServiceCidr::parse("10.96.0.0/12").unwrap();
        assert!(c.contains("10.96.0.10".parse().unwrap()));
        assert!(!c.contains("10.112.0.1".parse().unwrap()));
        assert_eq!(c.nth(0), "10.96.0.2".parse::<Ipv4Addr>().unwrap());
        let small = ServiceCidr::parse("192.168.0.0/30").unwrap();
        assert_eq!(small.nth(5), "192.168.0.2".parse::<Ipv4Addr>().unwrap());
        for bad in ["10.0.0.0", "x/16", "10.0.0.0/31", "10.0.0.0/4"] {
            assert!(ServiceCidr::parse(bad).is_err(), "{bad}");
        }
    }
}
