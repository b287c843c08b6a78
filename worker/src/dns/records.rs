//! The cluster's DNS records, built from Services, EndpointSlices and Namespaces, as the Kubernetes
//! DNS specification (kubernetes/dns `docs/specification.md`, schema 1.0.1) defines them:
//!
//! | name | type | answer |
//! |---|---|---|
//! | `dns-version.ZONE` | TXT | `1.0.1` |
//! | `SVC.NS.svc.ZONE` | A | the ClusterIP; for a headless Service every ready endpoint (NXDOMAIN if none) |
//! | `SVC.NS.svc.ZONE` | CNAME | an ExternalName Service's name |
//! | `HOST.SVC.NS.svc.ZONE` | A | a headless Service's ready endpoint with that hostname (else its dashed IP) |
//! | `_PORT._PROTO.SVC.NS.svc.ZONE` | SRV | each named port (per ready endpoint for headless Services) |
//! | `D.C.B.A.in-addr.arpa` | PTR | the Service (or endpoint hostname) owning the address |
//! | `A-B-C-D.NS.pod.ZONE` | A | `A.B.C.D` (the deprecated pod records) |
//!
//! Comparisons are case-insensitive. A name in the cluster domain that does not exist is NXDOMAIN
//! (never SERVFAIL); a name that exists without records of the asked type is NOERROR without
//! answers (NODATA); both carry the zone's SOA for negative caching. Names outside the cluster
//! domain, and reverse names outside the cluster's CIDRs that no Service owns, are forwarded.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use hickory_server::proto::rr::rdata::{A, CNAME, PTR, SOA, SRV, TXT};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use ipnet::Ipv4Net;

use crate::network::ClusterNetwork;
use crate::network::model::ClusterState;
use crate::proxy::plan::cluster_ips;

/// The TTL of cluster records (CoreDNS's default).
pub const TTL: u32 = 5;
/// The schema version `dns-version.ZONE` answers.
pub const SCHEMA_VERSION: &str = "1.0.1";

/// The answer to one question.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// NOERROR with records.
    Records {
        /// The answer section.
        answers: Vec<Record>,
        /// The additional section (addresses of SRV targets).
        additionals: Vec<Record>,
    },
    /// The name exists but has no record of the type (NOERROR, no answers, SOA).
    NoData,
    /// The name does not exist (NXDOMAIN, SOA).
    NxDomain,
    /// Not ours: ask the node's resolver.
    Forward,
    /// An ExternalName Service: the CNAME, and its target to resolve upstream for the asked type.
    Alias {
        /// The CNAME record.
        cname: Box<Record>,
        /// Its target.
        target: Name,
    },
}

#[derive(Debug, Clone)]
enum Kind {
    ClusterIp(Vec<Ipv4Addr>),
    Headless,
    External(Name),
}

#[derive(Debug, Clone)]
struct Port {
    name: String,
    proto: String,
    port: u16,
}

#[derive(Debug, Clone)]
struct Endpoint {
    ip: Ipv4Addr,
    hostname: String,
    /// Endpoint port numbers by (name, protocol).
    ports: BTreeMap<(String, String), u16>,
}

#[derive(Debug, Clone)]
struct ServiceEntry {
    kind: Kind,
    ports: Vec<Port>,
    endpoints: Vec<Endpoint>,
}

/// Every record of the cluster domain, ready to answer from.
#[derive(Debug, Clone)]
pub struct DnsIndex {
    zone: Name,
    zone_labels: usize,
    network: ClusterNetwork,
    services: BTreeMap<(String, String), ServiceEntry>,
    namespaces: BTreeSet<String>,
    ptr: BTreeMap<Ipv4Addr, Vec<Name>>,
    soa: Record,
}

impl DnsIndex {
    /// The records `state` implies for `network`'s cluster domain.
    pub fn build(state: &ClusterState, network: &ClusterNetwork) -> Self {
        let zone = Name::from_ascii(&network.cluster_domain)
            .map(|mut n| {
                n.set_fqdn(true);
                n.to_lowercase()
            })
            .unwrap_or_else(|_| Name::root());
        let mut index = Self {
            zone_labels: usize::from(zone.num_labels()),
            soa: soa_record(&zone, state.revision()),
            zone,
            network: network.clone(),
            services: BTreeMap::new(),
            namespaces: state
                .namespaces
                .keys()
                .map(|n| n.to_ascii_lowercase())
                .collect(),
            ptr: BTreeMap::new(),
        };
        for (key, svc) in &state.services {
            let Some(spec) = svc.spec.as_ref() else {
                continue;
            };
            let ns = key.namespace.to_ascii_lowercase();
            let name = key.name.to_ascii_lowercase();
            index.namespaces.insert(ns.clone());
            let kind = if spec.type_.as_deref() == Some("ExternalName") {
                match spec
                    .external_name
                    .as_deref()
                    .and_then(|n| Name::from_ascii(n).ok())
                {
                    Some(mut target) => {
                        target.set_fqdn(true);
                        Kind::External(target)
                    }
                    None => continue,
                }
            } else {
                let ips = cluster_ips(svc);
                if ips.is_empty() {
                    Kind::Headless
                } else {
                    Kind::ClusterIp(ips)
                }
            };
            let ports: Vec<Port> = spec
                .ports
                .iter()
                .flatten()
                .filter_map(|p| {
                    Some(Port {
                        name: p.name.clone().unwrap_or_default().to_ascii_lowercase(),
                        proto: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                        port: u16::try_from(p.port).ok()?,
                    })
                })
                .collect();
            let publish_unready = spec.publish_not_ready_addresses.unwrap_or(false);
            let mut endpoints: Vec<Endpoint> = Vec::new();
            for slice in state.slices_of(&key.namespace, &key.name) {
                if slice.address_type != "IPv4" {
                    continue;
                }
                let slice_ports: BTreeMap<(String, String), u16> = slice
                    .ports
                    .iter()
                    .flatten()
                    .filter_map(|p| {
                        Some((
                            (
                                p.name.clone().unwrap_or_default().to_ascii_lowercase(),
                                p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                            ),
                            u16::try_from(p.port?).ok()?,
                        ))
                    })
                    .collect();
                for ep in &slice.endpoints {
                    let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                    if !ready && !publish_unready {
                        continue;
                    }
                    for addr in &ep.addresses {
                        let Ok(ip) = addr.parse::<Ipv4Addr>() else {
                            continue;
                        };
                        if endpoints.iter().any(|e| e.ip == ip) {
                            continue;
                        }
                        let hostname = ep
                            .hostname
                            .as_deref()
                            .map(str::to_ascii_lowercase)
                            .unwrap_or_else(|| dashed(ip));
                        endpoints.push(Endpoint {
                            ip,
                            hostname,
                            ports: slice_ports.clone(),
                        });
                    }
                }
            }
            endpoints.sort_by_key(|e| e.ip);
            let entry = ServiceEntry {
                kind,
                ports,
                endpoints,
            };
            let svc_name = index.service_name(&name, &ns);
            match &entry.kind {
                Kind::ClusterIp(ips) => {
                    for ip in ips {
                        index.ptr.entry(*ip).or_default().push(svc_name.clone());
                    }
                }
                Kind::Headless => {
                    for ep in &entry.endpoints {
                        if let Ok(n) =
                            Name::from_ascii(&ep.hostname).and_then(|h| h.append_domain(&svc_name))
                        {
                            index.ptr.entry(ep.ip).or_default().push(n);
                        }
                    }
                }
                Kind::External(_) => {}
            }
            index.services.insert((ns, name), entry);
        }
        index
    }

    /// The zone's SOA record (for the authority section of negative answers).
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// `SVC.NS.svc.ZONE.`
    fn service_name(&self, svc: &str, ns: &str) -> Name {
        Name::from_ascii(format!("{svc}.{ns}.svc"))
            .and_then(|n| n.append_domain(&self.zone))
            .unwrap_or_else(|_| self.zone.clone())
    }

    /// The answer to `qname` (as asked; compared case-insensitively) of type `qtype`.
    pub fn answer(&self, qname: &Name, qtype: RecordType) -> Answer {
        let lower = qname.to_lowercase();
        if self.zone.zone_of(&lower) {
            return self.answer_in_zone(qname, &lower, qtype);
        }
        if let Some(ip) = reverse_ipv4(&lower) {
            return self.answer_ptr(qname, ip, qtype);
        }
        Answer::Forward
    }

    fn answer_in_zone(&self, qname: &Name, lower: &Name, qtype: RecordType) -> Answer {
        let count = usize::from(lower.num_labels()).saturating_sub(self.zone_labels);
        let labels: Vec<String> = lower
            .iter()
            .take(count)
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        let records = |answers: Vec<Record>, additionals: Vec<Record>| {
            if answers.is_empty() {
                Answer::NoData
            } else {
                Answer::Records {
                    answers,
                    additionals,
                }
            }
        };
        match labels.as_slice() {
            [] => match qtype {
                RecordType::SOA => records(vec![self.soa.clone()], vec![]),
                _ => Answer::NoData,
            },
            ["dns-version"] => match qtype {
                RecordType::TXT => records(
                    vec![record(
                        qname,
                        RData::TXT(TXT::new(vec![SCHEMA_VERSION.into()])),
                    )],
                    vec![],
                ),
                _ => Answer::NoData,
            },
            ["svc"] | ["pod"] => Answer::NoData,
            [ns, "svc"] | [ns, "pod"] => {
                if self.namespaces.contains(*ns) {
                    Answer::NoData
                } else {
                    Answer::NxDomain
                }
            }
            [svc, ns, "svc"] => self.answer_service(qname, svc, ns, qtype),
            [host, svc, ns, "svc"] if !host.starts_with('_') => {
                self.answer_endpoint(qname, host, svc, ns, qtype)
            }
            [port, proto, svc, ns, "svc"] => {
                match (port.strip_prefix('_'), proto.strip_prefix('_')) {
                    (Some(port), Some(proto)) => {
                        self.answer_srv(qname, port, proto, svc, ns, qtype)
                    }
                    _ => Answer::NxDomain,
                }
            }
            [dashed, _ns, "pod"] => match undash(dashed) {
                Some(ip) if qtype == RecordType::A => {
                    records(vec![record(qname, RData::A(A(ip)))], vec![])
                }
                Some(_) => Answer::NoData,
                None => Answer::NxDomain,
            },
            _ => Answer::NxDomain,
        }
    }

    fn answer_service(&self, qname: &Name, svc: &str, ns: &str, qtype: RecordType) -> Answer {
        let Some(entry) = self.services.get(&(ns.to_owned(), svc.to_owned())) else {
            return Answer::NxDomain;
        };
        let addresses: Vec<Ipv4Addr> = match &entry.kind {
            Kind::External(target) => {
                return Answer::Alias {
                    cname: Box::new(record(qname, RData::CNAME(CNAME(target.clone())))),
                    target: target.clone(),
                };
            }
            Kind::ClusterIp(ips) => ips.clone(),
            Kind::Headless if entry.endpoints.is_empty() => return Answer::NxDomain,
            Kind::Headless => entry.endpoints.iter().map(|e| e.ip).collect(),
        };
        match qtype {
            RecordType::A => Answer::Records {
                answers: addresses
                    .into_iter()
                    .map(|ip| record(qname, RData::A(A(ip))))
                    .collect(),
                additionals: vec![],
            },
            RecordType::SRV => {
                let mut answers = Vec::new();
                let mut additionals = Vec::new();
                for port in entry.ports.iter().filter(|p| !p.name.is_empty()) {
                    let (a, add) = self.srv_records(qname, entry, port, svc, ns);
                    answers.extend(a);
                    additionals.extend(add);
                }
                dedup(&mut additionals);
                if answers.is_empty() {
                    Answer::NoData
                } else {
                    Answer::Records {
                        answers,
                        additionals,
                    }
                }
            }
            _ => Answer::NoData,
        }
    }

    fn answer_endpoint(
        &self,
        qname: &Name,
        host: &str,
        svc: &str,
        ns: &str,
        qtype: RecordType,
    ) -> Answer {
        let Some(entry) = self.services.get(&(ns.to_owned(), svc.to_owned())) else {
            return Answer::NxDomain;
        };
        if !matches!(entry.kind, Kind::Headless) {
            return Answer::NxDomain;
        }
        let ips: Vec<Ipv4Addr> = entry
            .endpoints
            .iter()
            .filter(|e| e.hostname == host)
            .map(|e| e.ip)
            .collect();
        if ips.is_empty() {
            return Answer::NxDomain;
        }
        if qtype != RecordType::A {
            return Answer::NoData;
        }
        Answer::Records {
            answers: ips
                .into_iter()
                .map(|ip| record(qname, RData::A(A(ip))))
                .collect(),
            additionals: vec![],
        }
    }

    fn answer_srv(
        &self,
        qname: &Name,
        port: &str,
        proto: &str,
        svc: &str,
        ns: &str,
        qtype: RecordType,
    ) -> Answer {
        let Some(entry) = self.services.get(&(ns.to_owned(), svc.to_owned())) else {
            return Answer::NxDomain;
        };
        let Some(p) = entry
            .ports
            .iter()
            .find(|p| !p.name.is_empty() && p.name == port && p.proto == proto)
        else {
            return Answer::NxDomain;
        };
        if matches!(entry.kind, Kind::External(_))
            || (matches!(entry.kind, Kind::Headless) && entry.endpoints.is_empty())
        {
            return Answer::NxDomain;
        }
        if qtype != RecordType::SRV {
            return Answer::NoData;
        }
        let (answers, mut additionals) = self.srv_records(qname, entry, p, svc, ns);
        dedup(&mut additionals);
        Answer::Records {
            answers,
            additionals,
        }
    }

    /// SRV records of one port (owner `qname`) and the A records of their targets.
    fn srv_records(
        &self,
        qname: &Name,
        entry: &ServiceEntry,
        port: &Port,
        svc: &str,
        ns: &str,
    ) -> (Vec<Record>, Vec<Record>) {
        let svc_name = self.service_name(svc, ns);
        match &entry.kind {
            Kind::ClusterIp(ips) => (
                vec![record(
                    qname,
                    RData::SRV(SRV::new(0, 100, port.port, svc_name.clone())),
                )],
                ips.iter()
                    .map(|ip| record(&svc_name, RData::A(A(*ip))))
                    .collect(),
            ),
            Kind::Headless => {
                let weight = u16::try_from(100 / entry.endpoints.len().max(1))
                    .unwrap_or(1)
                    .max(1);
                let mut answers = Vec::new();
                let mut additionals = Vec::new();
                for ep in &entry.endpoints {
                    let Ok(target) =
                        Name::from_ascii(&ep.hostname).and_then(|h| h.append_domain(&svc_name))
                    else {
                        continue;
                    };
                    let number = ep
                        .ports
                        .get(&(port.name.clone(), port.proto.clone()))
                        .copied()
                        .unwrap_or(port.port);
                    answers.push(record(
                        qname,
                        RData::SRV(SRV::new(0, weight, number, target.clone())),
                    ));
                    additionals.push(record(&target, RData::A(A(ep.ip))));
                }
                (answers, additionals)
            }
            Kind::External(_) => (vec![], vec![]),
        }
    }

    fn answer_ptr(&self, qname: &Name, ip: Ipv4Addr, qtype: RecordType) -> Answer {
        match self.ptr.get(&ip) {
            Some(names) if qtype == RecordType::PTR => Answer::Records {
                answers: names
                    .iter()
                    .map(|n| record(qname, RData::PTR(PTR(n.clone()))))
                    .collect(),
                additionals: vec![],
            },
            Some(_) => Answer::NoData,
            None if in_net(self.network.service_cidr, ip)
                || in_net(self.network.cluster_cidr, ip) =>
            {
                Answer::NxDomain
            }
            None => Answer::Forward,
        }
    }
}

fn in_net(net: Ipv4Net, ip: Ipv4Addr) -> bool {
    net.contains(&ip)
}

fn record(name: &Name, data: RData) -> Record {
    Record::from_rdata(name.clone(), TTL, data)
}

fn dedup(records: &mut Vec<Record>) {
    let mut seen = Vec::new();
    records.retain(|r| {
        let key = (r.name.clone(), r.data.clone());
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
}

fn soa_record(zone: &Name, revision: u64) -> Record {
    let mname = Name::from_ascii("ns.dns")
        .and_then(|n| n.append_domain(zone))
        .unwrap_or_else(|_| zone.clone());
    let rname = Name::from_ascii("hostmaster")
        .and_then(|n| n.append_domain(zone))
        .unwrap_or_else(|_| zone.clone());
    let serial = u32::try_from(revision % u64::from(u32::MAX)).unwrap_or(0);
    Record::from_rdata(
        zone.clone(),
        TTL,
        RData::SOA(SOA::new(mname, rname, serial, 7200, 1800, 86400, TTL)),
    )
}

/// `10-42-1-5` for 10.42.1.5.
fn dashed(ip: Ipv4Addr) -> String {
    ip.to_string().replace('.', "-")
}

fn undash(label: &str) -> Option<Ipv4Addr> {
    label.replace('-', ".").parse().ok()
}

/// The address of `d.c.b.a.in-addr.arpa.`.
fn reverse_ipv4(name: &Name) -> Option<Ipv4Addr> {
    let labels: Vec<String> = name
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    match labels.as_slice() {
        [d, c, b, a, inaddr, arpa] if inaddr == "in-addr" && arpa == "arpa" => {
            format!("{a}.{b}.{c}.{d}").parse().ok()
        }
        _ => None,
    }
}
