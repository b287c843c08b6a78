//! apps/v1 workloads: `deployments`, `replicasets`, `daemonsets` and
//! `statefulsets`, and core/v1 `replicationcontrollers`. Defaults, selector and template
//! validation, generation and the status split, upstream columns.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::ReplicationController;
use serde_json::{Value, json};

use super::pods::{default_pod_spec, validate_pod_spec};
use super::{
    containers_images, default_at, drop_status, forbidden, format_label_map, format_selector,
    immutable, int, keep_status, s, typed, unsupported, validate_non_negative, validate_selector,
};
use crate::table::{Column, age_cell, name_cell};
use crate::{FieldError, Strategy};

const CONTAINERS: &str = "Names of each container in the template.";
const IMAGES: &str = "Images referenced by each container in the template.";

/// Clears `status` on create and applies the pod-template defaults.
fn prepare_workload(obj: &mut Value) {
    drop_status(obj);
    if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
        default_pod_spec(spec);
    }
}

/// Keeps `status` from the stored object and defaults the new template.
fn prepare_workload_update(new: &mut Value, old: &Value) {
    keep_status(new, old);
    if let Some(spec) = new.pointer_mut("/spec/template/spec") {
        default_pod_spec(spec);
    }
}

/// Replicas, selector and the pod template: what every workload validates.
fn validate_workload(obj: &Value, what: &str) -> Vec<FieldError> {
    let mut out = validate_pod_spec(obj.pointer("/spec/template/spec"), "spec.template.spec");
    out.extend(validate_non_negative(obj, "/spec/replicas"));
    out.extend(validate_selector(obj, "spec", "/spec/template", what));
    out
}

fn selector_column(description: &'static str) -> Column {
    Column::text("Selector", description).wide()
}

/// `deployments`.
#[derive(Debug)]
pub(crate) struct Deployments;

/// Upstream's `SetDefaults_Deployment` (applied on create and update, as
/// upstream defaults every decoded object).
fn deployment_defaults(obj: &mut Value) {
    default_at(obj, "/spec/replicas", json!(1));
    default_at(obj, "/spec/revisionHistoryLimit", json!(10));
    default_at(obj, "/spec/progressDeadlineSeconds", json!(600));
    default_at(obj, "/spec/strategy/type", json!("RollingUpdate"));
    if obj.pointer("/spec/strategy/type") == Some(&json!("RollingUpdate")) {
        default_at(
            obj,
            "/spec/strategy/rollingUpdate/maxUnavailable",
            json!("25%"),
        );
        default_at(obj, "/spec/strategy/rollingUpdate/maxSurge", json!("25%"));
    }
}

/// Upstream's `SetDefaults_DaemonSet`.
fn daemonset_defaults(obj: &mut Value) {
    default_at(obj, "/spec/revisionHistoryLimit", json!(10));
    default_at(obj, "/spec/updateStrategy/type", json!("RollingUpdate"));
    if obj.pointer("/spec/updateStrategy/type") == Some(&json!("RollingUpdate")) {
        default_at(
            obj,
            "/spec/updateStrategy/rollingUpdate/maxUnavailable",
            json!(1),
        );
        default_at(obj, "/spec/updateStrategy/rollingUpdate/maxSurge", json!(0));
    }
}

/// Upstream's `SetDefaults_StatefulSet`.
fn statefulset_defaults(obj: &mut Value) {
    default_at(obj, "/spec/replicas", json!(1));
    default_at(obj, "/spec/podManagementPolicy", json!("OrderedReady"));
    default_at(obj, "/spec/revisionHistoryLimit", json!(10));
    default_at(obj, "/spec/updateStrategy/type", json!("RollingUpdate"));
    if obj.pointer("/spec/updateStrategy/type") == Some(&json!("RollingUpdate")) {
        default_at(
            obj,
            "/spec/updateStrategy/rollingUpdate/partition",
            json!(0),
        );
    }
    default_at(
        obj,
        "/spec/persistentVolumeClaimRetentionPolicy",
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
    );
}

impl Strategy for Deployments {
    typed!(Deployment);
    fn tracks_generation(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        prepare_workload(obj);
        deployment_defaults(obj);
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        prepare_workload_update(new, old);
        deployment_defaults(new);
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_workload(obj, "deployment")
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut out = self.validate(new);
        out.extend(immutable(new, old, "/spec/selector"));
        out
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("Ready", "Number of the pod with ready state"),
            Column::integer(
                "Up-to-date",
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            ),
            Column::integer(
                "Available",
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
            ),
            Column::AGE,
            Column::text("Containers", CONTAINERS).wide(),
            Column::text("Images", IMAGES).wide(),
            selector_column(
                "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
            ),
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (containers, images) = containers_images(obj, "/spec/template");
        vec![
            name_cell(obj),
            json!(format!(
                "{}/{}",
                int(obj, "/status/readyReplicas"),
                int(obj, "/spec/replicas")
            )),
            json!(int(obj, "/status/updatedReplicas")),
            json!(int(obj, "/status/availableReplicas")),
            age_cell(obj, now),
            containers,
            images,
            format_selector(obj.pointer("/spec/selector")),
        ]
    }
}

/// `replicasets`: `status.replicas` is selectable.
#[derive(Debug)]
pub(crate) struct ReplicaSets;

impl Strategy for ReplicaSets {
    typed!(ReplicaSet);
    fn tracks_generation(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        prepare_workload(obj);
        default_at(obj, "/spec/replicas", json!(1));
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        prepare_workload_update(new, old);
        default_at(new, "/spec/replicas", json!(1));
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        // Upstream's ReplicaSet validation also says "for deployment".
        validate_workload(obj, "deployment")
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut out = self.validate(new);
        out.extend(immutable(new, old, "/spec/selector"));
        out
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.replicas"]
    }
    fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        (field == "status.replicas").then(|| int(obj, "/status/replicas").to_string())
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::integer(
                "Desired",
                "Replicas is the number of desired pods. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset/#how-a-replicaset-works",
            ),
            Column::integer(
                "Current",
                "Replicas is the most recently observed number of non-terminating pods. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset/#how-a-replicaset-works",
            ),
            Column::integer(
                "Ready",
                "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition.",
            ),
            Column::AGE,
            Column::text("Containers", CONTAINERS).wide(),
            Column::text("Images", IMAGES).wide(),
            selector_column(
                "Selector is a label query over pods that should match the replica count. Label keys and values that must match in order to be controlled by this replica set. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
            ),
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (containers, images) = containers_images(obj, "/spec/template");
        vec![
            name_cell(obj),
            json!(int(obj, "/spec/replicas")),
            json!(int(obj, "/status/replicas")),
            json!(int(obj, "/status/readyReplicas")),
            age_cell(obj, now),
            containers,
            images,
            format_selector(obj.pointer("/spec/selector")),
        ]
    }
}

/// core/v1 `replicationcontrollers`: a ReplicaSet's older form, with a plain label map as
/// its selector (defaulted, with the object's labels, from the template's labels).
#[derive(Debug)]
pub(crate) struct ReplicationControllers;

/// upstream's `SetDefaults_ReplicationController`.
fn replication_controller_defaults(obj: &mut Value) {
    let labels = obj.pointer("/spec/template/metadata/labels").cloned();
    if let Some(labels) = labels.filter(|l| l.as_object().is_some_and(|m| !m.is_empty())) {
        if obj
            .pointer("/spec/selector")
            .and_then(Value::as_object)
            .is_none_or(|m| m.is_empty())
        {
            obj["spec"]["selector"] = labels.clone();
        }
        if obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .is_none_or(|m| m.is_empty())
        {
            obj["metadata"]["labels"] = labels;
        }
    }
    default_at(obj, "/spec/replicas", json!(1));
}

impl Strategy for ReplicationControllers {
    typed!(ReplicationController);
    fn tracks_generation(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        prepare_workload(obj);
        replication_controller_defaults(obj);
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        prepare_workload_update(new, old);
        replication_controller_defaults(new);
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut out = validate_pod_spec(obj.pointer("/spec/template/spec"), "spec.template.spec");
        out.extend(validate_non_negative(obj, "/spec/replicas"));
        let selector = obj.pointer("/spec/selector").and_then(Value::as_object);
        match selector.filter(|m| !m.is_empty()) {
            None => out.push(FieldError::required("spec.selector", "")),
            Some(sel) => {
                let labels = obj
                    .pointer("/spec/template/metadata/labels")
                    .and_then(Value::as_object);
                let matches = sel
                    .iter()
                    .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
                if !matches {
                    out.push(FieldError::invalid(
                        "spec.template.metadata.labels",
                        &labels
                            .map(|l| Value::Object(l.clone()).to_string())
                            .unwrap_or_default(),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        }
        out
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::integer("Desired", "The number of desired pods"),
            Column::integer("Current", "The most recently observed number of pods"),
            Column::integer("Ready", "The number of ready pods"),
            Column::AGE,
            Column::text("Containers", CONTAINERS).wide(),
            Column::text("Images", IMAGES).wide(),
            selector_column("The label query over the controlled pods"),
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (containers, images) = containers_images(obj, "/spec/template");
        vec![
            name_cell(obj),
            json!(int(obj, "/spec/replicas")),
            json!(int(obj, "/status/replicas")),
            json!(int(obj, "/status/readyReplicas")),
            age_cell(obj, now),
            containers,
            images,
            json!(format_label_map(obj.pointer("/spec/selector"))),
        ]
    }
}

/// `daemonsets`: template pods must restart `Always`.
#[derive(Debug)]
pub(crate) struct DaemonSets;

impl Strategy for DaemonSets {
    typed!(DaemonSet);
    fn tracks_generation(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        prepare_workload(obj);
        daemonset_defaults(obj);
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        prepare_workload_update(new, old);
        daemonset_defaults(new);
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut out = validate_workload(obj, "daemonset");
        let policy = s(obj, "/spec/template/spec/restartPolicy");
        if policy != "Always" {
            out.push(unsupported(
                "spec.template.spec.restartPolicy",
                policy,
                &["Always"],
            ));
        }
        out
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut out = self.validate(new);
        out.extend(immutable(new, old, "/spec/selector"));
        out
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::integer(
                "Desired",
                "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/",
            ),
            Column::integer(
                "Current",
                "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/",
            ),
            Column::integer(
                "Ready",
                "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
            ),
            Column::integer(
                "Up-to-date",
                "The total number of nodes that are running updated daemon pod",
            ),
            Column::integer(
                "Available",
                "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)",
            ),
            Column::text(
                "Node Selector",
                "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/",
            ),
            Column::AGE,
            Column::text("Containers", CONTAINERS).wide(),
            Column::text("Images", IMAGES).wide(),
            selector_column(
                "A label query over pods that are managed by the daemon set. Must match in order to be controlled. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
            ),
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (containers, images) = containers_images(obj, "/spec/template");
        let node_selector = Some(format_label_map(
            obj.pointer("/spec/template/spec/nodeSelector"),
        ))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "<none>".into());
        vec![
            name_cell(obj),
            json!(int(obj, "/status/desiredNumberScheduled")),
            json!(int(obj, "/status/currentNumberScheduled")),
            json!(int(obj, "/status/numberReady")),
            json!(int(obj, "/status/updatedNumberScheduled")),
            json!(int(obj, "/status/numberAvailable")),
            json!(node_selector),
            age_cell(obj, now),
            containers,
            images,
            format_selector(obj.pointer("/spec/selector")),
        ]
    }
}

/// `statefulsets`: only some spec fields may change after create.
#[derive(Debug)]
pub(crate) struct StatefulSets;

/// The spec fields upstream lets an update change.
const STS_MUTABLE: &[&str] = &[
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];

impl Strategy for StatefulSets {
    typed!(StatefulSet);
    fn tracks_generation(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        prepare_workload(obj);
        statefulset_defaults(obj);
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        prepare_workload_update(new, old);
        statefulset_defaults(new);
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut out = validate_workload(obj, "statefulset");
        let policy = s(obj, "/spec/podManagementPolicy");
        if !policy.is_empty() && policy != "OrderedReady" && policy != "Parallel" {
            out.push(unsupported(
                "spec.podManagementPolicy",
                policy,
                &["OrderedReady", "Parallel"],
            ));
        }
        let restart = s(obj, "/spec/template/spec/restartPolicy");
        if restart != "Always" {
            out.push(unsupported(
                "spec.template.spec.restartPolicy",
                restart,
                &["Always"],
            ));
        }
        // upstream's ValidatePersistentVolumeClaimTemplate: each template is a valid claim.
        let templates = obj
            .pointer("/spec/volumeClaimTemplates")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (i, template) in templates.iter().enumerate() {
            let at = format!("spec.volumeClaimTemplates[{i}]");
            if s(template, "/metadata/name").is_empty() {
                out.push(FieldError::required(format!("{at}.metadata.name"), ""));
            }
            out.extend(
                super::storage::PersistentVolumeClaims
                    .validate(template)
                    .into_iter()
                    .map(|e| e.under(&at)),
            );
        }
        out
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut out = self.validate(new);
        let rest = |v: &Value| {
            let mut spec = v.get("spec").cloned().unwrap_or(Value::Null);
            if let Some(o) = spec.as_object_mut() {
                for f in STS_MUTABLE {
                    o.remove(*f);
                }
            }
            spec
        };
        if rest(new) != rest(old) {
            out.push(forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ));
        }
        out
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("Ready", "Number of the pod with ready state"),
            Column::AGE,
            Column::text("Containers", CONTAINERS).wide(),
            Column::text("Images", IMAGES).wide(),
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (containers, images) = containers_images(obj, "/spec/template");
        vec![
            name_cell(obj),
            json!(format!(
                "{}/{}",
                int(obj, "/status/readyReplicas"),
                int(obj, "/spec/replicas")
            )),
            age_cell(obj, now),
            containers,
            images,
        ]
    }
}
