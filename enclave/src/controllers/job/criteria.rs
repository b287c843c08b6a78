//! The finishing criteria of upstream's `syncJob`: the backoff limits
//! (job-wide, for `restartPolicy: OnFailure`, per index), the active
//! deadline, the pod failure policy's `FailJob`, failed indexes, and the
//! success policy; and the per-index bookkeeping they need.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;

use super::failure::match_policy;
use super::indexes::{
    Intervals, index_absolute_failure_count, index_failure_count, indexes_of, match_success_policy,
    valid_index,
};
use super::sync::{SyncCtx, new_condition, valid_pods};
use super::{
    backoff_limit_per_index, completions, has_tracking_finalizer, is_indexed, is_pod_failed,
    is_suspended, spec, true_condition,
};
use crate::controllers::typed::pod::{finished_time, phase};

/// upstream's `pastBackoffLimitOnFailure`: for `restartPolicy: OnFailure`,
/// the restarts of running and pending pods reached `backoffLimit`.
fn past_backoff_limit_on_failure(job: &Job, pods: &[Pod]) -> bool {
    let s = spec(job);
    let restart = s
        .template
        .spec
        .as_ref()
        .and_then(|p| p.restart_policy.as_deref());
    if restart != Some("OnFailure") {
        return false;
    }
    let mut restarts = 0i64;
    for p in pods {
        if matches!(phase(p), "Running" | "Pending") {
            let st = p.status.as_ref();
            for list in [
                st.and_then(|s| s.init_container_statuses.as_deref()),
                st.and_then(|s| s.container_statuses.as_deref()),
            ] {
                restarts += list
                    .unwrap_or_default()
                    .iter()
                    .map(|c| i64::from(c.restart_count))
                    .sum::<i64>();
            }
        }
    }
    let limit = i64::from(s.backoff_limit.unwrap_or(6));
    if limit == 0 {
        restarts > 0
    } else {
        restarts >= limit
    }
}

/// upstream's `getFailJobMessage`: a `FailJob` rule matched a failed pod.
fn fail_job_message(job: &Job, pods: &[Pod]) -> Option<String> {
    let policy = spec(job).pod_failure_policy.clone()?;
    pods.iter()
        .filter(|p| is_pod_failed(p, job))
        .find_map(|p| match_policy(Some(&policy), p).fail_job_message)
}

/// upstream's `isIndexFailed`: the pod's failure uses up its index.
fn is_index_failed(job: &Job, pod: &Pod) -> bool {
    if !is_pod_failed(pod, job) {
        return false;
    }
    let counted = match &spec(job).pod_failure_policy {
        Some(policy) => {
            let m = match_policy(Some(policy), pod);
            if m.action.as_deref() == Some("FailIndex") {
                return true;
            }
            m.count_failed
        }
        None => true,
    };
    counted && index_failure_count(pod) >= backoff_limit_per_index(job).unwrap_or(i32::MAX)
}

/// upstream's `calculateSucceededIndexes` and `calculateFailedIndexes`.
fn indexes(ctx: &mut SyncCtx) {
    let completions = completions(&ctx.job).unwrap_or(0);
    let status = ctx.job.status.clone().unwrap_or_default();
    ctx.prev_succeeded_indexes = Intervals::parse(
        status.completed_indexes.as_deref().unwrap_or(""),
        completions,
    );
    let new: Vec<i32> = indexes_of(ctx.pods.iter().filter(|p| {
        phase(p) == "Succeeded"
            && has_tracking_finalizer(p)
            && valid_index(p, completions).is_some()
    }))
    .into_iter()
    .collect();
    ctx.succeeded_indexes = ctx.prev_succeeded_indexes.with_ordered_indexes(&new);
    ctx.succeeded = ctx.succeeded_indexes.total();
    if backoff_limit_per_index(&ctx.job).is_some() {
        let prev = Intervals::parse(status.failed_indexes.as_deref().unwrap_or(""), completions);
        let job = &ctx.job;
        let failed: Vec<i32> = indexes_of(ctx.pods.iter().filter(|p| {
            valid_index(p, completions).is_some()
                && has_tracking_finalizer(p)
                && is_index_failed(job, p)
        }))
        .into_iter()
        .collect();
        ctx.failed_indexes = Some(prev.with_ordered_indexes(&failed));
    }
}

/// upstream's `getPodsWithDelayedDeletionPerIndex`: per index without a
/// live pod, the failed pod to keep until its replacement is created
/// (it carries the index's failure count).
fn delayed_deletion(ctx: &SyncCtx) -> HashMap<i32, Pod> {
    let active = indexes_of(&ctx.active_pods);
    let failed_indexes = ctx.failed_indexes.clone().unwrap_or_default();
    let mut out: HashMap<i32, Pod> = HashMap::new();
    for p in valid_pods(ctx, None, |p| is_pod_failed(p, &ctx.job)) {
        let Some(ix) = super::indexes::completion_index(p) else {
            continue;
        };
        if ctx.succeeded_indexes.has(ix) || failed_indexes.has(ix) || active.contains(&ix) {
            continue;
        }
        let replace = out.get(&ix).is_none_or(|last| {
            index_absolute_failure_count(last) <= index_absolute_failure_count(p)
                && finished_time(p) >= finished_time(last)
        });
        if replace {
            out.insert(ix, p.clone());
        }
    }
    out
}

/// The failure and success criteria of `syncJob`, in upstream's order.
pub(super) fn decide_finished(ctx: &mut SyncCtx) {
    let now = ctx.now;
    let job = &ctx.job;
    ctx.finished = true_condition(job, "SuccessCriteriaMet").cloned();
    if ctx.finished.is_none() {
        if let Some(target) = true_condition(job, "FailureTarget") {
            ctx.finished = Some(new_condition(
                "Failed",
                "True",
                target.reason.as_deref().unwrap_or(""),
                target.message.as_deref().unwrap_or(""),
                now,
            ));
        } else if let Some(message) = fail_job_message(job, &ctx.pods) {
            ctx.finished = Some(new_condition(
                "FailureTarget",
                "True",
                "PodFailurePolicy",
                &message,
                now,
            ));
        }
    }
    let failure = |reason: &str, message: &str| {
        Some(new_condition("FailureTarget", "True", reason, message, now))
    };
    if ctx.finished.is_none() {
        let limit = spec(job).backoff_limit.unwrap_or(6);
        if ctx.failed > limit || past_backoff_limit_on_failure(job, &ctx.pods) {
            ctx.finished = failure(
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            );
        } else if let Some(ads) = spec(job).active_deadline_seconds
            && !is_suspended(job)
        {
            let start = job
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map_or(now, |t| t.0);
            let elapsed = now.as_second() - start.as_second();
            if elapsed >= ads {
                ctx.finished = failure(
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                );
            } else {
                ctx.requeue_after(Duration::from_secs(
                    u64::try_from(ads - elapsed).unwrap_or(1),
                ));
            }
        }
    }
    if !is_indexed(&ctx.job) {
        return;
    }
    indexes(ctx);
    let completions = completions(&ctx.job).unwrap_or(0);
    if backoff_limit_per_index(&ctx.job).is_some() {
        let failed = ctx.failed_indexes.clone().unwrap_or_default();
        if ctx.finished.is_none() {
            let max = spec(&ctx.job).max_failed_indexes;
            if max.is_some_and(|m| failed.total() > m) {
                ctx.finished = failure(
                    "MaxFailedIndexesExceeded",
                    "Job has exceeded the specified maximal number of failed indexes",
                );
            } else if failed.total() > 0
                && failed.total() + ctx.succeeded_indexes.total() >= completions
            {
                ctx.finished = failure("FailedIndexes", "Job has failed indexes");
            }
        }
        ctx.delayed_deletion = delayed_deletion(ctx);
    }
    if ctx.finished.is_none()
        && let Some(message) = match_success_policy(
            spec(&ctx.job).success_policy.as_ref(),
            completions,
            &ctx.succeeded_indexes,
        )
    {
        ctx.finished = Some(new_condition(
            "SuccessCriteriaMet",
            "True",
            "SuccessPolicy",
            &message,
            now,
        ));
    }
}
