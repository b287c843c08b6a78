//! NetworkPolicy on two emulated nodes: default deny, pod and namespace selectors and both
//! combined, ipBlock with except, ports with endPort and named ports, egress, policyTypes
//! defaulting, and connections a policy allowed surviving a later deny.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod netlab;

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use netlab::{TwoNodes, connect_async, lab_or_skip, namespace, pod_object, serve};
use worker::netpol::NetworkPolicies;
use worker::network::model::{ClusterObject, ObjectKind};
use worker::network::{Backend, Netns};

fn sel(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        match_expressions: None,
    }
}

fn policy(name: &str, spec: NetworkPolicySpec) -> ClusterObject {
    let mut p = NetworkPolicy::default();
    p.metadata.namespace = Some("shop".into());
    p.metadata.name = Some(name.into());
    p.spec = Some(spec);
    ClusterObject::NetworkPolicy(p)
}

fn port(p: IntOrString, end: Option<i32>) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(p),
        end_port: end,
        protocol: Some("TCP".into()),
    }
}

/// Whether a connection from `from` to `ip:port` gets through (refused would be a test bug).
async fn reaches(from: &Netns, ip: Ipv4Addr, port: u16) -> bool {
    match connect_async(from, SocketAddr::from((ip, port))).await {
        Ok(_) => true,
        Err(e) if e.kind() == ErrorKind::TimedOut => false,
        Err(e) => panic!("unexpected error to {ip}:{port}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_policies_allow_and_deny_as_upstream() {
    let Some(lab) = lab_or_skip("netpol").await else {
        return;
    };
    let mut c = TwoNodes::new(lab, Backend::HostGw).await;
    let web = c.pod(1, "web").await;
    let client = c.pod(0, "client").await;
    let other = c.pod(0, "other").await;
    let guest = c.pod(0, "guest").await;
    let far = c.pod(1, "far").await; // a client on web's own node, from 10.42.2.0/24
    for p in [&web, &far] {
        drop(serve(&p.netns, 8080, &p.name));
        drop(serve(&p.netns, 9090, &p.name));
    }
    c.model.replace(
        ObjectKind::Namespace,
        vec![
            ClusterObject::Namespace(namespace("shop", &[])),
            ClusterObject::Namespace(namespace("guests", &[("team", "a")])),
            ClusterObject::Namespace(namespace("strangers", &[])),
        ],
    );
    c.model.replace(
        ObjectKind::Pod,
        vec![
            ClusterObject::Pod(pod_object(&web, "shop", &[("app", "web")])),
            ClusterObject::Pod(pod_object(&client, "shop", &[("role", "client")])),
            ClusterObject::Pod(pod_object(&other, "shop", &[])),
            ClusterObject::Pod(pod_object(&guest, "guests", &[("role", "client")])),
            ClusterObject::Pod(pod_object(&far, "shop", &[("role", "client")])),
        ],
    );
    c.model.replace(ObjectKind::NetworkPolicy, vec![]);
    let mut enforcers: Vec<NetworkPolicies> = c
        .nodes
        .iter()
        .map(|n| NetworkPolicies::new(n.netns.clone(), n.name.clone()))
        .collect();
    sync(&c, &mut enforcers).await;
    assert!(
        reaches(&other.netns, web.ip, 8080).await,
        "no policy: all allowed"
    );
    // A connection opened before the deny keeps working after it.
    let mut open = connect_async(&client.netns, SocketAddr::from((web.ip, 8080)))
        .await
        .unwrap();

    // Default deny ingress for web.
    c.model.apply(policy(
        "deny",
        NetworkPolicySpec {
            pod_selector: Some(sel(&[("app", "web")])),
            policy_types: Some(vec!["Ingress".into()]),
            ..Default::default()
        },
    ));
    sync(&c, &mut enforcers).await;
    assert!(!reaches(&client.netns, web.ip, 8080).await, "default deny");
    assert!(
        !reaches(&far.netns, web.ip, 8080).await,
        "default deny, same node"
    );
    assert_eq!(open.echo("still allowed").unwrap(), "still allowed");
    // Other pods stay open.
    assert!(reaches(&client.netns, far.ip, 9090).await);

    // Allow role=client pods of shop, and role=client pods of team=a namespaces, on 8000-8100.
    c.model.apply(policy(
        "clients",
        NetworkPolicySpec {
            pod_selector: Some(sel(&[("app", "web")])),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![
                    NetworkPolicyPeer {
                        pod_selector: Some(sel(&[("role", "client")])),
                        ..Default::default()
                    },
                    NetworkPolicyPeer {
                        namespace_selector: Some(sel(&[("team", "a")])),
                        pod_selector: Some(sel(&[("role", "client")])),
                        ..Default::default()
                    },
                ]),
                ports: Some(vec![port(IntOrString::Int(8000), Some(8100))]),
            }]),
            ..Default::default()
        },
    ));
    sync(&c, &mut enforcers).await;
    let (a, b, d, e) = tokio::join!(
        reaches(&client.netns, web.ip, 8080),
        reaches(&guest.netns, web.ip, 8080),
        reaches(&other.netns, web.ip, 8080),
        reaches(&client.netns, web.ip, 9090),
    );
    assert_eq!(
        (a, b, d, e),
        (true, true, false, false),
        "(client, guest, unlabelled, port outside the range)"
    );

    // ipBlock with except, and a named port: 10.42.0.0/16 except node 2's pods, on port "http".
    c.model.apply(policy(
        "clients",
        NetworkPolicySpec {
            pod_selector: Some(sel(&[("app", "web")])),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    ip_block: Some(IPBlock {
                        cidr: "10.42.0.0/16".into(),
                        except: Some(vec![c.nodes[1].pod_cidr.to_string()]),
                    }),
                    ..Default::default()
                }]),
                ports: Some(vec![port(IntOrString::String("http".into()), None)]),
            }]),
            ..Default::default()
        },
    ));
    sync(&c, &mut enforcers).await;
    let (a, b, d) = tokio::join!(
        reaches(&other.netns, web.ip, 8080),
        reaches(&far.netns, web.ip, 8080),
        reaches(&other.netns, web.ip, 9090),
    );
    assert_eq!(
        (a, b, d),
        (true, false, false),
        "(in block, excepted, other port)"
    );

    // Egress: a policy with egress rules and no policyTypes isolates both ways. client may only
    // reach app=web pods on their "http" port.
    c.model.apply(policy(
        "client-out",
        NetworkPolicySpec {
            pod_selector: Some(sel(&[("role", "client")])),
            egress: Some(vec![NetworkPolicyEgressRule {
                to: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(sel(&[("app", "web")])),
                    ..Default::default()
                }]),
                ports: Some(vec![port(IntOrString::String("http".into()), None)]),
            }]),
            ..Default::default()
        },
    ));
    sync(&c, &mut enforcers).await;
    let (a, b, d, e) = tokio::join!(
        reaches(&client.netns, web.ip, 8080),
        reaches(&client.netns, far.ip, 9090),
        reaches(&client.netns, web.ip, 9090),
        // far is role=client too: now isolated for ingress with no ingress rule.
        reaches(&other.netns, far.ip, 9090),
    );
    assert_eq!(
        (a, b, d, e),
        (true, false, false, false),
        "(allowed egress, other pod, other port, ingress default)"
    );

    // Policies deleted: everything open again, and the table holds no pod chain.
    c.model.replace(ObjectKind::NetworkPolicy, vec![]);
    sync(&c, &mut enforcers).await;
    assert!(reaches(&far.netns, web.ip, 9090).await);
    let table = c.nodes[1]
        .netns
        .run("nft", &["list", "table", "ip", worker::netpol::TABLE])
        .await
        .unwrap();
    assert!(!table.contains("jump"), "{table}");
}

async fn sync(c: &TwoNodes, enforcers: &mut [NetworkPolicies]) {
    let state = c.model.snapshot();
    for enf in enforcers.iter_mut() {
        enf.sync(&state).await.expect("netpol sync");
    }
}
