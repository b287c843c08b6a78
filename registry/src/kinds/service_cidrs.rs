//! networking.k8s.io/v1 `servicecidrs` and `ipaddresses` (GA in 1.33, served by default): the
//! ranges Service ClusterIPs come from and one object per allocated address, validated as
//! upstream's `pkg/apis/networking/validation`, with upstream's columns. The
//! `service-cidr` controller keeps the default `kubernetes` range and the addresses.

use std::net::IpAddr;

use k8s_openapi::api::networking::v1::{IPAddress, ServiceCIDR};
use serde_json::{Value, json};

use super::{drop_status, immutable, keep_status, s, typed};
use crate::table::{Column, age_cell, name_cell};
use crate::{FieldError, NameRule, Strategy};

const CIDR_FORMAT: &str = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";

/// The address family of `text` if it is a CIDR with no host bits set.
fn cidr_family(text: &str) -> Option<bool> {
    let (addr, prefix) = text.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let prefix: u32 = prefix.parse().ok()?;
    let (bits, width) = match addr {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    };
    if prefix > width {
        return None;
    }
    // The low `width - prefix` bits; none for a full-length prefix.
    let host_mask = u128::MAX.checked_shr(128 - (width - prefix)).unwrap_or(0);
    let canonical = addr.to_string() == text.split_once('/')?.0;
    (bits & host_mask == 0 && canonical).then_some(addr.is_ipv4())
}

/// `servicecidrs`.
#[derive(Debug)]
pub(crate) struct ServiceCidrs;

impl Strategy for ServiceCidrs {
    typed!(ServiceCIDR);
    fn tracks_generation(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        drop_status(obj);
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let cidrs: Vec<&str> = obj
            .pointer("/spec/cidrs")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|c| c.as_str().unwrap_or("")).collect())
            .unwrap_or_default();
        let mut out = Vec::new();
        if cidrs.is_empty() {
            out.push(FieldError::required("spec.cidrs", ""));
            return out;
        }
        if cidrs.len() > 2 {
            out.push(FieldError::too_many("spec.cidrs", cidrs.len(), 2));
            return out;
        }
        let families: Vec<Option<bool>> = cidrs.iter().map(|c| cidr_family(c)).collect();
        for (i, (cidr, family)) in cidrs.iter().zip(&families).enumerate() {
            if family.is_none() {
                out.push(FieldError::invalid(
                    format!("spec.cidrs[{i}]"),
                    cidr,
                    CIDR_FORMAT,
                ));
            }
        }
        if let [Some(a), Some(b)] = families[..]
            && a == b
        {
            out.push(FieldError::invalid(
                "spec.cidrs[1]",
                cidrs[1],
                "may specify no more than one IP for each IP family, i.e 192.168.0.0/24 and 2001:db8::/64",
            ));
        }
        out
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut out = self.validate(new);
        // Upstream allows one change: a single range gaining a second of the other family.
        let (new_cidrs, old_cidrs) = (new.pointer("/spec/cidrs"), old.pointer("/spec/cidrs"));
        let upgraded = match (
            new_cidrs.and_then(Value::as_array),
            old_cidrs.and_then(Value::as_array),
        ) {
            (Some(n), Some(o)) => o.len() == 1 && n.len() == 2 && n[0] == o[0],
            _ => false,
        };
        if !upgraded {
            out.extend(immutable(new, old, "/spec/cidrs"));
        }
        out
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("CIDRs", "list of IP families and CIDRs"),
            Column::AGE,
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let cidrs: Vec<&str> = obj
            .pointer("/spec/cidrs")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        vec![name_cell(obj), json!(cidrs.join(",")), age_cell(obj, now)]
    }
}

/// `ipaddresses`: named by the address itself, in canonical form.
#[derive(Debug)]
pub(crate) struct IpAddresses;

/// Upstream's column: `services/default/kubernetes` (`resource.group/namespace/name`).
fn parent_ref_cell(obj: &Value) -> String {
    let Some(parent) = obj.pointer("/spec/parentRef").filter(|p| !p.is_null()) else {
        return "<none>".into();
    };
    let (group, resource) = (s(parent, "/group"), s(parent, "/resource"));
    let mut out = if group.is_empty() {
        resource.to_lowercase()
    } else {
        format!("{resource}.{group}").to_lowercase()
    };
    let namespace = s(parent, "/namespace");
    if !namespace.is_empty() {
        out.push('/');
        out.push_str(namespace);
    }
    out.push('/');
    out.push_str(s(parent, "/name"));
    out
}

impl Strategy for IpAddresses {
    typed!(IPAddress);
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut out = Vec::new();
        let name = s(obj, "/metadata/name");
        match name.parse::<IpAddr>() {
            Err(e) => out.push(FieldError::invalid("metadata.name", name, &e.to_string())),
            Ok(ip) if ip.to_string() != name => out.push(FieldError::invalid(
                "metadata.name",
                name,
                "must be a canonical format IP address",
            )),
            Ok(_) => {}
        }
        match obj.pointer("/spec/parentRef").filter(|p| !p.is_null()) {
            None => out.push(FieldError::required("spec.parentRef", "")),
            Some(parent) => {
                for field in ["resource", "name"] {
                    if s(parent, &format!("/{field}")).is_empty() {
                        out.push(FieldError::required(format!("spec.parentRef.{field}"), ""));
                    }
                }
            }
        }
        out
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut out = self.validate(new);
        out.extend(immutable(new, old, "/spec/parentRef"));
        out
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("ParentRef", "The object this address belongs to"),
            Column::AGE,
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        vec![
            name_cell(obj),
            json!(parent_ref_cell(obj)),
            age_cell(obj, now),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_need_a_network_address_in_canonical_form() {
        assert_eq!(cidr_family("10.43.0.0/16"), Some(true));
        assert_eq!(cidr_family("2001:db8::/64"), Some(false));
        assert_eq!(cidr_family("10.43.0.0/32"), Some(true));
        assert_eq!(cidr_family("0.0.0.0/0"), Some(true));
        for bad in [
            "10.43.0.1/16",
            "10.43.0.0",
            "10.43.0.0/33",
            "x/8",
            "2001:db8::1/64",
        ] {
            assert_eq!(cidr_family(bad), None, "{bad}");
        }
    }

    #[test]
    fn service_cidrs_are_validated_as_upstream() {
        let cidr = |c: Value| json!({"metadata": {"name": "x"}, "spec": {"cidrs": c}});
        let messages = |o: &Value| -> Vec<String> {
            ServiceCidrs
                .validate(o)
                .into_iter()
                .map(|e| e.message)
                .collect()
        };
        assert!(messages(&cidr(json!(["10.0.0.0/24", "fd00::/108"]))).is_empty());
        assert_eq!(messages(&cidr(json!([]))), ["spec.cidrs: Required value"]);
        assert_eq!(
            messages(&cidr(json!(["10.0.0.1/24"]))),
            [format!(
                "spec.cidrs[0]: Invalid value: \"10.0.0.1/24\": {CIDR_FORMAT}"
            )]
        );
        assert_eq!(
            messages(&cidr(json!(["10.0.0.0/24", "10.1.0.0/24", "fd00::/64"]))),
            ["spec.cidrs: Too many: 3: must have at most 2 items"]
        );
        assert_eq!(
            messages(&cidr(json!(["10.0.0.0/24", "10.1.0.0/24"]))).len(),
            1
        );
        let old = cidr(json!(["10.0.0.0/24"]));
        assert!(
            ServiceCidrs
                .validate_update(&cidr(json!(["10.0.0.0/24", "fd00::/64"])), &old)
                .is_empty()
        );
        assert_eq!(
            ServiceCidrs
                .validate_update(&cidr(json!(["10.9.0.0/24"])), &old)
                .len(),
            1
        );
    }

    #[test]
    fn ip_addresses_are_named_by_a_canonical_address_and_keep_their_parent() {
        let ip = |name: &str| json!({"metadata": {"name": name}, "spec": {"parentRef": {"resource": "services", "namespace": "default", "name": "kubernetes"}}});
        assert!(IpAddresses.validate(&ip("10.43.0.1")).is_empty());
        assert!(IpAddresses.validate(&ip("2001:db8::1")).is_empty());
        assert_eq!(
            IpAddresses.validate(&ip("2001:0db8::1"))[0].message,
            "metadata.name: Invalid value: \"2001:0db8::1\": must be a canonical format IP address"
        );
        assert_eq!(IpAddresses.validate(&ip("host")).len(), 1);
        assert_eq!(
            parent_ref_cell(&ip("10.43.0.1")),
            "services/default/kubernetes"
        );
        let mut moved = ip("10.43.0.1");
        moved["spec"]["parentRef"]["name"] = json!("other");
        assert_eq!(
            IpAddresses.validate_update(&moved, &ip("10.43.0.1")).len(),
            1
        );
    }
}
