//! Controller ownerReferences: building them, and upstream's
//! `ControllerRefManager` claim (adopt orphans that match the selector,
//! release owned objects that no longer match).

use serde_json::{Value, json};

use super::Error;
use super::client::{Api, is_deleting, uid};
use super::runtime::ObjectKey;
use crate::registry::kinds::selector_matches;
use crate::registry::{WatchEvent, meta};

/// The ownerReference with `controller: true`, if any.
pub(crate) fn controller_of(obj: &Value) -> Option<&Value> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
}

/// Whether `obj`'s controller is the object with `owner_uid`.
pub(crate) fn is_controlled_by(obj: &Value, owner_uid: &str) -> bool {
    controller_of(obj).is_some_and(|r| r.get("uid").and_then(Value::as_str) == Some(owner_uid))
}

/// The name of `obj`'s controller if it is of `kind`.
pub(crate) fn controller_name<'a>(obj: &'a Value, kind: &str) -> Option<&'a str> {
    let r = controller_of(obj)?;
    (r.get("kind").and_then(Value::as_str) == Some(kind))
        .then(|| r.get("name").and_then(Value::as_str))
        .flatten()
}

/// upstream's `NewControllerRef`: controller and blockOwnerDeletion set.
pub(crate) fn controller_ref(owner: &Value, api_version: &str, kind: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "name": meta::name(owner),
        "uid": uid(owner),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Whether the label selector `selector` selects `obj`. An empty or
/// missing selector selects nothing, as upstream's controllers treat it.
pub(crate) fn selects(selector: &Value, obj: &Value) -> bool {
    let empty = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.is_empty())
        && selector
            .get("matchExpressions")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
    !empty && selector_matches(selector, meta::labels(obj))
}

/// What the owner may claim, and the objects in `candidates` it ends up
/// controlling: owned ones that still match, plus matching orphans, which
/// it adopts. Owned ones that no longer match are released (unless the
/// owner is being deleted). Objects gone meanwhile are skipped.
///
/// # Errors
/// The first failed adopt or release other than NotFound.
pub(crate) async fn claim(
    api: &Api,
    owner: &Value,
    selector: &Value,
    owner_api_version: &str,
    owner_kind: &str,
    candidates: Vec<Value>,
) -> Result<Vec<Value>, Error> {
    let owner_uid = uid(owner).to_string();
    let owner_deleting = is_deleting(owner);
    let mut claimed = Vec::new();
    for child in candidates {
        let ns = meta::namespace(&child).to_string();
        let name = meta::name(&child).to_string();
        let child_uid = uid(&child).to_string();
        let matches = selects(selector, &child);
        match controller_of(&child) {
            Some(r) if r.get("uid").and_then(Value::as_str) != Some(owner_uid.as_str()) => {}
            Some(_) if matches => claimed.push(child),
            Some(_) if owner_deleting => {}
            Some(_) => {
                tracing::debug!(owner = meta::name(owner), child = %name, "releasing");
                let release = |cur: &Value| {
                    let mut next = cur.clone();
                    let refs = next
                        .pointer_mut("/metadata/ownerReferences")?
                        .as_array_mut()?;
                    let before = refs.len();
                    refs.retain(|r| {
                        r.get("uid").and_then(Value::as_str) != Some(owner_uid.as_str())
                    });
                    (refs.len() != before).then_some(next)
                };
                match api.edit(&ns, &name, release).await {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
            None if owner_deleting || !matches || is_deleting(&child) => {}
            None => {
                tracing::debug!(owner = meta::name(owner), child = %name, "adopting");
                let reference = controller_ref(owner, owner_api_version, owner_kind);
                let adopt = |cur: &Value| {
                    // Only the object we decided on, and only while it is
                    // still an orphan.
                    if uid(cur) != child_uid || controller_of(cur).is_some() {
                        return None;
                    }
                    let mut next = cur.clone();
                    let m = meta::metadata_mut(&mut next)?;
                    let refs = m.entry("ownerReferences").or_insert_with(|| json!([]));
                    refs.as_array_mut()?.push(reference.clone());
                    Some(next)
                };
                match api.edit(&ns, &name, adopt).await {
                    Ok(obj) if is_controlled_by(&obj, &owner_uid) => claimed.push(obj),
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(claimed)
}

/// The keys an event means work for, in a controller of `owner_kind`
/// objects (in `owners`) whose watch 0 is those objects and whose other
/// watches are their dependents: the changed owner itself, or the owners a
/// dependent's change concerns ([`owners_to_notify`]).
pub(crate) async fn keys_for(
    owners: &Api,
    owner_kind: &str,
    watch: usize,
    event: &WatchEvent,
) -> Vec<ObjectKey> {
    let (obj, deleted) = match event {
        WatchEvent::Added(o) | WatchEvent::Modified(o) => (o, false),
        WatchEvent::Deleted(o) => (o, true),
        _ => return Vec::new(),
    };
    if watch == 0 {
        return vec![ObjectKey::of(obj)];
    }
    owners_to_notify(owners, owner_kind, obj, deleted).await
}

/// The `owner_kind` objects in `owners` a change to the dependent `obj`
/// concerns (upstream's `resolveControllerRef` and `getXForY`): its
/// controller; for a live orphan, every owner whose selector matches it
/// (each may adopt it); for anything else, none.
async fn owners_to_notify(
    owners: &Api,
    owner_kind: &str,
    obj: &Value,
    deleted: bool,
) -> Vec<ObjectKey> {
    let ns = meta::namespace(obj);
    if let Some(owner) = controller_name(obj, owner_kind) {
        return vec![ObjectKey {
            namespace: ns.to_string(),
            name: owner.to_string(),
        }];
    }
    if deleted || is_deleting(obj) || controller_of(obj).is_some() {
        return Vec::new();
    }
    match owners.list(ns).await {
        Ok(list) => list
            .iter()
            .filter(|o| {
                o.pointer("/spec/selector")
                    .is_some_and(|sel| selects(sel, obj))
            })
            .map(ObjectKey::of)
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, owner_kind, "listing possible owners of an orphan");
            Vec::new()
        }
    }
}
