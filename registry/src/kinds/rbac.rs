//! rbac.authorization.k8s.io/v1 `roles`, `rolebindings`, `clusterroles`
//! and `clusterrolebindings`: stored and validated like upstream; nothing
//! enforces them yet (authorization is a later issue).

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::{Value, json};

use super::{count, s, typed, unsupported};
use crate::table::{Column, age_cell, created_at_cell, name_cell};
use crate::{FieldError, NameRule, Strategy};

const GROUP: &str = "rbac.authorization.k8s.io";

/// Upstream's `ValidatePolicyRule` for every entry of `rules`.
fn validate_rules(obj: &Value, namespaced: bool) -> Vec<FieldError> {
    let mut out = Vec::new();
    let rules = obj
        .get("rules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, rule) in rules.iter().enumerate() {
        let f = |x: &str| format!("rules[{i}].{x}");
        if count(rule, "/verbs") == 0 {
            out.push(FieldError::required(
                f("verbs"),
                "verbs must contain at least one value",
            ));
        }
        if count(rule, "/nonResourceURLs") > 0 {
            let urls = rule
                .get("nonResourceURLs")
                .map(Value::to_string)
                .unwrap_or_default();
            if namespaced {
                out.push(FieldError::invalid(
                    f("nonResourceURLs"),
                    &urls,
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if count(rule, "/apiGroups") > 0
                || count(rule, "/resources") > 0
                || count(rule, "/resourceNames") > 0
            {
                out.push(FieldError::invalid(
                    f("nonResourceURLs"),
                    &urls,
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if count(rule, "/apiGroups") == 0 {
            out.push(FieldError::required(
                f("apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if count(rule, "/resources") == 0 {
            out.push(FieldError::required(
                f("resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
    out
}

/// Upstream's binding validation: `roleRef` and `subjects`.
fn validate_binding(obj: &Value, kinds: &[&str], namespaced: bool) -> Vec<FieldError> {
    let mut out = Vec::new();
    let group = s(obj, "/roleRef/apiGroup");
    if group != GROUP {
        out.push(unsupported("roleRef.apiGroup", group, &[GROUP]));
    }
    let kind = s(obj, "/roleRef/kind");
    if !kinds.contains(&kind) {
        out.push(unsupported("roleRef.kind", kind, kinds));
    }
    if s(obj, "/roleRef/name").is_empty() {
        out.push(FieldError::required("roleRef.name", ""));
    }
    let subjects = obj
        .get("subjects")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, sub) in subjects.iter().enumerate() {
        let f = |x: &str| format!("subjects[{i}].{x}");
        if s(sub, "/name").is_empty() {
            out.push(FieldError::required(f("name"), ""));
        }
        match s(sub, "/kind") {
            "ServiceAccount" => {
                if !namespaced && s(sub, "/namespace").is_empty() {
                    out.push(FieldError::required(f("namespace"), ""));
                }
            }
            "User" | "Group" => {}
            other => out.push(unsupported(
                f("kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
    out
}

fn role_ref_unchanged(new: &Value, old: &Value) -> Option<FieldError> {
    (new.get("roleRef") != old.get("roleRef")).then(|| {
        FieldError::invalid(
            "roleRef",
            &new.get("roleRef").map(Value::to_string).unwrap_or_default(),
            "cannot change roleRef",
        )
    })
}

/// The `Users`, `Groups` and `ServiceAccounts` cells of a binding.
fn subject_cells(obj: &Value) -> [Value; 3] {
    let mut users = Vec::new();
    let mut groups = Vec::new();
    let mut sas = Vec::new();
    for sub in obj
        .get("subjects")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let name = s(sub, "/name").to_string();
        match s(sub, "/kind") {
            "User" => users.push(name),
            "Group" => groups.push(name),
            "ServiceAccount" => sas.push(format!("{}/{name}", s(sub, "/namespace"))),
            _ => {}
        }
    }
    [
        json!(users.join(", ")),
        json!(groups.join(", ")),
        json!(sas.join(", ")),
    ]
}

fn binding_columns(what: &str) -> Vec<Column> {
    let (users, groups, sas) = if what == "roleBinding" {
        (
            "Users in the roleBinding",
            "Groups in the roleBinding",
            "ServiceAccounts in the roleBinding",
        )
    } else {
        (
            "Users in the clusterRoleBinding",
            "Groups in the clusterRoleBinding",
            "ServiceAccounts in the clusterRoleBinding",
        )
    };
    vec![
        Column::NAME,
        Column::text(
            "Role",
            "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error. This field is immutable.",
        ),
        Column::AGE,
        Column::text("Users", users).wide(),
        Column::text("Groups", groups).wide(),
        Column::text("ServiceAccounts", sas).wide(),
    ]
}

fn binding_cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let [users, groups, sas] = subject_cells(obj);
    vec![
        name_cell(obj),
        json!(format!(
            "{}/{}",
            s(obj, "/roleRef/kind"),
            s(obj, "/roleRef/name")
        )),
        age_cell(obj, now),
        users,
        groups,
        sas,
    ]
}

/// `roles`.
#[derive(Debug)]
pub(crate) struct Roles;

impl Strategy for Roles {
    typed!(Role);
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_rules(obj, true)
    }
    fn columns(&self) -> Vec<Column> {
        vec![Column::NAME, Column::CREATED_AT]
    }
    fn cells(&self, obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
        vec![name_cell(obj), created_at_cell(obj)]
    }
}

/// `clusterroles`.
#[derive(Debug)]
pub(crate) struct ClusterRoles;

impl Strategy for ClusterRoles {
    typed!(ClusterRole);
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_rules(obj, false)
    }
    fn columns(&self) -> Vec<Column> {
        vec![Column::NAME, Column::CREATED_AT]
    }
    fn cells(&self, obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
        vec![name_cell(obj), created_at_cell(obj)]
    }
}

/// `rolebindings`: `roleRef` is immutable.
#[derive(Debug)]
pub(crate) struct RoleBindings;

impl Strategy for RoleBindings {
    typed!(RoleBinding);
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_binding(obj, &["Role", "ClusterRole"], true)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut out = self.validate(new);
        out.extend(role_ref_unchanged(new, old));
        out
    }
    fn columns(&self) -> Vec<Column> {
        binding_columns("roleBinding")
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        binding_cells(obj, now)
    }
}

/// `clusterrolebindings`: `roleRef` is immutable and names a ClusterRole.
#[derive(Debug)]
pub(crate) struct ClusterRoleBindings;

impl Strategy for ClusterRoleBindings {
    typed!(ClusterRoleBinding);
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_binding(obj, &["ClusterRole"], false)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut out = self.validate(new);
        out.extend(role_ref_unchanged(new, old));
        out
    }
    fn columns(&self) -> Vec<Column> {
        binding_columns("clusterRoleBinding")
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        binding_cells(obj, now)
    }
}
