//! NodeAffinity: `spec.nodeSelector` and required node affinity filter
//! nodes (a `metadata.name` field requirement narrows the search up
//! front); preferred node affinity scores them by the weights of the
//! terms they match.

use crate::scheduler::framework::{
    Ctx, CycleState, MAX_NODE_SCORE, Plugin, PreFilter, Status, default_normalize, events,
};
use crate::scheduler::node_info::NodeInfo;
use crate::scheduler::pod_info::PodInfo;

/// The plugin.
#[derive(Debug)]
pub(crate) struct NodeAffinity;

/// The rejection reason (upstream's `ErrReasonPod`).
pub(crate) const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

/// Whether `node` satisfies the pod's `nodeSelector` and required node
/// affinity (upstream's `GetRequiredNodeAffinity(pod).Match`).
pub(crate) fn required_matches(pod: &PodInfo, node: &NodeInfo) -> bool {
    let labels = &node.node.labels;
    pod.node_selector
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
        && pod
            .required_node_affinity
            .as_ref()
            .is_none_or(|s| s.matches(node.name(), labels))
}

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }
    fn events(&self) -> u32 {
        events::NODE_ADD | events::NODE_LABEL | events::NODE_TAINT
    }
    fn pre_filter(&self, cx: &Ctx<'_>, _state: &mut CycleState) -> PreFilter {
        let pod = cx.pod;
        let Some(required) = &pod.required_node_affinity else {
            return if pod.node_selector.is_empty() {
                PreFilter::Skip
            } else {
                PreFilter::Run(None)
            };
        };
        // Terms are ORed: only when every term names its nodes is the
        // search narrowed to their union.
        let mut names: Vec<String> = Vec::new();
        for term in &required.terms {
            match term.named_nodes() {
                None => return PreFilter::Run(None),
                Some(n) => names.extend(n.iter().cloned()),
            }
        }
        if required.terms.is_empty() {
            return PreFilter::Run(None);
        }
        names.sort();
        names.dedup();
        if names.is_empty() {
            return PreFilter::Reject(Status::unresolvable("pod affinity terms conflict"));
        }
        PreFilter::Run(Some(names))
    }
    fn filter(&self, cx: &Ctx<'_>, _state: &CycleState, node: &NodeInfo) -> Result<(), Status> {
        if required_matches(cx.pod, node) {
            Ok(())
        } else {
            Err(Status::unresolvable(REASON))
        }
    }
    fn weight(&self) -> i64 {
        2
    }
    fn pre_score(&self, cx: &Ctx<'_>, _state: &mut CycleState, _nodes: &[&NodeInfo]) -> bool {
        !cx.pod.preferred_node_affinity.is_empty()
    }
    fn score(&self, cx: &Ctx<'_>, _state: &CycleState, node: &NodeInfo) -> i64 {
        cx.pod
            .preferred_node_affinity
            .iter()
            .filter(|(_, t)| t.matches(node.name(), &node.node.labels))
            .map(|(w, _)| *w)
            .sum()
    }
    fn normalize(&self, _state: &CycleState, _nodes: &[&NodeInfo], scores: &mut [i64]) {
        default_normalize(MAX_NODE_SCORE, false, scores);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::listers::Listers;
    use crate::scheduler::node_info::test_nodes::node;
    use crate::scheduler::plugins::testing::{cache_of, filter_all, score_all};
    use crate::scheduler::pod_info::test_pods::pod;
    use serde_json::json;

    fn labelled(name: &str, labels: serde_json::Value) -> NodeInfo {
        node(json!({"metadata": {"name": name, "labels": labels}}))
    }

    #[test]
    fn selector_and_required_affinity_filter() {
        let cache = cache_of(&[
            labelled("a", json!({"disk": "ssd", "zone": "z1"})),
            labelled("b", json!({"disk": "hdd", "zone": "z1"})),
            labelled("c", json!({"disk": "ssd", "zone": "z2"})),
        ]);
        let p = pod(
            json!({"metadata": {"name": "p"}, "spec": {"nodeSelector": {"disk": "ssd"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]}}}}}),
        );
        let r = filter_all(&NodeAffinity, &p, &cache, &Listers::default());
        assert!(r[0].is_ok());
        assert_eq!(r[1].as_ref().unwrap_err().message(), REASON);
        assert!(r[2].is_err());
        let free = pod(json!({"metadata": {"name": "f"}}));
        let cx = Ctx {
            pod: &free,
            cache: &cache,
            listers: &Listers::default(),
        };
        assert!(matches!(
            NodeAffinity.pre_filter(&cx, &mut CycleState::default()),
            PreFilter::Skip
        ));
    }

    #[test]
    fn metadata_name_terms_narrow_the_search() {
        let cache = cache_of(&[labelled("a", json!({})), labelled("b", json!({}))]);
        let p = pod(
            json!({"metadata": {"name": "p"}, "spec": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}]}}}}}),
        );
        let listers = Listers::default();
        let cx = Ctx {
            pod: &p,
            cache: &cache,
            listers: &listers,
        };
        match NodeAffinity.pre_filter(&cx, &mut CycleState::default()) {
            PreFilter::Run(Some(names)) => assert_eq!(names, ["b"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn preferred_terms_score_by_weight() {
        let cache = cache_of(&[
            labelled("a", json!({"disk": "ssd"})),
            labelled("b", json!({"disk": "ssd", "gpu": "yes"})),
            labelled("c", json!({})),
        ]);
        let p = pod(
            json!({"metadata": {"name": "p"}, "spec": {"affinity": {"nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 1, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
                {"weight": 3, "preference": {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}}]}}}}),
        );
        assert_eq!(
            score_all(&NodeAffinity, &p, &cache, &Listers::default()),
            Some(vec![25, 100, 0])
        );
    }
}
