//! NodeUnschedulable: a cordoned node (`spec.unschedulable`) takes only
//! pods tolerating `node.kubernetes.io/unschedulable:NoSchedule`.

use k8s_openapi::api::core::v1::Taint;

use super::taint_toleration::tolerates;
use crate::scheduler::framework::{Ctx, CycleState, Plugin, PreFilter, Status, events};
use crate::scheduler::node_info::NodeInfo;

/// The plugin.
#[derive(Debug)]
pub(crate) struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }
    fn events(&self) -> u32 {
        events::NODE_ADD | events::NODE_TAINT
    }
    fn pre_filter(&self, _cx: &Ctx<'_>, _state: &mut CycleState) -> PreFilter {
        PreFilter::Run(None)
    }
    fn filter(&self, cx: &Ctx<'_>, _state: &CycleState, node: &NodeInfo) -> Result<(), Status> {
        if !node.node.unschedulable {
            return Ok(());
        }
        let taint = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if cx.pod.tolerations.iter().any(|t| tolerates(t, &taint)) {
            return Ok(());
        }
        Err(Status::unresolvable("node(s) were unschedulable"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::listers::Listers;
    use crate::scheduler::node_info::test_nodes::node;
    use crate::scheduler::plugins::testing::{cache_of, filter_all};
    use crate::scheduler::pod_info::test_pods::pod;
    use serde_json::json;

    #[test]
    fn cordoned_nodes_take_only_tolerating_pods() {
        let cache = cache_of(&[
            node(json!({"metadata": {"name": "a"}, "spec": {"unschedulable": true}})),
            node(json!({"metadata": {"name": "b"}})),
        ]);
        let p = pod(json!({"metadata": {"name": "p"}}));
        let r = filter_all(&NodeUnschedulable, &p, &cache, &Listers::default());
        assert_eq!(
            r[0].as_ref().unwrap_err().message(),
            "node(s) were unschedulable"
        );
        assert!(r[1].is_ok());
        let t = pod(json!({"metadata": {"name": "t"}, "spec": {"tolerations": [
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}}));
        assert!(filter_all(&NodeUnschedulable, &t, &cache, &Listers::default())[0].is_ok());
    }
}
