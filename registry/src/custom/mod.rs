//! Custom resources: what `customresourcedefinitions` define.
//!
//! Every served version of an established definition becomes a
//! [`ResourceInfo`] with a `strategy::CustomResources` strategy; the
//! generic registry and handlers then serve it like any built-in kind (the
//! enclave's store rebuilds its table from the stored definitions).
//!
//! Start with [`resources_of`] (definition → table entries) and
//! [`structural`] / [`schema`] (pruning, defaulting, validation).

pub mod jsonpath;
pub mod schema;
mod strategy;
pub mod structural;

use serde_json::Value;

use super::kinds::{SCALE, STATUS, STATUS_SCALE};
use super::{Name, Persistence, ResourceInfo, ScalePaths, Scope, Subresource};
use strategy::{CustomResources, pointer, printer_columns};

/// `vN`, `vNbetaM`, `vNalphaM` as (class, -N, -M): GA 0, beta 1, alpha 2.
fn kube_version(v: &str) -> Option<(u8, i64, i64)> {
    let rest = v.strip_prefix('v')?;
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (major, tail) = rest.split_at(digits);
    let major: i64 = major.parse().ok()?;
    if tail.is_empty() {
        return Some((0, -major, 0));
    }
    let (class, minor) = if let Some(m) = tail.strip_prefix("beta") {
        (1, m)
    } else if let Some(m) = tail.strip_prefix("alpha") {
        (2, m)
    } else {
        return None;
    };
    Some((class, -major, -minor.parse::<i64>().ok()?))
}

/// Upstream's `version.CompareKubeAwareVersionStrings` order key: GA before
/// beta before alpha before anything else (by name), then higher numbers first.
fn version_priority(v: &str) -> (u8, i64, i64, String) {
    match kube_version(v) {
        Some((c, major, minor)) => (c, major, minor, String::new()),
        None => (3, 0, 0, v.to_string()),
    }
}

/// Whether a definition's `Established` condition is true.
fn established(crd: &Value) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Established")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// The table entries of a definition: one per served version, in
/// upstream's version priority order; none unless established.
pub fn resources_of(crd: &Value) -> Vec<ResourceInfo> {
    if !established(crd) {
        return Vec::new();
    }
    let text = |p: &str| crd.pointer(p).and_then(Value::as_str).unwrap_or("");
    let list = |p: &str| -> Vec<&str> {
        crd.pointer(p)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    };
    let group = text("/spec/group");
    let kind = text("/spec/names/kind");
    let plural = text("/spec/names/plural");
    let singular = match text("/spec/names/singular") {
        "" => kind.to_lowercase(),
        s => s.to_string(),
    };
    let scope = match text("/spec/scope") {
        "Cluster" => Scope::Cluster,
        _ => Scope::Namespaced,
    };
    let names = |p: &str| -> Vec<Name> { list(p).into_iter().map(Name::owned).collect() };
    let short_names = names("/spec/names/shortNames");
    let categories = names("/spec/names/categories");
    let (group_name, kind_name, plural_name) =
        (Name::owned(group), Name::owned(kind), Name::owned(plural));
    let singular = Name::from(singular);
    let reversed_group: Vec<&str> = group.rsplit('.').collect();
    let mut versions: Vec<&Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|v| v.get("served").and_then(Value::as_bool) == Some(true))
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|v| version_priority(v.get("name").and_then(Value::as_str).unwrap_or("")));
    // The other served versions are the storage version's objects (when it is served itself).
    let storage_version = versions
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .and_then(|v| v.get("name").and_then(Value::as_str));
    versions
        .into_iter()
        .map(|v| {
            let version = v.get("name").and_then(Value::as_str).unwrap_or("");
            let status = v
                .pointer("/subresources/status")
                .is_some_and(Value::is_object);
            let scale = v
                .pointer("/subresources/scale")
                .filter(|s| s.is_object())
                .map(|s| ScalePaths {
                    spec_replicas: pointer(
                        s.get("specReplicasPath")
                            .and_then(Value::as_str)
                            .unwrap_or(".spec.replicas"),
                    ),
                    status_replicas: pointer(
                        s.get("statusReplicasPath")
                            .and_then(Value::as_str)
                            .unwrap_or(".status.replicas"),
                    ),
                    label_selector: s
                        .get("labelSelectorPath")
                        .and_then(Value::as_str)
                        .map(pointer),
                });
            let subresources: &'static [Subresource] = match (status, scale.is_some()) {
                (true, true) => STATUS_SCALE,
                (true, false) => STATUS,
                (false, true) => SCALE,
                (false, false) => &[],
            };
            ResourceInfo {
                group: group_name.clone(),
                version: Name::owned(version),
                kind: kind_name.clone(),
                resource: plural_name.clone(),
                singular: singular.clone(),
                scope,
                short_names: short_names.clone(),
                categories: categories.clone(),
                // As upstream's custom resource storage.
                return_deleted_object: true,
                subresources,
                persistence: match storage_version {
                    Some(storage) if storage != version => {
                        Persistence::Converted(super::Conversion::CustomResource {
                            served: Name::from(format!("{group}/{version}")),
                            storage: Name::from(format!("{group}/{storage}")),
                        })
                    }
                    _ => Persistence::Stored,
                },
                strategy: Box::new(CustomResources {
                    schema: v
                        .pointer("/schema/openAPIV3Schema")
                        .cloned()
                        .unwrap_or_else(|| serde_json::json!({"type": "object"})),
                    status,
                    scale,
                    columns: printer_columns(v),
                    definition: format!("{}.{version}.{kind}", reversed_group.join(".")),
                    terminating: crd.pointer("/metadata/deletionTimestamp").is_some(),
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_as_upstream() {
        let mut vs = vec!["v1alpha1", "foo", "v2beta1", "v1", "v2", "v1beta2", "v10"];
        vs.sort_by_key(|v| version_priority(v));
        assert_eq!(
            vs,
            ["v10", "v2", "v1", "v2beta1", "v1beta2", "v1alpha1", "foo"]
        );
    }
}
