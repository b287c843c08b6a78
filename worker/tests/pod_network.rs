//! Pod-to-pod traffic across two emulated nodes (network namespaces on a LAN), with the real CNI
//! plugins and both backends: no NAT between pods, masquerade to the node address on the way out
//! of the cluster, and a resync that removes the routes of a node that left.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod netlab;

use std::net::SocketAddr;

use netlab::{TwoNodes, connect_async, lab_or_skip, serve};
use worker::network::Backend;
use worker::network::routes::{PeerNode, VXLAN_DEVICE};

async fn pods_reach_each_other_across_nodes(backend: Backend, label: &str) {
    let Some(lab) = lab_or_skip(label).await else {
        return;
    };
    let mut c = TwoNodes::new(lab, backend).await;
    let a = c.pod(0, "a").await;
    let b = c.pod(1, "b").await;
    let a2 = c.pod(0, "a2").await;
    assert!(c.nodes[0].pod_cidr.contains(&a.ip) && c.nodes[1].pod_cidr.contains(&b.ip));
    let _srv = serve(&b.netns, 8080, "b");
    let _srv2 = serve(&a2.netns, 8080, "a2");
    let outside = serve(c.lab.lan(), 9000, "outside");

    // Across nodes, without NAT: b sees a's own address.
    let mut conn = connect_async(&a.netns, SocketAddr::from((b.ip, 8080)))
        .await
        .expect("a -> b");
    assert_eq!(conn.server, "b");
    assert_eq!(conn.seen_as, a.ip.to_string());
    assert_eq!(conn.echo("hello").unwrap(), "hello");
    // Back the other way, and on the same node.
    let _srv_a = serve(&a.netns, 8080, "a");
    let back = connect_async(&b.netns, SocketAddr::from((a.ip, 8080)))
        .await
        .expect("b -> a");
    assert_eq!(back.seen_as, b.ip.to_string());
    let local = connect_async(&a.netns, SocketAddr::from((a2.ip, 8080)))
        .await
        .expect("a -> a2");
    assert_eq!(local.seen_as, a.ip.to_string());
    // Leaving the cluster CIDR: masqueraded to the node's address.
    let out = connect_async(&a.netns, SocketAddr::from((c.lab.lan_ip(), 9000)))
        .await
        .expect("a -> outside");
    assert_eq!(out.seen_as, c.nodes[0].ip.to_string());
    outside.abort();

    // Node 2 leaves: node 1's route to its pods goes, and b is unreachable.
    c.networks[0].sync_peers(&[]).await.unwrap();
    let routes = c.nodes[0]
        .netns
        .run("ip", &["route", "show", "proto", "213"])
        .await
        .unwrap();
    assert!(routes.trim().is_empty(), "stale routes: {routes}");
    if backend == Backend::Vxlan {
        let fdb = c.nodes[0]
            .netns
            .run("bridge", &["fdb", "show", "dev", VXLAN_DEVICE])
            .await
            .unwrap();
        assert!(
            !fdb.contains(&c.nodes[1].ip.to_string()),
            "stale fdb: {fdb}"
        );
    }
    assert!(
        connect_async(&a.netns, SocketAddr::from((b.ip, 8080)))
            .await
            .is_err()
    );
    // And comes back.
    let state = c.model.snapshot();
    c.networks[0]
        .sync_peers(&PeerNode::all_except(&state, "node-1"))
        .await
        .unwrap();
    let again = connect_async(&a.netns, SocketAddr::from((b.ip, 8080)))
        .await
        .expect("a -> b again");
    assert_eq!(again.server, "b");
    c.lab.remove_pod(&a2).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_gw_pods_reach_each_other_across_nodes() {
    pods_reach_each_other_across_nodes(Backend::HostGw, "hostgw").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vxlan_pods_reach_each_other_across_nodes() {
    pods_reach_each_other_across_nodes(Backend::Vxlan, "vxlan").await;
}
