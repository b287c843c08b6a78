//! autoscaling/v2 `horizontalpodautoscalers`: upstream's defaults (one replica at least, 80 %
//! CPU when no metric is named), validation, the status split and upstream's columns; and
//! autoscaling/v1's, served from the v2 objects (`registry::conversion`), which needs no rules
//! of its own but its schema.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use serde_json::{Value, json};

use super::{default_at, drop_status, int, keep_status, s, typed};
use crate::table::{Column, age_cell, name_cell};
use crate::{FieldError, Strategy};

/// Upstream's `DefaultCPUUtilization`.
const DEFAULT_CPU_UTILIZATION: i64 = 80;
/// Metrics shown in the `Targets` cell before `+ N more...`.
const MAX_SHOWN_METRICS: usize = 3;

/// `horizontalpodautoscalers`.
#[derive(Debug)]
pub(crate) struct HorizontalPodAutoscalers;

/// autoscaling/v1 `horizontalpodautoscalers`: requests are served by the v2 resource, whose
/// strategy applies, so only the v1 schema (for OpenAPI) is its own.
#[derive(Debug)]
pub(crate) struct HorizontalPodAutoscalersV1;

impl Strategy for HorizontalPodAutoscalersV1 {
    typed!(k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler);
    // Tables are built from the stored (v2) objects, with v2's columns, as upstream's are.
    fn columns(&self) -> Vec<Column> {
        HorizontalPodAutoscalers.columns()
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        HorizontalPodAutoscalers.cells(obj, now)
    }
}

fn defaults(obj: &mut Value) {
    default_at(obj, "/spec/minReplicas", json!(1));
    let no_metrics = obj
        .pointer("/spec/metrics")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if no_metrics {
        obj["spec"]["metrics"] = json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": DEFAULT_CPU_UTILIZATION}}}]);
    }
}

/// The current value of the `i`th metric's status, or `<unknown>`.
fn current(obj: &Value, i: usize, ptr: &str) -> String {
    obj.pointer(&format!("/status/currentMetrics/{i}"))
        .and_then(|m| m.pointer(ptr))
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_else(|| "<unknown>".into())
}

/// Upstream's `formatHPAMetrics` for the `Targets` cell.
fn targets(obj: &Value) -> String {
    let specs = obj
        .pointer("/spec/metrics")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if specs.is_empty() {
        return "<none>".into();
    }
    let mut shown = Vec::new();
    for (i, m) in specs.iter().enumerate().take(MAX_SHOWN_METRICS) {
        let kind = s(m, "/type");
        let cell = match kind {
            "Resource" | "ContainerResource" => {
                let field = if kind == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let name = s(m, &format!("/{field}/name"));
                let target = m
                    .pointer(&format!("/{field}/target"))
                    .unwrap_or(&Value::Null);
                match target.get("averageUtilization").and_then(Value::as_i64) {
                    Some(pct) => format!(
                        "{name}: {}/{pct}%",
                        match current(obj, i, &format!("/{field}/current/averageUtilization"))
                            .as_str()
                        {
                            "<unknown>" => "<unknown>".to_string(),
                            v => format!("{v}%"),
                        }
                    ),
                    None => format!(
                        "{name}: {}/{}",
                        current(obj, i, &format!("/{field}/current/averageValue")),
                        s(target, "/averageValue")
                    ),
                }
            }
            "Pods" => format!(
                "{}/{}",
                current(obj, i, "/pods/current/averageValue"),
                s(m, "/pods/target/averageValue")
            ),
            "Object" | "External" => {
                let field = if kind == "Object" {
                    "object"
                } else {
                    "external"
                };
                let target = m
                    .pointer(&format!("/{field}/target"))
                    .unwrap_or(&Value::Null);
                let (want, ptr) = match s(target, "/averageValue") {
                    "" => (s(target, "/value"), "value"),
                    avg => (avg, "averageValue"),
                };
                let suffix = if ptr == "averageValue" { " (avg)" } else { "" };
                format!(
                    "{}/{want}{suffix}",
                    current(obj, i, &format!("/{field}/current/{ptr}"))
                )
            }
            _ => "<unknown type>".into(),
        };
        shown.push(cell);
    }
    let mut out = shown.join(", ");
    if specs.len() > MAX_SHOWN_METRICS {
        out.push_str(&format!(" + {} more...", specs.len() - MAX_SHOWN_METRICS));
    }
    out
}

impl Strategy for HorizontalPodAutoscalers {
    typed!(HorizontalPodAutoscaler);
    fn prepare_for_create(&self, obj: &mut Value) {
        drop_status(obj);
        defaults(obj);
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
        defaults(new);
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut out = Vec::new();
        for field in ["kind", "name"] {
            if s(obj, &format!("/spec/scaleTargetRef/{field}")).is_empty() {
                out.push(FieldError::required(
                    format!("spec.scaleTargetRef.{field}"),
                    "",
                ));
            }
        }
        let min = obj.pointer("/spec/minReplicas").and_then(Value::as_i64);
        let max = int(obj, "/spec/maxReplicas");
        if let Some(m) = min.filter(|m| *m < 1) {
            out.push(FieldError::invalid_int(
                "spec.minReplicas",
                m,
                "must be greater than or equal to 1",
            ));
        }
        if max < 1 {
            out.push(FieldError::invalid_int(
                "spec.maxReplicas",
                max,
                "must be greater than 0",
            ));
        } else if min.is_some_and(|m| max < m) {
            out.push(FieldError::invalid_int(
                "spec.maxReplicas",
                max,
                "must be greater than or equal to `minReplicas`",
            ));
        }
        out
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("Reference", "The scaled object"),
            Column::text("Targets", "The metrics and their targets"),
            Column::text("MinPods", "The lower limit of replicas"),
            Column::integer("MaxPods", "The upper limit of replicas"),
            Column::integer("Replicas", "The current number of replicas"),
            Column::AGE,
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let min = match obj.pointer("/spec/minReplicas").and_then(Value::as_i64) {
            Some(m) => m.to_string(),
            None => "<unset>".into(),
        };
        vec![
            name_cell(obj),
            json!(format!(
                "{}/{}",
                s(obj, "/spec/scaleTargetRef/kind"),
                s(obj, "/spec/scaleTargetRef/name")
            )),
            json!(targets(obj)),
            json!(min),
            json!(int(obj, "/spec/maxReplicas")),
            json!(int(obj, "/status/currentReplicas")),
            age_cell(obj, now),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_read_as_upstreams_printer() {
        let mut hpa = json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"},
            "maxReplicas": 5}});
        defaults(&mut hpa);
        assert_eq!(targets(&hpa), "cpu: <unknown>/80%");
        hpa["status"] = json!({"currentMetrics": [{"type": "Resource",
            "resource": {"name": "cpu", "current": {"averageUtilization": 42}}}]});
        assert_eq!(targets(&hpa), "cpu: 42%/80%");
        hpa["spec"]["metrics"] = json!([
            {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
            {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
            {"type": "External", "external": {"metric": {"name": "q"}, "target": {"type": "Value", "value": "3"}}},
            {"type": "Pods", "pods": {"metric": {"name": "x"}, "target": {"type": "AverageValue", "averageValue": "1"}}},
        ]);
        hpa["status"] = json!({});
        assert_eq!(
            targets(&hpa),
            "memory: <unknown>/100Mi, <unknown>/10, <unknown>/3 + 1 more..."
        );
    }
}
