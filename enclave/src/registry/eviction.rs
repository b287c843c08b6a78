//! The pod eviction subresource (`POST pods/{name}/eviction`, policy/v1
//! `Eviction`), as upstream's `EvictionREST`: a pod that is pending,
//! finished or already being deleted is deleted at once; otherwise the one
//! PodDisruptionBudget selecting it must allow a disruption, which the
//! eviction takes (`disruptionsAllowed` decremented and the pod noted in
//! `disruptedPods`, a compare-and-swap write retried on conflict) before
//! the pod is deleted. A budget that allows none answers 429
//! TooManyRequests, which `kubectl drain` retries.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::{Value, json};

use super::generic::{DeleteOptions, Endpoint};
use super::kinds::selector_matches;
use super::{Error, ListOptions, ObjectStore, Result, WriteOptions, meta};

/// Evictions the API server approved that the disruption controller has not
/// seen through yet, beyond which it refuses more (upstream's `MaxDisruptedPodSize`).
const MAX_DISRUPTED_PODS: usize = 2000;

/// Tries of a write that conflicts with another writer (upstream's `EvictionsRetry` steps).
const RETRIES: usize = 20;

/// The `DisruptionAllowed` condition type of a PodDisruptionBudget.
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";

/// Whether the pod's `Ready` condition is `True` (upstream's `IsPodReady`).
pub fn is_pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// upstream's `apimeta.SetStatusCondition`: replaces the condition of the
/// same type, keeping its transition time unless the status changes.
pub fn set_condition(conditions: &mut Vec<Condition>, mut c: Condition) {
    match conditions.iter_mut().find(|x| x.type_ == c.type_) {
        Some(cur) => {
            if cur.status == c.status {
                c.last_transition_time = cur.last_transition_time.clone();
            }
            *cur = c;
        }
        None => conditions.push(c),
    }
}

/// upstream's `UpdateDisruptionAllowedCondition`: `DisruptionAllowed` True
/// (`SufficientPods`) when a disruption is allowed, else False (`InsufficientPods`).
pub fn update_disruption_allowed(pdb: &mut PodDisruptionBudget) {
    let Some(status) = pdb.status.as_mut() else {
        return;
    };
    let (st, reason) = if status.disruptions_allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    let c = Condition {
        type_: DISRUPTION_ALLOWED.into(),
        status: st.into(),
        reason: reason.into(),
        message: String::new(),
        observed_generation: status.observed_generation,
        last_transition_time: Time(meta::now()),
    };
    set_condition(status.conditions.get_or_insert_with(Vec::new), c);
}

/// What a successful eviction answers: `201` and a `Success` Status.
fn success() -> (u16, Value) {
    (
        201,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

fn too_many_requests(cause: String, retry_after_seconds: u32) -> Error {
    Error::TooManyRequests {
        message: "Cannot evict pod as it would violate the pod's disruption budget.".into(),
        causes: vec![("DisruptionBudget".into(), cause)],
        retry_after_seconds,
    }
}

/// upstream's `createTooManyRequestsError`.
fn still_processing(pdb: &str) -> Error {
    too_many_requests(
        format!("The disruption budget {pdb} is still being processed by the server."),
        10,
    )
}

fn pdb_forbidden(name: &str, why: &str) -> Error {
    Error::ForbiddenObject {
        qualified: "poddisruptionbudget.policy".into(),
        group: "policy".into(),
        resource: "poddisruptionbudget".into(),
        name: name.into(),
        why: why.into(),
    }
}

/// What a phase and deletion say about skipping the budget (upstream's `canIgnorePDB`).
fn can_ignore_budget(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed" | "Pending"))
        || pod.metadata.deletion_timestamp.is_some()
}

/// Whether a deletion must be conditional on the pod's resourceVersion
/// (upstream's `shouldEnforceResourceVersion`).
fn enforce_resource_version(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed")) && pod.metadata.deletion_timestamp.is_none()
}

fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| Error::BadRequest(e.to_string()))
}

impl ObjectStore {
    /// Evicts pod `ns/name` with `delete` (the Eviction's `deleteOptions`,
    /// dry-run already merged with the request's). Returns the status code
    /// and the Status body: 201 on success, 500 when several budgets select
    /// the pod (upstream answers that as a Status, not an error).
    ///
    /// # Errors
    /// 404 for a missing pod; 429 when a budget allows no disruption now;
    /// 403 for a budget whose status is broken; 409 when the caller's own
    /// preconditions fail; 504 when the budget keeps changing.
    pub async fn evict(
        &self,
        ns: &str,
        name: &str,
        delete: &DeleteOptions,
    ) -> Result<(u16, Value)> {
        let table = self.table();
        let pods = table
            .lookup("", "v1", "pods")
            .ok_or_else(|| Error::BadRequest("pods are not served".into()))?;
        let own_rv = delete.resource_version.is_some();
        let mut pod: Option<Pod> = None;
        for _ in 0..RETRIES {
            let p: Pod = decode(self.get(&pods, Some(ns), name).await?)?;
            if !can_ignore_budget(&p) {
                pod = Some(p);
                break;
            }
            let mut opts = delete.clone();
            if enforce_resource_version(&p) && !own_rv {
                opts.resource_version = p.metadata.resource_version.clone();
            }
            match self.delete(&pods, Some(ns), name, &opts).await {
                Ok(_) => return Ok(success()),
                Err(Error::Conflict { .. }) if !own_rv => continue,
                Err(e) => return Err(e),
            }
        }
        let Some(pod) = pod else {
            return Err(Error::Timeout(format!(
                "couldn't delete pod {name:?} due to conflicts"
            )));
        };
        let mut budgets = self.budgets_of(&pod, ns).await?;
        let mut conditional = false;
        if budgets.len() > 1 {
            return Ok((
                500,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                    "code": 500}),
            ));
        }
        let mut budget_name = String::new();
        if let Some(pdb) = budgets.pop() {
            budget_name = pdb.metadata.name.clone().unwrap_or_default();
            let status = pdb.status.clone().unwrap_or_default();
            let always = pdb
                .spec
                .as_ref()
                .and_then(|s| s.unhealthy_pod_eviction_policy.as_deref())
                == Some("AlwaysAllow");
            if !is_pod_ready(&pod)
                && (always
                    || (status.current_healthy >= status.desired_healthy
                        && status.desired_healthy > 0))
            {
                // An unhealthy pod does not count towards the budget.
                conditional = true;
            } else {
                self.take_disruption(ns, pdb, name, delete.dry_run).await?;
            }
        }
        let mut opts = delete.clone();
        if conditional {
            opts.resource_version = pod.metadata.resource_version.clone();
        }
        match self.delete(&pods, Some(ns), name, &opts).await {
            Ok(_) => Ok(success()),
            Err(Error::Conflict { .. }) if conditional && !own_rv => {
                Err(still_processing(&budget_name))
            }
            Err(e) => Err(e),
        }
    }

    /// The budgets of `ns` whose (non-empty) selector selects `pod`.
    async fn budgets_of(&self, pod: &Pod, ns: &str) -> Result<Vec<PodDisruptionBudget>> {
        let Some(info) = self.table().lookup("policy", "v1", "poddisruptionbudgets") else {
            return Ok(Vec::new());
        };
        let labels: serde_json::Map<String, Value> = pod
            .metadata
            .labels
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let mut out = Vec::new();
        for item in self
            .list(&info, Some(ns), &ListOptions::default())
            .await?
            .items
        {
            let sel = item
                .pointer("/spec/selector")
                .cloned()
                .unwrap_or(Value::Null);
            let empty = sel
                .get("matchLabels")
                .and_then(Value::as_object)
                .is_none_or(|m| m.is_empty())
                && sel
                    .get("matchExpressions")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty);
            // A nil or empty selector matches nothing here (unlike in the disruption controller).
            if empty || !selector_matches(&sel, Some(&labels)) {
                continue;
            }
            out.push(decode(item)?);
        }
        Ok(out)
    }

    /// upstream's `checkAndDecrement`, retried with a fresh budget on conflict.
    async fn take_disruption(
        &self,
        ns: &str,
        mut pdb: PodDisruptionBudget,
        pod: &str,
        dry_run: bool,
    ) -> Result<()> {
        let info = self
            .table()
            .lookup("policy", "v1", "poddisruptionbudgets")
            .ok_or_else(|| Error::BadRequest("poddisruptionbudgets are not served".into()))?;
        let name = pdb.metadata.name.clone().unwrap_or_default();
        for attempt in 0..RETRIES {
            if attempt > 0 {
                pdb = decode(self.get(&info, Some(ns), &name).await?)?;
            }
            let generation = pdb.metadata.generation.unwrap_or(0);
            let status = pdb.status.get_or_insert_with(Default::default);
            if status.observed_generation.unwrap_or(0) < generation {
                return Err(still_processing(&name));
            }
            if status.disruptions_allowed < 0 {
                return Err(pdb_forbidden(&name, "pdb disruptions allowed is negative"));
            }
            if status.disrupted_pods.as_ref().map_or(0, BTreeMap::len) > MAX_DISRUPTED_PODS {
                return Err(pdb_forbidden(
                    &name,
                    "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
                ));
            }
            if status.disruptions_allowed == 0 {
                return Err(too_many_requests(
                    format!(
                        "The disruption budget {name} needs {} healthy pods and has {} currently",
                        status.desired_healthy, status.current_healthy
                    ),
                    0,
                ));
            }
            status.disruptions_allowed -= 1;
            let now_zero = status.disruptions_allowed == 0;
            if dry_run {
                return Ok(());
            }
            status
                .disrupted_pods
                .get_or_insert_with(BTreeMap::new)
                .insert(pod.to_string(), Time(jiff::Timestamp::now()));
            if now_zero {
                update_disruption_allowed(&mut pdb);
            }
            let body = serde_json::to_value(&pdb).map_err(|e| Error::BadRequest(e.to_string()))?;
            match self
                .update_at(
                    Endpoint::Status,
                    &info,
                    Some(ns),
                    &name,
                    body,
                    &WriteOptions::default(),
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(Error::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Timeout(format!(
            "couldn't update PodDisruptionBudget {name:?} due to conflicts"
        )))
    }
}
