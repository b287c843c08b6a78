//! Upstream's `ValidatingAdmissionPolicy` plugin: in the validating phase, every
//! ValidatingAdmissionPolicyBinding whose policy and own `matchResources` cover the request
//! evaluates the policy's CEL (`crate::registry::cel`) with `object`, `oldObject`, `request`,
//! `params`, `namespaceObject` and `variables`, once per parameter object the binding selects;
//! failed validations act as the binding's `validationActions` say (Deny, Warn, Audit).
//! Expressions that cannot be evaluated, and bindings that cannot be configured (a missing
//! parameter), deny or are skipped by the policy's `failurePolicy`, as upstream.
//!
//! Policies and bindings are read from the store at each request (from its resident copy);
//! a policy's compiled expressions are kept per resourceVersion.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::matching::{self, Attributes};
use super::{Operation, Outcome, Plugin, Request, annotate};
use crate::registry::cel::{Bindings, CompiledPolicy, from_json, map};
use crate::registry::kinds::{s as text, selector_matches};
use crate::registry::{Error, ListOptions, ObjectStore, ResourceInfo, Result, meta};
/// The audit annotation of a failed validation under the `Audit` action.
const VALIDATION_FAILURE: &str = "validation.policy.admission.k8s.io/validation_failure";

/// The ValidatingAdmissionPolicy admission plugin.
#[derive(Debug, Default)]
pub struct ValidatingAdmissionPolicies {
    /// Compiled policies by name, with the resourceVersion they were compiled at.
    compiled: Mutex<HashMap<String, (String, Arc<CompiledPolicy>)>>,
}

impl ValidatingAdmissionPolicies {
    /// The plugin, with nothing compiled yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn compiled(&self, policy: &Value) -> std::result::Result<Arc<CompiledPolicy>, String> {
        let name = text(policy, "/metadata/name");
        let version = text(policy, "/metadata/resourceVersion");
        let mut cache = self.compiled.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((v, c)) = cache.get(name)
            && v == version
        {
            return Ok(c.clone());
        }
        let spec = policy.get("spec").unwrap_or(&Value::Null);
        let compiled = Arc::new(CompiledPolicy::compile(spec).map_err(|errors| {
            errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.error))
                .collect::<Vec<_>>()
                .join("; ")
        })?);
        cache.insert(name.to_owned(), (version.to_owned(), compiled.clone()));
        Ok(compiled)
    }
}

/// Whether a policy's `matchConstraints` or a binding's `matchResources` cover the request
/// (upstream's `matching.Matcher`): selectors, then exclusions, then rules (none: all).
fn covers(
    m: &Value,
    a: &Attributes<'_>,
    new: Option<&Value>,
    old: Option<&Value>,
    namespace: Option<&Value>,
) -> bool {
    let named_rules_match = |field: &str| {
        m.get(field).and_then(Value::as_array).is_some_and(|rules| {
            rules
                .iter()
                .any(|r| matching::rule_matches(r, a) && matching::resource_name_matches(r, a))
        })
    };
    let no_rules = m
        .get("resourceRules")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    matching::namespace_selected(
        m.get("namespaceSelector"),
        a,
        matching::labels_of(namespace),
    ) && matching::object_selected(m.get("objectSelector"), new, old)
        && !named_rules_match("excludeResourceRules")
        && (no_rules || named_rules_match("resourceRules"))
}

/// The resource a policy's `paramKind` names.
fn param_resource(objects: &ObjectStore, kind: &Value) -> Option<Arc<ResourceInfo>> {
    let api_version = text(kind, "/apiVersion");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let kind = text(kind, "/kind");
    objects
        .table()
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind && r.is_stored())
        .cloned()
}

/// The parameter objects a binding selects for this request: `[Null]` for a policy without
/// `paramKind`, none when `parameterNotFoundAction: Allow` finds none; an error (a
/// configuration error, under the policy's `failurePolicy`) otherwise.
async fn params(
    objects: &ObjectStore,
    policy: &Value,
    binding: &Value,
    req: &Request<'_>,
) -> std::result::Result<Vec<Value>, String> {
    let Some(kind) = policy.pointer("/spec/paramKind").filter(|k| !k.is_null()) else {
        return Ok(vec![Value::Null]);
    };
    let Some(param_ref) = binding.pointer("/spec/paramRef").filter(|r| !r.is_null()) else {
        return Err("paramRef is required when the policy has a paramKind".into());
    };
    let Some(info) = param_resource(objects, kind) else {
        return Err(format!(
            "failed to find resource referenced by paramKind: '{}, Kind={}'",
            text(kind, "/apiVersion"),
            text(kind, "/kind")
        ));
    };
    let namespace = match (info.namespaced(), text(param_ref, "/namespace")) {
        (false, _) => None,
        (true, "") => match req.namespace.filter(|n| !n.is_empty()) {
            Some(ns) => Some(ns),
            None => {
                return Err(
                    "cannot use a namespaced paramRef without a namespace for a cluster-scoped resource"
                        .into(),
                );
            }
        },
        (true, ns) => Some(ns),
    };
    let found = match text(param_ref, "/name") {
        "" => {
            let selector = param_ref.get("selector").unwrap_or(&Value::Null);
            let page = objects
                .list(&info, namespace, &ListOptions::default())
                .await
                .map_err(|e| e.message())?;
            page.items
                .into_iter()
                .filter(|p| {
                    selector_matches(
                        selector,
                        p.pointer("/metadata/labels").and_then(Value::as_object),
                    )
                })
                .collect()
        }
        name => match objects.get(&info, namespace, name).await {
            Ok(p) => vec![p],
            Err(Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(e.message()),
        },
    };
    if found.is_empty() && text(param_ref, "/parameterNotFoundAction") == "Deny" {
        return Err(
            "no params found for policy binding with `Deny` parameterNotFoundAction".into(),
        );
    }
    Ok(found)
}

/// One failed validation (or, under `failurePolicy: Fail`, one evaluation error).
#[derive(Debug, Clone, PartialEq)]
struct Failure {
    message: String,
    reason: String,
    index: usize,
}

/// Evaluates `policy` with `bindings`: `None` when a match condition excludes the request,
/// else the failures. Evaluation errors count as failures unless `ignore_errors`.
fn evaluate(
    policy_name: &str,
    policy: &CompiledPolicy,
    bindings: &Bindings,
    ignore_errors: bool,
) -> Option<Vec<Failure>> {
    let mut ctx = bindings.context();
    let mut failures = Vec::new();
    let error = |failures: &mut Vec<Failure>, index: usize, message: String| {
        if !ignore_errors {
            failures.push(Failure {
                message,
                reason: String::new(),
                index,
            });
        }
    };
    for (name, condition) in &policy.match_conditions {
        match condition.eval_bool(&ctx) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                if ignore_errors {
                    return None;
                }
                error(
                    &mut failures,
                    0,
                    format!("failed to evaluate match condition '{name}': {e}"),
                );
                return Some(failures);
            }
        }
    }
    // Each variable sees the ones before it; one that fails is an error only for the
    // expressions that read it.
    let mut variables = Vec::new();
    let mut failed_variables = Vec::new();
    for (name, expression) in &policy.variables {
        ctx.add_variable_from_value("variables", map(variables.clone()));
        match expression.eval(&ctx) {
            Ok(v) => variables.push((name.clone(), v)),
            Err(e) => failed_variables.push((name.clone(), e)),
        }
    }
    ctx.add_variable_from_value("variables", map(variables));
    for (index, v) in policy.validations.iter().enumerate() {
        let failed_variable = failed_variables
            .iter()
            .find(|(name, _)| v.expression.reads_variable(name));
        let result = match failed_variable {
            Some((_, e)) => Err(e.clone()),
            None => v.expression.eval_bool(&ctx),
        };
        match result {
            Ok(true) => {}
            Ok(false) => {
                let from_expression = v
                    .message_expression
                    .as_ref()
                    .and_then(|m| m.eval_string(&ctx).ok())
                    .filter(|m| !m.trim().is_empty());
                let message = from_expression.unwrap_or_else(|| match v.message.as_str() {
                    "" => format!("failed expression: {}", v.expression.source().trim()),
                    m => m.to_owned(),
                });
                failures.push(Failure {
                    message,
                    reason: v.reason.clone(),
                    index,
                });
            }
            Err(e) => error(&mut failures, index, e),
        }
    }
    for (key, expression) in &policy.audit_annotations {
        match expression.eval_string(&ctx) {
            Ok(value) if !value.is_empty() => annotate(&format!("{policy_name}/{key}"), value),
            Ok(_) => {}
            Err(e) => error(&mut failures, 0, e),
        }
    }
    Some(failures)
}

/// What the bindings' actions made of the failures.
#[derive(Debug, Default)]
struct Verdict {
    /// The first `Deny`: (cause, reason).
    denied: Option<(String, String)>,
}

impl Verdict {
    fn deny(&mut self, cause: String, reason: &str) {
        if self.denied.is_none() {
            self.denied = Some((cause, reason.to_owned()));
        }
    }
}

/// Applies `binding`'s `validationActions` to the failures of one evaluation.
fn act(
    policy_name: &str,
    binding: &Value,
    failures: Vec<Failure>,
    verdict: &mut Verdict,
    out: &mut Outcome,
) {
    let binding_name = text(binding, "/metadata/name");
    let actions = meta::string_list(binding.pointer("/spec/validationActions"));
    for f in failures {
        for action in &actions {
            match action.as_str() {
                "Deny" => verdict.deny(
                    format!(
                        "ValidatingAdmissionPolicy '{policy_name}' with binding '{binding_name}' denied request: {}",
                        f.message
                    ),
                    &f.reason,
                ),
                "Warn" => out.warnings.push(format!(
                    "Validation failed for ValidatingAdmissionPolicy '{policy_name}' with binding '{binding_name}': {}",
                    f.message
                )),
                "Audit" => annotate(
                    VALIDATION_FAILURE,
                    json!([{
                        "message": f.message,
                        "policy": policy_name,
                        "binding": binding_name,
                        "expressionIndex": f.index,
                        "validationActions": actions,
                    }])
                    .to_string(),
                ),
                _ => {}
            }
        }
    }
}

impl ValidatingAdmissionPolicies {
    async fn run(
        &self,
        objects: &ObjectStore,
        req: &Request<'_>,
        obj: &Value,
        out: &mut Outcome,
    ) -> Result<()> {
        let attrs = Attributes::of(req);
        if matching::exempt(&attrs) {
            return Ok(());
        }
        let bindings =
            matching::configurations(objects, "validatingadmissionpolicybindings").await?;
        if bindings.is_empty() {
            return Ok(());
        }
        let policies = matching::configurations(objects, "validatingadmissionpolicies").await?;
        let new = (req.operation != Operation::Delete).then_some(obj);
        let namespace = matching::namespace_object(objects, req, obj).await?;
        // The request's variables, converted to CEL once (lazily, at the first binding that
        // applies) and shared by every evaluation.
        let mut request_bindings: Option<Bindings> = None;
        let mut verdict = Verdict::default();
        for policy in &policies {
            let policy_name = text(policy, "/metadata/name");
            let constraints = policy
                .pointer("/spec/matchConstraints")
                .unwrap_or(&Value::Null);
            if !covers(constraints, &attrs, new, req.old, namespace.as_ref()) {
                continue;
            }
            let ignore_errors = text(policy, "/spec/failurePolicy") == "Ignore";
            for binding in bindings
                .iter()
                .filter(|b| text(b, "/spec/policyName") == policy_name)
            {
                let own = binding
                    .pointer("/spec/matchResources")
                    .filter(|m| !m.is_null());
                if own.is_some_and(|m| !covers(m, &attrs, new, req.old, namespace.as_ref())) {
                    continue;
                }
                let binding_name = text(binding, "/metadata/name");
                let configured = match self.compiled(policy) {
                    Ok(compiled) => params(objects, policy, binding, req)
                        .await
                        .map(|p| (compiled, p)),
                    Err(e) => Err(e),
                };
                let (compiled, params) = match configured {
                    Ok(c) => c,
                    Err(_) if ignore_errors => continue,
                    Err(e) => {
                        verdict.deny(
                            format!(
                                "ValidatingAdmissionPolicy '{policy_name}' with binding '{binding_name}' denied request: failed to configure binding: {e}"
                            ),
                            "",
                        );
                        continue;
                    }
                };
                let base = request_bindings
                    .get_or_insert_with(|| self::bindings(req, obj, namespace.as_ref()));
                for param in params {
                    let mut bindings = base.clone();
                    bindings.set("params", from_json(&param));
                    if let Some(failures) =
                        evaluate(policy_name, &compiled, &bindings, ignore_errors)
                    {
                        act(policy_name, binding, failures, &mut verdict, out);
                    }
                }
            }
        }
        match verdict.denied {
            Some((cause, reason)) => Err(Error::policy_denied(
                &req.info.group,
                &req.info.resource,
                req.request_name,
                cause,
                &reason,
            )),
            None => Ok(()),
        }
    }
}

/// The variables of the request (upstream's `ValidatingAdmissionPolicy` environment), all
/// but `params` and `variables`, which each evaluation adds.
fn bindings(req: &Request<'_>, obj: &Value, namespace: Option<&Value>) -> Bindings {
    let mut b = Bindings::new();
    let (object, old) = match req.operation {
        Operation::Create => (Some(obj), None),
        Operation::Update => (Some(obj), req.old),
        Operation::Delete => (None, req.old),
    };
    b.set_json("object", object.unwrap_or(&Value::Null));
    b.set_json("oldObject", old.unwrap_or(&Value::Null));
    b.set_json("request", &super::webhook::request_attributes(req));
    b.set_json("namespaceObject", namespace.unwrap_or(&Value::Null));
    b
}

impl Plugin for ValidatingAdmissionPolicies {
    fn validate<'a>(
        &'a self,
        objects: &'a ObjectStore,
        req: &'a Request<'a>,
        obj: &'a Value,
        out: &'a mut Outcome,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.run(objects, req, obj, out))
    }
}
