//! `daas dev`'s network for its workers ([`worker::network::devnet`]): a bridge `daas-dev0`
//! (`10.199.0.1/24`) and one namespace per worker (`daas-dev-wI`, `10.199.0.(10+I)`), so that
//! pod traffic between workers really crosses from one node to another. The workers reach the
//! API through a second relay listening on the bridge address (the first one listens on
//! `--listen`, usually `127.0.0.1`, which inside a namespace is the namespace's own loopback).

use std::net::{IpAddr, SocketAddr};

use worker::network::devnet::{DevNode, DevTopology};

/// The dev network, set up for `count` workers; `None` (said loudly) when namespaces cannot
/// be made here (not root, no `ip`), and the workers then share the host's namespace.
pub(super) async fn setup(count: usize) -> Option<Vec<DevNode>> {
    match DevTopology::default().setup(count).await {
        Ok(nodes) => Some(nodes),
        Err(e) => {
            eprintln!(
                "daas dev: cannot make the workers' network namespaces ({e}): the workers share \
                 this machine's network, and pods reach only pods on their own node"
            );
            DevTopology::default().cleanup_blocking();
            None
        }
    }
}

/// This machine's address on the dev bridge, where the workers reach the API (the serving
/// certificate names it).
pub(super) fn bridge_ip() -> IpAddr {
    IpAddr::V4(DevTopology::default().host_ip())
}

/// Where the workers' relay listens: the bridge address, on the port of `listen`.
pub(super) fn relay_listen(listen: SocketAddr) -> SocketAddr {
    SocketAddr::new(bridge_ip(), listen.port())
}

/// Removes the namespaces and the bridge (after the workers stopped).
pub(super) async fn cleanup() {
    if let Err(e) = DevTopology::default().cleanup().await {
        eprintln!("daas dev: removing the workers' network namespaces: {e}");
    }
}
