//! The TTL-after-finished controller (upstream
//! `pkg/controller/ttlafterfinished`): a finished Job with
//! `spec.ttlSecondsAfterFinished` is deleted (foreground, so its pods go
//! first) that many seconds after its `Complete` or `Failed` condition's
//! transition, checked once more against a fresh read before the delete.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;

use super::Error;
use super::job::is_finished;
use super::runtime::{Action, ObjectKey, Reconciler};
use super::typed::owner::event_object;
use super::typed::{Typed, uid};
use crate::registry::WatchEvent;
use crate::registry::generic::Propagation;
use crate::registry::meta;

/// The TTL-after-finished controller.
#[derive(Debug)]
pub(crate) struct TtlAfterFinished {
    jobs: Typed<Job>,
}

impl TtlAfterFinished {
    /// A controller deleting from `jobs`.
    pub(crate) fn new(jobs: Typed<Job>) -> Self {
        TtlAfterFinished { jobs }
    }
}

/// upstream's `jobFinishTime`: the finishing condition's transition.
fn finish_time(job: &Job) -> Option<jiff::Timestamp> {
    job.status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
}

/// upstream's `processTTL`: `Some(wait)` until the TTL expires, `Some(0)`
/// once it has, `None` for Jobs that are not to be cleaned up.
fn time_left(job: &Job, now: jiff::Timestamp) -> Option<Duration> {
    if job.metadata.deletion_timestamp.is_some() || !is_finished(job) {
        return None;
    }
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let finished = finish_time(job)?;
    if finished > now {
        tracing::info!(
            job = job.metadata.name.as_deref().unwrap_or(""),
            "found a job finished in the future (clock skew); cleanup deferred"
        );
    }
    let expire = finished.as_second().saturating_add(i64::from(ttl));
    Some(Duration::from_secs(
        u64::try_from(expire - now.as_second()).unwrap_or(0),
    ))
}

impl Reconciler for TtlAfterFinished {
    type Key = ObjectKey;
    const NAME: &'static str = "ttl-after-finished";

    async fn keys_for(&mut self, _kind: usize, event: &WatchEvent) -> Vec<ObjectKey> {
        match event_object(event) {
            Some((obj, false)) => vec![ObjectKey::of(obj)],
            _ => Vec::new(),
        }
    }

    async fn reconcile(&mut self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(job) = self.jobs.get(&key.namespace, &key.name).await? else {
            return Ok(Action::await_change());
        };
        match time_left(&job, meta::now()) {
            None => return Ok(Action::await_change()),
            Some(wait) if !wait.is_zero() => return Ok(Action::requeue(wait)),
            Some(_) => {}
        }
        // The TTL may have changed meanwhile: check against a fresh read.
        let Some(fresh) = self.jobs.get(&key.namespace, &key.name).await? else {
            return Ok(Action::await_change());
        };
        match time_left(&fresh, meta::now()) {
            Some(wait) if wait.is_zero() => {}
            Some(wait) => return Ok(Action::requeue(wait)),
            None => return Ok(Action::await_change()),
        }
        tracing::debug!(job = %key.name, "cleaning up a finished job");
        match self
            .jobs
            .delete_propagating(
                &key.namespace,
                &key.name,
                Some(uid(&fresh)),
                Propagation::Foreground,
            )
            .await
        {
            Ok(()) => Ok(Action::await_change()),
            // Another job took the name meanwhile (uid precondition).
            Err(Error::Api { source, .. })
                if matches!(*source, crate::registry::Error::Conflict { .. }) =>
            {
                Ok(Action::await_change())
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_ttl_counts_from_the_finishing_condition() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "j"},
            "spec": {"ttlSecondsAfterFinished": 30, "template": {}},
            "status": {"conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:00:10Z"}]},
        }))
        .unwrap();
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        assert_eq!(
            time_left(&job, at("2026-01-01T00:00:20Z")),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            time_left(&job, at("2026-01-01T00:01:00Z")),
            Some(Duration::ZERO)
        );
        let mut running = job.clone();
        running.status = None;
        assert_eq!(time_left(&running, at("2026-01-01T00:01:00Z")), None);
    }
}
