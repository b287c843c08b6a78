//! A DaemonSet's history (upstream `daemon/update.go`:
//! `constructHistory`, `snapshot`, `dedupCurHistories`,
//! `cleanupHistory`): one ControllerRevision per template, named
//! `<daemonset>-<hash>`, labelled `controller-revision-hash`, the current
//! one carrying the highest revision number.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;

use super::DaemonSetController;
use crate::controllers::Error;
use crate::controllers::history::{
    REVISION_LABEL, by_revision, controlled_revisions, template_patch,
};
use crate::controllers::pod_template::template_hash;
use crate::controllers::typed::owner::controller_ref;
use crate::controllers::typed::{name, namespace};
use crate::registry::generic::Propagation;

/// upstream's `getPatch` of a DaemonSet.
fn patch(ds: &DaemonSet) -> serde_json::Value {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    template_patch(&template)
}

/// upstream's `Match`: the revision holds this DaemonSet's template.
pub(super) fn matches(ds: &DaemonSet, cr: &ControllerRevision) -> bool {
    cr.data.as_ref().is_some_and(|d| d.0 == patch(ds))
}

/// The revision's `controller-revision-hash` label.
pub(super) fn hash_of(cr: &ControllerRevision) -> &str {
    cr.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_LABEL))
        .map_or("", String::as_str)
}

/// The pod's `controller-revision-hash` label.
pub(super) fn pod_hash(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_LABEL))
        .map_or("", String::as_str)
}

impl DaemonSetController {
    /// upstream's `constructHistory`: the current revision (created or
    /// renumbered as needed) and the old ones.
    pub(super) async fn construct_history(
        &self,
        ds: &DaemonSet,
    ) -> Result<(ControllerRevision, Vec<ControllerRevision>), Error> {
        let selector = ds
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let mut current = Vec::new();
        let mut old = Vec::new();
        for mut cr in controlled_revisions(&self.revisions, ds, &selector).await? {
            if hash_of(&cr).is_empty() {
                // Older revisions get the label: their name stands for the hash.
                let mut next = cr.clone();
                let label = name(&cr).to_string();
                next.metadata
                    .labels
                    .get_or_insert_with(BTreeMap::new)
                    .insert(REVISION_LABEL.into(), label);
                cr = self.revisions.replace(&next).await?;
            }
            if matches(ds, &cr) {
                current.push(cr);
            } else {
                old.push(cr);
            }
        }
        let next_revision = old.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
        current.sort_by(by_revision);
        let cur = match current.pop() {
            None => self.snapshot(ds, next_revision).await?,
            Some(keep) => {
                let mut cur = self.dedup(ds, keep, current).await?;
                if cur.revision < next_revision {
                    let mut next = cur.clone();
                    next.revision = next_revision;
                    cur = self.revisions.replace(&next).await?;
                }
                cur
            }
        };
        Ok((cur, old))
    }

    /// upstream's `snapshot`: a new revision of the DaemonSet's template;
    /// on a name taken by other data the collision count goes up.
    async fn snapshot(&self, ds: &DaemonSet, revision: i64) -> Result<ControllerRevision, Error> {
        let template = ds
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let collision = ds.status.as_ref().and_then(|s| s.collision_count);
        let template_json = serde_json::to_value(&template).unwrap_or_default();
        let hash = template_hash(&template_json, collision.map(i64::from));
        let cr_name = format!("{}-{hash}", name(ds));
        let mut labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(REVISION_LABEL.into(), hash);
        let cr = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(cr_name.clone()),
                namespace: Some(namespace(ds).to_string()),
                labels: Some(labels),
                annotations: ds.metadata.annotations.clone(),
                owner_references: Some(vec![controller_ref(ds)]),
                ..ObjectMeta::default()
            },
            data: Some(RawExtension(patch(ds))),
            revision,
        };
        match self.revisions.create(namespace(ds), &cr).await {
            Ok(created) => Ok(created),
            Err(e) if e.is_already_exists() => {
                let existing = self.revisions.get(namespace(ds), &cr_name).await?;
                if let Some(existing) = existing.filter(|x| matches(ds, x)) {
                    return Ok(existing);
                }
                let current = self.daemonsets.get(namespace(ds), name(ds)).await?;
                let Some(mut current) = current else {
                    return Err(e);
                };
                let now = current.status.as_ref().and_then(|s| s.collision_count);
                if now == collision {
                    let status = current.status.get_or_insert_with(DaemonSetStatus::default);
                    status.collision_count = Some(now.unwrap_or(0).saturating_add(1));
                    self.daemonsets.replace_status(&current).await?;
                }
                Err(Error::RevisionCollision {
                    namespace: namespace(ds).to_string(),
                    name: cr_name,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// upstream's `dedupCurHistories`: of several revisions with the
    /// current template, the highest (`keep`) stays; pods of the others
    /// (`others`) are relabelled to it and the others go.
    async fn dedup(
        &self,
        ds: &DaemonSet,
        keep: ControllerRevision,
        others: Vec<ControllerRevision>,
    ) -> Result<ControllerRevision, Error> {
        if others.is_empty() {
            return Ok(keep);
        }
        let keep_hash = hash_of(&keep).to_string();
        let pods = self.pods.list(namespace(ds)).await?;
        for dup in others {
            let dup_hash = hash_of(&dup).to_string();
            for pod in pods.iter().filter(|p| pod_hash(p) == dup_hash) {
                let relabel = |cur: &mut Pod| {
                    if pod_hash(cur) != dup_hash {
                        return false;
                    }
                    cur.metadata
                        .labels
                        .get_or_insert_with(BTreeMap::new)
                        .insert(REVISION_LABEL.into(), keep_hash.clone());
                    true
                };
                match self.pods.edit(namespace(pod), name(pod), relabel).await {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
            self.revisions
                .delete_propagating(
                    namespace(&dup),
                    name(&dup),
                    dup.metadata.uid.as_deref(),
                    Propagation::Background,
                )
                .await?;
        }
        Ok(keep)
    }

    /// upstream's `cleanupHistory`: old revisions beyond
    /// `revisionHistoryLimit` go, oldest first, except those a pod (even a
    /// finished or deleted one) still runs.
    pub(super) async fn cleanup_history(
        &self,
        ds: &DaemonSet,
        pods: &[Pod],
        mut old: Vec<ControllerRevision>,
    ) -> Result<(), Error> {
        let keep = ds
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10);
        let mut to_kill = old.len().saturating_sub(usize::try_from(keep).unwrap_or(0));
        if to_kill == 0 {
            return Ok(());
        }
        let live: HashSet<&str> = pods
            .iter()
            .map(pod_hash)
            .filter(|h| !h.is_empty())
            .collect();
        old.sort_by(by_revision);
        for cr in &old {
            if to_kill == 0 {
                break;
            }
            if live.contains(hash_of(cr)) {
                continue;
            }
            self.revisions
                .delete_propagating(
                    namespace(cr),
                    name(cr),
                    cr.metadata.uid.as_deref(),
                    Propagation::Background,
                )
                .await?;
            to_kill -= 1;
        }
        Ok(())
    }
}
