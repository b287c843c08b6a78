//! The disruption controller (upstream `pkg/controller/disruption`): the
//! status of every PodDisruptionBudget — `currentHealthy` (selected pods
//! that are ready, not being deleted and not just evicted), `desiredHealthy`
//! (from `minAvailable`, or `expectedPods` minus `maxUnavailable`, percents
//! rounded up), `expectedPods` (the selected pods, or for percents and
//! `maxUnavailable` the scale of their controllers: a ReplicaSet owned by
//! a Deployment counts the Deployment's replicas, any kind with a `/scale`
//! its `spec.replicas`), `disruptionsAllowed`, `observedGeneration`, the
//! `DisruptionAllowed` condition, and `disruptedPods` (evictions the API
//! server approved, dropped when the pod goes or after two minutes). A
//! budget it cannot compute allows no disruption (`SyncFailed`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::Error;
use super::client::Api;
use super::events::{EventRecorder, EventType};
use super::runtime::{Action, ObjectKey, Reconciler};
use super::typed::Typed;
use crate::registry::eviction::{
    DISRUPTION_ALLOWED, is_pod_ready, set_condition, update_disruption_allowed,
};
use crate::registry::kinds::selector_matches;
use crate::registry::{ObjectStore, Subresource, WatchEvent, meta};

/// How long an approved eviction keeps a pod out of `currentHealthy`
/// (upstream's `DeletionTimeout`).
const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether a PDB selector (JSON) selects `labels`: a missing selector
/// selects nothing, an empty one everything (policy/v1).
fn pdb_selects(selector: Option<&Value>, labels: Option<&serde_json::Map<String, Value>>) -> bool {
    match selector {
        None | Some(Value::Null) => false,
        Some(sel) => selector_matches(sel, labels),
    }
}

/// upstream's `GetScaledValueFromIntOrPercent` with rounding up.
fn scaled(v: &IntOrString, total: i32) -> Result<i32, String> {
    match v {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| {
                    "invalid value for IntOrString: invalid type: string is not a percentage"
                        .to_string()
                })?;
            let v = (pct * i64::from(total) + 99) / 100;
            i32::try_from(v).map_err(|_| format!("{s} of {total} is out of range"))
        }
    }
}

/// The disruption controller.
#[derive(Debug)]
pub(crate) struct DisruptionController {
    objects: ObjectStore,
    pdbs: Typed<PodDisruptionBudget>,
    pods: Typed<Pod>,
    /// namespace → budget name → selector, from the budgets' watch.
    selectors: HashMap<String, BTreeMap<String, Option<Value>>>,
    events: EventRecorder,
}

impl DisruptionController {
    /// Watches 0: poddisruptionbudgets, 1: pods, 2..: workloads whose scale matters.
    pub(crate) fn new(
        objects: ObjectStore,
        pdbs: Typed<PodDisruptionBudget>,
        pods: Typed<Pod>,
        events: Api,
    ) -> Self {
        DisruptionController {
            objects,
            pdbs,
            pods,
            selectors: HashMap::new(),
            events: EventRecorder::new(events, "controllermanager"),
        }
    }

    fn budgets_in(&self, ns: &str) -> Vec<ObjectKey> {
        self.selectors
            .get(ns)
            .map(|m| {
                m.keys()
                    .map(|name| ObjectKey {
                        namespace: ns.to_string(),
                        name: name.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The scale of the controller `r` of a pod in `ns` (upstream's finders).
    async fn scale_of(&self, ns: &str, r: &OwnerReference) -> Result<Option<(String, i32)>, Error> {
        let table = self.objects.table();
        let find = |api_version: &str, kind: &str| -> Option<Arc<crate::registry::ResourceInfo>> {
            table
                .iter()
                .find(|i| {
                    i.api_version() == api_version && i.kind == kind && i.has(Subresource::Scale)
                })
                .cloned()
        };
        let Some(info) = find(&r.api_version, &r.kind) else {
            return Ok(None);
        };
        let api = Api::new(self.objects.clone(), info.clone());
        let Some(mut owner) = api.get(ns, &r.name).await? else {
            return Ok(None);
        };
        if super::client::uid(&owner) != r.uid {
            return Ok(None);
        }
        let mut paths = info.strategy.scale_paths();
        // A ReplicaSet of a Deployment counts as the Deployment.
        if info.group == "apps"
            && info.kind == "ReplicaSet"
            && let Some(d) = super::owner::controller_of(&owner)
                .filter(|d| d.get("kind").and_then(Value::as_str) == Some("Deployment"))
                .cloned()
            && let Some(dinfo) = find("apps/v1", "Deployment")
        {
            let dname = d.get("name").and_then(Value::as_str).unwrap_or("");
            let dapi = Api::new(self.objects.clone(), dinfo.clone());
            if let Some(dep) = dapi.get(ns, dname).await?
                && Some(super::client::uid(&dep)) == d.get("uid").and_then(Value::as_str)
            {
                owner = dep;
                paths = dinfo.strategy.scale_paths();
            }
        }
        let replicas = owner
            .pointer(&paths.spec_replicas)
            .and_then(Value::as_i64)
            .unwrap_or(1);
        Ok(Some((
            super::client::uid(&owner).to_string(),
            i32::try_from(replicas).unwrap_or(i32::MAX),
        )))
    }

    /// upstream's `getExpectedScale`: the sum of the pods' controllers'
    /// scales, and the pods without a controller.
    async fn expected_scale(&self, ns: &str, pods: &[&Pod]) -> Result<(i32, Vec<String>), String> {
        let mut scales: HashMap<String, i32> = HashMap::new();
        let mut unmanaged = Vec::new();
        for pod in pods {
            let Some(r) = pod
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|r| r.controller == Some(true))
            else {
                unmanaged.push(pod.metadata.name.clone().unwrap_or_default());
                continue;
            };
            if scales.contains_key(&r.uid) {
                continue;
            }
            match self.scale_of(ns, r).await {
                Ok(Some((uid, n))) => {
                    scales.insert(uid, n);
                }
                Ok(None) => {
                    return Err(format!(
                        "found no controllers for pod {:?}",
                        pod.metadata.name.as_deref().unwrap_or("")
                    ));
                }
                Err(e) => return Err(e.one_line()),
            }
        }
        Ok((scales.values().sum(), unmanaged))
    }

    /// The status the budget should have, or why it cannot be computed.
    async fn compute(
        &self,
        pdb: &PodDisruptionBudget,
        pods: &[&Pod],
    ) -> Result<(PodDisruptionBudgetStatus, Option<Duration>), String> {
        let ns = pdb.metadata.namespace.as_deref().unwrap_or("");
        let spec = pdb.spec.clone().unwrap_or_default();
        let (expected, desired) = if let Some(max) = &spec.max_unavailable {
            let (expected, _) = self.expected_scale(ns, pods).await?;
            let max = scaled(max, expected)?;
            (expected, (expected - max).max(0))
        } else {
            match &spec.min_available {
                Some(IntOrString::Int(n)) => (i32::try_from(pods.len()).unwrap_or(i32::MAX), *n),
                Some(pct) => {
                    let (expected, _) = self.expected_scale(ns, pods).await?;
                    (expected, scaled(pct, expected)?)
                }
                None => (0, 0),
            }
        };
        let now = Timestamp::now();
        let timeout = jiff::SignedDuration::try_from(DELETION_TIMEOUT).unwrap_or_default();
        let previous = pdb
            .status
            .as_ref()
            .and_then(|s| s.disrupted_pods.clone())
            .unwrap_or_default();
        let mut disrupted = BTreeMap::new();
        let mut recheck: Option<Timestamp> = None;
        for pod in pods {
            let name = pod.metadata.name.clone().unwrap_or_default();
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let Some(at) = previous.get(&name) else {
                continue;
            };
            let expires = at.0.checked_add(timeout).unwrap_or(at.0);
            if expires < now {
                let message =
                    format!("Pod was expected by PDB {ns}/{ns} to be deleted but it wasn't");
                let obj = serde_json::to_value(pod).unwrap_or_default();
                self.events
                    .record(&obj, EventType::Warning, "NotDeleted", &message)
                    .await;
            } else {
                recheck = Some(recheck.map_or(expires, |r| r.min(expires)));
                disrupted.insert(name, at.clone());
            }
        }
        let healthy = pods
            .iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && !disrupted.contains_key(p.metadata.name.as_deref().unwrap_or(""))
                    && is_pod_ready(p)
            })
            .count();
        let healthy = i32::try_from(healthy).unwrap_or(i32::MAX);
        let mut allowed = healthy - desired;
        if expected <= 0 || allowed <= 0 {
            allowed = 0;
        }
        let status = PodDisruptionBudgetStatus {
            current_healthy: healthy,
            desired_healthy: desired,
            expected_pods: expected,
            disruptions_allowed: allowed,
            disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
            observed_generation: pdb.metadata.generation,
            conditions: pdb.status.as_ref().and_then(|s| s.conditions.clone()),
        };
        let wait = recheck
            .map(|r| Duration::try_from(r.duration_since(now)).unwrap_or(Duration::from_secs(1)));
        Ok((status, wait))
    }
}

impl Reconciler for DisruptionController {
    type Key = ObjectKey;
    const NAME: &'static str = "disruption";

    async fn keys_for(&mut self, kind: usize, event: &WatchEvent) -> Vec<ObjectKey> {
        let (obj, deleted) = match event {
            WatchEvent::Added(o) | WatchEvent::Modified(o) => (o, false),
            WatchEvent::Deleted(o) => (o, true),
            _ => return Vec::new(),
        };
        let ns = meta::namespace(obj).to_string();
        match kind {
            0 => {
                let m = self.selectors.entry(ns).or_default();
                if deleted {
                    m.remove(meta::name(obj));
                    return Vec::new();
                }
                m.insert(
                    meta::name(obj).to_string(),
                    obj.pointer("/spec/selector").cloned(),
                );
                vec![ObjectKey::of(obj)]
            }
            1 => self
                .selectors
                .get(&ns)
                .map(|m| {
                    m.iter()
                        .filter(|(_, sel)| pdb_selects(sel.as_ref(), meta::labels(obj)))
                        .map(|(name, _)| ObjectKey {
                            namespace: ns.clone(),
                            name: name.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            _ => self.budgets_in(&ns),
        }
    }

    async fn reconcile(&mut self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(pdb) = self.pdbs.get(&key.namespace, &key.name).await? else {
            return Ok(Action::await_change());
        };
        let selector = serde_json::to_value(pdb.spec.as_ref().and_then(|s| s.selector.clone()))
            .unwrap_or_default();
        let all = self.pods.list(&key.namespace).await?;
        let pods: Vec<&Pod> = all
            .iter()
            .filter(|p| {
                let labels: serde_json::Map<String, Value> = p
                    .metadata
                    .labels
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                pdb_selects(Some(&selector), Some(&labels))
            })
            .collect();
        let obj = serde_json::to_value(&pdb).unwrap_or_default();
        if pods.is_empty() {
            self.events
                .record(&obj, EventType::Normal, "NoPods", "No matching pods found")
                .await;
        }
        let unmanaged = pods
            .iter()
            .filter(|p| {
                p.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .all(|r| r.controller != Some(true))
            })
            .count();
        let percent_or_max = pdb.spec.as_ref().is_some_and(|s| {
            s.max_unavailable.is_some() || matches!(s.min_available, Some(IntOrString::String(_)))
        });
        if unmanaged > 0 && percent_or_max {
            let message = format!(
                "Pods selected by this PodDisruptionBudget (selector: {}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.",
                crate::registry::kinds::format_selector(Some(&selector))
                    .as_str()
                    .unwrap_or("")
            );
            self.events
                .record(&obj, EventType::Warning, "UnmanagedPods", &message)
                .await;
        }
        let (status, recheck, sync_failed) = match self.compute(&pdb, &pods).await {
            Ok((st, recheck)) => (st, recheck, false),
            Err(why) => {
                let message = format!("Failed to calculate the number of expected pods: {why}");
                self.events
                    .record(
                        &obj,
                        EventType::Warning,
                        "CalculateExpectedPodCountFailed",
                        &message,
                    )
                    .await;
                // upstream's failSafe: no disruption allowed until it computes again.
                let mut st = pdb.status.clone().unwrap_or_default();
                st.disruptions_allowed = 0;
                let c = Condition {
                    type_: DISRUPTION_ALLOWED.into(),
                    status: "False".into(),
                    reason: "SyncFailed".into(),
                    message: why,
                    observed_generation: st.observed_generation,
                    last_transition_time: Time(meta::now()),
                };
                set_condition(st.conditions.get_or_insert_with(Vec::new), c);
                (st, None, true)
            }
        };
        let mut next = pdb.clone();
        next.status = Some(status);
        if !sync_failed {
            update_disruption_allowed(&mut next);
        }
        if pdb.status == next.status {
            return Ok(recheck.map_or_else(Action::await_change, Action::requeue));
        }
        match self.pdbs.replace_status(&next).await {
            Ok(_) => Ok(recheck.map_or_else(Action::await_change, Action::requeue)),
            Err(e) if e.is_not_found() => Ok(Action::await_change()),
            Err(e) => Err(e),
        }
    }
}
