//! certificates.k8s.io/v1 `certificatesigningrequests` (upstream's
//! `pkg/registry/certificates/certificates`): the request, signer name,
//! usages and expiry are fixed at create (with the requester's identity,
//! which the API server fills in); the main endpoint changes nothing but
//! metadata, `/approval` only the Approved and Denied conditions, `/status`
//! the certificate and other conditions.

use base64::Engine;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use serde_json::{Value, json};

use super::{drop_status, s, typed, unsupported};
use crate::table::{Column, age_cell, name_cell};
use crate::{FieldError, NameRule, Strategy};

/// The usages upstream accepts.
const USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

/// The approval condition types.
const APPROVAL_CONDITIONS: [&str; 2] = ["Approved", "Denied"];

fn validate_signer_name(name: &str) -> Option<FieldError> {
    let field = "spec.signerName";
    if name.is_empty() {
        return Some(FieldError::required(field, ""));
    }
    let Some((domain, path)) = name.split_once('/') else {
        return Some(FieldError::invalid(
            field,
            name,
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ));
    };
    let bad_domain = !crate::meta::is_dns_subdomain(domain) || !domain.contains('.');
    if bad_domain || path.is_empty() {
        return Some(FieldError::invalid(
            field,
            name,
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ));
    }
    None
}

fn validate_spec(obj: &Value) -> Vec<FieldError> {
    let mut out = Vec::new();
    let request = s(obj, "/spec/request");
    let pem = base64::engine::general_purpose::STANDARD
        .decode(request)
        .unwrap_or_default();
    if request.is_empty() {
        out.push(FieldError::required("spec.request", ""));
    } else if let Err(e) = crate::csr::parse_csr(&pem) {
        out.push(FieldError::invalid(
            "spec.request",
            &format!("{:?}", String::from_utf8_lossy(&pem)),
            &e.to_string(),
        ));
    }
    out.extend(validate_signer_name(s(obj, "/spec/signerName")));
    let usages = obj.pointer("/spec/usages").and_then(Value::as_array);
    match usages {
        None => out.push(FieldError::required("spec.usages", "")),
        Some(us) => {
            for (i, u) in us.iter().enumerate() {
                let u = u.as_str().unwrap_or("");
                if !USAGES.contains(&u) {
                    out.push(unsupported(format!("spec.usages[{i}]"), u, USAGES));
                }
            }
        }
    }
    if let Some(e) = obj
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        && e < 600
    {
        out.push(FieldError::invalid_int(
            "spec.expirationSeconds",
            e,
            "may not specify a duration less than 600 seconds (10 minutes)",
        ));
    }
    out
}

/// The condition of `kind` in `obj`'s status, if any.
pub fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

/// `Approved,Issued`, `Denied`, `Pending`, ... as upstream's printer.
fn condition_cell(obj: &Value) -> Value {
    let mut parts: Vec<&str> = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter(|c| c.get("status").and_then(Value::as_str).unwrap_or("True") == "True")
                .filter_map(|c| c.get("type").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    if parts.is_empty() {
        parts.push("Pending");
    }
    let mut text = parts.join(",");
    if !s(obj, "/status/certificate").is_empty() {
        text.push_str(",Issued");
    }
    json!(text)
}

/// `certificatesigningrequests`.
#[derive(Debug)]
pub(crate) struct CertificateSigningRequests;

impl Strategy for CertificateSigningRequests {
    typed!(CertificateSigningRequest);
    fn name_rule(&self) -> NameRule {
        NameRule::Subdomain
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        drop_status(obj);
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // Users may not change their request or its status through the main endpoint.
        for f in ["spec", "status"] {
            match old.get(f) {
                Some(v) => new[f] = v.clone(),
                None => {
                    if let Some(o) = new.as_object_mut() {
                        o.remove(f);
                    }
                }
            }
        }
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_spec(obj)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut out = Vec::new();
        for kind in APPROVAL_CONDITIONS {
            if condition(old, kind).is_some() && condition(new, kind).is_none() {
                out.push(FieldError {
                    reason: "FieldValueForbidden",
                    field: "status.conditions".into(),
                    message: format!("status.conditions: Forbidden: updates may not remove a condition of type {kind:?}"),
                });
            }
        }
        if condition(new, "Approved").is_some() && condition(new, "Denied").is_some() {
            out.push(FieldError::invalid(
                "status.conditions",
                "Approved",
                "Approved and Denied conditions are mutually exclusive",
            ));
        }
        if !s(old, "/status/certificate").is_empty()
            && s(old, "/status/certificate") != s(new, "/status/certificate")
        {
            out.push(FieldError {
                reason: "FieldValueForbidden",
                field: "status.certificate".into(),
                message: "status.certificate: Forbidden: updates may not modify existing certificate content".into(),
            });
        }
        out
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::AGE,
            Column::text("SignerName", "Name of the signer."),
            Column::text("Requestor", "Name of the requestor."),
            Column::text(
                "RequestedDuration",
                "Requested duration of the certificate.",
            ),
            Column::text("Condition", "The latest condition of the request."),
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let duration = obj
            .pointer("/spec/expirationSeconds")
            .and_then(Value::as_i64)
            .map_or_else(|| "<none>".to_string(), crate::table::human_duration);
        vec![
            name_cell(obj),
            age_cell(obj, now),
            json!(s(obj, "/spec/signerName")),
            json!(s(obj, "/spec/username")),
            json!(duration),
            condition_cell(obj),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_and_signer_names() {
        let o = json!({"status": {"conditions": [{"type": "Approved", "status": "True"}], "certificate": "eA=="}});
        assert_eq!(condition_cell(&o), json!("Approved,Issued"));
        assert_eq!(condition_cell(&json!({})), json!("Pending"));
        assert!(validate_signer_name("kubernetes.io/kube-apiserver-client").is_none());
        assert!(validate_signer_name("nodomain").is_some());
        let strat = CertificateSigningRequests;
        let denied = json!({"status": {"conditions": [{"type": "Approved"}, {"type": "Denied"}]}});
        assert_eq!(strat.validate_update(&denied, &o).len(), 2);
    }
}
