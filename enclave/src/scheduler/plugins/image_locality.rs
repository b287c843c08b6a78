//! ImageLocality: prefers nodes that already have the pod's images,
//! weighted by image size and by how widely the image is spread (so a
//! popular image does not pull every pod to the same node).

use crate::scheduler::framework::{Ctx, CycleState, MAX_NODE_SCORE, Plugin};
use crate::scheduler::node_info::NodeInfo;

/// The plugin.
#[derive(Debug)]
pub(crate) struct ImageLocality;

const MB: i64 = 1024 * 1024;
/// Below this total the score is 0 (upstream's `minThreshold`).
const MIN_THRESHOLD: i64 = 23 * MB;
/// Per container, above this the score is 100 (upstream's `maxContainerThreshold`).
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        "ImageLocality"
    }
    fn weight(&self) -> i64 {
        1
    }
    fn score(&self, cx: &Ctx<'_>, _state: &CycleState, node: &NodeInfo) -> i64 {
        let total_nodes = cx.cache.num_nodes().max(1) as f64;
        let mut sum: i64 = 0;
        if !node.node.images.is_empty() {
            for image in &cx.pod.images {
                if let Some((_, size)) = node.node.images.iter().find(|(n, _)| n == image) {
                    let spread = cx.cache.image_spread(image) as f64 / total_nodes;
                    sum += (*size as f64 * spread) as i64;
                }
            }
        }
        let max_threshold = MAX_CONTAINER_THRESHOLD * cx.pod.images.len().max(1) as i64;
        let clamped = sum.clamp(MIN_THRESHOLD, max_threshold);
        MAX_NODE_SCORE * (clamped - MIN_THRESHOLD) / (max_threshold - MIN_THRESHOLD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::listers::Listers;
    use crate::scheduler::node_info::test_nodes::node;
    use crate::scheduler::plugins::testing::{cache_of, score_all};
    use crate::scheduler::pod_info::test_pods::pod;
    use serde_json::json;

    #[test]
    fn nodes_with_big_images_score_higher() {
        let with = |name: &str, images: serde_json::Value| {
            node(json!({"metadata": {"name": name}, "status": {"images": images}}))
        };
        let cache = cache_of(&[
            with("a", json!([{"names": ["big:1"], "sizeBytes": 500 * MB}])),
            with("b", json!([])),
        ]);
        let p = pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "big:1"}]}}),
        );
        // 500 MB on half the nodes -> 250 MB: (250-23)/(1000-23) of 100.
        assert_eq!(
            score_all(&ImageLocality, &p, &cache, &Listers::default()),
            Some(vec![23, 0])
        );
    }
}
