//! The PodSecurity admission plugin (upstream's `pod-security-admission`):
//! each namespace's `pod-security.kubernetes.io/{enforce,audit,warn}` labels
//! (and their `-version` labels) pick a Pod Security Standard level
//! (`privileged`, `baseline`, `restricted`) per mode. Pods that violate the
//! enforce level are refused; violations of the warn level come back as
//! `Warning` headers and violations of the audit level as an audit
//! annotation. Workload resources (Deployments, Jobs, ...) are checked
//! through their pod templates, for warn and audit only. Changing a
//! namespace's enforce level warns about its existing pods that violate
//! the new one. The default for every mode is `privileged` (no checks).

mod checks;

use std::collections::BTreeMap;
use std::fmt;

use futures::future::BoxFuture;
use serde_json::Value;

use super::{Operation, Outcome, Plugin, Request, annotate};
use crate::registry::{Error, FieldError, ListOptions, ObjectStore, Result};

pub use checks::{Violation, detail, evaluate};

/// The label prefix.
const PREFIX: &str = "pod-security.kubernetes.io/";

/// The audit annotation with the violations of the audit level.
pub const AUDIT_VIOLATIONS: &str = "pod-security.kubernetes.io/audit-violations";

/// The audit annotation with the enforced policy.
pub const ENFORCE_POLICY: &str = "pod-security.kubernetes.io/enforce-policy";

/// A Pod Security Standard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// No restrictions.
    Privileged,
    /// Prevents known privilege escalations.
    Baseline,
    /// Hardening best practices.
    Restricted,
}

impl Level {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// A level at a policy version (`latest` or `v1.N`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelVersion {
    /// The level.
    pub level: Level,
    /// `latest` or `v1.N`.
    pub version: String,
}

impl fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level.as_str(), self.version)
    }
}

impl Default for LevelVersion {
    fn default() -> Self {
        LevelVersion {
            level: Level::Privileged,
            version: "latest".into(),
        }
    }
}

/// The three modes of a namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespacePolicy {
    /// Refuse violating pods.
    pub enforce: LevelVersion,
    /// Annotate the audit event.
    pub audit: LevelVersion,
    /// Warn the client.
    pub warn: LevelVersion,
}

fn valid_version(v: &str) -> bool {
    v == "latest"
        || v.strip_prefix("v1.").is_some_and(|n| {
            !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
                && (n == "0" || !n.starts_with('0'))
        })
}

/// Upstream's `PolicyToEvaluate`: the policy of `labels`, and the errors of
/// invalid ones. An invalid enforce level means `restricted`.
pub fn policy_of(
    labels: Option<&serde_json::Map<String, Value>>,
) -> (NamespacePolicy, Vec<FieldError>) {
    let mut p = NamespacePolicy::default();
    let mut errors = Vec::new();
    let Some(labels) = labels else {
        return (p, errors);
    };
    let get = |k: &str| labels.get(&format!("{PREFIX}{k}")).and_then(Value::as_str);
    for (mode, slot) in [
        ("enforce", &mut p.enforce),
        ("audit", &mut p.audit),
        ("warn", &mut p.warn),
    ] {
        if let Some(l) = get(mode) {
            match Level::parse(l) {
                Some(level) => slot.level = level,
                None => {
                    errors.push(FieldError::invalid(
                        format!("metadata.labels[{PREFIX}{mode}]"),
                        l,
                        "must be one of privileged, baseline, restricted",
                    ));
                    if mode == "enforce" {
                        slot.level = Level::Restricted;
                    }
                }
            }
        }
        let vk = format!("{mode}-version");
        if let Some(v) = get(&vk) {
            if valid_version(v) {
                slot.version = v.to_string();
            } else {
                errors.push(FieldError::invalid(
                    format!("metadata.labels[{PREFIX}{vk}]"),
                    v,
                    "must be \"latest\" or \"v1.x\"",
                ));
            }
        }
    }
    (p, errors)
}

/// Where a workload keeps its pod template.
fn template_path(group: &str, resource: &str) -> Option<&'static str> {
    match (group, resource) {
        ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets")
        | ("batch", "jobs")
        | ("", "replicationcontrollers") => Some("/spec/template"),
        ("batch", "cronjobs") => Some("/spec/jobTemplate/spec/template"),
        ("", "podtemplates") => Some("/template"),
        _ => None,
    }
}

/// The PodSecurity plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct PodSecurity;

fn meta_and_spec(pod: &Value) -> (&Value, &Value) {
    (
        pod.get("metadata").unwrap_or(&Value::Null),
        pod.get("spec").unwrap_or(&Value::Null),
    )
}

async fn namespace_policy(objects: &ObjectStore, ns: &str) -> Option<NamespacePolicy> {
    let info = objects.table().lookup("", "v1", "namespaces")?;
    let nso = objects.get(&info, None, ns).await.ok()?;
    Some(policy_of(nso.pointer("/metadata/labels").and_then(Value::as_object)).0)
}

fn would_violate(lv: &LevelVersion, v: &[Violation]) -> String {
    format!(
        "would violate PodSecurity {:?}: {}",
        lv.to_string(),
        detail(v)
    )
}

impl PodSecurity {
    async fn pod(
        &self,
        objects: &ObjectStore,
        req: &Request<'_>,
        pod: &Value,
        out: &mut Outcome,
    ) -> Result<()> {
        if let (Operation::Update, Some(old)) = (req.operation, req.old)
            && old.get("spec") == pod.get("spec")
        {
            return Ok(());
        }
        let Some(policy) = namespace_policy(objects, req.namespace.unwrap_or("")).await else {
            return Ok(());
        };
        let (meta, spec) = meta_and_spec(pod);
        annotate(ENFORCE_POLICY, policy.enforce.to_string());
        let enforced = evaluate(policy.enforce.level, meta, spec);
        let audited = evaluate(policy.audit.level, meta, spec);
        if !audited.is_empty() {
            annotate(AUDIT_VIOLATIONS, would_violate(&policy.audit, &audited));
        }
        if !enforced.is_empty() {
            return Err(Error::forbidden(
                "",
                "pods",
                req.name,
                &format!(
                    "violates PodSecurity {:?}: {}",
                    policy.enforce.to_string(),
                    detail(&enforced)
                ),
            ));
        }
        let warned = evaluate(policy.warn.level, meta, spec);
        if !warned.is_empty() {
            out.warnings.push(would_violate(&policy.warn, &warned));
        }
        Ok(())
    }

    async fn workload(
        &self,
        objects: &ObjectStore,
        req: &Request<'_>,
        path: &str,
        obj: &Value,
        out: &mut Outcome,
    ) -> Result<()> {
        let Some(template) = obj.pointer(path) else {
            return Ok(());
        };
        if req.old.and_then(|o| o.pointer(path)) == Some(template) {
            return Ok(());
        }
        let Some(policy) = namespace_policy(objects, req.namespace.unwrap_or("")).await else {
            return Ok(());
        };
        let (meta, spec) = meta_and_spec(template);
        let audited = evaluate(policy.audit.level, meta, spec);
        if !audited.is_empty() {
            annotate(AUDIT_VIOLATIONS, would_violate(&policy.audit, &audited));
        }
        let warned = evaluate(policy.warn.level, meta, spec);
        if !warned.is_empty() {
            out.warnings.push(would_violate(&policy.warn, &warned));
        }
        Ok(())
    }

    async fn namespace(
        &self,
        objects: &ObjectStore,
        req: &Request<'_>,
        ns: &Value,
        out: &mut Outcome,
    ) -> Result<()> {
        let labels = ns.pointer("/metadata/labels").and_then(Value::as_object);
        let (policy, errors) = policy_of(labels);
        if !errors.is_empty() {
            return Err(Error::Invalid {
                kind: "namespaces".into(),
                group: String::new(),
                name: req.name.to_string(),
                causes: errors,
            });
        }
        let Some(old) = req.old.filter(|_| req.operation == Operation::Update) else {
            return Ok(());
        };
        let (old_policy, _) = policy_of(old.pointer("/metadata/labels").and_then(Value::as_object));
        if old_policy.enforce == policy.enforce || policy.enforce.level == Level::Privileged {
            return Ok(());
        }
        out.warnings
            .extend(existing_pod_warnings(objects, req.name, &policy.enforce).await);
        Ok(())
    }
}

/// Upstream's `EvaluatePodsInNamespace` warnings: a summary line, then one
/// line per distinct set of reasons, naming the first pod and how many more
/// share it.
async fn existing_pod_warnings(
    objects: &ObjectStore,
    ns: &str,
    enforce: &LevelVersion,
) -> Vec<String> {
    let Some(info) = objects.table().lookup("", "v1", "pods") else {
        return Vec::new();
    };
    let pods = match objects.list(&info, Some(ns), &ListOptions::default()).await {
        Ok(p) => p.items,
        Err(_) => {
            return vec!["failed to list pods while checking new PodSecurity enforce level".into()];
        }
    };
    let mut by_reason: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for pod in &pods {
        let (meta, spec) = meta_and_spec(pod);
        let v = evaluate(enforce.level, meta, spec);
        if v.is_empty() {
            continue;
        }
        let reasons: Vec<&str> = v.iter().map(|x| x.reason.as_str()).collect();
        let name = crate::registry::meta::name(pod).to_string();
        let e = by_reason
            .entry(reasons.join(", "))
            .or_insert((name.clone(), 0));
        if name < e.0 {
            e.0 = name;
        }
        e.1 += 1;
    }
    if by_reason.is_empty() {
        return Vec::new();
    }
    let mut lines: Vec<String> = by_reason
        .into_iter()
        .map(|(reasons, (pod, n))| match n {
            1 => format!("{pod}: {reasons}"),
            2 => format!("{pod} (and 1 other pod): {reasons}"),
            n => format!("{pod} (and {} other pods): {reasons}", n - 1),
        })
        .collect();
    lines.sort();
    let mut out = vec![format!(
        "existing pods in namespace {ns:?} violate the new PodSecurity enforce level {:?}",
        enforce.to_string()
    )];
    out.extend(lines);
    out
}

impl Plugin for PodSecurity {
    fn validate<'a>(
        &'a self,
        objects: &'a ObjectStore,
        req: &'a Request<'a>,
        obj: &'a Value,
        out: &'a mut Outcome,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if req.operation == Operation::Delete || req.subresource.is_some() {
                return Ok(());
            }
            if req.is("", "pods") {
                return self.pod(objects, req, obj, out).await;
            }
            if req.is("", "namespaces") {
                return self.namespace(objects, req, obj, out).await;
            }
            if let Some(path) = template_path(&req.info.group, &req.info.resource) {
                return self.workload(objects, req, path, obj, out).await;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_parse_as_upstream() {
        let labels = json!({"pod-security.kubernetes.io/enforce": "baseline", "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/warn-version": "v1.30"});
        let (p, e) = policy_of(labels.as_object());
        assert!(e.is_empty());
        assert_eq!(p.enforce.to_string(), "baseline:latest");
        assert_eq!(p.warn.to_string(), "restricted:v1.30");
        assert_eq!(p.audit.to_string(), "privileged:latest");
        let bad = json!({"pod-security.kubernetes.io/enforce": "strict", "pod-security.kubernetes.io/audit-version": "1.2"});
        let (p, e) = policy_of(bad.as_object());
        assert_eq!(p.enforce.level, Level::Restricted);
        assert_eq!(
            e[0].message,
            r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#
        );
        assert_eq!(
            e[1].message,
            r#"metadata.labels[pod-security.kubernetes.io/audit-version]: Invalid value: "1.2": must be "latest" or "v1.x""#
        );
        assert!(valid_version("v1.0") && !valid_version("v1.01") && !valid_version("v2.1"));
    }
}
