//! NodeResourcesBalancedAllocation: prefers nodes whose cpu and memory
//! would be used in equal shares after placing the pod. Best-effort pods
//! (no requests) are not scored, as upstream.

use crate::scheduler::framework::{Ctx, CycleState, MAX_NODE_SCORE, Plugin};
use crate::scheduler::node_info::NodeInfo;

/// The plugin.
#[derive(Debug)]
pub(crate) struct BalancedAllocation;

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }
    fn weight(&self) -> i64 {
        1
    }
    fn pre_score(&self, cx: &Ctx<'_>, _state: &mut CycleState, _nodes: &[&NodeInfo]) -> bool {
        cx.pod.requests.milli_cpu != 0 || cx.pod.requests.memory != 0
    }
    fn score(&self, cx: &Ctx<'_>, _state: &CycleState, node: &NodeInfo) -> i64 {
        let alloc = &node.node.allocatable;
        let mut fractions = [0f64; 2];
        let mut n = 0;
        for (capacity, requested) in [
            (
                alloc.milli_cpu,
                node.requested.milli_cpu + cx.pod.requests.milli_cpu,
            ),
            (alloc.memory, node.requested.memory + cx.pod.requests.memory),
        ] {
            if capacity == 0 {
                continue;
            }
            fractions[n] = (requested as f64 / capacity as f64).min(1.0);
            n += 1;
        }
        let std = if n == 2 {
            ((fractions[0] - fractions[1]) / 2.0).abs()
        } else {
            0.0
        };
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::listers::Listers;
    use crate::scheduler::node_info::test_nodes::sized;
    use crate::scheduler::plugins::testing::{cache_of, score_all};
    use crate::scheduler::pod_info::test_pods::{pod, sized as sized_pod};
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn balanced_use_scores_higher() {
        let mut cpu_heavy = sized("a", "4", "4Gi");
        cpu_heavy.add_pod(Arc::new(sized_pod("x", "3", "0")));
        let cache = cache_of(&[cpu_heavy, sized("b", "4", "4Gi")]);
        let s = score_all(
            &BalancedAllocation,
            &sized_pod("p", "1", "1Gi"),
            &cache,
            &Listers::default(),
        );
        // a: cpu 1.0, mem 0.25 -> std 0.375 -> 62; b: 0.25/0.25 -> 100.
        assert_eq!(s, Some(vec![62, 100]));
        let best_effort = pod(json!({"metadata": {"name": "be"}}));
        assert_eq!(
            score_all(
                &BalancedAllocation,
                &best_effort,
                &cache,
                &Listers::default()
            ),
            None
        );
    }
}
