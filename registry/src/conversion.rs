//! Versions served from another version's storage, and the conversions between them:
//! - autoscaling/v1 HorizontalPodAutoscalers are autoscaling/v2 objects, converted on the way in and out
//!   as upstream's `pkg/apis/autoscaling/v1` conversion does. What v1 cannot say (metrics other than CPU
//!   utilization, `behavior`, status conditions and other current metrics) travels in upstream's
//!   `autoscaling.alpha.kubernetes.io/*` annotations, in v1's metric shapes, so a v2 object read and
//!   written back through v1 loses nothing.
//! - a custom resource's other served versions are its storage version's objects with their `apiVersion`
//!   rewritten, as the apiextensions server's `None` conversion strategy does.

use serde_json::{Map, Value, json};

use super::{Error, Name, Result};

/// A served version whose objects are stored as another version of the same resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conversion {
    /// autoscaling/v1 `HorizontalPodAutoscaler`, stored as autoscaling/v2.
    HorizontalPodAutoscalerV1,
    /// A custom resource's version other than its storage version (`None` conversion).
    CustomResource {
        /// The served `group/version`.
        served: Name,
        /// The storage version's `group/version`.
        storage: Name,
    },
}

const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";
const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";

impl Conversion {
    /// The version the objects are stored in.
    #[must_use]
    pub fn storage_version(&self) -> &str {
        match self {
            Conversion::HorizontalPodAutoscalerV1 => "v2",
            Conversion::CustomResource { storage, .. } => storage
                .rsplit_once('/')
                .map_or(storage.as_str(), |(_, v)| v),
        }
    }

    /// Whether every object of the served version has exactly one stored form, so a
    /// server-side apply configuration converts as it stands.
    #[must_use]
    pub fn is_lossless(&self) -> bool {
        matches!(self, Conversion::CustomResource { .. })
    }

    /// The stored form of an object sent in the served version.
    ///
    /// # Errors
    /// 400 when an annotation that carries a field of the storage version is not valid JSON.
    pub fn to_storage(&self, served: Value) -> Result<Value> {
        match self {
            Conversion::HorizontalPodAutoscalerV1 => hpa_v1_to_v2(served),
            Conversion::CustomResource { storage, .. } => Ok(with_api_version(served, storage)),
        }
    }

    /// The served form of a stored object; other objects (a `Status`) pass unchanged.
    #[must_use]
    pub fn to_served(&self, stored: &Value) -> Value {
        match self {
            Conversion::HorizontalPodAutoscalerV1 => {
                if stored.get("kind").and_then(Value::as_str) == Some("HorizontalPodAutoscaler") {
                    hpa_v2_to_v1(stored)
                } else {
                    stored.clone()
                }
            }
            Conversion::CustomResource { served, storage } => {
                let group = storage.split_once('/').map_or("", |(g, _)| g);
                let of_group = stored
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .and_then(|av| av.split_once('/'))
                    .is_some_and(|(g, _)| g == group);
                if of_group {
                    with_api_version(stored.clone(), served)
                } else {
                    stored.clone()
                }
            }
        }
    }
}

fn with_api_version(mut obj: Value, api_version: &str) -> Value {
    if let Some(o) = obj.as_object_mut() {
        o.insert("apiVersion".into(), Value::String(api_version.to_string()));
    }
    obj
}

fn get<'a>(v: &'a Value, pointer: &str) -> Option<&'a Value> {
    v.pointer(pointer).filter(|x| !x.is_null())
}

/// Inserts `value` at `key` unless it is absent.
fn put(map: &mut Map<String, Value>, key: &str, value: Option<&Value>) {
    if let Some(v) = value.filter(|v| !v.is_null()) {
        map.insert(key.into(), v.clone());
    }
}

fn is_cpu_resource(metric: &Value, field: &str) -> bool {
    metric.get("type").and_then(Value::as_str) == Some("Resource")
        && get(metric, "/resource/name").and_then(Value::as_str) == Some("cpu")
        && get(metric, &format!("/resource/{field}")).is_some()
}

/// A v2 `MetricSpec` in v1's shape (autoscaling/v1's `MetricSpec`, as the annotation holds it).
fn spec_v2_to_v1(m: &Value) -> Value {
    let kind = m.get("type").and_then(Value::as_str).unwrap_or_default();
    let mut source = Map::new();
    let target = |field: &str| get(m, &format!("/{}/target/{field}", field_of(kind)));
    match kind {
        "Object" => {
            put(&mut source, "target", get(m, "/object/describedObject"));
            put(&mut source, "metricName", get(m, "/object/metric/name"));
            put(&mut source, "selector", get(m, "/object/metric/selector"));
            put(&mut source, "targetValue", target("value"));
            put(&mut source, "averageValue", target("averageValue"));
        }
        "Pods" => {
            put(&mut source, "metricName", get(m, "/pods/metric/name"));
            put(&mut source, "selector", get(m, "/pods/metric/selector"));
            put(&mut source, "targetAverageValue", target("averageValue"));
        }
        "Resource" | "ContainerResource" => {
            let f = field_of(kind);
            put(&mut source, "name", get(m, &format!("/{f}/name")));
            put(
                &mut source,
                "targetAverageUtilization",
                target("averageUtilization"),
            );
            put(&mut source, "targetAverageValue", target("averageValue"));
            put(&mut source, "container", get(m, &format!("/{f}/container")));
        }
        "External" => {
            put(&mut source, "metricName", get(m, "/external/metric/name"));
            put(
                &mut source,
                "metricSelector",
                get(m, "/external/metric/selector"),
            );
            put(&mut source, "targetValue", target("value"));
            put(&mut source, "targetAverageValue", target("averageValue"));
        }
        _ => {}
    }
    json!({"type": kind, field_of(kind): source})
}

/// A v1-shaped `MetricSpec` (from the annotation) in v2's shape.
fn spec_v1_to_v2(m: &Value) -> Value {
    let kind = m.get("type").and_then(Value::as_str).unwrap_or_default();
    let f = field_of(kind);
    let at = |field: &str| get(m, &format!("/{f}/{field}"));
    let metric = |name: &str, selector: &str| {
        let mut metric = Map::new();
        put(&mut metric, "name", at(name));
        put(&mut metric, "selector", at(selector));
        Value::Object(metric)
    };
    let value_target = |value: &str, average: &str| match at(average) {
        Some(a) => json!({"type": "AverageValue", "averageValue": a}),
        None => json!({"type": "Value", "value": at(value)}),
    };
    let mut source = Map::new();
    match kind {
        "Object" => {
            put(&mut source, "describedObject", at("target"));
            source.insert("metric".into(), metric("metricName", "selector"));
            source.insert("target".into(), value_target("targetValue", "averageValue"));
        }
        "Pods" => {
            source.insert("metric".into(), metric("metricName", "selector"));
            source.insert(
                "target".into(),
                json!({"type": "AverageValue", "averageValue": at("targetAverageValue")}),
            );
        }
        "Resource" | "ContainerResource" => {
            put(&mut source, "name", at("name"));
            let target = match at("targetAverageUtilization") {
                Some(u) => json!({"type": "Utilization", "averageUtilization": u}),
                None => json!({"type": "AverageValue", "averageValue": at("targetAverageValue")}),
            };
            source.insert("target".into(), target);
            put(&mut source, "container", at("container"));
        }
        "External" => {
            source.insert("metric".into(), metric("metricName", "metricSelector"));
            source.insert(
                "target".into(),
                value_target("targetValue", "targetAverageValue"),
            );
        }
        _ => {}
    }
    json!({"type": kind, f: source})
}

/// A v2 `MetricStatus` in v1's shape.
fn status_v2_to_v1(m: &Value) -> Value {
    let kind = m.get("type").and_then(Value::as_str).unwrap_or_default();
    let f = field_of(kind);
    let at = |field: &str| get(m, &format!("/{f}/{field}"));
    let mut source = Map::new();
    match kind {
        "Object" => {
            put(&mut source, "target", at("describedObject"));
            put(&mut source, "metricName", at("metric/name"));
            put(&mut source, "selector", at("metric/selector"));
            put(&mut source, "currentValue", at("current/value"));
            put(&mut source, "averageValue", at("current/averageValue"));
        }
        "Pods" => {
            put(&mut source, "metricName", at("metric/name"));
            put(&mut source, "selector", at("metric/selector"));
            put(
                &mut source,
                "currentAverageValue",
                at("current/averageValue"),
            );
        }
        "Resource" | "ContainerResource" => {
            put(&mut source, "name", at("name"));
            put(
                &mut source,
                "currentAverageUtilization",
                at("current/averageUtilization"),
            );
            put(
                &mut source,
                "currentAverageValue",
                at("current/averageValue"),
            );
            put(&mut source, "container", at("container"));
        }
        "External" => {
            put(&mut source, "metricName", at("metric/name"));
            put(&mut source, "metricSelector", at("metric/selector"));
            put(&mut source, "currentValue", at("current/value"));
            put(
                &mut source,
                "currentAverageValue",
                at("current/averageValue"),
            );
        }
        _ => {}
    }
    json!({"type": kind, f: source})
}

/// A v1-shaped `MetricStatus` (from the annotation) in v2's shape.
fn status_v1_to_v2(m: &Value) -> Value {
    let kind = m.get("type").and_then(Value::as_str).unwrap_or_default();
    let f = field_of(kind);
    let at = |field: &str| get(m, &format!("/{f}/{field}"));
    let metric = |selector: &str| {
        let mut metric = Map::new();
        put(&mut metric, "name", at("metricName"));
        put(&mut metric, "selector", at(selector));
        Value::Object(metric)
    };
    let current = |pairs: &[(&str, &str)]| {
        let mut c = Map::new();
        for (to, from) in pairs {
            put(&mut c, to, at(from));
        }
        Value::Object(c)
    };
    let mut source = Map::new();
    match kind {
        "Object" => {
            put(&mut source, "describedObject", at("target"));
            source.insert("metric".into(), metric("selector"));
            source.insert(
                "current".into(),
                current(&[("value", "currentValue"), ("averageValue", "averageValue")]),
            );
        }
        "Pods" => {
            source.insert("metric".into(), metric("selector"));
            source.insert(
                "current".into(),
                current(&[("averageValue", "currentAverageValue")]),
            );
        }
        "Resource" | "ContainerResource" => {
            put(&mut source, "name", at("name"));
            source.insert(
                "current".into(),
                current(&[
                    ("averageUtilization", "currentAverageUtilization"),
                    ("averageValue", "currentAverageValue"),
                ]),
            );
            put(&mut source, "container", at("container"));
        }
        "External" => {
            source.insert("metric".into(), metric("metricSelector"));
            source.insert(
                "current".into(),
                current(&[
                    ("value", "currentValue"),
                    ("averageValue", "currentAverageValue"),
                ]),
            );
        }
        _ => {}
    }
    json!({"type": kind, f: source})
}

/// The source field of a metric type (`ContainerResource` -> `containerResource`).
fn field_of(kind: &str) -> &'static str {
    match kind {
        "Object" => "object",
        "Pods" => "pods",
        "Resource" => "resource",
        "ContainerResource" => "containerResource",
        "External" => "external",
        _ => "unknown",
    }
}

fn annotate(annotations: &mut Map<String, Value>, key: &str, value: &Value) {
    annotations.insert(key.into(), Value::String(value.to_string()));
}

/// An object's metadata, and its annotations apart (to add to or take from).
fn metadata_and_annotations(obj: &Value) -> (Value, Map<String, Value>) {
    let metadata = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let annotations = metadata
        .get("annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    (metadata, annotations)
}

fn hpa_v2_to_v1(v2: &Value) -> Value {
    let (mut metadata, mut annotations) = metadata_and_annotations(v2);
    let mut spec = Map::new();
    put(&mut spec, "scaleTargetRef", get(v2, "/spec/scaleTargetRef"));
    put(&mut spec, "minReplicas", get(v2, "/spec/minReplicas"));
    put(&mut spec, "maxReplicas", get(v2, "/spec/maxReplicas"));
    let metrics = get(v2, "/spec/metrics")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let cpu = metrics.iter().position(|m| {
        is_cpu_resource(m, "target")
            && get(m, "/resource/target/type").and_then(Value::as_str) == Some("Utilization")
    });
    if let Some(i) = cpu {
        put(
            &mut spec,
            "targetCPUUtilizationPercentage",
            get(&metrics[i], "/resource/target/averageUtilization"),
        );
    }
    let others: Vec<Value> = metrics
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != cpu)
        .map(|(_, m)| spec_v2_to_v1(m))
        .collect();
    if !others.is_empty() {
        annotate(&mut annotations, METRICS, &Value::Array(others));
    }
    if let Some(behavior) = get(v2, "/spec/behavior") {
        annotate(&mut annotations, BEHAVIOR, behavior);
    }
    let mut status = Map::new();
    for key in [
        "observedGeneration",
        "lastScaleTime",
        "currentReplicas",
        "desiredReplicas",
    ] {
        put(&mut status, key, get(v2, &format!("/status/{key}")));
    }
    if let Some(st) = v2.get("status").filter(|s| s.is_object()) {
        // desiredReplicas is a value (not a pointer) in v1: always shown.
        status.entry("desiredReplicas").or_insert(json!(0));
        let current = st
            .get("currentMetrics")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let current_cpu = current
            .iter()
            .position(|m| is_cpu_resource(m, "current/averageUtilization"));
        if let Some(i) = current_cpu {
            put(
                &mut status,
                "currentCPUUtilizationPercentage",
                get(&current[i], "/resource/current/averageUtilization"),
            );
        }
        let others: Vec<Value> = current
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != current_cpu)
            .map(|(_, m)| status_v2_to_v1(m))
            .collect();
        if !others.is_empty() {
            annotate(&mut annotations, CURRENT_METRICS, &Value::Array(others));
        }
        if let Some(conditions) = st
            .get("conditions")
            .filter(|c| c.as_array().is_some_and(|a| !a.is_empty()))
        {
            annotate(&mut annotations, CONDITIONS, conditions);
        }
    }
    if !annotations.is_empty() {
        metadata["annotations"] = Value::Object(annotations);
    }
    let mut out = json!({
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata,
        "spec": spec,
    });
    if v2.get("status").is_some_and(Value::is_object) {
        out["status"] = Value::Object(status);
    }
    out
}

/// The value of an annotation that carries a v2 field, parsed, and removed from `annotations`.
fn take_annotation(annotations: &mut Map<String, Value>, key: &str) -> Result<Option<Value>> {
    let Some(raw) = annotations.remove(key) else {
        return Ok(None);
    };
    let text = raw.as_str().unwrap_or_default();
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| Error::BadRequest(format!("metadata.annotations[{key}]: not valid JSON: {e}")))
}

fn hpa_v1_to_v2(v1: Value) -> Result<Value> {
    let (mut metadata, mut annotations) = metadata_and_annotations(&v1);
    let mut spec = Map::new();
    put(
        &mut spec,
        "scaleTargetRef",
        get(&v1, "/spec/scaleTargetRef"),
    );
    put(&mut spec, "minReplicas", get(&v1, "/spec/minReplicas"));
    put(&mut spec, "maxReplicas", get(&v1, "/spec/maxReplicas"));
    let mut metrics: Vec<Value> = take_annotation(&mut annotations, METRICS)?
        .as_ref()
        .and_then(Value::as_array)
        .map(|ms| ms.iter().map(spec_v1_to_v2).collect())
        .unwrap_or_default();
    if let Some(cpu) = get(&v1, "/spec/targetCPUUtilizationPercentage") {
        metrics.push(json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": cpu}}}));
    }
    if !metrics.is_empty() {
        spec.insert("metrics".into(), Value::Array(metrics));
    }
    if let Some(behavior) = take_annotation(&mut annotations, BEHAVIOR)? {
        spec.insert("behavior".into(), behavior);
    }
    let mut current_metrics: Vec<Value> = take_annotation(&mut annotations, CURRENT_METRICS)?
        .as_ref()
        .and_then(Value::as_array)
        .map(|ms| ms.iter().map(status_v1_to_v2).collect())
        .unwrap_or_default();
    let conditions = take_annotation(&mut annotations, CONDITIONS)?;
    let mut status = Map::new();
    if let Some(st) = v1.get("status").filter(|s| s.is_object()) {
        for key in [
            "observedGeneration",
            "lastScaleTime",
            "currentReplicas",
            "desiredReplicas",
        ] {
            put(&mut status, key, st.get(key));
        }
        if let Some(cpu) = st
            .get("currentCPUUtilizationPercentage")
            .filter(|v| !v.is_null())
        {
            current_metrics.push(json!({"type": "Resource", "resource": {"name": "cpu",
                "current": {"averageUtilization": cpu}}}));
        }
    }
    if !current_metrics.is_empty() {
        status.insert("currentMetrics".into(), Value::Array(current_metrics));
    }
    put(&mut status, "conditions", conditions.as_ref());
    if annotations.is_empty() {
        if let Some(m) = metadata.as_object_mut() {
            m.remove("annotations");
        }
    } else {
        metadata["annotations"] = Value::Object(annotations);
    }
    let mut out = json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata,
        "spec": spec,
    });
    if !status.is_empty() {
        out["status"] = Value::Object(status);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2() -> Value {
        json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "7"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 5,
                "metrics": [
                    {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}},
                    {"type": "External", "external": {"metric": {"name": "queue", "selector": {"matchLabels": {"q": "a"}}},
                                                      "target": {"type": "Value", "value": "30"}}},
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}},
            },
            "status": {
                "currentReplicas": 2, "desiredReplicas": 3,
                "currentMetrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 55, "averageValue": "110m"}}},
                    {"type": "Pods", "pods": {"metric": {"name": "qps"}, "current": {"averageValue": "8"}}},
                ],
                "conditions": [{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"}],
            },
        })
    }

    #[test]
    fn v1_shows_cpu_utilization_and_carries_the_rest_in_annotations() {
        let v1 = Conversion::HorizontalPodAutoscalerV1.to_served(&v2());
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
        assert_eq!(v1["spec"]["maxReplicas"], 5);
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 55);
        assert_eq!(v1["status"]["desiredReplicas"], 3);
        let annotation = |key: &str| -> Value {
            serde_json::from_str(v1["metadata"]["annotations"][key].as_str().unwrap()).unwrap()
        };
        assert_eq!(
            annotation(METRICS),
            json!([{"type": "Pods", "pods": {"metricName": "qps", "targetAverageValue": "10"}},
                   {"type": "External", "external": {"metricName": "queue",
                       "metricSelector": {"matchLabels": {"q": "a"}}, "targetValue": "30"}}])
        );
        assert_eq!(
            annotation(CURRENT_METRICS),
            json!([{"type": "Pods", "pods": {"metricName": "qps", "currentAverageValue": "8"}}])
        );
        assert_eq!(
            annotation(BEHAVIOR)["scaleDown"]["stabilizationWindowSeconds"],
            60
        );
        assert_eq!(annotation(CONDITIONS)[0]["type"], "AbleToScale");
    }

    #[test]
    fn v2_read_and_written_back_through_v1_loses_nothing() {
        let conversion = Conversion::HorizontalPodAutoscalerV1;
        let back = conversion.to_storage(conversion.to_served(&v2())).unwrap();
        let want = v2();
        assert_eq!(
            back["metadata"], want["metadata"],
            "the carrying annotations are removed again"
        );
        assert_eq!(back["spec"]["behavior"], want["spec"]["behavior"]);
        // v1's own CPU metric comes after the annotation's, as upstream orders them.
        let metrics = back["spec"]["metrics"].as_array().unwrap();
        assert_eq!(metrics.len(), 3);
        assert_eq!(metrics[0], want["spec"]["metrics"][0]);
        assert_eq!(metrics[1], want["spec"]["metrics"][2]);
        assert_eq!(metrics[2], want["spec"]["metrics"][1]);
        assert_eq!(back["status"]["conditions"], want["status"]["conditions"]);
        assert_eq!(
            back["status"]["currentMetrics"].as_array().unwrap().len(),
            2
        );
    }

    #[test]
    fn a_plain_v1_object_becomes_a_cpu_metric() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
                     "maxReplicas": 3, "targetCPUUtilizationPercentage": 50}});
        let v2 = Conversion::HorizontalPodAutoscalerV1
            .to_storage(v1)
            .unwrap();
        assert_eq!(
            v2["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 50}}}])
        );
        assert_eq!(v2["apiVersion"], "autoscaling/v2");
        assert!(v2.get("status").is_none());
    }

    #[test]
    fn custom_resource_versions_differ_in_their_api_version_only() {
        let conversion = Conversion::CustomResource {
            served: "example.com/v1beta1".into(),
            storage: "example.com/v1".into(),
        };
        assert_eq!(conversion.storage_version(), "v1");
        let stored = conversion
            .to_storage(
                json!({"apiVersion": "example.com/v1beta1", "kind": "Widget", "spec": {"a": 1}}),
            )
            .unwrap();
        assert_eq!(
            stored,
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"a": 1}})
        );
        assert_eq!(
            conversion.to_served(&stored)["apiVersion"],
            "example.com/v1beta1"
        );
        // A Status, or a table row's partial metadata, is not the resource's.
        let status = json!({"apiVersion": "v1", "kind": "Status"});
        assert_eq!(conversion.to_served(&status), status);
    }

    #[test]
    fn a_carrying_annotation_that_is_not_json_is_a_bad_request() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "annotations": {METRICS: "not json"}},
            "spec": {"maxReplicas": 3}});
        let e = Conversion::HorizontalPodAutoscalerV1
            .to_storage(v1)
            .unwrap_err();
        assert_eq!(e.code(), 400);
        assert!(e.to_string().contains(METRICS), "{e}");
    }
}
