//! The `Priority` admission plugin:
//! `spec.priority` and `spec.preemptionPolicy` of new pods from their
//! PriorityClass (or the global default), and at most one global default
//! PriorityClass.

use serde_json::{Value, json};

use super::super::{Error, ListOptions, ObjectStore, ResourceInfo, Result, WriteOptions, meta};

pub use crate::registry::kinds::{SYSTEM_PRIORITY_CLASSES, is_system_priority_class};

fn is(info: &ResourceInfo, group: &str, resource: &str) -> bool {
    info.group == group && info.resource == resource
}

fn forbidden(info: &ResourceInfo, name: &str, why: String) -> Error {
    Error::Forbidden {
        message: format!("{} {name:?} is forbidden: {why}", info.qualified()),
    }
}

/// A PriorityClass as admission reads it.
struct Class {
    name: String,
    value: i64,
    policy: Option<String>,
}

fn class_of(v: &Value) -> Class {
    Class {
        name: meta::name(v).to_string(),
        value: v.get("value").and_then(Value::as_i64).unwrap_or(0),
        policy: v
            .get("preemptionPolicy")
            .and_then(Value::as_str)
            .map(str::to_string),
    }
}

async fn priority_classes(
    store: &ObjectStore,
) -> Result<Option<(std::sync::Arc<ResourceInfo>, Vec<Value>)>> {
    let Some(info) = store
        .table()
        .lookup("scheduling.k8s.io", "v1", "priorityclasses")
    else {
        return Ok(None);
    };
    let items = store
        .list(&info, None, &ListOptions::default())
        .await?
        .items;
    Ok(Some((info, items)))
}

/// The global default class with the lowest value (upstream's `getDefaultPriorityClass`).
fn global_default(classes: &[Value]) -> Option<Class> {
    classes
        .iter()
        .filter(|c| c.get("globalDefault").and_then(Value::as_bool) == Some(true))
        .map(class_of)
        .min_by_key(|c| c.value)
}

/// Admission of a create of `obj` through `info`.
///
/// # Errors
/// 403 Forbidden as upstream's plugins word it.
pub(crate) async fn admit_create(
    store: &ObjectStore,
    info: &ResourceInfo,
    obj: &mut Value,
) -> Result<()> {
    if is(info, "", "pods") {
        return admit_pod(store, info, obj).await;
    }
    if is(info, "scheduling.k8s.io", "priorityclasses") {
        return admit_class(store, info, obj, true).await;
    }
    Ok(())
}

/// Admission of an update to `new`.
///
/// # Errors
/// 403 Forbidden as upstream's plugins word it.
pub(crate) async fn admit_update(
    store: &ObjectStore,
    info: &ResourceInfo,
    new: &Value,
) -> Result<()> {
    if is(info, "scheduling.k8s.io", "priorityclasses") {
        return admit_class(store, info, new, false).await;
    }
    Ok(())
}

/// Whether updates of `info` need [`admit_update`].
pub(crate) fn admits_updates(info: &ResourceInfo) -> bool {
    is(info, "scheduling.k8s.io", "priorityclasses")
}

async fn admit_class(
    store: &ObjectStore,
    info: &ResourceInfo,
    obj: &Value,
    create: bool,
) -> Result<()> {
    if obj.get("globalDefault").and_then(Value::as_bool) != Some(true) {
        return Ok(());
    }
    let Some((_, classes)) = priority_classes(store).await? else {
        return Ok(());
    };
    let name = meta::name(obj);
    if let Some(d) = global_default(&classes)
        && (create || d.name != name)
    {
        return Err(forbidden(
            info,
            name,
            format!(
                "PriorityClass {} is already marked as default. Only one default can exist",
                d.name
            ),
        ));
    }
    Ok(())
}

async fn admit_pod(store: &ObjectStore, info: &ResourceInfo, pod: &mut Value) -> Result<()> {
    let name = meta::name(pod).to_string();
    let Some(spec) = pod.get("spec").filter(|s| s.is_object()) else {
        return Ok(());
    };
    let class_name = spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let classes = priority_classes(store).await?;
    let class = match (&classes, class_name.is_empty()) {
        (None, _) => None,
        (Some((_, all)), true) => global_default(all),
        (Some((_, all)), false) => match all.iter().find(|c| meta::name(c) == class_name) {
            Some(c) => Some(class_of(c)),
            None => {
                return Err(forbidden(
                    info,
                    &name,
                    format!("no PriorityClass with name {class_name} was found"),
                ));
            }
        },
    };
    let (class_name, priority, policy) = match class {
        Some(c) => (c.name, c.value, c.policy),
        None => (String::new(), 0, Some("PreemptLowerPriority".to_string())),
    };
    if let Some(given) = spec.get("priority").and_then(Value::as_i64)
        && given != priority
    {
        return Err(forbidden(
            info,
            &name,
            format!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
            ),
        ));
    }
    if let (Some(given), Some(want)) = (
        spec.get("preemptionPolicy").and_then(Value::as_str),
        &policy,
    ) && given != want
    {
        return Err(forbidden(
            info,
            &name,
            format!(
                "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {want} from the given PriorityClass name"
            ),
        ));
    }
    let spec = &mut pod["spec"];
    if !class_name.is_empty() {
        spec["priorityClassName"] = json!(class_name);
    }
    spec["priority"] = json!(priority);
    if let Some(p) = policy {
        spec["preemptionPolicy"] = json!(p);
    }
    Ok(())
}

/// Creates the built-in PriorityClasses that are missing, as
/// kube-apiserver's `scheduling/bootstrap-system-priority-classes` does.
///
/// # Errors
/// The first failed write other than AlreadyExists.
pub async fn ensure_system_priority_classes(store: &ObjectStore) -> Result<()> {
    let Some(info) = store
        .table()
        .lookup("scheduling.k8s.io", "v1", "priorityclasses")
    else {
        return Ok(());
    };
    for (name, value, description) in SYSTEM_PRIORITY_CLASSES {
        let body = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name}, "value": value, "description": description});
        match store
            .create(&info, None, body, &WriteOptions::default())
            .await
        {
            Ok(_) | Err(Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
