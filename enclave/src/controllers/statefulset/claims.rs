//! A StatefulSet's PersistentVolumeClaims (upstream `StatefulPodControl`'s storage half):
//! each pod's claims are made from `volumeClaimTemplates` (`<template>-<set>-<ordinal>`,
//! the set's selector labels added) before the pod, and never deleted by the controller;
//! `persistentVolumeClaimRetentionPolicy` decides who owns them, so that the garbage
//! collector deletes them with the set (`whenDeleted: Delete`) or with a pod scaled away
//! (`whenScaled: Delete`). Retain/Retain, the default, leaves them to the user.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::StatefulSetController;
use super::identity::{claim_name, in_ordinal_range, ordinal};
use crate::controllers::Error;
use crate::controllers::typed::{Object, name, namespace, uid};

/// upstream's `getPersistentVolumeClaims`: the claims `pod` mounts, from the set's templates.
pub(super) fn claims_of(set: &StatefulSet, pod: &Pod) -> Vec<PersistentVolumeClaim> {
    let Some(spec) = set.spec.as_ref() else {
        return Vec::new();
    };
    let o = ordinal(pod);
    let selector_labels = spec.selector.match_labels.clone().unwrap_or_default();
    spec.volume_claim_templates
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|template| {
            let mut claim = template.clone();
            let template_name = claim.metadata.name.clone().unwrap_or_default();
            claim.metadata.name = Some(claim_name(set, &template_name, o));
            claim.metadata.namespace = Some(namespace(set).to_string());
            claim
                .metadata
                .labels
                .get_or_insert_with(BTreeMap::new)
                .extend(selector_labels.clone());
            claim.status = None;
            claim
        })
        .collect()
}

/// A plain (not controlling) owner reference, as upstream's `setOwnerRef` writes it.
fn owner_ref<K: Object>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::API_VERSION.to_string(),
        kind: K::KIND.to_string(),
        name: name(owner).to_string(),
        uid: uid(owner).to_string(),
        controller: None,
        block_owner_deletion: None,
    }
}

/// upstream's `updateClaimOwnerRefForSetAndPod`: the owners the retention policy wants on
/// `claim`, applied to a copy; `None` when it already has them.
fn with_policy_owners(
    set: &StatefulSet,
    pod: &Pod,
    claim: &PersistentVolumeClaim,
) -> Option<PersistentVolumeClaim> {
    let policy = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let deletes = |p: Option<&String>| p.map(String::as_str) == Some("Delete");
    let when_deleted = deletes(policy.and_then(|p| p.when_deleted.as_ref()));
    let when_scaled = deletes(policy.and_then(|p| p.when_scaled.as_ref()));
    let scaled_down = !in_ordinal_range(set, pod);
    // (set owns it, pod owns it)
    let (by_set, by_pod) = match (when_scaled, when_deleted) {
        (false, false) => (false, false),
        (false, true) => (true, false),
        (true, false) => (false, scaled_down),
        (true, true) => (!scaled_down, scaled_down),
    };
    let mut next = claim.clone();
    let refs = next.metadata.owner_references.get_or_insert_with(Vec::new);
    for (want, owner) in [(by_set, owner_ref(set)), (by_pod, owner_ref(pod))] {
        let has = refs.iter().any(|r| r.uid == owner.uid);
        if want && !has {
            refs.push(owner);
        } else if !want && has {
            refs.retain(|r| r.uid != owner.uid);
        }
    }
    if refs.is_empty() {
        next.metadata.owner_references = None;
    }
    (next.metadata.owner_references != claim.metadata.owner_references).then_some(next)
}

impl StatefulSetController {
    /// upstream's `createPersistentVolumeClaims`: the claims of `pod` that do not exist yet,
    /// each with an event; a claim being deleted stops the pod's creation.
    pub(super) async fn create_claims(&self, set: &StatefulSet, pod: &Pod) -> Result<(), Error> {
        let mut failures = Vec::new();
        for claim in claims_of(set, pod) {
            let claim_name = name(&claim).to_string();
            match self.claims.get(namespace(set), &claim_name).await {
                Ok(None) => {
                    let created = self.claims.create(namespace(set), &claim).await;
                    match &created {
                        Err(e) if e.is_already_exists() => {}
                        result => {
                            self.claim_event(set, pod, &claim_name, result.as_ref().err())
                                .await;
                        }
                    }
                    if let Err(e) = created {
                        failures.push(format!(
                            "failed to create PVC {claim_name}: {}",
                            e.api_message()
                        ));
                    }
                }
                Ok(Some(existing)) if existing.metadata.deletion_timestamp.is_some() => {
                    failures.push(format!("pvc {claim_name} is being deleted"));
                }
                Ok(Some(_)) => {}
                Err(e) => {
                    self.claim_event(set, pod, &claim_name, Some(&e)).await;
                    failures.push(format!(
                        "failed to retrieve PVC {claim_name}: {}",
                        e.api_message()
                    ));
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::Claims(failures.join("; ")))
        }
    }

    /// upstream's `UpdatePodClaimForRetentionPolicy`: the owners of each existing claim of
    /// `pod`, as the retention policy wants them.
    pub(super) async fn apply_retention_policy(
        &self,
        set: &StatefulSet,
        pod: &Pod,
    ) -> Result<(), Error> {
        let off_policy = self.claims_off_policy(set, pod).await?;
        self.set_claim_owners(set, pod, &off_policy).await
    }

    /// upstream's `ClaimsMatchRetentionPolicy`, as the names of the existing claims of
    /// `pod` whose owners the policy would change (none: they match).
    pub(super) async fn claims_off_policy(
        &self,
        set: &StatefulSet,
        pod: &Pod,
    ) -> Result<Vec<String>, Error> {
        let mut off = Vec::new();
        for claim in claims_of(set, pod) {
            if let Some(current) = self.claims.get(namespace(set), name(&claim)).await?
                && with_policy_owners(set, pod, &current).is_some()
            {
                off.push(name(&claim).to_string());
            }
        }
        Ok(off)
    }

    /// Sets the owners of the claims `names` (from [`Self::claims_off_policy`]) as the
    /// retention policy wants them, each with a read-modify-write.
    pub(super) async fn set_claim_owners(
        &self,
        set: &StatefulSet,
        pod: &Pod,
        names: &[String],
    ) -> Result<(), Error> {
        for claim in names {
            self.claims
                .edit(namespace(set), claim, |cur| {
                    match with_policy_owners(set, pod, cur) {
                        Some(next) => {
                            *cur = next;
                            true
                        }
                        None => false,
                    }
                })
                .await?;
        }
        Ok(())
    }

    /// upstream's `recordClaimEvent`.
    async fn claim_event(&self, set: &StatefulSet, pod: &Pod, claim: &str, err: Option<&Error>) {
        let (pod, set_name) = (name(pod), name(set));
        self.record_outcome(
            set,
            "create",
            format!("create Claim {claim} Pod {pod} in StatefulSet {set_name} success"),
            &format!("create Claim {claim} for Pod {pod} in StatefulSet {set_name}"),
            err,
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::controllers::statefulset::identity::new_pod;

    fn owned_by(claim: &PersistentVolumeClaim, owner_uid: &str) -> bool {
        claim
            .metadata
            .owner_references
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|r| r.uid == owner_uid)
    }

    fn owned_by_set(set: &StatefulSet, claim: &PersistentVolumeClaim) -> bool {
        owned_by(claim, uid(set))
    }

    fn set(replicas: i32, scaled: &str, deleted: &str) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "ns", "uid": "set-uid"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": {"tier": "disk"}},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
                "persistentVolumeClaimRetentionPolicy": {"whenScaled": scaled, "whenDeleted": deleted}},
        }))
        .unwrap()
    }

    fn pod(set: &StatefulSet, ordinal: i32) -> Pod {
        let mut p = new_pod(set, ordinal, "r");
        p.metadata.uid = Some(format!("pod-{ordinal}"));
        p
    }

    #[test]
    fn claims_are_named_per_ordinal_and_carry_the_selector_labels() {
        let s = set(2, "Retain", "Retain");
        let claims = claims_of(&s, &pod(&s, 1));
        assert_eq!(claims.len(), 1);
        assert_eq!(name(&claims[0]), "data-db-1");
        assert_eq!(namespace(&claims[0]), "ns");
        let labels = claims[0].metadata.labels.as_ref().unwrap();
        assert_eq!(
            (labels["tier"].as_str(), labels["app"].as_str()),
            ("disk", "db")
        );
    }

    #[test]
    fn the_retention_policy_decides_the_owners_as_upstream() {
        let owners = |s: &StatefulSet, ordinal: i32| {
            let p = pod(s, ordinal);
            let claim = claims_of(s, &p).remove(0);
            let claim = with_policy_owners(s, &p, &claim).unwrap_or(claim);
            (owned_by_set(s, &claim), owned_by(&claim, uid(&p)))
        };
        // ordinal 0 is in range (2 replicas), ordinal 3 was scaled away.
        let s = set(2, "Retain", "Retain");
        assert_eq!(
            (owners(&s, 0), owners(&s, 3)),
            ((false, false), (false, false))
        );
        let s = set(2, "Retain", "Delete");
        assert_eq!(
            (owners(&s, 0), owners(&s, 3)),
            ((true, false), (true, false))
        );
        let s = set(2, "Delete", "Retain");
        assert_eq!(
            (owners(&s, 0), owners(&s, 3)),
            ((false, false), (false, true))
        );
        let s = set(2, "Delete", "Delete");
        assert_eq!(
            (owners(&s, 0), owners(&s, 3)),
            ((true, false), (false, true))
        );
        // Already as wanted: nothing to write.
        let s = set(2, "Retain", "Delete");
        let p = pod(&s, 0);
        let claim = claims_of(&s, &p).remove(0);
        let owned = with_policy_owners(&s, &p, &claim).unwrap();
        assert!(with_policy_owners(&s, &p, &owned).is_none());
    }
}
