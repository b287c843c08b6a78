//! `resourcequotas` and `limitranges` (core/v1): stored and shown, not
//! enforced (no quota controller or admission yet).

use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota};
use serde_json::{Value, json};

use super::{keep_status, typed};
use crate::registry::Strategy;
use crate::registry::table::{Column, age_cell, created_at_cell, name_cell};

/// `resourcequotas`: `status` is kept apart from `spec`.
#[derive(Debug)]
pub(crate) struct ResourceQuotas;

/// Upstream's Request and Limit cells: `name: used/hard` for every hard
/// limit in `status`, `limits.*` in the second cell.
fn quota_cells(obj: &Value) -> (String, String) {
    let hard = obj
        .pointer("/status/hard")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let used = obj.pointer("/status/used").and_then(Value::as_object);
    let mut request = Vec::new();
    let mut limit = Vec::new();
    // serde_json's map is ordered by key, as upstream sorts resource names.
    for (name, h) in &hard {
        let u = used
            .and_then(|u| u.get(name))
            .and_then(Value::as_str)
            .unwrap_or("0");
        let entry = format!("{name}: {u}/{}", h.as_str().unwrap_or(""));
        if name.split('.').next() == Some("limits") && name.contains('.') {
            limit.push(entry);
        } else {
            request.push(entry);
        }
    }
    (request.join(", "), limit.join(", "))
}

impl Strategy for ResourceQuotas {
    typed!(ResourceQuota);
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text(
                "Request",
                "Request represents a minimum amount of cpu/memory that a container may consume.",
            ),
            Column::text(
                "Limit",
                "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
            ),
            Column::AGE,
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (request, limit) = quota_cells(obj);
        vec![
            name_cell(obj),
            json!(request),
            json!(limit),
            age_cell(obj, now),
        ]
    }
}

/// `limitranges`: upstream has no printer, so the default `Name`,
/// `Created At` columns.
#[derive(Debug)]
pub(crate) struct LimitRanges;

impl Strategy for LimitRanges {
    typed!(LimitRange);
    fn columns(&self) -> Vec<Column> {
        vec![Column::NAME, Column::CREATED_AT]
    }
    fn cells(&self, obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
        vec![name_cell(obj), created_at_cell(obj)]
    }
}
