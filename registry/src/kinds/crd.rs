//! apiextensions.k8s.io/v1 `customresourcedefinitions`: upstream's
//! defaults, the essential validation, and the status a definition gets
//! once its names are accepted (`NamesAccepted` and `Established`, so
//! `kubectl wait --for condition=established` returns). Serving the
//! defined resources is [`crate::custom`]'s job.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Map, Value, json};

use super::{CUSTOM_RESOURCE_CLEANUP_FINALIZER, immutable, s, typed, unsupported};
use crate::table::{Column, created_at_cell, name_cell};
use crate::{FieldError, Strategy, meta};

/// `customresourcedefinitions`.
#[derive(Debug)]
pub(crate) struct CustomResourceDefinitions;

/// Upstream's `SetDefaults_CustomResourceDefinitionSpec`: singular and list
/// kind from the kind, conversion `None`.
fn set_defaults(obj: &mut Value) {
    let kind = s(obj, "/spec/names/kind").to_string();
    let Some(names) = obj
        .pointer_mut("/spec/names")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let empty = |v: Option<&Value>| v.and_then(Value::as_str).is_none_or(str::is_empty);
    if empty(names.get("singular")) {
        names.insert("singular".into(), json!(kind.to_lowercase()));
    }
    if empty(names.get("listKind")) && !kind.is_empty() {
        names.insert("listKind".into(), json!(format!("{kind}List")));
    }
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
        && spec.get("conversion").is_none_or(Value::is_null)
    {
        spec.insert("conversion".into(), json!({"strategy": "None"}));
    }
}

/// The storage version's name, if exactly one version is the storage version.
fn storage_version(obj: &Value) -> Option<String> {
    let versions = obj.pointer("/spec/versions").and_then(Value::as_array)?;
    let mut storage = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true));
    let first = storage.next()?;
    storage.next().is_none().then(|| {
        first
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    })
}

/// The status of an accepted definition: its names, the `NamesAccepted` and
/// `Established` conditions (kept with their transition times when already
/// true), and the stored versions (`old` ones plus the storage version).
fn accepted_status(obj: &Value, old_status: Option<&Value>) -> Value {
    let now = meta::format_time(meta::now());
    let names = obj.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let since = |ty: &str| {
        old_status
            .and_then(|st| st.get("conditions"))
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter().find(|c| {
                    c.get("type").and_then(Value::as_str) == Some(ty)
                        && c.get("status").and_then(Value::as_str) == Some("True")
                })
            })
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(now))
    };
    let mut stored: Vec<Value> = old_status
        .and_then(|st| st.get("storedVersions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(v) = storage_version(obj)
        && !stored.iter().any(|x| x.as_str() == Some(v.as_str()))
    {
        stored.push(json!(v));
    }
    let mut conditions = vec![
        json!({"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
         "message": "no conflicts found", "lastTransitionTime": since("NamesAccepted")}),
        json!({"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
         "message": "the initial names have been accepted", "lastTransitionTime": since("Established")}),
    ];
    // Conditions other controllers own (`Terminating`) stay as they were:
    // only the status endpoint changes them.
    conditions.extend(
        old_status
            .and_then(|st| st.get("conditions"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|c| {
                !matches!(
                    c.get("type").and_then(Value::as_str),
                    Some("NamesAccepted" | "Established")
                )
            })
            .cloned(),
    );
    json!({
        "acceptedNames": names,
        "conditions": conditions,
        "storedVersions": stored,
    })
}

/// Sets the definition's condition `ty` as upstream's `SetCRDCondition`:
/// replaced in place, its `lastTransitionTime` kept unless the status
/// changes. Returns whether anything changed.
pub fn set_condition(crd: &mut Value, ty: &str, status: &str, reason: &str, message: &str) -> bool {
    let Some(obj) = crd.as_object_mut() else {
        return false;
    };
    let st = obj.entry("status").or_insert_with(|| json!({}));
    if !st.is_object() {
        *st = json!({});
    }
    let Some(st) = st.as_object_mut() else {
        return false;
    };
    let list = st.entry("conditions").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    let Some(list) = list.as_array_mut() else {
        return false;
    };
    let now = meta::format_time(meta::now());
    let existing = list
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(ty));
    match existing {
        Some(c) => {
            let same = |k: &str, v: &str| c.get(k).and_then(Value::as_str) == Some(v);
            if same("status", status) && same("reason", reason) && same("message", message) {
                return false;
            }
            let since = if same("status", status) {
                c.get("lastTransitionTime").cloned().unwrap_or(json!(now))
            } else {
                json!(now)
            };
            *c = json!({"type": ty, "status": status, "reason": reason, "message": message,
                        "lastTransitionTime": since});
        }
        None => list.push(json!({"type": ty, "status": status, "reason": reason,
                                 "message": message, "lastTransitionTime": now})),
    }
    true
}

fn set_status(obj: &mut Value, status: Value) {
    if let Some(o) = obj.as_object_mut() {
        o.insert("status".into(), status);
    }
}

/// A DNS-1035 label (version names): lowercase alphanumerics and '-',
/// starting with a letter.
fn is_dns1035_label(v: &str) -> bool {
    meta::is_dns_label(v) && v.starts_with(|c: char| c.is_ascii_lowercase())
}

/// Upstream's checks of `spec.names`.
fn validate_names(names: Option<&Map<String, Value>>, out: &mut Vec<FieldError>) {
    let get = |k: &str| {
        names
            .and_then(|n| n.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    for (field, value) in [("plural", get("plural")), ("kind", get("kind"))] {
        if value.is_empty() {
            out.push(FieldError::required(format!("spec.names.{field}"), ""));
        }
    }
    for field in ["plural", "singular"] {
        let v = get(field);
        if !v.is_empty() && !meta::is_dns_label(v) {
            out.push(FieldError::invalid(
                format!("spec.names.{field}"),
                v,
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            ));
        }
    }
    let kind = get("kind");
    if !kind.is_empty() && kind.ends_with("List") && get("listKind") == kind {
        out.push(FieldError::invalid(
            "spec.names.listKind",
            get("listKind"),
            "kind and listKind may not be the same",
        ));
    }
}

/// Upstream's checks of `spec.versions`: at least one, unique DNS-1035
/// names, exactly one storage version, at least one served, and a schema
/// whose root is an object for each.
fn validate_versions(versions: &[Value], out: &mut Vec<FieldError>) {
    if versions.is_empty() {
        out.push(FieldError::required(
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
        return;
    }
    let mut seen: Vec<&str> = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let path = format!("spec.versions[{i}]");
        let name = v.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            out.push(FieldError::required(format!("{path}.name"), ""));
        } else if !is_dns1035_label(name) {
            out.push(FieldError::invalid(
                format!("{path}.name"),
                name,
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
            ));
        } else if seen.contains(&name) {
            out.push(FieldError::duplicate(format!("{path}.name"), name));
        }
        seen.push(name);
        let root = v.pointer("/schema/openAPIV3Schema");
        match root.filter(|r| !r.is_null()) {
            None => out.push(FieldError::required(
                format!("{path}.schema.openAPIV3Schema"),
                "schemas are required",
            )),
            Some(r) => match r.get("type").and_then(Value::as_str).unwrap_or("") {
                "object" => {}
                "" => out.push(FieldError::required(
                    format!("{path}.schema.openAPIV3Schema.type"),
                    "must not be empty at the root",
                )),
                other => out.push(FieldError::invalid(
                    format!("{path}.schema.openAPIV3Schema.type"),
                    other,
                    "must be object at the root",
                )),
            },
        }
    }
    let storage = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count();
    if storage != 1 {
        out.push(FieldError::invalid(
            "spec.versions",
            &format!("{storage} storage versions"),
            "must have exactly one version marked as storage version",
        ));
    }
    if !versions
        .iter()
        .any(|v| v.get("served").and_then(Value::as_bool) == Some(true))
    {
        out.push(FieldError::invalid(
            "spec.versions",
            "no served versions",
            "must have at least one version marked as served",
        ));
    }
}

impl Strategy for CustomResourceDefinitions {
    typed!(CustomResourceDefinition);

    fn store_hook(&self) -> Option<crate::StoreHook> {
        Some(crate::StoreHook::ServedDefinitions)
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        set_defaults(obj);
        let status = accepted_status(obj, None);
        set_status(obj, status);
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        set_defaults(new);
        let status = accepted_status(new, old.get("status"));
        set_status(new, status);
    }

    fn generation_changed(&self, new: &Value, old: &Value) -> bool {
        new.get("spec") != old.get("spec")
    }

    fn deletion_finalizer(&self) -> Option<&'static str> {
        Some(CUSTOM_RESOURCE_CLEANUP_FINALIZER)
    }

    /// Upstream's CRD REST `Delete`: `Terminating` until the finalizer
    /// controller starts deleting instances.
    fn prepare_for_deletion(&self, obj: &mut Value) {
        set_condition(
            obj,
            "Terminating",
            "True",
            "InstanceDeletionPending",
            "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
        );
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut out = Vec::new();
        let group = s(obj, "/spec/group");
        let plural = s(obj, "/spec/names/plural");
        let name = meta::name(obj);
        if !name.is_empty() && name != format!("{plural}.{group}") {
            out.push(FieldError::invalid(
                "metadata.name",
                name,
                "must be spec.names.plural+\".\"+spec.group",
            ));
        }
        if group.is_empty() {
            out.push(FieldError::required("spec.group", ""));
        } else if !group.contains('.') {
            out.push(FieldError::invalid(
                "spec.group",
                group,
                "should be a domain with at least one dot",
            ));
        } else if !meta::is_dns_subdomain(group) {
            out.push(FieldError::invalid(
                "spec.group",
                group,
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            ));
        }
        validate_names(
            obj.pointer("/spec/names").and_then(Value::as_object),
            &mut out,
        );
        match s(obj, "/spec/scope") {
            "" => out.push(FieldError::required("spec.scope", "")),
            "Namespaced" | "Cluster" => {}
            other => out.push(unsupported("spec.scope", other, &["Cluster", "Namespaced"])),
        }
        let versions = obj
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        validate_versions(versions, &mut out);
        out
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut out = self.validate(new);
        out.extend(immutable(new, old, "/spec/group"));
        out.extend(immutable(new, old, "/spec/names/plural"));
        out
    }

    fn columns(&self) -> Vec<Column> {
        vec![Column::NAME, Column::CREATED_AT]
    }

    fn cells(&self, obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
        vec![name_cell(obj), created_at_cell(obj)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "names": {"plural": "widgets", "kind": "Widget"},
                "scope": "Namespaced",
                "versions": [{"name": "v1", "served": true, "storage": true,
                              "schema": {"openAPIV3Schema": {"type": "object"}}}],
            },
        })
    }

    #[test]
    fn a_valid_definition_is_established_with_defaulted_names() {
        let mut obj = crd();
        assert!(CustomResourceDefinitions.validate(&obj).is_empty());
        CustomResourceDefinitions.prepare_for_create(&mut obj);
        assert_eq!(obj["spec"]["names"]["singular"], "widget");
        assert_eq!(obj["status"]["acceptedNames"]["listKind"], "WidgetList");
        assert_eq!(obj["status"]["conditions"][1]["type"], "Established");
        assert_eq!(obj["status"]["storedVersions"], json!(["v1"]));
    }

    #[test]
    fn upstream_essentials_are_checked() {
        let mut obj = crd();
        obj["metadata"]["name"] = json!("gadgets.example.com");
        obj["spec"]["scope"] = json!("Global");
        obj["spec"]["versions"][0]["storage"] = json!(false);
        obj["spec"]["versions"][0]["schema"] = json!({});
        let fields: Vec<String> = CustomResourceDefinitions
            .validate(&obj)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "metadata.name",
                "spec.scope",
                "spec.versions[0].schema.openAPIV3Schema",
                "spec.versions"
            ]
        );
    }
}
