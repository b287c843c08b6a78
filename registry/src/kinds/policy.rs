//! policy/v1 `poddisruptionbudgets` and scheduling.k8s.io/v1
//! `priorityclasses`: defaults, validation and upstream columns.

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use serde_json::{Value, json};

use super::{default_at, forbidden, int, keep_status, s, typed, unsupported};
use crate::table::{Column, age_cell, name_cell};
use crate::{FieldError, Strategy, meta};

/// `poddisruptionbudgets`.
#[derive(Debug)]
pub(crate) struct PodDisruptionBudgets;

/// An IntOrString cell, or `N/A` when unset.
fn int_or_string(obj: &Value, ptr: &str) -> Value {
    match obj.pointer(ptr) {
        Some(Value::Number(n)) => json!(n.to_string()),
        Some(Value::String(s)) => json!(s),
        _ => json!("N/A"),
    }
}

/// A PDB bound: a non-negative integer or a percentage of at most 100%.
fn check_bound(obj: &Value, ptr: &str, field: &str, out: &mut Vec<FieldError>) {
    match obj.pointer(ptr) {
        Some(Value::Number(n)) if n.as_i64().is_some_and(|v| v < 0) => {
            out.push(FieldError::invalid_int(
                field,
                n.as_i64().unwrap_or_default(),
                "must be greater than or equal to 0",
            ));
        }
        Some(Value::String(p)) => {
            let pct = p.strip_suffix('%').and_then(|n| n.parse::<i64>().ok());
            match pct {
                None => out.push(FieldError::invalid(
                    field,
                    p,
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                )),
                Some(v) if v > 100 => out.push(FieldError::invalid(
                    field,
                    p,
                    "must not be greater than 100%",
                )),
                Some(_) => {}
            }
        }
        _ => {}
    }
}

impl Strategy for PodDisruptionBudgets {
    typed!(PodDisruptionBudget);
    fn tracks_generation(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0});
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut out = Vec::new();
        let set = |p: &str| obj.pointer(p).is_some_and(|v| !v.is_null());
        if set("/spec/minAvailable") && set("/spec/maxUnavailable") {
            out.push(FieldError::invalid(
                "spec",
                &obj.get("spec").map(Value::to_string).unwrap_or_default(),
                "minAvailable and maxUnavailable cannot be both set",
            ));
        }
        check_bound(obj, "/spec/minAvailable", "spec.minAvailable", &mut out);
        check_bound(obj, "/spec/maxUnavailable", "spec.maxUnavailable", &mut out);
        let policy = s(obj, "/spec/unhealthyPodEvictionPolicy");
        if !policy.is_empty() && policy != "IfHealthyBudget" && policy != "AlwaysAllow" {
            out.push(unsupported(
                "spec.unhealthyPodEvictionPolicy",
                policy,
                &["AlwaysAllow", "IfHealthyBudget"],
            ));
        }
        out
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text(
                "Min Available",
                "The minimum number of pods that must be available.",
            ),
            Column::text(
                "Max Unavailable",
                "The maximum number of pods that may be unavailable.",
            ),
            Column::integer(
                "Allowed Disruptions",
                "Calculated number of pods that may be disrupted at this time.",
            ),
            Column::AGE,
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        vec![
            name_cell(obj),
            int_or_string(obj, "/spec/minAvailable"),
            int_or_string(obj, "/spec/maxUnavailable"),
            json!(int(obj, "/status/disruptionsAllowed")),
            age_cell(obj, now),
        ]
    }
}

/// `priorityclasses`: cluster-scoped; `value` and `preemptionPolicy` are
/// immutable; user classes are at most 1,000,000,000.
#[derive(Debug)]
pub(crate) struct PriorityClasses;

/// The largest value a user-defined priority class may have.
const HIGHEST_USER_PRIORITY: i64 = 1_000_000_000;

impl Strategy for PriorityClasses {
    typed!(PriorityClass);
    fn prepare_for_create(&self, obj: &mut Value) {
        default_at(obj, "/preemptionPolicy", json!("PreemptLowerPriority"));
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        if new.get("preemptionPolicy").is_none_or(Value::is_null)
            && let Some(p) = old.get("preemptionPolicy")
        {
            new["preemptionPolicy"] = p.clone();
        }
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut out = Vec::new();
        let name = meta::name(obj);
        let global = obj
            .get("globalDefault")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if is_system_priority_class(name, int(obj, "/value"), global) {
            return out;
        }
        if name.starts_with("system-") {
            out.push(FieldError::invalid(
                "metadata.name",
                name,
                "priority class names with 'system-' prefix are reserved",
            ));
        }
        if int(obj, "/value") > HIGHEST_USER_PRIORITY {
            out.push(forbidden(
                "value",
                "maximum allowed value of a user defined priority is 1000000000",
            ));
        }
        let policy = s(obj, "/preemptionPolicy");
        if policy != "PreemptLowerPriority" && policy != "Never" {
            out.push(unsupported(
                "preemptionPolicy",
                policy,
                &["Never", "PreemptLowerPriority"],
            ));
        }
        out
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut out = self.validate(new);
        if new.get("value") != old.get("value") {
            out.push(forbidden("value", "may not be changed in an update."));
        }
        if new.get("preemptionPolicy") != old.get("preemptionPolicy") {
            out.push(forbidden(
                "preemptionPolicy",
                "may not be changed in an update.",
            ));
        }
        out
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::integer(
                "Value",
                "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec.",
            ),
            Column::boolean(
                "Global-Default",
                "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class. Only one PriorityClass can be marked as `globalDefault`. However, if more than one PriorityClasses exists with their `globalDefault` field set to true, the smallest value of such global default PriorityClasses will be used as the default priority.",
            ),
            Column::AGE,
            Column::text(
                "PreemptionPolicy",
                "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset.",
            ),
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        vec![
            name_cell(obj),
            json!(int(obj, "/value")),
            json!(
                obj.get("globalDefault")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            ),
            age_cell(obj, now),
            json!(s(obj, "/preemptionPolicy")),
        ]
    }
}

/// The built-in PriorityClasses (upstream's `SystemPriorityClasses`):
/// name, value, description.
pub const SYSTEM_PRIORITY_CLASSES: [(&str, i64, &str); 2] = [
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

/// Whether `name` with `value` and `global_default` is one of the
/// built-in classes (upstream's `IsKnownSystemPriorityClass`).
pub fn is_system_priority_class(name: &str, value: i64, global_default: bool) -> bool {
    !global_default
        && SYSTEM_PRIORITY_CLASSES
            .iter()
            .any(|(n, v, _)| *n == name && *v == value)
}
