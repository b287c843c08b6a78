//! `/metrics`: who may read it and what it holds.

use crate::common::{Enclave, eventually};
use crate::support::{Client, get};

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
fn metrics_are_served_in_prometheus_text_to_the_admin() {
    let e = Enclave::start();
    // Anonymous: 401, as any non-public path.
    let (code, _) = e.curl("/metrics", &[]);
    assert_eq!(code, 401);
    get(&e, "/api/v1/namespaces/default/configmaps");
    let _ = Client::of(&e).curl("/api/v1/namespaces/default/pods/nope", &[]);
    let s = eventually("controller metrics", || {
        let s = scrape(&e);
        value(&s, "workqueue_adds_total", &[("name", "serviceaccount")])
            .filter(|v| *v >= 1.0)
            .map(|_| s)
    });
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
    // The counters' TYPE lines name their series, as Prometheus's text format does.
    let (_, body) = e.curl_admin("/metrics", &[]);
    assert!(
        body.contains("# TYPE apiserver_request_total counter"),
        "{body}"
    );
    assert!(!body.contains("# EOF"));
    // OpenMetrics on request.
    let (code, om) = e.curl_admin(
        "/metrics",
        &["-H", "Accept: application/openmetrics-text;version=1.0.0"],
    );
    assert_eq!(code, 200);
    assert!(om.trim_end().ends_with("# EOF"), "{om}");
}
