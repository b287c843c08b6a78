//! What the proxy programs, computed from Services and EndpointSlices: one [`ServicePortPlan`] per
//! Service port, with its endpoints categorized as upstream's `CategorizeEndpoints` does
//! (`pkg/proxy/topology.go`, without topology hints): ready endpoints, or serving-and-terminating
//! ones when none is ready, separately for the Cluster and the Local traffic policies.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;

use crate::network::model::ClusterState;

/// A transport protocol of a Service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The protocol of a Service port (`TCP` when unset).
    pub fn parse(s: Option<&str>) -> Option<Self> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }

    /// nftables' name for it.
    pub fn nft(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }
}

/// One endpoint of a Service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EndpointPlan {
    /// The endpoint's address.
    pub ip: Ipv4Addr,
    /// The endpoint's port.
    pub port: u16,
    /// Whether it runs on this node.
    pub local: bool,
    /// `conditions.ready` (unset counts as ready).
    pub ready: bool,
    /// `conditions.serving` (unset: as ready).
    pub serving: bool,
    /// `conditions.terminating` (unset: not terminating).
    pub terminating: bool,
}

/// Everything the proxy needs of one Service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePortPlan {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub service: String,
    /// The port's name (may be empty).
    pub port_name: String,
    /// The protocol.
    pub protocol: Protocol,
    /// The Service's IPv4 ClusterIPs.
    pub cluster_ips: Vec<Ipv4Addr>,
    /// The Service port.
    pub port: u16,
    /// The NodePort, if any.
    pub node_port: Option<u16>,
    /// External IPs and load-balancer ingress IPs.
    pub external_ips: Vec<Ipv4Addr>,
    /// `sessionAffinity: ClientIP`'s timeout in seconds.
    pub affinity_timeout: Option<u32>,
    /// `internalTrafficPolicy: Local`.
    pub internal_local: bool,
    /// `externalTrafficPolicy: Local` (only meaningful when externally accessible).
    pub external_local: bool,
    /// All endpoints of the port, in a stable order.
    pub endpoints: Vec<EndpointPlan>,
}

/// The endpoints a Service port uses from this node, split as upstream does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Categorized<'a> {
    /// Endpoints for the Cluster traffic policy.
    pub cluster: Vec<&'a EndpointPlan>,
    /// Endpoints for the Local traffic policy.
    pub local: Vec<&'a EndpointPlan>,
    /// The union of both (each endpoint once).
    pub reachable: Vec<&'a EndpointPlan>,
    /// Whether the Service has usable endpoints anywhere in the cluster.
    pub has_any: bool,
}

impl ServicePortPlan {
    /// `namespace/service:port` (the port's name, or its number when unnamed).
    pub fn display_name(&self) -> String {
        if self.port_name.is_empty() {
            format!("{}/{}:{}", self.namespace, self.service, self.port)
        } else {
            format!("{}/{}:{}", self.namespace, self.service, self.port_name)
        }
    }

    /// Reachable from outside the cluster (a NodePort, external or load-balancer IPs).
    pub fn externally_accessible(&self) -> bool {
        self.node_port.is_some() || !self.external_ips.is_empty()
    }

    /// The external traffic policy is Local and applies.
    pub fn external_policy_local(&self) -> bool {
        self.externally_accessible() && self.external_local
    }

    /// Whether the Cluster policy's endpoint list is needed.
    pub fn uses_cluster_endpoints(&self) -> bool {
        !self.internal_local || self.externally_accessible()
    }

    /// Whether the Local policy's endpoint list is needed.
    pub fn uses_local_endpoints(&self) -> bool {
        self.internal_local || self.external_policy_local()
    }

    /// The endpoints this node uses, as upstream's `CategorizeEndpoints`.
    pub fn categorize(&self) -> Categorized<'_> {
        let eps = &self.endpoints;
        let mut out = Categorized::default();
        if eps.is_empty() {
            return out;
        }
        if self.uses_cluster_endpoints() {
            out.cluster = eps.iter().filter(|e| e.ready).collect();
            if out.cluster.is_empty() {
                out.cluster = eps.iter().filter(|e| e.serving && e.terminating).collect();
            }
            out.has_any = !out.cluster.is_empty();
        }
        if !self.uses_local_endpoints() {
            out.reachable = out.cluster.clone();
            return out;
        }
        let mut local_ready = false;
        let mut local_serving_terminating = false;
        for e in eps {
            if e.ready {
                out.has_any = true;
                local_ready |= e.local;
            } else if e.serving && e.terminating {
                out.has_any = true;
                local_serving_terminating |= e.local;
            }
        }
        if local_ready {
            out.local = eps.iter().filter(|e| e.local && e.ready).collect();
        } else if local_serving_terminating {
            out.local = eps
                .iter()
                .filter(|e| e.local && e.serving && e.terminating)
                .collect();
        }
        if !self.uses_cluster_endpoints() {
            out.reachable = out.local.clone();
            return out;
        }
        let mut all = out.cluster.clone();
        for e in &out.local {
            if !all.iter().any(|c| c.ip == e.ip && c.port == e.port) {
                all.push(e);
            }
        }
        out.reachable = all;
        out
    }
}

/// The plans of every proxied Service port in `state`, sorted by name. Headless and ExternalName
/// Services are not proxied, nor Services whose ClusterIP is in `skip_ips` (the node's own DNS).
pub fn plans(state: &ClusterState, node_name: &str, skip_ips: &[Ipv4Addr]) -> Vec<ServicePortPlan> {
    let mut out = Vec::new();
    for (key, svc) in &state.services {
        let Some(spec) = svc.spec.as_ref() else {
            continue;
        };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let cluster_ips = cluster_ips(svc);
        if cluster_ips.is_empty() || cluster_ips.iter().any(|ip| skip_ips.contains(ip)) {
            continue;
        }
        let mut external_ips: Vec<Ipv4Addr> = spec
            .external_ips
            .iter()
            .flatten()
            .filter_map(|s| s.parse().ok())
            .collect();
        external_ips.extend(
            svc.status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|i| i.ip.as_deref()?.parse::<Ipv4Addr>().ok()),
        );
        let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .filter(|t| *t > 0)
                .unwrap_or(10_800)
        });
        let endpoints = endpoints_by_port(state, &key.namespace, &key.name, node_name);
        for port in spec.ports.iter().flatten() {
            let Some(protocol) = Protocol::parse(port.protocol.as_deref()) else {
                continue;
            };
            let Ok(number) = u16::try_from(port.port) else {
                continue;
            };
            let port_name = port.name.clone().unwrap_or_default();
            let mut eps = endpoints
                .get(&(port_name.clone(), protocol))
                .cloned()
                .unwrap_or_default();
            eps.sort();
            eps.dedup_by(|a, b| a.ip == b.ip && a.port == b.port);
            out.push(ServicePortPlan {
                namespace: key.namespace.clone(),
                service: key.name.clone(),
                port_name,
                protocol,
                cluster_ips: cluster_ips.clone(),
                port: number,
                node_port: port
                    .node_port
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p != 0),
                external_ips: external_ips.clone(),
                affinity_timeout,
                internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
                external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
                endpoints: eps,
            });
        }
    }
    out
}

/// The IPv4 ClusterIPs of a Service (none for headless ones).
pub fn cluster_ips(svc: &Service) -> Vec<Ipv4Addr> {
    let Some(spec) = svc.spec.as_ref() else {
        return Vec::new();
    };
    let mut ips: Vec<Ipv4Addr> = spec
        .cluster_ips
        .iter()
        .flatten()
        .chain(spec.cluster_ip.iter())
        .filter_map(|s| s.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

type PortKey = (String, Protocol);

fn endpoints_by_port(
    state: &ClusterState,
    namespace: &str,
    service: &str,
    node_name: &str,
) -> BTreeMap<PortKey, Vec<EndpointPlan>> {
    let mut out: BTreeMap<PortKey, Vec<EndpointPlan>> = BTreeMap::new();
    for slice in state.slices_of(namespace, service) {
        if slice.address_type != "IPv4" {
            continue;
        }
        for port in slice.ports.iter().flatten() {
            let (Some(number), Some(protocol)) = (
                port.port.and_then(|p| u16::try_from(p).ok()),
                Protocol::parse(port.protocol.as_deref()),
            ) else {
                continue;
            };
            let list = out
                .entry((port.name.clone().unwrap_or_default(), protocol))
                .or_default();
            for ep in &slice.endpoints {
                // As kube-proxy: the first address of an endpoint.
                let Some(ip) = ep.addresses.first().and_then(|a| a.parse().ok()) else {
                    continue;
                };
                let cond = ep.conditions.as_ref();
                let ready = cond.and_then(|c| c.ready).unwrap_or(true);
                list.push(EndpointPlan {
                    ip,
                    port: number,
                    local: ep.node_name.as_deref() == Some(node_name),
                    ready,
                    serving: cond.and_then(|c| c.serving).unwrap_or(ready),
                    terminating: cond.and_then(|c| c.terminating).unwrap_or(false),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(last: u8, local: bool, ready: bool, serving: bool, terminating: bool) -> EndpointPlan {
        EndpointPlan {
            ip: Ipv4Addr::new(10, 42, 0, last),
            port: 80,
            local,
            ready,
            serving,
            terminating,
        }
    }

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

    fn ips(eps: &[&EndpointPlan]) -> Vec<u8> {
        eps.iter().map(|e| e.ip.octets()[3]).collect()
    }

    #[test]
    fn ready_endpoints_only_while_any_is_ready() {
        let p = plan(vec![
            ep(1, false, true, true, false),
            ep(2, false, false, true, true),
        ]);
        let c = p.categorize();
        assert_eq!(ips(&c.cluster), [1]);
        assert!(c.has_any);
    }

    #[test]
    fn serving_terminating_endpoints_when_none_is_ready() {
        let p = plan(vec![
            ep(1, false, false, true, true),
            ep(2, false, false, false, true),
            ep(3, false, false, false, false),
        ]);
        let c = p.categorize();
        assert_eq!(ips(&c.cluster), [1]);
        assert!(c.has_any);
        assert!(
            !plan(vec![ep(3, false, false, false, false)])
                .categorize()
                .has_any
        );
    }

    #[test]
    fn internal_local_uses_only_local_endpoints() {
        let mut p = plan(vec![
            ep(1, false, true, true, false),
            ep(2, true, true, true, false),
        ]);
        p.internal_local = true;
        let c = p.categorize();
        assert!(c.cluster.is_empty());
        assert_eq!(ips(&c.local), [2]);
        assert_eq!(ips(&c.reachable), [2]);
        assert!(c.has_any);
    }

    #[test]
    fn external_local_keeps_cluster_endpoints_for_internal_traffic() {
        let mut p = plan(vec![
            ep(1, false, true, true, false),
            ep(2, true, true, true, false),
        ]);
        p.node_port = Some(30080);
        p.external_local = true;
        let c = p.categorize();
        assert_eq!(ips(&c.cluster), [1, 2]);
        assert_eq!(ips(&c.local), [2]);
        assert_eq!(ips(&c.reachable), [1, 2]);
    }

    #[test]
    fn local_falls_back_to_local_serving_terminating() {
        let mut p = plan(vec![
            ep(1, false, true, true, false),
            ep(2, true, false, true, true),
        ]);
        p.node_port = Some(30080);
        p.external_local = true;
        let c = p.categorize();
        assert_eq!(ips(&c.cluster), [1]);
        assert_eq!(ips(&c.local), [2]);
        assert_eq!(ips(&c.reachable), [1, 2]);
    }
}
