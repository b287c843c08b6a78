//! PodTopologySpread: hard constraints (`DoNotSchedule`) filter nodes by
//! skew, soft ones (`ScheduleAnyway`) score them. A pod without
//! constraints gets upstream's system defaults (hostname, maxSkew 3;
//! zone, maxSkew 5; both soft) over the selector of the services and
//! controller selecting it.

use std::collections::{HashMap, HashSet};

use super::node_affinity::required_matches;
use super::taint_toleration::{do_not_schedule, untolerated};
use crate::scheduler::framework::{
    Ctx, CycleState, MAX_NODE_SCORE, Plugin, PreFilter, Status, events,
};
use crate::scheduler::labels::Selector;
use crate::scheduler::node_info::{LABEL_HOSTNAME, LABEL_ZONE, NodeInfo};
use crate::scheduler::pod_info::{PodInfo, SpreadConstraint, WhenUnsatisfiable};

/// The plugin.
#[derive(Debug)]
pub(crate) struct PodTopologySpread;

/// The reason for a node lacking a constraint's topology key.
pub(crate) const REASON_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";
/// The reason for a node where the pod would exceed `maxSkew`.
pub(crate) const REASON_SKEW: &str = "node(s) didn't match pod topology spread constraints";

/// What Filter reads: matching pods per topology value, per hard constraint.
#[derive(Debug, Clone)]
pub(crate) struct FilterState {
    constraints: Vec<SpreadConstraint>,
    counts: Vec<HashMap<String, i64>>,
    min: Vec<i64>,
}

/// What Score reads.
#[derive(Debug, Clone)]
pub(crate) struct ScoreState {
    constraints: Vec<SpreadConstraint>,
    ignored: HashSet<String>,
    /// Matching pods per topology value, per soft constraint (not hostname).
    counts: Vec<HashMap<String, i64>>,
    weights: Vec<f64>,
}

/// The constraints of `pod` with `when`, or the system defaults.
fn constraints(cx: &Ctx<'_>, when: WhenUnsatisfiable) -> (Vec<SpreadConstraint>, bool) {
    let pod = cx.pod;
    if !pod.spread_constraints.is_empty() {
        let c = pod
            .spread_constraints
            .iter()
            .filter(|c| c.when == when)
            .cloned()
            .collect();
        return (c, false);
    }
    if when == WhenUnsatisfiable::DoNotSchedule {
        return (Vec::new(), true);
    }
    let selector = cx.listers.default_selector(pod);
    if selector.is_empty() {
        return (Vec::new(), true);
    }
    let soft = |key: &str, skew| SpreadConstraint {
        max_skew: skew,
        topology_key: key.to_string(),
        when: WhenUnsatisfiable::ScheduleAnyway,
        selector: selector.clone(),
        min_domains: 1,
        honor_node_affinity: true,
        honor_node_taints: false,
    };
    (vec![soft(LABEL_HOSTNAME, 3), soft(LABEL_ZONE, 5)], true)
}

fn has_all_keys(node: &NodeInfo, constraints: &[SpreadConstraint]) -> bool {
    constraints
        .iter()
        .all(|c| node.node.labels.contains_key(&c.topology_key))
}

/// upstream's `matchNodeInclusionPolicies`.
fn included(c: &SpreadConstraint, pod: &PodInfo, node: &NodeInfo) -> bool {
    (!c.honor_node_affinity || required_matches(pod, node))
        && (!c.honor_node_taints
            || untolerated(&node.node.taints, &pod.tolerations, do_not_schedule).is_none())
}

/// Whether [`included`] can reject a node for `pod` under `c` at all.
fn needs_inclusion_check(c: &SpreadConstraint, pod: &PodInfo) -> bool {
    (c.honor_node_affinity
        && (!pod.node_selector.is_empty() || pod.required_node_affinity.is_some()))
        || c.honor_node_taints
}

/// Pods on `node` in `ns` (not terminating) that `selector` selects.
fn count_matching(node: &NodeInfo, selector: &Selector, ns: &str) -> i64 {
    if selector.is_empty() {
        return 0;
    }
    node.pods
        .iter()
        .filter(|p| !p.deleting && p.namespace == ns && selector.matches(&p.labels))
        .count() as i64
}

impl FilterState {
    fn recompute_min(&mut self, i: usize) {
        self.min[i] = self.counts[i]
            .values()
            .copied()
            .min()
            .unwrap_or(i64::from(i32::MAX));
    }

    fn update(&mut self, cx: &Ctx<'_>, other: &PodInfo, node: &NodeInfo, delta: i64) {
        if other.namespace != cx.pod.namespace || !has_all_keys(node, &self.constraints) {
            return;
        }
        for i in 0..self.constraints.len() {
            let c = &self.constraints[i];
            if !c.selector.matches(&other.labels) || !included(c, cx.pod, node) {
                continue;
            }
            let v = node
                .node
                .labels
                .get(&c.topology_key)
                .cloned()
                .unwrap_or_default();
            *self.counts[i].entry(v).or_insert(0) += delta;
            self.recompute_min(i);
        }
    }
}

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }
    fn events(&self) -> u32 {
        events::POD_ADD
            | events::POD_LABEL
            | events::POD_DELETE
            | events::NODE_ADD
            | events::NODE_DELETE
            | events::NODE_LABEL
            | events::NODE_TAINT
    }
    fn pre_filter(&self, cx: &Ctx<'_>, state: &mut CycleState) -> PreFilter {
        let (constraints, _) = constraints(cx, WhenUnsatisfiable::DoNotSchedule);
        if constraints.is_empty() {
            return PreFilter::Skip;
        }
        // Per domain of each constraint's key: the matching pods on its
        // eligible nodes (those with every constraint's key that the
        // inclusion policies admit), from the cache's indexes.
        let mut counts = vec![HashMap::new(); constraints.len()];
        let several = constraints.len() > 1;
        for (i, c) in constraints.iter().enumerate() {
            let per_node = cx.cache.matching(&cx.pod.namespace, &c.selector);
            let check = needs_inclusion_check(c, cx.pod);
            for (value, slots) in cx.cache.domains(&c.topology_key).iter() {
                let mut total = 0i64;
                let mut eligible = false;
                for &slot in slots {
                    let Some(node) = cx.cache.at_slot(slot) else {
                        continue;
                    };
                    if (several && !has_all_keys(node, &constraints))
                        || (check && !included(c, cx.pod, node))
                    {
                        continue;
                    }
                    eligible = true;
                    total += i64::from(per_node.get(slot).copied().unwrap_or(0));
                }
                if eligible {
                    counts[i].insert(value.clone(), total);
                }
            }
        }
        let mut s = FilterState {
            min: vec![0; constraints.len()],
            constraints,
            counts,
        };
        for i in 0..s.constraints.len() {
            s.recompute_min(i);
        }
        state.spread_filter = Some(s);
        PreFilter::Run(None)
    }
    fn filter(&self, cx: &Ctx<'_>, state: &CycleState, node: &NodeInfo) -> Result<(), Status> {
        let Some(s) = &state.spread_filter else {
            return Ok(());
        };
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = node.node.labels.get(&c.topology_key) else {
                return Err(Status::unresolvable(REASON_LABEL));
            };
            let domains = s.counts[i].len() as i64;
            let min = if domains < c.min_domains { 0 } else { s.min[i] };
            let own = i64::from(c.selector.matches(&cx.pod.labels));
            let here = s.counts[i].get(value).copied().unwrap_or(0);
            if here + own - min > c.max_skew {
                return Err(Status::unschedulable(REASON_SKEW));
            }
        }
        Ok(())
    }
    fn add_pod(&self, cx: &Ctx<'_>, state: &mut CycleState, other: &PodInfo, node: &NodeInfo) {
        if let Some(s) = &mut state.spread_filter {
            s.update(cx, other, node, 1);
        }
    }
    fn remove_pod(&self, cx: &Ctx<'_>, state: &mut CycleState, other: &PodInfo, node: &NodeInfo) {
        if let Some(s) = &mut state.spread_filter {
            s.update(cx, other, node, -1);
        }
    }
    fn weight(&self) -> i64 {
        2
    }
    fn pre_score(&self, cx: &Ctx<'_>, state: &mut CycleState, nodes: &[&NodeInfo]) -> bool {
        if nodes.is_empty() || cx.cache.num_nodes() == 0 {
            return false;
        }
        let (constraints, system_defaulted) = constraints(cx, WhenUnsatisfiable::ScheduleAnyway);
        if constraints.is_empty() {
            return false;
        }
        // Only explicit constraints require every topology key, so that
        // nodes without a zone still get hostname spreading.
        let require_all = !cx.pod.spread_constraints.is_empty() || !system_defaulted;
        let mut ignored = HashSet::new();
        let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
        for node in nodes {
            if require_all && !has_all_keys(node, &constraints) {
                ignored.insert(node.name().to_string());
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if c.topology_key == LABEL_HOSTNAME {
                    continue;
                }
                let v = node
                    .node
                    .labels
                    .get(&c.topology_key)
                    .cloned()
                    .unwrap_or_default();
                counts[i].entry(v).or_insert(0);
            }
        }
        let weights = constraints
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let size = if c.topology_key == LABEL_HOSTNAME {
                    nodes.len() - ignored.len()
                } else {
                    counts[i].len()
                };
                ((size + 2) as f64).ln()
            })
            .collect();
        for (i, c) in constraints.iter().enumerate() {
            if c.topology_key == LABEL_HOSTNAME {
                continue;
            }
            let per_node = cx.cache.matching(&cx.pod.namespace, &c.selector);
            let check = needs_inclusion_check(c, cx.pod);
            for (value, slots) in cx.cache.domains(&c.topology_key).iter() {
                let Some(count) = counts[i].get_mut(value) else {
                    continue;
                };
                for &slot in slots {
                    let Some(node) = cx.cache.at_slot(slot) else {
                        continue;
                    };
                    if (require_all && !has_all_keys(node, &constraints))
                        || (check && !included(c, cx.pod, node))
                    {
                        continue;
                    }
                    *count += i64::from(per_node.get(slot).copied().unwrap_or(0));
                }
            }
        }
        state.spread_score = Some(ScoreState {
            constraints,
            ignored,
            counts,
            weights,
        });
        true
    }
    fn score(&self, cx: &Ctx<'_>, state: &CycleState, node: &NodeInfo) -> i64 {
        let Some(s) = &state.spread_score else {
            return 0;
        };
        if s.ignored.contains(node.name()) {
            return 0;
        }
        let mut score = 0.0;
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(v) = node.node.labels.get(&c.topology_key) else {
                continue;
            };
            let cnt = if c.topology_key == LABEL_HOSTNAME {
                count_matching(node, &c.selector, &cx.pod.namespace)
            } else {
                s.counts[i].get(v).copied().unwrap_or(0)
            };
            score += cnt as f64 * s.weights[i] + (c.max_skew - 1) as f64;
        }
        score.round() as i64
    }
    fn normalize(&self, state: &CycleState, nodes: &[&NodeInfo], scores: &mut [i64]) {
        let Some(s) = &state.spread_score else {
            return;
        };
        let mut min = i64::MAX;
        let mut max = 0;
        for (i, n) in nodes.iter().enumerate() {
            if s.ignored.contains(n.name()) {
                continue;
            }
            min = min.min(scores[i]);
            max = max.max(scores[i]);
        }
        for (i, n) in nodes.iter().enumerate() {
            scores[i] = if s.ignored.contains(n.name()) {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - scores[i]) / max
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::listers::{ListerKind, Listers};
    use crate::scheduler::node_info::test_nodes::node;
    use crate::scheduler::plugins::testing::{cache_of, filter_all, score_all};
    use crate::scheduler::pod_info::test_pods::pod;
    use serde_json::json;
    use std::sync::Arc;

    fn zoned(name: &str, zone: &str, pods: usize) -> NodeInfo {
        let mut n = node(
            json!({"metadata": {"name": name, "labels": {"zone": zone, "kubernetes.io/hostname": name}}}),
        );
        for i in 0..pods {
            n.add_pod(Arc::new(pod(
                json!({"metadata": {"name": format!("{name}-{i}"), "labels": {"app": "web"}}}),
            )));
        }
        n
    }

    fn spreading(when: &str, skew: i64) -> PodInfo {
        pod(
            json!({"metadata": {"name": "p", "labels": {"app": "web"}}, "spec": {"topologySpreadConstraints": [
            {"maxSkew": skew, "topologyKey": "zone", "whenUnsatisfiable": when, "labelSelector": {"matchLabels": {"app": "web"}}}]}}),
        )
    }

    #[test]
    fn hard_constraints_filter_by_skew() {
        let cache = cache_of(&[
            zoned("a", "z1", 2),
            zoned("b", "z2", 0),
            node(json!({"metadata": {"name": "c"}})),
        ]);
        let r = filter_all(
            &PodTopologySpread,
            &spreading("DoNotSchedule", 1),
            &cache,
            &Listers::default(),
        );
        assert_eq!(
            r[0].as_ref().unwrap_err().message(),
            REASON_SKEW,
            "2 + 1 - 0 > 1"
        );
        assert!(r[1].is_ok());
        assert_eq!(r[2].as_ref().unwrap_err().message(), REASON_LABEL);
        let loose = filter_all(
            &PodTopologySpread,
            &spreading("DoNotSchedule", 3),
            &cache,
            &Listers::default(),
        );
        assert!(loose[0].is_ok());
    }

    #[test]
    fn soft_constraints_score_emptier_domains_higher() {
        let cache = cache_of(&[
            zoned("a", "z1", 3),
            zoned("b", "z2", 0),
            zoned("c", "z2", 1),
        ]);
        let s = score_all(
            &PodTopologySpread,
            &spreading("ScheduleAnyway", 1),
            &cache,
            &Listers::default(),
        )
        .unwrap();
        assert!(s[1] > s[0] && s[2] == s[1], "{s:?}");
        assert_eq!(s[1], 100);
    }

    #[test]
    fn system_defaults_apply_to_pods_of_a_service() {
        let cache = cache_of(&[zoned("a", "z1", 3), zoned("b", "z2", 0)]);
        let plain = pod(json!({"metadata": {"name": "p", "labels": {"app": "web"}}}));
        let mut listers = Listers::default();
        assert_eq!(
            score_all(&PodTopologySpread, &plain, &cache, &listers),
            None,
            "no selector, no defaults"
        );
        let svc = ListerKind::Services
            .decode(&json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}}}));
        listers.apply(ListerKind::Services, "default", "web", svc);
        let s = score_all(&PodTopologySpread, &plain, &cache, &listers).unwrap();
        assert!(s[1] > s[0], "{s:?}");
        let cx = Ctx {
            pod: &plain,
            cache: &cache,
            listers: &listers,
        };
        assert!(matches!(
            PodTopologySpread.pre_filter(&cx, &mut CycleState::default()),
            PreFilter::Skip
        ));
    }
}
