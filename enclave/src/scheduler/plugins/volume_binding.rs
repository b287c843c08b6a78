//! VolumeBinding (upstream `plugins/volumebinding`): a pod's PersistentVolumeClaims must
//! exist and not be terminating; a bound claim's volume must exist and its node affinity
//! admit the node; an unbound claim must be of a `WaitForFirstConsumer` class, and then the
//! node needs an Available volume that fits the claim (or the class a provisioner that can
//! make one). PreBind, run by the writer just before the pod's binding, claims the chosen
//! volumes (`spec.claimRef`, which the PersistentVolume binder completes) or names the node
//! for the provisioner (`volume.kubernetes.io/selected-node`), then waits until those claims
//! are Bound (at most 10 minutes, as upstream), so a pod never runs before its volumes.
//! While PersistentVolumeClaims are not served at all the plugin skips, so pods with claims
//! schedule as if they had none.
//! Storage capacity tracking (CSIStorageCapacity) is not consulted.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;

use crate::controllers::persistent_volume::{
    NodeView, Placement, SELECTED_NODE, best_match, claim_class, claim_reference, point_at_claim,
    points_at, volume_fits_node, volume_name,
};
use crate::controllers::typed::Typed;
use crate::registry::ObjectStore;
use crate::scheduler::framework::{Ctx, CycleState, Plugin, PreFilter, Status, events};
use crate::scheduler::node_info::NodeInfo;
use crate::scheduler::pod_info::PodInfo;

/// How long PreBind waits for its claims to be bound (kube-scheduler's `bindTimeoutSeconds`).
const BIND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);
/// How often PreBind looks at a claim it waits for.
const BIND_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// The provisioner of classes whose volumes are all made by hand (local volumes).
const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";
/// upstream's `ErrReasonBindConflict`.
const BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
/// upstream's `ErrReasonNodeConflict`.
const NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
/// upstream's `ErrReasonPVNotExist`.
const PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";

/// One claim waiting for its pod's node.
#[derive(Debug, Clone)]
pub(crate) struct DelayedClaim {
    claim: Arc<PersistentVolumeClaim>,
    class: String,
    provisioner: String,
}

/// What PreFilter found for Filter.
#[derive(Debug, Clone, Default)]
pub(crate) struct State {
    /// The volumes of the pod's bound claims.
    bound: Vec<String>,
    /// The pod's claims of `WaitForFirstConsumer` classes that are not bound yet.
    delayed: Vec<DelayedClaim>,
}

/// The volume [`best_match`] gives `claim` on `node` among `volumes` that no earlier claim of
/// the same pod took (each claim needs a volume of its own).
fn free_match<'v>(
    claim: &PersistentVolumeClaim,
    class: &str,
    volumes: impl IntoIterator<Item = &'v PersistentVolume>,
    taken: &[&str],
    node: NodeView<'_>,
) -> Option<&'v PersistentVolume> {
    let free = volumes
        .into_iter()
        .filter(|v| !taken.contains(&v.metadata.name.as_deref().unwrap_or("")));
    best_match(claim, class, free, Placement::Delayed(Some(node)))
}

/// The plugin.
#[derive(Debug)]
pub(crate) struct VolumeBinding;

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        "VolumeBinding"
    }
    fn events(&self) -> u32 {
        events::CLAIM
            | events::VOLUME
            | events::STORAGE_CLASS
            | events::NODE_ADD
            | events::NODE_LABEL
    }
    fn pre_filter(&self, cx: &Ctx<'_>, state: &mut CycleState) -> PreFilter {
        let pod = cx.pod;
        if pod.claims.is_empty() {
            return PreFilter::Skip;
        }
        let mut found = State::default();
        let mut unbound_immediate = false;
        for name in &pod.claims {
            let c = match cx.listers.claim(&pod.namespace, name) {
                Err(()) => return PreFilter::Skip,
                Ok(None) => {
                    return PreFilter::Reject(Status::unresolvable(format!(
                        "persistentvolumeclaim \"{name}\" not found"
                    )));
                }
                Ok(Some(c)) if c.deleting() => {
                    return PreFilter::Reject(Status::unresolvable(format!(
                        "persistentvolumeclaim \"{name}\" is being deleted"
                    )));
                }
                Ok(Some(c)) => c,
            };
            let volume = volume_name(&c.0);
            if !volume.is_empty() {
                found.bound.push(volume.to_string());
                continue;
            }
            if c.bound() {
                continue;
            }
            let class = claim_class(&c.0).unwrap_or("");
            match cx.listers.class(class) {
                Some(k) if k.delayed => found.delayed.push(DelayedClaim {
                    claim: c.0.clone(),
                    class: class.to_string(),
                    provisioner: k.provisioner.clone(),
                }),
                None if !class.is_empty() => {
                    return PreFilter::Reject(Status::unresolvable(format!(
                        "storageclass.storage.k8s.io \"{class}\" not found"
                    )));
                }
                _ => unbound_immediate = true,
            }
        }
        if unbound_immediate {
            return PreFilter::Reject(Status::unresolvable(
                "pod has unbound immediate PersistentVolumeClaims",
            ));
        }
        if found.bound.is_empty() && found.delayed.is_empty() {
            return PreFilter::Skip;
        }
        state.volumes = Some(found);
        PreFilter::Run(None)
    }
    fn filter(&self, cx: &Ctx<'_>, state: &CycleState, node: &NodeInfo) -> Result<(), Status> {
        let Some(found) = &state.volumes else {
            return Ok(());
        };
        let view = NodeView {
            name: node.name(),
            labels: Some(&node.node.labels),
        };
        for name in &found.bound {
            match cx.listers.volume(name) {
                None => return Err(Status::unresolvable(PV_NOT_EXIST)),
                Some(pv) if !volume_fits_node(pv, view) => {
                    return Err(Status::unresolvable(NODE_CONFLICT));
                }
                Some(_) => {}
            }
        }
        let mut taken: Vec<&str> = Vec::new();
        for d in &found.delayed {
            match free_match(&d.claim, &d.class, cx.listers.volumes(), &taken, view) {
                Some(pv) => taken.push(pv.metadata.name.as_deref().unwrap_or("")),
                None if d.provisioner == NO_PROVISIONER => {
                    return Err(Status::unresolvable(BIND_CONFLICT));
                }
                // A provisioner can make the volume on this node.
                None => {}
            }
        }
        Ok(())
    }
}

/// The resources PreBind writes.
#[derive(Debug, Clone)]
pub(crate) struct VolumeAccess {
    claims: Typed<PersistentVolumeClaim>,
    volumes: Typed<PersistentVolume>,
    classes: Typed<StorageClass>,
    nodes: Typed<Node>,
}

impl VolumeAccess {
    /// The access through `objects`; `None` when it serves no claims.
    pub(crate) fn new(objects: &ObjectStore) -> Option<Self> {
        let table = objects.table();
        let info = |g: &str, r: &str| table.lookup(g, "v1", r);
        Some(VolumeAccess {
            claims: Typed::new(objects.clone(), info("", "persistentvolumeclaims")?),
            volumes: Typed::new(objects.clone(), info("", "persistentvolumes")?),
            classes: Typed::new(objects.clone(), info("storage.k8s.io", "storageclasses")?),
            nodes: Typed::new(objects.clone(), info("", "nodes")?),
        })
    }

    /// VolumeBinding's PreBind for `pod`, now placed on `pod.node_name`: each unbound claim
    /// of a `WaitForFirstConsumer` class gets the volume Filter saw on that node (its
    /// `claimRef`), or the node for its provisioner; then it waits until those claims are
    /// Bound. Reads the store afresh, so a volume taken since Filter fails the bind, and the
    /// pod is tried again.
    ///
    /// # Errors
    /// Why the volumes could not be claimed or were not bound in time, in words for the
    /// pod's event.
    pub(crate) async fn pre_bind(&self, pod: &PodInfo) -> Result<(), String> {
        let fail = |e: crate::controllers::Error| e.one_line();
        let mut node: Option<Node> = None;
        let mut volumes: Option<Vec<PersistentVolume>> = None;
        let mut taken: Vec<String> = Vec::new();
        // The claims this PreBind acted on: the pod binds once each is Bound.
        let mut acted: Vec<&str> = Vec::new();
        for name in &pod.claims {
            let Some(claim) = self.claims.get(&pod.namespace, name).await.map_err(fail)? else {
                return Err(format!("persistentvolumeclaim \"{name}\" not found"));
            };
            let class_name = claim_class(&claim).unwrap_or("").to_string();
            if !volume_name(&claim).is_empty() || class_name.is_empty() {
                continue;
            }
            let Some(class) = self.classes.get("", &class_name).await.map_err(fail)? else {
                continue;
            };
            if class.volume_binding_mode.as_deref() != Some("WaitForFirstConsumer") {
                continue;
            }
            if node.is_none() {
                node = self.nodes.get("", &pod.node_name).await.map_err(fail)?;
            }
            let Some(n) = node.as_ref() else {
                return Err(format!("node \"{}\" not found", pod.node_name));
            };
            if volumes.is_none() {
                volumes = Some(self.volumes.list("").await.map_err(fail)?);
            }
            let all = volumes.as_deref().unwrap_or_default();
            let taken_names: Vec<&str> = taken.iter().map(String::as_str).collect();
            if let Some(pv) = free_match(&claim, &class_name, all, &taken_names, NodeView::of(n)) {
                let pv_name = pv.metadata.name.clone().unwrap_or_default();
                self.claim_volume(&pv_name, &claim).await?;
                taken.push(pv_name);
                acted.push(name);
            } else if class.provisioner == NO_PROVISIONER {
                return Err(BIND_CONFLICT.to_string());
            } else {
                let node_name = pod.node_name.clone();
                self.claims
                    .edit(&pod.namespace, name, |c| {
                        let a = c.metadata.annotations.get_or_insert_default();
                        if a.get(SELECTED_NODE) == Some(&node_name) {
                            return false;
                        }
                        a.insert(SELECTED_NODE.to_string(), node_name.clone());
                        true
                    })
                    .await
                    .map_err(fail)?;
                acted.push(name);
            }
        }
        self.wait_bound(&pod.namespace, &acted).await
    }

    /// Waits until every claim of `names` is Bound (by the binder, or by a provisioner's
    /// volume), as upstream's PreBind does before the pod may bind, for at most
    /// [`BIND_TIMEOUT`].
    async fn wait_bound(&self, namespace: &str, names: &[&str]) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + BIND_TIMEOUT;
        for name in names {
            loop {
                let claim = self
                    .claims
                    .get(namespace, name)
                    .await
                    .map_err(|e| e.one_line())?;
                let Some(claim) = claim else {
                    return Err(format!("persistentvolumeclaim \"{name}\" not found"));
                };
                let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
                if !volume_name(&claim).is_empty() && phase == Some("Bound") {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err("binding volumes: context deadline exceeded".to_string());
                }
                tokio::time::sleep(BIND_POLL).await;
            }
        }
        Ok(())
    }

    /// Points volume `pv_name` at `claim` as the binder does, unless another claim has it.
    async fn claim_volume(
        &self,
        pv_name: &str,
        claim: &PersistentVolumeClaim,
    ) -> Result<(), String> {
        let reference = claim_reference(claim);
        let pv = self
            .volumes
            .edit("", pv_name, |v| point_at_claim(v, &reference))
            .await
            .map_err(|e| e.one_line())?;
        if points_at(&pv, &reference) {
            Ok(())
        } else {
            Err(format!(
                "persistentvolume \"{pv_name}\" was bound to another claim"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::listers::{ListerKind, Listers};
    use crate::scheduler::node_info::test_nodes::sized;
    use crate::scheduler::plugins::testing::{cache_of, filter_all};
    use crate::scheduler::pod_info::test_pods::pod;
    use serde_json::json;

    #[test]
    fn claims_must_exist_and_be_bound_when_served() {
        let cache = cache_of(&[sized("a", "1", "1Gi")]);
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"volumes": [
            {"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}));
        let mut listers = Listers::default();
        assert!(
            filter_all(&VolumeBinding, &p, &cache, &listers)[0].is_ok(),
            "not served: skipped"
        );
        listers.serve_claims();
        let r = filter_all(&VolumeBinding, &p, &cache, &listers);
        assert_eq!(
            r[0].as_ref().unwrap_err().message(),
            "persistentvolumeclaim \"data\" not found"
        );
        let claim = ListerKind::Claims.decode(&json!({"metadata": {"name": "data"}}));
        listers.apply(ListerKind::Claims, "default", "data", claim);
        let r = filter_all(&VolumeBinding, &p, &cache, &listers);
        assert_eq!(
            r[0].as_ref().unwrap_err().message(),
            "pod has unbound immediate PersistentVolumeClaims"
        );
        let bound = ListerKind::Claims
            .decode(&json!({"metadata": {"name": "data"}, "status": {"phase": "Bound"}}));
        listers.apply(ListerKind::Claims, "default", "data", bound);
        assert!(filter_all(&VolumeBinding, &p, &cache, &listers)[0].is_ok());
    }

    /// The filter's verdict per node name.
    fn verdicts(
        p: &PodInfo,
        cache: &crate::scheduler::cache::Cache,
        listers: &Listers,
    ) -> Vec<(String, Result<(), String>)> {
        let names: Vec<String> = cache.nodes().map(|n| n.name().to_string()).collect();
        let mut out: Vec<_> = names
            .into_iter()
            .zip(filter_all(&VolumeBinding, p, cache, listers))
            .map(|(n, r)| (n, r.map_err(|e| e.message())))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn local_volume(
        name: &str,
        node: &str,
        extra: serde_json::Value,
    ) -> Option<crate::scheduler::listers::ListerValue> {
        let mut v = json!({"metadata": {"name": name}, "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": "local", "local": {"path": "/mnt/disk"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}},
            "status": {"phase": "Available"}});
        if let (Some(o), Some(e)) = (v["spec"].as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        ListerKind::Volumes.decode(&v)
    }

    #[test]
    fn bound_volumes_bring_their_node_affinity() {
        let cache = cache_of(&[sized("a", "1", "1Gi"), sized("b", "1", "1Gi")]);
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"volumes": [
            {"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}));
        let mut listers = Listers::default();
        listers.serve_claims();
        let claim = ListerKind::Claims.decode(&json!({"metadata": {"name": "data"},
            "spec": {"volumeName": "pv-a"}, "status": {"phase": "Bound"}}));
        listers.apply(ListerKind::Claims, "default", "data", claim);
        let r = verdicts(&p, &cache, &listers);
        assert_eq!(
            r[0].1,
            Err(PV_NOT_EXIST.to_string()),
            "the volume is not there"
        );
        listers.apply(
            ListerKind::Volumes,
            "",
            "pv-a",
            local_volume("pv-a", "a", json!({})),
        );
        let r = verdicts(&p, &cache, &listers);
        assert_eq!(r[0], ("a".to_string(), Ok(())));
        assert_eq!(r[1], ("b".to_string(), Err(NODE_CONFLICT.to_string())));
    }

    #[test]
    fn delayed_claims_need_a_free_volume_on_the_node_or_a_provisioner() {
        let cache = cache_of(&[sized("a", "1", "1Gi"), sized("b", "1", "1Gi")]);
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"volumes": [
            {"name": "d", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "e", "persistentVolumeClaim": {"claimName": "more"}}]}}));
        let mut listers = Listers::default();
        listers.serve_claims();
        for name in ["data", "more"] {
            let claim = ListerKind::Claims.decode(&json!({"metadata": {"name": name},
                "spec": {"storageClassName": "local", "accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "1Gi"}}}}));
            listers.apply(ListerKind::Claims, "default", name, claim);
        }
        let r = verdicts(&p, &cache, &listers);
        assert_eq!(
            r[0].1,
            Err("storageclass.storage.k8s.io \"local\" not found".to_string())
        );
        let class = ListerKind::Classes.decode(&json!({"metadata": {"name": "local"},
            "provisioner": NO_PROVISIONER, "volumeBindingMode": "WaitForFirstConsumer"}));
        listers.apply(ListerKind::Classes, "", "local", class);
        // One volume on each node: neither node has the two the pod needs.
        listers.apply(
            ListerKind::Volumes,
            "",
            "a1",
            local_volume("a1", "a", json!({})),
        );
        listers.apply(
            ListerKind::Volumes,
            "",
            "b1",
            local_volume("b1", "b", json!({})),
        );
        let r = verdicts(&p, &cache, &listers);
        assert_eq!(r[0].1, Err(BIND_CONFLICT.to_string()));
        assert_eq!(r[1].1, Err(BIND_CONFLICT.to_string()));
        listers.apply(
            ListerKind::Volumes,
            "",
            "b2",
            local_volume("b2", "b", json!({})),
        );
        let r = verdicts(&p, &cache, &listers);
        assert_eq!(r[0].1, Err(BIND_CONFLICT.to_string()));
        assert_eq!(r[1].1, Ok(()));
        // A class with a provisioner can make what is missing anywhere.
        let class = ListerKind::Classes.decode(&json!({"metadata": {"name": "local"},
            "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"}));
        listers.apply(ListerKind::Classes, "", "local", class);
        assert!(
            verdicts(&p, &cache, &listers)
                .iter()
                .all(|(_, r)| r.is_ok())
        );
        // An Immediate class leaves unbound claims to the binder.
        let class = ListerKind::Classes.decode(&json!({"metadata": {"name": "local"},
            "provisioner": NO_PROVISIONER}));
        listers.apply(ListerKind::Classes, "", "local", class);
        assert_eq!(
            verdicts(&p, &cache, &listers)[0].1,
            Err("pod has unbound immediate PersistentVolumeClaims".to_string())
        );
    }
}
