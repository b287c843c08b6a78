//! apps/v1 `controllerrevisions`: the immutable snapshots of a DaemonSet's
//! or StatefulSet's pod template that their controllers keep as history
//! (what `kubectl rollout history` lists and `rollout undo` applies).

use k8s_openapi::api::apps::v1::ControllerRevision;
use serde_json::{Value, json};

use super::{immutable, typed};
use crate::table::{Column, age_cell, name_cell};
use crate::{FieldError, Strategy};

/// `controllerrevisions`: `data` is required and immutable, `revision`
/// is not negative (upstream's `ValidateControllerRevision`).
#[derive(Debug)]
pub(crate) struct ControllerRevisions;

/// upstream's `Controller` cell: `<kind>.<group>/<name>` of the
/// controlling owner, lower-cased, or `<none>`.
fn controller_cell(obj: &Value) -> Value {
    let controller = obj
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|refs| {
            refs.iter()
                .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        });
    let Some(r) = controller else {
        return json!("<none>");
    };
    let text = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
    let group = text("apiVersion")
        .rsplit_once('/')
        .map_or("", |(group, _)| group);
    let kind = if group.is_empty() {
        text("kind").to_lowercase()
    } else {
        format!("{}.{group}", text("kind").to_lowercase())
    };
    json!(format!("{kind}/{}", text("name")))
}

impl Strategy for ControllerRevisions {
    typed!(ControllerRevision);
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut out = Vec::new();
        if obj.get("data").is_none_or(Value::is_null) {
            out.push(FieldError::required("data", ""));
        }
        if let Some(r) = obj.get("revision").and_then(Value::as_i64)
            && r < 0
        {
            out.push(FieldError::invalid_int(
                "revision",
                r,
                "must be greater than or equal to 0",
            ));
        }
        out
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut out = self.validate(new);
        out.extend(immutable(new, old, "/data"));
        out
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("Controller", "Controller of the object"),
            Column::text(
                "Revision",
                "Revision indicates the revision of the state represented by Data.",
            ),
            Column::AGE,
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        vec![
            name_cell(obj),
            controller_cell(obj),
            obj.get("revision").cloned().unwrap_or(json!(0)),
            age_cell(obj, now),
        ]
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{ControllerRevisions, controller_cell};
    use crate::Strategy;

    #[test]
    fn the_controller_cell_names_kind_group_and_name() {
        let cr = json!({"metadata": {"ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "fluentd", "uid": "u", "controller": true}]}});
        assert_eq!(controller_cell(&cr), "daemonset.apps/fluentd");
        assert_eq!(controller_cell(&json!({"metadata": {}})), "<none>");
    }

    #[test]
    fn data_is_required_and_immutable() {
        let old = json!({"metadata": {"name": "a"}, "data": {"spec": {}}, "revision": 1});
        assert!(ControllerRevisions.validate(&old).is_empty());
        let missing = json!({"metadata": {"name": "a"}, "revision": 1});
        assert_eq!(ControllerRevisions.validate(&missing).len(), 1);
        let mut new = old.clone();
        new["revision"] = json!(2);
        assert!(ControllerRevisions.validate_update(&new, &old).is_empty());
        new["data"] = json!({"spec": {"x": 1}});
        assert_eq!(ControllerRevisions.validate_update(&new, &old).len(), 1);
    }
}
