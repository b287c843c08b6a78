//! The PATCH types: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and
//! strategic merge patch with per-field merge keys and the `$patch`,
//! `$setElementOrder`, `$retainKeys` and `$deleteFromPrimitiveList`
//! directives.

use serde_json::{Map, Value};

use super::{Error, Result};

/// A PATCH request's type, from its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`.
    Json,
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
}

impl PatchType {
    /// The patch type for a Content-Type, if supported.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            _ => None,
        }
    }
}

/// Applies `patch` (raw body) of type `ty` to `current`.
///
/// # Errors
/// 400 BadRequest for a malformed patch; 422 for a JSON patch whose
/// operation fails (e.g. a `test` that does not hold), as upstream.
pub fn apply(ty: PatchType, current: &Value, patch: &[u8]) -> Result<Value> {
    let body: Value = serde_json::from_slice(patch)
        .map_err(|e| Error::BadRequest(format!("error decoding patch: {e}")))?;
    let mut out = current.clone();
    match ty {
        PatchType::Json => {
            let p: json_patch::Patch = serde_json::from_value(body)
                .map_err(|e| Error::BadRequest(format!("error decoding patch: {e}")))?;
            json_patch::patch(&mut out, &p).map_err(|e| Error::Invalid {
                kind: "Patch".into(),
                group: String::new(),
                name: String::new(),
                causes: vec![super::FieldError {
                    reason: "FieldValueInvalid",
                    field: String::new(),
                    message: e.to_string(),
                }],
            })?;
        }
        PatchType::Merge => {
            if !body.is_object() {
                return Err(Error::BadRequest(
                    "error decoding patch: a merge patch must be a JSON object".into(),
                ));
            }
            json_patch::merge(&mut out, &body);
        }
        PatchType::Strategic => {
            let Value::Object(p) = &body else {
                return Err(Error::BadRequest(
                    "error decoding patch: a strategic merge patch must be a JSON object".into(),
                ));
            };
            merge_map(&mut out, p)?;
        }
    }
    Ok(out)
}

/// The merge key of a list field, by field name (upstream's
/// `patchMergeKey` tags of the built-in types). Server-side apply keys
/// associative lists by the same fields (`registry::managed`).
pub fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "readinessGates"
        | "resourceClaims" => match field {
            "readinessGates" => "conditionType",
            _ => "name",
        },
        "ports" => {
            if items.iter().any(|i| i.get("containerPort").is_some()) {
                "containerPort"
            } else {
                "port"
            }
        }
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" => "type",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        "ownerReferences" => "uid",
        _ => return None,
    })
}

/// Lists of primitives merged as sets.
pub fn is_primitive_set(field: &str) -> bool {
    field == "finalizers"
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn merge_map(target: &mut Value, patch: &Map<String, Value>) -> Result<()> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *target = strip_directives(&Value::Object(patch.clone()));
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Object(Map::new());
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => {
            return Err(Error::BadRequest(format!(
                "unknown patch type: {other:?} in map"
            )));
        }
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(t) = target.as_object_mut() else {
        return Ok(());
    };
    if let Some(keep) = patch.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
    let mut orders = Vec::new();
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            orders.push((field.to_string(), v.clone()));
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let drop = v.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(list)) = t.get_mut(field) {
                list.retain(|x| !drop.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        match v {
            Value::Null => {
                t.remove(k);
            }
            Value::Object(pm) => {
                if pm.get("$patch").and_then(Value::as_str) == Some("delete") {
                    t.remove(k);
                    continue;
                }
                let entry = t.entry(k.clone()).or_insert(Value::Null);
                merge_map(entry, pm)?;
            }
            Value::Array(items) => {
                let entry = t.entry(k.clone()).or_insert(Value::Array(Vec::new()));
                merge_list(entry, items, k)?;
            }
            other => {
                t.insert(k.clone(), other.clone());
            }
        }
    }
    for (field, order) in orders {
        if let (Some(Value::Array(list)), Some(order)) = (t.get_mut(&field), order.as_array()) {
            reorder(list, order, &field);
        }
    }
    Ok(())
}

fn merge_list(target: &mut Value, items: &[Value], field: &str) -> Result<()> {
    if items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        let rest: Vec<Value> = items
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .map(strip_directives)
            .collect();
        *target = Value::Array(rest);
        return Ok(());
    }
    let existing = target.as_array().cloned().unwrap_or_default();
    if is_primitive_set(field) {
        let mut out = existing;
        for i in items {
            if !out.contains(i) {
                out.push(i.clone());
            }
        }
        *target = Value::Array(out);
        return Ok(());
    }
    let all: Vec<Value> = existing.iter().chain(items).cloned().collect();
    let Some(key) = merge_key(field, &all) else {
        *target = Value::Array(items.iter().map(strip_directives).collect());
        return Ok(());
    };
    let mut out = existing;
    for item in items {
        let Value::Object(pm) = item else {
            return Err(Error::BadRequest(format!(
                "field {field:?}: expected objects with merge key {key:?}"
            )));
        };
        let id = pm.get(key).cloned().unwrap_or(Value::Null);
        let pos = out.iter().position(|e| e.get(key) == Some(&id));
        match (pm.get("$patch").and_then(Value::as_str), pos) {
            (Some("delete"), Some(p)) => {
                out.remove(p);
            }
            (Some("delete"), None) => {}
            (_, Some(p)) => {
                if let Some(e) = out.get_mut(p) {
                    merge_map(e, pm)?;
                }
            }
            (_, None) => out.push(strip_directives(item)),
        }
    }
    *target = Value::Array(out);
    Ok(())
}

/// `$setElementOrder`: items named in `order` first, in that order; the rest after.
fn reorder(list: &mut Vec<Value>, order: &[Value], field: &str) {
    let key = merge_key(field, list);
    let id = |v: &Value| match key {
        Some(k) => v.get(k).cloned().unwrap_or(Value::Null),
        None => v.clone(),
    };
    let mut rest = std::mem::take(list);
    for o in order {
        let want = id(o);
        if let Some(p) = rest.iter().position(|e| id(e) == want) {
            list.push(rest.remove(p));
        }
    }
    list.append(&mut rest);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(cur: Value, p: Value) -> Value {
        apply(PatchType::Strategic, &cur, p.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn containers_merge_by_name_and_keep_order() {
        let cur = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
        let out = smp(
            cur,
            json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                             "containers": [{"name": "a", "image": "z"}]}}),
        );
        assert_eq!(
            out,
            json!({"spec": {"containers": [{"name": "b", "image": "y"}, {"name": "a", "image": "z"}]}})
        );
    }

    #[test]
    fn directives() {
        let cur =
            json!({"a": {"x": 1, "y": 2}, "l": [1, 2], "finalizers": ["f"], "c": [{"name": "n"}]});
        let out = smp(
            cur,
            json!({"a": {"$patch": "replace", "z": 3}, "$deleteFromPrimitiveList/l": [1],
                   "finalizers": ["g"], "containers": [{"name": "n", "$patch": "delete"}]}),
        );
        assert_eq!(out["a"], json!({"z": 3}));
        assert_eq!(out["l"], json!([2]));
        assert_eq!(out["finalizers"], json!(["f", "g"]));
    }

    #[test]
    fn merge_and_json_patch() {
        let cur = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        let m = apply(
            PatchType::Merge,
            &cur,
            br#"{"metadata":{"labels":{"a":null,"c":"3"}}}"#,
        )
        .unwrap();
        assert_eq!(m, json!({"metadata": {"labels": {"b": "2", "c": "3"}}}));
        let j = apply(
            PatchType::Json,
            &cur,
            br#"[{"op":"replace","path":"/metadata/labels/a","value":"9"}]"#,
        )
        .unwrap();
        assert_eq!(j["metadata"]["labels"]["a"], "9");
        let bad = apply(
            PatchType::Json,
            &cur,
            br#"[{"op":"test","path":"/metadata/labels/a","value":"0"}]"#,
        );
        assert_eq!(bad.unwrap_err().code(), 422);
        assert_eq!(
            apply(PatchType::Merge, &cur, b"{nope").unwrap_err().code(),
            400
        );
    }
}
