//! System namespaces, the `default` ServiceAccount, `kube-root-ca.crt` and
//! the `default/kubernetes` Service.

use serde_json::json;

use crate::common::{Enclave, Kubectl, eventually, kubectl_versions};
use crate::support::{create, delete, get, merge, parse, start};

const SYSTEM: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

#[test]
fn system_namespaces_cannot_be_deleted() {
    let e = Enclave::start();
    for ns in SYSTEM {
        let (code, body) = e.curl_admin(&format!("/api/v1/namespaces/{ns}"), &["-X", "DELETE"]);
        assert_eq!(code, 403, "{body}");
        let status = parse(&body);
        assert_eq!(
            status["message"],
            format!("namespaces \"{ns}\" is forbidden: this namespace may not be deleted")
        );
        assert_eq!(status["reason"], "Forbidden");
        assert_eq!(status["details"], json!({"name": ns, "kind": "namespaces"}));
    }
    create(
        &e,
        "/api/v1/namespaces",
        &json!({"metadata": {"name": "mine"}}),
    );
    let (version, bin) = kubectl_versions().pop().unwrap();
    let k = Kubectl::new(&version, &bin, &e);
    let out = k.run(&["delete", "namespace", "--all", "--wait=false"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Error from server (Forbidden): namespaces \"default\" is forbidden: this namespace may not be deleted"),
        "{stderr}"
    );
    eventually("mine to go", || {
        get(&e, "/api/v1/namespaces/mine").is_none().then_some(())
    });
    for ns in SYSTEM {
        let n = get(&e, &format!("/api/v1/namespaces/{ns}")).unwrap();
        assert_eq!(n["status"]["phase"], "Active", "{ns}");
    }
}

#[test]
fn every_namespace_gets_its_service_account_and_root_ca() {
    let e = Enclave::start();
    let ca = std::fs::read_to_string(e.pki("server.crt")).unwrap();
    create(
        &e,
        "/api/v1/namespaces",
        &json!({"metadata": {"name": "team"}}),
    );
    for ns in SYSTEM.iter().chain(&["team"]) {
        let sa = eventually(&format!("default SA in {ns}"), || {
            get(
                &e,
                &format!("/api/v1/namespaces/{ns}/serviceaccounts/default"),
            )
        });
        assert_eq!(sa["metadata"]["name"], "default");
        let cm = eventually(&format!("root CA in {ns}"), || {
            get(
                &e,
                &format!("/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt"),
            )
        });
        assert_eq!(cm["data"]["ca.crt"], ca.as_str());
        assert_eq!(
            cm["metadata"]["annotations"]["kubernetes.io/description"],
            "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."
        );
    }
    // Deleted or edited, they come back as they were.
    let sa_uid =
        get(&e, "/api/v1/namespaces/team/serviceaccounts/default").unwrap()["metadata"]["uid"]
            .clone();
    delete(&e, "/api/v1/namespaces/team/serviceaccounts/default");
    eventually("a new default SA", || {
        let sa = get(&e, "/api/v1/namespaces/team/serviceaccounts/default")?;
        (sa["metadata"]["uid"] != sa_uid).then_some(())
    });
    merge(
        &e,
        "/api/v1/namespaces/team/configmaps/kube-root-ca.crt",
        json!({"data": {"ca.crt": "forged"}}),
    );
    eventually("the CA restored", || {
        let cm = get(&e, "/api/v1/namespaces/team/configmaps/kube-root-ca.crt")?;
        (cm["data"]["ca.crt"] == ca.as_str()).then_some(())
    });
    delete(&e, "/api/v1/namespaces/team/configmaps/kube-root-ca.crt");
    eventually("the CA recreated", || {
        get(&e, "/api/v1/namespaces/team/configmaps/kube-root-ca.crt")
    });
}

#[test]
fn kubernetes_service_points_at_the_advertised_address() {
    let e = Enclave::start();
    let port: u16 = e.url.rsplit(':').next().unwrap().parse().unwrap();
    let check = |e: &Enclave| {
        let svc = eventually("default/kubernetes", || {
            get(e, "/api/v1/namespaces/default/services/kubernetes")
        });
        assert_eq!(svc["spec"]["clusterIP"], "10.43.0.1");
        assert_eq!(svc["spec"]["type"], "ClusterIP");
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}])
        );
        assert_eq!(
            svc["metadata"]["labels"],
            json!({"component": "apiserver", "provider": "kubernetes"})
        );
        let ep = eventually("its endpoints", || {
            get(e, "/api/v1/namespaces/default/endpoints/kubernetes")
        });
        assert_eq!(
            ep["subsets"],
            json!([{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}])
        );
        assert_eq!(
            ep["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"],
            "true"
        );
        let slice = eventually("its slice", || {
            get(
                e,
                "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes",
            )
        });
        assert_eq!(slice["addressType"], "IPv4");
        assert_eq!(
            slice["endpoints"],
            json!([{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}])
        );
        assert_eq!(
            slice["ports"],
            json!([{"name": "https", "port": port, "protocol": "TCP"}])
        );
        assert_eq!(
            slice["metadata"]["labels"]["kubernetes.io/service-name"],
            "kubernetes"
        );
        // Only the API server's own slice: the skip-mirror label keeps the mirroring controller off.
        let slices = crate::support::items(
            e,
            "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
        );
        assert_eq!(slices.len(), 1, "{slices:?}");
    };
    check(&e);
    delete(
        &e,
        "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes",
    );
    delete(&e, "/api/v1/namespaces/default/endpoints/kubernetes");
    check(&e);
    // A restart reconciles the same objects again, without duplicates.
    let dir = e.stop();
    let e = Enclave::start_in(dir);
    let port_after: u16 = e.url.rsplit(':').next().unwrap().parse().unwrap();
    let ep = eventually("endpoints at the new port", || {
        let ep = get(&e, "/api/v1/namespaces/default/endpoints/kubernetes")?;
        (ep["subsets"][0]["ports"][0]["port"] == port_after).then_some(ep)
    });
    assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], "127.0.0.1");
    let svc = get(&e, "/api/v1/namespaces/default/services/kubernetes").unwrap();
    assert_eq!(svc["spec"]["clusterIP"], "10.43.0.1");
}

#[test]
fn a_configured_service_range_gives_the_cluster_ips() {
    let e = start(&["--service-cidr", "10.96.0.0/12"]);
    let kubernetes = eventually("the kubernetes Service", || {
        get(&e, "/api/v1/namespaces/default/services/kubernetes")
    });
    assert_eq!(kubernetes["spec"]["clusterIP"], "10.96.0.1");
    let svc = create(
        &e,
        "/api/v1/namespaces/default/services",
        &json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}),
    );
    let ip: std::net::Ipv4Addr = svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
    let in_range = u32::from(ip) >> 20 == u32::from(std::net::Ipv4Addr::new(10, 96, 0, 0)) >> 20;
    assert!(in_range, "{ip} is outside 10.96.0.0/12");
}
