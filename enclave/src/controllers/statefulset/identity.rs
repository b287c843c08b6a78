//! A StatefulSet pod's stable identity (upstream
//! `stateful_set_utils.go`): its name `<set>-<ordinal>`, hostname and
//! subdomain, the `statefulset.kubernetes.io/pod-name` and
//! `apps.kubernetes.io/pod-index` labels, the volumes of its claims, and
//! the revision label it runs.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaimVolumeSource, Pod, Volume};

use crate::controllers::history::REVISION_LABEL;
use crate::controllers::typed::owner::controller_ref;
use crate::controllers::typed::pod::from_template;
use crate::controllers::typed::{name, namespace};

/// The label with a StatefulSet pod's name.
pub(crate) const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label with a StatefulSet pod's ordinal.
pub(crate) const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// upstream's `getParentNameAndOrdinal`: `<parent>-<ordinal>`; the
/// ordinal is -1 if the name does not end in one.
pub(crate) fn parent_and_ordinal(pod_name: &str) -> (&str, i32) {
    match pod_name.rsplit_once('-') {
        Some((parent, digits))
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            (parent, digits.parse::<i32>().unwrap_or(-1))
        }
        _ => ("", -1),
    }
}

/// The pod's ordinal (-1 if none).
pub(crate) fn ordinal(pod: &Pod) -> i32 {
    parent_and_ordinal(name(pod)).1
}

/// upstream's `isMemberOf`: named after the set.
pub(crate) fn is_member_of(set: &StatefulSet, pod: &Pod) -> bool {
    parent_and_ordinal(name(pod)).0 == name(set)
}

/// `spec.ordinals.start` (0 when unset).
pub(crate) fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
}

/// `spec.replicas` (1 when unset).
pub(crate) fn replicas(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// Whether the pod's ordinal is one the set wants now.
pub(crate) fn in_ordinal_range(set: &StatefulSet, pod: &Pod) -> bool {
    let o = ordinal(pod);
    let start = start_ordinal(set);
    o >= start && o < start.saturating_add(replicas(set))
}

/// The revision the pod runs (its `controller-revision-hash` label).
pub(crate) fn pod_revision(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_LABEL))
        .map_or("", String::as_str)
}

/// upstream's `getPersistentVolumeClaimName`.
pub(crate) fn claim_name(set: &StatefulSet, template: &str, ordinal: i32) -> String {
    format!("{template}-{}-{ordinal}", name(set))
}

fn claim_templates(set: &StatefulSet) -> Vec<String> {
    set.spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_deref())
        .unwrap_or_default()
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect()
}

/// upstream's `updateStorage`: a volume per claim template, pointing at
/// `<template>-<set>-<ordinal>`, then the pod's other volumes.
fn update_storage(set: &StatefulSet, pod: &mut Pod) {
    let templates = claim_templates(set);
    if templates.is_empty() {
        return;
    }
    let o = ordinal(pod);
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    let mut volumes: Vec<Volume> = templates
        .iter()
        .map(|t| Volume {
            name: t.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(set, t, o),
                read_only: None,
            }),
            ..Volume::default()
        })
        .collect();
    volumes.extend(
        spec.volumes
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|v| !templates.contains(&v.name)),
    );
    spec.volumes = Some(volumes);
}

/// upstream's `storageMatches`: every claim template's volume points at
/// the pod's claim. (A pod's volumes cannot change after its creation, so
/// the controller never repairs them; the tests check new pods with it.)
#[cfg(test)]
fn storage_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let o = ordinal(pod);
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    claim_templates(set).iter().all(|t| {
        volumes.iter().any(|v| {
            v.name == *t
                && v.persistent_volume_claim
                    .as_ref()
                    .is_some_and(|c| c.claim_name == claim_name(set, t, o))
        })
    })
}

/// upstream's `updateIdentity`: the identity labels.
pub(crate) fn update_identity(set: &StatefulSet, pod: &mut Pod) {
    let o = ordinal(pod);
    let pod_name = format!("{}-{o}", name(set));
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.into(), pod_name.clone());
    labels.insert(POD_INDEX_LABEL.into(), o.to_string());
    pod.metadata.name = Some(pod_name);
    pod.metadata.namespace = Some(namespace(set).to_string());
}

/// upstream's `identityMatches`.
pub(crate) fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let (parent, o) = parent_and_ordinal(name(pod));
    let labels = pod.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    o >= 0
        && parent == name(set)
        && namespace(pod) == namespace(set)
        && label(POD_NAME_LABEL) == Some(name(pod))
        && label(POD_INDEX_LABEL) == Some(o.to_string().as_str())
}

/// upstream's `newStatefulSetPod` with `setPodRevision`: the pod of
/// `ordinal` from `set`'s template, running `revision`.
pub(crate) fn new_pod(set: &StatefulSet, ordinal: i32, revision: &str) -> Pod {
    let template = set
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut pod = from_template(&template, namespace(set), controller_ref(set), "");
    pod.metadata.generate_name = None;
    pod.metadata.name = Some(format!("{}-{ordinal}", name(set)));
    update_identity(set, &mut pod);
    let pod_name = name(&pod).to_string();
    if let Some(spec) = pod.spec.as_mut() {
        spec.hostname = Some(pod_name);
        spec.subdomain = set.spec.as_ref().and_then(|s| s.service_name.clone());
    }
    update_storage(set, &mut pod);
    pod.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(REVISION_LABEL.into(), revision.to_string());
    pod
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_and_ordinals() {
        assert_eq!(parent_and_ordinal("web-0"), ("web", 0));
        assert_eq!(parent_and_ordinal("my-web-12"), ("my-web", 12));
        assert_eq!(parent_and_ordinal("web"), ("", -1));
        assert_eq!(parent_and_ordinal("web-x1"), ("", -1));
    }

    #[test]
    fn a_new_pod_has_its_identity_and_claims() {
        let set: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "ns", "uid": "u"},
            "spec": {"serviceName": "db-svc", "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}],
                        "volumes": [{"name": "scratch", "emptyDir": {}}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}}]},
        }))
        .unwrap();
        let pod = new_pod(&set, 2, "db-abc");
        assert_eq!(name(&pod), "db-2");
        assert!(identity_matches(&set, &pod));
        assert!(storage_matches(&set, &pod));
        assert_eq!(pod_revision(&pod), "db-abc");
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("db-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("db-svc"));
        let volumes = spec.volumes.as_ref().unwrap();
        assert_eq!(
            volumes[0]
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "data-db-2"
        );
        assert_eq!(volumes[1].name, "scratch");
        assert_eq!(pod.metadata.labels.as_ref().unwrap()[POD_INDEX_LABEL], "2");
    }
}
