//! The StatefulSet controller (upstream `pkg/controller/statefulset`):
//! pods with stable names and identities ([`identity`]) managed
//! `OrderedReady` or `Parallel`, rolled by RollingUpdate with a partition
//! or OnDelete ([`control`]), with ControllerRevisions as history (the
//! current and update revisions in the status, `revisionHistoryLimit`
//! kept) and `spec.ordinals.start`. Each pod's PersistentVolumeClaims
//! come from `volumeClaimTemplates` before the pod, owned as
//! `persistentVolumeClaimRetentionPolicy` says ([`claims`]).

mod claims;
mod control;
mod identity;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};

use super::Error;
use super::client::{Api, Kinds};
use super::events::EventRecorder;
use super::history::{
    by_revision, controlled_revisions, create_revision, equal_revision, new_revision,
    next_revision, template_patch,
};
use super::runtime::{Action, ObjectKey, Reconciler};
use super::typed::owner::{ClaimOptions, claim, event_object, metadata_of, owners_of, selects};
use super::typed::{Typed, name, namespace};
use crate::registry::generic::Propagation;
use crate::registry::{ObjectStore, ResourceInfo, WatchEvent};
use identity::{is_member_of, pod_revision};

/// The component the StatefulSet controller's events come from, as upstream's.
const COMPONENT: &str = "statefulset-controller";

/// The StatefulSet controller.
#[derive(Debug)]
pub(crate) struct StatefulSetController {
    sets: Typed<StatefulSet>,
    pods: Typed<Pod>,
    revisions: Typed<ControllerRevision>,
    claims: Typed<PersistentVolumeClaim>,
    events: EventRecorder,
}

impl StatefulSetController {
    /// A controller over `objects`.
    pub(crate) fn new(
        objects: &ObjectStore,
        kinds: &Kinds,
        sets: std::sync::Arc<ResourceInfo>,
        revisions: std::sync::Arc<ResourceInfo>,
        claims: std::sync::Arc<ResourceInfo>,
    ) -> Self {
        StatefulSetController {
            sets: Typed::new(objects.clone(), sets),
            pods: Typed::new(objects.clone(), kinds.pods.clone()),
            revisions: Typed::new(objects.clone(), revisions),
            claims: Typed::new(objects.clone(), claims),
            events: EventRecorder::new(Api::new(objects.clone(), kinds.events.clone()), COMPONENT),
        }
    }

    /// upstream's `getStatefulSetRevisions`: the current revision (the
    /// status's, or the update revision at first), the update revision
    /// (found equal to the template, renumbered if it was an older one,
    /// or created), and the collision count.
    async fn revisions_of(
        &self,
        set: &StatefulSet,
        revisions: &[ControllerRevision],
    ) -> Result<(ControllerRevision, ControllerRevision, i32), Error> {
        let mut collision = set
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let template = set
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let mut wanted = new_revision(
            set,
            template.metadata.as_ref().and_then(|m| m.labels.as_ref()),
            template_patch(&template),
            next_revision(revisions),
            Some(collision),
        );
        if let Some(a) = &set.metadata.annotations {
            wanted
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .extend(a.clone());
        }
        let equal: Vec<&ControllerRevision> = revisions
            .iter()
            .filter(|r| equal_revision(r, &wanted))
            .collect();
        let update = match (equal.last(), revisions.last()) {
            (Some(eq), Some(last)) if equal_revision(last, eq) => last.clone(),
            (Some(eq), _) => {
                let mut next = (*eq).clone();
                next.revision = wanted.revision;
                self.revisions.replace(&next).await?
            }
            (None, _) => create_revision(&self.revisions, set, &wanted, &mut collision).await?,
        };
        let current_name = set.status.as_ref().and_then(|s| s.current_revision.clone());
        let current = revisions
            .iter()
            .find(|r| r.metadata.name.is_some() && r.metadata.name == current_name)
            .cloned()
            .unwrap_or_else(|| update.clone());
        Ok((current, update, collision))
    }

    /// upstream's `truncateHistory`: revisions neither current, update nor
    /// run by a pod go beyond `revisionHistoryLimit`, oldest first.
    async fn truncate_history(
        &self,
        set: &StatefulSet,
        pods: &[Pod],
        revisions: &[ControllerRevision],
        live: &[&str],
    ) -> Result<(), Error> {
        let history: Vec<&ControllerRevision> = revisions
            .iter()
            .filter(|r| {
                !live.contains(&name(*r)) && !pods.iter().any(|p| pod_revision(p) == name(*r))
            })
            .collect();
        let limit = set
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10);
        let surplus = history
            .len()
            .saturating_sub(usize::try_from(limit).unwrap_or(0));
        for r in history.into_iter().take(surplus) {
            self.revisions
                .delete_propagating(
                    namespace(r),
                    name(r),
                    r.metadata.uid.as_deref(),
                    Propagation::Background,
                )
                .await?;
        }
        Ok(())
    }

    /// upstream's `sync` and `UpdateStatefulSet`.
    async fn sync(&self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(set) = self.sets.get(&key.namespace, &key.name).await? else {
            return Ok(Action::await_change());
        };
        let selector = set
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let mut revisions = controlled_revisions(&self.revisions, &set, &selector).await?;
        revisions.sort_by(by_revision);
        let candidates = self.pods.list(namespace(&set)).await?;
        let pods = claim(
            &self.pods,
            &set,
            |p: &Pod| selects(&selector, p.metadata.labels.as_ref()) && is_member_of(&set, p),
            candidates,
            ClaimOptions::default(),
        )
        .await?;
        let (current, update, collision) = self.revisions_of(&set, &revisions).await?;
        let (mut status, err) = self
            .update_stateful_set(&set, &current, &update, collision, &pods)
            .await;
        // upstream's `completeRollingUpdate`.
        let rolling = set
            .spec
            .as_ref()
            .and_then(|s| s.update_strategy.as_ref())
            .is_none_or(|u| u.type_.as_deref() != Some("OnDelete"));
        if rolling
            && status.updated_replicas.unwrap_or(0) == status.replicas
            && status.ready_replicas.unwrap_or(0) == status.replicas
        {
            status.current_replicas = status.updated_replicas;
            status.current_revision = status.update_revision.clone();
        }
        if set.status.as_ref() != Some(&status) {
            let mut next = set.clone();
            next.status = Some(status.clone());
            self.sets.replace_status(&next).await?;
        }
        let live = [name(&current), name(&update)];
        let truncated = self.truncate_history(&set, &pods, &revisions, &live).await;
        if let Some(e) = err {
            return Err(e);
        }
        truncated?;
        let min_ready = set
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        let want = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        if min_ready > 0 && status.available_replicas.unwrap_or(0) != want {
            return Ok(Action::requeue(std::time::Duration::from_secs(
                u64::try_from(min_ready).unwrap_or(1),
            )));
        }
        Ok(Action::await_change())
    }
}

/// The StatefulSet's selector.
fn set_selector(
    set: &StatefulSet,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector> {
    set.spec.as_ref().map(|s| &s.selector)
}

impl Reconciler for StatefulSetController {
    type Key = ObjectKey;
    const NAME: &'static str = "statefulset";

    async fn keys_for(&mut self, kind: usize, event: &WatchEvent) -> Vec<ObjectKey> {
        let Some((obj, deleted)) = event_object(event) else {
            return Vec::new();
        };
        let selector = set_selector;
        match kind {
            0 => vec![ObjectKey::of(obj)],
            _ => match metadata_of(obj) {
                Some(meta) => owners_of(&self.sets, "StatefulSet", &meta, deleted, selector).await,
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
