//! NodePorts: a pod's host ports must be free on the node.

use crate::scheduler::framework::{Ctx, CycleState, Plugin, PreFilter, Status, events};
use crate::scheduler::node_info::NodeInfo;
use crate::scheduler::pod_info::PodInfo;

/// The plugin.
#[derive(Debug)]
pub(crate) struct NodePorts;

/// The rejection reason (upstream's `ErrReason`).
pub(crate) const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

/// Whether every host port of `pod` is free on `node`.
pub(crate) fn fits(pod: &PodInfo, node: &NodeInfo) -> bool {
    !pod.host_ports.iter().any(|p| node.port_conflicts(p))
}

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }
    fn events(&self) -> u32 {
        events::POD_DELETE | events::NODE_ADD | events::NODE_LABEL | events::NODE_TAINT
    }
    fn pre_filter(&self, cx: &Ctx<'_>, _state: &mut CycleState) -> PreFilter {
        if cx.pod.host_ports.is_empty() {
            PreFilter::Skip
        } else {
            PreFilter::Run(None)
        }
    }
    fn filter(&self, cx: &Ctx<'_>, _state: &CycleState, node: &NodeInfo) -> Result<(), Status> {
        if fits(cx.pod, node) {
            Ok(())
        } else {
            Err(Status::unschedulable(REASON))
        }
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
    use std::sync::Arc;

    fn with_port(name: &str, port: i64) -> crate::scheduler::pod_info::PodInfo {
        pod(json!({"metadata": {"name": name}, "spec": {"containers": [
            {"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": port}]}]}}))
    }

    #[test]
    fn taken_host_ports_reject() {
        let mut busy = sized("a", "4", "4Gi");
        busy.add_pod(Arc::new(with_port("x", 8080)));
        let cache = cache_of(&[busy, sized("b", "4", "4Gi")]);
        let r = filter_all(
            &NodePorts,
            &with_port("p", 8080),
            &cache,
            &Listers::default(),
        );
        assert_eq!(r[0].as_ref().unwrap_err().message(), REASON);
        assert!(r[1].is_ok());
        assert!(
            filter_all(
                &NodePorts,
                &with_port("q", 9090),
                &cache,
                &Listers::default()
            )
            .iter()
            .all(Result::is_ok)
        );
    }
}
