//! A DaemonSet's RollingUpdate (upstream `daemon/update.go`
//! `rollingUpdate`: without surge, delete old pods while fewer than
//! `maxUnavailable` nodes are unavailable; with `maxSurge`, start the new
//! pod beside the old one and delete the old one once the new one is
//! available) and its status (`updateDaemonSetStatus`).

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::nodes::should_run;
use super::{
    DaemonSetController, View, by_creation_and_phase, is_pod_updated, template_generation,
};
use crate::controllers::Error;
use crate::controllers::typed::pod::{is_available, is_ready, is_terminating};
use crate::controllers::typed::{name, namespace};
use crate::registry::meta;

fn rolling(ds: &DaemonSet) -> Option<&k8s_openapi::api::apps::v1::RollingUpdateDaemonSet> {
    let strategy = ds.spec.as_ref()?.update_strategy.as_ref()?;
    if strategy.type_.as_deref().unwrap_or("RollingUpdate") != "RollingUpdate" {
        return None;
    }
    strategy.rolling_update.as_ref()
}

/// `GetScaledValueFromIntOrPercent` rounding up, as the DaemonSet's
/// `UnavailableCount` and `SurgeCount` do.
fn scaled_up(v: Option<&IntOrString>, total: i32) -> i32 {
    match v {
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .map_or(0, |p| {
                i32::try_from((p * i64::from(total) + 99).div_euclid(100)).unwrap_or(i32::MAX)
            }),
        None => 0,
    }
}

/// upstream's `AllowsSurge`: a RollingUpdate with a non-zero maxSurge.
pub(super) fn allows_surge(ds: &DaemonSet) -> bool {
    rolling(ds).is_some_and(|r| scaled_up(r.max_surge.as_ref(), 1) != 0)
}

/// With surge, the pods on one node to delete (upstream's surge branch of
/// `podsShouldBeOnNode`): all but the oldest new and oldest old pod, and
/// the old one too once it is not ready or the new one is available.
pub(super) fn surge_excess(ds: &DaemonSet, running: &[&Pod], hash: &str) -> Vec<String> {
    let generation = template_generation(ds);
    let min_ready = ds
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let mut out = Vec::new();
    let (mut oldest_new, mut oldest_old): (Option<&Pod>, Option<&Pod>) = (None, None);
    for p in running {
        if is_pod_updated(p, hash, generation) {
            if oldest_new.is_none() {
                oldest_new = Some(p);
                continue;
            }
        } else if oldest_old.is_none() {
            oldest_old = Some(p);
            continue;
        }
        out.push(name(*p).to_string());
    }
    if let (Some(new), Some(old)) = (oldest_new, oldest_old)
        && (!is_ready(old) || is_available(new, min_ready, meta::now()))
    {
        out.push(name(old).to_string());
    }
    out
}

/// upstream's `findUpdatedPodsOnNode`: the node's new and old pod, or
/// `None` if it has more than one of either.
fn updated_on_node<'a>(
    ds: &DaemonSet,
    pods: &'a [Pod],
    hash: &str,
) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
    let generation = template_generation(ds);
    let (mut new, mut old) = (None, None);
    for p in pods.iter().filter(|p| !is_terminating(p)) {
        let slot = if is_pod_updated(p, hash, generation) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(p);
    }
    Some((new, old))
}

impl DaemonSetController {
    /// upstream's `rollingUpdate`; whether it wrote anything.
    pub(super) async fn rolling_update(&self, view: &View, hash: &str) -> Result<bool, Error> {
        let ds = &view.ds;
        let now = meta::now();
        let min_ready = ds
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        let available = |p: &Pod| is_available(p, min_ready, now);
        // updatedDesiredNodeCounts: every wanted node appears, even empty.
        let mut by_node = view.by_node.clone();
        let mut desired = 0;
        for n in &view.nodes {
            if should_run(n, ds).0 {
                desired += 1;
                by_node.entry(name(n).to_string()).or_default();
            }
        }
        let r = rolling(ds);
        let mut max_unavailable = scaled_up(r.and_then(|r| r.max_unavailable.as_ref()), desired);
        let max_surge = scaled_up(r.and_then(|r| r.max_surge.as_ref()), desired);
        if desired > 0 && max_unavailable == 0 && max_surge == 0 {
            max_unavailable = 1;
        }
        if max_surge == 0 {
            let mut unavailable = 0;
            let mut replace: Vec<String> = Vec::new();
            let mut candidates: Vec<String> = Vec::new();
            for pods in by_node.values() {
                let Some((new, old)) = updated_on_node(ds, pods, hash) else {
                    unavailable += 1;
                    continue;
                };
                match (new, old) {
                    (None, None) | (Some(_), Some(_)) => unavailable += 1,
                    (Some(new), None) => {
                        if !available(new) {
                            unavailable += 1;
                        }
                    }
                    (None, Some(old)) => {
                        if !available(old) {
                            replace.push(name(old).to_string());
                        } else if unavailable < max_unavailable {
                            candidates.push(name(old).to_string());
                        }
                    }
                }
            }
            let room = usize::try_from((max_unavailable - unavailable).max(0)).unwrap_or(0);
            replace.extend(candidates.into_iter().take(room));
            return self.sync_nodes(ds, &replace, &[], hash).await;
        }
        let mut doomed: Vec<String> = Vec::new();
        let mut should_not_run: Vec<String> = Vec::new();
        let mut candidates: Vec<String> = Vec::new();
        let mut allowed: Vec<String> = Vec::new();
        let (mut surge, mut n_available) = (0, 0);
        for (node_name, pods) in &by_node {
            let Some((new, old)) = updated_on_node(ds, pods, hash) else {
                surge += 1;
                continue;
            };
            if old.or(new).is_some_and(&available) {
                n_available += 1;
            }
            let node = view.nodes.iter().find(|n| name(*n) == node_name);
            let runs_here = node.is_some_and(|n| should_run(n, ds).0);
            match (new, old) {
                (_, None) => {}
                (None, Some(old)) if !available(old) => {
                    if runs_here {
                        allowed.push(node_name.clone());
                    } else {
                        doomed.push(name(old).to_string());
                    }
                }
                (None, Some(old)) => {
                    if !runs_here {
                        should_not_run.push(name(old).to_string());
                    } else if surge < max_surge {
                        candidates.push(node_name.clone());
                    }
                }
                (Some(new), Some(old)) => {
                    if available(new) {
                        doomed.push(name(old).to_string());
                    } else {
                        surge += 1;
                    }
                }
            }
        }
        // With surge, availability stays whole: pods on nodes that no longer
        // qualify go only as new pods elsewhere become available.
        let deletable = usize::try_from((n_available - desired).max(0)).unwrap_or(0);
        doomed.extend(should_not_run.into_iter().take(deletable));
        let room = usize::try_from((max_surge - surge).max(0)).unwrap_or(0);
        allowed.extend(candidates.into_iter().take(room));
        self.sync_nodes(ds, &doomed, &allowed, hash).await
    }

    /// upstream's `updateDaemonSetStatus`; a requeue while pods become
    /// available by the clock alone.
    pub(super) async fn update_status(
        &self,
        view: &View,
        hash: &str,
    ) -> Result<Option<Duration>, Error> {
        let ds = &view.ds;
        let now = meta::now();
        let min_ready = ds
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        let generation = template_generation(ds);
        let (mut desired, mut current, mut misscheduled, mut ready, mut updated, mut available) =
            (0, 0, 0, 0, 0, 0);
        for node in &view.nodes {
            let (run, _) = should_run(node, ds);
            let pods = view.by_node.get(name(node)).filter(|p| !p.is_empty());
            if !run {
                if pods.is_some() {
                    misscheduled += 1;
                }
                continue;
            }
            desired += 1;
            let Some(pods) = pods else { continue };
            current += 1;
            let mut sorted: Vec<&Pod> = pods.iter().collect();
            sorted.sort_by(|a, b| by_creation_and_phase(a, b));
            let Some(pod) = sorted.first() else { continue };
            if is_ready(pod) {
                ready += 1;
                if is_available(pod, min_ready, now) {
                    available += 1;
                }
            }
            if is_pod_updated(pod, hash, generation) {
                updated += 1;
            }
        }
        let nz = |n: i32| (n != 0).then_some(n);
        let mut next = ds.clone();
        let old = ds.status.clone().unwrap_or_default();
        next.status = Some(DaemonSetStatus {
            desired_number_scheduled: desired,
            current_number_scheduled: current,
            number_misscheduled: misscheduled,
            number_ready: ready,
            updated_number_scheduled: nz(updated),
            number_available: nz(available),
            number_unavailable: nz(desired - available),
            observed_generation: ds.metadata.generation,
            collision_count: old.collision_count,
            conditions: old.conditions.clone(),
        });
        if next.status != ds.status {
            tracing::debug!(
                daemonset = name(ds),
                namespace = namespace(ds),
                desired,
                available,
                "status"
            );
            self.daemonsets.replace_status(&next).await?;
        }
        Ok((min_ready > 0 && ready != available)
            .then(|| Duration::from_secs(u64::try_from(min_ready).unwrap_or(1))))
    }
}
