//! `pods`: defaults, container validation, status split, the upstream
//! pod columns and field selectors.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::{default_at, keep_status, s, typed};
use crate::table::{Column, age_cell, name_cell, or_none};
use crate::{FieldError, Strategy, meta};

/// `pods`.
#[derive(Debug)]
pub(crate) struct Pods;

/// Upstream's pod-spec defaults, shared with workload templates.
pub(crate) fn default_pod_spec(spec: &mut Value) {
    default_at(spec, "/restartPolicy", json!("Always"));
    default_at(spec, "/terminationGracePeriodSeconds", json!(30));
    default_at(spec, "/dnsPolicy", json!("ClusterFirst"));
    default_at(spec, "/securityContext", json!({}));
    default_at(spec, "/schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            for c in cs {
                let image = c.get("image").and_then(Value::as_str).unwrap_or("");
                let tag = image.rsplit('/').next().unwrap_or("");
                let latest = !tag.contains(':') || tag.ends_with(":latest");
                let policy = if latest { "Always" } else { "IfNotPresent" };
                default_at(c, "/imagePullPolicy", json!(policy));
                default_at(c, "/terminationMessagePath", json!("/dev/termination-log"));
                default_at(c, "/terminationMessagePolicy", json!("File"));
                default_at(c, "/resources", json!({}));
                if let Some(Value::Array(ports)) = c.get_mut("ports") {
                    for p in ports {
                        default_at(p, "/protocol", json!("TCP"));
                    }
                }
                if let Some(Value::Array(env)) = c.get_mut("env") {
                    for e in env {
                        if let Some(from) = e.get_mut("valueFrom") {
                            default_field_ref(from);
                        }
                    }
                }
            }
        }
    }
    if let Some(Value::Array(volumes)) = spec.get_mut("volumes") {
        volumes.iter_mut().for_each(default_volume);
    }
}

/// Every volume source a v1 volume may name (upstream's `VolumeSource` fields).
const VOLUME_SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "hostPath",
    "image",
    "iscsi",
    "nfs",
    "persistentVolumeClaim",
    "photonPersistentDisk",
    "portworxVolume",
    "projected",
    "quobyte",
    "rbd",
    "scaleIO",
    "secret",
    "storageos",
    "vsphereVolume",
];

/// Upstream's volume defaults: a volume that names no source is an `emptyDir`; configMap,
/// secret, downwardAPI and projected files default to mode 0644; a projected token lives an
/// hour; a `fieldRef` names `v1`.
fn default_volume(volume: &mut Value) {
    let Some(v) = volume.as_object_mut() else {
        return;
    };
    if !VOLUME_SOURCES
        .iter()
        .any(|k| v.get(*k).is_some_and(|s| !s.is_null()))
    {
        v.insert("emptyDir".into(), json!({}));
    }
    for source in ["configMap", "secret", "downwardAPI", "projected"] {
        if let Some(src) = v.get_mut(source).filter(|s| s.is_object()) {
            default_at(src, "/defaultMode", json!(420));
        }
    }
    if let Some(Value::Array(items)) = v.get_mut("downwardAPI").and_then(|d| d.get_mut("items")) {
        items.iter_mut().for_each(default_field_ref);
    }
    if let Some(Value::Array(sources)) = v.get_mut("projected").and_then(|p| p.get_mut("sources")) {
        for src in sources {
            if let Some(Value::Array(items)) =
                src.get_mut("downwardAPI").and_then(|d| d.get_mut("items"))
            {
                items.iter_mut().for_each(default_field_ref);
            }
            if let Some(token) = src.get_mut("serviceAccountToken").filter(|t| t.is_object()) {
                default_at(token, "/expirationSeconds", json!(3600));
            }
        }
    }
}

/// `fieldRef.apiVersion` defaults to `v1` (in `env[].valueFrom` and downwardAPI items).
fn default_field_ref(holder: &mut Value) {
    if let Some(field_ref) = holder.get_mut("fieldRef").filter(|f| f.is_object()) {
        default_at(field_ref, "/apiVersion", json!("v1"));
    }
}

/// A pod's defaults (upstream's, applied to every body that reaches the API: create and
/// update alike).
fn default_pod(obj: &mut Value) {
    if let Some(spec) = obj.get_mut("spec") {
        default_pod_spec(spec);
        default_requests_to_limits(spec);
        default_at(spec, "/serviceAccountName", json!("default"));
        default_at(spec, "/enableServiceLinks", json!(true));
    }
}

/// upstream's `SetDefaults_Pod` (pods only, not templates): a container
/// that limits a resource without requesting it requests its limit.
fn default_requests_to_limits(spec: &mut Value) {
    for list in ["containers", "initContainers"] {
        let Some(Value::Array(cs)) = spec.get_mut(list) else {
            continue;
        };
        for c in cs {
            let Some(limits) = c
                .pointer("/resources/limits")
                .and_then(Value::as_object)
                .cloned()
            else {
                continue;
            };
            let Some(res) = c.get_mut("resources").and_then(Value::as_object_mut) else {
                continue;
            };
            let requests = res.entry("requests").or_insert_with(|| json!({}));
            if requests.is_null() {
                *requests = json!({});
            }
            if let Some(r) = requests.as_object_mut() {
                for (k, v) in limits {
                    r.entry(k).or_insert(v);
                }
            }
        }
    }
}

/// upstream's `podutil.UpdatePodCondition`: sets the pod condition `ty`
/// (its `lastTransitionTime` kept unless the status changes, its
/// `lastProbeTime` null); returns whether anything changed.
pub fn update_pod_condition(
    pod: &mut Value,
    ty: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
) -> bool {
    let mut cond = json!({"type": ty, "status": status, "lastProbeTime": null,
        "lastTransitionTime": meta::format_time(meta::now())});
    if let Some(r) = reason.filter(|r| !r.is_empty()) {
        cond["reason"] = json!(r);
    }
    if let Some(m) = message.filter(|m| !m.is_empty()) {
        cond["message"] = json!(m);
    }
    let Some(obj) = pod.as_object_mut() else {
        return false;
    };
    let st = obj.entry("status").or_insert_with(|| json!({}));
    if !st.is_object() {
        *st = json!({});
    }
    let Some(st) = st.as_object_mut() else {
        return false;
    };
    let conds = st.entry("conditions").or_insert_with(|| json!([]));
    if !conds.is_array() {
        *conds = json!([]);
    }
    let Some(conds) = conds.as_array_mut() else {
        return false;
    };
    let Some(old) = conds
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(ty))
    else {
        conds.push(cond);
        return true;
    };
    if old.get("status") == cond.get("status") {
        cond["lastTransitionTime"] = old
            .get("lastTransitionTime")
            .cloned()
            .unwrap_or(Value::Null);
    }
    let field = |c: &Value, f: &str| c.get(f).filter(|v| !v.is_null() && *v != "").cloned();
    let changed = [
        "status",
        "reason",
        "message",
        "lastProbeTime",
        "lastTransitionTime",
    ]
    .iter()
    .any(|f| field(old, f) != field(&cond, f));
    *old = cond;
    changed
}

/// Checks containers of a pod spec at `path` (e.g. `spec`).
pub(crate) fn validate_pod_spec(spec: Option<&Value>, path: &str) -> Vec<FieldError> {
    let mut out = Vec::new();
    let containers = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array);
    match containers {
        None => out.push(FieldError::required(format!("{path}.containers"), "")),
        Some(cs) if cs.is_empty() => {
            out.push(FieldError::required(format!("{path}.containers"), ""))
        }
        Some(cs) => {
            let mut seen = Vec::new();
            for (i, c) in cs.iter().enumerate() {
                let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                let f = format!("{path}.containers[{i}]");
                if name.is_empty() {
                    out.push(FieldError::required(format!("{f}.name"), ""));
                } else if !meta::is_dns_label(name) {
                    out.push(FieldError::invalid(format!("{f}.name"), name, "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"));
                } else if seen.contains(&name) {
                    out.push(FieldError::duplicate(format!("{f}.name"), name));
                }
                seen.push(name);
                if c.get("image")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
                {
                    out.push(FieldError::required(format!("{f}.image"), ""));
                }
            }
        }
    }
    out
}

const POD_FIELDS: &[(&str, &str)] = &[
    ("spec.nodeName", "/spec/nodeName"),
    ("spec.restartPolicy", "/spec/restartPolicy"),
    ("spec.schedulerName", "/spec/schedulerName"),
    ("spec.serviceAccountName", "/spec/serviceAccountName"),
    ("status.phase", "/status/phase"),
    ("status.podIP", "/status/podIP"),
    ("status.nominatedNodeName", "/status/nominatedNodeName"),
];

impl Strategy for Pods {
    typed!(Pod);
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        default_pod(obj);
        // `spec.priority` and `spec.preemptionPolicy` come from the
        // Priority admission plugin (`registry::admission`).
        let gated = obj
            .pointer("/spec/schedulingGates")
            .and_then(Value::as_array)
            .is_some_and(|g| !g.is_empty());
        if gated {
            // upstream's applySchedulingGatedCondition.
            obj["status"]["conditions"] = json!([{
                "type": "PodScheduled", "status": "False", "reason": "SchedulingGated",
                "message": "Scheduling is blocked due to non-empty scheduling gates",
                "lastProbeTime": null, "lastTransitionTime": null,
            }]);
        }
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
        // Defaulted as on create, so a manifest sent again unchanged (`kubectl replace`)
        // is the same pod.
        default_pod(new);
        // The Priority admission plugin keeps what it set on create.
        for f in ["priority", "preemptionPolicy"] {
            let missing = new
                .pointer(&format!("/spec/{f}"))
                .is_none_or(Value::is_null);
            if let (true, Some(v), Some(spec)) = (
                missing,
                old.pointer(&format!("/spec/{f}")).cloned(),
                new.get_mut("spec").and_then(Value::as_object_mut),
            ) {
                spec.insert(f.to_string(), v);
            }
        }
    }
    fn graceful_deletion_period(&self, pod: &Value, requested: Option<i64>) -> Option<i64> {
        // No kubelet runs an unscheduled pod, and a finished one has nothing left to stop.
        let scheduled = !s(pod, "/spec/nodeName").is_empty();
        let finished = matches!(s(pod, "/status/phase"), "Succeeded" | "Failed");
        let period = if scheduled && !finished {
            requested
                .or_else(|| {
                    pod.pointer("/spec/terminationGracePeriodSeconds")
                        .and_then(Value::as_i64)
                })
                .unwrap_or(0)
        } else {
            0
        };
        Some(if period < 0 { 1 } else { period })
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_pod_spec(obj.get("spec"), "spec")
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut out = self.validate(new);
        // Upstream allows only image, activeDeadlineSeconds, tolerations
        // (additions) and terminationGracePeriodSeconds to change.
        let strip = |v: &Value| {
            let mut spec = v.get("spec").cloned().unwrap_or(Value::Null);
            if let Some(Value::Array(cs)) = spec.get_mut("containers") {
                for c in cs {
                    if let Some(o) = c.as_object_mut() {
                        o.remove("image");
                    }
                }
            }
            if let Some(o) = spec.as_object_mut() {
                for f in [
                    "activeDeadlineSeconds",
                    "tolerations",
                    "terminationGracePeriodSeconds",
                    "schedulingGates",
                ] {
                    o.remove(f);
                }
            }
            spec
        };
        // Scheduling gates may only be removed.
        let gates = |v: &Value| -> Vec<String> {
            v.pointer("/spec/schedulingGates")
                .and_then(Value::as_array)
                .map(|g| {
                    g.iter()
                        .filter_map(|x| x.get("name").and_then(Value::as_str).map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let before = gates(old);
        if let Some(added) = gates(new).into_iter().find(|g| !before.contains(g)) {
            out.push(FieldError {
                reason: "FieldValueForbidden",
                field: "spec.schedulingGates".into(),
                message: format!(
                    "spec.schedulingGates: Forbidden: only deletion is allowed, but found new scheduling gate '{added}'"
                ),
            });
        }
        if strip(new) != strip(old) {
            out.push(FieldError {
                reason: "FieldValueForbidden",
                field: "spec".into(),
                message: "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)".into(),
            });
        }
        out
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ]
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        if field == "spec.hostNetwork" {
            let b = obj.pointer("/spec/hostNetwork").and_then(Value::as_bool);
            return Some(b.unwrap_or(false).to_string());
        }
        POD_FIELDS
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, p)| s(obj, p).to_string())
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("Ready", "The aggregate readiness state of this pod for accepting traffic."),
            Column::text("Status", "The aggregate status of the containers in this pod."),
            Column::text("Restarts", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
            Column::AGE,
            Column::text("IP", "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.").wide(),
            Column::text("Node", "NodeName is a request to schedule this pod onto a specific node. If it is non-empty, the scheduler simply schedules this pod onto that node, assuming that it fits resource requirements.").wide(),
            Column::text("Nominated Node", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.").wide(),
            Column::text("Readiness Gates", "If specified, all readiness gates will be evaluated for pod readiness.").wide(),
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let total = super::count(obj, "/spec/containers");
        let statuses = obj
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let ready = statuses
            .iter()
            .filter(|c| c.get("ready") == Some(&json!(true)))
            .count();
        let restarts: i64 = statuses
            .iter()
            .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
            .sum();
        let mut reason = s(obj, "/status/phase").to_string();
        if !s(obj, "/status/reason").is_empty() {
            reason = s(obj, "/status/reason").to_string();
        }
        for c in &statuses {
            let waiting = c.pointer("/state/waiting/reason").and_then(Value::as_str);
            if let Some(w) = waiting.filter(|w| !w.is_empty()) {
                reason = w.to_string();
            }
        }
        if meta::meta_str(obj, "deletionTimestamp").is_some() {
            reason = "Terminating".into();
        }
        let gates = super::count(obj, "/spec/readinessGates");
        vec![
            name_cell(obj),
            json!(format!("{ready}/{total}")),
            json!(reason),
            json!(restarts.to_string()),
            age_cell(obj, now),
            or_none(Some(s(obj, "/status/podIP"))),
            or_none(Some(s(obj, "/spec/nodeName"))),
            or_none(Some(s(obj, "/status/nominatedNodeName"))),
            if gates == 0 {
                json!("<none>")
            } else {
                json!(format!("0/{gates}"))
            },
        ]
    }
}

/// core/v1 `bindings`: the older way to bind a pod (`POST namespaces/NS/bindings` naming the
/// pod), answered as `pods/NAME/binding` is; never stored.
#[derive(Debug)]
pub(crate) struct Bindings;

impl Strategy for Bindings {
    typed!(k8s_openapi::api::core::v1::Binding);
    fn columns(&self) -> Vec<Column> {
        vec![Column::NAME]
    }
    fn cells(&self, obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
        vec![name_cell(obj)]
    }
}
