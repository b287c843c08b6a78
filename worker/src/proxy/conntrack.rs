//! Clearing conntrack entries that would keep UDP flows on an endpoint that is gone, as kube-proxy
//! does (`pkg/proxy/conntrack`): TCP connections end by themselves (the pod resets them), a UDP
//! "connection" would keep its NAT binding for as long as the client keeps sending.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::plan::{Protocol, ServicePortPlan};
use crate::network::error::Error;
use crate::network::exec::Netns;

/// One UDP Service port's destinations and the endpoints it used.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct UdpTargets {
    cluster_ips: Vec<Ipv4Addr>,
    node_port: Option<u16>,
    endpoints: BTreeSet<Ipv4Addr>,
}

/// UDP Service ports by name, with the endpoints their rules use.
pub(super) fn udp_targets(plans: &[ServicePortPlan]) -> BTreeMap<String, UdpTargets> {
    plans
        .iter()
        .filter(|p| p.protocol == Protocol::Udp)
        .map(|p| {
            let cat = p.categorize();
            (
                p.display_name(),
                UdpTargets {
                    cluster_ips: p.cluster_ips.clone(),
                    node_port: p.node_port,
                    endpoints: cat.reachable.iter().map(|e| e.ip).collect(),
                },
            )
        })
        .collect()
}

/// Deletes the entries of UDP flows to endpoints that `before` used and `after` does not, and of
/// flows to Services that had no endpoint before (their entries hold the rejection).
pub(super) async fn clear_stale(
    netns: &Netns,
    before: &BTreeMap<String, UdpTargets>,
    after: &BTreeMap<String, UdpTargets>,
) {
    let mut deletions: Vec<Vec<String>> = Vec::new();
    for (name, old) in before {
        let new = after.get(name);
        for gone in old
            .endpoints
            .iter()
            .filter(|ip| !new.is_some_and(|n| n.endpoints.contains(ip)))
        {
            for cip in &old.cluster_ips {
                deletions.push(args(&[
                    "--orig-dst",
                    &cip.to_string(),
                    "--reply-src",
                    &gone.to_string(),
                ]));
            }
            if let Some(np) = old.node_port {
                deletions.push(args(&[
                    "--orig-port-dst",
                    &np.to_string(),
                    "--reply-src",
                    &gone.to_string(),
                ]));
            }
        }
    }
    for (name, new) in after {
        let had_none = before.get(name).is_none_or(|o| o.endpoints.is_empty());
        if had_none && !new.endpoints.is_empty() {
            for cip in &new.cluster_ips {
                deletions.push(args(&["--orig-dst", &cip.to_string()]));
            }
        }
    }
    for mut del in deletions {
        let mut argv: Vec<String> = args(&["-D", "-p", "udp"]);
        argv.append(&mut del);
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        match netns.run("conntrack", &refs).await {
            Ok(_) => {}
            // conntrack exits 1 when nothing matched.
            Err(Error::Command { stderr, .. }) if stderr.contains("0 flow entries") => {}
            Err(e) => tracing::warn!(error = %e, "clearing stale UDP conntrack entries failed"),
        }
    }
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}
