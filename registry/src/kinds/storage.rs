//! Storage: core/v1 `persistentvolumeclaims` and `persistentvolumes`, storage.k8s.io/v1
//! `storageclasses`, `csidrivers`, `csinodes`, `volumeattachments` and
//! `csistoragecapacities`: upstream's defaults, the validation users meet first, the status
//! split and upstream's columns. The PersistentVolume binder
//! (`controllers::persistent_volume`) binds claims to volumes; no provisioner runs in the
//! enclave.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::{
    CSIDriver, CSINode, CSIStorageCapacity, StorageClass, VolumeAttachment,
};
use serde_json::{Value, json};

use super::{
    count, default_at, drop_status, forbidden, immutable, keep_status, s, typed, unsupported,
};
use crate::table::{Column, age_cell, name_cell};
use crate::{FieldError, Strategy, meta};

/// The access modes upstream knows, in the order it abbreviates them.
const ACCESS_MODES: [(&str, &str); 4] = [
    ("ReadWriteOnce", "RWO"),
    ("ReadOnlyMany", "ROX"),
    ("ReadWriteMany", "RWX"),
    ("ReadWriteOncePod", "RWOP"),
];

/// Upstream's `GetAccessModesAsString`: the modes at `ptr`, abbreviated, in upstream's order.
fn access_modes(obj: &Value, ptr: &str) -> String {
    let modes: Vec<&str> = obj
        .pointer(ptr)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    ACCESS_MODES
        .iter()
        .filter(|(m, _)| modes.contains(m))
        .map(|(_, short)| *short)
        .collect::<Vec<_>>()
        .join(",")
}

/// `spec.accessModes`: at least one, each known.
fn validate_access_modes(obj: &Value, out: &mut Vec<FieldError>) {
    let modes = obj
        .pointer("/spec/accessModes")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if modes.is_empty() {
        out.push(FieldError::required(
            "spec.accessModes",
            "at least 1 access mode is required",
        ));
    }
    let mut known: Vec<&str> = ACCESS_MODES.iter().map(|(m, _)| *m).collect();
    known.sort_unstable();
    for m in modes {
        let m = m.as_str().unwrap_or("");
        if !known.contains(&m) {
            out.push(unsupported("spec.accessModes", m, &known));
        }
    }
}

/// A phase cell: `Terminating` once the object is being deleted.
fn phase_cell(obj: &Value) -> Value {
    if meta::meta_str(obj, "deletionTimestamp").is_some() {
        return json!("Terminating");
    }
    json!(s(obj, "/status/phase"))
}

/// `<unset>` for an absent or empty string.
fn or_unset(v: &str) -> Value {
    json!(if v.is_empty() { "<unset>" } else { v })
}

/// The class of a claim or volume: `spec.storageClassName`, else the beta annotation.
fn class_of(obj: &Value) -> Value {
    let annotated = obj
        .pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
        .and_then(Value::as_str);
    json!(annotated.unwrap_or(s(obj, "/spec/storageClassName")))
}

/// core/v1 `persistentvolumeclaims`.
#[derive(Debug)]
pub struct PersistentVolumeClaims;

impl Strategy for PersistentVolumeClaims {
    typed!(PersistentVolumeClaim);
    fn prepare_for_create(&self, obj: &mut Value) {
        // Upstream's PrepareForCreate clears the status; its defaults make the phase Pending.
        obj["status"] = json!({"phase": "Pending"});
        default_at(obj, "/spec/volumeMode", json!("Filesystem"));
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
        default_at(new, "/spec/volumeMode", json!("Filesystem"));
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut out = Vec::new();
        validate_access_modes(obj, &mut out);
        if obj
            .pointer("/spec/resources/requests/storage")
            .is_none_or(Value::is_null)
        {
            out.push(FieldError::required("spec.resources[storage]", ""));
        }
        out
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut out = self.validate(new);
        // Only the requests (expansion), the class of volume attributes, the binding of an
        // unbound claim, and a class for a claim that had none (upstream's retroactive
        // default StorageClass) may change.
        let classless = old
            .pointer("/spec/storageClassName")
            .is_none_or(Value::is_null);
        let comparable = |v: &Value, old_bound: bool| {
            let mut spec = v.get("spec").cloned().unwrap_or(Value::Null);
            if let Some(o) = spec.as_object_mut() {
                o.remove("volumeAttributesClassName");
                if let Some(r) = o.get_mut("resources").and_then(Value::as_object_mut) {
                    r.remove("requests");
                }
                if !old_bound {
                    o.remove("volumeName");
                }
                if classless {
                    o.remove("storageClassName");
                }
            }
            spec
        };
        let bound = !s(old, "/spec/volumeName").is_empty();
        if comparable(new, bound) != comparable(old, bound) {
            out.push(forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            ));
        }
        out
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("Status", "The phase of the claim"),
            Column::text("Volume", "The volume bound to the claim"),
            Column::text("Capacity", "The capacity of the bound volume"),
            Column::text("Access Modes", "The access modes of the bound volume"),
            Column::text("StorageClass", "The storage class of the claim"),
            Column::text(
                "VolumeAttributesClass",
                "The volume attributes class of the claim",
            ),
            Column::AGE,
            Column::text("VolumeMode", "How the volume is used: Filesystem or Block").wide(),
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let volume = s(obj, "/spec/volumeName");
        let (capacity, modes) = if volume.is_empty() {
            (String::new(), String::new())
        } else {
            (
                s(obj, "/status/capacity/storage").to_string(),
                access_modes(obj, "/status/accessModes"),
            )
        };
        vec![
            name_cell(obj),
            phase_cell(obj),
            json!(volume),
            json!(capacity),
            json!(modes),
            class_of(obj),
            or_unset(s(obj, "/spec/volumeAttributesClassName")),
            age_cell(obj, now),
            or_unset(s(obj, "/spec/volumeMode")),
        ]
    }
}

/// The volume sources a PersistentVolume may name (exactly one).
const VOLUME_SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "glusterfs",
    "hostPath",
    "iscsi",
    "local",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];

/// core/v1 `persistentvolumes`.
#[derive(Debug)]
pub struct PersistentVolumes;

impl Strategy for PersistentVolumes {
    typed!(PersistentVolume);
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Pending"});
        default_at(obj, "/spec/persistentVolumeReclaimPolicy", json!("Retain"));
        default_at(obj, "/spec/volumeMode", json!("Filesystem"));
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
        default_at(new, "/spec/persistentVolumeReclaimPolicy", json!("Retain"));
        default_at(new, "/spec/volumeMode", json!("Filesystem"));
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut out = Vec::new();
        validate_access_modes(obj, &mut out);
        if count(obj, "/spec/capacity") == 0 {
            out.push(FieldError::required("spec.capacity", ""));
        } else if obj.pointer("/spec/capacity/storage").is_none() {
            out.push(FieldError::required("spec.capacity[storage]", ""));
        }
        let sources: Vec<&str> = VOLUME_SOURCES
            .iter()
            .copied()
            .filter(|k| {
                obj.pointer(&format!("/spec/{k}"))
                    .is_some_and(|v| !v.is_null())
            })
            .collect();
        match sources.as_slice() {
            [] => out.push(FieldError::required("spec", "must specify a volume type")),
            [_] => {}
            [_, more @ ..] => {
                for k in more {
                    out.push(forbidden(
                        format!("spec.{k}"),
                        "may not specify more than 1 volume type",
                    ));
                }
            }
        }
        let policy = s(obj, "/spec/persistentVolumeReclaimPolicy");
        if !["", "Delete", "Recycle", "Retain"].contains(&policy) {
            out.push(unsupported(
                "spec.persistentVolumeReclaimPolicy",
                policy,
                &["Delete", "Recycle", "Retain"],
            ));
        }
        out
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut out = self.validate(new);
        // The volume source is immutable once set (upstream's ValidatePersistentVolumeUpdate).
        for k in VOLUME_SOURCES {
            out.extend(immutable(new, old, &format!("/spec/{k}")));
        }
        out.extend(immutable(new, old, "/spec/volumeMode"));
        out
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("Capacity", "The capacity of the volume"),
            Column::text("Access Modes", "How the volume may be mounted"),
            Column::text("Reclaim Policy", "What happens to a released volume"),
            Column::text("Status", "The phase of the volume"),
            Column::text("Claim", "The claim bound to the volume"),
            Column::text("StorageClass", "The storage class of the volume"),
            Column::text(
                "VolumeAttributesClass",
                "The volume attributes class of the volume",
            ),
            Column::text("Reason", "Why the volume is in its phase"),
            Column::AGE,
            Column::text("VolumeMode", "How the volume is used: Filesystem or Block").wide(),
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let claim = match obj.pointer("/spec/claimRef").filter(|c| !c.is_null()) {
            Some(c) => format!("{}/{}", s(c, "/namespace"), s(c, "/name")),
            None => String::new(),
        };
        vec![
            name_cell(obj),
            json!(s(obj, "/spec/capacity/storage")),
            json!(access_modes(obj, "/spec/accessModes")),
            json!(s(obj, "/spec/persistentVolumeReclaimPolicy")),
            phase_cell(obj),
            json!(claim),
            class_of(obj),
            or_unset(s(obj, "/spec/volumeAttributesClassName")),
            json!(s(obj, "/status/reason")),
            age_cell(obj, now),
            or_unset(s(obj, "/spec/volumeMode")),
        ]
    }
}

/// The annotations that make a StorageClass the default (GA and beta).
pub const DEFAULT_CLASS_ANNOTATIONS: [&str; 2] = [
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
];

/// storage.k8s.io/v1 `storageclasses`.
#[derive(Debug)]
pub struct StorageClasses;

impl Strategy for StorageClasses {
    typed!(StorageClass);
    fn prepare_for_create(&self, obj: &mut Value) {
        default_at(obj, "/reclaimPolicy", json!("Delete"));
        default_at(obj, "/volumeBindingMode", json!("Immediate"));
    }
    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        default_at(new, "/reclaimPolicy", json!("Delete"));
        default_at(new, "/volumeBindingMode", json!("Immediate"));
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut out = Vec::new();
        if s(obj, "/provisioner").is_empty() {
            out.push(FieldError::required("provisioner", ""));
        }
        let policy = s(obj, "/reclaimPolicy");
        if !["", "Delete", "Retain"].contains(&policy) {
            out.push(unsupported("reclaimPolicy", policy, &["Delete", "Retain"]));
        }
        let mode = s(obj, "/volumeBindingMode");
        if !["", "Immediate", "WaitForFirstConsumer"].contains(&mode) {
            out.push(unsupported(
                "volumeBindingMode",
                mode,
                &["Immediate", "WaitForFirstConsumer"],
            ));
        }
        out
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut out = self.validate(new);
        for field in ["parameters", "provisioner", "reclaimPolicy"] {
            if new.get(field) != old.get(field) {
                out.push(forbidden(
                    field,
                    &format!("updates to {field} are forbidden."),
                ));
            }
        }
        out.extend(immutable(new, old, "/volumeBindingMode"));
        out
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text(
                "Provisioner",
                "The volume plugin that provisions volumes of the class",
            ),
            Column::text("ReclaimPolicy", "What happens to its released volumes"),
            Column::text("VolumeBindingMode", "When claims are bound"),
            Column::boolean("AllowVolumeExpansion", "Whether claims may grow"),
            Column::AGE,
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let annotations = obj.pointer("/metadata/annotations");
        let default = DEFAULT_CLASS_ANNOTATIONS
            .iter()
            .any(|a| annotations.and_then(|m| m.get(a)).and_then(Value::as_str) == Some("true"));
        let name = meta::name(obj);
        vec![
            json!(if default {
                format!("{name} (default)")
            } else {
                name.to_string()
            }),
            json!(s(obj, "/provisioner")),
            json!(s(obj, "/reclaimPolicy")),
            json!(s(obj, "/volumeBindingMode")),
            json!(
                obj.get("allowVolumeExpansion")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            ),
            age_cell(obj, now),
        ]
    }
}

/// storage.k8s.io/v1 `csidrivers`.
#[derive(Debug)]
pub struct CsiDrivers;

impl Strategy for CsiDrivers {
    typed!(CSIDriver);
    fn prepare_for_create(&self, obj: &mut Value) {
        for (ptr, v) in [
            ("/spec/attachRequired", json!(true)),
            ("/spec/podInfoOnMount", json!(false)),
            ("/spec/storageCapacity", json!(false)),
            ("/spec/requiresRepublish", json!(false)),
            ("/spec/fsGroupPolicy", json!("ReadWriteOnceWithFSType")),
            ("/spec/volumeLifecycleModes", json!(["Persistent"])),
        ] {
            default_at(obj, ptr, v);
        }
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        // Upstream: attachRequired, podInfoOnMount and fsGroupPolicy may change since 1.29;
        // the lifecycle modes may not.
        immutable(new, old, "/spec/volumeLifecycleModes")
            .into_iter()
            .collect()
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::boolean("AttachRequired", "Whether volumes need attaching"),
            Column::boolean(
                "PodInfoOnMount",
                "Whether pod information is passed on mount",
            ),
            Column::boolean("StorageCapacity", "Whether the driver reports capacity"),
            Column::text(
                "TokenRequests",
                "The audiences of the tokens passed on mount",
            ),
            Column::boolean(
                "RequiresRepublish",
                "Whether volumes are mounted again periodically",
            ),
            Column::text("Modes", "The volume lifecycle modes"),
            Column::AGE,
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let flag = |ptr: &str, default: bool| {
            json!(obj.pointer(ptr).and_then(Value::as_bool).unwrap_or(default))
        };
        let audiences: Vec<&str> = obj
            .pointer("/spec/tokenRequests")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|t| s(t, "/audience")).collect())
            .unwrap_or_default();
        let modes: Vec<&str> = obj
            .pointer("/spec/volumeLifecycleModes")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        vec![
            name_cell(obj),
            flag("/spec/attachRequired", true),
            flag("/spec/podInfoOnMount", false),
            flag("/spec/storageCapacity", false),
            json!(if audiences.is_empty() {
                "<unset>".to_string()
            } else {
                audiences.join(",")
            }),
            flag("/spec/requiresRepublish", false),
            json!(if modes.is_empty() {
                "<none>".to_string()
            } else {
                modes.join(",")
            }),
            age_cell(obj, now),
        ]
    }
}

/// storage.k8s.io/v1 `csinodes`.
#[derive(Debug)]
pub struct CsiNodes;

impl Strategy for CsiNodes {
    typed!(CSINode);
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::integer("Drivers", "The number of CSI drivers on the node"),
            Column::AGE,
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        vec![
            name_cell(obj),
            json!(count(obj, "/spec/drivers")),
            age_cell(obj, now),
        ]
    }
}

/// storage.k8s.io/v1 `volumeattachments`.
#[derive(Debug)]
pub struct VolumeAttachments;

impl Strategy for VolumeAttachments {
    typed!(VolumeAttachment);
    fn prepare_for_create(&self, obj: &mut Value) {
        drop_status(obj);
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut out = Vec::new();
        if s(obj, "/spec/attacher").is_empty() {
            out.push(FieldError::required("spec.attacher", ""));
        }
        if s(obj, "/spec/nodeName").is_empty() {
            out.push(FieldError::required("spec.nodeName", ""));
        }
        out
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut out = self.validate(new);
        if new.get("spec") != old.get("spec") {
            out.push(FieldError::immutable(
                "spec",
                new.get("spec").unwrap_or(&Value::Null),
            ));
        }
        out
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("Attacher", "The driver that attaches the volume"),
            Column::text("PV", "The persistent volume attached"),
            Column::text("Node", "The node it is attached to"),
            Column::boolean("Attached", "Whether the volume is attached"),
            Column::AGE,
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        vec![
            name_cell(obj),
            json!(s(obj, "/spec/attacher")),
            json!(s(obj, "/spec/source/persistentVolumeName")),
            json!(s(obj, "/spec/nodeName")),
            json!(
                obj.pointer("/status/attached")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            ),
            age_cell(obj, now),
        ]
    }
}

/// storage.k8s.io/v1 `csistoragecapacities`.
#[derive(Debug)]
pub struct CsiStorageCapacities;

impl Strategy for CsiStorageCapacities {
    typed!(CSIStorageCapacity);
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        if s(obj, "/storageClassName").is_empty() {
            return vec![FieldError::required("storageClassName", "")];
        }
        Vec::new()
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut out = self.validate(new);
        out.extend(immutable(new, old, "/storageClassName"));
        out.extend(immutable(new, old, "/nodeTopology"));
        out
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("StorageClassName", "The storage class the capacity is for"),
            Column::text("Capacity", "The capacity available"),
        ]
    }
    fn cells(&self, obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
        vec![
            name_cell(obj),
            json!(s(obj, "/storageClassName")),
            or_unset(s(obj, "/capacity")),
        ]
    }
}
