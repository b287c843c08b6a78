//! The cases of the Kubernetes DNS specification (kubernetes/dns `docs/specification.md`), answered
//! from an index built from API objects.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use hickory_server::proto::rr::{Name, RData, RecordType};
use k8s_openapi::api::core::v1::{Namespace, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};

use super::records::{Answer, DnsIndex};
use crate::network::ClusterNetwork;
use crate::network::model::{ClusterModel, ClusterObject, SERVICE_NAME_LABEL};

fn svc(
    ns: &str,
    name: &str,
    cluster_ip: Option<&str>,
    ports: &[(&str, &str, i32)],
) -> ClusterObject {
    let mut s = Service::default();
    s.metadata.namespace = Some(ns.into());
    s.metadata.name = Some(name.into());
    s.spec = Some(ServiceSpec {
        cluster_ip: cluster_ip.map(str::to_owned),
        cluster_ips: cluster_ip.map(|ip| vec![ip.to_owned()]),
        ports: Some(
            ports
                .iter()
                .map(|(n, proto, port)| ServicePort {
                    name: (!n.is_empty()).then(|| (*n).to_owned()),
                    protocol: Some((*proto).to_owned()),
                    port: *port,
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    });
    ClusterObject::Service(s)
}

fn slice(
    ns: &str,
    svc: &str,
    eps: &[(&str, Option<&str>, bool)],
    ports: &[(&str, i32)],
) -> ClusterObject {
    let mut s = EndpointSlice {
        address_type: "IPv4".into(),
        endpoints: eps
            .iter()
            .map(|(ip, host, ready)| Endpoint {
                addresses: vec![(*ip).to_owned()],
                hostname: host.map(str::to_owned),
                conditions: Some(EndpointConditions {
                    ready: Some(*ready),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ports: Some(
            ports
                .iter()
                .map(|(n, p)| EndpointPort {
                    name: Some((*n).to_owned()),
                    port: Some(*p),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    };
    s.metadata.namespace = Some(ns.into());
    s.metadata.name = Some(format!("{svc}-1"));
    s.metadata.labels = Some(BTreeMap::from([(
        SERVICE_NAME_LABEL.to_owned(),
        svc.to_owned(),
    )]));
    ClusterObject::EndpointSlice(s)
}

fn index() -> DnsIndex {
    let model = ClusterModel::new();
    let mut ns = Namespace::default();
    ns.metadata.name = Some("empty".into());
    model.apply(ClusterObject::Namespace(ns));
    model.apply(svc(
        "default",
        "kubernetes",
        Some("10.43.0.1"),
        &[("https", "TCP", 443)],
    ));
    model.apply(svc(
        "default",
        "headless",
        Some("None"),
        &[("https", "TCP", 443), ("", "TCP", 80)],
    ));
    model.apply(slice(
        "default",
        "headless",
        &[
            ("10.42.1.100", Some("my-pet"), true),
            ("10.42.2.7", None, true),
            ("10.42.2.8", Some("sick"), false),
        ],
        &[("https", 8443)],
    ));
    model.apply(svc(
        "default",
        "lonely",
        Some("None"),
        &[("http", "TCP", 80)],
    ));
    let mut ext = Service::default();
    ext.metadata.namespace = Some("default".into());
    ext.metadata.name = Some("foo".into());
    ext.spec = Some(ServiceSpec {
        type_: Some("ExternalName".into()),
        external_name: Some("www.example.com".into()),
        ..Default::default()
    });
    model.apply(ClusterObject::Service(ext));
    DnsIndex::build(&model.snapshot(), &ClusterNetwork::default())
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn data(answer: &Answer) -> Vec<String> {
    match answer {
        Answer::Records { answers, .. } => {
            let mut v: Vec<String> = answers.iter().map(|r| r.data.to_string()).collect();
            v.sort();
            v
        }
        other => panic!("expected records, got {other:?}"),
    }
}

#[test]
fn schema_version_txt() {
    let a = index().answer(&name("dns-version.cluster.local."), RecordType::TXT);
    assert_eq!(data(&a), ["1.0.1"]);
}

#[test]
fn cluster_ip_service_a_record_any_case() {
    let idx = index();
    assert_eq!(
        data(&idx.answer(
            &name("kubernetes.default.svc.cluster.local."),
            RecordType::A
        )),
        ["10.43.0.1"]
    );
    let upper = idx.answer(
        &name("KUBERNETES.Default.SVC.cluster.local."),
        RecordType::A,
    );
    assert_eq!(data(&upper), ["10.43.0.1"]);
    let Answer::Records { answers, .. } = upper else {
        unreachable!()
    };
    // The owner name is the name as asked.
    assert_eq!(
        answers[0].name.to_string(),
        "KUBERNETES.Default.SVC.cluster.local."
    );
    assert_eq!(
        idx.answer(
            &name("kubernetes.default.svc.cluster.local."),
            RecordType::AAAA
        ),
        Answer::NoData
    );
}

#[test]
fn cluster_ip_service_srv_for_named_ports_only() {
    let idx = index();
    let a = idx.answer(
        &name("_https._tcp.kubernetes.default.svc.cluster.local."),
        RecordType::SRV,
    );
    assert_eq!(
        data(&a),
        ["0 100 443 kubernetes.default.svc.cluster.local."]
    );
    let Answer::Records { additionals, .. } = a else {
        unreachable!()
    };
    assert_eq!(
        additionals[0].data,
        RData::A(Ipv4Addr::new(10, 43, 0, 1).into())
    );
    assert_eq!(
        idx.answer(
            &name("_http._tcp.kubernetes.default.svc.cluster.local."),
            RecordType::SRV
        ),
        Answer::NxDomain
    );
    assert_eq!(
        idx.answer(
            &name("_https._udp.kubernetes.default.svc.cluster.local."),
            RecordType::SRV
        ),
        Answer::NxDomain
    );
}

#[test]
fn cluster_ip_ptr() {
    let a = index().answer(&name("1.0.43.10.in-addr.arpa."), RecordType::PTR);
    assert_eq!(data(&a), ["kubernetes.default.svc.cluster.local."]);
}

#[test]
fn headless_service_a_records_are_the_ready_endpoints() {
    let idx = index();
    let a = idx.answer(&name("headless.default.svc.cluster.local."), RecordType::A);
    assert_eq!(data(&a), ["10.42.1.100", "10.42.2.7"]);
    assert_eq!(
        data(&idx.answer(
            &name("my-pet.headless.default.svc.cluster.local."),
            RecordType::A
        )),
        ["10.42.1.100"]
    );
    // Without a hostname an endpoint is named by its dashed address.
    assert_eq!(
        data(&idx.answer(
            &name("10-42-2-7.headless.default.svc.cluster.local."),
            RecordType::A
        )),
        ["10.42.2.7"]
    );
    // Not ready: not published.
    assert_eq!(
        idx.answer(
            &name("sick.headless.default.svc.cluster.local."),
            RecordType::A
        ),
        Answer::NxDomain
    );
    // No ready endpoint at all: NXDOMAIN.
    assert_eq!(
        idx.answer(&name("lonely.default.svc.cluster.local."), RecordType::A),
        Answer::NxDomain
    );
}

#[test]
fn headless_service_srv_per_ready_endpoint_with_its_port() {
    let a = index().answer(
        &name("_https._tcp.headless.default.svc.cluster.local."),
        RecordType::SRV,
    );
    assert_eq!(
        data(&a),
        [
            "0 50 8443 10-42-2-7.headless.default.svc.cluster.local.",
            "0 50 8443 my-pet.headless.default.svc.cluster.local."
        ]
    );
}

#[test]
fn headless_endpoint_ptr() {
    let a = index().answer(&name("100.1.42.10.in-addr.arpa."), RecordType::PTR);
    assert_eq!(data(&a), ["my-pet.headless.default.svc.cluster.local."]);
}

#[test]
fn external_name_is_a_cname() {
    match index().answer(&name("foo.default.svc.cluster.local."), RecordType::A) {
        Answer::Alias { cname, target } => {
            assert_eq!(target.to_string(), "www.example.com.");
            assert_eq!(cname.data.to_string(), "www.example.com.");
        }
        other => panic!("expected a CNAME, got {other:?}"),
    }
}

#[test]
fn pod_records_from_dashed_addresses() {
    let idx = index();
    assert_eq!(
        data(&idx.answer(&name("10-42-1-5.default.pod.cluster.local."), RecordType::A)),
        ["10.42.1.5"]
    );
    assert_eq!(
        idx.answer(&name("10-42-1.default.pod.cluster.local."), RecordType::A),
        Answer::NxDomain
    );
}

#[test]
fn missing_names_in_the_cluster_domain_are_nxdomain_and_existing_ones_nodata() {
    let idx = index();
    for missing in [
        "nope.default.svc.cluster.local.",
        "kubernetes.nope.svc.cluster.local.",
        "a.b.c.d.e.f.cluster.local.",
        "nope.cluster.local.",
        "nope.svc.cluster.local.",
        "200.0.43.10.in-addr.arpa.",
    ] {
        assert_eq!(
            idx.answer(&name(missing), RecordType::A),
            Answer::NxDomain,
            "{missing}"
        );
    }
    for exists in [
        "cluster.local.",
        "svc.cluster.local.",
        "default.svc.cluster.local.",
        "empty.svc.cluster.local.",
    ] {
        assert_eq!(
            idx.answer(&name(exists), RecordType::A),
            Answer::NoData,
            "{exists}"
        );
    }
}

#[test]
fn other_names_are_forwarded() {
    let idx = index();
    assert_eq!(
        idx.answer(&name("example.org."), RecordType::A),
        Answer::Forward
    );
    assert_eq!(
        idx.answer(&name("4.3.2.1.in-addr.arpa."), RecordType::PTR),
        Answer::Forward
    );
}
