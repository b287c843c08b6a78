//! NetworkPolicies (networking.k8s.io/v1) turned into per-pod allow lists for this node's pods,
//! with upstream's semantics:
//!
//! - A pod is isolated for ingress (egress) when a policy in its namespace selects it and lists
//!   `Ingress` (`Egress`) in `policyTypes`; unset `policyTypes` means `Ingress`, plus `Egress` when
//!   the policy has egress rules. An isolated pod allows only what the union of those policies'
//!   rules allows; a policy with the type and no rules allows nothing (default deny).
//! - A rule allows traffic that matches one of its peers (none listed: any) and one of its ports
//!   (none listed: any). A peer is pods of the policy's namespace (`podSelector`), pods of the
//!   selected namespaces (`namespaceSelector`), both at once (pods matching the pod selector in the
//!   selected namespaces), or `ipBlock` (a CIDR without its `except` CIDRs).
//! - Ports: a protocol (TCP when unset), a number or a range up to `endPort`, or a named container
//!   port: resolved against the selected pod for ingress, against each destination pod for egress.
//! - Replies of allowed connections are always allowed (connection tracking), and so is traffic
//!   between a pod and its own node.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::selector::matches;
use crate::network::model::ClusterState;

/// The label every namespace carries with its own name.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A pod, as policies see it.
#[derive(Debug, Clone)]
pub struct PodView {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Address.
    pub ip: Ipv4Addr,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Node.
    pub node: String,
    /// Named container ports: (name, protocol) → number.
    pub named_ports: BTreeMap<(String, String), u16>,
}

impl PodView {
    /// The view of a pod that has an address, is not done and is not on the host network.
    pub fn of(pod: &Pod) -> Option<Self> {
        let spec = pod.spec.as_ref()?;
        if spec.host_network == Some(true) {
            return None;
        }
        let status = pod.status.as_ref()?;
        if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
            return None;
        }
        let ip = status.pod_ip.as_deref()?.parse().ok()?;
        let mut named_ports = BTreeMap::new();
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            for p in c.ports.iter().flatten() {
                if let (Some(name), Ok(number)) = (&p.name, u16::try_from(p.container_port)) {
                    let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
                    named_ports.insert((name.clone(), proto), number);
                }
            }
        }
        Some(Self {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            ip,
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            node: spec.node_name.clone().unwrap_or_default(),
            named_ports,
        })
    }
}

/// Who a rule matches on the other side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerMatch {
    /// Anyone.
    Any,
    /// These pod addresses.
    Pods(Vec<Ipv4Addr>),
    /// A CIDR, less some CIDRs.
    Block {
        /// The CIDR.
        cidr: Ipv4Net,
        /// What it excludes.
        except: Vec<Ipv4Net>,
    },
}

/// Which ports a rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortMatch {
    /// Any protocol and port.
    Any,
    /// One protocol, any port.
    Protocol(String),
    /// One protocol, a port range (`from == to` for one port).
    Range {
        /// `tcp`, `udp` or `sctp`.
        protocol: String,
        /// First port.
        from: u16,
        /// Last port.
        to: u16,
    },
    /// One protocol and port, on one destination address only (an egress named port).
    At {
        /// The destination pod.
        ip: Ipv4Addr,
        /// `tcp`, `udp` or `sctp`.
        protocol: String,
        /// The port.
        port: u16,
    },
}

/// One allow rule: a peer and a port match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    /// The peer.
    pub peer: PeerMatch,
    /// The ports.
    pub ports: PortMatch,
}

/// The allow lists of one isolated local pod (`None`: not isolated in that direction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPolicy {
    /// `namespace/name`.
    pub pod: String,
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// Ingress allows when isolated for ingress.
    pub ingress: Option<Vec<Allow>>,
    /// Egress allows when isolated for egress.
    pub egress: Option<Vec<Allow>>,
}

fn policy_types(policy: &NetworkPolicy) -> (bool, bool) {
    let Some(spec) = policy.spec.as_ref() else {
        return (false, false);
    };
    match spec.policy_types.as_deref() {
        Some(types) if !types.is_empty() => (
            types.iter().any(|t| t == "Ingress"),
            types.iter().any(|t| t == "Egress"),
        ),
        _ => (true, spec.egress.as_ref().is_some_and(|e| !e.is_empty())),
    }
}

struct Cluster<'a> {
    pods: Vec<PodView>,
    namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    _state: &'a ClusterState,
}

impl Cluster<'_> {
    fn ns_labels(&self, ns: &str) -> BTreeMap<String, String> {
        let mut labels = self.namespace_labels.get(ns).cloned().unwrap_or_default();
        labels.insert(NAMESPACE_NAME_LABEL.into(), ns.into());
        labels
    }

    /// The pods a peer selects (`None` for an ipBlock peer).
    fn peer_pods(&self, peer: &NetworkPolicyPeer, policy_ns: &str) -> Option<Vec<&PodView>> {
        if peer.ip_block.is_some() {
            return None;
        }
        Some(
            self.pods
                .iter()
                .filter(|p| match &peer.namespace_selector {
                    Some(sel) => matches(sel, &self.ns_labels(&p.namespace)),
                    None => p.namespace == policy_ns,
                })
                .filter(|p| {
                    peer.pod_selector
                        .as_ref()
                        .is_none_or(|sel| matches(sel, &p.labels))
                })
                .collect(),
        )
    }
}

/// The allow lists of the pods of `node` that policies isolate, sorted by pod.
pub fn compile(state: &ClusterState, node: &str) -> Vec<PodPolicy> {
    let cluster = Cluster {
        pods: state.pods.values().filter_map(|p| PodView::of(p)).collect(),
        namespace_labels: state
            .namespaces
            .iter()
            .map(|(n, ns)| (n.clone(), ns.metadata.labels.clone().unwrap_or_default()))
            .collect(),
        _state: state,
    };
    let mut out = Vec::new();
    for pod in cluster.pods.iter().filter(|p| p.node == node) {
        let mut ingress: Option<Vec<Allow>> = None;
        let mut egress: Option<Vec<Allow>> = None;
        for policy in state.network_policies.values() {
            if policy.metadata.namespace.as_deref() != Some(pod.namespace.as_str()) {
                continue;
            }
            let Some(spec) = policy.spec.as_ref() else {
                continue;
            };
            if !matches(&spec.pod_selector.clone().unwrap_or_default(), &pod.labels) {
                continue;
            }
            let (is_ingress, is_egress) = policy_types(policy);
            if is_ingress {
                let list = ingress.get_or_insert_with(Vec::new);
                for rule in spec.ingress.iter().flatten() {
                    allows(
                        &cluster,
                        &pod.namespace,
                        rule.from.as_deref(),
                        rule.ports.as_deref(),
                        Direction::Ingress(pod),
                        list,
                    );
                }
            }
            if is_egress {
                let list = egress.get_or_insert_with(Vec::new);
                for rule in spec.egress.iter().flatten() {
                    allows(
                        &cluster,
                        &pod.namespace,
                        rule.to.as_deref(),
                        rule.ports.as_deref(),
                        Direction::Egress,
                        list,
                    );
                }
            }
        }
        if ingress.is_some() || egress.is_some() {
            out.push(PodPolicy {
                pod: format!("{}/{}", pod.namespace, pod.name),
                ip: pod.ip,
                ingress,
                egress,
            });
        }
    }
    out.sort_by(|a, b| a.pod.cmp(&b.pod));
    out
}

enum Direction<'a> {
    /// Named ports resolve against the selected pod.
    Ingress(&'a PodView),
    /// Named ports resolve against each destination pod.
    Egress,
}

fn protocol_of(p: &NetworkPolicyPort) -> String {
    p.protocol.as_deref().unwrap_or("TCP").to_owned()
}

fn allows(
    cluster: &Cluster<'_>,
    policy_ns: &str,
    peers: Option<&[NetworkPolicyPeer]>,
    ports: Option<&[NetworkPolicyPort]>,
    direction: Direction<'_>,
    out: &mut Vec<Allow>,
) {
    // (match, the pods it selects: for egress named ports)
    let mut peer_matches: Vec<(PeerMatch, Option<Vec<&PodView>>)> = Vec::new();
    match peers {
        None | Some([]) => peer_matches.push((PeerMatch::Any, Some(cluster.pods.iter().collect()))),
        Some(list) => {
            for peer in list {
                if let Some(block) = &peer.ip_block {
                    let Ok(cidr) = block.cidr.parse::<Ipv4Net>() else {
                        continue; // IPv6 blocks do not apply to IPv4 pods
                    };
                    let except: Vec<Ipv4Net> = block
                        .except
                        .iter()
                        .flatten()
                        .filter_map(|e| e.parse().ok())
                        .collect();
                    let pods = cluster
                        .pods
                        .iter()
                        .filter(|p| {
                            cidr.contains(&p.ip) && !except.iter().any(|e| e.contains(&p.ip))
                        })
                        .collect();
                    peer_matches.push((PeerMatch::Block { cidr, except }, Some(pods)));
                } else if let Some(pods) = cluster.peer_pods(peer, policy_ns) {
                    let ips = pods.iter().map(|p| p.ip).collect();
                    peer_matches.push((PeerMatch::Pods(ips), Some(pods)));
                }
            }
        }
    }
    let port_list: Vec<&NetworkPolicyPort> = ports.into_iter().flatten().collect();
    for (peer, pods) in &peer_matches {
        if matches!(peer, PeerMatch::Pods(ips) if ips.is_empty()) {
            continue;
        }
        if port_list.is_empty() {
            out.push(Allow {
                peer: peer.clone(),
                ports: PortMatch::Any,
            });
            continue;
        }
        for p in &port_list {
            let protocol = protocol_of(p);
            let nft_proto = protocol.to_ascii_lowercase();
            match &p.port {
                None => out.push(Allow {
                    peer: peer.clone(),
                    ports: PortMatch::Protocol(nft_proto),
                }),
                Some(IntOrString::Int(n)) => {
                    let Ok(from) = u16::try_from(*n) else {
                        continue;
                    };
                    let to = p
                        .end_port
                        .and_then(|e| u16::try_from(e).ok())
                        .filter(|e| *e >= from)
                        .unwrap_or(from);
                    out.push(Allow {
                        peer: peer.clone(),
                        ports: PortMatch::Range {
                            protocol: nft_proto,
                            from,
                            to,
                        },
                    });
                }
                Some(IntOrString::String(name)) => match &direction {
                    Direction::Ingress(target) => {
                        if let Some(port) =
                            target.named_ports.get(&(name.clone(), protocol.clone()))
                        {
                            out.push(Allow {
                                peer: peer.clone(),
                                ports: PortMatch::Range {
                                    protocol: nft_proto,
                                    from: *port,
                                    to: *port,
                                },
                            });
                        }
                    }
                    Direction::Egress => {
                        for dst in pods.iter().flatten() {
                            if let Some(port) =
                                dst.named_ports.get(&(name.clone(), protocol.clone()))
                            {
                                out.push(Allow {
                                    peer: PeerMatch::Any,
                                    ports: PortMatch::At {
                                        ip: dst.ip,
                                        protocol: nft_proto.clone(),
                                        port: *port,
                                    },
                                });
                            }
                        }
                    }
                },
            }
        }
    }
}
