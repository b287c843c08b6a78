//! The `LimitRanger` admission plugin for pods: the `default` and
//! `defaultRequest` of a namespace's LimitRanges (items of type
//! `Container`) fill in what a container leaves out, noted in the pod's
//! `kubernetes.io/limit-ranger` annotation; then each LimitRange's `min`,
//! `max` and `maxLimitRequestRatio` are enforced per container and per pod,
//! refused with upstream's 403 messages.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, LimitRange, LimitRangeItem, Pod, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use serde_json::Value;

use super::usage::{pod_limits, pod_requests};
use super::{forbidden, typed};
use crate::registry::quantity::{self, Quantity, ResourceList};
use crate::registry::{ListOptions, ObjectStore, ResourceInfo, Result};

/// The annotation naming what LimitRanger filled in.
pub(crate) const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// The LimitRanges of `ns`.
///
/// # Errors
/// Store errors.
pub(crate) async fn limit_ranges(objects: &ObjectStore, ns: &str) -> Result<Vec<LimitRange>> {
    let Some(info) = objects.table().lookup("", "v1", "limitranges") else {
        return Ok(Vec::new());
    };
    let page = objects
        .list(&info, Some(ns), &ListOptions::default())
        .await?;
    page.items.iter().map(typed::<LimitRange>).collect()
}

/// The requests and limits a LimitRange's Container items default to
/// (upstream's `defaultContainerResourceRequirements`).
fn container_defaults(
    lr: &LimitRange,
) -> (BTreeMap<String, ApiQuantity>, BTreeMap<String, ApiQuantity>) {
    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    for item in lr.spec.iter().flat_map(|s| s.limits.iter()) {
        let mut item = item.clone();
        crate::registry::kinds::default_limit_range_item(&mut item);
        if item.type_ == "Container" {
            requests.extend(item.default_request.unwrap_or_default());
            limits.extend(item.default.unwrap_or_default());
        }
    }
    (requests, limits)
}

/// upstream's `mergeContainerResources`: fills in missing entries and
/// notes them as `cpu, memory request for container c`.
fn merge(
    c: &mut Container,
    requests: &BTreeMap<String, ApiQuantity>,
    limits: &BTreeMap<String, ApiQuantity>,
    prefix: &str,
    notes: &mut Vec<String>,
) {
    let res = c
        .resources
        .get_or_insert_with(ResourceRequirements::default);
    let mut set_limits = Vec::new();
    let have = res.limits.get_or_insert_with(BTreeMap::new);
    for (k, v) in limits {
        if !have.contains_key(k) {
            have.insert(k.clone(), v.clone());
            set_limits.push(k.clone());
        }
    }
    let mut set_requests = Vec::new();
    let have = res.requests.get_or_insert_with(BTreeMap::new);
    for (k, v) in requests {
        if !have.contains_key(k) {
            have.insert(k.clone(), v.clone());
            set_requests.push(k.clone());
        }
    }
    if res.limits.as_ref().is_some_and(BTreeMap::is_empty) {
        res.limits = None;
    }
    if res.requests.as_ref().is_some_and(BTreeMap::is_empty) {
        res.requests = None;
    }
    if !set_requests.is_empty() {
        notes.push(format!(
            "{} request for {prefix} {}",
            set_requests.join(", "),
            c.name
        ));
    }
    if !set_limits.is_empty() {
        notes.push(format!(
            "{} limit for {prefix} {}",
            set_limits.join(", "),
            c.name
        ));
    }
}

/// Applies the defaults of `ranges` to `pod` (upstream's `PodMutateLimitFunc`).
pub(crate) fn apply_defaults(ranges: &[LimitRange], p: &mut Pod) {
    for lr in ranges {
        let (requests, limits) = container_defaults(lr);
        if requests.is_empty() && limits.is_empty() {
            continue;
        }
        let mut notes = Vec::new();
        if let Some(spec) = p.spec.as_mut() {
            for c in &mut spec.containers {
                merge(c, &requests, &limits, "container", &mut notes);
            }
            for c in spec.init_containers.iter_mut().flatten() {
                merge(c, &requests, &limits, "init container", &mut notes);
            }
        }
        if !notes.is_empty() {
            p.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(
                    ANNOTATION.into(),
                    format!("LimitRanger plugin set: {}", notes.join("; ")),
                );
        }
    }
}

/// upstream's `minConstraint`.
fn min_constraint(
    kind: &str,
    name: &str,
    min: Quantity,
    req: &ResourceList,
    lim: &ResourceList,
) -> Option<String> {
    let Some(r) = req.get(name) else {
        return Some(format!(
            "minimum {name} usage per {kind} is {min}.  No request is specified"
        ));
    };
    if r.milli_value() < min.milli_value() {
        return Some(format!(
            "minimum {name} usage per {kind} is {min}, but request is {r}"
        ));
    }
    match lim.get(name) {
        Some(l) if l.milli_value() < min.milli_value() => Some(format!(
            "minimum {name} usage per {kind} is {min}, but limit is {l}"
        )),
        _ => None,
    }
}

/// upstream's `maxConstraint`.
fn max_constraint(
    kind: &str,
    name: &str,
    max: Quantity,
    req: &ResourceList,
    lim: &ResourceList,
) -> Option<String> {
    let Some(l) = lim.get(name) else {
        return Some(format!(
            "maximum {name} usage per {kind} is {max}.  No limit is specified"
        ));
    };
    if l.milli_value() > max.milli_value() {
        return Some(format!(
            "maximum {name} usage per {kind} is {max}, but limit is {l}"
        ));
    }
    match req.get(name) {
        Some(r) if r.milli_value() > max.milli_value() => Some(format!(
            "maximum {name} usage per {kind} is {max}, but request is {r}"
        )),
        _ => None,
    }
}

/// upstream's `limitRequestRatioConstraint`.
fn ratio_constraint(
    kind: &str,
    name: &str,
    ratio: Quantity,
    req: &ResourceList,
    lim: &ResourceList,
) -> Option<String> {
    let r = req.get(name).map_or(0, Quantity::milli_value);
    let l = lim.get(name).map_or(0, Quantity::milli_value);
    if r == 0 {
        return Some(format!(
            "{name} max limit to request ratio per {kind} is {ratio}, but no request is specified or request is 0"
        ));
    }
    if l == 0 {
        return Some(format!(
            "{name} max limit to request ratio per {kind} is {ratio}, but no limit is specified or limit is 0"
        ));
    }
    #[allow(clippy::cast_precision_loss)]
    let observed = l as f64 / r as f64;
    #[allow(clippy::cast_precision_loss)]
    let allowed = ratio.milli_value() as f64 / 1000.0;
    (observed > allowed).then(|| {
        format!("{name} max limit to request ratio per {kind} is {ratio}, but provided ratio is {observed:.6}")
    })
}

/// Checks `min`, `max` and `maxLimitRequestRatio` of `item` against one
/// set of requests and limits.
fn check(item: &LimitRangeItem, req: &ResourceList, lim: &ResourceList, errs: &mut Vec<String>) {
    let kind = item.type_.as_str();
    for (k, v) in quantity::from_openapi(item.min.as_ref()) {
        errs.extend(min_constraint(kind, &k, v, req, lim));
    }
    for (k, v) in quantity::from_openapi(item.max.as_ref()) {
        errs.extend(max_constraint(kind, &k, v, req, lim));
    }
    for (k, v) in quantity::from_openapi(item.max_limit_request_ratio.as_ref()) {
        errs.extend(ratio_constraint(kind, &k, v, req, lim));
    }
}

/// upstream's `PodValidateLimitFunc` for one LimitRange: the message of its
/// violations (aggregated as `[a, b]` when there are several), if any.
fn violations(lr: &LimitRange, pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let mut errs: Vec<String> = Vec::new();
    for item in lr.spec.iter().flat_map(|s| s.limits.iter()) {
        match item.type_.as_str() {
            "Container" => {
                for c in spec
                    .containers
                    .iter()
                    .chain(spec.init_containers.iter().flatten())
                {
                    let res = c.resources.as_ref();
                    let req = quantity::from_openapi(res.and_then(|r| r.requests.as_ref()));
                    let lim = quantity::from_openapi(res.and_then(|r| r.limits.as_ref()));
                    check(item, &req, &lim, &mut errs);
                }
            }
            "Pod" => check(item, &pod_requests(pod), &pod_limits(pod), &mut errs),
            _ => {}
        }
    }
    let mut unique: Vec<String> = Vec::new();
    for e in errs {
        if !unique.contains(&e) {
            unique.push(e);
        }
    }
    match unique.len() {
        0 => None,
        1 => unique.pop(),
        _ => Some(format!("[{}]", unique.join(", "))),
    }
}

/// Enforces the namespace's LimitRanges on a pod being created.
///
/// # Errors
/// 403 Forbidden with the first violated LimitRange's message.
pub(crate) async fn validate(
    objects: &ObjectStore,
    info: &ResourceInfo,
    ns: &str,
    pod: &Value,
    request_name: &str,
) -> Result<()> {
    let ranges = limit_ranges(objects, ns).await?;
    if ranges.is_empty() {
        return Ok(());
    }
    let p: Pod = typed(pod)?;
    for lr in &ranges {
        if let Some(why) = violations(lr, &p) {
            return Err(forbidden(info, request_name, why));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lr(items: Value) -> LimitRange {
        serde_json::from_value(json!({"metadata": {"name": "l"}, "spec": {"limits": items}}))
            .unwrap()
    }

    fn pod(containers: Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p"}, "spec": {"containers": containers}}),
        )
        .unwrap()
    }

    #[test]
    fn defaults_fill_in_and_are_noted() {
        let l = lr(
            json!([{"type": "Container", "default": {"cpu": "500m", "memory": "128Mi"}, "defaultRequest": {"cpu": "100m"}}]),
        );
        let (req, lim) = container_defaults(&l);
        let mut p = pod(json!([{"name": "c", "resources": {"limits": {"memory": "64Mi"}}}]));
        let mut notes = Vec::new();
        let c = &mut p.spec.as_mut().unwrap().containers[0];
        merge(c, &req, &lim, "container", &mut notes);
        assert_eq!(
            notes,
            [
                "cpu, memory request for container c",
                "cpu limit for container c"
            ]
        );
        let r = c.resources.as_ref().unwrap();
        assert_eq!(r.limits.as_ref().unwrap()["memory"].0, "64Mi");
        assert_eq!(r.requests.as_ref().unwrap()["memory"].0, "128Mi");
    }

    #[test]
    fn min_max_and_ratio_messages() {
        let l = lr(
            json!([{"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "64Mi"}, "maxLimitRequestRatio": {"cpu": "2"}}]),
        );
        let p = pod(
            json!([{"name": "c", "resources": {"requests": {"cpu": "500m", "memory": "32Mi"}, "limits": {"cpu": "2"}}}]),
        );
        assert_eq!(
            violations(&l, &p).unwrap(),
            "[minimum memory usage per Container is 64Mi, but request is 32Mi, maximum cpu usage per Container is 1, but limit is 2, cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000]"
        );
        let ok = pod(
            json!([{"name": "c", "resources": {"requests": {"cpu": "500m", "memory": "64Mi"}, "limits": {"cpu": "1"}}}]),
        );
        assert_eq!(violations(&l, &ok), None);
        let none = pod(json!([{"name": "c"}]));
        assert_eq!(
            violations(
                &lr(json!([{"type": "Container", "max": {"cpu": "1"}}])),
                &none
            )
            .unwrap(),
            "maximum cpu usage per Container is 1.  No limit is specified"
        );
    }
}
