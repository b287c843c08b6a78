//! The Job controller (upstream `pkg/controller/job`, as in 1.33 with its
//! GA and beta features on): runs pods until `completions` succeed or the
//! Job fails, with `parallelism`, `backoffLimit` and the exponential pod
//! backoff, `backoffLimitPerIndex` and `maxFailedIndexes`, the pod failure
//! policy, `activeDeadlineSeconds`, Indexed completion, the success
//! policy, `suspend`, `podReplacementPolicy`, and the pod finalizer
//! `batch.kubernetes.io/job-tracking` through which every finished pod is
//! counted exactly once (`status.uncountedTerminatedPods`), even across a
//! restart.
//!
//! [`sync`] is upstream's `syncJob` (with its finishing rules in
//! [`criteria`]), [`manage`] its `manageJob`,
//! [`tracking`] its `trackJobStatusAndRemoveFinalizers`. Pods whose Job is
//! gone or finished lose their finalizer through [`JobKey::OrphanPod`].

mod criteria;
mod failure;
mod indexes;
mod manage;
mod sync;
mod tracking;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec};
use k8s_openapi::api::core::v1::Pod;

use super::Error;
use super::client::Kinds;
use super::events::EventRecorder;
use super::runtime::{Action, ObjectKey, Reconciler};
use super::typed::owner::{event_object, metadata_of, owners_of};
use super::typed::{Typed, name, namespace, uid};
use crate::registry::{ObjectStore, WatchEvent};

/// The finalizer that keeps a Job's pod until the Job counted it.
pub(crate) const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";

/// The component the Job controller's events come from, as upstream's.
const COMPONENT: &str = "job-controller";

/// The `spec.managedBy` value of Jobs this controller manages.
const MANAGED_BY_DEFAULT: &str = "kubernetes.io/job-controller";

/// What the Job controller's queue holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum JobKey {
    /// Sync this Job.
    Job(ObjectKey),
    /// Remove the tracking finalizer from this pod if no live Job of its
    /// counts it any more (upstream's orphan queue).
    OrphanPod(ObjectKey),
}

/// The Job controller.
#[derive(Debug)]
pub(crate) struct JobController {
    jobs: Typed<Job>,
    pods: Typed<Pod>,
    events: EventRecorder,
}

impl JobController {
    /// A controller over `objects`, reading Jobs from `jobs`.
    pub(crate) fn new(objects: &ObjectStore, kinds: &Kinds, jobs: Typed<Job>) -> Self {
        JobController {
            jobs,
            pods: Typed::new(objects.clone(), kinds.pods.clone()),
            events: EventRecorder::new(
                super::client::Api::new(objects.clone(), kinds.events.clone()),
                COMPONENT,
            ),
        }
    }
}

/// The Job's spec (a default one if it has none, which validation forbids).
fn spec(job: &Job) -> std::borrow::Cow<'_, JobSpec> {
    match &job.spec {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(JobSpec::default()),
    }
}

/// Whether the Job's pods carry completion indexes.
fn is_indexed(job: &Job) -> bool {
    spec(job).completion_mode.as_deref() == Some("Indexed")
}

/// `spec.completions` (an Indexed Job always has it).
fn completions(job: &Job) -> Option<i32> {
    spec(job).completions
}

/// `spec.backoffLimitPerIndex`.
fn backoff_limit_per_index(job: &Job) -> Option<i32> {
    spec(job).backoff_limit_per_index
}

/// Whether `spec.suspend` is true.
fn is_suspended(job: &Job) -> bool {
    spec(job).suspend == Some(true)
}

/// upstream's `onlyReplaceFailedPods`: `podReplacementPolicy: Failed`, or
/// a pod failure policy.
fn only_replace_failed(job: &Job) -> bool {
    let s = spec(job);
    s.pod_replacement_policy.as_deref() == Some("Failed") || s.pod_failure_policy.is_some()
}

/// The Job's conditions.
fn conditions(job: &Job) -> &[JobCondition] {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
}

/// The Job's condition of type `ty` if it is `True`.
fn true_condition<'a>(job: &'a Job, ty: &str) -> Option<&'a JobCondition> {
    conditions(job)
        .iter()
        .find(|c| c.type_ == ty && c.status == "True")
}

/// upstream's `IsJobFinished`: `Complete` or `Failed` is `True`.
pub(crate) fn is_finished(job: &Job) -> bool {
    true_condition(job, "Complete").is_some() || true_condition(job, "Failed").is_some()
}

/// Whether the pod carries the tracking finalizer.
fn has_tracking_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|f| f == TRACKING_FINALIZER)
}

/// upstream's `managedByExternalController`.
fn managed_externally(job: &Job) -> bool {
    spec(job)
        .managed_by
        .as_deref()
        .is_some_and(|m| m != MANAGED_BY_DEFAULT)
}

/// upstream's `isPodFailed`: Failed, or (unless only failed pods are
/// replaced) deleted before it succeeded.
fn is_pod_failed(pod: &Pod, job: &Job) -> bool {
    let phase = super::typed::pod::phase(pod);
    if phase == "Failed" {
        return true;
    }
    if only_replace_failed(job) {
        return false;
    }
    pod.metadata.deletion_timestamp.is_some() && phase != "Succeeded"
}

impl JobController {
    /// upstream's `syncOrphanPod`: drops the tracking finalizer of a pod
    /// whose Job is gone or finished (never of a pod a live Job counts or
    /// of one another kind of controller owns).
    async fn sync_orphan_pod(&self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(pod) = self.pods.get(&key.namespace, &key.name).await? else {
            return Ok(Action::await_change());
        };
        if !has_tracking_finalizer(&pod) {
            return Ok(Action::await_change());
        }
        if let Some(r) = super::typed::owner::controller_of(&pod.metadata) {
            if r.kind != "Job" || r.api_version != "batch/v1" {
                return Ok(Action::await_change());
            }
            let job = self
                .jobs
                .get(&key.namespace, &r.name)
                .await?
                .filter(|j| uid(j) == r.uid);
            if let Some(job) = &job
                && (managed_externally(job) || !is_finished(job))
            {
                return Ok(Action::await_change());
            }
        }
        self.remove_finalizer(&pod).await?;
        Ok(Action::await_change())
    }

    /// Removes the tracking finalizer from `pod` (upstream's
    /// `removeTrackingFinalizerPatch`); a pod gone meanwhile is fine.
    async fn remove_finalizer(&self, pod: &Pod) -> Result<(), Error> {
        let pod_uid = uid(pod).to_string();
        let edit = |cur: &mut Pod| {
            if uid(cur) != pod_uid || !has_tracking_finalizer(cur) {
                return false;
            }
            if let Some(f) = cur.metadata.finalizers.as_mut() {
                f.retain(|f| f != TRACKING_FINALIZER);
            }
            true
        };
        match self.pods.edit(namespace(pod), name(pod), edit).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Keys for a change to a Job: the Job, and when it was deleted its
    /// pods that still carry the finalizer (upstream's `deleteJob` with
    /// `cleanupPodFinalizers`).
    async fn keys_for_job(&self, obj: &serde_json::Value, deleted: bool) -> Vec<JobKey> {
        let Ok(job) = serde_json::from_value::<Job>(obj.clone()) else {
            return Vec::new();
        };
        let mut keys = vec![JobKey::Job(ObjectKey {
            namespace: namespace(&job).to_string(),
            name: name(&job).to_string(),
        })];
        if deleted {
            match self.pods.list(namespace(&job)).await {
                Ok(pods) => keys.extend(
                    pods.iter()
                        .filter(|p| {
                            has_tracking_finalizer(p)
                                && super::typed::owner::is_controlled_by(&p.metadata, uid(&job))
                        })
                        .map(|p| {
                            JobKey::OrphanPod(ObjectKey {
                                namespace: namespace(p).to_string(),
                                name: name(p).to_string(),
                            })
                        }),
                ),
                Err(e) => tracing::warn!(error = %e.one_line(), "listing a deleted job's pods"),
            }
        }
        keys
    }

    /// Keys for a change to a pod (upstream's `addPod`, `updatePod`,
    /// `deletePod`): its Job (or, for an orphan, the Jobs that may adopt
    /// it), and the pod itself when its finalizer may have to go.
    async fn keys_for_pod(&self, obj: &serde_json::Value, deleted: bool) -> Vec<JobKey> {
        // Only the metadata: most pods are not a Job's, and decoding each whole pod for every
        // controller that watches pods costs more than the rest of the event.
        let Some(meta) = metadata_of(obj) else {
            return Vec::new();
        };
        let mut keys: Vec<JobKey> = owners_of(&self.jobs, "Job", &meta, deleted, |j: &Job| {
            j.spec.as_ref().and_then(|s| s.selector.as_ref())
        })
        .await
        .into_iter()
        .map(JobKey::Job)
        .collect();
        let orphan = super::typed::owner::controller_of(&meta).is_none();
        let tracked = meta
            .finalizers
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|f| f == TRACKING_FINALIZER);
        if !deleted && tracked && (orphan || meta.deletion_timestamp.is_some()) {
            keys.push(JobKey::OrphanPod(ObjectKey {
                namespace: meta.namespace.clone().unwrap_or_default(),
                name: meta.name.clone().unwrap_or_default(),
            }));
        }
        keys
    }
}

impl Reconciler for JobController {
    type Key = JobKey;
    const NAME: &'static str = "job";

    async fn keys_for(&mut self, kind: usize, event: &WatchEvent) -> Vec<JobKey> {
        let Some((obj, deleted)) = event_object(event) else {
            return Vec::new();
        };
        if kind == 0 {
            self.keys_for_job(obj, deleted).await
        } else {
            self.keys_for_pod(obj, deleted).await
        }
    }

    async fn reconcile(&mut self, key: &JobKey) -> Result<Action, Error> {
        match key {
            JobKey::Job(k) => match sync::sync_job(self, k).await {
                Err(e) if e.is_not_found() => Ok(Action::await_change()),
                other => other,
            },
            JobKey::OrphanPod(k) => self.sync_orphan_pod(k).await,
        }
    }
}
