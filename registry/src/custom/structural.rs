//! Pruning and defaulting of custom resources against a structural schema
//! (an `openAPIV3Schema` as JSON), as upstream's `structural/pruning` and
//! `structural/defaulting`: fields the schema does not know are dropped
//! (and reported, for `fieldValidation`), unless a
//! `x-kubernetes-preserve-unknown-fields` or `additionalProperties` keeps
//! them; nulls of non-nullable fields are dropped; then `default`s fill in
//! absent fields of objects that exist.

use serde_json::{Map, Value};

/// Whether `schema` sets the boolean extension or keyword `key`.
pub fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool) == Some(true)
}

/// `path.key`, or `key` at the root.
pub fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The schema of property `key` of an object with schema `schema`:
/// `properties[key]`, else an `additionalProperties` schema.
pub fn property<'a>(schema: &'a Value, key: &str) -> Option<&'a Value> {
    schema
        .get("properties")
        .and_then(|p| p.get(key))
        .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
}

/// Fields a Kubernetes object always has, whatever the schema says:
/// kept at the root and in `x-kubernetes-embedded-resource` objects.
const OBJECT_FIELDS: &[&str] = &["apiVersion", "kind", "metadata"];

/// Prunes a whole custom resource against its root schema; returns the
/// paths of the dropped unknown fields (e.g. `spec.foo`).
pub fn prune_object(obj: &mut Value, root: &Value) -> Vec<String> {
    let mut unknown = Vec::new();
    if let Some(m) = obj.as_object_mut() {
        prune_map(m, root, "", true, &mut unknown);
    }
    unknown
}

fn prune_map(
    m: &mut Map<String, Value>,
    schema: &Value,
    path: &str,
    object_root: bool,
    unknown: &mut Vec<String>,
) {
    let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields")
        || schema.get("additionalProperties").and_then(Value::as_bool) == Some(true);
    let keys: Vec<String> = m.keys().cloned().collect();
    for k in keys {
        if object_root && OBJECT_FIELDS.contains(&k.as_str()) {
            continue;
        }
        let p = child(path, &k);
        match property(schema, &k) {
            Some(cs) => {
                let drop_null = m.get(&k).is_some_and(Value::is_null) && !flag(cs, "nullable");
                if drop_null {
                    m.remove(&k);
                } else if let Some(v) = m.get_mut(&k) {
                    prune_value(v, cs, &p, unknown);
                }
            }
            None if preserve => {}
            None => {
                if m.remove(&k).is_some_and(|v| !v.is_null()) {
                    unknown.push(p);
                }
            }
        }
    }
}

fn prune_value(v: &mut Value, schema: &Value, path: &str, unknown: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            let embedded = flag(schema, "x-kubernetes-embedded-resource");
            prune_map(m, schema, path, embedded, unknown);
        }
        Value::Array(items) => {
            if let Some(is) = schema.get("items") {
                for (i, x) in items.iter_mut().enumerate() {
                    prune_value(x, is, &format!("{path}[{i}]"), unknown);
                }
            }
        }
        _ => {}
    }
}

/// Applies the schema's `default`s to `v`: an absent (or pruned null)
/// property with a default gets it; present values are defaulted in turn.
pub fn apply_defaults(v: &mut Value, schema: &Value) {
    match v {
        Value::Object(m) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, ps) in props {
                    if !m.contains_key(k)
                        && let Some(d) = ps.get("default")
                    {
                        m.insert(k.clone(), d.clone());
                    }
                }
            }
            for (k, child) in m.iter_mut() {
                if let Some(cs) = property(schema, k) {
                    apply_defaults(child, cs);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = schema.get("items") {
                for x in items {
                    apply_defaults(x, is);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "size": {"type": "integer", "default": 3},
                "items": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "opt": {"type": "string", "nullable": true},
            }},
        }})
    }

    #[test]
    fn unknown_fields_are_pruned_and_reported() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "a"},
            "spec": {"bogus": 1, "items": [{"a": "x", "b": 2}], "free": {"any": {"thing": 1}},
                     "labels": {"k": "v"}, "opt": null, "size": null}, "extra": true});
        let unknown = prune_object(&mut obj, &schema());
        assert_eq!(unknown, ["extra", "spec.bogus", "spec.items[0].b"]);
        assert_eq!(obj["spec"]["free"]["any"]["thing"], 1);
        assert_eq!(obj["spec"]["labels"]["k"], "v");
        assert!(obj["spec"]["opt"].is_null() && obj["spec"].get("opt").is_some());
        assert!(obj["spec"].get("size").is_none());
        assert_eq!(obj["metadata"]["name"], "a");
        apply_defaults(&mut obj, &schema());
        assert_eq!(obj["spec"]["size"], 3);
    }
}
