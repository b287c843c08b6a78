//! `services`: defaults, port validation, immutable clusterIP, columns;
//! `endpoints` and discovery.k8s.io `endpointslices` (stored as written; no
//! endpoints controller yet).

use k8s_openapi::api::core::v1::{Endpoints as CoreEndpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};

use super::{default_at, format_label_map, keep_status, s, typed};
use crate::table::{Column, age_cell, name_cell, or_none};
use crate::{FieldError, NameRule, Strategy};

/// `services`.
#[derive(Debug)]
pub(crate) struct Services;

fn ports_cell(obj: &Value) -> String {
    let ports = obj
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if ports.is_empty() {
        return "<none>".into();
    }
    ports
        .iter()
        .map(|p| {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(np) if np != 0 => format!("{port}:{np}/{proto}"),
                _ => format!("{port}/{proto}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A port of an updated Service that does not name its node port keeps the
/// one the same port (by port number and protocol) had, as upstream's
/// `patchAllocatedValues` does: re-applying a manifest without `nodePort`
/// does not move the Service.
fn keep_node_ports(new: &mut Value, old: &Value) {
    let key = |p: &Value| {
        (
            p.get("port").and_then(Value::as_i64),
            p.get("protocol")
                .and_then(Value::as_str)
                .unwrap_or("TCP")
                .to_string(),
        )
    };
    let old_ports: Vec<((Option<i64>, String), Value)> = old
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| p.get("nodePort").map(|n| (key(p), n.clone())))
                .collect()
        })
        .unwrap_or_default();
    if let Some(Value::Array(ports)) = new.pointer_mut("/spec/ports") {
        for p in ports {
            if p.get("nodePort")
                .is_none_or(|n| n.as_i64().unwrap_or(0) == 0)
                && let Some((_, n)) = old_ports.iter().find(|(k, _)| *k == key(p))
            {
                p["nodePort"] = n.clone();
            }
        }
    }
}

impl Strategy for Services {
    typed!(Service);
    fn store_hook(&self) -> Option<crate::StoreHook> {
        Some(crate::StoreHook::ServiceAllocation)
    }
    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"loadBalancer": {}});
        default_at(obj, "/spec/type", json!("ClusterIP"));
        default_at(obj, "/spec/sessionAffinity", json!("None"));
        default_at(obj, "/spec/internalTrafficPolicy", json!("Cluster"));
        default_at(obj, "/spec/ipFamilies", json!(["IPv4"]));
        default_at(obj, "/spec/ipFamilyPolicy", json!("SingleStack"));
        if let Some(Value::Array(ports)) = obj.pointer_mut("/spec/ports") {
            for p in ports {
                default_at(p, "/protocol", json!("TCP"));
                if let Some(port) = p.get("port").cloned() {
                    default_at(p, "/targetPort", port);
                }
            }
        }
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
        for f in ["clusterIP", "clusterIPs"] {
            let ptr = format!("/spec/{f}");
            if new.pointer(&ptr).is_none()
                && let Some(v) = old.pointer(&ptr).cloned()
            {
                default_at(new, &ptr, v);
            }
        }
        keep_node_ports(new, old);
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut out = Vec::new();
        let ty = s(obj, "/spec/type");
        if !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].contains(&ty) {
            out.push(FieldError {
                reason: "FieldValueNotSupported",
                field: "spec.type".into(),
                message: format!("spec.type: Unsupported value: {ty:?}: supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""),
            });
        }
        let ports = obj.pointer("/spec/ports").and_then(Value::as_array);
        if ty != "ExternalName"
            && ports.is_none_or(Vec::is_empty)
            && s(obj, "/spec/clusterIP") != "None"
        {
            out.push(FieldError::required("spec.ports", ""));
        }
        for (i, p) in ports.into_iter().flatten().enumerate() {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            if !(1..=65535).contains(&port) {
                out.push(FieldError::invalid_int(
                    format!("spec.ports[{i}].port"),
                    port,
                    "must be between 1 and 65535, inclusive",
                ));
            }
        }
        out
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut out = self.validate(new);
        let (n, o) = (s(new, "/spec/clusterIP"), s(old, "/spec/clusterIP"));
        if !o.is_empty() && n != o {
            out.push(FieldError::immutable("spec.clusterIPs[0]", &json!(n)));
        }
        out
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["spec.clusterIP", "spec.type"]
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        match field {
            "spec.clusterIP" => Some(s(obj, "/spec/clusterIP").to_string()),
            "spec.type" => Some(s(obj, "/spec/type").to_string()),
            _ => None,
        }
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("Type", "The type of the service"),
            Column::text("Cluster-IP", "The IP address of the service"),
            Column::text("External-IP", "The external IP address of the service"),
            Column::text("Port(s)", "The ports of the service"),
            Column::AGE,
            Column::text(
                "Selector",
                "Route service traffic to pods with label keys and values matching this selector.",
            )
            .wide(),
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let ty = s(obj, "/spec/type");
        let external = match ty {
            "ExternalName" => s(obj, "/spec/externalName").to_string(),
            "LoadBalancer" => "<pending>".to_string(),
            _ => "<none>".to_string(),
        };
        let selector = obj
            .pointer("/spec/selector")
            .filter(|m| m.is_object())
            .map(|m| format_label_map(Some(m)));
        vec![
            name_cell(obj),
            json!(ty),
            or_none(Some(s(obj, "/spec/clusterIP"))),
            json!(external),
            json!(ports_cell(obj)),
            age_cell(obj, now),
            or_none(selector.as_deref()),
        ]
    }
}

/// `endpoints`.
#[derive(Debug)]
pub(crate) struct Endpoints;

/// Upstream's `formatEndpoints`: up to three `ip:port` entries, then `+ N more...`.
fn endpoints_cell(obj: &Value) -> String {
    const MAX: usize = 3;
    let subsets = obj
        .get("subsets")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if subsets.is_empty() {
        return "<none>".into();
    }
    let mut list: Vec<String> = Vec::new();
    let mut count = 0;
    let ips = |ss: &Value| -> Vec<String> {
        ss.get("addresses")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|x| {
                        x.get("ip")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string()
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    for ss in subsets {
        let addrs = ips(ss);
        let ports = ss
            .get("ports")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if ports.is_empty() {
            count += addrs.len();
            list.extend(addrs.iter().take(MAX.saturating_sub(list.len())).cloned());
            continue;
        }
        for p in ports {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            count += addrs.len();
            for ip in &addrs {
                if list.len() == MAX {
                    break;
                }
                if ip.contains(':') {
                    list.push(format!("[{ip}]:{port}"));
                } else {
                    list.push(format!("{ip}:{port}"));
                }
            }
        }
    }
    let joined = list.join(",");
    if count > MAX {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

impl Strategy for Endpoints {
    typed!(CoreEndpoints);
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text(
                "Endpoints",
                "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service.",
            ),
            Column::AGE,
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        vec![
            name_cell(obj),
            json!(endpoints_cell(obj)),
            age_cell(obj, now),
        ]
    }
}

/// `endpointslices` (discovery.k8s.io/v1): `addressType` is required and immutable.
#[derive(Debug)]
pub(crate) struct EndpointSlices;

/// Upstream's `listWithMoreString`: up to three entries, `+ N more...`, or `<unset>`.
fn list_with_more(all: Vec<String>) -> String {
    const MAX: usize = 3;
    let joined = all.iter().take(MAX).cloned().collect::<Vec<_>>().join(",");
    if all.len() > MAX {
        format!("{joined} + {} more...", all.len() - MAX)
    } else if joined.is_empty() {
        "<unset>".into()
    } else {
        joined
    }
}

impl Strategy for EndpointSlices {
    typed!(EndpointSlice);
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        match s(obj, "/addressType") {
            "IPv4" | "IPv6" | "FQDN" => Vec::new(),
            "" => vec![FieldError::required("addressType", "")],
            other => vec![super::unsupported(
                "addressType",
                other,
                &["IPv4", "IPv6", "FQDN"],
            )],
        }
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut out = self.validate(new);
        out.extend(super::immutable(new, old, "/addressType"));
        out
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text(
                "AddressType",
                "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type. This field is immutable after creation. The following address types are currently supported: * IPv4: Represents an IPv4 Address. * IPv6: Represents an IPv6 Address. * FQDN: Represents a Fully Qualified Domain Name. (Deprecated) The EndpointSlice controller only generates, and kube-proxy only processes, slices of addressType \"IPv4\" and \"IPv6\". No semantics are defined for the \"FQDN\" type.",
            ),
            Column::text(
                "Ports",
                "ports specifies the list of network ports exposed by each endpoint in this slice. Each port must have a unique name. Each slice may include a maximum of 100 ports. Services always have at least 1 port, so EndpointSlices generated by the EndpointSlice controller will likewise always have at least 1 port. EndpointSlices used for other purposes may have an empty ports list.",
            ),
            Column::text(
                "Endpoints",
                "endpoints is a list of unique endpoints in this slice. Each slice may include a maximum of 1000 endpoints.",
            ),
            Column::AGE,
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let ports: Vec<String> = obj
            .get("ports")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(
                |p| match (p.get("port").and_then(Value::as_i64), s(p, "/name")) {
                    (Some(n), _) => n.to_string(),
                    (None, name) if !name.is_empty() => name.to_string(),
                    _ => "*".to_string(),
                },
            )
            .collect();
        let addrs: Vec<String> = obj
            .get("endpoints")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .flat_map(|e| {
                e.get("addresses")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            })
            .collect();
        vec![
            name_cell(obj),
            json!(s(obj, "/addressType")),
            json!(list_with_more(ports)),
            json!(list_with_more(addrs)),
            age_cell(obj, now),
        ]
    }
}
