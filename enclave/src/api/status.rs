//! `metav1.Status` bodies as kube-apiserver writes them: its Go struct's field order and its
//! `omitempty` omissions. The registry builds a Status as a JSON value, whose keys serialize
//! sorted (`{"apiVersion":..,"code":..,"details":..}`); clients and conformance suites compare
//! error bodies byte for byte, so every JSON response and watch `ERROR` event that carries a
//! Status is written through [`encode`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `metav1.Status`, fields in upstream's order.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Status {
    kind: String,
    api_version: String,
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
    #[serde(default, skip_serializing_if = "is_zero")]
    code: i64,
}

/// `metav1.ListMeta` (a Status's is normally empty, and written as `{}`).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListMeta {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    self_link: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    resource_version: String,
    #[serde(default, rename = "continue", skip_serializing_if = "String::is_empty")]
    continue_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    remaining_item_count: Option<i64>,
}

/// `metav1.StatusDetails`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Details {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    group: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    uid: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    causes: Vec<Cause>,
    #[serde(default, skip_serializing_if = "is_zero")]
    retry_after_seconds: i64,
}

/// `metav1.StatusCause`: its type is written as `reason`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cause {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    field: String,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Whether `v` is a `metav1.Status` (`kind: Status` of `v1` or `meta.k8s.io/v1`).
fn is_status(v: &Value) -> bool {
    v.get("kind").and_then(Value::as_str) == Some("Status")
        && matches!(
            v.get("apiVersion").and_then(Value::as_str),
            Some("v1" | "meta.k8s.io/v1")
        )
}

/// The JSON text of `v`: a Status in upstream's field order and omissions, anything else as
/// it is. A Status with fields `metav1.Status` does not have is written as it is too.
pub fn encode(v: &Value) -> String {
    if is_status(v)
        && let Ok(status) = Status::deserialize(v)
        && let Ok(text) = serde_json::to_string(&status)
    {
        return text;
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::encode;

    #[test]
    fn an_error_status_is_written_in_upstream_order() {
        // kube-apiserver's body for a missing ConfigMap.
        let v = json!({
            "apiVersion": "v1", "code": 404, "details": {"kind": "configmaps", "name": "x"},
            "kind": "Status", "message": "configmaps \"x\" not found", "metadata": {},
            "reason": "NotFound", "status": "Failure",
        });
        assert_eq!(
            encode(&v),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"configmaps \"x\" not found","reason":"NotFound","details":{"name":"x","kind":"configmaps"},"code":404}"#
        );
    }

    #[test]
    fn empty_fields_are_omitted_as_go_omitempty_does() {
        let v = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": "x", "group": "", "kind": "configmaps", "uid": "u-1"},
        });
        assert_eq!(
            encode(&v),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","details":{"name":"x","kind":"configmaps","uid":"u-1"}}"#
        );
        let v = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "m", "reason": "Invalid", "code": 422,
            "details": {"name": "p", "kind": "Pod", "causes": [
                {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers"},
                {"reason": "FieldManagerConflict", "message": "conflict with \"a\""},
            ], "retryAfterSeconds": 0},
        });
        assert_eq!(
            encode(&v),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"m","reason":"Invalid","details":{"name":"p","kind":"Pod","causes":[{"reason":"FieldValueRequired","message":"Required value","field":"spec.containers"},{"reason":"FieldManagerConflict","message":"conflict with \"a\""}]},"code":422}"#
        );
    }

    #[test]
    fn other_objects_and_unusual_statuses_are_written_as_they_are() {
        let pod = json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p"}});
        assert_eq!(encode(&pod), pod.to_string());
        // A custom resource of kind Status in another group.
        let custom = json!({"kind": "Status", "apiVersion": "example.com/v1", "spec": {}});
        assert_eq!(encode(&custom), custom.to_string());
        // A field metav1.Status does not have: not dropped.
        let odd = json!({"kind": "Status", "apiVersion": "v1", "extra": 1});
        assert_eq!(encode(&odd), odd.to_string());
    }

    #[test]
    fn list_metadata_keeps_its_fields_in_order() {
        let v = json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
            "metadata": {"continue": "c", "resourceVersion": "12"}, "reason": "Expired",
        });
        assert_eq!(
            encode(&v),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{"resourceVersion":"12","continue":"c"},"status":"Failure","reason":"Expired","code":410}"#
        );
    }
}
