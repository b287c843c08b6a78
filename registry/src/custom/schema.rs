//! Validation of custom resources against their `openAPIV3Schema`, the
//! subset of upstream's (kube-openapi's) checks structural schemas use, with
//! its messages: `type`, `required`, `enum`, bounds, lengths, `pattern`,
//! item counts, `format` int32/int64, `nullable`, and the
//! `x-kubernetes-int-or-string` and `x-kubernetes-embedded-resource`
//! extensions. Runs after pruning and defaulting.

use regex::Regex;
use serde_json::{Number, Value};

use super::structural::{child, flag, property};
use crate::FieldError;

/// The JSON type name of `v`, as upstream reports a mismatch.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `field: Invalid value: <json>: detail` (strings quoted, numbers not, as Go's `%#v`-like rendering).
fn invalid(field: &str, value: &Value, detail: &str) -> FieldError {
    let shown = match value {
        Value::Object(_) => "object".to_string(),
        Value::Array(_) => "array".to_string(),
        other => other.to_string(),
    };
    FieldError {
        reason: "FieldValueInvalid",
        message: format!("{field}: Invalid value: {shown}: {detail}"),
        field: field.to_string(),
    }
}

fn is_integer(n: &Number) -> bool {
    n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match (ty, v) {
        ("object", Value::Object(_))
        | ("array", Value::Array(_))
        | ("string", Value::String(_))
        | ("boolean", Value::Bool(_))
        | ("number", Value::Number(_)) => true,
        ("integer", Value::Number(n)) => is_integer(n),
        _ => false,
    }
}

/// Validates a whole custom resource (`apiVersion`, `kind` and `metadata`
/// are the generic registry's business) against its root schema.
pub fn validate_object(obj: &Value, root: &Value) -> Vec<FieldError> {
    let mut out = Vec::new();
    let Some(m) = obj.as_object() else {
        return out;
    };
    check_required(m, root, "", &mut out);
    for (k, v) in m {
        if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        if let Some(cs) = property(root, k) {
            validate(v, cs, &child("", k), &mut out);
        }
    }
    out
}

fn check_required(
    m: &serde_json::Map<String, Value>,
    schema: &Value,
    path: &str,
    out: &mut Vec<FieldError>,
) {
    for r in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if m.get(r).is_none_or(Value::is_null) {
            out.push(FieldError::required(child(path, r), ""));
        }
    }
}

/// Validates `v` at `path` against `schema`, appending to `out`.
pub fn validate(v: &Value, schema: &Value, path: &str, out: &mut Vec<FieldError>) {
    if v.is_null() {
        if !flag(schema, "nullable")
            && let Some(ty) = schema.get("type").and_then(Value::as_str)
        {
            out.push(invalid(
                path,
                &Value::String("null".into()),
                &format!("{path} in body must be of type {ty}: \"null\""),
            ));
        }
        return;
    }
    if flag(schema, "x-kubernetes-int-or-string") {
        if !matches!(v, Value::String(_)) && !matches!(v, Value::Number(n) if is_integer(n)) {
            out.push(invalid(
                path,
                &Value::String(type_name(v).into()),
                &format!(
                    "{path} in body must be of type integer,string: {:?}",
                    type_name(v)
                ),
            ));
        }
    } else if let Some(ty) = schema.get("type").and_then(Value::as_str)
        && !ty.is_empty()
        && !type_matches(ty, v)
    {
        out.push(invalid(
            path,
            &Value::String(type_name(v).into()),
            &format!("{path} in body must be of type {ty}: {:?}", type_name(v)),
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        out.push(FieldError {
            reason: "FieldValueNotSupported",
            message: format!(
                "{path}: Unsupported value: {v}: supported values: {}",
                list.join(", ")
            ),
            field: path.to_string(),
        });
    }
    match v {
        Value::Number(n) => validate_number(v, n, schema, path, out),
        Value::String(s) => validate_string(v, s, schema, path, out),
        Value::Array(items) => {
            let n = items.len() as u64;
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && n < min
            {
                out.push(invalid(
                    path,
                    v,
                    &format!("{path} in body should have at least {min} items"),
                ));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && n > max
            {
                let max = usize::try_from(max).unwrap_or(usize::MAX);
                out.push(FieldError::too_many(path, items.len(), max));
            }
            if let Some(is) = schema.get("items") {
                for (i, x) in items.iter().enumerate() {
                    validate(x, is, &format!("{path}[{i}]"), out);
                }
            }
        }
        Value::Object(m) => {
            let embedded = flag(schema, "x-kubernetes-embedded-resource");
            check_required(m, schema, path, out);
            for (k, x) in m {
                if embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(cs) = property(schema, k) {
                    validate(x, cs, &child(path, k), out);
                }
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

fn validate_number(v: &Value, n: &Number, schema: &Value, path: &str, out: &mut Vec<FieldError>) {
    let Some(x) = n.as_f64() else {
        return;
    };
    let fmt = |f: f64| {
        Value::from(f)
            .to_string()
            .trim_end_matches(".0")
            .to_string()
    };
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        let exclusive = flag(schema, "exclusiveMinimum");
        if x < min || (exclusive && x <= min) {
            let op = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            out.push(invalid(
                path,
                v,
                &format!("{path} in body should be {op} {}", fmt(min)),
            ));
        }
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        let exclusive = flag(schema, "exclusiveMaximum");
        if x > max || (exclusive && x >= max) {
            let op = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            out.push(invalid(
                path,
                v,
                &format!("{path} in body should be {op} {}", fmt(max)),
            ));
        }
    }
    if schema.get("format").and_then(Value::as_str) == Some("int32")
        && n.as_i64().is_none_or(|i| i32::try_from(i).is_err())
    {
        out.push(invalid(
            path,
            v,
            &format!("{path} in body must be of type int32: \"{n}\""),
        ));
    }
    if schema.get("format").and_then(Value::as_str) == Some("int64")
        && n.as_i64().is_none()
        && !n.is_f64()
    {
        out.push(invalid(
            path,
            v,
            &format!("{path} in body must be of type int64: \"{n}\""),
        ));
    }
}

fn validate_string(v: &Value, s: &str, schema: &Value, path: &str, out: &mut Vec<FieldError>) {
    let len = s.chars().count() as u64;
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        out.push(invalid(
            path,
            v,
            &format!("{path} in body should be at least {min} chars long"),
        ));
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        out.push(FieldError {
            reason: "FieldValueTooLong",
            message: format!("{path}: Too long: may not be more than {max} bytes"),
            field: path.to_string(),
        });
    }
    if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
        match Regex::new(p) {
            Ok(re) if re.is_match(s) => {}
            Ok(_) => out.push(invalid(
                path,
                v,
                &format!("{path} in body should match '{p}'"),
            )),
            // Upstream rejects such a schema when the definition is written;
            // an object cannot satisfy a pattern that does not compile.
            Err(_) => out.push(invalid(
                path,
                v,
                &format!("{path} in body should match '{p}'"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["color"], "properties": {
            "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "format": "int32"},
            "color": {"type": "string", "enum": ["red", "blue"]},
            "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
            "port": {"x-kubernetes-int-or-string": true},
            "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
        }}}})
    }

    fn messages(obj: Value) -> Vec<String> {
        validate_object(&obj, &schema())
            .into_iter()
            .map(|e| e.message)
            .collect()
    }

    #[test]
    fn upstream_messages() {
        assert!(
            messages(json!({"spec": {"color": "red", "port": "http", "replicas": 3}})).is_empty()
        );
        assert_eq!(
            messages(json!({"spec": {"replicas": "x"}})),
            [
                "spec.color: Required value",
                "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\""
            ]
        );
        assert_eq!(
            messages(
                json!({"spec": {"color": "green", "replicas": -1, "name": "ABCDEFG", "tags": ["a", "b", "c"]}})
            ),
            [
                "spec.color: Unsupported value: \"green\": supported values: \"red\", \"blue\"",
                "spec.name: Too long: may not be more than 5 bytes",
                "spec.name: Invalid value: \"ABCDEFG\": spec.name in body should match '^[a-z]+$'",
                "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0",
                "spec.tags: Too many: 3: must have at most 2 items",
            ]
        );
        assert_eq!(
            messages(json!({"spec": {"color": "red", "port": true}})),
            [
                "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\""
            ]
        );
    }
}
