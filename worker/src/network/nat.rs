//! The node's own nftables table `ip daas-net`: masquerade for pod traffic leaving the cluster CIDR
//! (flannel's rule), nothing for pod-to-pod traffic, which keeps its addresses across nodes.
//! Replaced as a whole in one `nft -f` transaction.

use ipnet::Ipv4Net;

use super::error::Result;
use super::exec::Netns;

/// The table's name.
pub const TABLE: &str = "daas-net";

/// The table's full text for a cluster whose pods live in `cluster_cidr`: a transaction that creates
/// the table if missing, deletes it and recreates it, so it applies atomically whatever was there.
pub fn ruleset(cluster_cidr: Ipv4Net) -> String {
    format!(
        "table ip {TABLE} {{}}\n\
         delete table ip {TABLE}\n\
         table ip {TABLE} {{\n\
         \tcomment \"pod network masquerade (daas-worker)\"\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat + 10; policy accept;\n\
         \t\tip saddr {cluster_cidr} ip daddr {cluster_cidr} return\n\
         \t\tip saddr {cluster_cidr} ip daddr 224.0.0.0/4 return\n\
         \t\tip saddr {cluster_cidr} masquerade fully-random\n\
         \t}}\n\
         }}\n"
    )
}

/// Installs (or replaces) the table in `netns`.
///
/// # Errors
/// When `nft` fails.
pub async fn apply(netns: &Netns, cluster_cidr: Ipv4Net) -> Result<()> {
    let text = ruleset(cluster_cidr);
    netns
        .run_with_stdin("nft", &["-f", "-"], Some(text.as_bytes()))
        .await
        .map(drop)
}

/// Removes the table from `netns` (nothing if it is not there).
///
/// # Errors
/// When `nft` fails.
pub async fn remove(netns: &Netns) -> Result<()> {
    let text = format!("table ip {TABLE} {{}}\ndelete table ip {TABLE}\n");
    netns
        .run_with_stdin("nft", &["-f", "-"], Some(text.as_bytes()))
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_traffic_leaving_the_cluster_cidr_is_masqueraded() {
        let text = ruleset("10.42.0.0/16".parse().unwrap());
        assert!(text.contains("ip saddr 10.42.0.0/16 ip daddr 10.42.0.0/16 return"));
        assert!(text.contains("ip saddr 10.42.0.0/16 masquerade"));
        assert!(text.starts_with("table ip daas-net {}\ndelete table ip daas-net\n"));
    }
}
