//! Pod templates: the `pod-template-hash` that names a deployment's
//! ReplicaSets, template equality ignoring that label, and the pod a
//! ReplicaSet creates from its template.

use serde_json::{Map, Value, json};

use super::owner::controller_ref;
use crate::registry::meta;

/// The label (and selector key) that tells a deployment's ReplicaSets apart.
pub(crate) const HASH_LABEL: &str = "pod-template-hash";

/// upstream's `rand.SafeEncodeString` alphabet: no vowels, no look-alikes,
/// so a hash never spells a word and is a valid label value.
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Writes `v` as JSON with object keys sorted, so equal templates hash
/// equally whatever order their fields were stored in.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(x) = m.get(k) {
                    canonical(x, out);
                }
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// FNV-1a, 32 bits.
fn fnv32a(bytes: &[u8], mut h: u32) -> u32 {
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(16_777_619);
    }
    h
}

/// upstream's `ComputeHash` in form: FNV-32a of the template (here its
/// canonical JSON rather than Go's `%#v` dump, so the values differ from a
/// real cluster's) and, when set, the collision count as 8 little-endian
/// bytes; the decimal sum encoded with the safe alphabet. Stable across
/// restarts and processes.
pub(crate) fn template_hash(template: &Value, collision_count: Option<i64>) -> String {
    let mut s = String::new();
    canonical(template, &mut s);
    let mut h = fnv32a(s.as_bytes(), 2_166_136_261);
    if let Some(c) = collision_count {
        let mut b = [0u8; 8];
        // Go's uint32(collisionCount): the low 32 bits.
        b[..4].copy_from_slice(&((c & 0xffff_ffff) as u32).to_le_bytes());
        h = fnv32a(&b, h);
    }
    h.to_string()
        .bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// `template` without the `pod-template-hash` label (and without an empty
/// label map left behind).
fn without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
        if labels.is_empty()
            && let Some(m) = t.pointer_mut("/metadata").and_then(Value::as_object_mut)
        {
            m.remove("labels");
        }
    }
    t
}

/// `v` without nulls, zero values, empty objects and empty arrays, at any
/// depth: the JSON counterpart of upstream's semantic equality on Go
/// structs, where an unset field and its zero value are the same. Clients
/// differ here (kubectl's JSON has `resources: {}` and `creationTimestamp:
/// null`; a protobuf body carries `stdin: false`, `generation: 0`), and a
/// rollback must still find its ReplicaSet.
fn pruned(v: &Value) -> Option<Value> {
    match v {
        Value::Null | Value::Bool(false) => None,
        Value::String(x) if x.is_empty() => None,
        Value::Number(n) if n.as_f64() == Some(0.0) => None,
        Value::Object(m) => {
            let out: Map<String, Value> = m
                .iter()
                .filter_map(|(k, x)| pruned(x).map(|x| (k.clone(), x)))
                .collect();
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(a) => {
            let out: Vec<Value> = a.iter().map(|x| pruned(x).unwrap_or(Value::Null)).collect();
            (!out.is_empty()).then_some(Value::Array(out))
        }
        other => Some(other.clone()),
    }
}

/// upstream's `EqualIgnoreHash`: the templates are equal once the
/// `pod-template-hash` label is dropped from both (and, as upstream's
/// semantic equality, empty and absent fields are the same).
pub(crate) fn equal_ignore_hash(a: &Value, b: &Value) -> bool {
    pruned(&without_hash(a)) == pruned(&without_hash(b))
}

/// `map` (a label map or null) with `key=value` added.
pub(crate) fn with_label(map: Option<&Value>, key: &str, value: &str) -> Value {
    let mut m = map.and_then(Value::as_object).cloned().unwrap_or_default();
    m.insert(key.to_string(), Value::String(value.to_string()));
    Value::Object(m)
}

/// upstream's `GetPodFromTemplate`: a pod named `<rs>-<random>` with the
/// template's labels, annotations, finalizers and spec, controlled by `rs` (of
/// `api_version` and `kind`).
pub(crate) fn pod_from_template(rs: &Value, api_version: &str, kind: &str) -> Value {
    let template = rs.pointer("/spec/template").cloned().unwrap_or(Value::Null);
    let mut metadata = Map::new();
    let name = meta::name(rs);
    // upstream falls back to the bare name when `<name>-` is not a valid prefix.
    let prefix = if meta::is_dns_subdomain(&format!("{name}-a")) {
        format!("{name}-")
    } else {
        name.to_string()
    };
    metadata.insert("generateName".into(), Value::String(prefix));
    metadata.insert(
        "namespace".into(),
        Value::String(meta::namespace(rs).to_string()),
    );
    for field in ["labels", "annotations", "finalizers"] {
        if let Some(v) = template.pointer(&format!("/metadata/{field}")) {
            metadata.insert(field.into(), v.clone());
        }
    }
    metadata.insert(
        "ownerReferences".into(),
        json!([controller_ref(rs, api_version, kind)]),
    );
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_safe_and_order_independent() {
        let a = json!({"metadata": {"labels": {"app": "x", "tier": "y"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let b = json!({"spec": {"containers": [{"image": "i", "name": "c"}]}, "metadata": {"labels": {"tier": "y", "app": "x"}}});
        let h = template_hash(&a, None);
        assert_eq!(h, template_hash(&b, None));
        assert!(!h.is_empty() && h.len() <= 10);
        assert!(meta::is_label_value(&h));
        assert!(h.bytes().all(|c| ALPHANUMS.contains(&c)));
        assert_ne!(h, template_hash(&a, Some(1)));
        let c = json!({"metadata": {"labels": {"app": "x", "tier": "y"}}, "spec": {"containers": [{"name": "c", "image": "j"}]}});
        assert_ne!(h, template_hash(&c, None));
    }

    #[test]
    fn equality_ignores_the_hash_label() {
        let d = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": []}});
        let mut rs = d.clone();
        rs["metadata"]["labels"][HASH_LABEL] = json!("abc");
        assert!(equal_ignore_hash(&d, &rs));
        rs["spec"]["containers"] = json!([{"name": "c"}]);
        assert!(!equal_ignore_hash(&d, &rs));
        let with_empties = json!({"metadata": {"labels": {"app": "x"}, "creationTimestamp": null},
            "spec": {"containers": [{"name": "c", "resources": {}}]}});
        let without =
            json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c"}]}});
        assert!(equal_ignore_hash(&with_empties, &without));
    }

    #[test]
    fn pods_carry_labels_owner_and_prefix() {
        let rs = json!({"metadata": {"name": "web-abc", "namespace": "ns", "uid": "u1"},
            "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let pod = pod_from_template(&rs, "apps/v1", "ReplicaSet");
        assert_eq!(pod["metadata"]["generateName"], "web-abc-");
        assert_eq!(pod["metadata"]["labels"]["app"], "web");
        assert_eq!(pod["metadata"]["ownerReferences"][0]["uid"], "u1");
        assert_eq!(pod["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(pod["spec"]["containers"][0]["image"], "i");
    }
}
