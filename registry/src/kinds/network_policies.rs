//! networking.k8s.io/v1 `networkpolicies`: upstream's defaults (`policyTypes`, port protocol) and
//! validation (peers, ipBlocks, ports and port ranges, selectors), and its columns. The workers
//! enforce the policies; the enclave only stores them.
//!
//! Validation reads the typed `k8s-openapi` object: by the time `validate` runs the body has
//! been canonicalized through the same type, so it decodes.

use std::net::IpAddr;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

use super::{format_selector, typed, unsupported};
use crate::table::{Column, age_cell, name_cell};
use crate::{FieldError, Strategy};

/// `networkpolicies`.
#[derive(Debug)]
pub(crate) struct NetworkPolicies;

impl Strategy for NetworkPolicies {
    typed!(NetworkPolicy);
    fn tracks_generation(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        apply_defaults(obj);
    }
    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        apply_defaults(new);
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        match serde_json::from_value::<NetworkPolicy>(obj.clone()) {
            Ok(policy) => validate_policy(&policy),
            // canonicalize reports undecodable bodies before validation runs.
            Err(_) => Vec::new(),
        }
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text(
                "Pod-Selector",
                "Pod selector selects the pods to which this network policy applies.",
            ),
            Column::AGE,
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        vec![
            name_cell(obj),
            format_selector(obj.pointer("/spec/podSelector")),
            age_cell(obj, now),
        ]
    }
}

/// Upstream's `SetDefaults_NetworkPolicySpec` and `SetDefaults_NetworkPolicyPort`: without
/// `policyTypes` a policy is an Ingress policy, and an Egress one too when it has egress rules;
/// a port without a protocol is TCP.
fn apply_defaults(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let has_types = spec
        .get("policyTypes")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if !has_types {
        let has_egress = spec
            .get("egress")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        let types = if has_egress {
            json!(["Ingress", "Egress"])
        } else {
            json!(["Ingress"])
        };
        spec.insert("policyTypes".into(), types);
    }
    for direction in ["ingress", "egress"] {
        let rules = spec.get_mut(direction).and_then(Value::as_array_mut);
        for rule in rules.into_iter().flatten() {
            let ports = rule.get_mut("ports").and_then(Value::as_array_mut);
            for port in ports.into_iter().flatten() {
                if let Some(p) = port.as_object_mut()
                    && p.get("protocol").is_none_or(Value::is_null)
                {
                    p.insert("protocol".into(), json!("TCP"));
                }
            }
        }
    }
}

/// Upstream's `ValidateNetworkPolicySpec`, field paths and messages as upstream words them.
fn validate_policy(policy: &NetworkPolicy) -> Vec<FieldError> {
    let mut out = Vec::new();
    let Some(spec) = &policy.spec else {
        out.push(FieldError::required("spec", ""));
        return out;
    };
    if let Some(sel) = &spec.pod_selector {
        validate_selector(sel, "spec.podSelector", &mut out);
    }
    for (i, rule) in spec.ingress.iter().flatten().enumerate() {
        let path = format!("spec.ingress[{i}]");
        for (j, port) in rule.ports.iter().flatten().enumerate() {
            validate_port(port, &format!("{path}.ports[{j}]"), &mut out);
        }
        for (j, peer) in rule.from.iter().flatten().enumerate() {
            validate_peer(peer, &format!("{path}.from[{j}]"), &mut out);
        }
    }
    for (i, rule) in spec.egress.iter().flatten().enumerate() {
        let path = format!("spec.egress[{i}]");
        for (j, port) in rule.ports.iter().flatten().enumerate() {
            validate_port(port, &format!("{path}.ports[{j}]"), &mut out);
        }
        for (j, peer) in rule.to.iter().flatten().enumerate() {
            validate_peer(peer, &format!("{path}.to[{j}]"), &mut out);
        }
    }
    let types = spec.policy_types.as_deref().unwrap_or_default();
    for (i, t) in types.iter().enumerate() {
        if t != "Ingress" && t != "Egress" {
            out.push(unsupported(
                format!("spec.policyTypes[{i}]"),
                t,
                &["Egress", "Ingress"],
            ));
        }
    }
    if types.len() > 2 {
        out.push(FieldError::invalid(
            "spec.policyTypes",
            &types.join(","),
            "may not specify more than two policyTypes",
        ));
    }
    out
}

/// A port: a known protocol; a number in 1–65535 or an IANA service name; `endPort` only after
/// a numeric `port`, and not below it.
fn validate_port(port: &NetworkPolicyPort, path: &str, out: &mut Vec<FieldError>) {
    if let Some(protocol) = port.protocol.as_deref()
        && !matches!(protocol, "TCP" | "UDP" | "SCTP")
    {
        out.push(unsupported(
            format!("{path}.protocol"),
            protocol,
            &["SCTP", "TCP", "UDP"],
        ));
    }
    let number = match &port.port {
        Some(IntOrString::Int(n)) => {
            if !(1..=65535).contains(n) {
                out.push(FieldError::invalid_int(
                    format!("{path}.port"),
                    i64::from(*n),
                    "must be between 1 and 65535, inclusive",
                ));
            }
            Some(*n)
        }
        Some(IntOrString::String(name)) => {
            if let Some(why) = port_name_problem(name) {
                out.push(FieldError::invalid(format!("{path}.port"), name, why));
            }
            None
        }
        None => None,
    };
    if let Some(end) = port.end_port {
        match (&port.port, number) {
            (None, _) => out.push(FieldError::required(
                format!("{path}.port"),
                "when endPort is specified",
            )),
            (Some(_), None) => out.push(FieldError::invalid_int(
                format!("{path}.endPort"),
                i64::from(end),
                "may not be specified when `port` is non-numeric",
            )),
            (Some(_), Some(start)) if end < start => out.push(FieldError::invalid_int(
                format!("{path}.endPort"),
                i64::from(end),
                "must be greater than or equal to `port`",
            )),
            _ => {}
        }
    }
}

/// Upstream's `IsValidPortName` (an IANA service name), or `None` when `name` is one.
fn port_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 15 {
        return Some("must be no more than 15 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Some("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        return Some("must contain at least one letter (a-z)");
    }
    if name.contains("--") {
        return Some("must not contain consecutive hyphens");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some("must not begin or end with a hyphen");
    }
    None
}

/// A peer names pods/namespaces by selector, or addresses by `ipBlock`; exactly one of the two.
fn validate_peer(peer: &NetworkPolicyPeer, path: &str, out: &mut Vec<FieldError>) {
    let selectors = peer.pod_selector.is_some() || peer.namespace_selector.is_some();
    match (&peer.ip_block, selectors) {
        (None, false) => out.push(FieldError::required(path, "must specify a peer")),
        (Some(_), true) => out.push(forbidden_peer(path)),
        (Some(block), false) => validate_ip_block(block, &format!("{path}.ipBlock"), out),
        (None, true) => {
            if let Some(sel) = &peer.pod_selector {
                validate_selector(sel, &format!("{path}.podSelector"), out);
            }
            if let Some(sel) = &peer.namespace_selector {
                validate_selector(sel, &format!("{path}.namespaceSelector"), out);
            }
        }
    }
}

fn forbidden_peer(path: &str) -> FieldError {
    super::forbidden(path, "may not specify more than 1 peer")
}

/// An `ipBlock`: a valid CIDR, and every `except` a CIDR strictly inside it.
fn validate_ip_block(block: &IPBlock, path: &str, out: &mut Vec<FieldError>) {
    if block.cidr.is_empty() {
        out.push(FieldError::required(format!("{path}.cidr"), ""));
        return;
    }
    let Some(cidr) = Cidr::parse(&block.cidr) else {
        out.push(FieldError::invalid(
            format!("{path}.cidr"),
            &block.cidr,
            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        ));
        return;
    };
    for (i, except) in block.except.iter().flatten().enumerate() {
        let field = format!("{path}.except[{i}]");
        match Cidr::parse(except) {
            None => out.push(FieldError::invalid(
                field,
                except,
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            )),
            Some(inner) if !cidr.strictly_contains(&inner) => out.push(FieldError::invalid(
                field,
                except,
                "must be a strict subset of `cidr`",
            )),
            Some(_) => {}
        }
    }
}

/// A label selector's expressions: a known operator; values for `In`/`NotIn`, none otherwise.
fn validate_selector(sel: &LabelSelector, path: &str, out: &mut Vec<FieldError>) {
    for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
        let field = format!("{path}.matchExpressions[{i}]");
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => out.push(FieldError::required(
                format!("{field}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => out.push(super::forbidden(
                format!("{field}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => out.push(FieldError::invalid(
                format!("{field}.operator"),
                other,
                "not a valid selector operator",
            )),
        }
    }
}

/// An address range as `ipBlock` writes it (`10.0.0.0/8`, `2001:db8::/64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = text.split_once('/')?;
        let network: IpAddr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { network, prefix })
    }

    /// The address as a 128-bit number with its family's width.
    fn bits(addr: IpAddr) -> (u128, u8) {
        match addr {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (u128::from(a), 128),
        }
    }

    /// Whether `inner` lies inside `self` and is smaller.
    fn strictly_contains(&self, inner: &Cidr) -> bool {
        let (outer_bits, width) = Cidr::bits(self.network);
        let (inner_bits, inner_width) = Cidr::bits(inner.network);
        if width != inner_width || inner.prefix <= self.prefix {
            return false;
        }
        let host_bits = u32::from(width - self.prefix);
        let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
        outer_bits & mask == inner_bits & mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(spec: Value) -> Vec<String> {
        let mut obj = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "p", "namespace": "default"}, "spec": spec});
        NetworkPolicies.prepare_for_create(&mut obj);
        NetworkPolicies
            .validate(&obj)
            .into_iter()
            .map(|e| e.message)
            .collect()
    }

    #[test]
    fn policy_types_and_protocols_default_as_upstream() {
        let mut ingress_only = json!({"spec": {"podSelector": {},
            "ingress": [{"ports": [{"port": 80}]}]}});
        NetworkPolicies.prepare_for_create(&mut ingress_only);
        assert_eq!(ingress_only["spec"]["policyTypes"], json!(["Ingress"]));
        assert_eq!(
            ingress_only["spec"]["ingress"][0]["ports"][0]["protocol"],
            "TCP"
        );
        let mut with_egress = json!({"spec": {"podSelector": {}, "egress": [{}]}});
        NetworkPolicies.prepare_for_create(&mut with_egress);
        assert_eq!(
            with_egress["spec"]["policyTypes"],
            json!(["Ingress", "Egress"])
        );
        let mut explicit = json!({"spec": {"podSelector": {}, "policyTypes": ["Egress"]}});
        NetworkPolicies.prepare_for_create(&mut explicit);
        assert_eq!(explicit["spec"]["policyTypes"], json!(["Egress"]));
    }

    #[test]
    fn a_default_deny_and_a_full_policy_are_valid() {
        assert!(errors(json!({"podSelector": {}})).is_empty());
        let full = json!({
            "podSelector": {"matchLabels": {"app": "web"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{
                "from": [
                    {"podSelector": {"matchExpressions": [{"key": "role", "operator": "In", "values": ["client"]}]},
                     "namespaceSelector": {"matchLabels": {"team": "a"}}},
                    {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}
                ],
                "ports": [{"port": 8000, "endPort": 8080}, {"port": "http", "protocol": "UDP"}]
            }],
            "egress": [{"to": [{"ipBlock": {"cidr": "2001:db8::/32", "except": ["2001:db8:1::/48"]}}]}]
        });
        assert_eq!(errors(full), Vec::<String>::new());
    }

    #[test]
    fn bad_peers_ports_and_blocks_are_refused_with_upstream_fields() {
        let got = errors(json!({
            "podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]},
            "policyTypes": ["Sideways"],
            "ingress": [{
                "from": [
                    {},
                    {"podSelector": {}, "ipBlock": {"cidr": "10.0.0.0/8"}},
                    {"ipBlock": {"cidr": "10.0.0.0/33"}},
                    {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16", "10.0.0.0/8"]}}
                ],
                "ports": [
                    {"port": 0},
                    {"port": "HTTP"},
                    {"port": "http", "endPort": 90},
                    {"endPort": 90},
                    {"port": 100, "endPort": 90},
                    {"port": 53, "protocol": "ICMP"}
                ]
            }]
        }));
        let expect = [
            "spec.podSelector.matchExpressions[0].values: Required value",
            "spec.ingress[0].ports[0].port: Invalid value: 0: must be between 1 and 65535",
            "spec.ingress[0].ports[1].port: Invalid value: \"HTTP\"",
            "spec.ingress[0].ports[2].endPort: Invalid value: 90: may not be specified when `port` is non-numeric",
            "spec.ingress[0].ports[3].port: Required value: when endPort is specified",
            "spec.ingress[0].ports[4].endPort: Invalid value: 90: must be greater than or equal to `port`",
            "spec.ingress[0].ports[5].protocol: Unsupported value: \"ICMP\"",
            "spec.ingress[0].from[0]: Required value: must specify a peer",
            "spec.ingress[0].from[1]: Forbidden: may not specify more than 1 peer",
            "spec.ingress[0].from[2].ipBlock.cidr: Invalid value: \"10.0.0.0/33\"",
            "spec.ingress[0].from[3].ipBlock.except[0]: Invalid value: \"11.0.0.0/16\": must be a strict subset of `cidr`",
            "spec.ingress[0].from[3].ipBlock.except[1]: Invalid value: \"10.0.0.0/8\": must be a strict subset of `cidr`",
            "spec.policyTypes[0]: Unsupported value: \"Sideways\"",
        ];
        assert_eq!(got.len(), expect.len(), "{got:#?}");
        for (got, want) in got.iter().zip(expect) {
            assert!(got.starts_with(want), "{got:?} should start with {want:?}");
        }
    }

    #[test]
    fn the_pod_selector_column_reads_like_kubectl() {
        let obj = json!({"metadata": {"name": "p"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}}});
        let cells = NetworkPolicies.cells(&obj, jiff::Timestamp::UNIX_EPOCH);
        assert_eq!(cells[1], "app=web");
        let all = json!({"metadata": {"name": "p"}, "spec": {"podSelector": {}}});
        assert_eq!(
            NetworkPolicies.cells(&all, jiff::Timestamp::UNIX_EPOCH)[1],
            "<none>"
        );
    }
}
