//! The Deployment controller (upstream `pkg/controller/deployment`): owns
//! one ReplicaSet per pod template, named `<deployment>-<pod-template-hash>`,
//! rolls between them with the Recreate or RollingUpdate strategy, keeps
//! the revision annotations `kubectl rollout` reads, prunes old
//! ReplicaSets beyond `revisionHistoryLimit` and reports status.

mod revision;
mod rollout;
mod status;
mod strategy;

use serde_json::{Value, json};

use super::Error;
use super::client::{Api, Kinds, annotation, by_creation, int, is_deleting, set_annotation, text};
use super::events::{EventRecorder, EventType};
use super::owner::{claim, controller_ref, is_controlled_by};
use super::pod_template::{HASH_LABEL, equal_ignore_hash, template_hash, with_label};
use super::runtime::{Action, ObjectKey, Reconciler};
use crate::registry::{ObjectStore, WatchEvent, meta};
use revision::{REVISION, revision, set_new_rs_annotations};
use status::{
    FAILED_RS_CREATE, FOUND_NEW_RS, NEW_RS_CREATED, has_progress_deadline, new_condition,
    set_condition,
};
use strategy::{max_surge, new_rs_new_replicas, replicas};

/// The reason of the events about scaling a deployment's ReplicaSets.
const SCALING_REPLICA_SET: &str = "ScalingReplicaSet";

/// The Deployment controller.
#[derive(Debug)]
pub(crate) struct DeploymentController {
    deployments: Api,
    replicasets: Api,
    pods: Api,
    events: EventRecorder,
}

/// The component the Deployment controller's events come from, as upstream's.
const COMPONENT: &str = "deployment-controller";

impl DeploymentController {
    /// A controller over `objects`.
    pub(crate) fn new(objects: ObjectStore, kinds: Kinds) -> Self {
        DeploymentController {
            deployments: Api::new(objects.clone(), kinds.deployments),
            replicasets: Api::new(objects.clone(), kinds.replicasets),
            pods: Api::new(objects.clone(), kinds.pods),
            events: EventRecorder::new(Api::new(objects, kinds.events), COMPONENT),
        }
    }
}

/// One sync of one deployment: the deployment as last read or written and
/// the ReplicaSets it controls, oldest first, kept current as they are
/// written.
#[derive(Debug)]
struct Rollout<'a> {
    c: &'a DeploymentController,
    d: Value,
    sets: Vec<Value>,
}

impl Rollout<'_> {
    /// The index of the ReplicaSet whose template is the deployment's
    /// (upstream's `FindNewReplicaSet`: the oldest such), if any.
    fn new_index(&self) -> Option<usize> {
        let template = self.d.pointer("/spec/template").unwrap_or(&Value::Null);
        self.sets.iter().position(|rs| {
            equal_ignore_hash(
                rs.pointer("/spec/template").unwrap_or(&Value::Null),
                template,
            )
        })
    }

    /// Indexes of every other ReplicaSet.
    fn old_indexes(&self, new: Option<usize>) -> Vec<usize> {
        (0..self.sets.len()).filter(|i| Some(*i) != new).collect()
    }

    /// Writes the deployment's status if it differs from the stored one.
    async fn write_status(&mut self, status: Value) -> Result<(), Error> {
        let mut next = self.d.clone();
        next["status"] = status;
        let next = self.c.deployments.canonical(&next);
        if next.get("status") != self.d.get("status") {
            self.d = self.c.deployments.replace_status(next).await?;
        }
        Ok(())
    }

    /// upstream's `SetDeploymentRevision`, written through the object
    /// itself (this store's `/status` keeps metadata, unlike upstream's).
    async fn set_deployment_revision(&mut self, revision: &str) -> Result<(), Error> {
        if annotation(&self.d, REVISION) == Some(revision) {
            return Ok(());
        }
        let mut next = self.d.clone();
        set_annotation(&mut next, REVISION, revision);
        self.d = self.c.deployments.replace(next).await?;
        Ok(())
    }

    /// upstream's `getNewReplicaSet` (inside `getAllReplicaSetsAndSyncRevision`):
    /// brings the new ReplicaSet's annotations and the deployment's
    /// revision up to date and, with `create`, creates the new ReplicaSet
    /// when there is none. Returns its index.
    async fn sync_new(&mut self, create: bool) -> Result<Option<usize>, Error> {
        let new = self.new_index();
        let max_old = self
            .old_indexes(new)
            .iter()
            .map(|i| revision(&self.sets[*i]))
            .max()
            .unwrap_or(0);
        let new_revision = max_old + 1;
        let desired = replicas(&self.d);
        let max = desired + max_surge(&self.d);
        if let Some(i) = new {
            let mut rs = self.sets[i].clone();
            let annotated =
                set_new_rs_annotations(&self.d, &mut rs, new_revision, true, desired, max);
            let min_ready = self.d.pointer("/spec/minReadySeconds").cloned();
            let min_ready_changed = rs.pointer("/spec/minReadySeconds") != min_ready.as_ref()
                && int(&rs, "/spec/minReadySeconds") != int(&self.d, "/spec/minReadySeconds");
            if annotated || min_ready_changed {
                rs["spec"]["minReadySeconds"] = json!(int(&self.d, "/spec/minReadySeconds"));
                self.sets[i] = self.c.replicasets.replace(rs).await?;
                return Ok(Some(i));
            }
            let rev = annotation(&self.sets[i], REVISION)
                .unwrap_or("")
                .to_string();
            self.set_deployment_revision(&rev).await?;
            let status = self.d.get("status").cloned().unwrap_or_else(|| json!({}));
            if has_progress_deadline(&self.d) && status::condition(&status, "Progressing").is_none()
            {
                let mut status = status;
                let message = format!("Found new replica set {:?}", meta::name(&self.sets[i]));
                set_condition(
                    &mut status,
                    new_condition("Progressing", "True", FOUND_NEW_RS, &message),
                );
                self.write_status(status).await?;
            }
            return Ok(Some(i));
        }
        if !create {
            return Ok(None);
        }
        self.create_new(new_revision, desired, max).await.map(Some)
    }

    /// Creates the new ReplicaSet (upstream's create branch of `getNewReplicaSet`).
    async fn create_new(
        &mut self,
        new_revision: i64,
        desired: i64,
        max: i64,
    ) -> Result<usize, Error> {
        let d = &self.d;
        let ns = meta::namespace(d).to_string();
        let collision = d.pointer("/status/collisionCount").and_then(Value::as_i64);
        let mut template = d
            .pointer("/spec/template")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let hash = template_hash(&template, collision);
        let labels = with_label(template.pointer("/metadata/labels"), HASH_LABEL, &hash);
        if let Some(m) = meta::metadata_mut(&mut template) {
            m.insert("labels".into(), labels.clone());
        }
        let mut selector = d
            .pointer("/spec/selector")
            .cloned()
            .unwrap_or_else(|| json!({}));
        selector["matchLabels"] = with_label(selector.get("matchLabels"), HASH_LABEL, &hash);
        let name = format!("{}-{hash}", meta::name(d));
        let mut rs = json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": labels,
                "ownerReferences": [controller_ref(d, "apps/v1", "Deployment")],
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": int(d, "/spec/minReadySeconds"),
                "selector": selector,
                "template": template,
            },
        });
        let size = {
            let mut all: Vec<&Value> = self.sets.iter().collect();
            all.push(&rs);
            new_rs_new_replicas(d, &all, &rs)
        };
        rs["spec"]["replicas"] = json!(size);
        set_new_rs_annotations(d, &mut rs, new_revision, false, desired, max);
        let created = match self.c.replicasets.create(&ns, rs).await {
            Ok(created) => {
                tracing::info!(deployment = meta::name(&self.d), replicaset = %name, replicas = size, "created new replica set");
                Some(created)
            }
            Err(e) if e.is_already_exists() => {
                let existing = self.c.replicasets.get(&ns, &name).await?;
                let ours = existing.filter(|e| {
                    is_controlled_by(e, super::client::uid(&self.d))
                        && equal_ignore_hash(
                            e.pointer("/spec/template").unwrap_or(&Value::Null),
                            self.d.pointer("/spec/template").unwrap_or(&Value::Null),
                        )
                });
                if ours.is_none() {
                    // Another template took the name: hash again with a
                    // higher collision count.
                    let mut status = self.d.get("status").cloned().unwrap_or_else(|| json!({}));
                    status["collisionCount"] = json!(collision.unwrap_or(0) + 1);
                    self.write_status(status).await?;
                    return Err(Error::HashCollision {
                        namespace: ns,
                        name,
                    });
                }
                self.sets.extend(ours);
                return Ok(self.sets.len() - 1);
            }
            Err(e) if e.is_forbidden() => return Err(e),
            Err(e) => {
                if has_progress_deadline(&self.d) {
                    let mut status = self.d.get("status").cloned().unwrap_or_else(|| json!({}));
                    let message = format!(
                        "Failed to create new replica set {name:?}: {}",
                        e.one_line()
                    );
                    set_condition(
                        &mut status,
                        new_condition("Progressing", "False", FAILED_RS_CREATE, &message),
                    );
                    self.write_status(status).await?;
                }
                let message = format!(
                    "Failed to create new replica set {name:?}: {}",
                    e.api_message()
                );
                self.c
                    .events
                    .record(&self.d, EventType::Warning, FAILED_RS_CREATE, &message)
                    .await;
                return Err(e);
            }
        };
        if created.is_some() && size > 0 {
            let message = format!("Scaled up replica set {name} from 0 to {size}");
            self.c
                .events
                .record(&self.d, EventType::Normal, SCALING_REPLICA_SET, &message)
                .await;
        }
        self.sets.extend(created);
        let i = self.sets.len() - 1;
        self.set_deployment_revision(&new_revision.to_string())
            .await?;
        if has_progress_deadline(&self.d) {
            let mut status = self.d.get("status").cloned().unwrap_or_else(|| json!({}));
            let message = format!("Created new replica set {name:?}");
            set_condition(
                &mut status,
                new_condition("Progressing", "True", NEW_RS_CREATED, &message),
            );
            self.write_status(status).await?;
        }
        Ok(i)
    }
}

impl Reconciler for DeploymentController {
    type Key = ObjectKey;
    const NAME: &'static str = "deployment";

    async fn keys_for(&mut self, kind: usize, event: &WatchEvent) -> Vec<ObjectKey> {
        super::owner::keys_for(&self.deployments, "Deployment", kind, event).await
    }

    async fn reconcile(&mut self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(d) = self.deployments.get(&key.namespace, &key.name).await? else {
            return Ok(Action::await_change());
        };
        let selector = d.pointer("/spec/selector").cloned().unwrap_or(Value::Null);
        let sets = self.replicasets.list(&key.namespace).await?;
        let mut sets = claim(
            &self.replicasets,
            &d,
            &selector,
            "apps/v1",
            "Deployment",
            sets,
        )
        .await?;
        sets.sort_by(by_creation);
        let mut rollout = Rollout { c: self, d, sets };
        match rollout.sync().await {
            Err(e) if e.is_not_found() => Ok(Action::await_change()),
            other => other,
        }
    }
}

impl Rollout<'_> {
    /// upstream's `syncDeployment` after the claim: deleting, paused,
    /// scaling, then the strategy.
    async fn sync(&mut self) -> Result<Action, Error> {
        if !selects_anything(&self.d) {
            // upstream: an empty selector selects everything, which a
            // deployment must not do; only observedGeneration moves.
            self.c
                .events
                .record(
                    &self.d,
                    EventType::Warning,
                    "SelectingAll",
                    "This deployment is selecting all pods. A non-empty selector is required.",
                )
                .await;
            let mut status = self.d.get("status").cloned().unwrap_or_else(|| json!({}));
            status["observedGeneration"] = json!(int(&self.d, "/metadata/generation"));
            self.write_status(status).await?;
            return Ok(Action::await_change());
        }
        if is_deleting(&self.d) {
            return self.sync_status_only().await;
        }
        self.check_paused_conditions().await?;
        if self.d.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
            return self.sync_scale().await;
        }
        if self.is_scaling_event().await? {
            return self.sync_scale().await;
        }
        if text(&self.d, "/spec/strategy/type") == "Recreate" {
            self.rollout_recreate().await
        } else {
            self.rollout_rolling().await
        }
    }
}

/// Whether the deployment's selector is non-empty.
fn selects_anything(d: &Value) -> bool {
    d.pointer("/spec/selector").is_some_and(|s| {
        s.get("matchLabels")
            .and_then(Value::as_object)
            .is_some_and(|m| !m.is_empty())
            || s.get("matchExpressions")
                .and_then(Value::as_array)
                .is_some_and(|e| !e.is_empty())
    })
}
