//! upstream's `updateStatefulSet` (`stateful_set_control.go`): replicas
//! by ordinal, created in order and only once their predecessors are
//! running and ready (`OrderedReady`) or all at once (`Parallel`);
//! condemned pods beyond the ordinal range deleted highest first; failed
//! pods replaced; then the rolling update, deleting the highest-ordinal
//! pod not at the update revision down to the partition, one at a time.

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::Pod;

use super::StatefulSetController;
use super::identity::{
    identity_matches, in_ordinal_range, new_pod, ordinal, pod_revision, replicas, start_ordinal,
    update_identity,
};
use crate::controllers::Error;
use crate::controllers::events::EventType;
use crate::controllers::history::template_of;
use crate::controllers::typed::pod::{is_available, is_ready, is_terminating, phase};
use crate::controllers::typed::{name, namespace, record};
use crate::registry::generic::Propagation;
use crate::registry::meta;

fn is_created(pod: &Pod) -> bool {
    !phase(pod).is_empty()
}

fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && is_ready(pod)
}

fn is_running_and_available(pod: &Pod, min_ready: i32) -> bool {
    phase(pod) == "Running" && is_available(pod, min_ready, meta::now())
}

fn is_healthy(pod: &Pod) -> bool {
    is_running_and_ready(pod) && !is_terminating(pod)
}

/// upstream's `ApplyRevision` for a template-replacing revision.
fn apply_revision(set: &StatefulSet, revision: &ControllerRevision) -> StatefulSet {
    let mut out = set.clone();
    if let (Some(spec), Some(t)) = (out.spec.as_mut(), template_of(revision)) {
        spec.template = t;
    }
    out
}

/// upstream's `updateStatus`/`computeReplicaStatus` over `pods`.
fn count(
    status: &mut StatefulSetStatus,
    min_ready: i32,
    current: &str,
    update: &str,
    pods: &[&Pod],
) {
    let (mut replicas, mut ready, mut available, mut cur, mut upd) = (0, 0, 0, 0, 0);
    for pod in pods {
        if is_created(pod) {
            replicas += 1;
        }
        if is_running_and_ready(pod) {
            ready += 1;
            if is_running_and_available(pod, min_ready) {
                available += 1;
            }
        }
        if is_created(pod) && !is_terminating(pod) {
            let rev = pod_revision(pod);
            if rev == current {
                cur += 1;
            }
            if rev == update {
                upd += 1;
            }
        }
    }
    let nz = |n: i32| (n != 0).then_some(n);
    status.replicas = replicas;
    status.ready_replicas = nz(ready);
    status.available_replicas = Some(available);
    status.current_replicas = nz(cur);
    status.updated_replicas = nz(upd);
}

/// One pass: the replicas by ordinal (uncreated ones with no status),
/// the condemned pods highest ordinal first.
struct Slots {
    replicas: Vec<Pod>,
    condemned: Vec<Pod>,
}

impl StatefulSetController {
    /// upstream's `CreateStatefulPod`: the pod's claims first, then the pod, then the
    /// claims' owners as the retention policy wants them.
    async fn create_pod(&self, set: &StatefulSet, pod: &Pod) -> Result<(), Error> {
        if let Err(e) = self.create_claims(set, pod).await {
            self.pod_event(set, "create", pod, Some(&e)).await;
            return Err(e);
        }
        let result = self.pods.create(namespace(set), pod).await;
        if let Err(e) = &result
            && e.is_already_exists()
        {
            return result.map(|_| ());
        }
        if result.is_ok()
            && let Err(e) = self.apply_retention_policy(set, pod).await
        {
            self.pod_event(set, "update", pod, Some(&e)).await;
            return Err(e);
        }
        self.pod_event(set, "create", pod, result.as_ref().err())
            .await;
        result.map(|_| ())
    }

    async fn delete_pod(&self, set: &StatefulSet, pod: &Pod) -> Result<(), Error> {
        let result = self
            .pods
            .delete_propagating(namespace(pod), name(pod), None, Propagation::Background)
            .await;
        self.pod_event(set, "delete", pod, result.as_ref().err())
            .await;
        result
    }

    /// upstream's `recordPodEvent`.
    async fn pod_event(&self, set: &StatefulSet, verb: &str, pod: &Pod, err: Option<&Error>) {
        let what = format!("{verb} Pod {} in StatefulSet {}", name(pod), name(set));
        self.record_outcome(set, verb, format!("{what} successful"), &what, err)
            .await;
    }

    /// One Normal `Successful<Verb>` event with `success`, or, with `err`, one Warning
    /// `Failed<Verb>` event saying `<failure> failed error: <why>` (upstream's
    /// `recordPodEvent` and `recordClaimEvent`).
    pub(super) async fn record_outcome(
        &self,
        set: &StatefulSet,
        verb: &str,
        success: String,
        failure: &str,
        err: Option<&Error>,
    ) {
        let title = format!("{}{}", verb[..1].to_uppercase(), &verb[1..]);
        let (ty, reason, message) = match err {
            None => (EventType::Normal, format!("Successful{title}"), success),
            Some(e) => (
                EventType::Warning,
                format!("Failed{title}"),
                format!("{failure} failed error: {}", e.api_message()),
            ),
        };
        record(&self.events, set, ty, &reason, &message).await;
    }

    /// upstream's `processReplica`: whether to stop this pass.
    async fn process_replica(
        &self,
        set: &StatefulSet,
        monotonic: bool,
        pod: &Pod,
    ) -> Result<bool, Error> {
        let min_ready = set
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        if matches!(phase(pod), "Failed" | "Succeeded") {
            if !is_terminating(pod) {
                self.delete_pod(set, pod).await?;
            }
            return Ok(true);
        }
        if !is_created(pod) {
            self.create_pod(set, pod).await?;
            return Ok(monotonic);
        }
        if monotonic
            && (is_terminating(pod)
                || !is_running_and_ready(pod)
                || !is_running_and_available(pod, min_ready))
        {
            return Ok(true);
        }
        // An error reading the claims counts as a match, as upstream.
        let off_policy = self.claims_off_policy(set, pod).await.unwrap_or_default();
        self.set_claim_owners(set, pod, &off_policy).await?;
        if identity_matches(set, pod) {
            return Ok(false);
        }
        let fix = |cur: &mut Pod| {
            let labels = cur.metadata.labels.clone();
            update_identity(set, cur);
            cur.metadata.labels != labels
        };
        let result = self
            .pods
            .edit(namespace(pod), name(pod), fix)
            .await
            .map(|_| ());
        self.pod_event(set, "update", pod, result.as_ref().err())
            .await;
        result.map(|()| false)
    }

    /// upstream's `processCondemned`: whether to stop this pass.
    async fn process_condemned(
        &self,
        set: &StatefulSet,
        first_unhealthy: Option<&str>,
        monotonic: bool,
        pod: &Pod,
    ) -> Result<bool, Error> {
        let min_ready = set
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        // A pod scaled away hands its claims to whoever the retention policy names.
        let off_policy = self.claims_off_policy(set, pod).await?;
        self.set_claim_owners(set, pod, &off_policy).await?;
        if is_terminating(pod) {
            return Ok(monotonic);
        }
        let is_first = first_unhealthy == Some(name(pod));
        if monotonic
            && !is_first
            && (!is_running_and_ready(pod) || !is_running_and_available(pod, min_ready))
        {
            return Ok(true);
        }
        self.delete_pod(set, pod).await?;
        Ok(true)
    }

    /// upstream's `updateStatefulSet`: returns the status to write.
    pub(super) async fn update_stateful_set(
        &self,
        set: &StatefulSet,
        current: &ControllerRevision,
        update: &ControllerRevision,
        collision_count: i32,
        pods: &[Pod],
    ) -> (StatefulSetStatus, Option<Error>) {
        let current_set = apply_revision(set, current);
        let update_set = apply_revision(set, update);
        let spec = set.spec.clone().unwrap_or_default();
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let (cur_name, upd_name) = (name(current).to_string(), name(update).to_string());
        let mut status = StatefulSetStatus {
            observed_generation: set.metadata.generation,
            current_revision: Some(cur_name.clone()),
            update_revision: Some(upd_name.clone()),
            collision_count: Some(collision_count),
            ..StatefulSetStatus::default()
        };
        count(
            &mut status,
            min_ready,
            &cur_name,
            &upd_name,
            &pods.iter().collect::<Vec<_>>(),
        );
        let start = start_ordinal(set);
        let n = usize::try_from(replicas(set).max(0)).unwrap_or(0);
        let mut slots = Slots {
            replicas: Vec::with_capacity(n),
            condemned: Vec::new(),
        };
        let mut by_ordinal: Vec<Option<Pod>> = vec![None; n];
        for p in pods {
            if in_ordinal_range(set, p) {
                if let Some(slot) = usize::try_from(ordinal(p) - start)
                    .ok()
                    .and_then(|i| by_ordinal.get_mut(i))
                {
                    *slot = Some(p.clone());
                }
            } else if ordinal(p) >= 0 {
                slots.condemned.push(p.clone());
            }
        }
        // upstream's `newVersionedStatefulSetPod`: below the partition (or,
        // without a rolling update config, the current count) new pods get
        // the current revision.
        let rolling = spec
            .update_strategy
            .as_ref()
            .is_none_or(|u| u.type_.as_deref() != Some("OnDelete"));
        let partition = spec
            .update_strategy
            .as_ref()
            .and_then(|u| u.rolling_update.as_ref())
            .map(|r| r.partition.unwrap_or(0));
        let current_replicas = set
            .status
            .as_ref()
            .and_then(|s| s.current_replicas)
            .unwrap_or(0);
        for (i, slot) in by_ordinal.into_iter().enumerate() {
            let ord = start + i32::try_from(i).unwrap_or(i32::MAX);
            slots.replicas.push(slot.unwrap_or_else(|| {
                let old = (rolling && partition.is_none() && ord < start + current_replicas)
                    || partition.is_some_and(|p| ord < start + p);
                if old {
                    new_pod(&current_set, ord, &cur_name)
                } else {
                    new_pod(&update_set, ord, &upd_name)
                }
            }));
        }
        slots
            .condemned
            .sort_by_key(|p| std::cmp::Reverse(ordinal(p)));
        let first_unhealthy = slots
            .replicas
            .iter()
            .chain(slots.condemned.iter().rev())
            .find(|p| !is_healthy(p))
            .map(|p| name(p).to_string());
        let recount = |status: &mut StatefulSetStatus, slots: &Slots| {
            let all: Vec<&Pod> = slots
                .replicas
                .iter()
                .chain(slots.condemned.iter())
                .collect();
            count(status, min_ready, &cur_name, &upd_name, &all);
        };
        if set.metadata.deletion_timestamp.is_some() {
            return (status, None);
        }
        let monotonic = spec.pod_management_policy.as_deref() != Some("Parallel");
        for pod in &slots.replicas {
            match self.process_replica(&update_set, monotonic, pod).await {
                Ok(false) => {}
                Ok(true) if !monotonic => {}
                Ok(true) => {
                    recount(&mut status, &slots);
                    return (status, None);
                }
                Err(e) => {
                    recount(&mut status, &slots);
                    return (status, Some(e));
                }
            }
        }
        for pod in &slots.condemned {
            match self
                .process_condemned(set, first_unhealthy.as_deref(), monotonic, pod)
                .await
            {
                Ok(true) if monotonic => {
                    recount(&mut status, &slots);
                    return (status, None);
                }
                Ok(_) => {}
                Err(e) => {
                    recount(&mut status, &slots);
                    return (status, Some(e));
                }
            }
        }
        recount(&mut status, &slots);
        if !rolling {
            return (status, None);
        }
        let update_min = usize::try_from(partition.unwrap_or(0).max(0)).unwrap_or(0);
        for pod in slots.replicas.iter().skip(update_min).rev() {
            if pod_revision(pod) != upd_name && !is_terminating(pod) {
                tracing::debug!(pod = name(pod), "terminating for update");
                let err = match self.delete_pod(set, pod).await {
                    Ok(()) => None,
                    Err(e) if e.is_not_found() => None,
                    Err(e) => Some(e),
                };
                status.current_replicas =
                    status.current_replicas.map(|c| c - 1).filter(|c| *c != 0);
                return (status, err);
            }
            if !is_healthy(pod) {
                return (status, None);
            }
        }
        (status, None)
    }
}
