//! Taint-based eviction (upstream's `taint-eviction-controller`, the
//! NoExecute taint manager): a pod on a node with NoExecute taints it does
//! not tolerate is deleted at once; one that tolerates them all for a
//! limited `tolerationSeconds` is deleted when the shortest of those runs
//! out (counted from when the taint was added, or from the pod's creation
//! if it came later, so that the count survives a restart); tolerating
//! them forever keeps it. A pod about to go gets the `DisruptionTarget`
//! condition (`DeletionByTaintManager`) and a `TaintManagerEviction` event;
//! one whose deletion is called off (the taint went) gets a cancelling
//! event. Keys are node names.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod, PodCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;

use super::Error;
use super::client::Api;
use super::events::{EventRecorder, EventType};
use super::runtime::{Action, Reconciler};
use super::typed::Typed;
use crate::registry::generic::DeleteOptions;
use crate::registry::{WatchEvent, meta};

/// Whether `t` tolerates `taint` (upstream's `ToleratesTaint`).
pub(crate) fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// When a pod must go: `None` never; `Some(0)` now.
fn toleration_deadline(taints: &[Taint], tolerations: &[Toleration]) -> Option<i64> {
    let mut min: Option<i64> = None;
    let mut forever = true;
    for taint in taints {
        // upstream's GetMatchingTolerations: the first toleration of each taint.
        let Some(t) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            return Some(0);
        };
        if let Some(s) = t.toleration_seconds {
            forever = false;
            let s = s.max(0);
            min = Some(min.map_or(s, |m: i64| m.min(s)));
        }
    }
    if forever { None } else { min }
}

/// The NoExecute taints of `node`.
fn no_execute(node: &Node) -> Vec<Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .map(|t| {
            t.iter()
                .filter(|t| t.effect == "NoExecute")
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

fn no_execute_of(node: &Value) -> Vec<Value> {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .filter(|t| t.get("effect").and_then(Value::as_str) == Some("NoExecute"))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// The taint eviction controller.
#[derive(Debug)]
pub(crate) struct TaintEviction {
    nodes: Typed<Node>,
    pods: Typed<Pod>,
    /// node → its NoExecute taints, as last seen.
    tainted: HashMap<String, Vec<Value>>,
    /// node → pods with a deletion scheduled.
    scheduled: HashMap<String, HashSet<(String, String)>>,
    events: EventRecorder,
}

impl TaintEviction {
    /// Watches 0: nodes, 1: pods.
    pub(crate) fn new(nodes: Typed<Node>, pods: Typed<Pod>, events: Api) -> Self {
        TaintEviction {
            nodes,
            pods,
            tainted: HashMap::new(),
            scheduled: HashMap::new(),
            events: EventRecorder::new(events, "taint-eviction-controller"),
        }
    }

    async fn cancel(&self, pod: &Pod) {
        let message = format!(
            "Cancelling deletion of Pod {}/{}",
            pod.metadata.namespace.as_deref().unwrap_or(""),
            pod.metadata.name.as_deref().unwrap_or("")
        );
        let obj = serde_json::to_value(pod).unwrap_or_default();
        self.events
            .record(&obj, EventType::Normal, "TaintManagerEviction", &message)
            .await;
    }

    /// Marks and deletes one pod.
    async fn evict(&self, pod: &Pod) -> Result<(), Error> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let message = format!("Marking for deletion Pod {ns}/{name}");
        let obj = serde_json::to_value(pod).unwrap_or_default();
        self.events
            .record(&obj, EventType::Normal, "TaintManagerEviction", &message)
            .await;
        let now = meta::now();
        let uid = pod.metadata.uid.clone();
        let marked = self
            .pods
            .edit_status(&ns, &name, |p| {
                if p.metadata.uid != uid {
                    return false;
                }
                let conditions = p
                    .status
                    .get_or_insert_with(Default::default)
                    .conditions
                    .get_or_insert_with(Vec::new);
                let c = PodCondition {
                    type_: "DisruptionTarget".into(),
                    status: "True".into(),
                    reason: Some("DeletionByTaintManager".into()),
                    message: Some("Taint manager: deleting due to NoExecute taint".into()),
                    last_transition_time: Some(Time(now)),
                    ..Default::default()
                };
                match conditions
                    .iter_mut()
                    .find(|c| c.type_ == "DisruptionTarget")
                {
                    Some(cur) if cur.status == "True" => return false,
                    Some(cur) => *cur = c,
                    None => conditions.push(c),
                }
                true
            })
            .await;
        match marked {
            Ok(_) => {}
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        }
        let opts = DeleteOptions {
            uid,
            ..Default::default()
        };
        self.pods.delete(&ns, &name, &opts).await
    }
}

impl Reconciler for TaintEviction {
    type Key = String;
    const NAME: &'static str = "taint_eviction_controller";

    async fn keys_for(&mut self, kind: usize, event: &WatchEvent) -> Vec<String> {
        match (kind, event) {
            (0, WatchEvent::Added(o) | WatchEvent::Modified(o)) => {
                let name = meta::name(o).to_string();
                let taints = no_execute_of(o);
                let before = self.tainted.get(&name).cloned().unwrap_or_default();
                if taints == before {
                    return Vec::new();
                }
                if taints.is_empty() {
                    self.tainted.remove(&name);
                } else {
                    self.tainted.insert(name.clone(), taints);
                }
                vec![name]
            }
            (0, WatchEvent::Deleted(o)) => {
                self.tainted.remove(meta::name(o));
                self.scheduled.remove(meta::name(o));
                Vec::new()
            }
            (1, WatchEvent::Added(o) | WatchEvent::Modified(o)) => {
                let node = o
                    .pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if self.tainted.contains_key(node) {
                    vec![node.to_string()]
                } else {
                    Vec::new()
                }
            }
            _ => Vec::new(),
        }
    }

    async fn reconcile(&mut self, node_name: &String) -> Result<Action, Error> {
        let taints = match self.nodes.get("", node_name).await? {
            Some(n) => no_execute(&n),
            None => Vec::new(),
        };
        let pods = if taints.is_empty() && !self.scheduled.contains_key(node_name) {
            Vec::new()
        } else {
            self.pods
                .list_fields("", &format!("spec.nodeName={node_name}"))
                .await?
        };
        let was = self.scheduled.remove(node_name).unwrap_or_default();
        let mut now_scheduled = HashSet::new();
        let mut next: Option<Duration> = None;
        let now = Timestamp::now();
        let tainted_at = taints
            .iter()
            .filter_map(|t| t.time_added.as_ref().map(|t| t.0))
            .min()
            .unwrap_or(now);
        for pod in &pods {
            let key = (
                pod.metadata.namespace.clone().unwrap_or_default(),
                pod.metadata.name.clone().unwrap_or_default(),
            );
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let tolerations = pod
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.clone())
                .unwrap_or_default();
            let deadline = if taints.is_empty() {
                None
            } else {
                toleration_deadline(&taints, &tolerations)
            };
            let Some(seconds) = deadline else {
                if was.contains(&key) {
                    self.cancel(pod).await;
                }
                continue;
            };
            let created = pod
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(tainted_at, |t| t.0);
            let start = tainted_at.max(created);
            let due = start.as_second().saturating_add(seconds);
            if seconds == 0 || due <= now.as_second() {
                self.evict(pod).await?;
                continue;
            }
            now_scheduled.insert(key);
            let left = Duration::from_secs(u64::try_from(due - now.as_second()).unwrap_or(1));
            next = Some(next.map_or(left, |n| n.min(left)));
        }
        if !now_scheduled.is_empty() {
            self.scheduled.insert(node_name.clone(), now_scheduled);
        }
        Ok(next.map_or_else(Action::await_change, Action::requeue))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn taint(key: &str) -> Taint {
        serde_json::from_value(json!({"key": key, "effect": "NoExecute"})).unwrap()
    }

    fn tol(v: Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn deadlines() {
        let unreachable = taint("node.kubernetes.io/unreachable");
        let t300 = tol(
            json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}),
        );
        let t5 = tol(
            json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}),
        );
        let forever = tol(json!({"operator": "Exists"}));
        assert_eq!(
            toleration_deadline(std::slice::from_ref(&unreachable), &[]),
            Some(0)
        );
        assert_eq!(
            toleration_deadline(std::slice::from_ref(&unreachable), &[t5, t300.clone()]),
            Some(5)
        );
        assert_eq!(
            toleration_deadline(
                std::slice::from_ref(&unreachable),
                std::slice::from_ref(&forever)
            ),
            None
        );
        let other = taint("dedicated");
        assert_eq!(toleration_deadline(&[unreachable, other], &[t300]), Some(0));
        let equal = tol(json!({"key": "dedicated", "value": "x", "effect": "NoExecute"}));
        let valued: Taint = serde_json::from_value(
            json!({"key": "dedicated", "value": "x", "effect": "NoExecute"}),
        )
        .unwrap();
        assert!(tolerates(&equal, &valued));
        assert!(!tolerates(&equal, &taint("dedicated")));
    }
}
