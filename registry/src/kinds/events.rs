//! `events` of events.k8s.io/v1. Stored as their own resource (key prefix
//! `/registry/events.k8s.io/events/`), not as a second view of core/v1
//! events as upstream does; the columns are upstream's event columns,
//! read from the v1 field names (`regarding`, `note`, `series`, ...).

use k8s_openapi::api::events::v1::Event;
use serde_json::{Value, json};

use super::{s, typed, unsupported};
use crate::table::{Column, age, name_cell};
use crate::{FieldError, Strategy, meta};

/// `events` (events.k8s.io/v1).
#[derive(Debug)]
pub(crate) struct Events;

const FIELDS: &[(&str, &str)] = &[
    ("regarding.kind", "/regarding/kind"),
    ("regarding.namespace", "/regarding/namespace"),
    ("regarding.name", "/regarding/name"),
    ("regarding.uid", "/regarding/uid"),
    ("regarding.apiVersion", "/regarding/apiVersion"),
    ("regarding.resourceVersion", "/regarding/resourceVersion"),
    ("regarding.fieldPath", "/regarding/fieldPath"),
    ("reason", "/reason"),
    ("reportingController", "/reportingController"),
    ("type", "/type"),
];

fn first<'a>(obj: &'a Value, ptrs: &[&str]) -> Option<&'a str> {
    ptrs.iter().map(|p| s(obj, p)).find(|v| !v.is_empty())
}

impl Strategy for Events {
    typed!(Event);
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        // Upstream's ValidateEventCreate for events.k8s.io/v1 requests.
        let mut out = Vec::new();
        for (field, detail) in [
            ("eventTime", ""),
            ("reportingController", ""),
            ("reportingInstance", ""),
            ("action", ""),
            ("reason", ""),
        ] {
            if s(obj, &format!("/{field}")).is_empty() {
                out.push(FieldError::required(field, detail));
            }
        }
        let ty = s(obj, "/type");
        if ty != "Normal" && ty != "Warning" {
            out.push(unsupported("type", ty, &["Normal", "Warning"]));
        }
        if !s(obj, "/deprecatedFirstTimestamp").is_empty() {
            out.push(FieldError::invalid(
                "deprecatedFirstTimestamp",
                "",
                "needs to be unset",
            ));
        }
        out
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
        ]
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        FIELDS
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, p)| s(obj, p).to_string())
    }
    fn columns(&self) -> Vec<Column> {
        super::core::Events.columns()
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let last = first(
            obj,
            &[
                "/series/lastObservedTime",
                "/deprecatedLastTimestamp",
                "/eventTime",
            ],
        )
        .or_else(|| meta::meta_str(obj, "creationTimestamp"));
        let first_seen = first(obj, &["/deprecatedFirstTimestamp", "/eventTime"]);
        let count = obj
            .pointer("/series/count")
            .or_else(|| obj.get("deprecatedCount"))
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let component = first(
            obj,
            &["/deprecatedSource/component", "/reportingController"],
        );
        let instance = first(obj, &["/deprecatedSource/host", "/reportingInstance"]);
        let source = match (component.unwrap_or(""), instance) {
            (c, Some(i)) => format!("{c}, {i}"),
            (c, None) => c.to_string(),
        };
        let kind = s(obj, "/regarding/kind").to_lowercase();
        vec![
            age(last, now),
            json!(s(obj, "/type")),
            json!(s(obj, "/reason")),
            json!(format!("{kind}/{}", s(obj, "/regarding/name"))),
            json!(s(obj, "/regarding/fieldPath")),
            json!(source),
            json!(s(obj, "/note").trim()),
            age(first_seen, now),
            json!(count),
            name_cell(obj),
        ]
    }
}
