//! `resourcequotas` and `limitranges` (core/v1): stored and shown; the
//! admission plugins in [`crate::admission`] enforce them and
//! the resource quota controller keeps `status.used`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{LimitRange, LimitRangeItem, ResourceQuota};
use serde_json::{Value, json};

use super::{drop_status, keep_status, typed};
use crate::Strategy;
use crate::table::{Column, age_cell, created_at_cell, name_cell};

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
        drop_status(obj);
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

/// upstream's LimitRange defaulting (`SetDefaults_LimitRangeItem`) of every item.
fn default_limit_range(obj: &mut Value) {
    let Ok(mut lr) = serde_json::from_value::<LimitRange>(obj.clone()) else {
        return;
    };
    if let Some(spec) = lr.spec.as_mut() {
        for item in &mut spec.limits {
            default_limit_range_item(item);
        }
    }
    if let Ok(v) = serde_json::to_value(&lr) {
        *obj = v;
    }
}

impl Strategy for LimitRanges {
    typed!(LimitRange);
    fn prepare_for_create(&self, obj: &mut Value) {
        default_limit_range(obj);
    }
    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        default_limit_range(new);
    }
    fn columns(&self) -> Vec<Column> {
        vec![Column::NAME, Column::CREATED_AT]
    }
    fn cells(&self, obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
        vec![name_cell(obj), created_at_cell(obj)]
    }
}

/// upstream's `SetDefaults_LimitRangeItem` for `Container` items: `default`
/// from `max`, `defaultRequest` from `default`, then from `min`.
pub fn default_limit_range_item(item: &mut LimitRangeItem) {
    if item.type_ != "Container" {
        return;
    }
    let default = item.default.get_or_insert_with(BTreeMap::new);
    for (k, v) in item.max.iter().flatten() {
        default.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let default = default.clone();
    let request = item.default_request.get_or_insert_with(BTreeMap::new);
    for (k, v) in &default {
        request.entry(k.clone()).or_insert_with(|| v.clone());
    }
    for (k, v) in item.min.iter().flatten() {
        request.entry(k.clone()).or_insert_with(|| v.clone());
    }
    // Empty maps are omitted, as upstream's JSON omits them.
    if item.default.as_ref().is_some_and(BTreeMap::is_empty) {
        item.default = None;
    }
    if item
        .default_request
        .as_ref()
        .is_some_and(BTreeMap::is_empty)
    {
        item.default_request = None;
    }
}
