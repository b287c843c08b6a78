//! The scheduler's cache: every node with the pods bound or assumed to it,
//! fed by the watches (upstream's `internal/cache` and its node tree).
//!
//! A pod the scheduler picks a node for is *assumed* at once, so it counts
//! on that node in the very next cycle, before the bind's watch event comes
//! back; the event then confirms it, or a failed bind forgets it.
//!
//! Only the scheduler's loop touches the cache, between scheduling cycles,
//! so a cycle reads it as a consistent snapshot without copying.
//!
//! Two indexes serve PodTopologySpread, which otherwise visits every pod
//! on every node in each cycle: the nodes grouped by the value of a
//! topology key, and per-node counts of the pods a (namespace, selector)
//! selects, kept up to date as pods come and go. Both are built on first
//! use; a few recent selectors are kept.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use super::labels::Selector;
use super::node_info::{NodeData, NodeInfo};
use super::pod_info::PodInfo;

/// Selectors whose per-node counts are kept.
const MATCH_MEMOS: usize = 16;

/// Per-node counts of the pods of `namespace` that `selector` selects
/// (terminating pods not counted, as upstream's `countPodsMatchSelector`).
#[derive(Debug)]
struct MatchMemo {
    namespace: String,
    selector: Selector,
    per_slot: Vec<u32>,
}

impl MatchMemo {
    fn counts(&self, pod: &PodInfo) -> bool {
        !pod.deleting && pod.namespace == self.namespace && self.selector.matches(&pod.labels)
    }
}

/// Present nodes grouped by the value of one topology key.
pub(crate) type Domains = Arc<Vec<(String, Vec<usize>)>>;

/// Where a known pod is.
#[derive(Debug, Clone)]
struct PodState {
    node: String,
    assumed: bool,
}

/// Nodes and the pods on them.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    slots: Vec<Option<NodeInfo>>,
    free: Vec<usize>,
    by_name: HashMap<String, usize>,
    /// Zones in order of first appearance, each with its nodes in the
    /// order they were added (upstream's `nodeTree`).
    zones: Vec<(String, Vec<String>)>,
    /// Present nodes in node-tree order (zones interleaved); rebuilt by
    /// [`Cache::refresh`] after nodes come or go.
    order: Vec<usize>,
    order_dirty: bool,
    pods: HashMap<String, PodState>,
    /// How many present nodes report each image name.
    image_nodes: HashMap<String, usize>,
    /// Counted pods with pod affinity or anti-affinity.
    with_affinity: usize,
    /// Counted pods with required anti-affinity.
    with_required_anti_affinity: usize,
    /// Per-node counts of recently used (namespace, selector) pairs.
    matches: RefCell<Vec<MatchMemo>>,
    /// Nodes by topology value, per key; dropped when nodes change.
    domains: RefCell<HashMap<String, Domains>>,
}

impl Cache {
    /// An empty cache.
    pub(crate) fn new() -> Self {
        Cache::default()
    }

    fn slot(&mut self, name: &str) -> usize {
        if let Some(&i) = self.by_name.get(name) {
            return i;
        }
        let mut info = NodeInfo::new(Arc::new(NodeData::absent(name)), false);
        info.slot = self.free.last().copied().unwrap_or(self.slots.len());
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(info);
                i
            }
            None => {
                self.slots.push(Some(info));
                self.slots.len() - 1
            }
        };
        self.by_name.insert(name.to_string(), i);
        i
    }

    fn info_mut(&mut self, i: usize) -> Option<&mut NodeInfo> {
        self.slots.get_mut(i).and_then(Option::as_mut)
    }

    fn count_images(&mut self, node: &NodeData, delta: isize) {
        for (name, _) in &node.images {
            let c = self.image_nodes.entry(name.clone()).or_insert(0);
            *c = c.saturating_add_signed(delta);
            if *c == 0 {
                self.image_nodes.remove(name);
            }
        }
    }

    fn tree_remove(&mut self, zone: &str, name: &str) {
        if let Some(z) = self.zones.iter().position(|(k, _)| k == zone) {
            self.zones[z].1.retain(|n| n != name);
            if self.zones[z].1.is_empty() {
                self.zones.remove(z);
            }
        }
    }

    fn tree_add(&mut self, zone: String, name: &str) {
        match self.zones.iter_mut().find(|(k, _)| *k == zone) {
            Some((_, nodes)) => nodes.push(name.to_string()),
            None => self.zones.push((zone, vec![name.to_string()])),
        }
    }

    /// Adds or replaces a node, keeping the pods already on it.
    pub(crate) fn upsert_node(&mut self, node: NodeData) {
        let i = self.slot(&node.name);
        let Some(old) = self.info_mut(i).map(|n| (n.node.clone(), n.present)) else {
            return;
        };
        let (old_node, was_present) = old;
        if was_present {
            self.count_images(&old_node, -1);
            let (oz, nz) = (old_node.zone_key(), node.zone_key());
            if oz != nz {
                self.tree_remove(&oz, &node.name);
                self.tree_add(nz, &node.name);
                self.order_dirty = true;
            }
        } else {
            self.tree_add(node.zone_key(), &node.name);
            self.order_dirty = true;
        }
        self.count_images(&node, 1);
        if !was_present || old_node.labels != node.labels {
            self.domains.get_mut().clear();
        }
        if let Some(info) = self.info_mut(i) {
            info.node = Arc::new(node);
            info.present = true;
        }
    }

    /// Removes a node. Pods still bound to it stay counted on a
    /// placeholder until their deletions arrive, as upstream keeps them.
    pub(crate) fn remove_node(&mut self, name: &str) {
        let Some(&i) = self.by_name.get(name) else {
            return;
        };
        let Some((node, present, empty)) = self
            .info_mut(i)
            .map(|n| (n.node.clone(), n.present, n.pods.is_empty()))
        else {
            return;
        };
        if present {
            self.count_images(&node, -1);
            self.tree_remove(&node.zone_key(), name);
            self.order_dirty = true;
            self.domains.get_mut().clear();
        }
        if empty {
            self.drop_slot(name, i);
        } else if let Some(info) = self.info_mut(i) {
            info.present = false;
            info.node = Arc::new(NodeData::absent(name));
        }
    }

    fn drop_slot(&mut self, name: &str, i: usize) {
        self.slots[i] = None;
        self.free.push(i);
        self.by_name.remove(name);
    }

    /// Rebuilds the node order after nodes came or went.
    pub(crate) fn refresh(&mut self) {
        if !self.order_dirty {
            return;
        }
        self.order_dirty = false;
        self.order.clear();
        let longest = self.zones.iter().map(|(_, n)| n.len()).max().unwrap_or(0);
        for k in 0..longest {
            for (_, nodes) in &self.zones {
                if let Some(&i) = nodes.get(k).and_then(|n| self.by_name.get(n)) {
                    self.order.push(i);
                }
            }
        }
    }

    /// Counts a pod bound to `pod.node_name`, replacing an earlier version
    /// (and confirming an assumed one).
    pub(crate) fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.remove_pod(&pod.uid);
        let i = self.slot(&pod.node_name);
        if let Some(info) = self.info_mut(i) {
            info.add_pod(pod.clone());
        }
        self.with_affinity += usize::from(pod.has_pod_affinity);
        self.with_required_anti_affinity += usize::from(pod.has_required_anti_affinity());
        for m in self.matches.get_mut().iter_mut() {
            if m.counts(&pod) {
                if m.per_slot.len() <= i {
                    m.per_slot.resize(i + 1, 0);
                }
                m.per_slot[i] += 1;
            }
        }
        self.pods.insert(
            pod.uid.clone(),
            PodState {
                node: pod.node_name.clone(),
                assumed: false,
            },
        );
    }

    /// Counts `pod` on `node` before its bind is confirmed.
    pub(crate) fn assume_pod(&mut self, pod: Arc<PodInfo>) {
        self.add_pod(pod.clone());
        if let Some(st) = self.pods.get_mut(&pod.uid) {
            st.assumed = true;
        }
    }

    /// Whether the pod is assumed and not confirmed yet.
    pub(crate) fn is_assumed(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|p| p.assumed)
    }

    /// Whether the pod is counted on a node.
    pub(crate) fn has_pod(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    /// Stops counting a pod; returns it.
    pub(crate) fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let st = self.pods.remove(uid)?;
        let i = *self.by_name.get(&st.node)?;
        let (pod, drop_it) = {
            let info = self.info_mut(i)?;
            let pod = info.remove_pod(uid);
            (pod, !info.present && info.pods.is_empty())
        };
        if drop_it {
            self.drop_slot(&st.node, i);
        }
        if let Some(p) = &pod {
            self.with_affinity -= usize::from(p.has_pod_affinity);
            self.with_required_anti_affinity -= usize::from(p.has_required_anti_affinity());
            for m in self.matches.get_mut().iter_mut() {
                if m.counts(p)
                    && let Some(c) = m.per_slot.get_mut(i)
                {
                    *c = c.saturating_sub(1);
                }
            }
        }
        pod
    }

    /// Per-node counts (by slot) of the pods of `namespace` that
    /// `selector` selects.
    pub(crate) fn matching(&self, namespace: &str, selector: &Selector) -> Vec<u32> {
        let mut memos = self.matches.borrow_mut();
        if let Some(m) = memos
            .iter()
            .find(|m| m.namespace == namespace && m.selector == *selector)
        {
            return m.per_slot.clone();
        }
        let mut memo = MatchMemo {
            namespace: namespace.to_string(),
            selector: selector.clone(),
            per_slot: vec![0; self.slots.len()],
        };
        for info in self.slots.iter().flatten() {
            memo.per_slot[info.slot] = info.pods.iter().filter(|p| memo.counts(p)).count() as u32;
        }
        let counts = memo.per_slot.clone();
        if memos.len() >= MATCH_MEMOS {
            memos.remove(0);
        }
        memos.push(memo);
        counts
    }

    /// The present nodes that have label `key`, grouped by its value.
    pub(crate) fn domains(&self, key: &str) -> Domains {
        if let Some(d) = self.domains.borrow().get(key) {
            return d.clone();
        }
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for info in self.nodes() {
            let Some(v) = info.node.labels.get(key) else {
                continue;
            };
            match index.get(v.as_str()) {
                Some(&g) => groups[g].1.push(info.slot),
                None => {
                    index.insert(v.as_str(), groups.len());
                    groups.push((v.clone(), vec![info.slot]));
                }
            }
        }
        let d: Domains = Arc::new(groups);
        self.domains.borrow_mut().insert(key.to_string(), d.clone());
        d
    }

    /// The node in `slot`.
    pub(crate) fn at_slot(&self, slot: usize) -> Option<&NodeInfo> {
        self.slots.get(slot).and_then(Option::as_ref)
    }

    /// Whether any counted pod has pod affinity or anti-affinity.
    pub(crate) fn any_pod_affinity(&self) -> bool {
        self.with_affinity > 0
    }

    /// Whether any counted pod has required anti-affinity.
    pub(crate) fn any_required_anti_affinity(&self) -> bool {
        self.with_required_anti_affinity > 0
    }

    /// The present nodes in node-tree order (call [`Cache::refresh`] first).
    pub(crate) fn nodes(&self) -> impl Iterator<Item = &NodeInfo> + Clone {
        self.order
            .iter()
            .filter_map(|&i| self.slots.get(i).and_then(Option::as_ref))
    }

    /// The number of present nodes.
    pub(crate) fn num_nodes(&self) -> usize {
        self.order.len()
    }

    /// The `k`-th present node in node-tree order.
    pub(crate) fn node_at(&self, k: usize) -> Option<&NodeInfo> {
        let i = *self.order.get(k)?;
        self.slots.get(i).and_then(Option::as_ref)
    }

    /// A node by name (present or placeholder).
    pub(crate) fn node(&self, name: &str) -> Option<&NodeInfo> {
        let i = *self.by_name.get(name)?;
        self.slots.get(i).and_then(Option::as_ref)
    }

    /// How many present nodes report image `name`.
    pub(crate) fn image_spread(&self, name: &str) -> usize {
        self.image_nodes.get(name).copied().unwrap_or(0)
    }

    /// The uids of every pod counted.
    pub(crate) fn pod_uids(&self) -> Vec<String> {
        self.pods.keys().cloned().collect()
    }

    /// The number of pods counted.
    #[cfg(test)]
    pub(crate) fn num_pods(&self) -> usize {
        self.pods.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::pod_info::test_pods::sized;
    use k8s_openapi::api::core::v1::Node;
    use serde_json::json;

    fn node(name: &str, zone: Option<&str>) -> NodeData {
        let mut v = json!({"metadata": {"name": name, "labels": {}}, "status": {"capacity": {"cpu": "4", "pods": "10"},
            "images": [{"names": ["nginx:1"], "sizeBytes": 100}]}});
        if let Some(z) = zone {
            v["metadata"]["labels"]["topology.kubernetes.io/zone"] = json!(z);
        }
        let n: Node = serde_json::from_value(v).unwrap();
        NodeData::new(&n)
    }

    fn names(c: &Cache) -> Vec<String> {
        c.nodes().map(|n| n.name().to_string()).collect()
    }

    #[test]
    fn node_tree_interleaves_zones() {
        let mut c = Cache::new();
        for (n, z) in [
            ("a1", "a"),
            ("a2", "a"),
            ("b1", "b"),
            ("a3", "a"),
            ("c1", "c"),
        ] {
            c.upsert_node(node(n, Some(z)));
        }
        c.refresh();
        assert_eq!(names(&c), ["a1", "b1", "c1", "a2", "a3"]);
        c.remove_node("b1");
        c.refresh();
        assert_eq!(names(&c), ["a1", "c1", "a2", "a3"]);
        assert_eq!(c.image_spread("nginx:1"), 4);
    }

    #[test]
    fn assumed_pods_count_until_confirmed_or_forgotten() {
        let mut c = Cache::new();
        c.upsert_node(node("n1", None));
        c.refresh();
        let mut p = sized("p", "1", "1Gi");
        p.node_name = "n1".into();
        let p = Arc::new(p);
        c.assume_pod(p.clone());
        assert!(c.is_assumed(&p.uid));
        assert_eq!(c.node("n1").map(|n| n.requested.milli_cpu), Some(1000));
        c.add_pod(p.clone());
        assert!(!c.is_assumed(&p.uid) && c.has_pod(&p.uid));
        assert_eq!(
            c.node("n1").map(|n| n.pods.len()),
            Some(1),
            "confirmed, not doubled"
        );
        c.remove_pod(&p.uid);
        assert_eq!(c.node("n1").map(|n| n.requested.milli_cpu), Some(0));
    }

    #[test]
    fn spreading_indexes_follow_pods_and_nodes() {
        use crate::scheduler::pod_info::test_pods::pod;
        let mut c = Cache::new();
        c.upsert_node(node("a", Some("z1")));
        c.upsert_node(node("b", Some("z2")));
        c.refresh();
        let web = |name: &str, node: &str| {
            let mut p = pod(json!({"metadata": {"name": name, "labels": {"app": "web"}}}));
            p.node_name = node.into();
            Arc::new(p)
        };
        c.add_pod(web("w1", "a"));
        let sel = Selector::from_set(&[("app".to_string(), "web".to_string())].into());
        let slot = |c: &Cache, n: &str| c.node(n).map(|n| n.slot).unwrap();
        assert_eq!(c.matching("default", &sel)[slot(&c, "a")], 1);
        c.add_pod(web("w2", "b"));
        c.add_pod(web("w3", "b"));
        let counts = c.matching("default", &sel);
        assert_eq!(
            (counts[slot(&c, "a")], counts[slot(&c, "b")]),
            (1, 2),
            "kept up to date"
        );
        assert_eq!(c.matching("other", &sel).iter().sum::<u32>(), 0);
        c.remove_pod("uid-w3");
        assert_eq!(c.matching("default", &sel)[slot(&c, "b")], 1);
        let zones = c.domains("topology.kubernetes.io/zone");
        assert_eq!(
            zones
                .iter()
                .map(|(v, s)| (v.as_str(), s.len()))
                .collect::<Vec<_>>(),
            [("z1", 1), ("z2", 1)]
        );
        c.upsert_node(node("c", Some("z1")));
        c.refresh();
        let zones = c.domains("topology.kubernetes.io/zone");
        assert_eq!(zones[0].1.len(), 2, "a new node drops the grouping");
    }

    #[test]
    fn pods_on_unknown_or_removed_nodes_are_kept_aside() {
        let mut c = Cache::new();
        let mut p = sized("p", "1", "1Gi");
        p.node_name = "ghost".into();
        let p = Arc::new(p);
        c.add_pod(p.clone());
        c.refresh();
        assert_eq!(
            c.num_nodes(),
            0,
            "a placeholder is not a node to schedule on"
        );
        c.upsert_node(node("ghost", None));
        c.refresh();
        assert_eq!(c.node_at(0).map(|n| n.pods.len()), Some(1));
        c.remove_node("ghost");
        c.refresh();
        assert_eq!((c.num_nodes(), c.num_pods()), (0, 1));
        c.remove_pod(&p.uid);
        assert!(c.node("ghost").is_none());
    }
}
