//! upstream's `syncJob`: one pass over a Job and its pods, deciding
//! ([`super::criteria`]) whether it has finished or must fail, letting [`super::manage`]
//! create or delete pods, and handing the counts to
//! [`super::tracking`].

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::criteria::decide_finished;
use super::failure::{backoff_record, match_policy};
use super::indexes::{Intervals, valid_index};
use super::{
    JobController, completions, has_tracking_finalizer, is_finished, is_indexed, is_pod_failed,
    is_suspended, managed_externally, spec,
};
use crate::controllers::Error;
use crate::controllers::events::EventType;
use crate::controllers::runtime::{Action, ObjectKey};
use crate::controllers::typed::owner::{ClaimOptions, claim, is_controlled_by, selects};
use crate::controllers::typed::pod::{is_active, is_ready, is_terminating_not_terminal, phase};
use crate::controllers::typed::{record, uid};
use crate::registry::meta;

/// The state of one sync (upstream's `syncJobCtx`).
#[derive(Debug)]
pub(super) struct SyncCtx {
    pub(super) job: Job,
    pub(super) pods: Vec<Pod>,
    pub(super) active_pods: Vec<Pod>,
    pub(super) finished: Option<JobCondition>,
    pub(super) succeeded: i32,
    pub(super) failed: i32,
    pub(super) prev_succeeded_indexes: Intervals,
    pub(super) succeeded_indexes: Intervals,
    pub(super) failed_indexes: Option<Intervals>,
    /// Failures since the last success, and the last failure's time.
    pub(super) backoff: (i32, Option<jiff::Timestamp>),
    pub(super) uncounted_succeeded: HashSet<String>,
    pub(super) uncounted_failed: HashSet<String>,
    /// Per index, the failed pod kept until its replacement exists.
    pub(super) delayed_deletion: HashMap<i32, Pod>,
    pub(super) terminating: i32,
    pub(super) ready: i32,
    pub(super) now: jiff::Timestamp,
    /// When to sync again even without events.
    pub(super) requeue: Option<Duration>,
}

impl SyncCtx {
    /// Asks for another sync after `delay` (at least a second, as
    /// upstream's batching period).
    pub(super) fn requeue_after(&mut self, delay: Duration) {
        let delay = delay.max(Duration::from_secs(1));
        self.requeue = Some(self.requeue.map_or(delay, |d| d.min(delay)));
    }

    /// The Job's status, created if absent.
    pub(super) fn status(&mut self) -> &mut JobStatus {
        self.job.status.get_or_insert_with(JobStatus::default)
    }
}

/// A Job condition as upstream's `newCondition`.
pub(super) fn new_condition(
    ty: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) -> JobCondition {
    JobCondition {
        type_: ty.to_string(),
        status: status.to_string(),
        reason: (!reason.is_empty()).then(|| reason.to_string()),
        message: (!message.is_empty()).then(|| message.to_string()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// upstream's `ensureJobConditionStatus`: updates or appends (never
/// appends a `False` one); whether anything changed.
pub(super) fn ensure_condition(
    list: &mut Vec<JobCondition>,
    ty: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) -> bool {
    let wanted = new_condition(ty, status, reason, message, now);
    if let Some(c) = list.iter_mut().find(|c| c.type_ == ty) {
        if c.status != wanted.status || c.reason != wanted.reason || c.message != wanted.message {
            *c = wanted;
            return true;
        }
        return false;
    }
    if status != "False" {
        list.push(wanted);
        return true;
    }
    false
}

/// The Job's pods after adopting orphans (which get the tracking
/// finalizer) and releasing those that stopped matching.
async fn pods_for_job(c: &JobController, job: &Job) -> Result<Vec<Pod>, Error> {
    let Some(selector) = spec(job).selector.clone() else {
        return Ok(Vec::new());
    };
    let pods = c.pods.list(super::namespace(job)).await?;
    claim(
        &c.pods,
        job,
        |p: &Pod| selects(&selector, p.metadata.labels.as_ref()),
        pods,
        ClaimOptions {
            finalizers: &[super::TRACKING_FINALIZER],
        },
    )
    .await
}

/// upstream's `getValidPodsWithFilter`: pods with the finalizer, not in
/// `uncounted`, with a valid index for an Indexed Job, passing `filter`.
pub(super) fn valid_pods<'a>(
    ctx: &'a SyncCtx,
    uncounted: Option<&'a HashSet<String>>,
    filter: impl Fn(&Pod) -> bool + 'a,
) -> impl Iterator<Item = &'a Pod> + 'a {
    let indexed = is_indexed(&ctx.job);
    let completions = completions(&ctx.job).unwrap_or(0);
    ctx.pods.iter().filter(move |p| {
        has_tracking_finalizer(p)
            && uncounted.is_none_or(|u| !u.contains(uid(*p)))
            && (!indexed || valid_index(p, completions).is_some())
            && filter(p)
    })
}

/// upstream's `syncJob`.
pub(super) async fn sync_job(c: &JobController, key: &ObjectKey) -> Result<Action, Error> {
    let Some(job) = c.jobs.get(&key.namespace, &key.name).await? else {
        return Ok(Action::await_change());
    };
    if managed_externally(&job) {
        return Ok(Action::await_change());
    }
    if is_finished(&job) {
        // upstream's `cleanupPodFinalizers` (a backup: the finalizers go
        // before the Job is marked finished).
        for pod in c.pods.list(&key.namespace).await? {
            if has_tracking_finalizer(&pod) && is_controlled_by(&pod.metadata, uid(&job)) {
                c.remove_finalizer(&pod).await?;
            }
        }
        return Ok(Action::await_change());
    }
    let mode = spec(&job).completion_mode.clone().unwrap_or_default();
    if !mode.is_empty() && mode != "NonIndexed" && mode != "Indexed" {
        record(
            &c.events,
            &job,
            EventType::Warning,
            "UnknownCompletionMode",
            "Skipped Job sync because completion mode is unknown",
        )
        .await;
        return Ok(Action::await_change());
    }
    let pods = pods_for_job(c, &job).await?;
    let mut job = job;
    let status = job.status.get_or_insert_with(JobStatus::default);
    let uncounted = status
        .uncounted_terminated_pods
        .get_or_insert_with(Default::default);
    let uncounted_succeeded: HashSet<String> = uncounted
        .succeeded
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let uncounted_failed: HashSet<String> = uncounted
        .failed
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let active_pods: Vec<Pod> = pods.iter().filter(|p| is_active(p)).cloned().collect();
    let mut ctx = SyncCtx {
        ready: i32::try_from(active_pods.iter().filter(|p| is_ready(p)).count())
            .unwrap_or(i32::MAX),
        terminating: i32::try_from(
            pods.iter()
                .filter(|p| is_terminating_not_terminal(p))
                .count(),
        )
        .unwrap_or(i32::MAX),
        backoff: backoff_record(
            pods.iter().filter(|p| phase(p) == "Succeeded"),
            pods.iter().filter(|p| is_pod_failed(p, &job)),
        ),
        job,
        pods,
        active_pods,
        finished: None,
        succeeded: 0,
        failed: 0,
        prev_succeeded_indexes: Intervals::default(),
        succeeded_indexes: Intervals::default(),
        failed_indexes: None,
        uncounted_succeeded,
        uncounted_failed,
        delayed_deletion: HashMap::new(),
        now: meta::now(),
        requeue: None,
    };
    let mut active = i32::try_from(ctx.active_pods.len()).unwrap_or(i32::MAX);
    let new_succeeded = valid_pods(&ctx, Some(&ctx.uncounted_succeeded), |p| {
        phase(p) == "Succeeded"
    })
    .count();
    let policy = spec(&ctx.job).pod_failure_policy.clone();
    let new_failed = valid_pods(&ctx, Some(&ctx.uncounted_failed), |p| {
        is_pod_failed(p, &ctx.job)
    })
    .filter(|p| match_policy(policy.as_ref(), p).count_failed)
    .count();
    let st = ctx.job.status.clone().unwrap_or_default();
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    ctx.succeeded =
        st.succeeded.unwrap_or(0) + count(new_succeeded) + count(ctx.uncounted_succeeded.len());
    ctx.failed = st.failed.unwrap_or(0) + count(new_failed) + count(ctx.uncounted_failed.len());
    if st.start_time.is_none() && !is_suspended(&ctx.job) {
        ctx.status().start_time = Some(Time(ctx.now));
    }
    decide_finished(&mut ctx);
    let mut manage_err = None;
    let mut suspend_changed = false;
    if ctx.finished.is_some() {
        let pods = ctx.active_pods.clone();
        let (deleted_ready, deleted, err) = c.delete_active_pods(&ctx.job, &pods).await;
        if deleted != active {
            // Not finished until every pod is gone.
            ctx.finished = None;
        }
        active -= deleted;
        ctx.terminating += deleted;
        ctx.ready -= deleted_ready;
        manage_err = err;
    } else {
        let mut managed = false;
        if ctx.job.metadata.deletion_timestamp.is_none() {
            let (a, err) = c.manage_job(&mut ctx).await;
            active = a;
            manage_err = err;
            managed = true;
        }
        let complete = match completions(&ctx.job) {
            None => ctx.succeeded > 0 && active == 0,
            Some(n) => ctx.succeeded >= n && active == 0,
        };
        if complete {
            ctx.finished = Some(new_condition(
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                ctx.now,
            ));
        } else if managed {
            suspend_changed = update_suspended(c, &mut ctx).await;
        }
    }
    let st = ctx.job.status.clone().unwrap_or_default();
    let needs_update = suspend_changed
        || active != st.active.unwrap_or(0)
        || Some(ctx.ready) != st.ready
        || Some(ctx.terminating) != st.terminating;
    let (ready, terminating) = (ctx.ready, ctx.terminating);
    let status = ctx.status();
    status.active = (active != 0).then_some(active);
    status.ready = Some(ready);
    status.terminating = Some(terminating);
    c.track_status(&mut ctx, needs_update).await?;
    if let Some(e) = manage_err {
        return Err(e);
    }
    Ok(ctx
        .requeue
        .map_or_else(Action::await_change, Action::requeue))
}

/// The Suspended condition and its events; on a resume `startTime`
/// starts over (upstream: `activeDeadlineSeconds` counts active time).
async fn update_suspended(c: &JobController, ctx: &mut SyncCtx) -> bool {
    let now = ctx.now;
    let suspended = is_suspended(&ctx.job);
    let list = ctx.status().conditions.get_or_insert_with(Vec::new);
    let changed = if suspended {
        ensure_condition(
            list,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            now,
        )
    } else {
        ensure_condition(list, "Suspended", "False", "JobResumed", "Job resumed", now)
    };
    if ctx.status().conditions.as_ref().is_some_and(Vec::is_empty) {
        ctx.status().conditions = None;
    }
    if changed {
        if suspended {
            record(
                &c.events,
                &ctx.job,
                EventType::Normal,
                "Suspended",
                "Job suspended",
            )
            .await;
        } else {
            record(
                &c.events,
                &ctx.job,
                EventType::Normal,
                "Resumed",
                "Job resumed",
            )
            .await;
            ctx.status().start_time = Some(Time(now));
        }
    }
    changed
}
