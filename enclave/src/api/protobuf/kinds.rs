//! Protobuf-to-JSON mappings of the kinds kubectl 1.32+ creates through
//! typed clients beyond the core ones: rbac roles and bindings,
//! resourcequotas, poddisruptionbudgets, priorityclasses and ingresses.
//! Field by field, each with a round-trip test; `status` is not mapped
//! (creates clear it, and no client updates these statuses with protobuf yet).

use k8s_pb::api::core::v1 as core;
use k8s_pb::api::networking::v1 as net;
use k8s_pb::api::policy::v1 as policy;
use k8s_pb::api::rbac::v1 as rbac;
use k8s_pb::api::scheduling::v1 as sched;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Map, Value, json};

use super::{nz, opt, put, top};

const RBAC: &str = "rbac.authorization.k8s.io/v1";

fn rules(rs: &[rbac::PolicyRule]) -> Value {
    Value::Array(
        rs.iter()
            .map(|r| {
                let mut m = Map::new();
                put(&mut m, "verbs", json!(r.verbs));
                put(&mut m, "apiGroups", json!(r.api_groups));
                put(&mut m, "resources", json!(r.resources));
                put(&mut m, "resourceNames", json!(r.resource_names));
                put(&mut m, "nonResourceURLs", json!(r.non_resource_ur_ls));
                Value::Object(m)
            })
            .collect(),
    )
}

/// A `metav1.LabelSelector`.
pub(super) fn label_selector(s: &Option<meta::LabelSelector>) -> Value {
    let Some(s) = s else {
        return Value::Null;
    };
    let mut m = Map::new();
    put(&mut m, "matchLabels", json!(s.match_labels));
    let exprs: Vec<Value> = s
        .match_expressions
        .iter()
        .map(|e| {
            let mut x = Map::new();
            put(&mut x, "key", opt(&e.key));
            put(&mut x, "operator", opt(&e.operator));
            put(&mut x, "values", json!(e.values));
            Value::Object(x)
        })
        .collect();
    put(&mut m, "matchExpressions", Value::Array(exprs));
    Value::Object(m)
}

/// An `IntOrString` as JSON: a number or a string.
pub(super) fn int_or_string(v: &Option<IntOrString>) -> Value {
    match v {
        None => Value::Null,
        Some(x) if x.r#type == Some(1) => opt(&x.str_val),
        Some(x) => json!(x.int_val.unwrap_or(0)),
    }
}

/// `rbac.authorization.k8s.io/v1 Role`.
pub(super) fn role(x: rbac::Role) -> Value {
    let mut o = top(RBAC, "Role", &x.metadata);
    put(&mut o, "rules", rules(&x.rules));
    Value::Object(o)
}

/// `rbac.authorization.k8s.io/v1 ClusterRole`.
pub(super) fn cluster_role(x: rbac::ClusterRole) -> Value {
    let mut o = top(RBAC, "ClusterRole", &x.metadata);
    put(&mut o, "rules", rules(&x.rules));
    if let Some(a) = &x.aggregation_rule {
        let sels: Vec<Value> = a
            .cluster_role_selectors
            .iter()
            .map(|s| label_selector(&Some(s.clone())))
            .collect();
        o.insert(
            "aggregationRule".into(),
            json!({"clusterRoleSelectors": sels}),
        );
    }
    Value::Object(o)
}

fn binding(
    api_kind: &str,
    md: &Option<meta::ObjectMeta>,
    subjects: &[rbac::Subject],
    role_ref: &Option<rbac::RoleRef>,
) -> Value {
    let mut o = top(RBAC, api_kind, md);
    let subs: Vec<Value> = subjects
        .iter()
        .map(|s| {
            let mut m = Map::new();
            put(&mut m, "kind", opt(&s.kind));
            put(&mut m, "apiGroup", opt(&s.api_group));
            put(&mut m, "name", opt(&s.name));
            put(&mut m, "namespace", opt(&s.namespace));
            Value::Object(m)
        })
        .collect();
    put(&mut o, "subjects", Value::Array(subs));
    if let Some(r) = role_ref {
        let mut m = Map::new();
        put(&mut m, "apiGroup", opt(&r.api_group));
        put(&mut m, "kind", opt(&r.kind));
        put(&mut m, "name", opt(&r.name));
        o.insert("roleRef".into(), Value::Object(m));
    }
    Value::Object(o)
}

/// `rbac.authorization.k8s.io/v1 RoleBinding`.
pub(super) fn role_binding(x: rbac::RoleBinding) -> Value {
    binding("RoleBinding", &x.metadata, &x.subjects, &x.role_ref)
}

/// `rbac.authorization.k8s.io/v1 ClusterRoleBinding`.
pub(super) fn cluster_role_binding(x: rbac::ClusterRoleBinding) -> Value {
    binding("ClusterRoleBinding", &x.metadata, &x.subjects, &x.role_ref)
}

/// `v1 ResourceQuota`.
pub(super) fn resource_quota(x: core::ResourceQuota) -> Value {
    let mut o = top("v1", "ResourceQuota", &x.metadata);
    if let Some(sp) = &x.spec {
        let mut spec = Map::new();
        let hard: Map<String, Value> = sp
            .hard
            .iter()
            .map(|(k, q)| (k.clone(), opt(&q.string)))
            .collect();
        put(&mut spec, "hard", Value::Object(hard));
        put(&mut spec, "scopes", json!(sp.scopes));
        if let Some(sel) = &sp.scope_selector {
            let exprs: Vec<Value> = sel
                .match_expressions
                .iter()
                .map(|e| {
                    let mut m = Map::new();
                    put(&mut m, "scopeName", opt(&e.scope_name));
                    put(&mut m, "operator", opt(&e.operator));
                    put(&mut m, "values", json!(e.values));
                    Value::Object(m)
                })
                .collect();
            spec.insert("scopeSelector".into(), json!({"matchExpressions": exprs}));
        }
        o.insert("spec".into(), Value::Object(spec));
    }
    Value::Object(o)
}

/// `policy/v1 PodDisruptionBudget`.
pub(super) fn pod_disruption_budget(x: policy::PodDisruptionBudget) -> Value {
    let mut o = top("policy/v1", "PodDisruptionBudget", &x.metadata);
    if let Some(sp) = &x.spec {
        let mut spec = Map::new();
        put(&mut spec, "minAvailable", int_or_string(&sp.min_available));
        put(
            &mut spec,
            "maxUnavailable",
            int_or_string(&sp.max_unavailable),
        );
        if sp.selector.is_some() {
            spec.insert("selector".into(), label_selector(&sp.selector));
        }
        put(
            &mut spec,
            "unhealthyPodEvictionPolicy",
            opt(&sp.unhealthy_pod_eviction_policy),
        );
        o.insert("spec".into(), Value::Object(spec));
    }
    Value::Object(o)
}

/// `scheduling.k8s.io/v1 PriorityClass`.
pub(super) fn priority_class(x: sched::PriorityClass) -> Value {
    let mut o = top("scheduling.k8s.io/v1", "PriorityClass", &x.metadata);
    o.insert("value".into(), json!(x.value.unwrap_or(0)));
    put(&mut o, "globalDefault", nz(&x.global_default));
    put(&mut o, "description", opt(&x.description));
    put(&mut o, "preemptionPolicy", opt(&x.preemption_policy));
    Value::Object(o)
}

fn backend(b: &net::IngressBackend) -> Value {
    let mut m = Map::new();
    if let Some(s) = &b.service {
        let mut svc = Map::new();
        put(&mut svc, "name", opt(&s.name));
        if let Some(p) = &s.port {
            let mut port = Map::new();
            put(&mut port, "name", opt(&p.name));
            put(&mut port, "number", nz(&p.number));
            svc.insert("port".into(), Value::Object(port));
        }
        m.insert("service".into(), Value::Object(svc));
    }
    if let Some(r) = &b.resource {
        let mut res = Map::new();
        put(&mut res, "apiGroup", opt(&r.api_group));
        put(&mut res, "kind", opt(&r.kind));
        put(&mut res, "name", opt(&r.name));
        m.insert("resource".into(), Value::Object(res));
    }
    Value::Object(m)
}

/// `networking.k8s.io/v1 Ingress`; a rule's `IngressRuleValue` is inlined
/// (`http` sits on the rule), as in the JSON form.
pub(super) fn ingress(x: net::Ingress) -> Value {
    let mut o = top("networking.k8s.io/v1", "Ingress", &x.metadata);
    if let Some(sp) = &x.spec {
        let mut spec = Map::new();
        put(&mut spec, "ingressClassName", opt(&sp.ingress_class_name));
        if let Some(b) = &sp.default_backend {
            spec.insert("defaultBackend".into(), backend(b));
        }
        let tls: Vec<Value> = sp
            .tls
            .iter()
            .map(|t| {
                let mut m = Map::new();
                put(&mut m, "hosts", json!(t.hosts));
                put(&mut m, "secretName", opt(&t.secret_name));
                Value::Object(m)
            })
            .collect();
        put(&mut spec, "tls", Value::Array(tls));
        let rules: Vec<Value> = sp
            .rules
            .iter()
            .map(|r| {
                let mut m = Map::new();
                put(&mut m, "host", opt(&r.host));
                if let Some(http) = r.ingress_rule_value.as_ref().and_then(|v| v.http.as_ref()) {
                    let paths: Vec<Value> = http
                        .paths
                        .iter()
                        .map(|p| {
                            let mut pm = Map::new();
                            put(&mut pm, "path", opt(&p.path));
                            put(&mut pm, "pathType", opt(&p.path_type));
                            if let Some(b) = &p.backend {
                                pm.insert("backend".into(), backend(b));
                            }
                            Value::Object(pm)
                        })
                        .collect();
                    m.insert("http".into(), json!({"paths": paths}));
                }
                Value::Object(m)
            })
            .collect();
        put(&mut spec, "rules", Value::Array(rules));
        o.insert("spec".into(), Value::Object(spec));
    }
    Value::Object(o)
}
