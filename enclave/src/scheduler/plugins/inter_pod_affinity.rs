//! InterPodAffinity: required pod affinity and anti-affinity (the
//! incoming pod's, and existing pods' anti-affinity against it) filter
//! nodes by topology domain; preferred terms (both ways) and existing
//! pods' required affinity (weight 1, upstream's `hardPodAffinityWeight`)
//! score them.

use std::collections::HashMap;

use crate::scheduler::framework::{
    Ctx, CycleState, MAX_NODE_SCORE, Plugin, PreFilter, Status, events,
};
use crate::scheduler::labels::{Labels, Selector};
use crate::scheduler::node_info::NodeInfo;
use crate::scheduler::pod_info::{AffinityTerm, PodInfo, WeightedTerm};

/// The plugin.
#[derive(Debug)]
pub(crate) struct InterPodAffinity;

/// The incoming pod's affinity is not satisfied.
pub(crate) const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
/// The incoming pod's anti-affinity is not satisfied.
pub(crate) const REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
/// An existing pod's anti-affinity would be broken.
pub(crate) const REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// Counts per topology key and value.
type TopologyCounts = HashMap<String, HashMap<String, i64>>;

fn bump(m: &mut TopologyCounts, node: &NodeInfo, key: &str, delta: i64) {
    if let Some(v) = node.node.labels.get(key) {
        // The common case (a count that exists and stays) allocates nothing.
        if let Some(c) = m.get_mut(key).and_then(|per_key| per_key.get_mut(v))
            && *c + delta != 0
        {
            *c += delta;
            return;
        }
        let per_key = m.entry(key.to_string()).or_default();
        let c = per_key.entry(v.clone()).or_insert(0);
        *c += delta;
        if *c == 0 {
            per_key.remove(v);
            if per_key.is_empty() {
                m.remove(key);
            }
        }
    }
}

fn count(m: &TopologyCounts, key: &str, value: &str) -> i64 {
    m.get(key).and_then(|v| v.get(value)).copied().unwrap_or(0)
}

/// What Filter reads.
#[derive(Debug, Clone)]
pub(crate) struct FilterState {
    affinity: Vec<AffinityTerm>,
    anti_affinity: Vec<AffinityTerm>,
    ns_labels: Option<Labels>,
    /// Existing pods' required anti-affinity terms matching the incoming pod.
    existing_anti: TopologyCounts,
    /// Existing pods matching all of the incoming pod's affinity terms.
    affinity_counts: TopologyCounts,
    /// Existing pods matching the incoming pod's anti-affinity terms.
    anti_counts: TopologyCounts,
}

/// What Score reads: summed weights per topology key and value.
#[derive(Debug, Clone)]
pub(crate) struct ScoreState {
    scores: TopologyCounts,
}

/// upstream's `mergeAffinityTermNamespacesIfNotEmpty`: a namespace
/// selector other than "everything" becomes the names it selects.
fn merge_namespaces(cx: &Ctx<'_>, term: &AffinityTerm) -> AffinityTerm {
    let mut t = term.clone();
    if !t.namespace_selector.is_empty() {
        t.namespaces
            .extend(cx.listers.namespaces_selected(&t.namespace_selector));
        t.namespace_selector = Selector::Nothing;
    }
    t
}

fn matches_all(terms: &[AffinityTerm], pod: &PodInfo) -> bool {
    !terms.is_empty() && terms.iter().all(|t| t.matches(pod, None))
}

impl FilterState {
    fn update(&mut self, cx: &Ctx<'_>, other: &PodInfo, node: &NodeInfo, delta: i64) {
        for t in &other.required_anti_affinity {
            if t.matches(cx.pod, self.ns_labels.as_ref()) {
                bump(&mut self.existing_anti, node, &t.topology_key, delta);
            }
        }
        if matches_all(&self.affinity, other) {
            for t in &self.affinity {
                bump(&mut self.affinity_counts, node, &t.topology_key, delta);
            }
        }
        for t in &self.anti_affinity {
            if t.matches(other, None) {
                bump(&mut self.anti_counts, node, &t.topology_key, delta);
            }
        }
    }
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }
    fn events(&self) -> u32 {
        events::POD_ADD
            | events::POD_LABEL
            | events::POD_DELETE
            | events::NODE_ADD
            | events::NODE_LABEL
            | events::NODE_TAINT
            | events::NAMESPACE
    }
    fn pre_filter(&self, cx: &Ctx<'_>, state: &mut CycleState) -> PreFilter {
        let pod = cx.pod;
        let mut s = FilterState {
            affinity: pod
                .required_affinity
                .iter()
                .map(|t| merge_namespaces(cx, t))
                .collect(),
            anti_affinity: pod
                .required_anti_affinity
                .iter()
                .map(|t| merge_namespaces(cx, t))
                .collect(),
            ns_labels: cx.listers.namespace_labels(&pod.namespace).cloned(),
            existing_anti: TopologyCounts::new(),
            affinity_counts: TopologyCounts::new(),
            anti_counts: TopologyCounts::new(),
        };
        let incoming = !s.affinity.is_empty() || !s.anti_affinity.is_empty();
        if !incoming && !cx.cache.any_required_anti_affinity() {
            return PreFilter::Skip;
        }
        for node in cx.cache.nodes() {
            for other in &node.pods_with_required_anti_affinity {
                for t in &other.required_anti_affinity {
                    if t.matches(pod, s.ns_labels.as_ref()) {
                        bump(&mut s.existing_anti, node, &t.topology_key, 1);
                    }
                }
            }
            if incoming {
                for other in &node.pods {
                    if matches_all(&s.affinity, other) {
                        for t in &s.affinity {
                            bump(&mut s.affinity_counts, node, &t.topology_key, 1);
                        }
                    }
                    for t in &s.anti_affinity {
                        if t.matches(other, None) {
                            bump(&mut s.anti_counts, node, &t.topology_key, 1);
                        }
                    }
                }
            }
        }
        if s.existing_anti.is_empty() && !incoming {
            return PreFilter::Skip;
        }
        state.affinity_filter = Some(s);
        PreFilter::Run(None)
    }
    fn filter(&self, cx: &Ctx<'_>, state: &CycleState, node: &NodeInfo) -> Result<(), Status> {
        let Some(s) = &state.affinity_filter else {
            return Ok(());
        };
        let labels = &node.node.labels;
        // The incoming pod's affinity.
        let mut pods_exist = true;
        for t in &s.affinity {
            match labels.get(&t.topology_key) {
                None => return Err(Status::unresolvable(REASON_AFFINITY)),
                Some(v) => pods_exist &= count(&s.affinity_counts, &t.topology_key, v) > 0,
            }
        }
        // The first of a group of pods with affinity to each other may go
        // anywhere its terms' topologies exist.
        if !(pods_exist || s.affinity_counts.is_empty() && matches_all(&s.affinity, cx.pod)) {
            return Err(Status::unresolvable(REASON_AFFINITY));
        }
        if !s.anti_counts.is_empty() {
            for t in &s.anti_affinity {
                if let Some(v) = labels.get(&t.topology_key)
                    && count(&s.anti_counts, &t.topology_key, v) > 0
                {
                    return Err(Status::unschedulable(REASON_ANTI_AFFINITY));
                }
            }
        }
        if !s.existing_anti.is_empty()
            && labels
                .iter()
                .any(|(k, v)| count(&s.existing_anti, k, v) > 0)
        {
            return Err(Status::unschedulable(REASON_EXISTING_ANTI_AFFINITY));
        }
        Ok(())
    }
    fn add_pod(&self, cx: &Ctx<'_>, state: &mut CycleState, other: &PodInfo, node: &NodeInfo) {
        if let Some(s) = &mut state.affinity_filter {
            s.update(cx, other, node, 1);
        }
    }
    fn remove_pod(&self, cx: &Ctx<'_>, state: &mut CycleState, other: &PodInfo, node: &NodeInfo) {
        if let Some(s) = &mut state.affinity_filter {
            s.update(cx, other, node, -1);
        }
    }
    fn weight(&self) -> i64 {
        2
    }
    fn pre_score(&self, cx: &Ctx<'_>, state: &mut CycleState, nodes: &[&NodeInfo]) -> bool {
        if nodes.is_empty() {
            return false;
        }
        let pod = cx.pod;
        let constraints =
            !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty();
        if !constraints && !cx.cache.any_pod_affinity() {
            return false;
        }
        let merge = |ts: &[WeightedTerm]| -> Vec<WeightedTerm> {
            ts.iter()
                .map(|w| WeightedTerm {
                    weight: w.weight,
                    term: merge_namespaces(cx, &w.term),
                })
                .collect()
        };
        let preferred = merge(&pod.preferred_affinity);
        let preferred_anti = merge(&pod.preferred_anti_affinity);
        let ns_labels = cx.listers.namespace_labels(&pod.namespace);
        let mut scores = TopologyCounts::new();
        let mut add = |term: &AffinityTerm,
                       weight: i64,
                       target: &PodInfo,
                       labels: Option<&Labels>,
                       node: &NodeInfo| {
            if term.matches(target, labels) {
                bump(&mut scores, node, &term.topology_key, weight);
            }
        };
        for node in cx.cache.nodes() {
            if node.node.labels.is_empty() {
                continue;
            }
            let existing = if constraints {
                &node.pods
            } else {
                &node.pods_with_affinity
            };
            for other in existing {
                for w in &preferred {
                    add(&w.term, w.weight, other, None, node);
                }
                for w in &preferred_anti {
                    add(&w.term, -w.weight, other, None, node);
                }
                for t in &other.required_affinity {
                    add(t, 1, pod, ns_labels, node);
                }
                for w in &other.preferred_affinity {
                    add(&w.term, w.weight, pod, ns_labels, node);
                }
                for w in &other.preferred_anti_affinity {
                    add(&w.term, -w.weight, pod, ns_labels, node);
                }
            }
        }
        if scores.is_empty() {
            return false;
        }
        state.affinity_score = Some(ScoreState { scores });
        true
    }
    fn score(&self, _cx: &Ctx<'_>, state: &CycleState, node: &NodeInfo) -> i64 {
        let Some(s) = &state.affinity_score else {
            return 0;
        };
        s.scores
            .iter()
            .filter_map(|(k, values)| node.node.labels.get(k).and_then(|v| values.get(v)))
            .sum()
    }
    fn normalize(&self, state: &CycleState, _nodes: &[&NodeInfo], scores: &mut [i64]) {
        if state.affinity_score.is_none() {
            return;
        }
        let min = scores.iter().copied().min().unwrap_or(0);
        let max = scores.iter().copied().max().unwrap_or(0);
        let diff = max - min;
        for s in scores.iter_mut() {
            *s = if diff > 0 {
                (MAX_NODE_SCORE as f64 * ((*s - min) as f64 / diff as f64)) as i64
            } else {
                0
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

    fn host(name: &str, zone: &str, pods: Vec<PodInfo>) -> NodeInfo {
        let mut n = node(
            json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "zone": zone}}}),
        );
        for p in pods {
            n.add_pod(Arc::new(p));
        }
        n
    }

    fn labelled(name: &str, app: &str) -> PodInfo {
        pod(json!({"metadata": {"name": name, "labels": {"app": app}}}))
    }

    fn with(kind: &str, key: &str, app: &str) -> PodInfo {
        pod(
            json!({"metadata": {"name": "p", "labels": {"app": app}}, "spec": {"affinity": {kind: {
            "requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}]}}}}),
        )
    }

    #[test]
    fn required_anti_affinity_keeps_pods_apart() {
        let cache = cache_of(&[
            host("a", "z1", vec![labelled("x", "web")]),
            host("b", "z1", vec![]),
            host("c", "z2", vec![]),
        ]);
        let r = filter_all(
            &InterPodAffinity,
            &with("podAntiAffinity", "kubernetes.io/hostname", "web"),
            &cache,
            &Listers::default(),
        );
        assert_eq!(r[0].as_ref().unwrap_err().message(), REASON_ANTI_AFFINITY);
        assert!(r[1].is_ok() && r[2].is_ok());
        let r = filter_all(
            &InterPodAffinity,
            &with("podAntiAffinity", "zone", "web"),
            &cache,
            &Listers::default(),
        );
        assert!(r[0].is_err() && r[1].is_err() && r[2].is_ok());
    }

    #[test]
    fn existing_pods_anti_affinity_is_honoured() {
        let guard = with("podAntiAffinity", "kubernetes.io/hostname", "web");
        let cache = cache_of(&[host("a", "z1", vec![guard]), host("b", "z1", vec![])]);
        let r = filter_all(
            &InterPodAffinity,
            &labelled("new", "web"),
            &cache,
            &Listers::default(),
        );
        assert_eq!(
            r[0].as_ref().unwrap_err().message(),
            REASON_EXISTING_ANTI_AFFINITY
        );
        assert!(r[1].is_ok());
        let other = filter_all(
            &InterPodAffinity,
            &labelled("new", "db"),
            &cache,
            &Listers::default(),
        );
        assert!(other.iter().all(Result::is_ok));
    }

    #[test]
    fn required_affinity_follows_matching_pods_or_lets_the_first_go_anywhere() {
        let cache = cache_of(&[
            host("a", "z1", vec![labelled("x", "db")]),
            host("b", "z2", vec![]),
        ]);
        let follower = with("podAffinity", "zone", "db");
        let r = filter_all(&InterPodAffinity, &follower, &cache, &Listers::default());
        assert!(r[0].is_ok());
        assert_eq!(r[1].as_ref().unwrap_err().message(), REASON_AFFINITY);
        let empty = cache_of(&[host("a", "z1", vec![]), host("b", "z2", vec![])]);
        let first = with("podAffinity", "zone", "cache");
        assert!(
            filter_all(&InterPodAffinity, &first, &empty, &Listers::default())
                .iter()
                .all(Result::is_ok)
        );
    }

    #[test]
    fn namespace_selectors_pick_namespaces_by_labels() {
        let mut other_ns = labelled("x", "web");
        other_ns.namespace = "team-a".into();
        let cache = cache_of(&[host("a", "z1", vec![other_ns]), host("b", "z1", vec![])]);
        let p = pod(
            json!({"metadata": {"name": "p"}, "spec": {"affinity": {"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": "web"}},
                "namespaceSelector": {"matchLabels": {"team": "a"}}, "topologyKey": "kubernetes.io/hostname"}]}}}}),
        );
        let mut listers = Listers::default();
        assert!(
            filter_all(&InterPodAffinity, &p, &cache, &listers)
                .iter()
                .all(Result::is_ok)
        );
        let ns = ListerKind::Namespaces
            .decode(&json!({"metadata": {"name": "team-a", "labels": {"team": "a"}}}));
        listers.apply(ListerKind::Namespaces, "", "team-a", ns);
        assert!(filter_all(&InterPodAffinity, &p, &cache, &listers)[0].is_err());
    }

    #[test]
    fn preferred_terms_score() {
        let cache = cache_of(&[
            host("a", "z1", vec![labelled("x", "db")]),
            host("b", "z2", vec![]),
            host("c", "z1", vec![]),
        ]);
        let p = pod(
            json!({"metadata": {"name": "p"}, "spec": {"affinity": {"podAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "podAffinityTerm":
                {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}}]}}}}),
        );
        assert_eq!(
            score_all(&InterPodAffinity, &p, &cache, &Listers::default()),
            Some(vec![100, 0, 100])
        );
        assert_eq!(
            score_all(
                &InterPodAffinity,
                &labelled("q", "x"),
                &cache,
                &Listers::default()
            ),
            None
        );
    }
}
