//! NodeName: a pod naming a node (`spec.nodeName`) fits only that node.

use crate::scheduler::framework::{Ctx, CycleState, Plugin, PreFilter, Status, events};
use crate::scheduler::node_info::NodeInfo;

/// The plugin.
#[derive(Debug)]
pub(crate) struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }
    fn events(&self) -> u32 {
        events::NODE_ADD | events::NODE_LABEL | events::NODE_TAINT
    }
    fn pre_filter(&self, cx: &Ctx<'_>, _state: &mut CycleState) -> PreFilter {
        if cx.pod.node_name.is_empty() {
            PreFilter::Skip
        } else {
            PreFilter::Run(None)
        }
    }
    fn filter(&self, cx: &Ctx<'_>, _state: &CycleState, node: &NodeInfo) -> Result<(), Status> {
        if cx.pod.node_name.is_empty() || cx.pod.node_name == node.name() {
            return Ok(());
        }
        Err(Status::unresolvable(
            "node(s) didn't match the requested node name",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::listers::Listers;
    use crate::scheduler::node_info::test_nodes::sized;
    use crate::scheduler::plugins::testing::{cache_of, filter_all};
    use crate::scheduler::pod_info::test_pods::pod;
    use serde_json::json;

    #[test]
    fn only_the_named_node() {
        let cache = cache_of(&[sized("a", "1", "1Gi"), sized("b", "1", "1Gi")]);
        let mut p = pod(json!({"metadata": {"name": "p"}}));
        p.node_name = "b".into();
        let r = filter_all(&NodeName, &p, &cache, &Listers::default());
        assert_eq!(
            r[0].as_ref().unwrap_err().message(),
            "node(s) didn't match the requested node name"
        );
        assert!(r[1].is_ok());
    }
}
