//! What an object counts against a ResourceQuota (upstream's quota
//! evaluators in `pkg/quota/v1/evaluator/core` and the generic object
//! count evaluator), shared by the quota admission and the resource quota
//! controller.

use k8s_openapi::api::core::v1::{
    Container, Pod, ResourceQuotaSpec, ScopedResourceSelectorRequirement, Service,
};
use serde::Deserialize as _;
use serde_json::Value;

use super::is_core;
use crate::registry::ResourceInfo;
use crate::registry::quantity::{self, Quantity, ResourceList};

/// Core kinds counted under their bare name too (`configmaps` as well as
/// `count/configmaps`), as upstream's legacy object-count names.
const LEGACY_COUNTS: [&str; 6] = [
    "configmaps",
    "secrets",
    "persistentvolumeclaims",
    "replicationcontrollers",
    "resourcequotas",
    "services",
];

/// `count/<resource>` for core kinds, `count/<resource>.<group>` otherwise.
pub(crate) fn count_name(info: &ResourceInfo) -> String {
    format!("count/{}", info.qualified())
}

/// Whether a quota resource name is one the pod evaluator accounts for,
/// whether or not a given pod uses it (upstream's `MatchingResources`).
pub(crate) fn pod_tracks(name: &str) -> bool {
    matches!(
        name,
        "pods" | "count/pods" | "cpu" | "memory" | "ephemeral-storage"
    ) || name.starts_with("requests.")
        || name.starts_with("limits.")
        || name.starts_with("hugepages-")
}

fn container_list(
    m: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
) -> ResourceList {
    quantity::from_openapi(m)
}

fn requests_of(c: &Container) -> ResourceList {
    container_list(c.resources.as_ref().and_then(|r| r.requests.as_ref()))
}

fn limits_of(c: &Container) -> ResourceList {
    container_list(c.resources.as_ref().and_then(|r| r.limits.as_ref()))
}

/// Sum over the containers, at least each init container's, plus overhead
/// (upstream's `PodRequests` / `PodLimits` without sidecar containers).
fn pod_total(pod: &Pod, of: fn(&Container) -> ResourceList) -> ResourceList {
    let Some(spec) = pod.spec.as_ref() else {
        return ResourceList::new();
    };
    let mut total = ResourceList::new();
    for c in &spec.containers {
        total = quantity::add(&total, &of(c));
    }
    for c in spec.init_containers.iter().flatten() {
        for (k, v) in of(c) {
            let cur = total.entry(k).or_insert(Quantity::ZERO);
            if v > *cur {
                *cur = v;
            }
        }
    }
    let overhead = quantity::from_openapi(spec.overhead.as_ref());
    for (k, v) in overhead {
        if let Some(cur) = total.get_mut(&k) {
            *cur = *cur + v;
        }
    }
    total
}

/// The pod's effective requests.
pub(crate) fn pod_requests(pod: &Pod) -> ResourceList {
    pod_total(pod, requests_of)
}

/// The pod's effective limits.
pub(crate) fn pod_limits(pod: &Pod) -> ResourceList {
    pod_total(pod, limits_of)
}

/// upstream's `QuotaV1Pod`: a pod counts unless it finished or its
/// deletion's grace period has run out.
pub(crate) fn pod_counts(pod: &Pod, now: jiff::Timestamp) -> bool {
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("");
    if phase == "Failed" || phase == "Succeeded" {
        return false;
    }
    match (
        pod.metadata.deletion_timestamp.as_ref(),
        pod.metadata.deletion_grace_period_seconds,
    ) {
        (Some(t), Some(grace)) => {
            let due = t.0.as_second().saturating_add(grace);
            now.as_second() <= due
        }
        _ => true,
    }
}

/// Whether every container asks for neither cpu nor memory (QoS BestEffort).
pub(crate) fn is_best_effort(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .all(|c| {
            let (r, l) = (requests_of(c), limits_of(c));
            ["cpu", "memory"]
                .iter()
                .all(|k| !r.contains_key(*k) && !l.contains_key(*k))
        })
}

/// upstream's `GetPodQOS`: `Guaranteed` when every container limits cpu
/// and memory and the (positive) requests equal the limits, `BestEffort`
/// when nothing asks for cpu or memory, else `Burstable`.
pub(crate) fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return "BestEffort";
    };
    let mut requests = ResourceList::new();
    let mut limits = ResourceList::new();
    let mut guaranteed = true;
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let positive = |l: ResourceList| -> ResourceList {
            l.into_iter()
                .filter(|(k, v)| (k == "cpu" || k == "memory") && *v > Quantity::ZERO)
                .collect()
        };
        let r = positive(requests_of(c));
        let l = positive(limits_of(c));
        if !(l.contains_key("cpu") && l.contains_key("memory")) {
            guaranteed = false;
        }
        requests = quantity::add(&requests, &r);
        limits = quantity::add(&limits, &l);
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed
        && requests.len() == limits.len()
        && requests.iter().all(|(k, v)| limits.get(k) == Some(v))
    {
        return "Guaranteed";
    }
    "Burstable"
}

/// Whether a resource name is an extended resource (`example.com/gpu`).
fn is_extended(name: &str) -> bool {
    name.contains('/') && !name.starts_with("kubernetes.io/") && !name.starts_with("requests.")
}

/// upstream's `podComputeUsageHelper` over the pod's effective requests and limits.
pub(crate) fn pod_usage(pod: &Pod) -> ResourceList {
    compute_usage(&pod_requests(pod), &pod_limits(pod))
}

/// What a container's (or pod's) requests and limits count: `pods`, the
/// bare and `requests.`/`limits.` names of cpu, memory and
/// ephemeral-storage, hugepages, and `requests.` of extended resources.
pub(crate) fn compute_usage(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert("pods".into(), Quantity::from_units(1));
    for r in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(v) = requests.get(r) {
            out.insert(r.into(), *v);
            out.insert(format!("requests.{r}"), *v);
        }
        if let Some(v) = limits.get(r) {
            out.insert(format!("limits.{r}"), *v);
        }
    }
    for (k, v) in requests {
        if k.starts_with("hugepages-") {
            out.insert(k.clone(), *v);
            out.insert(format!("requests.{k}"), *v);
        } else if is_extended(k) {
            out.insert(format!("requests.{k}"), *v);
        }
    }
    out
}

/// upstream's service evaluator: the service, its load balancer and node ports.
pub(crate) fn service_usage(svc: &Service) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert("services".into(), Quantity::from_units(1));
    let spec = svc.spec.as_ref();
    let ports = spec.and_then(|s| s.ports.as_ref()).map_or(0, Vec::len);
    let ty = spec.and_then(|s| s.type_.as_deref()).unwrap_or("ClusterIP");
    let (lbs, node_ports) = match ty {
        "NodePort" => (0, ports),
        "LoadBalancer" => {
            let allocate = spec
                .and_then(|s| s.allocate_load_balancer_node_ports)
                .unwrap_or(true);
            let np = if allocate {
                ports
            } else {
                spec.and_then(|s| s.ports.as_ref())
                    .map_or(0, |p| p.iter().filter(|p| p.node_port.is_some()).count())
            };
            (1, np)
        }
        _ => (0, 0),
    };
    let n = |c: usize| Quantity::from_units(i64::try_from(c).unwrap_or(i64::MAX));
    out.insert("services.loadbalancers".into(), n(lbs));
    out.insert("services.nodeports".into(), n(node_ports));
    out
}

/// Everything `obj` (of `info`) counts, or `None` when it counts nothing
/// (a finished pod).
pub(crate) fn usage(
    info: &ResourceInfo,
    obj: &Value,
    now: jiff::Timestamp,
) -> Option<ResourceList> {
    let mut out = if is_core(info, "pods") {
        let pod = Pod::deserialize(obj).ok()?;
        if !pod_counts(&pod, now) {
            return None;
        }
        pod_usage(&pod)
    } else if is_core(info, "services") {
        let svc = Service::deserialize(obj).ok()?;
        service_usage(&svc)
    } else {
        ResourceList::new()
    };
    if info.group.is_empty() && LEGACY_COUNTS.contains(&info.resource.as_str()) {
        out.insert(info.resource.to_string(), Quantity::from_units(1));
    }
    out.insert(count_name(info), Quantity::from_units(1));
    Some(out)
}

/// The scope requirements of a quota: `spec.scopes` (as Exists) and
/// `spec.scopeSelector.matchExpressions`.
fn scope_requirements(spec: &ResourceQuotaSpec) -> Vec<ScopedResourceSelectorRequirement> {
    let mut out: Vec<ScopedResourceSelectorRequirement> = spec
        .scopes
        .iter()
        .flatten()
        .map(|s| ScopedResourceSelectorRequirement {
            scope_name: s.clone(),
            operator: "Exists".into(),
            values: None,
        })
        .collect();
    if let Some(sel) = spec.scope_selector.as_ref() {
        out.extend(sel.match_expressions.iter().flatten().cloned());
    }
    out
}

/// Whether a quota with `spec` applies to `obj` of `info` (its scopes: pods
/// only; objects of other kinds match only quotas without scopes).
pub(crate) fn quota_applies(spec: &ResourceQuotaSpec, info: &ResourceInfo, obj: &Value) -> bool {
    let reqs = scope_requirements(spec);
    if reqs.is_empty() {
        return true;
    }
    if !is_core(info, "pods") {
        return false;
    }
    let Ok(pod) = serde_json::from_value::<Pod>(obj.clone()) else {
        return false;
    };
    reqs.iter().all(|r| pod_matches_scope(&pod, r))
}

/// upstream's `podMatchesScopeFunc`.
fn pod_matches_scope(pod: &Pod, r: &ScopedResourceSelectorRequirement) -> bool {
    let spec = pod.spec.as_ref();
    let terminating = spec
        .and_then(|s| s.active_deadline_seconds)
        .is_some_and(|d| d >= 0);
    match r.scope_name.as_str() {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => is_best_effort(pod),
        "NotBestEffort" => !is_best_effort(pod),
        "PriorityClass" => {
            let class = spec
                .and_then(|s| s.priority_class_name.as_deref())
                .unwrap_or("");
            let values = r.values.as_deref().unwrap_or_default();
            match r.operator.as_str() {
                "Exists" => !class.is_empty(),
                "DoesNotExist" => class.is_empty(),
                "In" => values.iter().any(|v| v == class),
                "NotIn" => !values.iter().any(|v| v == class),
                _ => false,
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn pod_requests_take_init_containers_and_overhead() {
        let p = pod(json!({"metadata": {}, "spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m"}}},
                {"name": "b", "resources": {"requests": {"cpu": "200m"}}},
            ],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1", "memory": "32Mi"}}}],
            "overhead": {"cpu": "10m"},
        }}));
        let u = pod_usage(&p);
        assert_eq!(u["requests.cpu"].to_string(), "1010m");
        assert_eq!(u["memory"].to_string(), "64Mi");
        assert_eq!(u["limits.cpu"].to_string(), "210m");
        assert_eq!(u["pods"].to_string(), "1");
        assert!(!u.contains_key("limits.memory"));
        assert!(!is_best_effort(&p));
    }

    #[test]
    fn scopes() {
        let spec: ResourceQuotaSpec =
            serde_json::from_value(json!({"scopes": ["BestEffort", "NotTerminating"]})).unwrap();
        let table = crate::registry::kinds::builtin();
        let pods = table.iter().find(|r| r.resource == "pods").unwrap();
        let cms = table.iter().find(|r| r.resource == "configmaps").unwrap();
        let be = json!({"metadata": {}, "spec": {"containers": [{"name": "a"}]}});
        let burst = json!({"metadata": {}, "spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}});
        assert!(quota_applies(&spec, pods, &be));
        assert!(!quota_applies(&spec, pods, &burst));
        assert!(!quota_applies(&spec, cms, &json!({"metadata": {}})));
        let none = ResourceQuotaSpec::default();
        assert!(quota_applies(&none, cms, &json!({"metadata": {}})));
        let u = usage(cms, &json!({"metadata": {}}), jiff::Timestamp::now()).unwrap();
        assert_eq!(quantity::pretty(&u), "configmaps=1,count/configmaps=1");
    }
}
