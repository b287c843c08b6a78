//! Port-forward by connecting from inside the pod's network namespace (what containerd's own
//! port-forward does, without its streaming server in between): a short-lived thread enters the
//! sandbox's namespace and connects to the port on loopback; the socket stays in that
//! namespace after the thread ends.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use nix::sched::CloneFlags;

/// How long a connection to the pod's port may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `port` on loopback (IPv4, then IPv6) in the network namespace at `netns`.
///
/// # Errors
/// The namespace cannot be entered, or no loopback address accepts the connection (the
/// IPv4 error is reported).
pub(super) async fn connect(netns: PathBuf, port: u16) -> io::Result<tokio::net::TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A thread of its own: it leaves the agent's namespace and is never reused.
    std::thread::Builder::new()
        .name("port-forward".into())
        .spawn(move || {
            let _ = tx.send(connect_in(&netns, port));
        })?;
    let stream = rx
        .await
        .map_err(|_| io::Error::other("the port-forward thread died"))??;
    stream.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(stream)
}

fn connect_in(netns: &std::path::Path, port: u16) -> io::Result<std::net::TcpStream> {
    let ns = std::fs::File::open(netns)?;
    nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
    let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    match std::net::TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT) {
        Ok(s) => Ok(s),
        Err(e) => {
            let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port);
            std::net::TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|_| e)
        }
    }
}
