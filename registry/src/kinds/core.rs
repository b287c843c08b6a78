//! Core kinds without much behaviour: namespaces, configmaps, secrets,
//! serviceaccounts, nodes, events and (coordination) leases.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Node, Secret, ServiceAccount};
use serde_json::{Value, json};

use super::{count, default_at, keep_status, s, typed};
use crate::table::{Column, age, age_cell, name_cell, or_none};
use crate::{FieldError, NameRule, Strategy, meta};

/// `namespaces`: DNS-label names, the `kubernetes` finalizer, phase Active.
#[derive(Debug)]
pub(crate) struct Namespaces;

impl Strategy for Namespaces {
    typed!(Namespace);
    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Active"});
        default_at(obj, "/spec/finalizers", json!(["kubernetes"]));
        let name = meta::name(obj).to_string();
        if let Some(m) = meta::metadata_mut(obj) {
            let labels = m.entry("labels").or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), Value::String(name));
            }
        }
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
        if new.pointer("/spec").is_none()
            && let Some(spec) = old.get("spec")
        {
            new["spec"] = spec.clone();
        }
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.phase"]
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        (field == "status.phase").then(|| s(obj, "/status/phase").to_string())
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("Status", "The status of the namespace"),
            Column::AGE,
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        vec![
            name_cell(obj),
            json!(s(obj, "/status/phase")),
            age_cell(obj, now),
        ]
    }
}

/// `configmaps`.
#[derive(Debug)]
pub(crate) struct ConfigMaps;

fn validate_data_keys(obj: &Value, fields: &[&str]) -> Vec<FieldError> {
    let mut out = Vec::new();
    for f in fields {
        if let Some(m) = obj.get(*f).and_then(Value::as_object) {
            for k in m.keys() {
                let ok = !k.is_empty()
                    && k.len() <= 253
                    && k != "."
                    && k != ".."
                    && k.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
                if !ok {
                    out.push(FieldError::invalid(
                        f.to_string(),
                        k,
                        "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                    ));
                }
            }
        }
    }
    out
}

impl Strategy for ConfigMaps {
    typed!(ConfigMap);
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_data_keys(obj, &["data", "binaryData"])
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut out = self.validate(new);
        if old.get("immutable") == Some(&json!(true))
            && (new.get("data") != old.get("data")
                || new.get("binaryData") != old.get("binaryData"))
        {
            out.push(FieldError {
                reason: "FieldValueForbidden",
                field: "data".into(),
                message: "data: Forbidden: field is immutable when `immutable` is set".into(),
            });
        }
        out
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::integer(
                "Data",
                "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.",
            ),
            Column::AGE,
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        vec![
            name_cell(obj),
            json!(count(obj, "/data") + count(obj, "/binaryData")),
            age_cell(obj, now),
        ]
    }
}

/// Upstream's conversion of a v1 Secret: each `stringData` entry replaces the `data` entry
/// of the same key (as base64 of its UTF-8), and `stringData` itself is never stored nor
/// returned (it is write-only).
fn merge_string_data(obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else {
        return;
    };
    let Some(Value::Object(strings)) = o.remove("stringData") else {
        return;
    };
    if strings.is_empty() {
        return;
    }
    let data = o.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    if let Some(data) = data.as_object_mut() {
        for (key, value) in strings {
            if let Some(text) = value.as_str() {
                data.insert(key, Value::String(STANDARD.encode(text)));
            }
        }
    }
}

/// `secrets`: type defaults to Opaque; `stringData` merged into `data`; `type` is
/// selectable.
#[derive(Debug)]
pub(crate) struct Secrets;

impl Strategy for Secrets {
    typed!(Secret);
    fn prepare_for_create(&self, obj: &mut Value) {
        default_at(obj, "/type", json!("Opaque"));
        merge_string_data(obj);
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_data_keys(obj, &["data", "stringData"])
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut out = self.validate(new);
        if new.get("type").is_some() && new.get("type") != old.get("type") {
            out.push(FieldError::immutable(
                "type",
                new.get("type").unwrap_or(&Value::Null),
            ));
        }
        out
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        if new.get("type").is_none()
            && let Some(t) = old.get("type")
        {
            new["type"] = t.clone();
        }
        merge_string_data(new);
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["type"]
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        (field == "type").then(|| s(obj, "/type").to_string())
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("Type", "The type of the secret"),
            Column::integer("Data", "The number of entries in the secret"),
            Column::AGE,
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        vec![
            name_cell(obj),
            json!(s(obj, "/type")),
            json!(count(obj, "/data")),
            age_cell(obj, now),
        ]
    }
}

/// `serviceaccounts`.
#[derive(Debug)]
pub(crate) struct ServiceAccounts;

impl Strategy for ServiceAccounts {
    typed!(ServiceAccount);
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text(
                "Secrets",
                "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
            ),
            Column::AGE,
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        vec![
            name_cell(obj),
            json!(count(obj, "/secrets")),
            age_cell(obj, now),
        ]
    }
}

/// `nodes`: cluster-scoped; status kept on main-endpoint updates.
#[derive(Debug)]
pub(crate) struct Nodes;

fn node_ready(obj: &Value) -> String {
    let conds = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ready = conds
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"));
    let mut st = match ready.and_then(|c| c.get("status")).and_then(Value::as_str) {
        Some("True") => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if obj.pointer("/spec/unschedulable") == Some(&json!(true)) {
        st.push_str(",SchedulingDisabled");
    }
    st
}

fn node_address(obj: &Value, ty: &str) -> Value {
    let addr = obj
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|x| x.get("type").and_then(Value::as_str) == Some(ty))
        })
        .and_then(|x| x.get("address"))
        .and_then(Value::as_str);
    or_none(addr)
}

impl Strategy for Nodes {
    typed!(Node);
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["spec.unschedulable"]
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        (field == "spec.unschedulable").then(|| {
            obj.pointer("/spec/unschedulable")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .to_string()
        })
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("Status", "The status of the node"),
            Column::text("Roles", "The roles of the node"),
            Column::AGE,
            Column::text("Version", "Kubelet Version reported by the node."),
            Column::text("Internal-IP", "List of addresses reachable to the node. Queried from cloud provider, if available.").wide(),
            Column::text("External-IP", "List of addresses reachable to the node. Queried from cloud provider, if available.").wide(),
            Column::text("OS-Image", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).").wide(),
            Column::text("Kernel-Version", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).").wide(),
            Column::text("Container-Runtime", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).").wide(),
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let mut roles: Vec<String> = meta::labels(obj)
            .map(|l| {
                l.keys()
                    .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        roles.sort();
        vec![
            name_cell(obj),
            json!(node_ready(obj)),
            or_none(Some(&roles.join(","))),
            age_cell(obj, now),
            json!(s(obj, "/status/nodeInfo/kubeletVersion")),
            node_address(obj, "InternalIP"),
            node_address(obj, "ExternalIP"),
            or_none(Some(s(obj, "/status/nodeInfo/osImage"))),
            or_none(Some(s(obj, "/status/nodeInfo/kernelVersion"))),
            or_none(Some(s(obj, "/status/nodeInfo/containerRuntimeVersion"))),
        ]
    }
}

/// `events` (core/v1).
#[derive(Debug)]
pub(crate) struct Events;

const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject.kind", "/involvedObject/kind"),
    ("involvedObject.namespace", "/involvedObject/namespace"),
    ("involvedObject.name", "/involvedObject/name"),
    ("involvedObject.uid", "/involvedObject/uid"),
    ("involvedObject.apiVersion", "/involvedObject/apiVersion"),
    (
        "involvedObject.resourceVersion",
        "/involvedObject/resourceVersion",
    ),
    ("involvedObject.fieldPath", "/involvedObject/fieldPath"),
    ("reason", "/reason"),
    ("reportingComponent", "/reportingComponent"),
    ("source", "/source/component"),
    ("type", "/type"),
];

impl Strategy for Events {
    typed!(Event);
    fn name_rule(&self) -> NameRule {
        NameRule::Subdomain
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ]
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        EVENT_FIELDS
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, p)| s(obj, p).to_string())
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::text("Last Seen", "Time of the last occurrence"),
            Column::text(
                "Type",
                "Type of this event (Normal, Warning), new types could be added in the future.",
            ),
            Column::text(
                "Reason",
                "This should be a short, machine understandable string that gives the reason for this event being generated.",
            ),
            Column::text("Object", "The object this Event is about"),
            Column::text("Subobject", "The subobject this Event is about").wide(),
            Column::text("Source", "The component reporting this event").wide(),
            Column::text(
                "Message",
                "A human-readable description of the status of this operation.",
            ),
            Column::text(
                "First Seen",
                "The time at which the event was first recorded",
            )
            .wide(),
            Column::integer("Count", "The number of times this event has occurred.").wide(),
            Column::text("Name", "Name of the event").wide(),
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let last = [
            s(obj, "/lastTimestamp"),
            s(obj, "/eventTime"),
            s(obj, "/metadata/creationTimestamp"),
        ]
        .into_iter()
        .find(|t| !t.is_empty());
        let first = [s(obj, "/firstTimestamp"), s(obj, "/eventTime")]
            .into_iter()
            .find(|t| !t.is_empty());
        let kind = s(obj, "/involvedObject/kind").to_lowercase();
        vec![
            age(last, now),
            json!(s(obj, "/type")),
            json!(s(obj, "/reason")),
            json!(format!("{kind}/{}", s(obj, "/involvedObject/name"))),
            json!(s(obj, "/involvedObject/fieldPath")),
            json!(s(obj, "/source/component")),
            json!(s(obj, "/message").trim()),
            age(first, now),
            json!(obj.get("count").and_then(Value::as_i64).unwrap_or(1)),
            name_cell(obj),
        ]
    }
}

/// `leases` (coordination.k8s.io/v1).
#[derive(Debug)]
pub(crate) struct Leases;

impl Strategy for Leases {
    typed!(Lease);
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("Holder", "The holder of the lease"),
            Column::AGE,
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        vec![
            name_cell(obj),
            json!(s(obj, "/spec/holderIdentity")),
            age_cell(obj, now),
        ]
    }
}
