//! Typed ownerReferences and label selectors: upstream's
//! `NewControllerRef`, `GetControllerOf`, `LabelSelectorAsSelector` and
//! the `ControllerRefManager` claim (adopt matching orphans, release owned
//! objects that stopped matching), with the finalizers a Job's pods carry.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};

use super::{Object, Typed, is_deleting, name, namespace, uid};
use crate::controllers::Error;
use crate::controllers::runtime::ObjectKey;
use crate::registry::WatchEvent;

/// The ownerReference with `controller: true`, if any.
pub(crate) fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_deref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Whether `meta`'s controller is the object with `owner_uid`.
pub(crate) fn is_controlled_by(meta: &ObjectMeta, owner_uid: &str) -> bool {
    controller_of(meta).is_some_and(|r| r.uid == owner_uid)
}

/// upstream's `NewControllerRef`: `controller` and `blockOwnerDeletion` set.
pub(crate) fn controller_ref<K: Object>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::API_VERSION.to_string(),
        kind: K::KIND.to_string(),
        name: name(owner).to_string(),
        uid: uid(owner).to_string(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether `selector` selects `labels`. An empty selector selects nothing,
/// as the controllers treat it (their validation refuses one anyway).
pub(crate) fn selects(selector: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let exprs = selector.match_expressions.as_deref().unwrap_or_default();
    let pairs = selector.match_labels.as_ref();
    if exprs.is_empty() && pairs.is_none_or(BTreeMap::is_empty) {
        return false;
    }
    let get = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    let by_labels = pairs.is_none_or(|m| m.iter().all(|(k, v)| get(k) == Some(v.as_str())));
    let by_exprs = exprs.iter().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let has = |v: &str| values.iter().any(|x| x == v);
        match (e.operator.as_str(), get(&e.key)) {
            ("In", Some(v)) => has(v),
            ("NotIn", Some(v)) => !has(v),
            ("NotIn", None) => true,
            ("Exists", v) => v.is_some(),
            ("DoesNotExist", v) => v.is_none(),
            _ => false,
        }
    });
    by_labels && by_exprs
}

/// How a claim adopts and releases.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ClaimOptions<'a> {
    /// Finalizers an adoption adds and a release removes (a Job's pods
    /// carry `batch.kubernetes.io/job-tracking`).
    pub(crate) finalizers: &'a [&'a str],
}

/// upstream's `ClaimObject` over `candidates`: the objects `owner`
/// controls once owned ones that stopped matching are released (unless
/// the owner is being deleted) and matching orphans adopted. `matches` is
/// the selector and whatever else the controller requires (e.g. a
/// StatefulSet's pods' names). Objects gone meanwhile are skipped.
///
/// # Errors
/// The first failed adopt or release other than NotFound.
pub(crate) async fn claim<O: Object, C: Object>(
    api: &Typed<C>,
    owner: &O,
    matches: impl Fn(&C) -> bool,
    candidates: Vec<C>,
    options: ClaimOptions<'_>,
) -> Result<Vec<C>, Error> {
    let owner_uid = uid(owner).to_string();
    let owner_deleting = is_deleting(owner);
    let mut claimed = Vec::new();
    for child in candidates {
        let ns = namespace(&child).to_string();
        let child_name = name(&child).to_string();
        let child_uid = uid(&child).to_string();
        let matched = matches(&child);
        match controller_of(child.metadata()) {
            Some(r) if r.uid != owner_uid => {}
            Some(_) if matched => claimed.push(child),
            Some(_) if owner_deleting => {}
            Some(_) => {
                tracing::debug!(owner = name(owner), child = %child_name, "releasing");
                let release = |cur: &mut C| {
                    let m = cur.metadata_mut();
                    let Some(refs) = m.owner_references.as_mut() else {
                        return false;
                    };
                    let before = refs.len();
                    refs.retain(|r| r.uid != owner_uid);
                    if refs.len() == before {
                        return false;
                    }
                    if let Some(f) = m.finalizers.as_mut() {
                        f.retain(|f| !options.finalizers.contains(&f.as_str()));
                    }
                    true
                };
                match api.edit(&ns, &child_name, release).await {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
            None if owner_deleting || !matched || is_deleting(&child) => {}
            None if namespace(owner) != ns => {}
            None => {
                tracing::debug!(owner = name(owner), child = %child_name, "adopting");
                let reference = controller_ref(owner);
                let adopt = |cur: &mut C| {
                    // Only the object we decided on, and only while it is
                    // still an orphan.
                    if uid(cur) != child_uid || controller_of(cur.metadata()).is_some() {
                        return false;
                    }
                    let m = cur.metadata_mut();
                    m.owner_references
                        .get_or_insert_with(Vec::new)
                        .push(reference.clone());
                    let finalizers = m.finalizers.get_or_insert_with(Vec::new);
                    for f in options.finalizers {
                        if !finalizers.iter().any(|x| x == f) {
                            finalizers.push((*f).to_string());
                        }
                    }
                    true
                };
                match api.edit(&ns, &child_name, adopt).await {
                    Ok(obj) if is_controlled_by(obj.metadata(), &owner_uid) => claimed.push(obj),
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(claimed)
}

/// The object an event is about, and whether the event is its deletion.
pub(crate) fn event_object(event: &WatchEvent) -> Option<(&serde_json::Value, bool)> {
    match event {
        WatchEvent::Added(o) | WatchEvent::Modified(o) => Some((o, false)),
        WatchEvent::Deleted(o) => Some((o, true)),
        _ => None,
    }
}

/// The metadata fields of a watched object that [`owners_of`] and the controllers' event
/// mapping read (name, namespace, uid, labels, owner references, deletion timestamp,
/// finalizers), from its JSON without decoding or copying the rest: managedFields and
/// annotations are most of a pod's metadata, and every pod event reaches several controllers.
pub(crate) fn metadata_of(obj: &serde_json::Value) -> Option<ObjectMeta> {
    use serde::Deserialize as _;
    let m = obj.get("metadata")?.as_object()?;
    let text = |k: &str| {
        m.get(k)
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
    };
    let field = |k: &str| m.get(k).filter(|v| !v.is_null());
    Some(ObjectMeta {
        name: text("name"),
        namespace: text("namespace"),
        uid: text("uid"),
        labels: match field("labels") {
            Some(v) => Some(BTreeMap::deserialize(v).ok()?),
            None => None,
        },
        owner_references: match field("ownerReferences") {
            Some(v) => Some(Vec::<OwnerReference>::deserialize(v).ok()?),
            None => None,
        },
        deletion_timestamp: match field("deletionTimestamp") {
            Some(v) => Some(Time::deserialize(v).ok()?),
            None => None,
        },
        finalizers: match field("finalizers") {
            Some(v) => Some(Vec::<String>::deserialize(v).ok()?),
            None => None,
        },
        ..ObjectMeta::default()
    })
}

/// The keys of the `owner_kind` objects a change to the dependent with metadata `meta`
/// concerns (upstream's `resolveControllerRef` and `getXForY`): its controller if that is
/// of `owner_kind`; for a live orphan, every owner in `owners` whose selector
/// (`selector_of`) selects it; else none.
pub(crate) async fn owners_of<O: Object>(
    owners: &Typed<O>,
    owner_kind: &str,
    meta: &ObjectMeta,
    deleted: bool,
    selector_of: impl Fn(&O) -> Option<&LabelSelector>,
) -> Vec<ObjectKey> {
    let ns = meta.namespace.as_deref().unwrap_or("");
    if let Some(r) = controller_of(meta) {
        if r.kind != owner_kind {
            return Vec::new();
        }
        return vec![ObjectKey {
            namespace: ns.to_string(),
            name: r.name.clone(),
        }];
    }
    if deleted || meta.deletion_timestamp.is_some() {
        return Vec::new();
    }
    match owners.list(ns).await {
        Ok(list) => list
            .iter()
            .filter(|o| selector_of(o).is_some_and(|s| selects(s, meta.labels.as_ref())))
            .map(|o| ObjectKey {
                namespace: ns.to_string(),
                name: name(o).to_string(),
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e.one_line(), owner_kind, "listing possible owners of an orphan");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn selectors_match_labels_and_expressions_and_empty_selects_nothing() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            }]),
        };
        assert!(selects(&sel, Some(&labels(&[("app", "web")]))));
        assert!(!selects(
            &sel,
            Some(&labels(&[("app", "web"), ("tier", "db")]))
        ));
        assert!(!selects(&sel, None));
        assert!(!selects(
            &LabelSelector::default(),
            Some(&labels(&[("a", "b")]))
        ));
    }
}
