//! DefaultPreemption (the PostFilter): when a pod fits no node, find nodes
//! where removing lower-priority pods would make room, keep as many of
//! those pods as still fit (PodDisruptionBudget-protected ones first, then
//! by priority), and pick the node that violates the fewest budgets and
//! evicts the least important pods. The victims are then deleted and the
//! pod nominated to that node.

use std::cmp::Ordering;
use std::sync::Arc;

use super::framework::{Code, CycleState, Status};
use super::listers::Listers;
use super::node_info::NodeInfo;
use super::pod_info::PodInfo;
use super::schedule_one::{Diagnosis, FilterEnv};

/// The smallest share of nodes dry-run (upstream's `minCandidateNodesPercentage`).
const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;
/// The fewest nodes dry-run (upstream's `minCandidateNodesAbsolute`).
const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;

/// What preemption decided.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome {
    /// `Some(node)`: nominate the pod there (`""`: clear its nomination).
    pub(crate) nominate: Option<String>,
    /// Pods to delete.
    pub(crate) victims: Vec<Arc<PodInfo>>,
    /// Lower-priority pods nominated to the chosen node, to un-nominate.
    pub(crate) displaced: Vec<Arc<PodInfo>>,
    /// The message (without the `preemption: ` prefix), when it failed.
    pub(crate) message: Option<String>,
}

/// A node where preemption would work.
#[derive(Debug)]
struct Candidate {
    node: String,
    victims: Vec<Arc<PodInfo>>,
    pdb_violations: usize,
}

/// upstream's `MoreImportantPod`: higher priority, then started earlier.
fn more_important(a: &PodInfo, b: &PodInfo) -> Ordering {
    b.priority
        .cmp(&a.priority)
        .then_with(|| match (a.start_time, b.start_time) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
}

/// Splits `pods` into those whose eviction would break a budget and the
/// rest (upstream's `filterPodsWithPDBViolation`), keeping their order.
fn split_by_budget(
    pods: Vec<Arc<PodInfo>>,
    listers: &Listers,
) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let budgets: Vec<_> = listers.budgets().collect();
    let mut allowed: Vec<i64> = budgets
        .iter()
        .map(|(_, _, b)| b.disruptions_allowed)
        .collect();
    let mut violating = Vec::new();
    let mut fine = Vec::new();
    for p in pods {
        let mut violated = false;
        if !p.labels.is_empty() {
            for (i, (ns, _, b)) in budgets.iter().enumerate() {
                if *ns != p.namespace
                    || b.selector.is_empty()
                    || !b.selector.matches(&p.labels)
                    || b.disrupted_pods.contains(&p.name)
                {
                    continue;
                }
                allowed[i] -= 1;
                violated |= allowed[i] < 0;
            }
        }
        if violated {
            violating.push(p);
        } else {
            fine.push(p);
        }
    }
    (violating, fine)
}

/// upstream's `SelectVictimsOnNode` on a copy of the node.
fn select_victims(
    env: &FilterEnv<'_>,
    state: &CycleState,
    node: &NodeInfo,
) -> Result<(Vec<Arc<PodInfo>>, usize), Status> {
    let pod = env.cx.pod;
    let mut node = node.clone();
    let mut state = state.clone();
    let mut potential: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    for p in &potential {
        node.remove_pod(&p.uid);
        env.profile.remove_pod(&env.cx, &mut state, p, &node);
    }
    if potential.is_empty() {
        return Err(Status::unresolvable(
            "No preemption victims found for incoming pod",
        ));
    }
    env.run(&state, &node)?;
    potential.sort_by(|a, b| more_important(a, b));
    let (violating, fine) = split_by_budget(potential, env.cx.listers);
    let mut victims = Vec::new();
    let mut violations = 0;
    let mut reprieve = |p: &Arc<PodInfo>, node: &mut NodeInfo, state: &mut CycleState| -> bool {
        node.add_pod(p.clone());
        env.profile.add_pod(&env.cx, state, p, node);
        if env.run(state, node).is_ok() {
            return true;
        }
        node.remove_pod(&p.uid);
        env.profile.remove_pod(&env.cx, state, p, node);
        victims.push(p.clone());
        false
    };
    for p in &violating {
        if !reprieve(p, &mut node, &mut state) {
            violations += 1;
        }
    }
    for p in &fine {
        reprieve(p, &mut node, &mut state);
    }
    if !violating.is_empty() && !fine.is_empty() {
        victims.sort_by(|a, b| more_important(a, b));
    }
    Ok((victims, violations))
}

/// upstream's `pickOneNodeForPreemption`.
fn pick(mut candidates: Vec<Candidate>) -> Option<Candidate> {
    let far_future = jiff::Timestamp::MAX;
    let key = |c: &Candidate| {
        let highest = c.victims.first().map_or(i32::MIN, |v| v.priority);
        let sum: i64 = c
            .victims
            .iter()
            .map(|v| i64::from(v.priority) + i64::from(i32::MAX) + 1)
            .sum();
        // The earliest start among the highest-priority victims; later is better.
        let earliest = c
            .victims
            .iter()
            .filter(|v| v.priority == highest)
            .map(|v| v.start_time.unwrap_or(far_future))
            .min()
            .unwrap_or(far_future);
        (
            c.pdb_violations,
            highest,
            sum,
            c.victims.len(),
            std::cmp::Reverse(earliest),
        )
    };
    let mut best = 0;
    for i in 1..candidates.len() {
        if key(&candidates[i]) < key(&candidates[best]) {
            best = i;
        }
    }
    (!candidates.is_empty()).then(|| candidates.swap_remove(best))
}

/// Tries to make room for `env.cx.pod` by preemption, after it failed
/// with `diagnosis` in a cycle whose PreFilter produced `state`; `random`
/// picks where the dry run starts.
pub(crate) fn preempt(
    env: &FilterEnv<'_>,
    state: &CycleState,
    diagnosis: &Diagnosis,
    random: u64,
) -> Outcome {
    let pod = env.cx.pod;
    let cache = env.cx.cache;
    let num_nodes = cache.num_nodes();
    if pod.never_preempts {
        return Outcome {
            message: Some("not eligible due to preemptionPolicy=Never.".into()),
            ..Default::default()
        };
    }
    let nominated = env
        .queue
        .nomination_of(&pod.uid)
        .unwrap_or(&pod.nominated_node);
    if !nominated.is_empty()
        && diagnosis.status_of(nominated).map(|s| s.code)
            != Some(Code::UnschedulableAndUnresolvable)
        && let Some(node) = cache.node(nominated)
        && node
            .pods
            .iter()
            .any(|p| p.priority < pod.priority && p.deleting && p.preempted)
    {
        return Outcome {
            message: Some("not eligible due to a terminating pod on the nominated node.".into()),
            ..Default::default()
        };
    }
    let mut failures = Diagnosis {
        absent: Some(Status::unresolvable(
            "Preemption is not helpful for scheduling",
        )),
        ..Default::default()
    };
    let potential: Vec<&NodeInfo> = cache
        .nodes()
        .filter(|n| diagnosis.status_of(n.name()).map(|s| s.code) == Some(Code::Unschedulable))
        .collect();
    let mut candidates = Vec::new();
    if !potential.is_empty() {
        let want = (potential.len() * MIN_CANDIDATE_NODES_PERCENTAGE / 100)
            .max(MIN_CANDIDATE_NODES_ABSOLUTE)
            .min(potential.len());
        let offset = (random % potential.len() as u64) as usize;
        let mut non_violating = 0;
        for k in 0..potential.len() {
            let node = potential[(offset + k) % potential.len()];
            match select_victims(env, state, node) {
                Ok((victims, violations)) if !victims.is_empty() => {
                    non_violating += usize::from(violations == 0);
                    candidates.push(Candidate {
                        node: node.name().to_string(),
                        victims,
                        pdb_violations: violations,
                    });
                    if non_violating > 0 && candidates.len() >= want {
                        break;
                    }
                }
                Ok(_) => {}
                Err(s) => {
                    failures.statuses.insert(node.name().to_string(), s);
                }
            }
        }
    }
    let Some(best) = pick(candidates) else {
        return Outcome {
            nominate: Some(String::new()),
            message: Some(failures.message(num_nodes)),
            ..Default::default()
        };
    };
    let displaced = env
        .queue
        .nominated_to(&best.node)
        .iter()
        .filter(|p| p.priority < pod.priority && p.uid != pod.uid)
        .cloned()
        .collect();
    Outcome {
        nominate: Some(best.node),
        victims: best.victims,
        displaced,
        message: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::Ctx;
    use crate::scheduler::listers::ListerKind;
    use crate::scheduler::node_info::test_nodes::sized;
    use crate::scheduler::plugins::testing::cache_of;
    use crate::scheduler::pod_info::test_pods::pod;
    use crate::scheduler::queue::SchedulingQueue;
    use crate::scheduler::schedule_one::Algorithm;
    use serde_json::json;

    fn prio(name: &str, cpu: &str, priority: i32, app: &str) -> PodInfo {
        pod(
            json!({"metadata": {"name": name, "labels": {"app": app}}, "spec": {"priority": priority, "containers": [
            {"name": "c", "image": "i", "resources": {"requests": {"cpu": cpu}}}]}}),
        )
    }

    fn run(nodes: &[NodeInfo], listers: &Listers, incoming: &PodInfo) -> (Outcome, String) {
        let cache = cache_of(nodes);
        let queue = SchedulingQueue::new();
        let mut alg = Algorithm::new(3);
        let d = alg.schedule(incoming, &cache, listers, &queue).unwrap_err();
        let cx = Ctx {
            pod: incoming,
            cache: &cache,
            listers,
        };
        let (state, _, _) = alg.pre_filter(&cx).unwrap();
        let env = FilterEnv {
            profile: &alg.profile,
            cx,
            queue: &queue,
        };
        let out = preempt(&env, &state, &d, 5);
        (out, d.message(cache.num_nodes()))
    }

    fn node_with(name: &str, pods: Vec<PodInfo>) -> NodeInfo {
        let mut n = sized(name, "2", "4Gi");
        for p in pods {
            n.add_pod(Arc::new(p));
        }
        n
    }

    #[test]
    fn lowest_priority_victims_are_chosen_and_budgets_respected_where_possible() {
        let nodes = [
            node_with("a", vec![prio("a1", "2", 10, "guarded")]),
            node_with("b", vec![prio("b1", "2", 10, "free")]),
        ];
        let mut listers = Listers::default();
        let pdb = ListerKind::Budgets.decode(&json!({"metadata": {"name": "g"},
            "spec": {"selector": {"matchLabels": {"app": "guarded"}}}, "status": {"disruptionsAllowed": 0}}));
        listers.apply(ListerKind::Budgets, "default", "g", pdb);
        let (out, _) = run(&nodes, &listers, &prio("high", "2", 100, "x"));
        assert_eq!(
            out.nominate.as_deref(),
            Some("b"),
            "the budget-protected pod is spared"
        );
        assert_eq!(
            out.victims
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>(),
            ["b1"]
        );
        // With every node guarded, the budget gives way.
        let nodes = [node_with("a", vec![prio("a1", "2", 10, "guarded")])];
        let (out, _) = run(&nodes, &listers, &prio("high", "2", 100, "x"));
        assert_eq!(out.nominate.as_deref(), Some("a"));
    }

    #[test]
    fn only_as_many_victims_as_needed_lowest_priority_first() {
        let nodes = [node_with(
            "a",
            vec![
                prio("p5", "500m", 5, "x"),
                prio("p1", "500m", 1, "x"),
                prio("p7", "1", 7, "x"),
            ],
        )];
        let (out, _) = run(&nodes, &Listers::default(), &prio("high", "1", 100, "y"));
        assert_eq!(
            out.victims
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>(),
            ["p5", "p1"]
        );
    }

    #[test]
    fn preemption_that_cannot_help_says_so() {
        let nodes = [
            node_with("a", vec![prio("same", "2", 100, "x")]),
            sized("b", "1", "4Gi"),
        ];
        let (out, msg) = run(&nodes, &Listers::default(), &prio("p", "2", 100, "y"));
        assert_eq!(msg, "0/2 nodes are available: 2 Insufficient cpu.");
        assert_eq!(
            out.message.as_deref(),
            Some(
                "0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
            )
        );
        assert_eq!(out.nominate.as_deref(), Some(""));
        let never = pod(
            json!({"metadata": {"name": "n"}, "spec": {"priority": 1000, "preemptionPolicy": "Never",
            "containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "2"}}}]}}),
        );
        let (out, _) = run(&nodes, &Listers::default(), &never);
        assert_eq!(
            out.message.as_deref(),
            Some("not eligible due to preemptionPolicy=Never.")
        );
    }
}
