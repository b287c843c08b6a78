//! Typed pod helpers after upstream's `pkg/api/v1/pod` and
//! `pkg/controller`: readiness and availability, the active and
//! terminating filters, the `ActivePods` deletion order, and the pod a
//! controller creates from its template (`GetPodFromTemplate`).

use std::cmp::Ordering;

use k8s_openapi::api::core::v1::{Pod, PodCondition, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

use crate::registry::meta;

/// The pod's phase ("" when unset).
pub(crate) fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// The pod's condition of type `ty`.
pub(crate) fn condition<'a>(pod: &'a Pod, ty: &str) -> Option<&'a PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == ty)
}

/// upstream's `IsPodReady`: the `Ready` condition is `True`.
pub(crate) fn is_ready(pod: &Pod) -> bool {
    condition(pod, "Ready").is_some_and(|c| c.status == "True")
}

/// When the pod last became ready.
fn ready_since(pod: &Pod) -> Option<&Time> {
    condition(pod, "Ready")
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
}

/// upstream's `IsPodAvailable`: ready for at least `min_ready_seconds`.
pub(crate) fn is_available(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    ready_since(pod).is_some_and(|t| {
        t.0.as_second().saturating_add(i64::from(min_ready_seconds)) <= now.as_second()
    })
}

/// Whether the pod has a deletionTimestamp.
pub(crate) fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// upstream's `IsPodTerminal`: Succeeded or Failed.
pub(crate) fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// upstream's `IsPodActive` (`FilterActivePods`): not finished and not
/// being deleted.
pub(crate) fn is_active(pod: &Pod) -> bool {
    !is_terminal(pod) && !is_terminating(pod)
}

/// upstream's `CountTerminatingPods` predicate: being deleted and not
/// finished.
pub(crate) fn is_terminating_not_terminal(pod: &Pod) -> bool {
    is_terminating(pod) && !is_terminal(pod)
}

/// The node the pod is bound to ("" when unscheduled).
pub(crate) fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0)
}

/// Go's `afterOrZero`: a zero time sorts first, then later before earlier.
fn after_or_zero(a: Option<&Time>, b: Option<&Time>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => b.0.cmp(&a.0),
    }
}

/// upstream's `controller.ActivePods` order: the pod to delete first sorts
/// first. Unscheduled before scheduled, Pending before Unknown before
/// Running, not ready before ready, more recently ready first, more
/// restarts first, newer first.
pub(crate) fn active_pods_order(a: &Pod, b: &Pod) -> Ordering {
    let phase_rank = |p: &Pod| match phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    };
    let unassigned = |p: &Pod| node_name(p).is_empty();
    if node_name(a) != node_name(b) && (unassigned(a) || unassigned(b)) {
        return unassigned(b).cmp(&unassigned(a));
    }
    phase_rank(a)
        .cmp(&phase_rank(b))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        .then_with(|| {
            if is_ready(a) && is_ready(b) {
                after_or_zero(ready_since(a), ready_since(b))
            } else {
                Ordering::Equal
            }
        })
        .then_with(|| max_restarts(b).cmp(&max_restarts(a)))
        .then_with(|| {
            after_or_zero(
                a.metadata.creation_timestamp.as_ref(),
                b.metadata.creation_timestamp.as_ref(),
            )
        })
}

/// upstream's `getPodsPrefix`: `<name>-`, or the bare name when that is
/// not a valid generateName prefix.
pub(crate) fn generate_name_prefix(owner_name: &str) -> String {
    if meta::is_dns_subdomain(&format!("{owner_name}-a")) {
        format!("{owner_name}-")
    } else {
        owner_name.to_string()
    }
}

/// upstream's `GetPodFromTemplate`: a pod with the template's labels,
/// annotations, finalizers and spec, named by `generate_name` (or, when
/// empty, `<owner>-`), controlled by `owner`.
pub(crate) fn from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    owner: OwnerReference,
    generate_name: &str,
) -> Pod {
    let tm = template.metadata.clone().unwrap_or_default();
    let generate_name = if generate_name.is_empty() {
        generate_name_prefix(&owner.name)
    } else {
        generate_name.to_string()
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: Some(namespace.to_string()),
            labels: tm.labels,
            annotations: tm.annotations,
            finalizers: tm.finalizers,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// When the pod finished, as upstream's job backoff reads it
/// (`getFinishedTime`): the latest container termination if every
/// container terminated, else when `Ready` turned `False`, else the
/// deletion time less the grace period, else the creation time.
pub(crate) fn finished_time(pod: &Pod) -> jiff::Timestamp {
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    let mut latest: Option<jiff::Timestamp> = None;
    let mut all = !statuses.is_empty();
    for c in statuses {
        match c
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.finished_at.as_ref())
        {
            Some(t) => latest = Some(latest.map_or(t.0, |l| l.max(t.0))),
            None => all = false,
        }
    }
    if all && let Some(t) = latest {
        return t;
    }
    if let Some(t) = condition(pod, "Ready")
        .filter(|c| c.status == "False")
        .and_then(|c| c.last_transition_time.as_ref())
    {
        return t.0;
    }
    if let Some(t) = &pod.metadata.deletion_timestamp {
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
        return t
            .0
            .checked_sub(jiff::SignedDuration::from_secs(grace))
            .unwrap_or(t.0);
    }
    pod.metadata
        .creation_timestamp
        .as_ref()
        .map_or(jiff::Timestamp::UNIX_EPOCH, |t| t.0)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};

    use super::*;

    fn pod(name: &str, node: &str, phase: &str, ready: bool, created: i64) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(
                    jiff::Timestamp::from_second(created).unwrap_or_default(),
                )),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: (!node.is_empty()).then(|| node.to_string()),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn active_pods_sort_the_cheapest_to_lose_first() {
        let mut pods = [
            pod("running-ready", "n", "Running", true, 10),
            pod("running", "n", "Running", false, 10),
            pod("pending-old", "n", "Pending", false, 1),
            pod("pending-new", "n", "Pending", false, 5),
            pod("unscheduled", "", "Pending", false, 1),
        ];
        pods.sort_by(active_pods_order);
        let names: Vec<&str> = pods
            .iter()
            .map(|p| p.metadata.name.as_deref().unwrap_or(""))
            .collect();
        assert_eq!(
            names,
            [
                "unscheduled",
                "pending-new",
                "pending-old",
                "running",
                "running-ready"
            ]
        );
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let mut p = pod("p", "n", "Running", true, 0);
        if let Some(c) = p
            .status
            .as_mut()
            .and_then(|s| s.conditions.as_mut())
            .and_then(|c| c.first_mut())
        {
            c.last_transition_time = Some(Time(jiff::Timestamp::from_second(100).unwrap()));
        }
        let at = |s| jiff::Timestamp::from_second(s).unwrap();
        assert!(is_available(&p, 0, at(100)));
        assert!(!is_available(&p, 10, at(105)));
        assert!(is_available(&p, 10, at(110)));
    }
}
