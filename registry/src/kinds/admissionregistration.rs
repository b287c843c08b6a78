//! admissionregistration.k8s.io/v1 `validatingwebhookconfigurations`,
//! `mutatingwebhookconfigurations`, `validatingadmissionpolicies` and
//! `validatingadmissionpolicybindings`: upstream's defaults, the checks of its
//! `pkg/apis/admissionregistration/validation` that decide whether a configuration can run,
//! and its columns. Webhooks are called by `admission::webhook`; policies are CEL programs
//! (`registry::cel`) that `admission::policy` evaluates, and a policy whose expressions do not
//! compile is refused, naming each one.

use std::collections::BTreeSet;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    ValidatingWebhookConfiguration,
};
use serde_json::{Value, json};

use super::{
    default_at, drop_status, forbidden, format_selector, keep_status, s, typed, unsupported,
};
use crate::cel::{CompileError, CompiledPolicy};
use crate::table::{Column, age_cell, name_cell};
use crate::{FieldError, Strategy};

fn array<'a>(obj: &'a Value, ptr: &str) -> &'a [Value] {
    obj.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// Upstream's defaults of a rule list (`scope: "*"`).
fn default_rules(rules: Option<&mut Value>) {
    if let Some(Value::Array(rules)) = rules {
        for rule in rules {
            default_at(rule, "/scope", json!("*"));
        }
    }
}

/// Upstream's defaults of one webhook.
fn default_webhook(w: &mut Value, mutating: bool) {
    default_at(w, "/failurePolicy", json!("Fail"));
    default_at(w, "/matchPolicy", json!("Equivalent"));
    default_at(w, "/namespaceSelector", json!({}));
    default_at(w, "/objectSelector", json!({}));
    default_at(w, "/timeoutSeconds", json!(10));
    if mutating {
        default_at(w, "/reinvocationPolicy", json!("Never"));
    }
    if w.pointer("/clientConfig/service")
        .is_some_and(|v| v.is_object())
    {
        default_at(w, "/clientConfig/service/port", json!(443));
    }
    default_rules(w.get_mut("rules"));
}

fn default_webhooks(obj: &mut Value, mutating: bool) {
    if let Some(Value::Array(webhooks)) = obj.get_mut("webhooks") {
        for w in webhooks {
            default_webhook(w, mutating);
        }
    }
}

/// Whether `name` is a DNS subdomain of at least three labels, as a webhook's name must be.
fn qualified_webhook_name(name: &str) -> bool {
    crate::meta::is_dns_subdomain(name) && name.split('.').count() >= 3
}

fn validate_webhooks(obj: &Value, mutating: bool) -> Vec<FieldError> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, w) in array(obj, "/webhooks").iter().enumerate() {
        let path = format!("webhooks[{i}]");
        let name = s(w, "/name");
        if name.is_empty() {
            out.push(FieldError::required(format!("{path}.name"), ""));
        } else if !qualified_webhook_name(name) {
            out.push(FieldError::invalid(
                format!("{path}.name"),
                name,
                "should be a domain with at least three segments separated by dots",
            ));
        } else if !seen.insert(name) {
            out.push(FieldError::duplicate(format!("{path}.name"), name));
        }
        let url = w.pointer("/clientConfig/url").filter(|v| !v.is_null());
        let service = w.pointer("/clientConfig/service").filter(|v| !v.is_null());
        match (url, service) {
            (Some(_), Some(_)) | (None, None) => out.push(FieldError::required(
                format!("{path}.clientConfig"),
                "exactly one of url or service is required",
            )),
            (Some(u), None) => {
                let u = u.as_str().unwrap_or("");
                if !u.starts_with("https://") {
                    out.push(FieldError::invalid(
                        format!("{path}.clientConfig.url"),
                        u,
                        "'https' is the only allowed URL scheme",
                    ));
                }
            }
            (None, Some(svc)) => {
                for field in ["namespace", "name"] {
                    if s(svc, &format!("/{field}")).is_empty() {
                        out.push(FieldError::required(
                            format!("{path}.clientConfig.service.{field}"),
                            &format!("service {field} is required"),
                        ));
                    }
                }
            }
        }
        match s(w, "/sideEffects") {
            "" => out.push(FieldError::required(
                format!("{path}.sideEffects"),
                "must specify one of None, NoneOnDryRun",
            )),
            "None" | "NoneOnDryRun" => {}
            other => out.push(unsupported(
                format!("{path}.sideEffects"),
                other,
                &["None", "NoneOnDryRun"],
            )),
        }
        let versions = array(w, "/admissionReviewVersions");
        if !versions
            .iter()
            .any(|v| matches!(v.as_str(), Some("v1" | "v1beta1")))
        {
            out.push(FieldError::required(
                format!("{path}.admissionReviewVersions"),
                "must specify one of v1, v1beta1",
            ));
        }
        match s(w, "/failurePolicy") {
            "Fail" | "Ignore" => {}
            other => out.push(unsupported(
                format!("{path}.failurePolicy"),
                other,
                &["Fail", "Ignore"],
            )),
        }
        let timeout = w
            .pointer("/timeoutSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(10);
        if !(1..=30).contains(&timeout) {
            out.push(FieldError::invalid_int(
                format!("{path}.timeoutSeconds"),
                timeout,
                "the timeout value must be between 1 and 30 seconds",
            ));
        }
        if mutating {
            match s(w, "/reinvocationPolicy") {
                "Never" | "IfNeeded" => {}
                other => out.push(unsupported(
                    format!("{path}.reinvocationPolicy"),
                    other,
                    &["Never", "IfNeeded"],
                )),
            }
        }
        validate_rules(array(w, "/rules"), &format!("{path}.rules"), &mut out);
    }
    out
}

fn validate_rules(rules: &[Value], path: &str, out: &mut Vec<FieldError>) {
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("{path}[{i}]");
        for field in ["operations", "apiGroups", "apiVersions", "resources"] {
            if array(rule, &format!("/{field}")).is_empty() {
                out.push(FieldError::required(format!("{path}.{field}"), ""));
            }
        }
        for (j, op) in array(rule, "/operations").iter().enumerate() {
            let op = op.as_str().unwrap_or("");
            if !matches!(op, "*" | "CREATE" | "UPDATE" | "DELETE" | "CONNECT") {
                out.push(unsupported(
                    format!("{path}.operations[{j}]"),
                    op,
                    &["*", "CONNECT", "CREATE", "DELETE", "UPDATE"],
                ));
            }
        }
        match s(rule, "/scope") {
            "*" | "Cluster" | "Namespaced" => {}
            other => out.push(unsupported(
                format!("{path}.scope"),
                other,
                &["*", "Cluster", "Namespaced"],
            )),
        }
    }
}

fn webhook_columns() -> Vec<Column> {
    vec![
        Column::NAME,
        Column::integer("Webhooks", "The number of webhooks in the configuration"),
        Column::AGE,
    ]
}

fn webhook_cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    vec![
        name_cell(obj),
        json!(array(obj, "/webhooks").len()),
        age_cell(obj, now),
    ]
}

/// `validatingwebhookconfigurations`.
#[derive(Debug)]
pub(crate) struct ValidatingWebhookConfigurations;

impl Strategy for ValidatingWebhookConfigurations {
    typed!(ValidatingWebhookConfiguration);
    fn tracks_generation(&self) -> bool {
        true
    }
    fn generation_changed(&self, new: &Value, old: &Value) -> bool {
        new.get("webhooks") != old.get("webhooks")
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        default_webhooks(obj, false);
    }
    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        default_webhooks(new, false);
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_webhooks(obj, false)
    }
    fn columns(&self) -> Vec<Column> {
        webhook_columns()
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        webhook_cells(obj, now)
    }
}

/// `mutatingwebhookconfigurations`.
#[derive(Debug)]
pub(crate) struct MutatingWebhookConfigurations;

impl Strategy for MutatingWebhookConfigurations {
    typed!(MutatingWebhookConfiguration);
    fn tracks_generation(&self) -> bool {
        true
    }
    fn generation_changed(&self, new: &Value, old: &Value) -> bool {
        new.get("webhooks") != old.get("webhooks")
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        default_webhooks(obj, true);
    }
    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        default_webhooks(new, true);
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate_webhooks(obj, true)
    }
    fn columns(&self) -> Vec<Column> {
        webhook_columns()
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        webhook_cells(obj, now)
    }
}

/// Upstream's defaults of a policy's or binding's `matchResources` at `ptr`.
fn default_match_resources(obj: &mut Value, ptr: &str) {
    let Some(m) = obj.pointer_mut(ptr).filter(|m| m.is_object()) else {
        return;
    };
    default_at(m, "/matchPolicy", json!("Equivalent"));
    default_at(m, "/namespaceSelector", json!({}));
    default_at(m, "/objectSelector", json!({}));
    default_rules(m.get_mut("resourceRules"));
    default_rules(m.get_mut("excludeResourceRules"));
}

fn default_policy(obj: &mut Value) {
    default_at(obj, "/spec/failurePolicy", json!("Fail"));
    default_match_resources(obj, "/spec/matchConstraints");
}

/// `validatingadmissionpolicies`.
#[derive(Debug)]
pub(crate) struct ValidatingAdmissionPolicies;

impl Strategy for ValidatingAdmissionPolicies {
    typed!(ValidatingAdmissionPolicy);
    fn tracks_generation(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        drop_status(obj);
        default_policy(obj);
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
        default_policy(new);
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut out = Vec::new();
        if let Err(errors) = CompiledPolicy::compile(obj.get("spec").unwrap_or(&Value::Null)) {
            out.extend(errors.into_iter().map(|e| match e.error {
                CompileError::Authorizer => forbidden(e.field, &e.error.to_string()),
                CompileError::Syntax(_) => {
                    FieldError::invalid(e.field, &e.expression, &e.error.to_string())
                }
            }));
        }
        if let Some(kind) = obj.pointer("/spec/paramKind").filter(|k| !k.is_null()) {
            for field in ["apiVersion", "kind"] {
                if s(kind, &format!("/{field}")).is_empty() {
                    out.push(FieldError::required(format!("spec.paramKind.{field}"), ""));
                }
            }
        }
        let validations = array(obj, "/spec/validations");
        if validations.is_empty() && array(obj, "/spec/auditAnnotations").is_empty() {
            out.push(FieldError::required(
                "spec.validations",
                "validations or auditAnnotations must contain at least one item",
            ));
        }
        for (i, v) in validations.iter().enumerate() {
            if s(v, "/expression").trim().is_empty() {
                out.push(FieldError::required(
                    format!("spec.validations[{i}].expression"),
                    "expression is not specified",
                ));
            }
            match s(v, "/reason") {
                "" | "Unauthorized" | "Forbidden" | "Invalid" | "RequestEntityTooLarge" => {}
                other => out.push(unsupported(
                    format!("spec.validations[{i}].reason"),
                    other,
                    &[
                        "Forbidden",
                        "Invalid",
                        "RequestEntityTooLarge",
                        "Unauthorized",
                    ],
                )),
            }
        }
        match s(obj, "/spec/failurePolicy") {
            "Fail" | "Ignore" => {}
            other => out.push(unsupported(
                "spec.failurePolicy",
                other,
                &["Fail", "Ignore"],
            )),
        }
        match obj
            .pointer("/spec/matchConstraints")
            .filter(|m| !m.is_null())
        {
            None => out.push(FieldError::required("spec.matchConstraints", "")),
            Some(m) => {
                if array(m, "/resourceRules").is_empty() {
                    out.push(FieldError::required(
                        "spec.matchConstraints.resourceRules",
                        "",
                    ));
                }
                validate_rules(
                    array(m, "/resourceRules"),
                    "spec.matchConstraints.resourceRules",
                    &mut out,
                );
            }
        }
        out
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::integer("Validations", "The number of validations in the policy"),
            Column::text("ParamKind", "The kind of the policy's parameters"),
            Column::AGE,
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let param_kind = match obj.pointer("/spec/paramKind").filter(|p| !p.is_null()) {
            Some(p) => format!("{}/{}", s(p, "/apiVersion"), s(p, "/kind")),
            None => "<unset>".into(),
        };
        vec![
            name_cell(obj),
            json!(array(obj, "/spec/validations").len()),
            json!(param_kind),
            age_cell(obj, now),
        ]
    }
}

/// `validatingadmissionpolicybindings`.
#[derive(Debug)]
pub(crate) struct ValidatingAdmissionPolicyBindings;

impl Strategy for ValidatingAdmissionPolicyBindings {
    typed!(ValidatingAdmissionPolicyBinding);
    fn tracks_generation(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        default_match_resources(obj, "/spec/matchResources");
    }
    fn prepare_for_update(&self, new: &mut Value, _old: &Value) {
        default_match_resources(new, "/spec/matchResources");
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut out = Vec::new();
        if s(obj, "/spec/policyName").is_empty() {
            out.push(FieldError::required("spec.policyName", ""));
        }
        let actions: Vec<&str> = array(obj, "/spec/validationActions")
            .iter()
            .map(|a| a.as_str().unwrap_or(""))
            .collect();
        if actions.is_empty() {
            out.push(FieldError::required(
                "spec.validationActions",
                "at least one validation action is required",
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, a) in actions.iter().enumerate() {
            if !matches!(*a, "Deny" | "Warn" | "Audit") {
                out.push(unsupported(
                    format!("spec.validationActions[{i}]"),
                    a,
                    &["Audit", "Deny", "Warn"],
                ));
            } else if !seen.insert(*a) {
                out.push(FieldError::duplicate(
                    format!("spec.validationActions[{i}]"),
                    a,
                ));
            }
        }
        if seen.contains("Deny") && seen.contains("Warn") {
            out.push(forbidden(
                "spec.validationActions",
                "must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)",
            ));
        }
        if let Some(p) = obj.pointer("/spec/paramRef").filter(|p| !p.is_null()) {
            let (named, selected) = (
                !s(p, "/name").is_empty(),
                p.get("selector").is_some_and(|v| !v.is_null()),
            );
            if named == selected {
                out.push(FieldError::required(
                    "spec.paramRef",
                    "one of name or selector must be specified",
                ));
            }
            match s(p, "/parameterNotFoundAction") {
                "Allow" | "Deny" => {}
                "" => out.push(FieldError::required(
                    "spec.paramRef.parameterNotFoundAction",
                    "",
                )),
                other => out.push(unsupported(
                    "spec.paramRef.parameterNotFoundAction",
                    other,
                    &["Allow", "Deny"],
                )),
            }
        }
        out
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("PolicyName", "The policy the binding binds"),
            Column::text("ParamRef", "The parameters the binding passes"),
            Column::AGE,
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let param = match obj.pointer("/spec/paramRef").filter(|p| !p.is_null()) {
            None => "<unset>".to_string(),
            Some(p) if !s(p, "/name").is_empty() => match s(p, "/namespace") {
                "" => format!("*/{}", s(p, "/name")),
                ns => format!("{ns}/{}", s(p, "/name")),
            },
            Some(p) => format_selector(p.get("selector"))
                .as_str()
                .unwrap_or("<none>")
                .to_string(),
        };
        vec![
            name_cell(obj),
            json!(s(obj, "/spec/policyName")),
            json!(param),
            age_cell(obj, now),
        ]
    }
}
