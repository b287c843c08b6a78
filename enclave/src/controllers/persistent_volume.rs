//! The PersistentVolume binder (upstream `pkg/controller/volume/persistentvolume`,
//! kube-controller-manager's `persistentvolume-binder-controller`): it binds each pending
//! PersistentVolumeClaim to the smallest Available PersistentVolume that satisfies it
//! (class, access modes, volume mode, selector, size, and for claims the scheduler placed,
//! the volume's node affinity), completes bindings that users or the scheduler started
//! (`spec.volumeName` on the claim, `spec.claimRef` on the volume), gives claims without a
//! class the default StorageClass, and releases a volume whose claim is gone according to
//! its reclaim policy.
//!
//! No volume plugin runs in the enclave: a claim of a class with a provisioner is left to
//! that external provisioner (as upstream does for CSI drivers), and a released volume with
//! the `Delete` policy that no provisioner made fails as upstream's does when no plugin can
//! delete it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus,
    PersistentVolumeStatus,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};

use super::Error;
use super::daemonset::nodes::selector_matches_node;
use super::events::{EventRecorder, EventType};
use super::runtime::{Action, ObjectKey, Reconciler};
use super::typed::owner::{event_object, selects};
use super::typed::{Typed, name, namespace, record};
use crate::registry::kinds::storage::DEFAULT_CLASS_ANNOTATIONS;
use crate::registry::quantity::Quantity;
use crate::registry::{WatchEvent, meta};

/// The event source upstream's controller reports as.
pub(crate) const COMPONENT: &str = "persistentvolume-controller";

/// Set on a claim once the controller has bound it.
const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on a claim or volume whose binding the controller (not a user) made.
const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// The node the scheduler chose for a claim of a `WaitForFirstConsumer` class.
pub(crate) const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The provisioner expected to make a claim's volume (GA and beta names).
const STORAGE_PROVISIONER: [&str; 2] = [
    "volume.kubernetes.io/storage-provisioner",
    "volume.beta.kubernetes.io/storage-provisioner",
];
/// Set by a provisioner on the volumes it made.
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// The class annotation that predates `storageClassName`.
const BETA_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

/// What the binder's queue holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum VolumeKey {
    /// A claim.
    Claim(ObjectKey),
    /// A volume (cluster-scoped).
    Volume(String),
}

/// The PersistentVolume binder.
#[derive(Debug)]
pub(crate) struct PersistentVolumeBinder {
    claims: Typed<PersistentVolumeClaim>,
    volumes: Typed<PersistentVolume>,
    classes: Typed<StorageClass>,
    nodes: Typed<Node>,
    events: EventRecorder,
}

impl PersistentVolumeBinder {
    /// Watches 0: persistentvolumeclaims, 1: persistentvolumes, 2: storageclasses.
    pub(crate) fn new(
        claims: Typed<PersistentVolumeClaim>,
        volumes: Typed<PersistentVolume>,
        classes: Typed<StorageClass>,
        nodes: Typed<Node>,
        events: super::client::Api,
    ) -> Self {
        PersistentVolumeBinder {
            claims,
            volumes,
            classes,
            nodes,
            events: EventRecorder::new(events, COMPONENT),
        }
    }

    /// The claims still waiting for a volume.
    async fn pending_claims(&self) -> Vec<VolumeKey> {
        match self.claims.list("").await {
            Ok(claims) => claims
                .iter()
                .filter(|c| volume_name(c).is_empty())
                .map(|c| {
                    VolumeKey::Claim(ObjectKey {
                        namespace: namespace(c).to_string(),
                        name: name(c).to_string(),
                    })
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e.one_line(), "listing claims for the volume binder");
                Vec::new()
            }
        }
    }

    async fn sync_claim(&mut self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(claim) = self.claims.get(&key.namespace, &key.name).await? else {
            return Ok(Action::await_change());
        };
        if claim.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        if volume_name(&claim).is_empty() {
            self.sync_unbound_claim(claim).await
        } else {
            self.sync_bound_claim(claim).await
        }
    }

    /// upstream's `syncUnboundClaim`: find a volume, or say why none.
    async fn sync_unbound_claim(&mut self, claim: PersistentVolumeClaim) -> Result<Action, Error> {
        let class = match claim_class(&claim) {
            Some(c) => c.to_string(),
            None => {
                // Retroactive default class: a claim made before any class was the default
                // gets the default once one is.
                if let Some(default) = self.default_class().await? {
                    let (ns, name) = (namespace(&claim), claim.metadata.name.clone());
                    self.claims
                        .edit(ns, name.as_deref().unwrap_or(""), |c| {
                            if claim_class(c).is_some() {
                                return false;
                            }
                            c.spec.get_or_insert_default().storage_class_name =
                                Some(default.clone());
                            true
                        })
                        .await?;
                    return Ok(Action::await_change());
                }
                String::new()
            }
        };
        let storage_class = if class.is_empty() {
            None
        } else {
            self.classes.get("", &class).await?
        };
        let delayed = storage_class
            .as_ref()
            .and_then(|c| c.volume_binding_mode.as_deref())
            == Some("WaitForFirstConsumer");
        let selected = annotation(&claim.metadata, SELECTED_NODE).map(str::to_string);
        let node = match (&selected, delayed) {
            (Some(n), true) => self.nodes.get("", n).await?,
            _ => None,
        };
        let volumes = self.volumes.list("").await?;
        let placed = if delayed {
            Placement::Delayed(node.as_ref().map(NodeView::of))
        } else {
            Placement::Immediate
        };
        if let Some(pv) = best_match(&claim, &class, &volumes, placed) {
            let pv = pv.clone();
            return self.bind(pv, claim).await;
        }
        if delayed && selected.is_none() {
            record(
                &self.events,
                &claim,
                EventType::Normal,
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding",
            )
            .await;
        } else if class.is_empty() {
            record(
                &self.events,
                &claim,
                EventType::Normal,
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set",
            )
            .await;
        } else if let Some(sc) = storage_class {
            self.provision_externally(&claim, &sc.provisioner).await?;
        } else {
            record(
                &self.events,
                &claim,
                EventType::Warning,
                "ProvisioningFailed",
                &format!("storageclass.storage.k8s.io \"{class}\" not found"),
            )
            .await;
        }
        Ok(Action::await_change())
    }

    /// upstream's `provisionClaimOperationExternal`: names the provisioner on the claim and
    /// says that a volume is awaited from it.
    async fn provision_externally(
        &self,
        claim: &PersistentVolumeClaim,
        provisioner: &str,
    ) -> Result<(), Error> {
        let missing = STORAGE_PROVISIONER
            .iter()
            .any(|a| annotation(&claim.metadata, a) != Some(provisioner));
        let claim = if missing {
            let name = claim.metadata.name.as_deref().unwrap_or("");
            self.claims
                .edit(namespace(claim), name, |c| {
                    let annotations = c.metadata.annotations.get_or_insert_default();
                    let mut changed = false;
                    for a in STORAGE_PROVISIONER {
                        if annotations.get(a).map(String::as_str) != Some(provisioner) {
                            annotations.insert(a.to_string(), provisioner.to_string());
                            changed = true;
                        }
                    }
                    changed
                })
                .await?
        } else {
            claim.clone()
        };
        record(&self.events, &claim,
            EventType::Normal,
            "ExternalProvisioning",
            &format!(
                "waiting for a volume to be created, either by external provisioner \"{provisioner}\" or manually created by system administrator"
            ),
        )
        .await;
        Ok(())
    }

    /// upstream's `syncBoundClaim`: the claim names its volume; finish or check the binding.
    async fn sync_bound_claim(&mut self, claim: PersistentVolumeClaim) -> Result<Action, Error> {
        let name = volume_name(&claim).to_string();
        let Some(pv) = self.volumes.get("", &name).await? else {
            if claim_phase(&claim) == "Bound" {
                self.set_claim_phase(&claim, "Lost", None).await?;
                record(
                    &self.events,
                    &claim,
                    EventType::Warning,
                    "ClaimLost",
                    "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
                )
                .await;
            } else {
                record(
                    &self.events,
                    &claim,
                    EventType::Normal,
                    "FailedBinding",
                    &format!("volume \"{name}\" not found"),
                )
                .await;
            }
            return Ok(Action::await_change());
        };
        match pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
            None => self.bind(pv, claim).await,
            Some(r) if refers_to(r, &claim) => self.bind(pv, claim).await,
            Some(_) => {
                if claim_phase(&claim) == "Bound" {
                    self.set_claim_phase(&claim, "Lost", None).await?;
                    record(
                        &self.events,
                        &claim,
                        EventType::Warning,
                        "ClaimMisbound",
                        "Two claims are bound to the same volume, this one is bound incorrectly",
                    )
                    .await;
                } else {
                    record(
                        &self.events,
                        &claim,
                        EventType::Warning,
                        "FailedBinding",
                        &format!("volume \"{name}\" already bound to a different claim."),
                    )
                    .await;
                }
                Ok(Action::await_change())
            }
        }
    }

    /// upstream's `bind`: volume to claim, the volume's phase, claim to volume, the claim's
    /// status; each step is skipped when already done, so a bind interrupted anywhere is
    /// finished by the next sync.
    async fn bind(
        &mut self,
        pv: PersistentVolume,
        claim: PersistentVolumeClaim,
    ) -> Result<Action, Error> {
        let pv_name = pv.metadata.name.clone().unwrap_or_default();
        let reference = claim_reference(&claim);
        let pv = self
            .volumes
            .edit("", &pv_name, |v| point_at_claim(v, &reference))
            .await?;
        if !points_at(&pv, &reference) {
            // Someone else's claim took the volume meanwhile: look again.
            return Ok(Action::requeue(std::time::Duration::from_secs(1)));
        }
        let pv = self.set_volume_phase(&pv, "Bound", None).await?;
        let (ns, name) = (namespace(&claim), claim.metadata.name.as_deref());
        let claim = self
            .claims
            .edit(ns, name.unwrap_or(""), |c| {
                let spec = c.spec.get_or_insert_default();
                let mut changed = false;
                if spec.volume_name.as_deref() != Some(pv_name.as_str()) {
                    spec.volume_name = Some(pv_name.clone());
                    c.metadata
                        .annotations
                        .get_or_insert_default()
                        .insert(BOUND_BY_CONTROLLER.into(), "yes".into());
                    changed = true;
                }
                let annotations = c.metadata.annotations.get_or_insert_default();
                if annotations.get(BIND_COMPLETED).map(String::as_str) != Some("yes") {
                    annotations.insert(BIND_COMPLETED.into(), "yes".into());
                    changed = true;
                }
                changed
            })
            .await?;
        self.set_claim_phase(&claim, "Bound", Some(&pv)).await?;
        tracing::debug!(volume = %pv_name, claim = ?name, "bound");
        Ok(Action::await_change())
    }

    /// Sets a claim's phase (and with a volume, its capacity and access modes from it).
    async fn set_claim_phase(
        &self,
        claim: &PersistentVolumeClaim,
        phase: &str,
        pv: Option<&PersistentVolume>,
    ) -> Result<(), Error> {
        let spec = pv.and_then(|v| v.spec.as_ref());
        let (modes, capacity) = (
            spec.and_then(|s| s.access_modes.clone()),
            spec.and_then(|s| s.capacity.clone()),
        );
        let name = claim.metadata.name.as_deref().unwrap_or("");
        self.claims
            .edit_status(namespace(claim), name, |c| {
                let status = c
                    .status
                    .get_or_insert_with(PersistentVolumeClaimStatus::default);
                let mut changed = false;
                if status.phase.as_deref() != Some(phase) {
                    status.phase = Some(phase.to_string());
                    changed = true;
                }
                if pv.is_some() && (status.access_modes != modes || status.capacity != capacity) {
                    status.access_modes.clone_from(&modes);
                    status.capacity.clone_from(&capacity);
                    changed = true;
                }
                changed
            })
            .await?;
        Ok(())
    }

    /// Sets a volume's phase and message, stamping `lastPhaseTransitionTime` when the phase
    /// changes.
    async fn set_volume_phase(
        &self,
        pv: &PersistentVolume,
        phase: &str,
        message: Option<&str>,
    ) -> Result<PersistentVolume, Error> {
        let name = pv.metadata.name.as_deref().unwrap_or("");
        self.volumes
            .edit_status("", name, |v| {
                let status = v.status.get_or_insert_with(PersistentVolumeStatus::default);
                let message = message.map(str::to_string);
                if status.phase.as_deref() == Some(phase) && status.message == message {
                    return false;
                }
                if status.phase.as_deref() != Some(phase) {
                    status.last_phase_transition_time = Some(Time(meta::now()));
                }
                status.phase = Some(phase.to_string());
                status.message = message;
                status.reason = None;
                true
            })
            .await
    }

    /// upstream's `syncVolume`.
    async fn sync_volume(&mut self, name: &str) -> Result<Action, Error> {
        let Some(pv) = self.volumes.get("", name).await? else {
            return Ok(Action::await_change());
        };
        if pv.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.clone()) else {
            self.set_volume_phase(&pv, "Available", None).await?;
            return Ok(Action::await_change());
        };
        if r.uid.as_deref().unwrap_or("").is_empty() {
            // Pre-bound by a user to a claim by name: available to that claim only.
            self.set_volume_phase(&pv, "Available", None).await?;
            return Ok(Action::await_change());
        }
        let claim = self
            .claims
            .get(
                r.namespace.as_deref().unwrap_or(""),
                r.name.as_deref().unwrap_or(""),
            )
            .await?
            .filter(|c| c.metadata.uid == r.uid);
        match claim {
            Some(c) if volume_name(&c).is_empty() => {
                // The binding has begun (the scheduler's, or ours interrupted): the claim's
                // sync finishes it.
                Ok(Action::await_change())
            }
            Some(c) if volume_name(&c) == name => {
                self.set_volume_phase(&pv, "Bound", None).await?;
                Ok(Action::await_change())
            }
            Some(_) => {
                // The claim took another volume. Undo a binding we made; leave a user's.
                if annotation(&pv.metadata, BOUND_BY_CONTROLLER).is_some() {
                    let pv = self
                        .volumes
                        .edit("", name, |v| {
                            let Some(spec) = v.spec.as_mut() else {
                                return false;
                            };
                            spec.claim_ref = None;
                            if let Some(a) = v.metadata.annotations.as_mut() {
                                a.remove(BOUND_BY_CONTROLLER);
                            }
                            true
                        })
                        .await?;
                    self.set_volume_phase(&pv, "Available", None).await?;
                }
                Ok(Action::await_change())
            }
            None => self.release(pv).await,
        }
    }

    /// The claim of a bound volume is gone: `Released`, then the reclaim policy.
    async fn release(&mut self, pv: PersistentVolume) -> Result<Action, Error> {
        let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
        if phase == Some("Failed") {
            return Ok(Action::await_change());
        }
        let pv = if phase == Some("Released") {
            pv
        } else {
            self.set_volume_phase(&pv, "Released", None).await?
        };
        let name = pv.metadata.name.clone().unwrap_or_default();
        let policy = pv
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
            .unwrap_or("Retain");
        let failure = match policy {
            "Retain" => None,
            // A provisioner's volume: that provisioner deletes it.
            "Delete" if annotation(&pv.metadata, PROVISIONED_BY).is_some() => None,
            "Delete" => Some((
                "VolumeFailedDelete",
                format!(
                    "error getting deleter volume plugin for volume \"{name}\": no deletable volume plugin matched"
                ),
            )),
            "Recycle" => Some((
                "VolumeFailedRecycle",
                format!("No recycler plugin found for the volume \"{name}\""),
            )),
            other => Some((
                "VolumeUnknownReclaimPolicy",
                format!("Volume has unrecognized PersistentVolumeReclaimPolicy \"{other}\""),
            )),
        };
        if let Some((reason, message)) = failure {
            let pv = self.set_volume_phase(&pv, "Failed", Some(&message)).await?;
            record(&self.events, &pv, EventType::Warning, reason, &message).await;
        }
        Ok(Action::await_change())
    }

    /// The default StorageClass's name (the newest, if several are marked).
    async fn default_class(&self) -> Result<Option<String>, Error> {
        let mut defaults: Vec<StorageClass> = self
            .classes
            .list("")
            .await?
            .into_iter()
            .filter(|c| {
                DEFAULT_CLASS_ANNOTATIONS
                    .iter()
                    .any(|a| annotation(&c.metadata, a) == Some("true"))
            })
            .collect();
        defaults.sort_by(|a, b| {
            let t = |c: &StorageClass| c.metadata.creation_timestamp.as_ref().map(|t| t.0);
            t(b).cmp(&t(a))
                .then_with(|| a.metadata.name.cmp(&b.metadata.name))
        });
        Ok(defaults.into_iter().next().and_then(|c| c.metadata.name))
    }
}

impl Reconciler for PersistentVolumeBinder {
    type Key = VolumeKey;
    const NAME: &'static str = "persistentvolume-binder";

    async fn keys_for(&mut self, kind: usize, event: &WatchEvent) -> Vec<VolumeKey> {
        let Some((obj, deleted)) = event_object(event) else {
            return Vec::new();
        };
        match kind {
            0 => {
                let mut keys = vec![VolumeKey::Claim(ObjectKey::of(obj))];
                // A deleted claim releases its volume.
                if let Some(v) = obj.pointer("/spec/volumeName").and_then(|v| v.as_str())
                    && deleted
                    && !v.is_empty()
                {
                    keys.push(VolumeKey::Volume(v.to_string()));
                }
                keys
            }
            1 => {
                let mut keys = vec![VolumeKey::Volume(meta::name(obj).to_string())];
                match obj.pointer("/spec/claimRef").filter(|r| !r.is_null()) {
                    Some(r) => keys.push(VolumeKey::Claim(ObjectKey {
                        namespace: r["namespace"].as_str().unwrap_or("").to_string(),
                        name: r["name"].as_str().unwrap_or("").to_string(),
                    })),
                    // A volume that is free may be what a pending claim waits for.
                    None if !deleted => keys.extend(self.pending_claims().await),
                    None => {}
                }
                keys
            }
            _ => self.pending_claims().await,
        }
    }

    async fn reconcile(&mut self, key: &VolumeKey) -> Result<Action, Error> {
        match key {
            VolumeKey::Claim(k) => self.sync_claim(k).await,
            VolumeKey::Volume(name) => self.sync_volume(name).await,
        }
    }
}

/// A node as volume node affinity sees it: its name and labels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NodeView<'a> {
    /// `metadata.name`.
    pub(crate) name: &'a str,
    /// `metadata.labels`.
    pub(crate) labels: Option<&'a BTreeMap<String, String>>,
}

impl<'a> NodeView<'a> {
    /// The view of `node`.
    pub(crate) fn of(node: &'a Node) -> Self {
        NodeView {
            name: node.metadata.name.as_deref().unwrap_or(""),
            labels: node.metadata.labels.as_ref(),
        }
    }
}

/// Where a claim's volume must be usable from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Placement<'a> {
    /// Anywhere (`Immediate` binding).
    Immediate,
    /// `WaitForFirstConsumer`: only once a node is chosen, and then from that node.
    Delayed(Option<NodeView<'a>>),
}

/// upstream's `FindMatchingVolume`: a volume pre-bound to the claim, else the smallest
/// Available volume of the claim's class whose access modes include the claim's, whose
/// volume mode is the claim's, whose labels the claim's selector selects, whose capacity
/// covers the request and, for a placed claim, whose node affinity admits the node.
pub(crate) fn best_match<'v>(
    claim: &PersistentVolumeClaim,
    class: &str,
    volumes: impl IntoIterator<Item = &'v PersistentVolume>,
    placement: Placement<'_>,
) -> Option<&'v PersistentVolume> {
    let spec = claim.spec.as_ref()?;
    let requested = storage(spec.resources.as_ref().and_then(|r| r.requests.as_ref()));
    let mode = spec.volume_mode.as_deref().unwrap_or("Filesystem");
    let wanted_modes = spec.access_modes.as_deref().unwrap_or_default();
    let mut best: Option<(&PersistentVolume, i128)> = None;
    for pv in volumes {
        let Some(pv_spec) = pv.spec.as_ref() else {
            continue;
        };
        if pv.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let size = storage(pv_spec.capacity.as_ref());
        if size < requested || pv_spec.volume_mode.as_deref().unwrap_or("Filesystem") != mode {
            continue;
        }
        let node_fits = match placement {
            Placement::Delayed(Some(node)) => volume_fits_node(pv, node),
            _ => true,
        };
        if let Some(r) = &pv_spec.claim_ref {
            if refers_to(r, claim) && node_fits {
                return Some(pv);
            }
            continue;
        }
        if matches!(placement, Placement::Delayed(None)) || !node_fits {
            continue;
        }
        let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
        if phase.is_some_and(|p| p != "Available" && p != "Pending") {
            continue;
        }
        if !selector_admits(spec.selector.as_ref(), pv.metadata.labels.as_ref())
            || volume_class(pv) != class
        {
            continue;
        }
        let offered = pv_spec.access_modes.as_deref().unwrap_or_default();
        if !wanted_modes.iter().all(|m| offered.contains(m)) {
            continue;
        }
        if best.is_none_or(|(_, s)| size < s) {
            best = Some((pv, size));
        }
    }
    best.map(|(pv, _)| pv)
}

/// Whether `pv`'s required node affinity admits `node` (no affinity admits every node).
pub(crate) fn volume_fits_node(pv: &PersistentVolume, node: NodeView<'_>) -> bool {
    pv.spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .is_none_or(|sel| selector_matches_node(sel, node.name, node.labels))
}

/// A claim's selector: absent or empty selects every volume.
fn selector_admits(sel: Option<&LabelSelector>, labels: Option<&BTreeMap<String, String>>) -> bool {
    match sel {
        None => true,
        Some(s)
            if s.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
                && s.match_expressions.as_ref().is_none_or(Vec::is_empty) =>
        {
            true
        }
        Some(s) => selects(s, labels),
    }
}

/// The `storage` quantity of a resource list, in milli-units (0 when absent).
fn storage(
    list: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> i128 {
    list.and_then(|l| l.get("storage"))
        .and_then(|q| q.0.parse::<Quantity>().ok())
        .map_or(0, |q| q.milli_value())
}

/// upstream's `bindVolumeToClaim`: points `pv` at the claim `reference` names, unless
/// another claim holds it; a volume pre-bound to the claim by name gets its uid, one the
/// controller (or the scheduler) points gets `bound-by-controller`. Whether it changed `pv`.
pub(crate) fn point_at_claim(pv: &mut PersistentVolume, reference: &ObjectReference) -> bool {
    let spec = pv.spec.get_or_insert_default();
    match &spec.claim_ref {
        Some(r) if r.uid == reference.uid && r.name == reference.name => false,
        Some(r) if r.uid.as_deref().is_some_and(|u| !u.is_empty()) => false,
        Some(r) if r.name != reference.name || r.namespace != reference.namespace => false,
        existing => {
            if existing.is_none() {
                pv.metadata
                    .annotations
                    .get_or_insert_default()
                    .insert(BOUND_BY_CONTROLLER.into(), "yes".into());
            }
            spec.claim_ref = Some(reference.clone());
            true
        }
    }
}

/// Whether `pv` points at the claim `reference` names (name and uid).
pub(crate) fn points_at(pv: &PersistentVolume, reference: &ObjectReference) -> bool {
    pv.spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some_and(|r| r.uid == reference.uid && r.name == reference.name)
}

/// Whether `r` names `claim` (by namespace and name, and by uid once it carries one).
fn refers_to(r: &ObjectReference, claim: &PersistentVolumeClaim) -> bool {
    r.name == claim.metadata.name
        && r.namespace.as_deref().unwrap_or("") == namespace(claim)
        && r.uid
            .as_deref()
            .is_none_or(|u| u.is_empty() || Some(u) == claim.metadata.uid.as_deref())
}

/// The `claimRef` a bound volume carries.
pub(crate) fn claim_reference(claim: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: claim.metadata.namespace.clone(),
        name: claim.metadata.name.clone(),
        uid: claim.metadata.uid.clone(),
        resource_version: claim.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// upstream's `GetPersistentVolumeClaimClass` without the empty default: the beta
/// annotation, else `spec.storageClassName`; `None` when neither is set.
pub(crate) fn claim_class(claim: &PersistentVolumeClaim) -> Option<&str> {
    annotation(&claim.metadata, BETA_CLASS)
        .or_else(|| claim.spec.as_ref()?.storage_class_name.as_deref())
}

/// upstream's `GetPersistentVolumeClass`.
fn volume_class(pv: &PersistentVolume) -> &str {
    annotation(&pv.metadata, BETA_CLASS)
        .or_else(|| pv.spec.as_ref()?.storage_class_name.as_deref())
        .unwrap_or("")
}

/// `spec.volumeName` (empty while unbound).
pub(crate) fn volume_name(claim: &PersistentVolumeClaim) -> &str {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("")
}

fn claim_phase(claim: &PersistentVolumeClaim) -> &str {
    claim
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pv(name: &str, size: &str, extra: serde_json::Value) -> PersistentVolume {
        let mut v = json!({
            "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                     "hostPath": {"path": "/tmp"}, "volumeMode": "Filesystem"},
            "status": {"phase": "Available"},
        });
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    fn claim(size: &str, extra: serde_json::Value) -> PersistentVolumeClaim {
        let mut v = json!({
            "metadata": {"name": "data", "namespace": "default", "uid": "u1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
        });
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
        match (into, from) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn names(found: Option<&PersistentVolume>) -> Option<&str> {
        found.and_then(|v| v.metadata.name.as_deref())
    }

    #[test]
    fn the_smallest_volume_that_fits_wins() {
        let vols = [
            pv("big", "10Gi", json!({})),
            pv("small", "1Gi", json!({})),
            pv("fits", "2Gi", json!({})),
            pv(
                "rwx",
                "2Gi",
                json!({"spec": {"accessModes": ["ReadWriteMany"]}}),
            ),
        ];
        let c = claim("1500Mi", json!({}));
        assert_eq!(
            names(best_match(&c, "", &vols, Placement::Immediate)),
            Some("fits")
        );
        let c = claim("20Gi", json!({}));
        assert_eq!(names(best_match(&c, "", &vols, Placement::Immediate)), None);
    }

    #[test]
    fn class_mode_selector_and_binding_narrow_the_choice() {
        let vols = [
            pv("fast", "1Gi", json!({"spec": {"storageClassName": "fast"}})),
            pv("block", "1Gi", json!({"spec": {"volumeMode": "Block"}})),
            pv(
                "taken",
                "1Gi",
                json!({"spec": {"claimRef": {"namespace": "default", "name": "other", "uid": "u9"}}}),
            ),
            pv(
                "labelled",
                "5Gi",
                json!({"metadata": {"labels": {"tier": "db"}}}),
            ),
        ];
        let c = claim("1Gi", json!({}));
        assert_eq!(
            names(best_match(&c, "", &vols, Placement::Immediate)),
            Some("labelled")
        );
        assert_eq!(
            names(best_match(&c, "fast", &vols, Placement::Immediate)),
            Some("fast")
        );
        let c = claim(
            "1Gi",
            json!({"spec": {"selector": {"matchLabels": {"tier": "web"}}}}),
        );
        assert_eq!(names(best_match(&c, "", &vols, Placement::Immediate)), None);
        let c = claim("1Gi", json!({"spec": {"volumeMode": "Block"}}));
        assert_eq!(
            names(best_match(&c, "", &vols, Placement::Immediate)),
            Some("block")
        );
    }

    #[test]
    fn a_volume_pre_bound_to_the_claim_comes_first() {
        let vols = [
            pv("any", "1Gi", json!({})),
            pv(
                "mine",
                "3Gi",
                json!({"spec": {"claimRef": {"namespace": "default", "name": "data"}}}),
            ),
        ];
        let c = claim("1Gi", json!({}));
        assert_eq!(
            names(best_match(&c, "", &vols, Placement::Immediate)),
            Some("mine")
        );
        // Not for another claim of that name (a different uid).
        let vols = [pv(
            "old",
            "3Gi",
            json!({"spec": {"claimRef": {"namespace": "default", "name": "data", "uid": "u0"}}}),
        )];
        assert_eq!(names(best_match(&c, "", &vols, Placement::Immediate)), None);
    }

    #[test]
    fn delayed_binding_waits_for_a_node_and_honours_node_affinity() {
        let affinity = json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}}});
        let vols = [pv("local-n1", "1Gi", affinity)];
        let c = claim("1Gi", json!({}));
        let node = |n: &str| -> Node {
            serde_json::from_value(
                json!({"metadata": {"name": n, "labels": {"kubernetes.io/hostname": n}}}),
            )
            .unwrap()
        };
        assert_eq!(
            names(best_match(&c, "", &vols, Placement::Delayed(None))),
            None
        );
        let (n1, n2) = (node("n1"), node("n2"));
        assert_eq!(
            names(best_match(
                &c,
                "",
                &vols,
                Placement::Delayed(Some(NodeView::of(&n1)))
            )),
            Some("local-n1")
        );
        assert_eq!(
            names(best_match(
                &c,
                "",
                &vols,
                Placement::Delayed(Some(NodeView::of(&n2)))
            )),
            None
        );
        assert_eq!(
            names(best_match(&c, "", &vols, Placement::Immediate)),
            Some("local-n1")
        );
    }
}
