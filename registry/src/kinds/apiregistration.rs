//! apiregistration.k8s.io/v1 `apiservices`: every group version the enclave serves is listed
//! as kube-apiserver's aggregator lists its own (`controllers::api_service_registration`
//! keeps them), with upstream's columns. APIServices naming a Service are stored but not
//! proxied to: the enclave reaches nothing in the cluster on its own.

use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use serde_json::{Value, json};

use super::{drop_status, keep_status, s, typed};
use crate::table::{Column, age_cell, name_cell};
use crate::{FieldError, NameRule, Strategy, meta};

/// `apiservices`.
#[derive(Debug)]
pub(crate) struct ApiServices;

impl Strategy for ApiServices {
    typed!(APIService);
    /// Upstream checks a path segment that is `version.group`, so the core group's `v1.`
    /// (which ends with a dot, not a DNS subdomain) is a valid name.
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        drop_status(obj);
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let (group, version) = (s(obj, "/spec/group"), s(obj, "/spec/version"));
        let mut out = Vec::new();
        if version.is_empty() {
            out.push(FieldError::required("spec.version", ""));
        }
        let want = format!("{version}.{group}");
        if meta::name(obj) != want {
            out.push(FieldError::invalid(
                "metadata.name",
                meta::name(obj),
                &format!("must be `spec.version+\".\"+spec.group`: {want:?}"),
            ));
        }
        out
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("Service", "The name of the service that serves the API"),
            Column::text("Available", "Whether the API is available"),
            Column::AGE,
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let service = match obj.pointer("/spec/service").filter(|v| !v.is_null()) {
            Some(svc) => format!("{}/{}", s(svc, "/namespace"), s(svc, "/name")),
            None => "Local".into(),
        };
        let available = obj
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| s(c, "/type") == "Available"))
            .map_or("Unknown".to_string(), |c| match s(c, "/status") {
                "True" => "True".to_string(),
                other => format!("{other} ({})", s(c, "/reason")),
            });
        vec![
            name_cell(obj),
            json!(service),
            json!(available),
            age_cell(obj, now),
        ]
    }
}
