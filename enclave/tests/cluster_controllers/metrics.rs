//! `/metrics`: who may read it and what it holds.

use crate::common::{Enclave, eventually};
use crate::support::{Client, create, get};

fn scrape(e: &Enclave) -> prometheus_parse::Scrape {
    let (code, body) = e.curl_admin("/metrics", &[]);
    assert_eq!(code, 200, "{body}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap()
}

fn value(s: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .filter(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .reduce(f64::max)
}

#[test]
fn metrics_are_served_in_prometheus_text_to_the_admin_and_monitoring() {
    let e = Enclave::start();
    // Anonymous: 401, as any non-public path.
    let (code, _) = e.curl("/metrics", &[]);
    assert_eq!(code, 401);
    get(&e, "/api/v1/namespaces/default/configmaps");
    let _ = Client::of(&e).curl("/api/v1/namespaces/default/pods/nope", &[]);
    // No node exists, so the scheduler's attempt at this pod is `unschedulable`.
    create(
        &e,
        "/api/v1/namespaces/default/pods",
        &serde_json::json!({"metadata": {"name": "unplaced"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
    );
    let unschedulable = [
        ("profile", "default-scheduler"),
        ("result", "unschedulable"),
    ];
    let s = eventually("controller and scheduler metrics", || {
        let s = scrape(&e);
        let controllers = value(&s, "workqueue_adds_total", &[("name", "serviceaccount")]);
        let scheduler = value(&s, "scheduler_schedule_attempts_total", &unschedulable);
        (controllers >= Some(1.0) && scheduler >= Some(1.0)).then_some(s)
    });
    assert!(
        s.samples
            .iter()
            .any(|x| x.metric == "scheduler_pending_pods"
                && x.labels.get("queue") == Some("unschedulable")),
        "scheduler_pending_pods missing"
    );
    let attempt = s.samples.iter().find(|x| {
        x.metric == "scheduler_scheduling_attempt_duration_seconds"
            && x.labels.get("result") == Some("unschedulable")
    });
    assert!(
        matches!(
            attempt.map(|h| &h.value),
            Some(prometheus_parse::Value::Histogram(_))
        ),
        "{attempt:?}"
    );
    let list = [
        ("verb", "LIST"),
        ("resource", "configmaps"),
        ("scope", "namespace"),
        ("code", "200"),
        ("component", "apiserver"),
        ("version", "v1"),
        ("group", ""),
    ];
    assert!(value(&s, "apiserver_request_total", &list).unwrap() >= 1.0);
    let missing = [
        ("verb", "GET"),
        ("resource", "pods"),
        ("scope", "resource"),
        ("code", "404"),
    ];
    assert!(value(&s, "apiserver_request_total", &missing).unwrap() >= 1.0);
    let hist = s.samples.iter().find(|x| {
        x.metric == "apiserver_request_duration_seconds"
            && x.labels.get("resource") == Some("configmaps")
    });
    assert!(
        matches!(
            hist.map(|h| &h.value),
            Some(prometheus_parse::Value::Histogram(_))
        ),
        "{hist:?}"
    );
    for m in [
        "workqueue_depth",
        "workqueue_queue_duration_seconds",
        "workqueue_work_duration_seconds",
        "workqueue_retries_total",
    ] {
        assert!(s.samples.iter().any(|x| x.metric == m), "{m} missing");
    }
    assert!(
        value(
            &s,
            "daas_store_writes_total",
            &[("operation", "put"), ("outcome", "committed")]
        )
        .unwrap()
            >= 1.0
    );
    assert!(value(&s, "daas_store_revision", &[]).unwrap() >= 1.0);
    // upstream's object counts: core resources by name, others as resource.group.
    let objects =
        |resource: &str| value(&s, "apiserver_storage_objects", &[("resource", resource)]);
    assert_eq!(objects("pods"), Some(1.0));
    assert_eq!(objects("namespaces"), Some(4.0));
    assert_eq!(objects("priorityclasses.scheduling.k8s.io"), Some(2.0));
    assert_eq!(objects("deployments.apps"), Some(0.0));
    // The counters' TYPE lines name their series, as Prometheus's text format does.
    let (_, body) = e.curl_admin("/metrics", &[]);
    assert!(
        body.contains("# TYPE apiserver_request_total counter"),
        "{body}"
    );
    assert!(!body.contains("# EOF"));
    // A monitoring identity (upstream's `system:monitoring` group, bound to the role of the
    // same name) reads it; the same user outside the group is refused.
    let as_user = |groups: &[&str]| {
        let mut args = vec!["-H".to_string(), "Impersonate-User: prometheus".to_string()];
        for g in groups {
            args.push("-H".into());
            args.push(format!("Impersonate-Group: {g}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        e.curl_admin("/metrics", &args)
    };
    let (code, body) = as_user(&["system:monitoring"]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("apiserver_request_total"), "{body}");
    let (code, body) = as_user(&[]);
    assert_eq!(code, 403, "{body}");
    // OpenMetrics on request.
    let (code, om) = e.curl_admin(
        "/metrics",
        &["-H", "Accept: application/openmetrics-text;version=1.0.0"],
    );
    assert_eq!(code, 200);
    assert!(om.trim_end().ends_with("# EOF"), "{om}");
}
