//! ClusterIP allocation for kinds whose strategy asks for it (Services).
//! Each allocated address is claimed by creating the store key
//! `/registry/core/serviceips/<ip>` (compare-and-swap), so two concurrent
//! creates can never get the same address; deleting the Service releases it.

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
    /// Claims a ClusterIP for `obj` if its strategy allocates them and it
    /// needs one. Returns the claimed address (to release on failure).
    pub(super) async fn allocate_ip(
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

    /// Releases the ClusterIP of a deleted (or never created) object.
    pub(super) async fn release_ip(&self, info: &ResourceInfo, obj: &Value) {
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
