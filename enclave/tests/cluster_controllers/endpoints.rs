//! The endpoints, endpointslice and mirroring controllers.

use serde_json::{Value, json};

use crate::common::{Enclave, eventually};
use crate::support::{create, delete, get, items, merge, name, pod, run_pod};

const NS: &str = "default";

fn slices_of(e: &Enclave, svc: &str) -> Vec<Value> {
    let mut v = items(
        e,
        &format!(
            "/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3D{svc}"
        ),
    );
    v.sort_by_key(|s| s["endpoints"].as_array().map_or(0, Vec::len));
    v
}

fn endpoint<'a>(slices: &'a [Value], ip: &str) -> Option<&'a Value> {
    slices
        .iter()
        .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
        .find(|e| e["addresses"][0] == ip)
}

fn web_pod(name: &str, port: i64) -> Value {
    let mut p = pod(name, "n1", json!({"app": "web"}), json!({}));
    p["spec"]["containers"][0]["ports"] = json!([{"name": "http", "containerPort": port}]);
    p
}

#[test]
fn endpoints_and_slices_follow_pod_readiness_ports_and_termination() {
    let e = Enclave::start();
    create(
        &e,
        "/api/v1/nodes",
        &json!({"metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "z1"}}}),
    );
    let pods = format!("/api/v1/namespaces/{NS}/pods");
    create(&e, &pods, &web_pod("a", 8080));
    create(&e, &pods, &web_pod("b", 8080));
    create(&e, &pods, &web_pod("c", 9090));
    create(
        &e,
        &pods,
        &pod("other", "n1", json!({"app": "other"}), json!({})),
    );
    run_pod(&e, NS, "a", "10.42.0.2");
    run_pod(&e, NS, "c", "10.42.0.4");
    run_pod(&e, NS, "other", "10.42.0.5");
    // b has an IP but is not ready.
    merge(
        &e,
        &format!("{pods}/b/status"),
        json!({"status": {"phase": "Running", "podIP": "10.42.0.3",
        "conditions": [{"type": "Ready", "status": "False"}]}}),
    );
    create(
        &e,
        &format!("/api/v1/namespaces/{NS}/services"),
        &json!({"metadata": {"name": "web", "labels": {"team": "x"}}, "spec": {"selector": {"app": "web"},
            "ports": [{"name": "h", "port": 80, "targetPort": "http"}]}}),
    );
    let ep = eventually("endpoints of web", || {
        let ep = get(&e, &format!("/api/v1/namespaces/{NS}/endpoints/web"))?;
        (ep["subsets"].as_array().map_or(0, Vec::len) == 2).then_some(ep)
    });
    assert_eq!(ep["metadata"]["labels"], json!({"team": "x"}));
    let subsets = ep["subsets"].as_array().unwrap();
    let s8080 = subsets
        .iter()
        .find(|s| s["ports"][0]["port"] == 8080)
        .unwrap();
    assert_eq!(s8080["addresses"][0]["ip"], "10.42.0.2");
    assert_eq!(s8080["addresses"][0]["nodeName"], "n1");
    assert_eq!(s8080["addresses"][0]["targetRef"]["name"], "a");
    assert_eq!(s8080["notReadyAddresses"][0]["ip"], "10.42.0.3");
    assert_eq!(
        s8080["ports"],
        json!([{"name": "h", "port": 8080, "protocol": "TCP"}])
    );
    let s9090 = subsets
        .iter()
        .find(|s| s["ports"][0]["port"] == 9090)
        .unwrap();
    assert_eq!(s9090["addresses"][0]["ip"], "10.42.0.4");

    let slices = eventually("two slices of web (one per resolved port)", || {
        let s = slices_of(&e, "web");
        (s.len() == 2
            && s.iter()
                .map(|s| s["endpoints"].as_array().map_or(0, Vec::len))
                .sum::<usize>()
                == 3)
            .then_some(s)
    });
    for s in &slices {
        let labels = &s["metadata"]["labels"];
        assert_eq!(
            labels["endpointslice.kubernetes.io/managed-by"],
            "endpointslice-controller.k8s.io"
        );
        assert_eq!(labels["kubernetes.io/service-name"], "web");
        assert_eq!(labels["team"], "x");
        assert_eq!(s["metadata"]["ownerReferences"][0]["kind"], "Service");
        assert!(name(s).starts_with("web-"));
        assert_eq!(s["addressType"], "IPv4");
    }
    let a = endpoint(&slices, "10.42.0.2").unwrap();
    assert_eq!(
        a["conditions"],
        json!({"ready": true, "serving": true, "terminating": false})
    );
    assert_eq!(a["nodeName"], "n1");
    assert_eq!(a["zone"], "z1");
    assert_eq!(a["targetRef"]["kind"], "Pod");
    let b = endpoint(&slices, "10.42.0.3").unwrap();
    assert_eq!(
        b["conditions"],
        json!({"ready": false, "serving": false, "terminating": false})
    );
    assert!(endpoint(&slices, "10.42.0.5").is_none(), "not selected");

    // A terminating pod (held by a finalizer) leaves the Endpoints but stays
    // in its slice as serving and terminating, not ready.
    merge(
        &e,
        &format!("{pods}/a"),
        json!({"metadata": {"finalizers": ["example.com/hold"]}}),
    );
    delete(&e, &format!("{pods}/a"));
    eventually("a terminating in its slice", || {
        let s = slices_of(&e, "web");
        let a = endpoint(&s, "10.42.0.2")?;
        (a["conditions"] == json!({"ready": false, "serving": true, "terminating": true}))
            .then_some(())
    });
    eventually("a out of the endpoints", || {
        let ep = get(&e, &format!("/api/v1/namespaces/{NS}/endpoints/web"))?;
        (!ep.to_string().contains("10.42.0.2")).then_some(())
    });
    merge(
        &e,
        &format!("{pods}/a"),
        json!({"metadata": {"finalizers": null}}),
    );

    // publishNotReadyAddresses: every pod is ready for the service.
    merge(
        &e,
        &format!("/api/v1/namespaces/{NS}/services/web"),
        json!({"spec": {"publishNotReadyAddresses": true}}),
    );
    eventually("b ready by publishNotReadyAddresses", || {
        let s = slices_of(&e, "web");
        let b = endpoint(&s, "10.42.0.3")?;
        (b["conditions"]["ready"] == true && b["conditions"]["serving"] == false).then_some(())
    });
    eventually("b in the endpoints' addresses", || {
        let ep = get(&e, &format!("/api/v1/namespaces/{NS}/endpoints/web"))?;
        ep["subsets"]
            .as_array()?
            .iter()
            .any(|s| s["addresses"].to_string().contains("10.42.0.3"))
            .then_some(())
    });

    // A pod relabelled out of the selector leaves.
    merge(
        &e,
        &format!("{pods}/c"),
        json!({"metadata": {"labels": {"app": "gone"}}}),
    );
    eventually("c gone from slices", || {
        let s = slices_of(&e, "web");
        (s.len() == 1 && endpoint(&s, "10.42.0.4").is_none()).then_some(())
    });

    // Deleting the service takes its endpoints and slices.
    delete(&e, &format!("/api/v1/namespaces/{NS}/services/web"));
    eventually("endpoints gone", || {
        get(&e, &format!("/api/v1/namespaces/{NS}/endpoints/web"))
            .is_none()
            .then_some(())
    });
    eventually("slices gone", || {
        slices_of(&e, "web").is_empty().then_some(())
    });
}

#[test]
fn selectorless_services_are_mirrored_and_slices_hold_at_most_100() {
    let e = Enclave::start();
    create(
        &e,
        &format!("/api/v1/namespaces/{NS}/services"),
        &json!({"metadata": {"name": "ext"}, "spec": {"ports": [{"name": "db", "port": 5432}]}}),
    );
    create(
        &e,
        &format!("/api/v1/namespaces/{NS}/endpoints"),
        &json!({"metadata": {"name": "ext", "labels": {"mine": "yes"}}, "subsets": [{
            "addresses": [{"ip": "192.0.2.10"}], "notReadyAddresses": [{"ip": "192.0.2.11"}],
            "ports": [{"name": "db", "port": 5432, "protocol": "TCP"}]}]}),
    );
    let mirrored = eventually("the mirrored slice", || {
        let s = slices_of(&e, "ext");
        (s.len() == 1).then(|| s[0].clone())
    });
    assert_eq!(
        mirrored["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslicemirroring-controller.k8s.io"
    );
    assert_eq!(mirrored["metadata"]["labels"]["mine"], "yes");
    assert_eq!(
        mirrored["metadata"]["ownerReferences"][0]["kind"],
        "Endpoints"
    );
    assert_eq!(
        mirrored["ports"],
        json!([{"name": "db", "port": 5432, "protocol": "TCP"}])
    );
    let eps = mirrored["endpoints"].as_array().unwrap();
    assert_eq!(eps.len(), 2);
    assert!(eps.contains(&json!({"addresses": ["192.0.2.10"], "conditions": {"ready": true}})));
    assert!(eps.contains(&json!({"addresses": ["192.0.2.11"], "conditions": {"ready": false}})));
    // The endpoints controller leaves the user's Endpoints alone.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let ep = get(&e, &format!("/api/v1/namespaces/{NS}/endpoints/ext")).unwrap();
    assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], "192.0.2.10");

    // 150 pods: two slices, of at most 100.
    create(&e, "/api/v1/nodes", &json!({"metadata": {"name": "n1"}}));
    create(
        &e,
        &format!("/api/v1/namespaces/{NS}/services"),
        &json!({"metadata": {"name": "many"}, "spec": {"selector": {"app": "many"}, "ports": [{"port": 80}]}}),
    );
    let pods = format!("/api/v1/namespaces/{NS}/pods");
    for i in 0..150 {
        let p = format!("m{i}");
        create(&e, &pods, &pod(&p, "n1", json!({"app": "many"}), json!({})));
        run_pod(&e, NS, &p, &format!("10.42.{}.{}", i / 100, i % 100 + 2));
    }
    let sizes = eventually("150 endpoints in two slices", || {
        let s = slices_of(&e, "many");
        let sizes: Vec<usize> = s
            .iter()
            .map(|s| s["endpoints"].as_array().map_or(0, Vec::len))
            .collect();
        (sizes.iter().sum::<usize>() == 150).then_some(sizes)
    });
    assert_eq!(sizes, [50, 100]);
    // With no pods left, one empty placeholder slice remains.
    // Forced (no kubelet runs them to finish a graceful deletion).
    for i in 0..150 {
        delete(&e, &format!("{pods}/m{i}?gracePeriodSeconds=0"));
    }
    let placeholder = eventually("the placeholder slice", || {
        let s = slices_of(&e, "many");
        (s.len() == 1 && s[0]["endpoints"].as_array().is_none_or(Vec::is_empty))
            .then(|| s[0].clone())
    });
    assert_eq!(placeholder["ports"], json!([]));
}
