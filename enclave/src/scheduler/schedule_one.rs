//! One scheduling cycle's algorithm (upstream's `schedulePod`): PreFilter,
//! Filter over a rotating window of nodes (stopping once upstream's
//! `percentageOfNodesToScore` of them fit), PreScore, Score with
//! normalisation and weights, and a random pick among the best. A pod
//! that fits nowhere gets a [`Diagnosis`], from which preemption works and
//! upstream's `0/N nodes are available: ...` message is built.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::cache::Cache;
use super::framework::{Ctx, CycleState, PreFilter, Profile, Status};
use super::listers::Listers;
use super::node_info::NodeInfo;
use super::pod_info::PodInfo;
use super::queue::SchedulingQueue;

/// Below this many nodes every node is checked (upstream's `minFeasibleNodesToFind`).
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive percentage never goes below this (upstream's `minFeasibleNodesPercentageToFind`).
const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

/// Why a pod fits no node: each node's rejection, and the status of the
/// nodes not checked (all of them when a PreFilter rejected the pod).
#[derive(Debug, Clone, Default)]
pub(crate) struct Diagnosis {
    /// Rejections by node name.
    pub(crate) statuses: HashMap<String, Status>,
    /// The status of nodes absent from `statuses`.
    pub(crate) absent: Option<Status>,
    /// The plugins that rejected the pod (profile bits).
    pub(crate) rejected_by: u64,
    /// A PreFilter's rejection message.
    pub(crate) prefilter_msg: Option<String>,
    /// The PostFilter (preemption) message.
    pub(crate) postfilter_msg: Option<String>,
}

impl Diagnosis {
    /// The status of `node`.
    pub(crate) fn status_of(&self, node: &str) -> Option<&Status> {
        self.statuses.get(node).or(self.absent.as_ref())
    }

    /// upstream's `FitError.Error()`: `0/N nodes are available: <counts of
    /// each reason, sorted>.` followed by the preemption message.
    pub(crate) fn message(&self, num_all_nodes: usize) -> String {
        let mut msg = format!("0/{num_all_nodes} nodes are available:");
        match &self.prefilter_msg {
            Some(pre) => {
                msg.push_str(&format!(" {pre}."));
            }
            None => {
                let reasons = histogram(self, num_all_nodes);
                if !reasons.is_empty() {
                    msg.push_str(&format!(" {}.", reasons.join(", ")));
                }
            }
        }
        if let Some(post) = &self.postfilter_msg {
            msg.push_str(&format!(" {post}."));
        }
        msg
    }
}

/// "`count` `reason`" for every reason, sorted as strings (upstream's
/// `sortReasonsHistogram`).
fn histogram(d: &Diagnosis, num_all_nodes: usize) -> Vec<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in d.statuses.values() {
        for r in &s.reasons {
            *counts.entry(r.as_ref()).or_insert(0) += 1;
        }
    }
    if d.statuses.len() < num_all_nodes
        && let Some(absent) = &d.absent
    {
        for r in &absent.reasons {
            *counts.entry(r.as_ref()).or_insert(0) += num_all_nodes - d.statuses.len();
        }
    }
    let mut out: Vec<String> = counts
        .into_iter()
        .map(|(r, n)| format!("{n} {r}"))
        .collect();
    out.sort();
    out
}

/// Where a pod goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placement {
    /// The chosen node.
    pub(crate) node: String,
    /// Nodes checked.
    pub(crate) evaluated: usize,
    /// Nodes that fit.
    pub(crate) feasible: usize,
}

/// The scheduling algorithm and its state between cycles.
#[derive(Debug)]
pub(crate) struct Algorithm {
    /// The plugins.
    pub(crate) profile: Profile,
    /// Where the next cycle starts checking nodes.
    next_start: usize,
    rng: u64,
}

/// How many feasible nodes to look for among `n` (upstream's
/// `numFeasibleNodesToFind` with the adaptive percentage).
pub(crate) fn feasible_nodes_to_find(n: usize) -> usize {
    if n < MIN_FEASIBLE_NODES_TO_FIND {
        return n;
    }
    let pct = 50usize
        .saturating_sub(n / 125)
        .max(MIN_FEASIBLE_NODES_PERCENTAGE);
    (n * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Everything a filter run needs.
pub(crate) struct FilterEnv<'a> {
    /// The plugins.
    pub(crate) profile: &'a Profile,
    /// The cycle's context.
    pub(crate) cx: Ctx<'a>,
    /// The nominator.
    pub(crate) queue: &'a SchedulingQueue,
}

impl FilterEnv<'_> {
    /// upstream's `RunFilterPluginsWithNominatedPods`: with pods nominated
    /// to the node at equal or higher priority counted as running there,
    /// then without them.
    ///
    /// # Errors
    /// The first rejection.
    pub(crate) fn run(&self, state: &CycleState, node: &NodeInfo) -> Result<(), Status> {
        let pod = self.cx.pod;
        if !self.queue.has_nominations() {
            return self.profile.run_filters(&self.cx, state, node);
        }
        let nominated: Vec<&Arc<PodInfo>> = self
            .queue
            .nominated_to(node.name())
            .iter()
            .filter(|p| p.uid != pod.uid && p.priority >= pod.priority)
            .collect();
        if nominated.is_empty() {
            return self.profile.run_filters(&self.cx, state, node);
        }
        let mut with = node.clone();
        let mut with_state = state.clone();
        for p in nominated {
            with.add_pod(p.clone());
            self.profile.add_pod(&self.cx, &mut with_state, p, &with);
        }
        self.profile.run_filters(&self.cx, &with_state, &with)?;
        self.profile.run_filters(&self.cx, state, node)
    }
}

impl Algorithm {
    /// The default profile, with a random seed for tie-breaking.
    pub(crate) fn new(seed: u64) -> Self {
        Algorithm {
            profile: Profile::default_profile(),
            next_start: 0,
            rng: seed | 1,
        }
    }

    /// A pseudo-random number (for where preemption's dry run starts).
    pub(crate) fn next_random(&mut self) -> u64 {
        self.random(usize::MAX) as u64
    }

    fn random(&mut self, below: usize) -> usize {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % below.max(1)
    }

    /// Runs the PreFilters; the state, the nodes to check (`None`: all)
    /// and the plugins that narrowed them; or the rejection.
    pub(crate) fn pre_filter(
        &self,
        cx: &Ctx<'_>,
    ) -> Result<(CycleState, Option<Vec<String>>, u64), Status> {
        let mut state = CycleState::default();
        let mut only: Option<Vec<String>> = None;
        let mut narrowed_by = 0u64;
        for (i, p) in self.profile.plugins.iter().enumerate() {
            match p.pre_filter(cx, &mut state) {
                PreFilter::Skip => state.skip_filter |= 1 << i,
                PreFilter::Run(None) => {}
                PreFilter::Run(Some(names)) => {
                    narrowed_by |= 1 << i;
                    only = Some(match only {
                        None => names,
                        Some(prev) => prev.into_iter().filter(|n| names.contains(n)).collect(),
                    });
                }
                PreFilter::Reject(mut s) => {
                    s.plugin = i;
                    return Err(s);
                }
            }
        }
        Ok((state, only, narrowed_by))
    }

    /// Finds a node for `pod`.
    ///
    /// # Errors
    /// The [`Diagnosis`] when no node fits.
    pub(crate) fn schedule(
        &mut self,
        pod: &PodInfo,
        cache: &Cache,
        listers: &Listers,
        queue: &SchedulingQueue,
    ) -> Result<Placement, Box<Diagnosis>> {
        let cx = Ctx {
            pod,
            cache,
            listers,
        };
        let mut diagnosis = Diagnosis::default();
        let (mut state, only, narrowed_by) = match self.pre_filter(&cx) {
            Ok(x) => x,
            Err(s) => {
                diagnosis.rejected_by = 1 << s.plugin;
                diagnosis.prefilter_msg = Some(s.message());
                diagnosis.absent = Some(s);
                return Err(Box::new(diagnosis));
            }
        };
        let env = FilterEnv {
            profile: &self.profile,
            cx,
            queue,
        };
        // A node nominated by an earlier preemption is tried first.
        let nominated = queue
            .nomination_of(&pod.uid)
            .map(str::to_string)
            .or_else(|| (!pod.nominated_node.is_empty()).then(|| pod.nominated_node.clone()));
        if let Some(node) = nominated
            .as_deref()
            .and_then(|n| cache.node(n))
            .filter(|n| n.present)
            && env.run(&state, node).is_ok()
        {
            return Ok(Placement {
                node: node.name().to_string(),
                evaluated: 1,
                feasible: 1,
            });
        }
        // Every node (by position in the node tree, without collecting
        // them), or the few a PreFilter narrowed the search to.
        let narrowed: Option<Vec<&NodeInfo>> = match &only {
            None => None,
            Some(names) => {
                let mut plugins = self.profile.names(narrowed_by).join(" ");
                plugins.insert(0, '[');
                plugins.push(']');
                diagnosis.absent = Some(Status::unresolvable(format!(
                    "node(s) didn't satisfy plugin(s) {plugins}"
                )));
                diagnosis.rejected_by |= narrowed_by;
                Some(
                    names
                        .iter()
                        .filter_map(|n| cache.node(n))
                        .filter(|n| n.present)
                        .collect(),
                )
            }
        };
        let n = narrowed.as_ref().map_or(cache.num_nodes(), Vec::len);
        let candidate = |k: usize| match &narrowed {
            Some(v) => v.get(k).copied(),
            None => cache.node_at(k),
        };
        let want = feasible_nodes_to_find(n);
        let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(want.min(n));
        let mut processed = 0;
        for k in 0..n {
            if feasible.len() >= want {
                break;
            }
            let Some(node) = candidate((self.next_start + k) % n) else {
                continue;
            };
            processed += 1;
            match env.run(&state, node) {
                Ok(()) => feasible.push(node),
                Err(s) => {
                    diagnosis.rejected_by |= 1 << s.plugin;
                    diagnosis.statuses.insert(node.name().to_string(), s);
                }
            }
        }
        if n > 0 {
            self.next_start = (self.next_start + processed) % n;
        }
        if feasible.is_empty() {
            return Err(Box::new(diagnosis));
        }
        let evaluated = processed;
        if feasible.len() == 1 {
            return Ok(Placement {
                node: feasible[0].name().to_string(),
                evaluated,
                feasible: 1,
            });
        }
        let totals = self.prioritize(&cx, &mut state, &feasible);
        let best = totals.iter().copied().max().unwrap_or(0);
        let mut chosen = 0;
        let mut ties = 0;
        for (i, t) in totals.iter().enumerate() {
            if *t == best {
                ties += 1;
                if self.random(ties) == 0 {
                    chosen = i;
                }
            }
        }
        Ok(Placement {
            node: feasible[chosen].name().to_string(),
            evaluated,
            feasible: feasible.len(),
        })
    }

    /// PreScore, Score, NormalizeScore and the weighted sum per node.
    fn prioritize(&self, cx: &Ctx<'_>, state: &mut CycleState, nodes: &[&NodeInfo]) -> Vec<i64> {
        let mut totals = vec![0i64; nodes.len()];
        for (i, p) in self.profile.plugins.iter().enumerate() {
            if p.weight() == 0 {
                continue;
            }
            if !p.pre_score(cx, state, nodes) {
                state.skip_score |= 1 << i;
            }
        }
        let mut scores = vec![0i64; nodes.len()];
        for (i, p) in self.profile.plugins.iter().enumerate() {
            let w = p.weight();
            if w == 0 || state.skip_score & (1 << i) != 0 {
                continue;
            }
            for (s, n) in scores.iter_mut().zip(nodes) {
                *s = p.score(cx, state, n);
            }
            p.normalize(state, nodes, &mut scores);
            for (t, s) in totals.iter_mut().zip(&scores) {
                *t += s * w;
            }
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::Code;
    use crate::scheduler::node_info::test_nodes::{node, sized};
    use crate::scheduler::plugins::testing::cache_of;
    use crate::scheduler::pod_info::test_pods::{pod, sized as sized_pod};
    use serde_json::json;

    #[test]
    fn adaptive_percentage_of_nodes() {
        assert_eq!(feasible_nodes_to_find(50), 50);
        assert_eq!(feasible_nodes_to_find(100), 100);
        assert_eq!(feasible_nodes_to_find(1000), 420, "42% of 1000");
        assert_eq!(feasible_nodes_to_find(5000), 500, "10% of 5000");
        assert_eq!(feasible_nodes_to_find(50000), 2500, "at least 5%");
    }

    #[test]
    fn picks_the_emptiest_fitting_node() {
        let mut busy = sized("a", "4", "8Gi");
        busy.add_pod(Arc::new(sized_pod("x", "3", "1Gi")));
        let cache = cache_of(&[busy, sized("b", "4", "8Gi"), sized("c", "1", "8Gi")]);
        let mut alg = Algorithm::new(7);
        let q = SchedulingQueue::new();
        let placed = alg
            .schedule(
                &sized_pod("p", "1500m", "1Gi"),
                &cache,
                &Listers::default(),
                &q,
            )
            .unwrap();
        assert_eq!(placed.node, "b");
        assert_eq!((placed.evaluated, placed.feasible), (3, 1));
    }

    #[test]
    fn the_failure_message_is_upstreams() {
        let cache = cache_of(&[
            node(
                json!({"metadata": {"name": "a"}, "spec": {"unschedulable": true},
                "status": {"capacity": {"cpu": "4", "memory": "4Gi", "pods": "10"}}}),
            ),
            sized("b", "1", "8Gi"),
            sized("c", "1", "8Gi"),
        ]);
        let mut alg = Algorithm::new(1);
        let d = alg
            .schedule(
                &sized_pod("p", "2", "1Gi"),
                &cache,
                &Listers::default(),
                &SchedulingQueue::new(),
            )
            .unwrap_err();
        assert_eq!(
            d.message(3),
            "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient cpu."
        );
        assert_eq!(
            alg.profile.names(d.rejected_by),
            ["NodeResourcesFit", "NodeUnschedulable"]
        );
        assert_eq!(
            d.status_of("b").map(|s| s.code),
            Some(Code::UnschedulableAndUnresolvable)
        );
    }

    #[test]
    fn prefilter_rejections_and_narrowed_searches_explain_every_node() {
        let cache = cache_of(&[sized("a", "1", "1Gi"), sized("b", "1", "1Gi")]);
        let mut listers = Listers::default();
        listers.serve_claims();
        let with_claim = pod(json!({"metadata": {"name": "p"}, "spec": {"volumes": [
            {"name": "d", "persistentVolumeClaim": {"claimName": "gone"}}]}}));
        let mut alg = Algorithm::new(1);
        let d = alg
            .schedule(&with_claim, &cache, &listers, &SchedulingQueue::new())
            .unwrap_err();
        assert_eq!(
            d.message(2),
            "0/2 nodes are available: persistentvolumeclaim \"gone\" not found."
        );
        let named = pod(
            json!({"metadata": {"name": "n"}, "spec": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["zzz"]}]}]}}}}}),
        );
        let d = alg
            .schedule(&named, &cache, &listers, &SchedulingQueue::new())
            .unwrap_err();
        assert_eq!(
            d.message(2),
            "0/2 nodes are available: 2 node(s) didn't satisfy plugin(s) [NodeAffinity]."
        );
    }

    #[test]
    fn ties_are_broken_at_random_and_the_window_rotates() {
        let nodes: Vec<NodeInfo> = (0..8)
            .map(|i| sized(&format!("n{i}"), "4", "4Gi"))
            .collect();
        let cache = cache_of(&nodes);
        let mut alg = Algorithm::new(42);
        let q = SchedulingQueue::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..64 {
            seen.insert(
                alg.schedule(&sized_pod("p", "1", "1Gi"), &cache, &Listers::default(), &q)
                    .unwrap()
                    .node,
            );
        }
        assert!(
            seen.len() > 3,
            "equal nodes are all chosen now and then: {seen:?}"
        );
    }
}
