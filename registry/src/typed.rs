//! Decoding objects through their `k8s-openapi` types: the typed struct
//! defines which fields exist and what shape they have. Fields it does not
//! know are reported, so `fieldValidation=Strict` can reject them.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Canonical;

/// Decodes `obj` as `T` and re-encodes it.
///
/// # Errors
/// The decoder's message (field type mismatch, bad base64, ...).
pub fn roundtrip<T: DeserializeOwned + Serialize>(obj: &Value) -> Result<Canonical, String> {
    // From the reference: cloning the tree first would cost as much as decoding it.
    let typed = T::deserialize(obj).map_err(|e| e.to_string())?;
    let value = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut unknown_fields = Vec::new();
    dropped_fields(obj, &value, "", &mut unknown_fields);
    Ok(Canonical {
        value,
        unknown_fields,
    })
}

/// Collects paths present (non-null) in `input` but absent from `output`.
fn dropped_fields(input: &Value, output: &Value, path: &str, out: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            for (k, v) in i {
                if v.is_null() {
                    continue;
                }
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match o.get(k) {
                    Some(ov) => dropped_fields(v, ov, &p, out),
                    None => out.push(p),
                }
            }
        }
        (Value::Array(i), Value::Array(o)) if i.len() == o.len() => {
            for (n, (iv, ov)) in i.iter().zip(o).enumerate() {
                dropped_fields(iv, ov, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_reported_with_paths() {
        let c = roundtrip::<ConfigMap>(&json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "bogus": 1, "labels": {"x": "y"}},
            "data": {"k": "v"}, "extra": {"deep": true}, "nothing": null,
        }))
        .unwrap();
        assert_eq!(c.unknown_fields, vec!["extra", "metadata.bogus"]);
        assert_eq!(c.value["data"]["k"], "v");
        assert!(c.value.get("extra").is_none());
    }

    #[test]
    fn wrong_types_are_errors() {
        let e = roundtrip::<ConfigMap>(&json!({"data": {"k": 1}})).unwrap_err();
        assert!(e.contains("invalid type"), "{e}");
    }
}
