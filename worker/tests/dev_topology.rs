//! `daas dev --workers N`'s topology: workers in namespaces of their own reach each other and the
//! host over the dev bridge; setting up again after a killed run (nothing cleaned) works; cleanup
//! leaves nothing behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod netlab;

use std::net::{Ipv4Addr, SocketAddr};

use netlab::{connect_async, lab_or_skip, serve};
use worker::network::Netns;
use worker::network::devnet::DevTopology;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_get_namespaces_on_a_bridge_and_nothing_is_left_behind() {
    // The lab check tells whether namespaces work here; this test's topology is its own.
    let Some(_lab) = lab_or_skip("devnet").await else {
        return;
    };
    // Names and a subnet of this test's own, so that a running `daas dev` is not disturbed; fixed,
    // so that a failed run's leftovers are removed by the next.
    let topo = DevTopology {
        prefix: "dtdevnet".into(),
        bridge: "dtdevnet0".into(),
        subnet: "10.199.254.0/24".parse().unwrap(),
    };
    let guard = Guard(topo.clone());
    let nodes = topo.setup(2).await.expect("setup");
    // A run killed without cleanup: setting up again starts from scratch.
    let nodes_again = topo.setup(2).await.expect("setup over leftovers");
    assert_eq!(nodes, nodes_again);
    let srv = serve(&nodes[1].netns, 7000, "w2");
    let conn = connect_async(&nodes[0].netns, SocketAddr::from((nodes[1].ip, 7000)))
        .await
        .expect("w1 -> w2");
    assert_eq!(conn.seen_as, nodes[0].ip.to_string());
    // The host reaches a worker at its address, and a worker the host at the bridge's.
    connect_async(&Netns::Current, SocketAddr::from((nodes[1].ip, 7000)))
        .await
        .expect("host -> w2");
    let host_ip: Ipv4Addr = topo.host_ip();
    let host = serve(&Netns::Current, 7001, "host");
    connect_async(&nodes[0].netns, SocketAddr::from((host_ip, 7001)))
        .await
        .expect("w1 -> host");
    // A connection still open when the topology goes (as a killed worker's would be).
    let _open = connect_async(&nodes[0].netns, SocketAddr::from((nodes[1].ip, 7000)))
        .await
        .expect("open");
    drop(conn);
    srv.abort();
    host.abort();

    topo.cleanup().await.expect("cleanup");
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !left
            .iter()
            .any(|n| n.starts_with(&format!("{}-w", topo.prefix))),
        "{left:?}"
    );
    assert!(
        !std::path::Path::new("/sys/class/net")
            .join(&topo.bridge)
            .exists()
    );
    let links: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !links.iter().any(|n| n.starts_with(&topo.prefix)),
        "{links:?}"
    );
    topo.cleanup().await.expect("cleanup twice");
    drop(guard);
}

/// Cleans up when the test fails half-way.
struct Guard(DevTopology);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.cleanup_blocking();
    }
}
