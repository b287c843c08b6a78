//! NodeResourcesFit: the pod's requests must fit what the node has left
//! (and the node's pod count); nodes are scored LeastAllocated on cpu and
//! memory (weight 1 each), counting the non-zero requests.

use std::borrow::Cow;

use crate::scheduler::framework::{
    Code, Ctx, CycleState, MAX_NODE_SCORE, Plugin, PreFilter, Status, events,
};
use crate::scheduler::node_info::NodeInfo;
use crate::scheduler::pod_info::PodInfo;

/// The plugin.
#[derive(Debug)]
pub(crate) struct NodeResourcesFit;

/// What is short on a node for a pod (upstream's `fitsRequest`): the
/// reasons, and whether the pod asks more than the node has at all (then
/// preemption cannot help).
pub(crate) fn insufficient(pod: &PodInfo, node: &NodeInfo) -> (Vec<Cow<'static, str>>, bool) {
    let mut out: Vec<Cow<'static, str>> = Vec::new();
    let mut unresolvable = false;
    if node.pods.len() as i64 + 1 > node.allowed_pods() {
        out.push(Cow::Borrowed("Too many pods"));
    }
    let req = &pod.requests;
    if req.is_zero() {
        return (out, unresolvable);
    }
    let alloc = &node.node.allocatable;
    let used = &node.requested;
    let mut check = |want: i64, have: i64, taken: i64, reason: Cow<'static, str>| {
        if want > 0 && want > have - taken {
            unresolvable |= want > have;
            out.push(reason);
        }
    };
    check(
        req.milli_cpu,
        alloc.milli_cpu,
        used.milli_cpu,
        Cow::Borrowed("Insufficient cpu"),
    );
    check(
        req.memory,
        alloc.memory,
        used.memory,
        Cow::Borrowed("Insufficient memory"),
    );
    check(
        req.ephemeral_storage,
        alloc.ephemeral_storage,
        used.ephemeral_storage,
        Cow::Borrowed("Insufficient ephemeral-storage"),
    );
    for (name, want) in &req.scalar {
        if *want != 0 {
            let reason = Cow::Owned(format!("Insufficient {name}"));
            check(*want, alloc.scalar(name), used.scalar(name), reason);
        }
    }
    (out, unresolvable)
}

/// upstream's `leastRequestedScore`.
fn least_requested(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }
    fn events(&self) -> u32 {
        events::POD_DELETE
            | events::NODE_ADD
            | events::NODE_ALLOCATABLE
            | events::NODE_TAINT
            | events::NODE_LABEL
    }
    fn pre_filter(&self, _cx: &Ctx<'_>, _state: &mut CycleState) -> PreFilter {
        PreFilter::Run(None)
    }
    fn filter(&self, cx: &Ctx<'_>, _state: &CycleState, node: &NodeInfo) -> Result<(), Status> {
        let (reasons, unresolvable) = insufficient(cx.pod, node);
        if reasons.is_empty() {
            return Ok(());
        }
        Err(Status {
            code: if unresolvable {
                Code::UnschedulableAndUnresolvable
            } else {
                Code::Unschedulable
            },
            reasons,
            plugin: usize::MAX,
        })
    }
    fn weight(&self) -> i64 {
        1
    }
    fn score(&self, cx: &Ctx<'_>, _state: &CycleState, node: &NodeInfo) -> i64 {
        let alloc = &node.node.allocatable;
        let mut sum = 0;
        let mut weights = 0;
        for (capacity, requested) in [
            (
                alloc.milli_cpu,
                node.non_zero_requested.milli_cpu + cx.pod.non_zero.milli_cpu,
            ),
            (
                alloc.memory,
                node.non_zero_requested.memory + cx.pod.non_zero.memory,
            ),
        ] {
            if capacity == 0 {
                continue;
            }
            sum += least_requested(requested, capacity);
            weights += 1;
        }
        if weights == 0 { 0 } else { sum / weights }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::listers::Listers;
    use crate::scheduler::node_info::test_nodes::sized;
    use crate::scheduler::plugins::testing::{cache_of, filter_all, score_all};
    use crate::scheduler::pod_info::test_pods::{pod, sized as sized_pod};
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn short_resources_are_all_named() {
        let mut full = sized("a", "2", "2Gi");
        full.add_pod(Arc::new(sized_pod("x", "1500m", "1Gi")));
        let cache = cache_of(&[full, sized("b", "4", "4Gi"), sized("c", "1", "8Gi")]);
        let r = filter_all(
            &NodeResourcesFit,
            &sized_pod("p", "1", "1500Mi"),
            &cache,
            &Listers::default(),
        );
        let a = r[0].as_ref().unwrap_err();
        assert_eq!(a.message(), "Insufficient cpu, Insufficient memory");
        assert_eq!(
            a.code,
            Code::Unschedulable,
            "preemption could free the node"
        );
        assert!(r[1].is_ok());
        let big = filter_all(
            &NodeResourcesFit,
            &sized_pod("big", "3", "1Gi"),
            &cache,
            &Listers::default(),
        );
        assert_eq!(
            big[2].as_ref().unwrap_err().code,
            Code::UnschedulableAndUnresolvable
        );
        let gpu = pod(json!({"metadata": {"name": "g"}, "spec": {"containers": [
            {"name": "c", "image": "i", "resources": {"requests": {"example.com/gpu": "1"}}}]}}));
        let r = filter_all(&NodeResourcesFit, &gpu, &cache, &Listers::default());
        assert_eq!(
            r[1].as_ref().unwrap_err().message(),
            "Insufficient example.com/gpu"
        );
    }

    #[test]
    fn pod_count_is_a_resource() {
        let mut n =
            crate::scheduler::node_info::test_nodes::node(json!({"metadata": {"name": "a"},
            "status": {"allocatable": {"cpu": "4", "memory": "4Gi", "pods": "1"}}}));
        n.add_pod(Arc::new(sized_pod("x", "0", "0")));
        let cache = cache_of(&[n]);
        let r = filter_all(
            &NodeResourcesFit,
            &pod(json!({"metadata": {"name": "p"}})),
            &cache,
            &Listers::default(),
        );
        assert_eq!(r[0].as_ref().unwrap_err().message(), "Too many pods");
    }

    #[test]
    fn least_allocated_prefers_emptier_nodes() {
        let mut half = sized("a", "4", "4Gi");
        half.add_pod(Arc::new(sized_pod("x", "2", "2Gi")));
        let cache = cache_of(&[half, sized("b", "4", "4Gi")]);
        let s = score_all(
            &NodeResourcesFit,
            &sized_pod("p", "1", "1Gi"),
            &cache,
            &Listers::default(),
        );
        // a: cpu (4-3)/4 = 25, mem 25 -> 25; b: 75.
        assert_eq!(s, Some(vec![25, 75]));
    }
}
