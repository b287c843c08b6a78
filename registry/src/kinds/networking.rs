//! networking.k8s.io/v1 `ingresses` (path and backend validation, the status split) and
//! `ingressclasses`, with upstream's columns.

use std::collections::BTreeSet;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde_json::{Value, json};

use super::{count, drop_status, immutable, keep_status, s, typed, unsupported};
use crate::table::{Column, age_cell, name_cell};
use crate::{FieldError, Strategy};

/// `ingresses`.
#[derive(Debug)]
pub(crate) struct Ingresses;

fn validate_backend(b: &Value, path: &str, out: &mut Vec<FieldError>) {
    let service = b.get("service").filter(|v| !v.is_null());
    let resource = b.get("resource").filter(|v| !v.is_null());
    match (service, resource) {
        (Some(_), Some(_)) => out.push(FieldError::invalid(
            path.to_string(),
            "",
            "cannot set both resource and service backends",
        )),
        (None, None) => out.push(FieldError::invalid(
            path.to_string(),
            "",
            "resource or service backend is required",
        )),
        (Some(svc), None) => {
            if s(svc, "/name").is_empty() {
                out.push(FieldError::required(format!("{path}.service.name"), ""));
            }
            let has_name = !s(svc, "/port/name").is_empty();
            let has_number = svc
                .pointer("/port/number")
                .and_then(Value::as_i64)
                .is_some();
            if has_name == has_number {
                out.push(FieldError::invalid(
                    format!("{path}.service.port"),
                    "",
                    "port name or number is required",
                ));
            }
        }
        (None, Some(_)) => {}
    }
}

/// The `Address` cell: load-balancer IPs or hostnames, sorted and unique.
fn address(obj: &Value) -> String {
    let set: BTreeSet<&str> = obj
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|i| {
                    [s(i, "/ip"), s(i, "/hostname")]
                        .into_iter()
                        .find(|x| !x.is_empty())
                })
                .collect()
        })
        .unwrap_or_default();
    set.into_iter().collect::<Vec<_>>().join(",")
}

/// The `Hosts` cell: up to three hosts, `*` when no rule names one.
fn hosts(obj: &Value) -> String {
    const MAX: usize = 3;
    let rules = obj
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let list: Vec<&str> = rules
        .iter()
        .take(MAX)
        .map(|r| s(r, "/host"))
        .filter(|h| !h.is_empty())
        .collect();
    if list.is_empty() {
        return "*".into();
    }
    let joined = list.join(",");
    if rules.len() > MAX {
        format!("{joined} + {} more...", rules.len() - MAX)
    } else {
        joined
    }
}

impl Strategy for Ingresses {
    typed!(Ingress);
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
        let mut out = Vec::new();
        let default = obj.pointer("/spec/defaultBackend").filter(|v| !v.is_null());
        if default.is_none() && count(obj, "/spec/rules") == 0 {
            out.push(FieldError::invalid(
                "spec",
                "",
                "either `defaultBackend` or `rules` must be specified",
            ));
        }
        if let Some(b) = default {
            validate_backend(b, "spec.defaultBackend", &mut out);
        }
        let rules = obj
            .pointer("/spec/rules")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (i, rule) in rules.iter().enumerate() {
            let paths = rule
                .pointer("/http/paths")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            if rule.get("http").is_some_and(|h| !h.is_null()) && paths.is_empty() {
                out.push(FieldError::required(
                    format!("spec.rules[{i}].http.paths"),
                    "",
                ));
            }
            for (j, p) in paths.iter().enumerate() {
                let f = format!("spec.rules[{i}].http.paths[{j}]");
                let ty = s(p, "/pathType");
                match ty {
                    "" => out.push(FieldError::required(
                        format!("{f}.pathType"),
                        "pathType must be specified",
                    )),
                    "Exact" | "Prefix" => {
                        let path = s(p, "/path");
                        if !path.starts_with('/') {
                            out.push(FieldError::invalid(
                                format!("{f}.path"),
                                path,
                                "must be an absolute path",
                            ));
                        }
                    }
                    "ImplementationSpecific" => {}
                    other => out.push(unsupported(
                        format!("{f}.pathType"),
                        other,
                        &["Exact", "ImplementationSpecific", "Prefix"],
                    )),
                }
                match p.get("backend") {
                    Some(b) => validate_backend(b, &format!("{f}.backend"), &mut out),
                    None => out.push(FieldError::required(format!("{f}.backend"), "")),
                }
            }
        }
        out
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text(
                "Class",
                "The name of the IngressClass resource that should be used for additional configuration",
            ),
            Column::text(
                "Hosts",
                "Hosts that incoming requests are matched against before the ingress rule",
            ),
            Column::text(
                "Address",
                "Address is a list containing ingress points for the load-balancer",
            ),
            Column::text("Ports", "Ports of TLS configurations that open"),
            Column::AGE,
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let class = s(obj, "/spec/ingressClassName");
        let ports = if count(obj, "/spec/tls") > 0 {
            "80, 443"
        } else {
            "80"
        };
        vec![
            name_cell(obj),
            json!(if class.is_empty() { "<none>" } else { class }),
            json!(hosts(obj)),
            json!(address(obj)),
            json!(ports),
            age_cell(obj, now),
        ]
    }
}

/// `ingressclasses`.
#[derive(Debug)]
pub(crate) struct IngressClasses;

impl Strategy for IngressClasses {
    typed!(IngressClass);
    fn tracks_generation(&self) -> bool {
        true
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        if s(obj, "/spec/controller").is_empty() {
            return vec![FieldError::required("spec.controller", "")];
        }
        Vec::new()
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut out = self.validate(new);
        out.extend(immutable(new, old, "/spec/controller"));
        out
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("Controller", "The controller that implements the class"),
            Column::text("Parameters", "The resource with the class's parameters"),
            Column::AGE,
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let parameters = match obj.pointer("/spec/parameters").filter(|p| !p.is_null()) {
            None => "<none>".to_string(),
            Some(p) => {
                let group = s(p, "/apiGroup");
                let kind = if group.is_empty() {
                    s(p, "/kind").to_string()
                } else {
                    format!("{}.{group}", s(p, "/kind"))
                };
                format!("{kind}/{}", s(p, "/name"))
            }
        };
        vec![
            name_cell(obj),
            json!(s(obj, "/spec/controller")),
            json!(parameters),
            age_cell(obj, now),
        ]
    }
}
