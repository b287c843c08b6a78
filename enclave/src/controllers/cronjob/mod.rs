//! The CronJob controller (upstream `pkg/controller/cronjob`, the v2
//! controller): creates a Job named `<cronjob>-<scheduled time in minutes
//! since the epoch>` at each scheduled time (the name is the lock that
//! keeps a restart from creating one twice), in `spec.timeZone` (UTC when
//! unset, the enclave's zone), honouring `concurrencyPolicy`,
//! `startingDeadlineSeconds` and upstream's rule of at most 100 missed
//! schedules, `suspend`, and the successful/failed history limits; keeps
//! `status.active`, `lastScheduleTime` and `lastSuccessfulTime`.

mod schedule;
mod times;

use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::Error;
use super::client::{Api, Kinds};
use super::events::{EventRecorder, EventType};
use super::job::is_finished;
use super::runtime::{Action, ObjectKey, Reconciler};
use super::typed::owner::{controller_of, controller_ref, event_object, is_controlled_by};
use super::typed::{Typed, name, namespace, record, uid};
use crate::registry::generic::Propagation;
use crate::registry::{ObjectStore, WatchEvent, meta};
use schedule::Schedule;
use times::{Missed, most_recent_schedule_time, next_schedule_delay, time_zone};

/// The component the CronJob controller's events come from, as upstream's.
const COMPONENT: &str = "cronjob-controller";

/// The annotation with the time a Job was scheduled for.
const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// The CronJob controller.
#[derive(Debug)]
pub(crate) struct CronJobController {
    cronjobs: Typed<CronJob>,
    jobs: Typed<Job>,
    events: EventRecorder,
}

impl CronJobController {
    /// A controller over `objects`.
    pub(crate) fn new(
        objects: &ObjectStore,
        kinds: &Kinds,
        cronjobs: Typed<CronJob>,
        jobs: Typed<Job>,
    ) -> Self {
        CronJobController {
            cronjobs,
            jobs,
            events: EventRecorder::new(Api::new(objects.clone(), kinds.events.clone()), COMPONENT),
        }
    }

    async fn event(&self, cj: &CronJob, ty: EventType, reason: &str, message: &str) {
        record(&self.events, cj, ty, reason, message).await;
    }
}

/// The Job's finishing condition type, if finished.
fn finished_type(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

fn active(cj: &CronJob) -> &[ObjectReference] {
    cj.status
        .as_ref()
        .and_then(|s| s.active.as_deref())
        .unwrap_or_default()
}

fn in_active_list(cj: &CronJob, job_uid: &str) -> bool {
    active(cj).iter().any(|r| r.uid.as_deref() == Some(job_uid))
}

fn delete_from_active_list(cj: &mut CronJob, job_uid: &str) {
    let status = cj.status.get_or_insert_with(CronJobStatus::default);
    if let Some(a) = status.active.as_mut() {
        a.retain(|r| r.uid.as_deref() != Some(job_uid));
        if a.is_empty() {
            status.active = None;
        }
    }
}

/// upstream's `byJobStartTime`: started before not started, then by start
/// time, then by name.
fn by_start_time(a: &Job, b: &Job) -> std::cmp::Ordering {
    let start = |j: &Job| {
        j.status
            .as_ref()
            .and_then(|s| s.start_time.clone())
            .map(|t| t.0)
    };
    match (start(a), start(b)) {
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (Some(_), None) => std::cmp::Ordering::Less,
        (x, y) if x == y => name(a).cmp(name(b)),
        (x, y) => x.cmp(&y),
    }
}

/// upstream's `getJobFromTemplate2`.
fn job_from_template(cj: &CronJob, scheduled: jiff::Timestamp, tz: &jiff::tz::TimeZone) -> Job {
    let spec = cj.spec.clone().unwrap_or_default();
    let template = spec.job_template;
    let tm = template.metadata.unwrap_or_default();
    let mut annotations = tm.annotations.unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP.into(),
        scheduled
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
            .replace("+00:00", "Z"),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(cj, scheduled)),
            namespace: Some(namespace(cj).to_string()),
            labels: Some(tm.labels.unwrap_or_default()),
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(cj)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// upstream's `getJobName`: `<cronjob>-<minutes since the epoch>`.
fn job_name(cj: &CronJob, scheduled: jiff::Timestamp) -> String {
    format!("{}-{}", name(cj), scheduled.as_second().div_euclid(60))
}

/// upstream's `getRef` of a Job.
fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        namespace: job.metadata.namespace.clone(),
        name: job.metadata.name.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        field_path: None,
    }
}

impl CronJobController {
    /// upstream's `deleteJob`: the Job goes (background) and leaves the
    /// active list.
    async fn delete_job(&self, cj: &mut CronJob, job: &Job) -> bool {
        match self
            .jobs
            .delete_propagating(namespace(job), name(job), None, Propagation::Background)
            .await
        {
            Ok(()) => {
                delete_from_active_list(cj, uid(job));
                let message = format!("Deleted job {}", name(job));
                self.event(cj, EventType::Normal, "SuccessfulDelete", &message)
                    .await;
                true
            }
            Err(e) => {
                let message = format!("Deleted job: {}", e.api_message());
                self.event(cj, EventType::Warning, "FailedDelete", &message)
                    .await;
                false
            }
        }
    }

    /// upstream's `cleanupFinishedJobs`: keeps the newest
    /// `successfulJobsHistoryLimit` complete and `failedJobsHistoryLimit`
    /// failed Jobs.
    async fn cleanup_finished_jobs(&self, cj: &mut CronJob, jobs: &[Job]) -> bool {
        let spec = cj.spec.clone().unwrap_or_default();
        let mut changed = false;
        for (ty, limit) in [
            ("Complete", spec.successful_jobs_history_limit),
            ("Failed", spec.failed_jobs_history_limit),
        ] {
            let Some(limit) = limit else { continue };
            let mut done: Vec<&Job> = jobs
                .iter()
                .filter(|j| finished_type(j) == Some(ty))
                .collect();
            let surplus = done
                .len()
                .saturating_sub(usize::try_from(limit).unwrap_or(0));
            if surplus == 0 {
                continue;
            }
            done.sort_by(|a, b| by_start_time(a, b));
            for job in done.into_iter().take(surplus) {
                if self.delete_job(cj, job).await {
                    changed = true;
                }
            }
        }
        changed
    }
}

impl Reconciler for CronJobController {
    type Key = ObjectKey;
    const NAME: &'static str = "cronjob";

    async fn keys_for(&mut self, kind: usize, event: &WatchEvent) -> Vec<ObjectKey> {
        let Some((obj, _)) = event_object(event) else {
            return Vec::new();
        };
        if kind == 0 {
            return vec![ObjectKey::of(obj)];
        }
        let Ok(job) = serde_json::from_value::<Job>(obj.clone()) else {
            return Vec::new();
        };
        match controller_of(&job.metadata) {
            Some(r) if r.kind == "CronJob" => vec![ObjectKey {
                namespace: namespace(&job).to_string(),
                name: r.name.clone(),
            }],
            _ => Vec::new(),
        }
    }

    async fn reconcile(&mut self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(cj) = self.cronjobs.get(&key.namespace, &key.name).await? else {
            return Ok(Action::await_change());
        };
        let jobs: Vec<Job> = self
            .jobs
            .list(&key.namespace)
            .await?
            .into_iter()
            .filter(|j| {
                controller_of(&j.metadata)
                    .is_some_and(|r| r.kind == "CronJob" && r.name == key.name)
            })
            .collect();
        let mut next = cj.clone();
        let cleaned = self.cleanup_finished_jobs(&mut next, &jobs).await;
        let (requeue, synced, sync_err) = self.sync_cron_job(&mut next, &jobs).await;
        if cleaned || synced {
            match self.cronjobs.replace_status(&next).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => return Ok(Action::await_change()),
                Err(e) => return Err(e),
            }
        }
        if let Some(delay) = requeue {
            return Ok(Action::requeue(delay));
        }
        match sync_err {
            Some(e) => Err(e),
            None => Ok(Action::await_change()),
        }
    }
}

impl CronJobController {
    /// upstream's `syncCronJob`: (when to sync again, whether the status
    /// changed, the error).
    async fn sync_cron_job(
        &self,
        cj: &mut CronJob,
        jobs: &[Job],
    ) -> (Option<Duration>, bool, Option<Error>) {
        let now = meta::now();
        let mut changed = false;
        for j in jobs {
            let found = in_active_list(cj, uid(j));
            if !found && !is_finished(j) {
                let message = format!(
                    "Saw a job that the controller did not create or forgot: {}",
                    name(j)
                );
                self.event(cj, EventType::Warning, "UnexpectedJob", &message)
                    .await;
            } else if found && is_finished(j) {
                delete_from_active_list(cj, uid(j));
                let message = format!(
                    "Saw completed job: {}, status: {}",
                    name(j),
                    finished_type(j).unwrap_or("")
                );
                self.event(cj, EventType::Normal, "SawCompletedJob", &message)
                    .await;
                changed = true;
            } else if finished_type(j) == Some("Complete")
                && let Some(done) = j.status.as_ref().and_then(|s| s.completion_time.clone())
            {
                let status = cj.status.get_or_insert_with(CronJobStatus::default);
                if status
                    .last_successful_time
                    .as_ref()
                    .is_none_or(|t| done.0 > t.0)
                {
                    status.last_successful_time = Some(done);
                    changed = true;
                }
            }
        }
        // Active references to Jobs that are gone.
        let listed: Vec<&str> = jobs.iter().map(uid).collect();
        for r in active(cj).to_vec() {
            let ref_uid = r.uid.clone().unwrap_or_default();
            if listed.contains(&ref_uid.as_str()) {
                continue;
            }
            let ns = r.namespace.clone().unwrap_or_default();
            match self.jobs.get(&ns, r.name.as_deref().unwrap_or("")).await {
                Ok(None) => {
                    let message = format!(
                        "Active job went missing: {}",
                        r.name.as_deref().unwrap_or("")
                    );
                    self.event(cj, EventType::Normal, "MissingJob", &message)
                        .await;
                    delete_from_active_list(cj, &ref_uid);
                    changed = true;
                }
                Ok(Some(_)) => {}
                Err(e) => return (None, changed, Some(e)),
            }
        }
        if cj.metadata.deletion_timestamp.is_some() {
            return (None, changed, None);
        }
        let spec = cj.spec.clone().unwrap_or_default();
        let tz = match time_zone(spec.time_zone.as_deref()) {
            Ok(tz) => tz,
            Err(why) => {
                let message = format!(
                    "invalid timeZone: {:?}: {why}",
                    spec.time_zone.as_deref().unwrap_or("")
                );
                self.event(cj, EventType::Warning, "UnknownTimeZone", &message)
                    .await;
                return (None, changed, None);
            }
        };
        if spec.suspend == Some(true) {
            return (None, changed, None);
        }
        let sched = match Schedule::parse(&spec.schedule) {
            Ok(s) => s,
            Err(why) => {
                let message = format!("unparseable schedule: {:?} : {why}", spec.schedule);
                self.event(cj, EventType::Warning, "UnparseableSchedule", &message)
                    .await;
                return (None, changed, None);
            }
        };
        let requeue = |cj: &CronJob| next_schedule_delay(cj, now, &sched, &tz);
        let scheduled = match most_recent_schedule_time(cj, now, &sched, &tz, true) {
            Err(why) => {
                let message = format!("invalid schedule: {} : {why}", spec.schedule);
                self.event(cj, EventType::Warning, "InvalidSchedule", &message)
                    .await;
                return (None, changed, None);
            }
            Ok((_, None, _)) => return (requeue(cj), changed, None),
            Ok((_, Some(t), missed)) => {
                if missed == Missed::Many {
                    self.event(
                        cj,
                        EventType::Warning,
                        "TooManyMissedTimes",
                        "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
                    )
                    .await;
                }
                t
            }
        };
        if let Some(deadline) = spec.starting_deadline_seconds
            && scheduled.as_second().saturating_add(deadline) < now.as_second()
        {
            let when = scheduled.strftime("%a, %d %b %Y %H:%M:%S %z").to_string();
            let message = format!("Missed scheduled time to start a job: {when}");
            self.event(cj, EventType::Warning, "MissSchedule", &message)
                .await;
            return (requeue(cj), changed, None);
        }
        let wanted = job_name(cj, scheduled);
        let last = cj
            .status
            .as_ref()
            .and_then(|s| s.last_schedule_time.clone());
        if active(cj)
            .iter()
            .any(|r| r.name.as_deref() == Some(wanted.as_str()))
            || last.is_some_and(|t| t.0 == scheduled)
        {
            return (requeue(cj), changed, None);
        }
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        if policy == "Forbid" && !active(cj).is_empty() {
            self.event(
                cj,
                EventType::Normal,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid",
            )
            .await;
            return (requeue(cj), changed, None);
        }
        if policy == "Replace" {
            for r in active(cj).to_vec() {
                let ns = r.namespace.clone().unwrap_or_default();
                let job = match self.jobs.get(&ns, r.name.as_deref().unwrap_or("")).await {
                    Ok(Some(j)) => j,
                    Ok(None) => continue,
                    Err(e) => {
                        let message = format!("Get job: {}", e.api_message());
                        self.event(cj, EventType::Warning, "FailedGet", &message)
                            .await;
                        return (None, changed, Some(e));
                    }
                };
                if !self.delete_job(cj, &job).await {
                    return (None, changed, None);
                }
                changed = true;
            }
        }
        let request = job_from_template(cj, scheduled, &tz);
        let created = match self.jobs.create(namespace(cj), &request).await {
            Ok(job) => {
                let message = format!("Created job {}", name(&job));
                self.event(cj, EventType::Normal, "SuccessfulCreate", &message)
                    .await;
                job
            }
            Err(e) if e.is_namespace_terminating() => return (None, changed, Some(e)),
            Err(e) if e.is_already_exists() => {
                // Created before a restart, before the status said so.
                let job = match self.jobs.get(namespace(cj), &wanted).await {
                    Ok(Some(j)) => j,
                    Ok(None) => return (None, changed, None),
                    Err(e) => return (None, changed, Some(e)),
                };
                if !is_controlled_by(&job.metadata, uid(cj)) || in_active_list(cj, uid(&job)) {
                    return (None, changed, None);
                }
                job
            }
            Err(e) => {
                let message = format!("Error creating job: {}", e.api_message());
                self.event(cj, EventType::Warning, "FailedCreate", &message)
                    .await;
                return (None, changed, Some(e));
            }
        };
        let status = cj.status.get_or_insert_with(CronJobStatus::default);
        status
            .active
            .get_or_insert_with(Vec::new)
            .push(reference(&created));
        status.last_schedule_time = Some(Time(scheduled));
        (requeue(cj), true, None)
    }
}
