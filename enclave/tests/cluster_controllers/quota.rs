//! ResourceQuota status and admission, and LimitRange defaults and limits.

use serde_json::{Value, json};

use crate::common::{Enclave, eventually};
use crate::support::{call, create, delete, get, merge};

const NS: &str = "quota";

fn quota_used(e: &Enclave, want: impl Fn(&Value) -> bool) -> Value {
    eventually("quota status", || {
        let q = get(e, &format!("/api/v1/namespaces/{NS}/resourcequotas/q"))?;
        want(&q["status"]["used"]).then_some(q["status"].clone())
    })
}

fn pod(name: &str, resources: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9", "resources": resources}]}})
}

fn post_pod(e: &Enclave, p: &Value) -> (u16, Value) {
    call(
        e,
        "POST",
        &format!("/api/v1/namespaces/{NS}/pods"),
        "application/json",
        p,
    )
}

#[test]
fn quota_counts_usage_and_refuses_what_exceeds_it() {
    let e = Enclave::start();
    create(&e, "/api/v1/namespaces", &json!({"metadata": {"name": NS}}));
    eventually("the root CA config map", || {
        get(
            &e,
            &format!("/api/v1/namespaces/{NS}/configmaps/kube-root-ca.crt"),
        )
    });
    create(
        &e,
        &format!("/api/v1/namespaces/{NS}/resourcequotas"),
        &json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "3", "requests.cpu": "1", "limits.memory": "1Gi",
            "configmaps": "2", "count/deployments.apps": "1"}}}),
    );
    let st = quota_used(&e, |u| u["pods"] == "0");
    assert_eq!(
        st["hard"],
        json!({"configmaps": "2", "count/deployments.apps": "1", "limits.memory": "1Gi", "pods": "3", "requests.cpu": "1"})
    );
    // kube-root-ca.crt counts.
    assert_eq!(
        st["used"],
        json!({"configmaps": "1", "count/deployments.apps": "0", "limits.memory": "0", "pods": "0", "requests.cpu": "0"})
    );

    // A quota on cpu and memory needs every container to say so.
    let (code, body) = post_pod(&e, &pod("bare", json!({})));
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "pods \"bare\" is forbidden: failed quota: q: must specify limits.memory for: c; requests.cpu for: c"
    );

    let sized = json!({"requests": {"cpu": "400m"}, "limits": {"memory": "256Mi"}});
    for p in ["a", "b"] {
        let (code, body) = post_pod(&e, &pod(p, sized.clone()));
        assert_eq!(code, 201, "{body}");
    }
    let (code, body) = post_pod(&e, &pod("c", sized.clone()));
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "pods \"c\" is forbidden: exceeded quota: q, requested: requests.cpu=400m, used: requests.cpu=800m, limited: requests.cpu=1"
    );
    assert_eq!(body["reason"], "Forbidden");
    assert_eq!(body["details"], json!({"name": "c", "kind": "pods"}));
    let st = quota_used(&e, |u| u["pods"] == "2");
    assert_eq!(st["used"]["requests.cpu"], "800m");
    assert_eq!(st["used"]["limits.memory"], "512Mi");

    // A generated name is reported by its prefix, as upstream.
    let mut generated = pod(
        "",
        json!({"requests": {"cpu": "300m"}, "limits": {"memory": "1Gi"}}),
    );
    generated["metadata"] = json!({"generateName": "web-"});
    let (code, body) = post_pod(&e, &generated);
    assert_eq!(code, 403);
    assert!(body["message"].as_str().unwrap().starts_with("pods \"web-\" is forbidden: exceeded quota: q, requested: limits.memory=1Gi,requests.cpu=300m, used: limits.memory=512Mi,requests.cpu=800m, limited: limits.memory=1Gi,requests.cpu=1"), "{body}");

    // Object counts.
    create(
        &e,
        &format!("/api/v1/namespaces/{NS}/configmaps"),
        &json!({"metadata": {"name": "one"}}),
    );
    let (code, body) = call(
        &e,
        "POST",
        &format!("/api/v1/namespaces/{NS}/configmaps"),
        "application/json",
        &json!({"metadata": {"name": "two"}}),
    );
    assert_eq!(
        (code, body["message"].as_str()),
        (
            403,
            Some(
                "configmaps \"two\" is forbidden: exceeded quota: q, requested: configmaps=1, used: configmaps=2, limited: configmaps=2"
            )
        )
    );
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d1"}, "spec": {"replicas": 0,
        "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    create(
        &e,
        &format!("/apis/apps/v1/namespaces/{NS}/deployments"),
        &d,
    );
    let mut d2 = d.clone();
    d2["metadata"]["name"] = json!("d2");
    let (code, body) = call(
        &e,
        "POST",
        &format!("/apis/apps/v1/namespaces/{NS}/deployments"),
        "application/json",
        &d2,
    );
    assert_eq!(
        (code, body["message"].as_str()),
        (
            403,
            Some(
                "deployments.apps \"d2\" is forbidden: exceeded quota: q, requested: count/deployments.apps=1, used: count/deployments.apps=1, limited: count/deployments.apps=1"
            )
        )
    );

    // Deleting releases; a finished pod does not count.
    delete(&e, &format!("/api/v1/namespaces/{NS}/pods/a"));
    merge(
        &e,
        &format!("/api/v1/namespaces/{NS}/pods/b/status"),
        json!({"status": {"phase": "Succeeded"}}),
    );
    let st = quota_used(&e, |u| u["pods"] == "0");
    assert_eq!(st["used"]["requests.cpu"], "0");

    // Concurrent creates cannot both take the last unit.
    merge(
        &e,
        &format!("/api/v1/namespaces/{NS}/resourcequotas/q"),
        json!({"spec": {"hard": {"pods": "2", "requests.cpu": "10", "limits.memory": "10Gi"}}}),
    );
    quota_used(&e, |u| u["pods"] == "0");
    eventually("the new hard limit", || {
        let q = get(&e, &format!("/api/v1/namespaces/{NS}/resourcequotas/q"))?;
        (q["status"]["hard"]["pods"] == "2").then_some(())
    });
    let client = crate::support::Client::of(&e);
    let handles: Vec<_> = (0..5)
        .map(|i| {
            let c = client.clone();
            std::thread::spawn(move || {
                let body = pod(
                    &format!("race{i}"),
                    json!({"requests": {"cpu": "100m"}, "limits": {"memory": "1Mi"}}),
                )
                .to_string();
                c.curl(
                    &format!("/api/v1/namespaces/{NS}/pods"),
                    &[
                        "-X",
                        "POST",
                        "-H",
                        "Content-Type: application/json",
                        "--data-binary",
                        &body,
                    ],
                )
                .0
            })
        })
        .collect();
    let codes: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(codes.iter().filter(|c| **c == 201).count(), 2, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 403).count(), 3, "{codes:?}");
}

#[test]
fn scoped_quota_counts_only_the_pods_its_scopes_match() {
    let e = Enclave::start();
    create(&e, "/api/v1/namespaces", &json!({"metadata": {"name": NS}}));
    create(
        &e,
        &format!("/api/v1/namespaces/{NS}/resourcequotas"),
        &json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "1"}, "scopes": ["BestEffort"]}}),
    );
    quota_used(&e, |u| u["pods"] == "0");
    assert_eq!(post_pod(&e, &pod("be1", json!({}))).0, 201);
    let (code, body) = post_pod(&e, &pod("be2", json!({})));
    assert_eq!(
        (code, body["message"].as_str()),
        (
            403,
            Some(
                "pods \"be2\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1"
            )
        )
    );
    // Not BestEffort: outside the quota's scope.
    assert_eq!(
        post_pod(&e, &pod("burst", json!({"requests": {"cpu": "1"}}))).0,
        201
    );
    quota_used(&e, |u| u["pods"] == "1");
}

#[test]
fn limit_ranges_default_and_bound_containers() {
    let e = Enclave::start();
    create(&e, "/api/v1/namespaces", &json!({"metadata": {"name": NS}}));
    let lr = create(
        &e,
        &format!("/api/v1/namespaces/{NS}/limitranges"),
        &json!({"metadata": {"name": "lr"}, "spec": {"limits": [
            {"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"}, "defaultRequest": {"cpu": "100m"},
             "max": {"cpu": "1"}, "min": {"memory": "64Mi"}, "maxLimitRequestRatio": {"cpu": "5"}},
            {"type": "Pod", "max": {"memory": "1Gi"}}]}}),
    );
    // upstream's LimitRange defaulting: defaultRequest from default.
    assert_eq!(
        lr["spec"]["limits"][0]["defaultRequest"],
        json!({"cpu": "100m", "memory": "256Mi"})
    );

    let (code, p) = post_pod(&e, &pod("d", json!({})));
    assert_eq!(code, 201, "{p}");
    assert_eq!(
        p["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "256Mi"}})
    );
    assert_eq!(
        p["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container c; cpu, memory limit for container c"
    );
    assert_eq!(p["status"]["qosClass"], "Burstable");

    // A limit without a request requests the limit (pod defaulting), and
    // equal requests and limits of cpu and memory are Guaranteed.
    let (code, g) = post_pod(
        &e,
        &pod("g", json!({"limits": {"cpu": "500m", "memory": "128Mi"}})),
    );
    assert_eq!(code, 201, "{g}");
    assert_eq!(
        g["spec"]["containers"][0]["resources"]["requests"],
        json!({"cpu": "500m", "memory": "128Mi"})
    );
    assert_eq!(g["status"]["qosClass"], "Guaranteed");

    for (name, resources, message) in [
        (
            "big",
            json!({"limits": {"cpu": "2"}}),
            "pods \"big\" is forbidden: maximum cpu usage per Container is 1, but limit is 2",
        ),
        (
            "small",
            json!({"requests": {"memory": "32Mi"}, "limits": {"memory": "32Mi"}}),
            "pods \"small\" is forbidden: minimum memory usage per Container is 64Mi, but request is 32Mi",
        ),
        (
            "skewed",
            json!({"requests": {"cpu": "100m"}, "limits": {"cpu": "1"}}),
            "pods \"skewed\" is forbidden: cpu max limit to request ratio per Container is 5, but provided ratio is 10.000000",
        ),
        (
            "fat",
            json!({"limits": {"memory": "2Gi"}}),
            "pods \"fat\" is forbidden: maximum memory usage per Pod is 1Gi, but limit is 2Gi",
        ),
    ] {
        let (code, body) = post_pod(&e, &pod(name, resources));
        assert_eq!(
            (code, body["message"].as_str()),
            (403, Some(message)),
            "{name}: {body}"
        );
    }
}
