//! The horizontal pod autoscaler (upstream `pkg/controller/podautoscaler`) for the metrics
//! clusters use most: `Resource` metrics (cpu, memory) of the pods of a Deployment,
//! StatefulSet, ReplicaSet or ReplicationController, as a utilization of their requests or as an average value, read
//! from what the workers report (the source of `metrics.k8s.io`, so `kubectl top` and the
//! autoscaler see the same numbers).
//!
//! Every sync period (15 s, as `--horizontal-pod-autoscaler-sync-period`) each autoscaler
//! gets upstream's replica count: the ratio of the metric to its target times the pods that
//! report, unchanged within the 10 % tolerance; pods without a report count as idle when
//! scaling up and as on target when scaling down. Scale-up is limited to upstream's default
//! policy (double, or four pods more, per period); scale-down takes the highest
//! recommendation of the stabilization window (300 s, or the autoscaler's
//! `behavior.scaleDown.stabilizationWindowSeconds`); the result stays within
//! `minReplicas`..`maxReplicas`. Other metric types (`Pods`, `Object`, `External`,
//! `ContainerResource`) report `ScalingActive=False` rather than being guessed at.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::Api;
use super::events::{EventRecorder, EventType};
use crate::registry::kinds::selector_matches;
use crate::registry::quantity::Quantity;
use crate::registry::{ObjectStore, meta};

/// upstream's `--horizontal-pod-autoscaler-sync-period`.
pub const DEFAULT_SYNC_PERIOD: Duration = Duration::from_secs(15);
/// upstream's `--horizontal-pod-autoscaler-tolerance`.
const TOLERANCE: f64 = 0.1;
/// upstream's default `behavior.scaleDown.stabilizationWindowSeconds`.
const DEFAULT_DOWNSCALE_WINDOW: Duration = Duration::from_secs(300);

/// What a pod's containers use right now: CPU in millicores, memory in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PodUsage {
    /// CPU, millicores.
    pub cpu_milli: f64,
    /// Working-set memory, bytes.
    pub memory_bytes: f64,
}

/// Where usage comes from: the workers' reports, as `metrics.k8s.io` serves them.
pub trait UsageSource: Send + Sync {
    /// The usage of each of `pods` whose node reported, by (namespace, name).
    fn usage<'a>(&'a self, pods: &'a [Value])
    -> BoxFuture<'a, HashMap<(String, String), PodUsage>>;
}

/// The target kinds whose `/scale` is the object's own `spec.replicas` and `spec.selector`:
/// their group and resource.
fn target_resource(api_version: &str, kind: &str) -> Option<(&'static str, &'static str)> {
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    match (group, kind) {
        ("apps", "Deployment") => Some(("apps", "deployments")),
        ("apps", "StatefulSet") => Some(("apps", "statefulsets")),
        ("apps", "ReplicaSet") => Some(("apps", "replicasets")),
        ("", "ReplicationController") => Some(("", "replicationcontrollers")),
        _ => None,
    }
}

fn text<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// A resource's request (millicores or bytes) summed over the pod's containers, or the
/// first container without one.
fn pod_request(pod: &Value, resource: &str) -> Result<f64, String> {
    let mut sum = 0.0;
    for c in pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let q = c
            .pointer(&format!("/resources/requests/{resource}"))
            .and_then(Value::as_str)
            .and_then(|q| q.parse::<Quantity>().ok());
        match q {
            Some(q) if resource == "cpu" => sum += q.milli_value() as f64,
            Some(q) => sum += q.value() as f64,
            None => return Err(text(c, "/name").to_string()),
        }
    }
    Ok(sum)
}

fn used(u: &PodUsage, resource: &str) -> f64 {
    if resource == "cpu" {
        u.cpu_milli
    } else {
        u.memory_bytes
    }
}

/// A metric's recommendation: replicas, and its `currentMetrics` entry.
#[derive(Debug, Clone, PartialEq)]
struct Recommendation {
    replicas: i64,
    current: Value,
    /// Upstream's condition message names what the count came from.
    description: String,
}

/// Upstream's `GetResourceReplicas` for one `Resource` metric over `pods`.
fn resource_replicas(
    metric: &Value,
    pods: &[Value],
    usage: &HashMap<(String, String), PodUsage>,
    current: i64,
) -> Result<Recommendation, String> {
    let name = text(metric, "/resource/name");
    if name != "cpu" && name != "memory" {
        return Err(format!(
            "unable to get metrics for resource {name}: not reported by the workers"
        ));
    }
    let target = metric.pointer("/resource/target").unwrap_or(&Value::Null);
    let utilization = target.get("averageUtilization").and_then(Value::as_i64);
    let key = |p: &Value| (meta::namespace(p).to_string(), meta::name(p).to_string());
    let (with, missing): (Vec<&Value>, Vec<&Value>) =
        pods.iter().partition(|p| usage.contains_key(&key(p)));
    if with.is_empty() {
        return Err(format!(
            "unable to get metrics for resource {name}: no metrics returned from resource metrics API"
        ));
    }
    let total_used: f64 = with.iter().map(|p| used(&usage[&key(p)], name)).sum();
    let (ratio, current_entry, description) = match utilization {
        Some(target_pct) => {
            let mut requested = 0.0;
            for p in &with {
                requested += pod_request(p, name).map_err(|c| {
                    format!(
                        "missing request for {name} in container {c} of Pod {}",
                        meta::name(p)
                    )
                })?;
            }
            if requested <= 0.0 {
                return Err(format!("missing request for {name}"));
            }
            let pct = total_used * 100.0 / requested;
            (
                pct / target_pct as f64,
                json!({"averageUtilization": pct as i64,
                       "averageValue": quantity(total_used / with.len() as f64, name)}),
                format!("{name} resource utilization (percentage of request)"),
            )
        }
        None => {
            let want = target
                .get("averageValue")
                .and_then(Value::as_str)
                .and_then(|q| q.parse::<Quantity>().ok())
                .ok_or_else(|| format!("invalid target for resource {name}"))?;
            let want = if name == "cpu" {
                want.milli_value() as f64
            } else {
                want.value() as f64
            };
            let avg = total_used / with.len() as f64;
            (
                avg / want.max(f64::MIN_POSITIVE),
                json!({"averageValue": quantity(avg, name)}),
                format!("{name} resource"),
            )
        }
    };
    let within = |r: f64| (r - 1.0).abs() <= TOLERANCE;
    let mut replicas = if within(ratio) {
        current
    } else {
        (ratio * with.len() as f64).ceil() as i64
    };
    if !missing.is_empty() && !within(ratio) {
        // Upstream: pods without metrics use nothing when scaling up and exactly the
        // target when scaling down; if that flips the direction, nothing changes.
        let n = (with.len() + missing.len()) as f64;
        let adjusted = if ratio > 1.0 {
            ratio * with.len() as f64 / n
        } else {
            (ratio * with.len() as f64 + missing.len() as f64) / n
        };
        replicas = if within(adjusted) || (adjusted > 1.0) != (ratio > 1.0) {
            current
        } else {
            (adjusted * n).ceil() as i64
        };
    }
    Ok(Recommendation {
        replicas,
        current: json!({"type": "Resource", "resource": {"name": name, "current": current_entry}}),
        description,
    })
}

/// A quantity as metrics print it: millicores for CPU, bytes for memory.
fn quantity(v: f64, resource: &str) -> String {
    if resource == "cpu" {
        format!("{}m", v.round() as i64)
    } else {
        format!("{}", v.round() as i64)
    }
}

/// A condition, keeping its transition time while its status holds.
fn condition(old: &Value, ty: &str, status: bool, reason: &str, message: &str, now: &str) -> Value {
    let status = if status { "True" } else { "False" };
    let since = old
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| text(c, "/type") == ty))
        .filter(|c| text(c, "/status") == status)
        .map_or(now, |c| text(c, "/lastTransitionTime"));
    json!({"type": ty, "status": status, "lastTransitionTime": since, "reason": reason,
           "message": message})
}

/// `AbleToScale=True`: the target's scale was read.
fn got_scale(hpa: &Value, now: &str) -> Value {
    condition(
        hpa,
        "AbleToScale",
        true,
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale",
        now,
    )
}

/// The controller's memory: recent recommendations per autoscaler.
#[derive(Debug, Default)]
struct History {
    recommendations: HashMap<(String, String), VecDeque<(Instant, i64)>>,
}

impl History {
    /// Upstream's stabilization: scaling down takes the highest recommendation of the
    /// window, scaling up the lowest of its (by default empty) window.
    fn stabilize(
        &mut self,
        key: (String, String),
        now: Instant,
        recommended: i64,
        current: i64,
        down_window: Duration,
        up_window: Duration,
    ) -> i64 {
        let entries = self.recommendations.entry(key).or_default();
        entries.push_back((now, recommended));
        let keep = down_window.max(up_window);
        while entries
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > keep)
        {
            entries.pop_front();
        }
        let within = |w: Duration| {
            entries
                .iter()
                .filter(move |(t, _)| now.duration_since(*t) <= w)
                .map(|(_, r)| *r)
        };
        if recommended < current {
            within(down_window)
                .max()
                .unwrap_or(recommended)
                .min(current)
        } else {
            within(up_window).min().unwrap_or(recommended).max(current)
        }
    }
}

fn window(hpa: &Value, direction: &str, default: Duration) -> Duration {
    hpa.pointer(&format!(
        "/spec/behavior/{direction}/stabilizationWindowSeconds"
    ))
    .and_then(Value::as_u64)
    .map_or(default, Duration::from_secs)
}

/// Runs the autoscaler every `period` until `stop`.
pub async fn run(
    objects: ObjectStore,
    source: Arc<dyn UsageSource>,
    period: Duration,
    stop: CancellationToken,
) {
    let table = objects.table();
    let (Some(hpas), Some(pods), Some(events)) = (
        table.lookup("autoscaling", "v2", "horizontalpodautoscalers"),
        table.lookup("", "v1", "pods"),
        table.lookup("", "v1", "events"),
    ) else {
        return;
    };
    let hpas = Api::new(objects.clone(), hpas);
    let pods = Api::new(objects.clone(), pods);
    let recorder = EventRecorder::new(
        Api::new(objects.clone(), events),
        "horizontal-pod-autoscaler",
    );
    let mut history = History::default();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let all = match hpas.list("").await {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!(error = %e, "listing autoscalers failed");
                continue;
            }
        };
        for hpa in all {
            let autoscaler = Autoscaler {
                objects: &objects,
                hpas: &hpas,
                pods: &pods,
                recorder: &recorder,
                source: source.as_ref(),
            };
            autoscaler.sync(&hpa, &mut history).await;
        }
    }
}

struct Autoscaler<'a> {
    objects: &'a ObjectStore,
    hpas: &'a Api,
    pods: &'a Api,
    recorder: &'a EventRecorder,
    source: &'a dyn UsageSource,
}

impl Autoscaler<'_> {
    async fn sync(&self, hpa: &Value, history: &mut History) {
        let ns = meta::namespace(hpa).to_string();
        let name = meta::name(hpa).to_string();
        let now = meta::format_time(meta::now());
        let (api_version, kind, target_name) = (
            text(hpa, "/spec/scaleTargetRef/apiVersion"),
            text(hpa, "/spec/scaleTargetRef/kind"),
            text(hpa, "/spec/scaleTargetRef/name"),
        );
        let target_api = target_resource(api_version, kind)
            .and_then(|(g, r)| self.objects.table().lookup(g, "v1", r))
            .map(|info| Api::new(self.objects.clone(), info));
        let target = match &target_api {
            Some(api) => api.get(&ns, target_name).await.ok().flatten(),
            None => None,
        };
        let (Some(api), Some(target)) = (target_api, target) else {
            let message = format!(
                "the HPA controller was unable to get the target's current scale: {kind} {target_name:?} of {api_version} is not a scale target here"
            );
            let conditions = vec![condition(
                hpa,
                "AbleToScale",
                false,
                "FailedGetScale",
                &message,
                &now,
            )];
            self.write_status(hpa, None, None, conditions, None).await;
            self.recorder
                .record(hpa, EventType::Warning, "FailedGetScale", &message)
                .await;
            return;
        };
        let current = target
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        if current == 0 {
            let conditions = vec![
                got_scale(hpa, &now),
                condition(
                    hpa,
                    "ScalingActive",
                    false,
                    "ScalingDisabled",
                    "scaling is disabled since the replica count of the target is zero",
                    &now,
                ),
            ];
            self.write_status(hpa, Some(0), Some(0), conditions, None)
                .await;
            return;
        }
        let selector = match target.pointer("/spec/selector") {
            // A ReplicationController's selector is a plain label map.
            Some(map) if kind == "ReplicationController" => json!({"matchLabels": map}),
            Some(sel) => sel.clone(),
            None => Value::Null,
        };
        let pods: Vec<Value> = match self.pods.list(&ns).await {
            Ok(all) => all
                .into_iter()
                .filter(|p| {
                    selector_matches(
                        &selector,
                        p.pointer("/metadata/labels").and_then(Value::as_object),
                    ) && meta::meta_str(p, "deletionTimestamp").is_none()
                        && !matches!(text(p, "/status/phase"), "Failed" | "Succeeded")
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "listing pods for an autoscaler failed");
                return;
            }
        };
        let usage = self.source.usage(&pods).await;
        let metrics = hpa
            .pointer("/spec/metrics")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut best: Option<Recommendation> = None;
        let mut current_metrics = Vec::new();
        let mut failure = None;
        for m in &metrics {
            let result = match text(m, "/type") {
                "Resource" => resource_replicas(m, &pods, &usage, current),
                other => Err(format!(
                    "metrics of type {other} are not supported by this autoscaler yet"
                )),
            };
            match result {
                Ok(r) => {
                    current_metrics.push(r.current.clone());
                    if best.as_ref().is_none_or(|b| r.replicas > b.replicas) {
                        best = Some(r);
                    }
                }
                Err(e) => failure = Some(e),
            }
        }
        let Some(best) = best else {
            let message = failure.unwrap_or_else(|| "no metrics to scale on".into());
            let conditions = vec![
                got_scale(hpa, &now),
                condition(
                    hpa,
                    "ScalingActive",
                    false,
                    "FailedGetResourceMetric",
                    &format!("the HPA was unable to compute the replica count: {message}"),
                    &now,
                ),
            ];
            self.write_status(
                hpa,
                Some(current),
                Some(current),
                conditions,
                Some(current_metrics),
            )
            .await;
            self.recorder
                .record(hpa, EventType::Warning, "FailedGetResourceMetric", &message)
                .await;
            return;
        };
        let min = hpa
            .pointer("/spec/minReplicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let max = hpa
            .pointer("/spec/maxReplicas")
            .and_then(Value::as_i64)
            .unwrap_or(min);
        let stable = history.stabilize(
            (ns.clone(), name.clone()),
            Instant::now(),
            best.replicas,
            current,
            window(hpa, "scaleDown", DEFAULT_DOWNSCALE_WINDOW),
            window(hpa, "scaleUp", Duration::ZERO),
        );
        // upstream's default scale-up policies: 100 % or 4 pods per period, whichever is more.
        let up_limit = (current * 2).max(current + 4);
        let (desired, limited) = if stable > max {
            (
                max,
                Some((
                    "TooManyReplicas",
                    "the desired replica count is more than the maximum replica count",
                )),
            )
        } else if stable < min {
            (
                min,
                Some((
                    "TooFewReplicas",
                    "the desired replica count is less than the minimum replica count",
                )),
            )
        } else if stable > up_limit {
            (
                up_limit,
                Some((
                    "ScaleUpLimit",
                    "the desired replica count is increasing faster than the maximum scale rate",
                )),
            )
        } else {
            (stable, None)
        };
        let mut able = condition(
            hpa,
            "AbleToScale",
            true,
            "ReadyForNewScale",
            "recommended size matches current size",
            &now,
        );
        let mut last_scale = None;
        if desired != current {
            let scaled = api
                .edit(&ns, target_name, |cur| {
                    let mut next = cur.clone();
                    next["spec"]["replicas"] = json!(desired);
                    Some(next)
                })
                .await;
            match scaled {
                Ok(_) => {
                    let why = if desired > current {
                        format!("{} above target", best.description)
                    } else {
                        "All metrics below target".to_string()
                    };
                    self.recorder
                        .record(
                            hpa,
                            EventType::Normal,
                            "SuccessfulRescale",
                            &format!("New size: {desired}; reason: {why}"),
                        )
                        .await;
                    able = condition(
                        hpa,
                        "AbleToScale",
                        true,
                        "SucceededRescale",
                        &format!(
                            "the HPA controller was able to update the target scale to {desired}"
                        ),
                        &now,
                    );
                    last_scale = Some(now.clone());
                }
                Err(e) => {
                    let message = format!("New size: {desired}; error: {e}");
                    self.recorder
                        .record(hpa, EventType::Warning, "FailedRescale", &message)
                        .await;
                    able = condition(
                        hpa,
                        "AbleToScale",
                        false,
                        "FailedUpdateScale",
                        &format!("the HPA controller was unable to update the target scale: {e}"),
                        &now,
                    );
                }
            }
        }
        let active = condition(
            hpa,
            "ScalingActive",
            true,
            "ValidMetricFound",
            &format!(
                "the HPA was able to successfully calculate a replica count from {}",
                best.description
            ),
            &now,
        );
        let limited = match limited {
            Some((reason, message)) => {
                condition(hpa, "ScalingLimited", true, reason, message, &now)
            }
            None => condition(
                hpa,
                "ScalingLimited",
                false,
                "DesiredWithinRange",
                "the desired count is within the acceptable range",
                &now,
            ),
        };
        let mut status_hpa = hpa.clone();
        if let Some(t) = last_scale {
            status_hpa["status"]["lastScaleTime"] = json!(t);
        }
        self.write_status(
            &status_hpa,
            Some(current),
            Some(desired),
            vec![able, active, limited],
            Some(current_metrics),
        )
        .await;
    }

    /// Writes the autoscaler's status: replicas, metrics and conditions.
    async fn write_status(
        &self,
        hpa: &Value,
        current: Option<i64>,
        desired: Option<i64>,
        conditions: Vec<Value>,
        metrics: Option<Vec<Value>>,
    ) {
        let generation = hpa.pointer("/metadata/generation").cloned();
        let last_scale = hpa.pointer("/status/lastScaleTime").cloned();
        let written = self
            .hpas
            .edit_status(meta::namespace(hpa), meta::name(hpa), |cur| {
                let mut next = cur.clone();
                let mut status = cur.get("status").cloned().unwrap_or_else(|| json!({}));
                if let Some(g) = &generation {
                    status["observedGeneration"] = g.clone();
                }
                if let Some(t) = &last_scale {
                    status["lastScaleTime"] = t.clone();
                }
                status["currentReplicas"] = json!(current.unwrap_or(0));
                status["desiredReplicas"] = json!(desired.unwrap_or(0));
                if let Some(m) = &metrics {
                    status["currentMetrics"] = json!(m);
                }
                status["conditions"] = json!(conditions);
                next["status"] = status;
                (next != *cur).then_some(next)
            })
            .await;
        if let Err(e) = written {
            tracing::warn!(error = %e, autoscaler = meta::name(hpa), "writing an autoscaler's status failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, cpu_request: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "default"},
               "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu_request}}}]}})
    }

    fn cpu_target(pct: i64) -> Value {
        json!({"type": "Resource", "resource": {"name": "cpu",
               "target": {"type": "Utilization", "averageUtilization": pct}}})
    }

    fn usage(entries: &[(&str, f64)]) -> HashMap<(String, String), PodUsage> {
        entries
            .iter()
            .map(|(n, m)| {
                (
                    ("default".to_string(), n.to_string()),
                    PodUsage {
                        cpu_milli: *m,
                        memory_bytes: 0.0,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn replicas_follow_the_ratio_to_the_target_as_upstream() {
        let pods = [pod("a", "100m"), pod("b", "100m")];
        // 150 % of requests against a 50 % target: three times the pods.
        let r = resource_replicas(
            &cpu_target(50),
            &pods,
            &usage(&[("a", 150.0), ("b", 150.0)]),
            2,
        )
        .unwrap();
        assert_eq!(r.replicas, 6);
        assert_eq!(r.current["resource"]["current"]["averageUtilization"], 150);
        // Within the 10 % tolerance nothing changes.
        let r = resource_replicas(
            &cpu_target(50),
            &pods,
            &usage(&[("a", 54.0), ("b", 54.0)]),
            2,
        )
        .unwrap();
        assert_eq!(r.replicas, 2);
        // A pod without a report counts as idle when scaling up.
        let r = resource_replicas(&cpu_target(50), &pods, &usage(&[("a", 200.0)]), 2).unwrap();
        assert_eq!(r.replicas, 4);
        // Missing requests and missing reports are errors, not guesses.
        let e = resource_replicas(&cpu_target(50), &[pod("a", "")], &usage(&[("a", 1.0)]), 1);
        assert!(e.is_err());
        let e = resource_replicas(&cpu_target(50), &pods, &usage(&[]), 2).unwrap_err();
        assert!(e.contains("no metrics returned"), "{e}");
    }

    #[test]
    fn scaling_down_waits_for_the_stabilization_window() {
        let mut h = History::default();
        let key = ("default".to_string(), "web".to_string());
        let t0 = Instant::now();
        let window = Duration::from_secs(300);
        assert_eq!(
            h.stabilize(key.clone(), t0, 6, 2, window, Duration::ZERO),
            6
        );
        // A lower recommendation inside the window keeps the highest one seen.
        assert_eq!(
            h.stabilize(
                key.clone(),
                t0 + Duration::from_secs(60),
                1,
                6,
                window,
                Duration::ZERO
            ),
            6
        );
        // Once the high one is older than the window, the count comes down.
        assert_eq!(
            h.stabilize(
                key,
                t0 + Duration::from_secs(400),
                1,
                6,
                window,
                Duration::ZERO
            ),
            1
        );
    }
}
