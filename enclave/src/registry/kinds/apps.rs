//! `deployments` (apps/v1): defaults, selector validation, generation and
//! the status split, upstream columns.

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};

use super::pods::{default_pod_spec, validate_pod_spec};
use super::{default_at, keep_status, typed};
use crate::registry::table::{Column, age_cell, name_cell, or_none};
use crate::registry::{FieldError, Strategy};

/// `deployments`.
#[derive(Debug)]
pub(crate) struct Deployments;

fn containers_images(obj: &Value) -> (String, String) {
    let cs = obj
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = cs.iter().filter_map(|c| c.get("name")?.as_str()).collect();
    let images: Vec<&str> = cs.iter().filter_map(|c| c.get("image")?.as_str()).collect();
    (names.join(","), images.join(","))
}

fn selector_string(obj: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(m) = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
    {
        for (k, v) in m {
            parts.push(format!("{k}={}", v.as_str().unwrap_or("")));
        }
    }
    parts.join(",")
}

fn int(obj: &Value, ptr: &str) -> i64 {
    obj.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

impl Strategy for Deployments {
    typed!(Deployment);
    fn tracks_generation(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
        default_at(obj, "/spec/replicas", json!(1));
        default_at(obj, "/spec/revisionHistoryLimit", json!(10));
        default_at(obj, "/spec/progressDeadlineSeconds", json!(600));
        default_at(obj, "/spec/strategy/type", json!("RollingUpdate"));
        if obj.pointer("/spec/strategy/type") == Some(&json!("RollingUpdate")) {
            default_at(
                obj,
                "/spec/strategy/rollingUpdate/maxUnavailable",
                json!("25%"),
            );
            default_at(obj, "/spec/strategy/rollingUpdate/maxSurge", json!("25%"));
        }
        if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
            default_pod_spec(spec);
        }
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
        if let Some(spec) = new.pointer_mut("/spec/template/spec") {
            default_pod_spec(spec);
        }
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut out = validate_pod_spec(obj.pointer("/spec/template/spec"), "spec.template.spec");
        if obj
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            < 0
        {
            out.push(FieldError::invalid(
                "spec.replicas",
                &int(obj, "/spec/replicas").to_string(),
                "must be greater than or equal to 0",
            ));
        }
        let selector = obj
            .pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object);
        let has_exprs = obj
            .pointer("/spec/selector/matchExpressions")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        match selector {
            None if !has_exprs => out.push(FieldError::required("spec.selector", "")),
            Some(sel) => {
                let labels = obj
                    .pointer("/spec/template/metadata/labels")
                    .and_then(Value::as_object);
                let ok = sel
                    .iter()
                    .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
                if !ok {
                    out.push(FieldError::invalid(
                        "spec.template.metadata.labels",
                        &labels
                            .map(|l| Value::Object(l.clone()).to_string())
                            .unwrap_or_default(),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
            None => {}
        }
        out
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut out = self.validate(new);
        if new.pointer("/spec/selector") != old.pointer("/spec/selector") {
            out.push(FieldError::immutable(
                "spec.selector",
                new.pointer("/spec/selector").unwrap_or(&Value::Null),
            ));
        }
        out
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("Ready", "Number of the pod with ready state"),
            Column::integer("Up-to-date", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
            Column::integer("Available", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
            Column::AGE,
            Column::text("Containers", "Names of each container in the template.").wide(),
            Column::text("Images", "Images referenced by each container in the template.").wide(),
            Column::text("Selector", "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.").wide(),
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (containers, images) = containers_images(obj);
        vec![
            name_cell(obj),
            json!(format!(
                "{}/{}",
                int(obj, "/status/readyReplicas"),
                int(obj, "/spec/replicas")
            )),
            json!(int(obj, "/status/updatedReplicas")),
            json!(int(obj, "/status/availableReplicas")),
            age_cell(obj, now),
            json!(containers),
            json!(images),
            or_none(Some(&selector_string(obj))),
        ]
    }
}
