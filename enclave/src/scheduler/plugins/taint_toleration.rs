//! TaintToleration: a node's `NoSchedule`/`NoExecute` taints must be
//! tolerated; untolerated `PreferNoSchedule` taints lower the score.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::scheduler::framework::{
    Ctx, CycleState, MAX_NODE_SCORE, Plugin, PreFilter, Status, default_normalize, events,
};
use crate::scheduler::node_info::NodeInfo;

/// The plugin.
#[derive(Debug)]
pub(crate) struct TaintToleration;

/// Whether `t` tolerates `taint` (upstream's `Toleration.ToleratesTaint`).
pub(crate) fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    if t.key
        .as_deref()
        .is_some_and(|k| !k.is_empty() && k != taint.key)
    {
        return false;
    }
    match t.operator.as_deref() {
        None | Some("") | Some("Equal") => {
            t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        Some("Exists") => true,
        _ => false,
    }
}

/// The first taint passing `relevant` that no toleration tolerates.
pub(crate) fn untolerated<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    relevant: impl Fn(&Taint) -> bool,
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| relevant(t))
        .find(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
}

/// `NoSchedule` and `NoExecute` taints (upstream's `DoNotScheduleTaintsFilterFunc`).
pub(crate) fn do_not_schedule(t: &Taint) -> bool {
    t.effect == "NoSchedule" || t.effect == "NoExecute"
}

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }
    fn events(&self) -> u32 {
        events::NODE_ADD | events::NODE_TAINT
    }
    fn pre_filter(&self, _cx: &Ctx<'_>, _state: &mut CycleState) -> PreFilter {
        PreFilter::Run(None)
    }
    fn filter(&self, cx: &Ctx<'_>, _state: &CycleState, node: &NodeInfo) -> Result<(), Status> {
        match untolerated(&node.node.taints, &cx.pod.tolerations, do_not_schedule) {
            None => Ok(()),
            Some(t) => Err(Status::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or("")
            ))),
        }
    }
    fn weight(&self) -> i64 {
        3
    }
    fn score(&self, cx: &Ctx<'_>, _state: &CycleState, node: &NodeInfo) -> i64 {
        // Only tolerations that can tolerate PreferNoSchedule count.
        let prefer = |t: &&Toleration| {
            matches!(
                t.effect.as_deref(),
                None | Some("") | Some("PreferNoSchedule")
            )
        };
        node.node
            .taints
            .iter()
            .filter(|taint| taint.effect == "PreferNoSchedule")
            .filter(|taint| {
                !cx.pod
                    .tolerations
                    .iter()
                    .filter(prefer)
                    .any(|t| tolerates(t, taint))
            })
            .count() as i64
    }
    fn normalize(&self, _state: &CycleState, _nodes: &[&NodeInfo], scores: &mut [i64]) {
        default_normalize(MAX_NODE_SCORE, true, scores);
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

    fn tainted(name: &str, taints: serde_json::Value) -> NodeInfo {
        node(json!({"metadata": {"name": name}, "spec": {"taints": taints}}))
    }

    #[test]
    fn untolerated_no_schedule_taints_reject_with_upstream_wording() {
        let cache = cache_of(&[
            tainted(
                "a",
                json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
            ),
            tainted("b", json!([{"key": "x", "effect": "PreferNoSchedule"}])),
            tainted(
                "c",
                json!([{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}]),
            ),
        ]);
        let plain = pod(json!({"metadata": {"name": "p"}}));
        let r = filter_all(&TaintToleration, &plain, &cache, &Listers::default());
        assert_eq!(
            r[0].as_ref().unwrap_err().message(),
            "node(s) had untolerated taint {dedicated: gpu}"
        );
        assert!(r[1].is_ok() && r[2].is_err());
        let tolerant = pod(json!({"metadata": {"name": "t"}, "spec": {"tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
            {"key": "dedicated", "operator": "Exists"}]}}));
        assert!(
            filter_all(&TaintToleration, &tolerant, &cache, &Listers::default())
                .iter()
                .all(Result::is_ok)
        );
    }

    #[test]
    fn prefer_no_schedule_lowers_the_score() {
        let cache = cache_of(&[
            tainted("a", json!([])),
            tainted("b", json!([{"key": "x", "effect": "PreferNoSchedule"}])),
            tainted(
                "c",
                json!([{"key": "x", "effect": "PreferNoSchedule"}, {"key": "y", "effect": "PreferNoSchedule"}]),
            ),
        ]);
        let p = pod(json!({"metadata": {"name": "p"}}));
        assert_eq!(
            score_all(&TaintToleration, &p, &cache, &Listers::default()),
            Some(vec![100, 50, 0])
        );
        let t = pod(
            json!({"metadata": {"name": "t"}, "spec": {"tolerations": [{"key": "x", "operator": "Exists", "effect": "PreferNoSchedule"}]}}),
        );
        assert_eq!(
            score_all(&TaintToleration, &t, &cache, &Listers::default()),
            Some(vec![100, 100, 0])
        );
    }
}
