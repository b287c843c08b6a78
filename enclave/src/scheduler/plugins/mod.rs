//! The plugins of the default profile, one module each, named as upstream.

pub(crate) mod balanced_allocation;
pub(crate) mod image_locality;
pub(crate) mod inter_pod_affinity;
pub(crate) mod node_affinity;
pub(crate) mod node_name;
pub(crate) mod node_ports;
pub(crate) mod node_unschedulable;
pub(crate) mod resources_fit;
pub(crate) mod taint_toleration;
pub(crate) mod topology_spread;
pub(crate) mod volume_binding;

#[cfg(test)]
pub(crate) mod testing {
    //! Runs one plugin's extension points the way the framework does.
    use super::super::cache::Cache;
    use super::super::framework::{Ctx, CycleState, Plugin, PreFilter, Status};
    use super::super::listers::Listers;
    use super::super::node_info::NodeInfo;
    use super::super::pod_info::PodInfo;

    /// A cache holding `nodes` (with their pods).
    pub(crate) fn cache_of(nodes: &[NodeInfo]) -> Cache {
        let mut c = Cache::new();
        for n in nodes {
            c.upsert_node((*n.node).clone());
            for p in &n.pods {
                let mut p = (**p).clone();
                p.node_name = n.name().to_string();
                c.add_pod(std::sync::Arc::new(p));
            }
        }
        c.refresh();
        c
    }

    /// PreFilter then Filter of `plugin` for `pod` on every node of `cache`.
    pub(crate) fn filter_all(
        plugin: &dyn Plugin,
        pod: &PodInfo,
        cache: &Cache,
        listers: &Listers,
    ) -> Vec<Result<(), Status>> {
        let cx = Ctx {
            pod,
            cache,
            listers,
        };
        let mut state = CycleState::default();
        match plugin.pre_filter(&cx, &mut state) {
            PreFilter::Skip => return cache.nodes().map(|_| Ok(())).collect(),
            PreFilter::Reject(s) => return cache.nodes().map(|_| Err(s.clone())).collect(),
            PreFilter::Run(_) => {}
        }
        cache
            .nodes()
            .map(|n| plugin.filter(&cx, &state, n))
            .collect()
    }

    /// PreScore, Score and NormalizeScore of `plugin` for `pod` on every
    /// node of `cache`; `None` when PreScore skips.
    pub(crate) fn score_all(
        plugin: &dyn Plugin,
        pod: &PodInfo,
        cache: &Cache,
        listers: &Listers,
    ) -> Option<Vec<i64>> {
        let cx = Ctx {
            pod,
            cache,
            listers,
        };
        let mut state = CycleState::default();
        let nodes: Vec<&NodeInfo> = cache.nodes().collect();
        if !plugin.pre_score(&cx, &mut state, &nodes) {
            return None;
        }
        let mut scores: Vec<i64> = nodes.iter().map(|n| plugin.score(&cx, &state, n)).collect();
        plugin.normalize(&state, &nodes, &mut scores);
        Some(scores)
    }
}
