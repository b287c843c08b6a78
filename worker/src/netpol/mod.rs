//! NetworkPolicy enforcement on each worker, in its own nftables table `ip daas-netpol`, as k3s's
//! embedded network-policy controller (kube-router) enforces it with iptables.
//!
//! Each worker enforces the policies of its own pods, on the `forward` hook (bridged traffic
//! between pods of one node reaches it through `br_netfilter`, set up by
//! [`crate::network::PodNetwork::setup`]): an `egress` base chain checks packets from an
//! egress-isolated local pod, then an `ingress` base chain checks packets to an ingress-isolated
//! local pod; each isolated pod has a chain of its allow rules ending in `drop`. Established and
//! related packets pass first, so replies flow and policy changes never cut connections they
//! allowed. Traffic between a pod and its own node (the node's addresses, the node-local cluster
//! DNS) does not cross `forward` and is always allowed, as upstream requires. Service traffic is
//! checked after DNAT, against the endpoint pod. Each sync replaces the table in one transaction.
//! See [`compile`] for the semantics.

pub mod compile;
pub mod selector;

use std::fmt::Write as _;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::network::error::Result;
use crate::network::exec::Netns;
use crate::network::model::{ClusterModel, ClusterState, ObjectKind};
use compile::{Allow, PeerMatch, PodPolicy, PortMatch};

/// The table's name.
pub const TABLE: &str = "daas-netpol";

/// The kinds the enforcement needs listed before it programs anything.
pub const NEEDS: &[ObjectKind] = &[
    ObjectKind::Pod,
    ObjectKind::Namespace,
    ObjectKind::NetworkPolicy,
];

fn set<T: std::fmt::Display>(items: &[T]) -> String {
    let mut s = String::from("{ ");
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{it}");
    }
    s.push_str(" }");
    s
}

/// One nft rule for `allow`, `peer_field` being `saddr` (ingress) or `daddr` (egress).
fn rule(allow: &Allow, peer_field: &str) -> String {
    let mut r = String::new();
    match &allow.peer {
        PeerMatch::Any => {}
        PeerMatch::Pods(ips) => {
            let _ = write!(r, "ip {peer_field} {} ", set(ips));
        }
        PeerMatch::Block { cidr, except } => {
            let _ = write!(r, "ip {peer_field} {cidr} ");
            if !except.is_empty() {
                let _ = write!(r, "ip {peer_field} != {} ", set(except));
            }
        }
    }
    match &allow.ports {
        PortMatch::Any => {}
        PortMatch::Protocol(p) => {
            let _ = write!(r, "meta l4proto {p} ");
        }
        PortMatch::Range { protocol, from, to } if from == to => {
            let _ = write!(r, "meta l4proto {protocol} th dport {from} ");
        }
        PortMatch::Range { protocol, from, to } => {
            let _ = write!(r, "meta l4proto {protocol} th dport {from}-{to} ");
        }
        PortMatch::At { ip, protocol, port } => {
            let _ = write!(r, "ip daddr {ip} meta l4proto {protocol} th dport {port} ");
        }
    }
    r.push_str("accept");
    r
}

/// The transaction replacing the table with the rules of `policies`.
pub fn render(policies: &[PodPolicy]) -> String {
    let mut chains = String::new();
    let mut ingress_map = Vec::new();
    let mut egress_map = Vec::new();
    for p in policies {
        for (dir, allows, field, map) in [
            ("in", &p.ingress, "saddr", &mut ingress_map),
            ("out", &p.egress, "daddr", &mut egress_map),
        ] {
            let Some(allows) = allows else { continue };
            let chain = format!("{dir}-{}", crate::proxy::rules::hashed(&p.pod));
            let _ = writeln!(chains, "\tchain {chain} {{");
            for a in allows {
                let _ = writeln!(chains, "\t\t{}", rule(a, field));
            }
            let _ = writeln!(chains, "\t\tdrop\n\t}}");
            map.push(format!("{} : jump {chain}", p.ip));
        }
    }
    let map = |name: &str, elements: &[String]| {
        if elements.is_empty() {
            format!("\tmap {name} {{ type ipv4_addr : verdict; }}\n")
        } else {
            format!(
                "\tmap {name} {{ type ipv4_addr : verdict; elements = {}; }}\n",
                set(elements)
            )
        }
    };
    format!(
        "table ip {TABLE} {{}}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n\
         \tcomment \"NetworkPolicy (daas-worker)\"\n\
         {}{}\
         \tchain egress {{\n\t\ttype filter hook forward priority filter - 5; policy accept;\n\
         \t\tct state established,related accept\n\t\tip saddr vmap @egress-pods\n\t}}\n\
         \tchain ingress {{\n\t\ttype filter hook forward priority filter; policy accept;\n\
         \t\tct state established,related accept\n\t\tip daddr vmap @ingress-pods\n\t}}\n\
         {chains}}}\n",
        map("ingress-pods", &ingress_map),
        map("egress-pods", &egress_map),
    )
}

/// NetworkPolicy enforcement for one node.
#[derive(Debug)]
pub struct NetworkPolicies {
    netns: Netns,
    node_name: String,
    last: Option<Vec<PodPolicy>>,
}

impl NetworkPolicies {
    /// Enforcement for the pods of `node_name`, in `netns`.
    pub fn new(netns: Netns, node_name: impl Into<String>) -> Self {
        Self {
            netns,
            node_name: node_name.into(),
            last: None,
        }
    }

    /// Programs the rules `state` implies (always).
    ///
    /// # Errors
    /// When `nft` fails.
    pub async fn sync(&mut self, state: &ClusterState) -> Result<()> {
        let policies = compile::compile(state, &self.node_name);
        self.apply(policies).await
    }

    async fn apply(&mut self, policies: Vec<PodPolicy>) -> Result<()> {
        let text = render(&policies);
        self.netns
            .run_with_stdin("nft", &["-f", "-"], Some(text.as_bytes()))
            .await?;
        self.last = Some(policies);
        Ok(())
    }

    /// Keeps the rules in step with the model until `cancel` (once Pods, Namespaces and
    /// NetworkPolicies are synced), re-applying every `resync` and retrying after `retry`.
    pub async fn run(
        mut self,
        model: ClusterModel,
        resync: Duration,
        retry: Duration,
        cancel: CancellationToken,
    ) {
        let mut rx = model.subscribe();
        loop {
            let state = rx.borrow_and_update().clone();
            let mut wait = resync;
            if state.is_synced(NEEDS) {
                let policies = compile::compile(&state, &self.node_name);
                if self.last.as_ref() != Some(&policies)
                    && let Err(e) = self.apply(policies).await
                {
                    tracing::warn!(error = %e, "network policies: sync failed; retrying");
                    self.last = None;
                    wait = retry;
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                changed = rx.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(wait) => self.last = None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn isolated_pods_get_a_chain_ending_in_drop() {
        let text = render(&[PodPolicy {
            pod: "shop/web".into(),
            ip: Ipv4Addr::new(10, 42, 1, 5),
            ingress: Some(vec![
                Allow {
                    peer: PeerMatch::Pods(vec![Ipv4Addr::new(10, 42, 2, 3)]),
                    ports: PortMatch::Range {
                        protocol: "tcp".into(),
                        from: 80,
                        to: 90,
                    },
                },
                Allow {
                    peer: PeerMatch::Block {
                        cidr: "10.0.0.0/8".parse().unwrap(),
                        except: vec!["10.1.0.0/16".parse().unwrap()],
                    },
                    ports: PortMatch::Any,
                },
            ]),
            egress: Some(vec![]),
        }]);
        let hash = crate::proxy::rules::hashed("shop/web");
        assert!(text.contains(&format!("elements = {{ 10.42.1.5 : jump in-{hash} }}")));
        assert!(text.contains(&format!("elements = {{ 10.42.1.5 : jump out-{hash} }}")));
        assert!(text.contains("ip saddr { 10.42.2.3 } meta l4proto tcp th dport 80-90 accept"));
        assert!(text.contains("ip saddr 10.0.0.0/8 ip saddr != { 10.1.0.0/16 } accept"));
        assert!(text.contains(&format!("chain out-{hash} {{\n\t\tdrop\n\t}}")));
    }
}
