//! `v1` `ComponentStatus` (`componentstatuses`, `cs`): never stored, answered by
//! `api::component_status` as kube-apiserver's deprecated endpoint answers it. The strategy
//! gives `kubectl get cs` its columns.

use serde_json::{Value, json};

use crate::table::{Column, name_cell};
use crate::{Canonical, NameRule, Strategy};

/// `componentstatuses`.
#[derive(Debug)]
pub(crate) struct ComponentStatuses;

impl Strategy for ComponentStatuses {
    fn canonicalize(&self, obj: &Value) -> Result<Canonical, String> {
        Ok(Canonical {
            value: obj.clone(),
            unknown_fields: Vec::new(),
        })
    }
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("Status", "Status of the component conditions"),
            Column::text("Message", "Message of the component conditions"),
            Column::text("Error", "Error of the component conditions"),
        ]
    }
    fn cells(&self, obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
        // Upstream's printer: the Healthy condition's status, messages and errors joined.
        let conditions = obj
            .get("conditions")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let field = |f: &str| {
            conditions
                .iter()
                .filter_map(|c| c.get(f).and_then(Value::as_str))
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(",")
        };
        let healthy = conditions.iter().any(|c| {
            c.get("type").and_then(Value::as_str) == Some("Healthy")
                && c.get("status").and_then(Value::as_str) == Some("True")
        });
        let status = match (conditions.is_empty(), healthy) {
            (true, _) => "Unknown",
            (false, true) => "Healthy",
            (false, false) => "Unhealthy",
        };
        vec![
            name_cell(obj),
            json!(status),
            json!(field("message")),
            json!(field("error")),
        ]
    }
}
