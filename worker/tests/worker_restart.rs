//! A worker's whole networking ([`NodeNetworking`]) on two emulated nodes, stopped and started
//! again: Services and DNS work before, the rules outlive the stop (connections keep flowing), a
//! Service deleted meanwhile leaves no rule once it is back, and DNS answers again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod netlab;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use netlab::{Ep, connect_async, eventually, lab_or_skip, serve, service, slice};
use tokio_util::sync::CancellationToken;
use worker::network::lab::LabNode;
use worker::network::model::{ClusterModel, ClusterObject, ObjectKind};
use worker::network::resolv::ResolvConf;
use worker::network::{Backend, ClusterNetwork, NodeNetworkConfig, NodeNetworking};

fn config(node: &LabNode, cluster: &ClusterNetwork) -> NodeNetworkConfig {
    NodeNetworkConfig {
        netns: node.netns.clone(),
        node_name: node.name.clone(),
        node_ip: node.ip,
        pod_cidr: node.pod_cidr,
        backend: Backend::Vxlan,
        cluster: cluster.clone(),
        cni_conf_dir: node.cni_conf_dir(),
        ipam_data_dir: node.ipam_dir(),
        node_resolv: ResolvConf::default(),
        dns_upstreams: Some(vec![]),
    }
}

fn resolves(netns: &worker::network::Netns, name: &str) -> Option<Vec<u8>> {
    use worker::dns::proto::op::{Message, Query};
    use worker::dns::proto::rr::{Name, RecordType};
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii(name).ok()?, RecordType::A));
    let sock = worker::network::exec::in_netns(netns, || std::net::UdpSocket::bind("0.0.0.0:0"))
        .ok()?
        .ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    sock.send_to(&m.to_vec().ok()?, ("10.43.0.10", 53)).ok()?;
    let mut buf = [0u8; 1500];
    let n = sock.recv(&mut buf).ok()?;
    let reply = Message::from_vec(buf.get(..n)?).ok()?;
    reply
        .answers
        .first()
        .map(|r| r.data.to_string().into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_worker_reconciles_rules_and_dns() {
    let Some(mut lab) = lab_or_skip("restart").await else {
        return;
    };
    let cluster = ClusterNetwork::default();
    let n1 = lab.add_node("node-1", 1).await.unwrap();
    let n2 = lab.add_node("node-2", 2).await.unwrap();
    let model = ClusterModel::new();
    model.replace(
        ObjectKind::Node,
        vec![
            ClusterObject::Node(n1.node_object()),
            ClusterObject::Node(n2.node_object()),
        ],
    );
    for kind in [
        ObjectKind::Pod,
        ObjectKind::Namespace,
        ObjectKind::NetworkPolicy,
    ] {
        model.replace(kind, vec![]);
    }
    let cancel1 = CancellationToken::new();
    let w1 = NodeNetworking::start(config(&n1, &cluster), model.clone(), cancel1.clone())
        .await
        .unwrap();
    let cancel2 = CancellationToken::new();
    let w2 = NodeNetworking::start(config(&n2, &cluster), model.clone(), cancel2.clone())
        .await
        .unwrap();
    let server = lab
        .add_pod(&n2, w2.pod_network().cni(), "server")
        .await
        .unwrap();
    let client = lab
        .add_pod(&n1, w1.pod_network().cni(), "client")
        .await
        .unwrap();
    let _srv = serve(&server.netns, 8080, "server");
    model.replace(
        ObjectKind::Service,
        vec![
            ClusterObject::Service(service("shop", "web", "10.43.0.20", 80, |_| {})),
            ClusterObject::Service(service("shop", "old", "10.43.0.50", 80, |_| {})),
        ],
    );
    model.replace(
        ObjectKind::EndpointSlice,
        vec![
            ClusterObject::EndpointSlice(slice(
                "shop",
                "web",
                8080,
                &[Ep::ready(server.ip, "node-2")],
            )),
            ClusterObject::EndpointSlice(slice(
                "shop",
                "old",
                8080,
                &[Ep::ready(server.ip, "node-2")],
            )),
        ],
    );
    let web = SocketAddr::from((Ipv4Addr::new(10, 43, 0, 20), 80));
    let old = SocketAddr::from((Ipv4Addr::new(10, 43, 0, 50), 80));
    eventually(
        "Services and DNS on node 1",
        Duration::from_secs(20),
        || async {
            connect_async(&client.netns, web).await.is_ok()
                && connect_async(&client.netns, old).await.is_ok()
                && resolves(&client.netns, "web.shop.svc.cluster.local.").as_deref()
                    == Some(b"10.43.0.20")
        },
    )
    .await;
    let mut open = connect_async(&client.netns, web).await.unwrap();

    // Worker 1 stops; its rules stay in the kernel, so the open connection keeps working.
    cancel1.cancel();
    w1.stopped().await;
    assert_eq!(open.echo("while down").unwrap(), "while down");
    // "old" is deleted while it is down; it comes back with a fresh model (as after a re-list).
    model.delete(ObjectKind::Service, Some("shop"), "old");
    model.delete(ObjectKind::EndpointSlice, Some("shop"), "old-abcde");
    let cancel1 = CancellationToken::new();
    let w1 = NodeNetworking::start(config(&n1, &cluster), model.clone(), cancel1.clone())
        .await
        .unwrap();
    eventually("node 1 reconciled", Duration::from_secs(20), || async {
        let table = n1
            .netns
            .run("nft", &["list", "table", "ip", "daas-proxy"])
            .await
            .unwrap_or_default();
        !table.contains("shop/old")
            && !table.contains("10.43.0.50")
            && resolves(&client.netns, "web.shop.svc.cluster.local.").as_deref()
                == Some(b"10.43.0.20")
            && resolves(&client.netns, "old.shop.svc.cluster.local.").is_none()
    })
    .await;
    assert_eq!(open.echo("after restart").unwrap(), "after restart");
    assert!(connect_async(&client.netns, web).await.is_ok());
    assert!(connect_async(&client.netns, old).await.is_err());
    cancel1.cancel();
    cancel2.cancel();
    w1.stopped().await;
    w2.stopped().await;
}
