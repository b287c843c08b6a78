//! ControllerRevisions, the history DaemonSets and StatefulSets keep of
//! their pod templates (upstream `pkg/controller/history` and the
//! DaemonSet controller's `constructHistory`): the revision's data (a
//! strategic merge patch that replaces `spec.template`, which `kubectl
//! rollout undo` applies as is), names and hashes, the claim of a
//! controller's revisions, and creation with hash collisions.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use serde_json::{Value, json};

use super::Error;
use super::typed::owner::{ClaimOptions, claim, controller_ref, selects};
use super::typed::{Object, Typed, name, namespace};

/// The label a StatefulSet's revisions carry their hash in (upstream's
/// `ControllerRevisionHashLabel`).
pub(crate) const HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// The label a DaemonSet's revisions and pods, and a StatefulSet's pods,
/// carry their revision in (upstream's `ControllerRevisionHashLabelKey`).
pub(crate) const REVISION_LABEL: &str = "controller-revision-hash";

/// upstream's `rand.SafeEncodeString` alphabet.
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// FNV-1 (not 1a), 32 bits, as Go's `fnv.New32`.
fn fnv32(bytes: &[u8], mut h: u32) -> u32 {
    for b in bytes {
        h = h.wrapping_mul(16_777_619);
        h ^= u32::from(*b);
    }
    h
}

fn safe_encode(n: u32) -> String {
    n.to_string()
        .bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// The revision data upstream's DaemonSet and StatefulSet controllers
/// store (`getPatch`): `{"spec":{"template":{...,"$patch":"replace"}}}`.
pub(crate) fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(o) = t.as_object_mut() {
        o.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The template a revision's data carries (upstream's `ApplyRevision` of
/// a template-replacing patch); `None` if the data has none.
pub(crate) fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = revision.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Some(o) = t.as_object_mut() {
        o.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// The data of a revision as canonical JSON bytes (sorted keys).
fn data_bytes(revision: &ControllerRevision) -> Vec<u8> {
    revision
        .data
        .as_ref()
        .and_then(|d| serde_json::to_vec(&d.0).ok())
        .unwrap_or_default()
}

/// upstream's `HashControllerRevision`: FNV-32 of the data and, when set,
/// the collision count in decimal, safe-encoded.
pub(crate) fn hash_revision(revision: &ControllerRevision, collision_count: Option<i32>) -> String {
    let mut h = fnv32(&data_bytes(revision), 2_166_136_261);
    if let Some(c) = collision_count {
        h = fnv32(c.to_string().as_bytes(), h);
    }
    safe_encode(h)
}

/// upstream's `ControllerRevisionName`: `<prefix>-<hash>`, the prefix cut
/// to 223 characters.
pub(crate) fn revision_name(prefix: &str, hash: &str) -> String {
    let prefix: String = prefix.chars().take(223).collect();
    format!("{prefix}-{hash}")
}

/// upstream's `EqualRevision`: the same data.
pub(crate) fn equal_revision(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    data_bytes(a) == data_bytes(b)
}

/// upstream's `SortControllerRevisions` order: by revision, then oldest
/// first, then by name.
pub(crate) fn by_revision(a: &ControllerRevision, b: &ControllerRevision) -> Ordering {
    a.revision
        .cmp(&b.revision)
        .then_with(|| {
            let t = |r: &ControllerRevision| r.metadata.creation_timestamp.clone().map(|t| t.0);
            t(a).cmp(&t(b))
        })
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// upstream's `NewControllerRevision`: a revision of `parent` with the
/// template's labels plus the hash label, named after its hash.
pub(crate) fn new_revision<P: Object>(
    parent: &P,
    template_labels: Option<&BTreeMap<String, String>>,
    data: Value,
    revision: i64,
    collision_count: Option<i32>,
) -> ControllerRevision {
    let mut cr = ControllerRevision {
        metadata: ObjectMeta {
            namespace: Some(namespace(parent).to_string()),
            labels: Some(template_labels.cloned().unwrap_or_default()),
            owner_references: Some(vec![controller_ref(parent)]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(data)),
        revision,
    };
    let hash = hash_revision(&cr, collision_count);
    cr.metadata.name = Some(revision_name(name(parent), &hash));
    if let Some(l) = cr.metadata.labels.as_mut() {
        l.insert(HASH_LABEL.into(), hash);
    }
    cr
}

/// upstream's `realHistory.CreateControllerRevision`: creates `revision`,
/// hashing again with a higher `collision_count` while another revision
/// with other data holds the name; an existing one with the same data is
/// returned as is.
///
/// # Errors
/// The API's error.
pub(crate) async fn create_revision<P: Object>(
    api: &Typed<ControllerRevision>,
    parent: &P,
    revision: &ControllerRevision,
    collision_count: &mut i32,
) -> Result<ControllerRevision, Error> {
    let ns = namespace(parent);
    loop {
        let hash = hash_revision(revision, Some(*collision_count));
        let mut clone = revision.clone();
        clone.metadata.name = Some(revision_name(name(parent), &hash));
        let cr_name = clone.metadata.name.clone().unwrap_or_default();
        match api.create(ns, &clone).await {
            Ok(created) => return Ok(created),
            Err(e) if e.is_already_exists() => {
                let Some(existing) = api.get(ns, &cr_name).await? else {
                    continue;
                };
                if equal_revision(&existing, &clone) {
                    return Ok(existing);
                }
                *collision_count = collision_count.saturating_add(1);
            }
            Err(e) => return Err(e),
        }
    }
}

/// The revisions `parent` controls, after adopting matching orphans and
/// releasing those that stopped matching (upstream's
/// `ControllerRevisionControllerRefManager`).
///
/// # Errors
/// The API's error.
pub(crate) async fn controlled_revisions<P: Object>(
    api: &Typed<ControllerRevision>,
    parent: &P,
    selector: &LabelSelector,
) -> Result<Vec<ControllerRevision>, Error> {
    let all = api.list(namespace(parent)).await?;
    claim(
        api,
        parent,
        |cr: &ControllerRevision| selects(selector, cr.metadata.labels.as_ref()),
        all,
        ClaimOptions::default(),
    )
    .await
}

/// upstream's `nextRevision`: one more than the highest.
pub(crate) fn next_revision(revisions: &[ControllerRevision]) -> i64 {
    revisions.iter().map(|r| r.revision).max().unwrap_or(0) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv32_is_fnv1() {
        // Go: fnv.New32(); Write("a"); Sum32() == 0x050c5d7e.
        assert_eq!(fnv32(b"a", 2_166_136_261), 0x050c_5d7e);
        assert_eq!(fnv32(b"", 2_166_136_261), 0x811c_9dc5);
    }

    #[test]
    fn revisions_hash_their_data_and_the_collision_count() {
        let mut cr = ControllerRevision {
            data: Some(RawExtension(
                json!({"spec": {"template": {"$patch": "replace"}}}),
            )),
            ..ControllerRevision::default()
        };
        let h = hash_revision(&cr, None);
        assert!(h.bytes().all(|b| ALPHANUMS.contains(&b)));
        assert_ne!(h, hash_revision(&cr, Some(1)));
        assert_eq!(h, hash_revision(&cr.clone(), None));
        cr.data = Some(RawExtension(json!({"spec": {}})));
        assert_ne!(h, hash_revision(&cr, None));
        assert_eq!(revision_name(&"x".repeat(300), "h").len(), 225);
    }

    #[test]
    fn a_template_round_trips_through_its_patch() {
        let template: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "a"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}))
        .unwrap();
        let cr = ControllerRevision {
            data: Some(RawExtension(template_patch(&template))),
            ..ControllerRevision::default()
        };
        assert_eq!(
            cr.data.as_ref().unwrap().0["spec"]["template"]["$patch"],
            "replace"
        );
        assert_eq!(template_of(&cr), Some(template));
    }
}
