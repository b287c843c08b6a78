//! The IPv4 range Service ClusterIPs are allocated from (kube-apiserver's
//! `--service-cluster-ip-range`).

use std::net::Ipv4Addr;

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

    /// How many addresses the range holds.
    pub fn size(self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    /// Whether `ip` is in the range.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == self.base
    }

    /// The n-th usable address (network and broadcast excluded; .1 is the
    /// `kubernetes` Service's, as upstream reserves it).
    pub fn nth(self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 2 + n % (self.size() - 3))
    }
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
