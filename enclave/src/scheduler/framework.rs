//! The plugin framework: [`Plugin`] (the extension points PreFilter,
//! Filter, PreScore, Score and NormalizeScore, plus the PreFilter
//! extensions AddPod/RemovePod), [`Status`], [`CycleState`] and
//! [`Profile`], upstream's default profile with its weights.

use std::borrow::Cow;
use std::fmt;

use super::cache::Cache;
use super::listers::Listers;
use super::node_info::NodeInfo;
use super::plugins;
use super::pod_info::PodInfo;

/// The highest score a plugin gives a node (upstream's `MaxNodeScore`).
pub(crate) const MAX_NODE_SCORE: i64 = 100;

/// A plugin's verdict (upstream's status codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    /// The node may not take the pod now; preemption could help.
    Unschedulable,
    /// The node may not take the pod, and preemption would not help.
    UnschedulableAndUnresolvable,
}

/// Why a plugin rejected a pod (or a node for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    /// The code.
    pub(crate) code: Code,
    /// The reasons, as they appear in the failure message.
    pub(crate) reasons: Vec<Cow<'static, str>>,
    /// The rejecting plugin's index in the profile.
    pub(crate) plugin: usize,
}

impl Status {
    /// `code` with one reason.
    pub(crate) fn new(code: Code, reason: impl Into<Cow<'static, str>>) -> Self {
        Status {
            code,
            reasons: vec![reason.into()],
            plugin: usize::MAX,
        }
    }

    /// Unschedulable with `reason`.
    pub(crate) fn unschedulable(reason: impl Into<Cow<'static, str>>) -> Self {
        Status::new(Code::Unschedulable, reason)
    }

    /// UnschedulableAndUnresolvable with `reason`.
    pub(crate) fn unresolvable(reason: impl Into<Cow<'static, str>>) -> Self {
        Status::new(Code::UnschedulableAndUnresolvable, reason)
    }

    /// The reasons joined with ", " (upstream's `Status.Message`).
    pub(crate) fn message(&self) -> String {
        self.reasons.join(", ")
    }
}

/// A plugin's outcome at PreFilter.
#[derive(Debug)]
pub(crate) enum PreFilter {
    /// Nothing to check for this pod: its Filter is not run.
    Skip,
    /// Run the Filter, on every node or (`Some`) only these.
    Run(Option<Vec<String>>),
    /// The pod fits no node.
    Reject(Status),
}

/// What the plugins compute for one pod in one cycle and share between
/// their extension points.
#[derive(Debug, Clone, Default)]
pub(crate) struct CycleState {
    /// Plugins whose Filter is skipped (bit per profile index).
    pub(crate) skip_filter: u64,
    /// Plugins whose Score is skipped.
    pub(crate) skip_score: u64,
    /// PodTopologySpread's filter counts.
    pub(crate) spread_filter: Option<plugins::topology_spread::FilterState>,
    /// PodTopologySpread's score counts.
    pub(crate) spread_score: Option<plugins::topology_spread::ScoreState>,
    /// InterPodAffinity's filter counts.
    pub(crate) affinity_filter: Option<plugins::inter_pod_affinity::FilterState>,
    /// InterPodAffinity's score sums.
    pub(crate) affinity_score: Option<plugins::inter_pod_affinity::ScoreState>,
    /// VolumeBinding's claims.
    pub(crate) volumes: Option<plugins::volume_binding::State>,
}

/// What a plugin reads besides the pod and the node at hand.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    /// The pod being scheduled.
    pub(crate) pod: &'a PodInfo,
    /// Every node with its pods.
    pub(crate) cache: &'a Cache,
    /// Namespaces, services, controllers, budgets and claims.
    pub(crate) listers: &'a Listers,
}

impl fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx").field("pod", &self.pod.key()).finish()
    }
}

/// Cluster events a plugin's rejection can be lifted by (upstream's
/// `EventsToRegister`), as bits.
pub(crate) mod events {
    /// A node was added.
    pub(crate) const NODE_ADD: u32 = 1;
    /// A node was deleted.
    pub(crate) const NODE_DELETE: u32 = 1 << 1;
    /// A node's allocatable changed.
    pub(crate) const NODE_ALLOCATABLE: u32 = 1 << 2;
    /// A node's labels changed.
    pub(crate) const NODE_LABEL: u32 = 1 << 3;
    /// A node's taints or `unschedulable` changed.
    pub(crate) const NODE_TAINT: u32 = 1 << 4;
    /// A pod was bound.
    pub(crate) const POD_ADD: u32 = 1 << 5;
    /// A bound pod's labels changed.
    pub(crate) const POD_LABEL: u32 = 1 << 6;
    /// A bound (or nominated) pod was deleted.
    pub(crate) const POD_DELETE: u32 = 1 << 7;
    /// A PersistentVolumeClaim changed.
    pub(crate) const CLAIM: u32 = 1 << 8;
    /// A namespace's labels changed.
    pub(crate) const NAMESPACE: u32 = 1 << 9;
    /// A PersistentVolume changed.
    pub(crate) const VOLUME: u32 = 1 << 10;
    /// A StorageClass changed.
    pub(crate) const STORAGE_CLASS: u32 = 1 << 11;
}

/// One scheduling plugin. Every extension point has a default that does
/// nothing, so a plugin implements only the ones it has.
pub(crate) trait Plugin: Send + Sync + fmt::Debug {
    /// The plugin's name, as upstream names it.
    fn name(&self) -> &'static str;

    /// Cluster events that can make a pod it rejected schedulable.
    fn events(&self) -> u32 {
        0
    }

    /// PreFilter: computes what Filter needs; may skip or reject.
    fn pre_filter(&self, _cx: &Ctx<'_>, _state: &mut CycleState) -> PreFilter {
        PreFilter::Skip
    }

    /// Filter: whether `node` can take the pod.
    ///
    /// # Errors
    /// The status saying why not.
    fn filter(&self, _cx: &Ctx<'_>, _state: &CycleState, _node: &NodeInfo) -> Result<(), Status> {
        Ok(())
    }

    /// PreFilter extension: `other` was added to `node` (a nominated pod
    /// or a reprieved victim).
    fn add_pod(&self, _cx: &Ctx<'_>, _state: &mut CycleState, _other: &PodInfo, _node: &NodeInfo) {}

    /// PreFilter extension: `other` was removed from `node` (a victim).
    fn remove_pod(
        &self,
        _cx: &Ctx<'_>,
        _state: &mut CycleState,
        _other: &PodInfo,
        _node: &NodeInfo,
    ) {
    }

    /// Its weight in the score sum; 0 for plugins that do not score.
    fn weight(&self) -> i64 {
        0
    }

    /// PreScore over the feasible nodes; `false` skips Score.
    fn pre_score(&self, _cx: &Ctx<'_>, _state: &mut CycleState, _nodes: &[&NodeInfo]) -> bool {
        true
    }

    /// Score of one feasible node.
    fn score(&self, _cx: &Ctx<'_>, _state: &CycleState, _node: &NodeInfo) -> i64 {
        0
    }

    /// NormalizeScore: maps the scores (in `nodes` order) onto 0..=100.
    fn normalize(&self, _state: &CycleState, _nodes: &[&NodeInfo], _scores: &mut [i64]) {}
}

/// upstream's `DefaultNormalizeScore`: scales to 0..=`max` by the largest
/// score, reversed when lower is better.
pub(crate) fn default_normalize(max: i64, reverse: bool, scores: &mut [i64]) {
    let top = scores.iter().copied().max().unwrap_or(0).max(0);
    if top == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = max);
        }
        return;
    }
    for s in scores.iter_mut() {
        let v = max * *s / top;
        *s = if reverse { max - v } else { v };
    }
}

/// The plugins of the default profile, in upstream's order.
#[derive(Debug)]
pub(crate) struct Profile {
    /// The plugins; their index is their bit in [`CycleState`]'s masks.
    pub(crate) plugins: Vec<Box<dyn Plugin>>,
}

impl Profile {
    /// upstream's default plugins and score weights: NodeUnschedulable,
    /// NodeName, TaintToleration (3), NodeAffinity (2), NodePorts,
    /// NodeResourcesFit (1, LeastAllocated on cpu and memory),
    /// VolumeBinding, PodTopologySpread (2, system default constraints),
    /// InterPodAffinity (2), NodeResourcesBalancedAllocation (1),
    /// ImageLocality (1).
    pub(crate) fn default_profile() -> Self {
        use plugins::*;
        Profile {
            plugins: vec![
                Box::new(node_unschedulable::NodeUnschedulable),
                Box::new(node_name::NodeName),
                Box::new(taint_toleration::TaintToleration),
                Box::new(node_affinity::NodeAffinity),
                Box::new(node_ports::NodePorts),
                Box::new(resources_fit::NodeResourcesFit),
                Box::new(volume_binding::VolumeBinding),
                Box::new(topology_spread::PodTopologySpread),
                Box::new(inter_pod_affinity::InterPodAffinity),
                Box::new(balanced_allocation::BalancedAllocation),
                Box::new(image_locality::ImageLocality),
            ],
        }
    }

    /// The plugin names in `mask`, sorted (for messages).
    pub(crate) fn names(&self, mask: u64) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = self
            .plugins
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, p)| p.name())
            .collect();
        v.sort_unstable();
        v
    }

    /// The cluster events that can lift a rejection by the plugins in `mask`.
    pub(crate) fn events_of(&self, mask: u64) -> u32 {
        self.plugins
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .fold(0, |acc, (_, p)| acc | p.events())
    }

    /// Runs every Filter not skipped, stopping at the first rejection.
    ///
    /// # Errors
    /// The first rejection, with the plugin's index.
    pub(crate) fn run_filters(
        &self,
        cx: &Ctx<'_>,
        state: &CycleState,
        node: &NodeInfo,
    ) -> Result<(), Status> {
        for (i, p) in self.plugins.iter().enumerate() {
            if state.skip_filter & (1 << i) != 0 {
                continue;
            }
            if let Err(mut s) = p.filter(cx, state, node) {
                s.plugin = i;
                return Err(s);
            }
        }
        Ok(())
    }

    /// Runs the AddPod extensions of the plugins whose Filter runs.
    pub(crate) fn add_pod(
        &self,
        cx: &Ctx<'_>,
        state: &mut CycleState,
        other: &PodInfo,
        node: &NodeInfo,
    ) {
        for (i, p) in self.plugins.iter().enumerate() {
            if state.skip_filter & (1 << i) == 0 {
                p.add_pod(cx, state, other, node);
            }
        }
    }

    /// Runs the RemovePod extensions of the plugins whose Filter runs.
    pub(crate) fn remove_pod(
        &self,
        cx: &Ctx<'_>,
        state: &mut CycleState,
        other: &PodInfo,
        node: &NodeInfo,
    ) {
        for (i, p) in self.plugins.iter().enumerate() {
            if state.skip_filter & (1 << i) == 0 {
                p.remove_pod(cx, state, other, node);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_normalize_scales_and_reverses() {
        let mut s = [0, 5, 10];
        default_normalize(100, false, &mut s);
        assert_eq!(s, [0, 50, 100]);
        let mut s = [0, 5, 10];
        default_normalize(100, true, &mut s);
        assert_eq!(s, [100, 50, 0]);
        let mut s = [0, 0];
        default_normalize(100, true, &mut s);
        assert_eq!(s, [100, 100]);
    }

    #[test]
    fn default_profile_weights() {
        let p = Profile::default_profile();
        let w: Vec<(&str, i64)> = p
            .plugins
            .iter()
            .filter(|p| p.weight() > 0)
            .map(|p| (p.name(), p.weight()))
            .collect();
        assert_eq!(
            w,
            [
                ("TaintToleration", 3),
                ("NodeAffinity", 2),
                ("NodeResourcesFit", 1),
                ("PodTopologySpread", 2),
                ("InterPodAffinity", 2),
                ("NodeResourcesBalancedAllocation", 1),
                ("ImageLocality", 1)
            ]
        );
    }
}
