//! The DaemonSet controller (upstream `pkg/controller/daemon`): one pod
//! per eligible node ([`nodes`]), each pinned to its node through
//! required node affinity on `metadata.name` (the scheduler then binds
//! it), created, replaced when failed and removed when the node no longer
//! qualifies or is gone; RollingUpdate with maxUnavailable or maxSurge,
//! or OnDelete ([`update`]); ControllerRevisions as history
//! ([`revisions`]); and the status `kubectl rollout status` reads.

mod manage;
pub(crate) mod nodes;
mod revisions;
mod update;

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};

use super::Error;
use super::client::{Api, Kinds};
use super::events::{EventRecorder, EventType};
use super::history::REVISION_LABEL;
use super::runtime::{Action, ObjectKey, Reconciler};
use super::typed::owner::{ClaimOptions, claim, event_object, metadata_of, owners_of, selects};
use super::typed::pod::{is_terminal, is_terminating};
use super::typed::{Typed, name, namespace, record};
use crate::registry::{ObjectStore, ResourceInfo, WatchEvent};

/// The component the DaemonSet controller's events come from, as upstream's.
const COMPONENT: &str = "daemonset-controller";

/// Pods created or deleted per sync at most (upstream's `BurstReplicas`).
const BURST_REPLICAS: usize = 250;

/// The label with the DaemonSet's template generation (upstream's
/// `DaemonSetTemplateGenerationKey`), set when the DaemonSet carries the
/// `deprecated.daemonset.template.generation` annotation.
const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";

/// The resources the DaemonSet controller reads besides pods and events.
#[derive(Debug, Clone)]
pub(crate) struct DaemonSetKinds {
    /// apps/v1 daemonsets.
    pub(crate) daemonsets: std::sync::Arc<ResourceInfo>,
    /// core/v1 nodes.
    pub(crate) nodes: std::sync::Arc<ResourceInfo>,
    /// apps/v1 controllerrevisions.
    pub(crate) revisions: std::sync::Arc<ResourceInfo>,
}

/// The DaemonSet controller.
#[derive(Debug)]
pub(crate) struct DaemonSetController {
    daemonsets: Typed<DaemonSet>,
    pods: Typed<Pod>,
    nodes: Typed<Node>,
    revisions: Typed<ControllerRevision>,
    events: EventRecorder,
    /// What each node's eligibility depends on (labels, taints), as last
    /// seen: only a change of it concerns the DaemonSets (upstream's
    /// `shouldIgnoreNodeUpdate`). Lost on a restart, when every node is
    /// seen anew.
    node_fingerprints: HashMap<String, u64>,
    /// Backoff before deleting a failed pod again on the same node
    /// (upstream's `failedPodsBackoff`: 1 s doubling to 15 min), in memory
    /// as upstream's.
    failed_backoff: HashMap<String, (Instant, Duration)>,
}

impl DaemonSetController {
    /// A controller over `objects`.
    pub(crate) fn new(objects: &ObjectStore, kinds: &Kinds, ds: &DaemonSetKinds) -> Self {
        DaemonSetController {
            daemonsets: Typed::new(objects.clone(), ds.daemonsets.clone()),
            pods: Typed::new(objects.clone(), kinds.pods.clone()),
            nodes: Typed::new(objects.clone(), ds.nodes.clone()),
            revisions: Typed::new(objects.clone(), ds.revisions.clone()),
            events: EventRecorder::new(Api::new(objects.clone(), kinds.events.clone()), COMPONENT),
            node_fingerprints: HashMap::new(),
            failed_backoff: HashMap::new(),
        }
    }
}

fn fingerprint(node: &Node) -> u64 {
    let mut h = DefaultHasher::new();
    node.metadata.labels.hash(&mut h);
    if let Some(taints) = node.spec.as_ref().and_then(|s| s.taints.as_ref()) {
        for t in taints {
            (&t.key, &t.value, &t.effect).hash(&mut h);
        }
    }
    h.finish()
}

/// upstream's `util.IsPodUpdated`: the pod runs the current revision (or
/// the current template generation).
pub(super) fn is_pod_updated(pod: &Pod, hash: &str, generation: Option<&str>) -> bool {
    let labels = pod.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    (!hash.is_empty() && label(REVISION_LABEL) == Some(hash))
        || generation.is_some_and(|g| label(TEMPLATE_GENERATION_LABEL) == Some(g))
}

/// The DaemonSet's template generation annotation.
pub(super) fn template_generation(ds: &DaemonSet) -> Option<&str> {
    ds.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TEMPLATE_GENERATION_ANNOTATION))
        .map(String::as_str)
}

/// upstream's `podByCreationTimestampAndPhase`: bound first, then oldest.
pub(super) fn by_creation_and_phase(a: &Pod, b: &Pod) -> std::cmp::Ordering {
    let bound = |p: &Pod| !super::typed::pod::node_name(p).is_empty();
    bound(b)
        .cmp(&bound(a))
        .then_with(|| {
            let t = |p: &Pod| p.metadata.creation_timestamp.clone().map(|t| t.0);
            t(a).cmp(&t(b))
        })
        .then_with(|| name(a).cmp(name(b)))
}

/// One sync's view: the DaemonSet, the nodes and its pods by target node.
#[derive(Debug)]
pub(super) struct View {
    pub(super) ds: DaemonSet,
    pub(super) nodes: Vec<Node>,
    /// Node name → the DaemonSet's pods meant for it (without finished pods
    /// being deleted).
    pub(super) by_node: BTreeMap<String, Vec<Pod>>,
    /// Every pod the DaemonSet controls.
    pub(super) pods: Vec<Pod>,
}

impl DaemonSetController {
    /// upstream's `getDaemonPods` and `getNodesToDaemonPods`.
    async fn view(&self, ds: DaemonSet, nodes: Vec<Node>) -> Result<View, Error> {
        let selector = ds
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let candidates = self.pods.list(namespace(&ds)).await?;
        let pods = claim(
            &self.pods,
            &ds,
            |p: &Pod| selects(&selector, p.metadata.labels.as_ref()),
            candidates,
            ClaimOptions::default(),
        )
        .await?;
        let mut by_node: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
        for p in &pods {
            if is_terminal(p) && is_terminating(p) {
                continue;
            }
            if let Some(node) = nodes::target_node(p) {
                by_node.entry(node).or_default().push(p.clone());
            }
        }
        Ok(View {
            ds,
            nodes,
            by_node,
            pods,
        })
    }
}

/// The DaemonSet's selector.
fn ds_selector(
    ds: &DaemonSet,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector> {
    ds.spec.as_ref().map(|s| &s.selector)
}

impl Reconciler for DaemonSetController {
    type Key = ObjectKey;
    const NAME: &'static str = "daemonset";

    async fn keys_for(&mut self, kind: usize, event: &WatchEvent) -> Vec<ObjectKey> {
        let Some((obj, deleted)) = event_object(event) else {
            return Vec::new();
        };
        let selector = ds_selector;
        match kind {
            0 => vec![ObjectKey::of(obj)],
            1 => match metadata_of(obj) {
                Some(meta) => {
                    owners_of(&self.daemonsets, "DaemonSet", &meta, deleted, selector).await
                }
                None => Vec::new(),
            },
            2 => {
                let Ok(node) = serde_json::from_value::<Node>(obj.clone()) else {
                    return Vec::new();
                };
                let node_name = name(&node).to_string();
                let changed = if deleted {
                    self.node_fingerprints.remove(&node_name).is_some()
                } else {
                    self.node_fingerprints.insert(node_name, fingerprint(&node))
                        != Some(fingerprint(&node))
                };
                if !changed {
                    return Vec::new();
                }
                match self.daemonsets.list("").await {
                    Ok(all) => all
                        .iter()
                        .map(|d| ObjectKey {
                            namespace: namespace(d).to_string(),
                            name: name(d).to_string(),
                        })
                        .collect(),
                    Err(e) => {
                        tracing::warn!(error = %e.one_line(), "listing daemonsets for a node change");
                        Vec::new()
                    }
                }
            }
            _ => match metadata_of(obj) {
                Some(meta) => {
                    owners_of(&self.daemonsets, "DaemonSet", &meta, deleted, selector).await
                }
                None => Vec::new(),
            },
        }
    }

    async fn reconcile(&mut self, key: &ObjectKey) -> Result<Action, Error> {
        match self.sync(key).await {
            Err(e) if e.is_not_found() => Ok(Action::await_change()),
            other => other,
        }
    }
}

impl DaemonSetController {
    /// upstream's `syncDaemonSet`.
    async fn sync(&mut self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(ds) = self.daemonsets.get(&key.namespace, &key.name).await? else {
            return Ok(Action::await_change());
        };
        let selector = ds
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let empty = selector
            .match_labels
            .as_ref()
            .is_none_or(BTreeMap::is_empty)
            && selector
                .match_expressions
                .as_ref()
                .is_none_or(Vec::is_empty);
        if empty {
            record(
                &self.events,
                &ds,
                EventType::Warning,
                "SelectingAll",
                "This daemon set is selecting all pods. A non-empty selector is required.",
            )
            .await;
            return Ok(Action::await_change());
        }
        if ds.metadata.deletion_timestamp.is_some() {
            // Its history may be going already: no status either.
            return Ok(Action::await_change());
        }
        let nodes = self.nodes.list("").await?;
        let (cur, old) = self.construct_history(&ds).await?;
        let hash = revisions::hash_of(&cur).to_string();
        let view = self.view(ds, nodes.clone()).await?;
        let (wrote, wait) = self.manage(&view, &hash).await?;
        let mut view = view;
        // Upstream waits for its creates and deletes to be observed before
        // the rolling update; re-reading the pods here does the same.
        if wrote {
            view = self.view(view.ds, nodes.clone()).await?;
        }
        let rolling = view
            .ds
            .spec
            .as_ref()
            .and_then(|s| s.update_strategy.as_ref())
            .and_then(|u| u.type_.as_deref())
            .unwrap_or("RollingUpdate")
            == "RollingUpdate";
        if !wrote && rolling && self.rolling_update(&view, &hash).await? {
            view = self.view(view.ds, nodes).await?;
        }
        self.cleanup_history(&view.ds, &view.pods, old).await?;
        let requeue = self.update_status(&view, &hash).await?;
        Ok(match (wait, requeue) {
            (Some(a), Some(b)) => Action::requeue(a.min(b)),
            (Some(a), None) | (None, Some(a)) => Action::requeue(a),
            (None, None) => Action::await_change(),
        })
    }
}
