//! upstream's `manageJob`: how many pods a Job should run now, deleting
//! the surplus (all of them while suspended) and creating the missing
//! ones in slow-start batches, after the failure backoff and with their
//! completion index.

use std::collections::BTreeMap;

use futures::future::join_all;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodTemplateSpec};

use super::failure::{match_policy, remaining_backoff, remaining_backoff_for_index};
use super::indexes::{
    COMPLETION_INDEX, INDEX_FAILURE_COUNT, INDEX_IGNORED_FAILURE_COUNT, completion_index,
    first_pending, generate_name_with_index, index_failure_count, index_ignored_failure_count,
    indexes_of,
};
use super::sync::SyncCtx;
use super::{
    JobController, TRACKING_FINALIZER, backoff_limit_per_index, completions, is_indexed,
    is_suspended, only_replace_failed, spec,
};
use crate::controllers::Error;
use crate::controllers::events::EventType;
use crate::controllers::typed::owner::controller_ref;
use crate::controllers::typed::pod::{
    active_pods_order, from_template, is_ready, is_terminating_not_terminal,
};
use crate::controllers::typed::{name, namespace, record};
use crate::registry::generic::Propagation;

/// At most this many pods are created or deleted per sync (upstream's
/// `MaxPodCreateDeletePerSync`).
const MAX_POD_CREATE_DELETE_PER_SYNC: usize = 500;

/// The env var an Indexed Job's containers read their index from.
const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

fn to_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// upstream's `activePodsForRemoval`: for an Indexed Job first the pods
/// without a valid index and the duplicates of an index, then the
/// cheapest to lose (`ActivePods` order) until `at_least`.
fn active_pods_for_removal(job: &Job, pods: &[Pod], at_least: usize) -> Vec<Pod> {
    let mut rm: Vec<Pod> = Vec::new();
    let mut left: Vec<Pod> = Vec::new();
    if is_indexed(job) {
        let completions = completions(job).unwrap_or(0);
        let mut by_index: BTreeMap<i32, Vec<Pod>> = BTreeMap::new();
        for p in pods {
            match completion_index(p).filter(|i| *i < completions) {
                Some(ix) => by_index.entry(ix).or_default().push(p.clone()),
                None => rm.push(p.clone()),
            }
        }
        for (_, mut same) in by_index {
            same.sort_by(active_pods_order);
            if let Some(keep) = same.pop() {
                rm.extend(same);
                left.push(keep);
            }
        }
    } else {
        left = pods.to_vec();
    }
    if rm.len() < at_least {
        left.sort_by(active_pods_order);
        let more = at_least - rm.len();
        rm.extend(left.into_iter().take(more));
    }
    rm
}

/// upstream's `addCompletionIndexEnvVariables`: `JOB_COMPLETION_INDEX`
/// from the pod's completion-index label.
fn add_index_env(template: &mut PodTemplateSpec) {
    let Some(spec) = template.spec.as_mut() else {
        return;
    };
    let lists = spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut());
    for c in lists {
        let env = c.env.get_or_insert_with(Vec::new);
        if env.iter().any(|e| e.name == COMPLETION_INDEX_ENV) {
            continue;
        }
        env.push(EnvVar {
            name: COMPLETION_INDEX_ENV.into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: format!("metadata.labels['{COMPLETION_INDEX}']"),
                }),
                ..EnvVarSource::default()
            }),
        });
    }
}

/// upstream's `getNewIndexFailureCounts`: the counts the replacement of
/// `replaced` starts from.
fn new_index_failure_counts(job: &Job, replaced: Option<&Pod>) -> (i32, i32) {
    let Some(p) = replaced else {
        return (0, 0);
    };
    let (mut failures, mut ignored) = (index_failure_count(p), index_ignored_failure_count(p));
    if match_policy(spec(job).pod_failure_policy.as_ref(), p).count_failed {
        failures = failures.saturating_add(1);
    } else {
        ignored = ignored.saturating_add(1);
    }
    (failures, ignored)
}

impl JobController {
    /// upstream's `deleteActivePods`: deletes keep the finalizers (the
    /// tracking removes them). Returns (ready deleted, deleted, error).
    pub(super) async fn delete_active_pods(
        &self,
        job: &Job,
        pods: &[Pod],
    ) -> (i32, i32, Option<Error>) {
        self.delete_pods(job, pods, false).await
    }

    /// Deletes `pods` (their finalizer first when `drop_finalizer`, as
    /// upstream's `deleteJobPods`), recording upstream's events.
    async fn delete_pods(
        &self,
        job: &Job,
        pods: &[Pod],
        drop_finalizer: bool,
    ) -> (i32, i32, Option<Error>) {
        let results = join_all(pods.iter().map(|p| async move {
            if drop_finalizer {
                self.remove_finalizer(p).await?;
            }
            let uid = p.metadata.uid.as_deref();
            self.pods
                .delete_propagating(namespace(p), name(p), uid, Propagation::Background)
                .await
        }))
        .await;
        let (mut ready, mut deleted, mut first_err) = (0, 0, None);
        for (p, r) in pods.iter().zip(results) {
            match r {
                Ok(()) => {
                    deleted += 1;
                    if is_ready(p) {
                        ready += 1;
                    }
                    let message = format!("Deleted pod: {}", name(p));
                    record(
                        &self.events,
                        job,
                        EventType::Normal,
                        "SuccessfulDelete",
                        &message,
                    )
                    .await;
                }
                Err(e) => {
                    let message = format!("Error deleting: {}", e.api_message());
                    record(
                        &self.events,
                        job,
                        EventType::Warning,
                        "FailedDelete",
                        &message,
                    )
                    .await;
                    first_err.get_or_insert(e);
                }
            }
        }
        (ready, deleted, first_err)
    }

    /// upstream's `manageJob`: returns the active pods after it and the
    /// first error.
    pub(super) async fn manage_job(&self, ctx: &mut SyncCtx) -> (i32, Option<Error>) {
        let job = ctx.job.clone();
        let mut active = to_i32(ctx.active_pods.len());
        if is_suspended(&job) {
            let doomed = active_pods_for_removal(&job, &ctx.active_pods, ctx.active_pods.len());
            let (ready, removed, err) = self.delete_pods(&job, &doomed, true).await;
            ctx.terminating += removed;
            ctx.ready -= ready;
            return (active - removed, err);
        }
        let parallelism = spec(&job).parallelism.unwrap_or(1);
        let want = match completions(&job) {
            None if ctx.succeeded > 0 => active,
            None => parallelism,
            Some(c) => (c - ctx.succeeded).min(parallelism).max(0),
        };
        let at_least = usize::try_from((active - want).max(0)).unwrap_or(0);
        let mut doomed = active_pods_for_removal(&job, &ctx.active_pods, at_least);
        doomed.truncate(MAX_POD_CREATE_DELETE_PER_SYNC);
        if !doomed.is_empty() {
            let (ready, removed, err) = self.delete_pods(&job, &doomed, true).await;
            ctx.terminating += removed;
            ctx.ready -= ready;
            return (active - removed, err);
        }
        let terminating = if only_replace_failed(&job) {
            ctx.terminating
        } else {
            0
        };
        let diff = want - terminating - active;
        if diff <= 0 {
            return (active, None);
        }
        let per_index = backoff_limit_per_index(&job).is_some();
        if !per_index {
            let wait = remaining_backoff(ctx.backoff.0, ctx.backoff.1, ctx.now);
            if !wait.is_zero() {
                ctx.requeue_after(wait);
                return (active, None);
            }
        }
        let count = usize::try_from(diff)
            .unwrap_or(0)
            .min(MAX_POD_CREATE_DELETE_PER_SYNC);
        let mut indexes: Vec<Option<i32>> = vec![None; count];
        if is_indexed(&job) {
            let completions = completions(&job).unwrap_or(0);
            let mut taken: Vec<i32> = indexes_of(&ctx.active_pods).into_iter().collect();
            if only_replace_failed(&job) {
                taken.extend(indexes_of(
                    ctx.pods.iter().filter(|p| is_terminating_not_terminal(p)),
                ));
            }
            taken.sort_unstable();
            let mut non_pending = ctx.succeeded_indexes.with_ordered_indexes(&taken);
            if let Some(f) = &ctx.failed_indexes {
                non_pending = non_pending.merge(f);
            }
            let mut pending = first_pending(&non_pending, count, completions);
            if per_index {
                let now = ctx.now;
                let (ready_now, waits): (Vec<i32>, Vec<i32>) = pending.iter().partition(|ix| {
                    remaining_backoff_for_index(ctx.delayed_deletion.get(ix), now).is_zero()
                });
                if ready_now.is_empty() {
                    if let Some(wait) = waits
                        .iter()
                        .map(|ix| remaining_backoff_for_index(ctx.delayed_deletion.get(ix), now))
                        .min()
                    {
                        ctx.requeue_after(wait);
                    }
                    return (active, None);
                }
                pending = ready_now;
            }
            indexes = pending.into_iter().map(Some).collect();
        }
        let (created, err) = self.create_pods(ctx, &job, &indexes).await;
        active += created;
        (active, err)
    }

    /// Creates one pod per entry of `indexes` in slow-start batches
    /// (1, 2, 4, …, stopping after a batch with a failure). Returns how
    /// many were created and the first error.
    async fn create_pods(
        &self,
        ctx: &SyncCtx,
        job: &Job,
        indexes: &[Option<i32>],
    ) -> (i32, Option<Error>) {
        let mut template = spec(job).template.clone();
        if is_indexed(job) {
            add_index_env(&mut template);
        }
        let meta = template.metadata.get_or_insert_with(Default::default);
        let finalizers = meta.finalizers.get_or_insert_with(Vec::new);
        if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
            finalizers.push(TRACKING_FINALIZER.into());
        }
        let ns = namespace(job).to_string();
        let job_name = name(job).to_string();
        let pod_for = |ix: Option<i32>| -> Pod {
            let Some(ix) = ix else {
                return from_template(&template, &ns, controller_ref(job), "");
            };
            let mut t = template.clone();
            let m = t.metadata.get_or_insert_with(Default::default);
            m.annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(COMPLETION_INDEX.into(), ix.to_string());
            m.labels
                .get_or_insert_with(BTreeMap::new)
                .insert(COMPLETION_INDEX.into(), ix.to_string());
            if backoff_limit_per_index(job).is_some() {
                let (failures, ignored) =
                    new_index_failure_counts(job, ctx.delayed_deletion.get(&ix));
                let a = m.annotations.get_or_insert_with(BTreeMap::new);
                a.insert(INDEX_FAILURE_COUNT.into(), failures.to_string());
                if ignored > 0 {
                    a.insert(INDEX_IGNORED_FAILURE_COUNT.into(), ignored.to_string());
                }
            }
            if let Some(s) = t.spec.as_mut() {
                s.hostname = Some(format!("{job_name}-{ix}"));
            }
            from_template(
                &t,
                &ns,
                controller_ref(job),
                &generate_name_with_index(&job_name, ix),
            )
        };
        let mut created = 0;
        let mut done = 0usize;
        let mut batch = 1usize;
        while done < indexes.len() {
            let size = batch.min(indexes.len() - done);
            let pods: Vec<Pod> = indexes[done..done + size]
                .iter()
                .map(|ix| pod_for(*ix))
                .collect();
            let results = join_all(pods.iter().map(|p| self.pods.create(&ns, p))).await;
            let mut failed = None;
            for r in results {
                match r {
                    Ok(p) => {
                        created += 1;
                        let message = format!("Created pod: {}", name(&p));
                        record(
                            &self.events,
                            job,
                            EventType::Normal,
                            "SuccessfulCreate",
                            &message,
                        )
                        .await;
                    }
                    // A namespace being deleted refuses every create; the
                    // Job goes with it.
                    Err(e) if e.is_namespace_terminating() => return (created, None),
                    Err(e) => {
                        let message = format!("Error creating: {}", e.api_message());
                        record(
                            &self.events,
                            job,
                            EventType::Warning,
                            "FailedCreate",
                            &message,
                        )
                        .await;
                        failed.get_or_insert(e);
                    }
                }
            }
            if failed.is_some() {
                return (created, failed);
            }
            done += size;
            batch = batch.saturating_mul(2);
        }
        (created, None)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(name: &str, index: Option<i32>, phase: &str) -> Pod {
        let annotations = index.map(|i| json!({COMPLETION_INDEX: i.to_string()}));
        serde_json::from_value(
            json!({"metadata": {"name": name, "annotations": annotations},
            "status": {"phase": phase}}),
        )
        .unwrap()
    }

    #[test]
    fn indexed_removal_takes_duplicates_and_unindexed_pods_first() {
        let job: Job = serde_json::from_value(
            json!({"spec": {"completionMode": "Indexed", "completions": 3,
            "template": {}}}),
        )
        .unwrap();
        let pods = [
            pod("a0", Some(0), "Running"),
            pod("b0", Some(0), "Pending"),
            pod("x", None, "Running"),
            pod("c1", Some(1), "Running"),
            pod("d7", Some(7), "Running"),
        ];
        let mut rm: Vec<String> = active_pods_for_removal(&job, &pods, 0)
            .iter()
            .map(|p| name(p).to_string())
            .collect();
        rm.sort();
        assert_eq!(rm, ["b0", "d7", "x"]);
    }

    #[test]
    fn the_index_env_reads_the_label() {
        let mut t: PodTemplateSpec =
            serde_json::from_value(json!({"spec": {"containers": [{"name": "c"}]}})).unwrap();
        add_index_env(&mut t);
        add_index_env(&mut t);
        let env = t.spec.unwrap().containers[0].env.clone().unwrap();
        assert_eq!(env.len(), 1);
        assert_eq!(
            env[0]
                .value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.labels['batch.kubernetes.io/job-completion-index']"
        );
    }
}
