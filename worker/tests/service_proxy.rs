//! The service proxy on two emulated nodes: ClusterIP, NodePort, hairpin, session affinity,
//! traffic policies, a Service without endpoints (refused at once), endpoints changing under open
//! connections, and a restarted proxy that leaves no rule of a deleted Service behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod netlab;

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use netlab::{Ep, TwoNodes, connect_async, eventually, lab_or_skip, serve, service, slice};
use tokio_util::sync::CancellationToken;
use worker::network::Backend;
use worker::network::model::{ClusterObject, ObjectKind};
use worker::proxy::{DEFAULT_TABLE, ProxyConfig, ServiceProxy};

const CIP: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 20);

fn proxy(c: &TwoNodes, node: usize) -> ServiceProxy {
    ServiceProxy::new(ProxyConfig {
        netns: c.nodes[node].netns.clone(),
        node_name: c.nodes[node].name.clone(),
        cluster_cidr: c.cluster.cluster_cidr,
        skip_cluster_ips: vec![c.cluster.cluster_dns()],
        table: DEFAULT_TABLE.into(),
    })
}

async fn sync_all(c: &TwoNodes) {
    let state = c.model.snapshot();
    for i in 0..c.nodes.len() {
        proxy(c, i).sync(&state).await.expect("sync");
    }
}

fn set_services(c: &TwoNodes, services: Vec<ClusterObject>, slices: Vec<ClusterObject>) {
    c.model.replace(ObjectKind::Service, services);
    c.model.replace(ObjectKind::EndpointSlice, slices);
}

async fn servers_seen(
    from: &worker::network::Netns,
    addr: SocketAddr,
    n: usize,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        seen.insert(connect_async(from, addr).await.expect("connect").server);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ip_node_port_and_hairpin() {
    let Some(lab) = lab_or_skip("svc").await else {
        return;
    };
    let mut c = TwoNodes::new(lab, Backend::HostGw).await;
    let a = c.pod(0, "a").await;
    let b = c.pod(1, "b").await;
    let client = c.pod(0, "client").await;
    let _sa = serve(&a.netns, 8080, "a");
    let _sb = serve(&b.netns, 8080, "b");
    set_services(
        &c,
        vec![
            ClusterObject::Service(service("shop", "web", "10.43.0.20", 80, |s| {
                s.type_ = Some("NodePort".into());
                s.ports.as_mut().unwrap()[0].node_port = Some(30080);
            })),
            ClusterObject::Service(service("shop", "self", "10.43.0.21", 80, |_| {})),
        ],
        vec![
            ClusterObject::EndpointSlice(slice(
                "shop",
                "web",
                8080,
                &[Ep::ready(a.ip, "node-1"), Ep::ready(b.ip, "node-2")],
            )),
            ClusterObject::EndpointSlice(slice("shop", "self", 8080, &[Ep::ready(a.ip, "node-1")])),
        ],
    );
    sync_all(&c).await;

    // ClusterIP from a pod: both endpoints, across nodes, client address kept.
    let seen = servers_seen(&client.netns, SocketAddr::from((CIP, 80)), 24).await;
    assert_eq!(seen, BTreeSet::from(["a".to_owned(), "b".to_owned()]));
    let mut conn = connect_async(&client.netns, SocketAddr::from((CIP, 80)))
        .await
        .unwrap();
    assert_eq!(conn.seen_as, client.ip.to_string());
    assert_eq!(conn.echo("ping").unwrap(), "ping");
    // From the node itself (host network).
    connect_async(&c.nodes[1].netns, SocketAddr::from((CIP, 80)))
        .await
        .expect("node -> ClusterIP");
    // NodePort from outside the cluster, on either node.
    for node in &c.nodes {
        let seen = servers_seen(c.lab.lan(), SocketAddr::from((node.ip, 30080)), 24).await;
        assert_eq!(seen.len(), 2, "NodePort on {} reached {seen:?}", node.name);
    }
    // Hairpin: a reaches itself through its Service, masqueraded so the reply returns via the node.
    let hair = connect_async(
        &a.netns,
        SocketAddr::from((Ipv4Addr::new(10, 43, 0, 21), 80)),
    )
    .await
    .expect("hairpin");
    assert_eq!(hair.server, "a");
    assert_ne!(hair.seen_as, a.ip.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_without_usable_endpoints_refuse_connections() {
    let Some(lab) = lab_or_skip("noep").await else {
        return;
    };
    let mut c = TwoNodes::new(lab, Backend::HostGw).await;
    let b = c.pod(1, "b").await;
    let client = c.pod(0, "client").await;
    let _sb = serve(&b.netns, 8080, "b");
    let mut not_ready = Ep::ready(b.ip, "node-2");
    not_ready.ready = false;
    not_ready.serving = false;
    set_services(
        &c,
        vec![
            ClusterObject::Service(service("shop", "empty", "10.43.0.30", 80, |s| {
                s.type_ = Some("NodePort".into());
                s.ports.as_mut().unwrap()[0].node_port = Some(30090);
            })),
            ClusterObject::Service(service("shop", "unready", "10.43.0.31", 80, |_| {})),
            ClusterObject::Service(service("shop", "web", "10.43.0.20", 80, |_| {})),
        ],
        vec![
            ClusterObject::EndpointSlice(slice("shop", "unready", 8080, &[not_ready])),
            ClusterObject::EndpointSlice(slice("shop", "web", 8080, &[Ep::ready(b.ip, "node-2")])),
        ],
    );
    sync_all(&c).await;
    for addr in [
        SocketAddr::from(([10, 43, 0, 30], 80)),
        SocketAddr::from(([10, 43, 0, 31], 80)),
        // A port the Service does not have.
        SocketAddr::from((CIP, 81)),
        SocketAddr::from((c.nodes[0].ip, 30090)),
    ] {
        let err = connect_async(&client.netns, addr)
            .await
            .err()
            .expect("refused");
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{addr}: {err}");
    }
    let err = connect_async(c.lab.lan(), SocketAddr::from((c.nodes[0].ip, 30090)))
        .await
        .err()
        .expect("refused");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    // The Service next to them works.
    connect_async(&client.netns, SocketAddr::from((CIP, 80)))
        .await
        .expect("web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_affinity_keeps_a_client_on_one_endpoint() {
    let Some(lab) = lab_or_skip("aff").await else {
        return;
    };
    let mut c = TwoNodes::new(lab, Backend::Vxlan).await;
    let a = c.pod(0, "a").await;
    let b = c.pod(1, "b").await;
    let client = c.pod(0, "client").await;
    let _sa = serve(&a.netns, 8080, "a");
    let _sb = serve(&b.netns, 8080, "b");
    set_services(
        &c,
        vec![ClusterObject::Service(service(
            "shop",
            "web",
            "10.43.0.20",
            80,
            |s| {
                s.session_affinity = Some("ClientIP".into());
            },
        ))],
        vec![ClusterObject::EndpointSlice(slice(
            "shop",
            "web",
            8080,
            &[Ep::ready(a.ip, "node-1"), Ep::ready(b.ip, "node-2")],
        ))],
    );
    sync_all(&c).await;
    let seen = servers_seen(&client.netns, SocketAddr::from((CIP, 80)), 16).await;
    assert_eq!(seen.len(), 1, "affinity broken: {seen:?}");
    // Affinity survives a re-sync.
    sync_all(&c).await;
    assert_eq!(
        servers_seen(&client.netns, SocketAddr::from((CIP, 80)), 8).await,
        seen
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_traffic_policies_use_only_this_nodes_endpoints() {
    let Some(lab) = lab_or_skip("local").await else {
        return;
    };
    let mut c = TwoNodes::new(lab, Backend::HostGw).await;
    let a = c.pod(0, "a").await;
    let b = c.pod(1, "b").await;
    let client1 = c.pod(0, "client").await;
    let client2 = c.pod(1, "client").await;
    let _sa = serve(&a.netns, 8080, "a");
    let _sb = serve(&b.netns, 8080, "b");
    set_services(
        &c,
        vec![
            ClusterObject::Service(service("shop", "internal", "10.43.0.40", 80, |s| {
                s.internal_traffic_policy = Some("Local".into());
            })),
            ClusterObject::Service(service("shop", "external", "10.43.0.41", 80, |s| {
                s.type_ = Some("NodePort".into());
                s.external_traffic_policy = Some("Local".into());
                s.ports.as_mut().unwrap()[0].node_port = Some(30100);
            })),
        ],
        vec![
            // internal: endpoints on node 2 only; external: on node 1 only.
            ClusterObject::EndpointSlice(slice(
                "shop",
                "internal",
                8080,
                &[Ep::ready(b.ip, "node-2")],
            )),
            ClusterObject::EndpointSlice(slice(
                "shop",
                "external",
                8080,
                &[Ep::ready(a.ip, "node-1")],
            )),
        ],
    );
    sync_all(&c).await;
    let internal = SocketAddr::from(([10, 43, 0, 40], 80));
    assert_eq!(
        connect_async(&client2.netns, internal)
            .await
            .unwrap()
            .server,
        "b"
    );
    // No local endpoint on node 1: dropped (not refused: the Service has endpoints elsewhere).
    let err = connect_async(&client1.netns, internal)
        .await
        .err()
        .expect("dropped");
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    // externalTrafficPolicy Local: node 1 answers with its own endpoint and keeps the client address.
    let ext = connect_async(c.lab.lan(), SocketAddr::from((c.nodes[0].ip, 30100)))
        .await
        .unwrap();
    assert_eq!(
        (ext.server.as_str(), ext.seen_as.clone()),
        ("a", c.lab.lan_ip().to_string())
    );
    // Node 2 has none: dropped for outside clients...
    let err = connect_async(c.lab.lan(), SocketAddr::from((c.nodes[1].ip, 30100)))
        .await
        .err()
        .expect("dropped");
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    // ...but its pods still reach any endpoint through it, and its ClusterIP works cluster-wide.
    assert_eq!(
        connect_async(&client2.netns, SocketAddr::from((c.nodes[1].ip, 30100)))
            .await
            .unwrap()
            .server,
        "a"
    );
    assert_eq!(
        connect_async(&client2.netns, SocketAddr::from(([10, 43, 0, 41], 80)))
            .await
            .unwrap()
            .server,
        "a"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_change_under_open_connections_and_a_restart_leaves_nothing_stale() {
    let Some(lab) = lab_or_skip("chg").await else {
        return;
    };
    let mut c = TwoNodes::new(lab, Backend::HostGw).await;
    let b1 = c.pod(1, "b1").await;
    let b2 = c.pod(1, "b2").await;
    let client = c.pod(0, "client").await;
    let _s1 = serve(&b1.netns, 8080, "b1");
    let _s2 = serve(&b2.netns, 8080, "b2");
    let web = |eps: &[Ep<'_>]| ClusterObject::EndpointSlice(slice("shop", "web", 8080, eps));
    set_services(
        &c,
        vec![
            ClusterObject::Service(service("shop", "web", "10.43.0.20", 80, |_| {})),
            ClusterObject::Service(service("shop", "old", "10.43.0.50", 80, |_| {})),
        ],
        vec![
            web(&[Ep::ready(b1.ip, "node-1")]),
            ClusterObject::EndpointSlice(slice("shop", "old", 8080, &[Ep::ready(b2.ip, "node-2")])),
        ],
    );
    // The proxy of node 1 runs as the worker runs it.
    let cancel = CancellationToken::new();
    let run = tokio::spawn(proxy(&c, 0).run(
        c.model.clone(),
        Duration::from_secs(30),
        Duration::from_millis(200),
        cancel.clone(),
    ));
    let addr = SocketAddr::from((CIP, 80));
    eventually("the ClusterIP to work", Duration::from_secs(20), || async {
        connect_async(&client.netns, addr).await.is_ok()
    })
    .await;
    let mut open = connect_async(&client.netns, addr).await.unwrap();
    assert_eq!(open.server, "b1");

    // b1 terminates (still serving) and b2 is ready: new connections go to b2 only; the open
    // connection to b1 keeps working.
    let mut terminating = Ep::ready(b1.ip, "node-1");
    terminating.ready = false;
    terminating.terminating = true;
    c.model
        .apply(web(&[terminating, Ep::ready(b2.ip, "node-2")]));
    eventually(
        "new connections to reach b2 only",
        Duration::from_secs(20),
        || async {
            servers_seen(&client.netns, addr, 6).await == BTreeSet::from(["b2".to_owned()])
        },
    )
    .await;
    assert_eq!(open.echo("still there").unwrap(), "still there");
    // No ready endpoint left: the serving, terminating one takes new connections.
    let mut terminating = Ep::ready(b1.ip, "node-1");
    terminating.ready = false;
    terminating.terminating = true;
    c.model.apply(web(&[terminating]));
    eventually(
        "the terminating endpoint to take over",
        Duration::from_secs(20),
        || async {
            servers_seen(&client.netns, addr, 3).await == BTreeSet::from(["b1".to_owned()])
        },
    )
    .await;

    // The worker stops; "old" is deleted while it is down; the new proxy syncs at start.
    cancel.cancel();
    run.await.unwrap();
    let table_before = c.nodes[0]
        .netns
        .run("nft", &["list", "table", "ip", DEFAULT_TABLE])
        .await
        .unwrap();
    assert!(table_before.contains("shop/old"));
    c.model.delete(ObjectKind::Service, Some("shop"), "old");
    c.model
        .delete(ObjectKind::EndpointSlice, Some("shop"), "old-abcde");
    let mut restarted = proxy(&c, 0);
    restarted.sync(&c.model.snapshot()).await.unwrap();
    let table = c.nodes[0]
        .netns
        .run("nft", &["list", "table", "ip", DEFAULT_TABLE])
        .await
        .unwrap();
    assert!(
        !table.contains("10.43.0.50"),
        "a rule of the deleted Service is left:\n{table}"
    );
    // Its chains are flushed now and deleted after a grace period.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    restarted.sync(&c.model.snapshot()).await.unwrap();
    let table = c.nodes[0]
        .netns
        .run("nft", &["list", "table", "ip", DEFAULT_TABLE])
        .await
        .unwrap();
    assert!(
        !table.contains("shop/old"),
        "chains of the deleted Service are left:\n{table}"
    );
    assert!(!restarted.has_stale_chains());
    // The connection opened before the restart still works, and so does the Service.
    assert_eq!(open.echo("after restart").unwrap(), "after restart");
    assert_eq!(
        connect_async(&client.netns, addr).await.unwrap().server,
        "b1"
    );
    let err = connect_async(&client.netns, SocketAddr::from(([10, 43, 0, 50], 80)))
        .await
        .err()
        .expect("gone");
    assert_ne!(
        err.kind(),
        ErrorKind::TimedOut,
        "a deleted ClusterIP should fail fast: {err}"
    );
}
