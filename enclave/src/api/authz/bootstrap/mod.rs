//! The default RBAC policy, created at first start and reconciled at every
//! start (upstream's `rbac/bootstrap-roles` post-start hook with
//! `reconciliation.ReconcileRoleOptions{Confirm: true, RemoveExtraPermissions:
//! false}`): a missing object is created; an object annotated
//! `rbac.authorization.kubernetes.io/autoupdate: "false"` is left alone;
//! otherwise the permissions, aggregation selectors, labels, annotations and
//! subjects it lacks are added, and nothing a user added is removed. A
//! binding whose `roleRef` differs is deleted and created again (a roleRef is
//! immutable).

mod controllers;
mod roles;

use serde_json::{Map, Value, json};

use self::roles::{BindingSpec, RoleSpec, Who};
use super::rbac::rules::covers;
use super::rbac::{GROUP, PolicyRule};
use crate::registry::generic::{DeleteOptions, WriteOptions};
use crate::registry::{Error, ObjectStore, Result};

/// The annotation that lets users keep their changes to a default object.
pub const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

/// The label every default object carries.
const BOOTSTRAPPING: (&str, &str) = ("kubernetes.io/bootstrapping", "rbac-defaults");

/// The field manager of the reconciler's writes.
const MANAGER: &str = "kube-apiserver";

/// Tries of one object's update before giving up (conflicts with users).
const RETRIES: usize = 5;

fn meta(name: &str, namespace: &str, labels: &[(&str, &str)]) -> Value {
    let mut l = Map::new();
    l.insert(BOOTSTRAPPING.0.into(), json!(BOOTSTRAPPING.1));
    for (k, v) in labels {
        l.insert((*k).into(), json!(v));
    }
    let mut m = json!({
        "name": name,
        "labels": l,
        "annotations": {AUTOUPDATE: "true"},
    });
    if !namespace.is_empty() {
        m["namespace"] = json!(namespace);
    }
    m
}

fn role_object(r: &RoleSpec) -> Value {
    let kind = if r.namespace.is_empty() {
        "ClusterRole"
    } else {
        "Role"
    };
    let mut o = json!({
        "apiVersion": format!("{GROUP}/v1"),
        "kind": kind,
        "metadata": meta(r.name, r.namespace, &r.labels),
        "rules": r.rules.iter().map(PolicyRule::to_json).collect::<Vec<_>>(),
    });
    if !r.aggregate_from.is_empty() {
        o["aggregationRule"] = json!({
            "clusterRoleSelectors": r.aggregate_from.iter()
                .map(|l| json!({"matchLabels": {*l: "true"}}))
                .collect::<Vec<_>>(),
        });
    }
    o
}

fn subject(w: &Who) -> Value {
    match w {
        Who::User(n) => json!({"apiGroup": GROUP, "kind": "User", "name": n}),
        Who::Group(n) => json!({"apiGroup": GROUP, "kind": "Group", "name": n}),
        Who::ServiceAccount(ns, n) => json!({"kind": "ServiceAccount", "name": n, "namespace": ns}),
    }
}

fn binding_object(b: &BindingSpec) -> Value {
    let kind = if b.namespace.is_empty() {
        "ClusterRoleBinding"
    } else {
        "RoleBinding"
    };
    let mut o = json!({
        "apiVersion": format!("{GROUP}/v1"),
        "kind": kind,
        "metadata": meta(&b.name, b.namespace, &[]),
        "roleRef": {"apiGroup": GROUP, "kind": b.role_kind, "name": b.role},
    });
    if !b.subjects.is_empty() {
        o["subjects"] = Value::Array(b.subjects.iter().map(subject).collect());
    }
    o
}

/// Every default object, in creation order: cluster roles, controller roles,
/// namespaced roles, then the bindings.
pub fn default_objects() -> Vec<(&'static str, Value)> {
    let mut out = Vec::new();
    for r in roles::cluster_roles()
        .iter()
        .chain(controllers::controller_roles().iter())
    {
        out.push(("clusterroles", role_object(r)));
    }
    for r in roles::namespace_roles() {
        out.push(("roles", role_object(&r)));
    }
    for b in roles::cluster_role_bindings()
        .iter()
        .chain(controllers::controller_role_bindings().iter())
    {
        out.push(("clusterrolebindings", binding_object(b)));
    }
    for b in roles::namespace_role_bindings() {
        out.push(("rolebindings", binding_object(&b)));
    }
    out
}

/// Adds what `expected`'s map at `field` has and `existing`'s lacks.
fn merge_map(existing: &mut Value, expected: &Value, field: &str) -> bool {
    let Some(want) = expected
        .pointer(&format!("/metadata/{field}"))
        .and_then(Value::as_object)
    else {
        return false;
    };
    let Some(m) = existing.get_mut("metadata").and_then(Value::as_object_mut) else {
        return false;
    };
    let have = m.entry(field).or_insert_with(|| json!({}));
    if !have.is_object() {
        *have = json!({});
    }
    let mut changed = false;
    if let Some(have) = have.as_object_mut() {
        for (k, v) in want {
            if !have.contains_key(k) {
                have.insert(k.clone(), v.clone());
                changed = true;
            }
        }
    }
    changed
}

/// Upstream's `computeReconciledRole` in its union mode: the reconciled
/// object, or `None` when nothing is missing.
pub fn reconcile_role(existing: &Value, expected: &Value) -> Option<Value> {
    let mut out = existing.clone();
    let mut changed = merge_map(&mut out, expected, "labels");
    changed |= merge_map(&mut out, expected, "annotations");
    let have = PolicyRule::all_from_json(existing.get("rules"));
    let want = PolicyRule::all_from_json(expected.get("rules"));
    let (_, missing) = covers(&have, &want);
    if !missing.is_empty() {
        let mut rules: Vec<Value> = existing
            .get("rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        rules.extend(missing.iter().map(PolicyRule::to_json));
        out["rules"] = Value::Array(rules);
        changed = true;
    }
    if let Some(want_sel) = expected
        .pointer("/aggregationRule/clusterRoleSelectors")
        .and_then(Value::as_array)
    {
        let mut sels: Vec<Value> = existing
            .pointer("/aggregationRule/clusterRoleSelectors")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for s in want_sel {
            if !sels.contains(s) {
                sels.push(s.clone());
                changed = true;
            }
        }
        out["aggregationRule"] = json!({"clusterRoleSelectors": sels});
    }
    changed.then_some(out)
}

/// What reconciling a binding needs.
#[derive(Debug, PartialEq)]
pub enum BindingChange {
    /// Nothing is missing.
    None,
    /// Subjects, labels or annotations were added.
    Update(Value),
    /// The roleRef differs: delete and create `expected` (with the
    /// existing subjects kept).
    Recreate(Value),
}

/// Upstream's `computeReconciledRoleBinding` in its union mode.
pub fn reconcile_binding(existing: &Value, expected: &Value) -> BindingChange {
    let mut out = existing.clone();
    let mut changed = merge_map(&mut out, expected, "labels");
    changed |= merge_map(&mut out, expected, "annotations");
    let mut subjects: Vec<Value> = existing
        .get("subjects")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let same = |a: &Value, b: &Value| {
        ["kind", "name", "namespace"].iter().all(|k| {
            a.get(*k).and_then(Value::as_str).unwrap_or("")
                == b.get(*k).and_then(Value::as_str).unwrap_or("")
        })
    };
    for s in expected
        .get("subjects")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        if !subjects.iter().any(|x| same(x, s)) {
            subjects.push(s.clone());
            changed = true;
        }
    }
    if !subjects.is_empty() {
        out["subjects"] = Value::Array(subjects);
    }
    if existing.get("roleRef") != expected.get("roleRef") {
        out["roleRef"] = expected["roleRef"].clone();
        if let Some(m) = out.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in [
                "uid",
                "resourceVersion",
                "creationTimestamp",
                "managedFields",
            ] {
                m.remove(f);
            }
        }
        return BindingChange::Recreate(out);
    }
    if changed {
        BindingChange::Update(out)
    } else {
        BindingChange::None
    }
}

fn opts() -> WriteOptions {
    WriteOptions {
        manager: Some(MANAGER.into()),
        ..Default::default()
    }
}

/// Creates or reconciles every default object.
///
/// # Errors
/// A store failure, or a default object the registry refuses.
pub async fn ensure(objects: &ObjectStore) -> Result<()> {
    let table = objects.table();
    let mut created = 0;
    let mut updated = 0;
    for (resource, expected) in default_objects() {
        let info = table
            .lookup(GROUP, "v1", resource)
            .ok_or_else(|| Error::BadRequest(format!("{resource} are not served")))?;
        let ns = expected
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        let name = expected["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        for attempt in 0..RETRIES {
            let existing = match objects.get(&info, ns.as_deref(), &name).await {
                Ok(o) => o,
                Err(Error::NotFound { .. }) => {
                    match objects
                        .create(&info, ns.as_deref(), expected.clone(), &opts())
                        .await
                    {
                        Ok(_) => created += 1,
                        Err(Error::AlreadyExists { .. }) if attempt + 1 < RETRIES => continue,
                        Err(e) => return Err(e),
                    }
                    break;
                }
                Err(e) => return Err(e),
            };
            if existing.pointer(&format!(
                "/metadata/annotations/{}",
                AUTOUPDATE.replace('/', "~1")
            )) == Some(&json!("false"))
            {
                break;
            }
            let change = if resource.ends_with("bindings") {
                reconcile_binding(&existing, &expected)
            } else {
                reconcile_role(&existing, &expected)
                    .map_or(BindingChange::None, BindingChange::Update)
            };
            let result = match change {
                BindingChange::None => break,
                BindingChange::Update(o) => objects
                    .update(&info, ns.as_deref(), &name, o, &opts())
                    .await
                    .map(drop),
                BindingChange::Recreate(o) => {
                    let del = DeleteOptions {
                        uid: existing
                            .pointer("/metadata/uid")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        ..Default::default()
                    };
                    match objects.delete(&info, ns.as_deref(), &name, &del).await {
                        Ok(_) | Err(Error::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                    objects
                        .create(&info, ns.as_deref(), o, &opts())
                        .await
                        .map(drop)
                }
            };
            match result {
                Ok(()) => {
                    updated += 1;
                    break;
                }
                Err(
                    Error::Conflict { .. } | Error::AlreadyExists { .. } | Error::NotFound { .. },
                ) if attempt + 1 < RETRIES => {}
                Err(e) => return Err(e),
            }
        }
    }
    tracing::info!(created, updated, "default RBAC policy reconciled");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_complete_and_unique() {
        let objs = default_objects();
        let mut seen = std::collections::HashSet::new();
        for (r, o) in &objs {
            let key = format!(
                "{r}/{}/{}",
                o["metadata"]["namespace"], o["metadata"]["name"]
            );
            assert!(seen.insert(key.clone()), "duplicate {key}");
        }
        let names: Vec<&str> = objs
            .iter()
            .filter(|(r, _)| *r == "clusterroles")
            .filter_map(|(_, o)| o["metadata"]["name"].as_str())
            .collect();
        for want in [
            "cluster-admin",
            "admin",
            "edit",
            "view",
            "system:basic-user",
            "system:discovery",
            "system:public-info-viewer",
            "system:node",
            "system:kube-scheduler",
            "system:kube-controller-manager",
            "system:controller:clusterrole-aggregation-controller",
        ] {
            assert!(names.contains(&want), "{want} missing");
        }
        // Every binding names a default role.
        for (r, o) in &objs {
            if r.ends_with("bindings") {
                let role = o["roleRef"]["name"].as_str().unwrap_or("");
                assert!(
                    objs.iter()
                        .any(|(k, x)| k.ends_with("roles") && x["metadata"]["name"] == role),
                    "{role}"
                );
            }
        }
    }

    #[test]
    fn reconciling_adds_and_never_removes() {
        let expected = json!({"metadata": {"name": "r", "labels": {"a": "1"}, "annotations": {AUTOUPDATE: "true"}},
            "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]});
        let existing = json!({"metadata": {"name": "r", "labels": {"mine": "x"}},
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}, {"verbs": ["*"], "apiGroups": ["x"], "resources": ["y"]}]});
        let out = reconcile_role(&existing, &expected).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"a": "1", "mine": "x"}));
        assert_eq!(out["rules"].as_array().unwrap().len(), 3);
        assert_eq!(
            out["rules"][2],
            json!({"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]})
        );
        assert!(reconcile_role(&out, &expected).is_none());

        let expected_b = json!({"metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "r"},
            "subjects": [{"kind": "Group", "name": "g"}]});
        let existing_b = json!({"metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "r"},
            "subjects": [{"kind": "User", "name": "u"}]});
        let BindingChange::Update(b) = reconcile_binding(&existing_b, &expected_b) else {
            panic!("expected an update");
        };
        assert_eq!(b["subjects"].as_array().unwrap().len(), 2);
        assert_eq!(reconcile_binding(&b, &expected_b), BindingChange::None);
        let moved = json!({"metadata": {"name": "b", "uid": "1"}, "roleRef": {"kind": "ClusterRole", "name": "other"}});
        assert!(matches!(
            reconcile_binding(&moved, &expected_b),
            BindingChange::Recreate(_)
        ));
    }
}
