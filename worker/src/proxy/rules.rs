//! The nftables transaction of one full sync, in the structure of kube-proxy's nftables mode
//! (`pkg/proxy/nftables`): one table owned by the proxy; base chains that only jump; verdict maps
//! from `address . protocol . port` to a per-Service-port chain; per-endpoint chains doing the DNAT
//! (and marking hairpin traffic for masquerade); `numgen random` to spread connections; per-endpoint
//! affinity sets with a timeout for `sessionAffinity: ClientIP`; a `no-endpoint-services` map that
//! rejects (connection refused) or drops; a `cluster-ips` set that rejects unknown ports.
//!
//! Every sync re-adds and flushes every chain and map it uses and refills them, so the whole
//! ruleset is replaced in one atomic transaction; affinity sets are re-added but not flushed
//! (affinity survives syncs and restarts); chains that are no longer used are flushed now and
//! deleted by a later transaction (kernels before 6.2 free a chain only a moment after the last
//! map element naming it is gone).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use ipnet::Ipv4Net;

use super::plan::{EndpointPlan, ServicePortPlan};

/// The mark bit for "masquerade this" (kube-proxy's default bit 14).
pub const MASQ_MARK: &str = "0x00004000";

/// Base chains: name, type, hook, priority (all relative to DNAT at -100).
const BASE_CHAINS: &[(&str, &str, &str, &str)] = &[
    ("filter-input", "filter", "input", "-110"),
    ("filter-forward", "filter", "forward", "-110"),
    ("filter-output", "filter", "output", "-110"),
    ("filter-output-post-dnat", "filter", "output", "-90"),
    ("nat-prerouting", "nat", "prerouting", "-100"),
    ("nat-output", "nat", "output", "-100"),
    ("nat-postrouting", "nat", "postrouting", "100"),
];

/// Regular chains that exist whatever the Services.
const FIXED_CHAINS: &[&str] = &[
    "services",
    "masquerading",
    "mark-for-masquerade",
    "endpoints-check",
    "cluster-ips-check",
    "reject-chain",
];

/// Verdict maps keyed by `ipv4_addr . inet_proto . inet_service`.
const ADDR_MAPS: &[&str] = &["service-ips", "no-endpoint-services"];
/// Verdict maps keyed by `inet_proto . inet_service` (NodePorts).
const PORT_MAPS: &[&str] = &["service-nodeports", "no-endpoint-nodeports"];

/// A rendered sync.
#[derive(Debug, Default)]
pub struct Rendered {
    /// The `nft -f` text.
    pub text: String,
    /// The per-Service and per-endpoint chains in use.
    pub chains: BTreeSet<String>,
    /// The affinity sets in use.
    pub sets: BTreeSet<String>,
}

/// Whether a chain name is one of the per-Service or per-endpoint chains (they contain a `/`).
pub fn is_service_chain(name: &str) -> bool {
    name.contains('/')
}

/// Whether a set name is an affinity set.
pub fn is_affinity_set(name: &str) -> bool {
    name.starts_with("affinity-")
}

/// Renders the transaction for `plans`. `stale_chains` (service chains that exist but are no
/// longer used) are flushed; `stale_sets` (affinity sets no longer used) are deleted.
pub fn render(
    table: &str,
    cluster_cidr: Ipv4Net,
    plans: &[ServicePortPlan],
    stale_chains: &BTreeSet<String>,
    stale_sets: &BTreeSet<String>,
) -> Rendered {
    let mut r = Renderer {
        t: format!("ip {table}"),
        out: String::with_capacity(256 + plans.len() * 1024),
        rules: String::with_capacity(plans.len() * 1024),
        elements: String::with_capacity(plans.len() * 128),
        done: Rendered::default(),
    };
    r.skeleton();
    for plan in plans {
        r.service_port(plan, cluster_cidr);
    }
    for chain in stale_chains.difference(&r.done.chains) {
        let _ = writeln!(
            r.out,
            "add chain {} {chain}\nflush chain {} {chain}",
            r.t, r.t
        );
    }
    for set in stale_sets.difference(&r.done.sets) {
        let _ = writeln!(r.out, "delete set {} {set}", r.t);
    }
    let Renderer {
        mut out,
        rules,
        elements,
        mut done,
        ..
    } = r;
    out.push_str(&rules);
    out.push_str(&elements);
    done.text = out;
    done
}

/// The transaction deleting `chains` (flushed by an earlier sync); `add` first so that a chain
/// someone else removed does not fail it.
pub fn render_chain_deletion(table: &str, chains: &BTreeSet<String>) -> String {
    let mut out = String::new();
    for chain in chains {
        let _ = writeln!(
            out,
            "add chain ip {table} {chain}\ndelete chain ip {table} {chain}"
        );
    }
    out
}

/// The transaction removing the whole table (nothing if it is absent).
pub fn render_table_deletion(table: &str) -> String {
    format!("add table ip {table}\ndelete table ip {table}\n")
}

struct Renderer {
    /// `ip TABLE`.
    t: String,
    /// Declarations: table, chains, maps, sets (they must come before rules naming them).
    out: String,
    rules: String,
    elements: String,
    done: Rendered,
}

impl Renderer {
    fn chain(&mut self, name: &str) {
        let t = &self.t;
        let _ = writeln!(self.out, "add chain {t} {name}\nflush chain {t} {name}");
    }

    fn service_chain(&mut self, name: &str) {
        if self.done.chains.insert(name.to_owned()) {
            self.chain(name);
        }
    }

    fn rule(&mut self, chain: &str, rule: &str) {
        let _ = writeln!(self.rules, "add rule {} {chain} {rule}", self.t);
    }

    fn element(&mut self, map: &str, key: &str, verdict: &str) {
        let _ = writeln!(
            self.elements,
            "add element {} {map} {{ {key} : {verdict} }}",
            self.t
        );
    }

    fn skeleton(&mut self) {
        let t = self.t.clone();
        let _ = writeln!(
            self.out,
            "add table {t} {{ comment \"Service rules (daas-worker)\"; }}"
        );
        for (name, kind, hook, prio) in BASE_CHAINS {
            let _ = writeln!(
                self.out,
                "add chain {t} {name} {{ type {kind} hook {hook} priority {prio}; }}\nflush chain {t} {name}"
            );
        }
        for name in FIXED_CHAINS {
            self.chain(name);
        }
        for map in ADDR_MAPS {
            let _ = writeln!(
                self.out,
                "add map {t} {map} {{ type ipv4_addr . inet_proto . inet_service : verdict; }}\nflush map {t} {map}"
            );
        }
        for map in PORT_MAPS {
            let _ = writeln!(
                self.out,
                "add map {t} {map} {{ type inet_proto . inet_service : verdict; }}\nflush map {t} {map}"
            );
        }
        let _ = writeln!(
            self.out,
            "add set {t} cluster-ips {{ type ipv4_addr; }}\nflush set {t} cluster-ips"
        );
        let local = "fib daddr type local ip daddr != 127.0.0.0/8";
        for (chain, rule) in [
            (
                "filter-input",
                "ct state new jump endpoints-check".to_owned(),
            ),
            (
                "filter-forward",
                "ct state new jump endpoints-check".to_owned(),
            ),
            (
                "filter-output",
                "ct state new jump endpoints-check".to_owned(),
            ),
            (
                "filter-forward",
                "ct state new jump cluster-ips-check".to_owned(),
            ),
            (
                "filter-output-post-dnat",
                "ct state new jump cluster-ips-check".to_owned(),
            ),
            ("nat-prerouting", "jump services".to_owned()),
            ("nat-output", "jump services".to_owned()),
            ("nat-postrouting", "jump masquerading".to_owned()),
            (
                "mark-for-masquerade",
                format!("meta mark set meta mark or {MASQ_MARK}"),
            ),
            (
                "masquerading",
                format!("meta mark and {MASQ_MARK} == 0 return"),
            ),
            (
                "masquerading",
                format!("meta mark set meta mark xor {MASQ_MARK}"),
            ),
            ("masquerading", "masquerade fully-random".to_owned()),
            ("reject-chain", "reject".to_owned()),
            (
                "endpoints-check",
                "ip daddr . meta l4proto . th dport vmap @no-endpoint-services".to_owned(),
            ),
            (
                "endpoints-check",
                format!("{local} meta l4proto . th dport vmap @no-endpoint-nodeports"),
            ),
            (
                "services",
                "ip daddr . meta l4proto . th dport vmap @service-ips".to_owned(),
            ),
            (
                "services",
                format!("{local} meta l4proto . th dport vmap @service-nodeports"),
            ),
            (
                "cluster-ips-check",
                "ip daddr @cluster-ips reject".to_owned(),
            ),
        ] {
            self.rule(chain, &rule);
        }
    }

    fn service_port(&mut self, plan: &ServicePortPlan, cluster_cidr: Ipv4Net) {
        let proto = plan.protocol.nft();
        let base = chain_base(plan);
        let cluster_chain = format!("service-{base}");
        let local_chain = format!("local-{base}");
        let external_chain = format!("external-{base}");
        let cat = plan.categorize();

        for ip in &plan.cluster_ips {
            let _ = writeln!(
                self.elements,
                "add element {} cluster-ips {{ {ip} }}",
                self.t
            );
        }
        for ep in &cat.reachable {
            let name = endpoint_chain(plan, ep);
            self.service_chain(&name);
        }
        let uses_cluster_chain = !cat.cluster.is_empty() && plan.uses_cluster_endpoints();
        if uses_cluster_chain {
            self.service_chain(&cluster_chain);
        }
        let uses_local_chain = !cat.local.is_empty() && plan.uses_local_endpoints();
        if uses_local_chain {
            self.service_chain(&local_chain);
        }
        let (internal_chain, mut has_internal) = if plan.internal_local {
            (&local_chain, !cat.local.is_empty())
        } else {
            (&cluster_chain, cat.has_any)
        };
        has_internal &= cat.has_any;
        let (external_policy_chain, has_external) = if plan.external_policy_local() {
            (&local_chain, cat.has_any && !cat.local.is_empty())
        } else {
            (&cluster_chain, cat.has_any)
        };
        let uses_external_chain = cat.has_any && plan.externally_accessible();
        if uses_external_chain {
            self.service_chain(&external_chain);
        }
        let (internal_verdict, external_verdict) = if cat.has_any {
            ("drop", "drop")
        } else {
            ("goto reject-chain", "goto reject-chain")
        };

        for ip in &plan.cluster_ips {
            let key = format!("{ip} . {proto} . {}", plan.port);
            if has_internal {
                self.element("service-ips", &key, &format!("goto {internal_chain}"));
            } else {
                self.element("no-endpoint-services", &key, internal_verdict);
            }
        }
        for ip in &plan.external_ips {
            let key = format!("{ip} . {proto} . {}", plan.port);
            if cat.has_any {
                self.element("service-ips", &key, &format!("goto {external_chain}"));
            }
            if !has_external {
                self.element("no-endpoint-services", &key, external_verdict);
            }
        }
        if let Some(node_port) = plan.node_port {
            let key = format!("{proto} . {node_port}");
            if cat.has_any {
                self.element("service-nodeports", &key, &format!("goto {external_chain}"));
            }
            if !has_external {
                self.element("no-endpoint-nodeports", &key, external_verdict);
            }
        }

        if has_internal {
            // Traffic to a ClusterIP from outside the pod network (the node itself, a host routing
            // the service CIDR here) is masqueraded so that replies come back through this node.
            for ip in &plan.cluster_ips {
                self.rule(
                    internal_chain,
                    &format!(
                        "ip daddr {ip} {proto} dport {} ip saddr != {cluster_cidr} jump mark-for-masquerade",
                        plan.port
                    ),
                );
            }
        }
        if uses_external_chain {
            if !plan.external_policy_local() {
                self.rule(&external_chain, "jump mark-for-masquerade");
            } else {
                // Pods and the node itself reach a Local-policy NodePort as if from inside the
                // cluster: any endpoint, the node's own traffic masqueraded.
                self.rule(
                    &external_chain,
                    &format!("ip saddr {cluster_cidr} goto {cluster_chain}"),
                );
                self.rule(
                    &external_chain,
                    "fib saddr type local jump mark-for-masquerade",
                );
                self.rule(
                    &external_chain,
                    &format!("fib saddr type local goto {cluster_chain}"),
                );
            }
            if has_external {
                self.rule(&external_chain, &format!("goto {external_policy_chain}"));
            }
        }
        if let Some(timeout) = plan.affinity_timeout {
            for ep in &cat.reachable {
                let set = affinity_set(plan, ep, timeout);
                if self.done.sets.insert(set.clone()) {
                    let _ = writeln!(
                        self.out,
                        "add set {} {set} {{ type ipv4_addr; flags dynamic,timeout; timeout {timeout}s; }}",
                        self.t
                    );
                }
            }
        }
        if uses_cluster_chain {
            self.dispatch(plan, &cluster_chain, &cat.cluster);
        }
        if uses_local_chain {
            self.dispatch(plan, &local_chain, &cat.local);
        }
        for ep in &cat.reachable {
            let chain = endpoint_chain(plan, ep);
            self.rule(
                &chain,
                &format!("ip saddr {} jump mark-for-masquerade", ep.ip),
            );
            if let Some(timeout) = plan.affinity_timeout {
                let set = affinity_set(plan, ep, timeout);
                self.rule(&chain, &format!("update @{set} {{ ip saddr }}"));
            }
            self.rule(
                &chain,
                &format!("meta l4proto {proto} dnat to {}:{}", ep.ip, ep.port),
            );
        }
    }

    /// The rules of a policy chain: affinity first, then a random pick among `endpoints`.
    fn dispatch(&mut self, plan: &ServicePortPlan, chain: &str, endpoints: &[&EndpointPlan]) {
        if let Some(timeout) = plan.affinity_timeout {
            for ep in endpoints {
                let set = affinity_set(plan, ep, timeout);
                let target = endpoint_chain(plan, ep);
                self.rule(chain, &format!("ip saddr @{set} goto {target}"));
            }
        }
        let mut vmap = String::new();
        for (i, ep) in endpoints.iter().enumerate() {
            if i > 0 {
                vmap.push_str(", ");
            }
            let _ = write!(vmap, "{i} : goto {}", endpoint_chain(plan, ep));
        }
        self.rule(
            chain,
            &format!("numgen random mod {} vmap {{ {vmap} }}", endpoints.len()),
        );
    }
}

/// `HASH-ns/name/proto/port`: unique per Service port, readable, and (with its `/`) never one of
/// the fixed chains' names.
fn chain_base(plan: &ServicePortPlan) -> String {
    hashed(&format!(
        "{}/{}/{}/{}",
        plan.namespace,
        plan.service,
        plan.protocol.nft(),
        plan.port_name
    ))
}

fn endpoint_chain(plan: &ServicePortPlan, ep: &EndpointPlan) -> String {
    format!(
        "endpoint-{}",
        hashed(&format!(
            "{}/{}/{}/{}__{}/{}",
            plan.namespace,
            plan.service,
            plan.protocol.nft(),
            plan.port_name,
            ep.ip,
            ep.port
        ))
    )
}

/// The affinity set of an endpoint; the timeout is part of the name, so a changed timeout makes a
/// new set instead of a conflicting re-definition.
fn affinity_set(plan: &ServicePortPlan, ep: &EndpointPlan, timeout: u32) -> String {
    format!(
        "affinity-{}",
        hashed(&format!(
            "{}/{}/{}/{}__{}/{}/{timeout}",
            plan.namespace,
            plan.service,
            plan.protocol.nft(),
            plan.port_name,
            ep.ip,
            ep.port
        ))
    )
}

/// `name` prefixed with 8 hex digits of its FNV-1a hash (names that differ in one digit still look
/// different at a glance), cut to nftables' 256-byte name limit.
pub(crate) fn hashed(name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut out = format!("{:08X}-{name}", h >> 32);
    out.truncate(240);
    out
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::super::plan::Protocol;
    use super::*;

    fn plan(endpoints: Vec<EndpointPlan>) -> ServicePortPlan {
        ServicePortPlan {
            namespace: "ns".into(),
            service: "web".into(),
            port_name: "http".into(),
            protocol: Protocol::Tcp,
            cluster_ips: vec![Ipv4Addr::new(10, 43, 0, 5)],
            port: 80,
            node_port: None,
            external_ips: vec![],
            affinity_timeout: None,
            internal_local: false,
            external_local: false,
            endpoints,
        }
    }

    fn ep(last: u8) -> EndpointPlan {
        EndpointPlan {
            ip: Ipv4Addr::new(10, 42, 1, last),
            port: 8080,
            local: true,
            ready: true,
            serving: true,
            terminating: false,
        }
    }

    fn cidr() -> Ipv4Net {
        "10.42.0.0/16".parse().unwrap()
    }

    #[test]
    fn a_service_without_endpoints_is_rejected_not_dropped() {
        let r = render(
            "t",
            cidr(),
            &[plan(vec![])],
            &BTreeSet::new(),
            &BTreeSet::new(),
        );
        assert!(r.text.contains(
            "add element ip t no-endpoint-services { 10.43.0.5 . tcp . 80 : goto reject-chain }"
        ));
        assert!(!r.text.contains("add element ip t service-ips"));
        assert!(r.chains.is_empty());
    }

    #[test]
    fn endpoints_are_picked_at_random_and_dnatted_with_hairpin_masquerade() {
        let r = render(
            "t",
            cidr(),
            &[plan(vec![ep(2), ep(3)])],
            &BTreeSet::new(),
            &BTreeSet::new(),
        );
        let svc = r.chains.iter().find(|c| c.starts_with("service-")).unwrap();
        assert!(r.text.contains(&format!(
            "add element ip t service-ips {{ 10.43.0.5 . tcp . 80 : goto {svc} }}"
        )));
        assert!(r.text.contains("numgen random mod 2 vmap"));
        assert!(
            r.text
                .contains("ip saddr 10.42.1.2 jump mark-for-masquerade")
        );
        assert!(r.text.contains("meta l4proto tcp dnat to 10.42.1.3:8080"));
        assert_eq!(r.chains.len(), 3);
    }

    #[test]
    fn client_ip_affinity_uses_per_endpoint_timeout_sets() {
        let mut p = plan(vec![ep(2)]);
        p.affinity_timeout = Some(60);
        let r = render("t", cidr(), &[p], &BTreeSet::new(), &BTreeSet::new());
        let set = r.sets.iter().next().unwrap();
        assert!(r.text.contains(&format!(
            "add set ip t {set} {{ type ipv4_addr; flags dynamic,timeout; timeout 60s; }}"
        )));
        assert!(r.text.contains(&format!("update @{set} {{ ip saddr }}")));
        assert!(r.text.contains(&format!("ip saddr @{set} goto endpoint-")));
        // Affinity sets are never flushed by a sync.
        assert!(!r.text.contains(&format!("flush set ip t {set}")));
    }

    #[test]
    fn internal_local_without_local_endpoints_drops() {
        let mut remote = ep(2);
        remote.local = false;
        let mut p = plan(vec![remote]);
        p.internal_local = true;
        let r = render("t", cidr(), &[p], &BTreeSet::new(), &BTreeSet::new());
        assert!(
            r.text
                .contains("no-endpoint-services { 10.43.0.5 . tcp . 80 : drop }")
        );
    }

    #[test]
    fn stale_chains_are_flushed_and_stale_sets_deleted() {
        let stale: BTreeSet<String> = ["service-X-old/svc/tcp/".to_owned()].into();
        let sets: BTreeSet<String> = ["affinity-Y".to_owned()].into();
        let r = render("t", cidr(), &[], &stale, &sets);
        assert!(r.text.contains("flush chain ip t service-X-old/svc/tcp/"));
        assert!(r.text.contains("delete set ip t affinity-Y"));
    }
}
