//! upstream's `trackJobStatusAndRemoveFinalizers`: every finished pod is
//! counted exactly once, across restarts, in three steps each of which
//! is safe to repeat: (1) its uid goes into
//! `status.uncountedTerminatedPods` (written), (2) its tracking finalizer
//! is removed, (3) uids whose pods no longer carry the finalizer move
//! from the uncounted lists into `succeeded`/`failed` (written). The
//! terminal condition is set only when nothing is left uncounted and no
//! pod is terminating.

use std::collections::HashSet;

use futures::future::join_all;
use k8s_openapi::api::batch::v1::{JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;

use super::failure::match_policy;
use super::indexes::{completion_index, valid_index};
use super::sync::{SyncCtx, ensure_condition, new_condition};
use super::{
    JobController, backoff_limit_per_index, completions, has_tracking_finalizer, is_indexed,
    is_pod_failed, spec, true_condition,
};
use crate::controllers::Error;
use crate::controllers::events::EventType;
use crate::controllers::typed::pod::phase;
use crate::controllers::typed::{record, uid};

/// The most uids `status.uncountedTerminatedPods` holds (upstream's
/// `MaxUncountedPods`, about 20 KB).
const MAX_UNCOUNTED_PODS: usize = 500;

/// upstream's `cleanUncountedPodsWithoutFinalizers`: uids whose pods lost
/// the finalizer (or are gone) leave the uncounted lists and are counted.
fn clean_uncounted(status: &mut JobStatus, with_finalizer: &HashSet<String>) -> bool {
    let uncounted = status
        .uncounted_terminated_pods
        .get_or_insert_with(UncountedTerminatedPods::default);
    let mut changed = false;
    let mut moved = |list: &mut Option<Vec<String>>| -> i32 {
        let before = list.as_ref().map_or(0, Vec::len);
        if let Some(l) = list.as_mut() {
            l.retain(|u| with_finalizer.contains(u));
        }
        let after = list.as_ref().map_or(0, Vec::len);
        if after == 0 {
            *list = None;
        }
        changed |= after != before;
        i32::try_from(before - after).unwrap_or(0)
    };
    let succeeded = moved(&mut uncounted.succeeded);
    let failed = moved(&mut uncounted.failed);
    if succeeded > 0 {
        status.succeeded = Some(status.succeeded.unwrap_or(0) + succeeded);
    }
    if failed > 0 {
        status.failed = Some(status.failed.unwrap_or(0) + failed);
    }
    changed
}

/// upstream's `canRemoveFinalizer`: the Job is going or finished, the pod
/// succeeded, or it failed and is not the failed pod of an index kept
/// until its replacement exists.
fn can_remove_finalizer(ctx: &SyncCtx, pod: &Pod, considered_failed: bool) -> bool {
    if ctx.job.metadata.deletion_timestamp.is_some()
        || ctx.finished.is_some()
        || phase(pod) == "Succeeded"
    {
        return true;
    }
    if !considered_failed {
        return false;
    }
    if backoff_limit_per_index(&ctx.job).is_some()
        && let Some(ix) = completion_index(pod)
        && ctx
            .delayed_deletion
            .get(&ix)
            .is_some_and(|p| uid(p) == uid(pod))
    {
        return false;
    }
    true
}

fn is_success_criteria_met(c: Option<&JobCondition>) -> bool {
    c.is_some_and(|c| c.type_ == "SuccessCriteriaMet" && c.status == "True")
}

impl JobController {
    /// upstream's `trackJobStatusAndRemoveFinalizers`.
    pub(super) async fn track_status(
        &self,
        ctx: &mut SyncCtx,
        mut needs_flush: bool,
    ) -> Result<(), Error> {
        let indexed = is_indexed(&ctx.job);
        let completions = completions(&ctx.job).unwrap_or(0);
        if indexed {
            ctx.pods.sort_by_key(|p| completion_index(p).unwrap_or(-1));
        }
        let mut with_finalizer: HashSet<String> = ctx
            .pods
            .iter()
            .filter(|p| has_tracking_finalizer(p))
            .map(|p| uid(p).to_string())
            .collect();
        if clean_uncounted(ctx.status(), &with_finalizer) {
            needs_flush = true;
        }
        let policy = spec(&ctx.job).pod_failure_policy.clone();
        let finished_failing =
            ctx.finished.is_some() && !is_success_criteria_met(ctx.finished.as_ref());
        let mut to_remove: Vec<Pod> = Vec::new();
        let mut new_succeeded_indexes: Vec<i32> = Vec::new();
        let mut new_succeeded: Vec<String> = Vec::new();
        let mut new_failed: Vec<String> = Vec::new();
        let mut reached_max = false;
        let status = ctx.job.status.clone().unwrap_or_default();
        let uncounted = status.uncounted_terminated_pods.unwrap_or_default();
        let (mut n_succeeded, mut n_failed) = (
            uncounted.succeeded.as_ref().map_or(0, Vec::len),
            uncounted.failed.as_ref().map_or(0, Vec::len),
        );
        for pod in &ctx.pods {
            if !has_tracking_finalizer(pod) {
                continue;
            }
            let failed = is_pod_failed(pod, &ctx.job);
            if !can_remove_finalizer(ctx, pod, failed) {
                continue;
            }
            to_remove.push(pod.clone());
            let pod_uid = uid(pod).to_string();
            if phase(pod) == "Succeeded" && !ctx.uncounted_failed.contains(&pod_uid) {
                if indexed {
                    if let Some(ix) = valid_index(pod, completions)
                        && !ctx.prev_succeeded_indexes.has(ix)
                    {
                        new_succeeded_indexes.push(ix);
                        needs_flush = true;
                    }
                } else if !ctx.uncounted_succeeded.contains(&pod_uid) {
                    needs_flush = true;
                    new_succeeded.push(pod_uid);
                    n_succeeded += 1;
                }
            } else if (failed || finished_failing)
                && !ctx.uncounted_failed.contains(&pod_uid)
                && (!indexed || valid_index(pod, completions).is_some())
                && match_policy(policy.as_ref(), pod).count_failed
            {
                needs_flush = true;
                new_failed.push(pod_uid);
                n_failed += 1;
            }
            if new_succeeded_indexes.len() + n_succeeded + n_failed >= MAX_UNCOUNTED_PODS {
                reached_max = true;
                break;
            }
        }
        {
            let status = ctx.status();
            let u = status
                .uncounted_terminated_pods
                .get_or_insert_with(UncountedTerminatedPods::default);
            if !new_succeeded.is_empty() {
                u.succeeded
                    .get_or_insert_with(Vec::new)
                    .extend(new_succeeded);
            }
            if !new_failed.is_empty() {
                u.failed.get_or_insert_with(Vec::new).extend(new_failed);
            }
        }
        if indexed {
            new_succeeded_indexes.sort_unstable();
            ctx.succeeded_indexes = ctx
                .succeeded_indexes
                .with_ordered_indexes(&new_succeeded_indexes);
            let text = ctx.succeeded_indexes.to_string();
            let failed_text = ctx.failed_indexes.as_ref().map(ToString::to_string);
            let total = ctx.succeeded_indexes.total();
            let status = ctx.status();
            let completed = (!text.is_empty()).then_some(text);
            if completed != status.completed_indexes {
                needs_flush = true;
            }
            status.succeeded = (total != 0).then_some(total);
            status.completed_indexes = completed;
            if failed_text != status.failed_indexes {
                status.failed_indexes = failed_text;
                needs_flush = true;
            }
        }
        let now = ctx.now;
        if let Some(f) = ctx.finished.clone().filter(|f| f.type_ == "FailureTarget") {
            ctx.status()
                .conditions
                .get_or_insert_with(Vec::new)
                .push(f.clone());
            needs_flush = true;
            let reason = f.reason.unwrap_or_default();
            let message = f.message.unwrap_or_default();
            ctx.finished = Some(new_condition("Failed", "True", &reason, &message, now));
        }
        if let Some(f) = ctx
            .finished
            .clone()
            .filter(|f| is_success_criteria_met(Some(f)))
        {
            if true_condition(&ctx.job, "SuccessCriteriaMet").is_none() {
                ctx.status()
                    .conditions
                    .get_or_insert_with(Vec::new)
                    .push(f.clone());
                needs_flush = true;
            }
            let reason = f.reason.unwrap_or_default();
            let message = f.message.unwrap_or_default();
            ctx.finished = Some(new_condition("Complete", "True", &reason, &message, now));
        }
        needs_flush = self
            .flush_and_remove_finalizers(ctx, &to_remove, &mut with_finalizer, needs_flush)
            .await?;
        let finished = !reached_max && enact_finished(ctx);
        if finished || needs_flush {
            ctx.job = self.jobs.replace_status(&ctx.job).await?;
            if finished {
                self.record_finished(ctx).await;
            }
        }
        Ok(())
    }

    /// upstream's `flushUncountedAndRemoveFinalizers`: writes the new
    /// uncounted uids, removes the finalizers, counts the pods whose
    /// finalizer went; returns whether the status has unwritten changes.
    async fn flush_and_remove_finalizers(
        &self,
        ctx: &mut SyncCtx,
        to_remove: &[Pod],
        with_finalizer: &mut HashSet<String>,
        mut needs_flush: bool,
    ) -> Result<bool, Error> {
        if needs_flush {
            ctx.job = self.jobs.replace_status(&ctx.job).await?;
            needs_flush = false;
        }
        let mut rm_err = None;
        if !to_remove.is_empty() {
            let results = join_all(to_remove.iter().map(|p| self.remove_finalizer(p))).await;
            for (p, r) in to_remove.iter().zip(results) {
                match r {
                    Ok(()) => {
                        with_finalizer.remove(uid(p));
                    }
                    Err(e) => {
                        rm_err.get_or_insert(e);
                    }
                }
            }
        }
        if clean_uncounted(ctx.status(), with_finalizer) {
            needs_flush = true;
        }
        if let Some(e) = rm_err {
            if needs_flush {
                ctx.job = self.jobs.replace_status(&ctx.job).await?;
            }
            return Err(e);
        }
        Ok(needs_flush)
    }

    /// upstream's `recordJobFinished` events.
    async fn record_finished(&self, ctx: &SyncCtx) {
        let Some(f) = &ctx.finished else { return };
        if f.type_ == "Complete" {
            let succeeded = ctx
                .job
                .status
                .as_ref()
                .and_then(|s| s.succeeded)
                .unwrap_or(0);
            if completions(&ctx.job).is_some_and(|c| succeeded > c) {
                record(
                    &self.events,
                    &ctx.job,
                    EventType::Warning,
                    "TooManySucceededPods",
                    "Too many succeeded pods running after completion count reached",
                )
                .await;
            }
            record(
                &self.events,
                &ctx.job,
                EventType::Normal,
                "Completed",
                "Job completed",
            )
            .await;
        } else {
            let reason = f.reason.as_deref().unwrap_or("");
            let message = f.message.as_deref().unwrap_or("");
            record(&self.events, &ctx.job, EventType::Warning, reason, message).await;
        }
    }
}

/// upstream's `enactJobFinished`: the terminal condition (and
/// `completionTime`) once no pod is uncounted or terminating.
fn enact_finished(ctx: &mut SyncCtx) -> bool {
    let Some(f) = ctx.finished.clone() else {
        return false;
    };
    let uncounted = ctx
        .job
        .status
        .as_ref()
        .and_then(|s| s.uncounted_terminated_pods.as_ref())
        .map_or(0, |u| {
            u.succeeded.as_ref().map_or(0, Vec::len) + u.failed.as_ref().map_or(0, Vec::len)
        });
    if uncounted > 0 || ctx.terminating > 0 {
        return false;
    }
    let now = ctx.now;
    let status = ctx.status();
    let list = status.conditions.get_or_insert_with(Vec::new);
    ensure_condition(
        list,
        &f.type_,
        &f.status,
        f.reason.as_deref().unwrap_or(""),
        f.message.as_deref().unwrap_or(""),
        now,
    );
    if f.type_ == "Complete" {
        status.completion_time = list
            .iter()
            .find(|c| c.type_ == "Complete")
            .and_then(|c| c.last_transition_time.clone());
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_without_finalizers_are_counted_once() {
        let mut status = JobStatus {
            succeeded: Some(2),
            uncounted_terminated_pods: Some(UncountedTerminatedPods {
                succeeded: Some(vec!["a".into(), "b".into()]),
                failed: Some(vec!["c".into()]),
            }),
            ..JobStatus::default()
        };
        let still: HashSet<String> = ["b".to_string()].into();
        assert!(clean_uncounted(&mut status, &still));
        assert_eq!(status.succeeded, Some(3));
        assert_eq!(status.failed, Some(1));
        let u = status.uncounted_terminated_pods.clone().unwrap();
        assert_eq!(u.succeeded, Some(vec!["b".to_string()]));
        assert_eq!(u.failed, None);
        assert!(!clean_uncounted(&mut status, &still));
    }
}
