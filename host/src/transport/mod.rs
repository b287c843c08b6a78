//! Where bytes go: TCP, Unix sockets and vsock behind one listener and one stream type.
//!
//! Every host service (the relay, the outbound proxy, the journal service) listens on and connects to an
//! [`Endpoint`]. Production uses vsock between the parent instance and the enclave; dev mode and tests use Unix
//! sockets (this machine has no vsock loopback); the public side of the relay is TCP.
//!
//! [`Endpoint`] is `protocol::Endpoint`, the one endpoint syntax of every binary (also accepted by the `daas-host`
//! flags): `vsock:CID:PORT` (`CID` a number or `any`), `unix:PATH`, or `[tcp:]IP:PORT`.

mod stream;
#[cfg(test)]
mod tests;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use protocol::Endpoint;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_vsock::{VsockAddr, VsockListener, VsockStream};

use crate::error::{Error, Result};
pub use stream::Stream;

// `vsock:any:PORT` must mean what the vsock crate binds to every CID.
const _: () = assert!(protocol::endpoint::VSOCK_CID_ANY == tokio_vsock::VMADDR_CID_ANY);

/// Who connected to a [`Listener`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAddr {
    /// A TCP client.
    Tcp(SocketAddr),
    /// A Unix socket client (usually unnamed).
    Unix,
    /// A vsock peer.
    Vsock {
        /// The peer's context id.
        cid: u32,
        /// The peer's port.
        port: u32,
    },
}

/// A bound listening socket of any transport.
#[derive(Debug)]
pub struct Listener {
    inner: ListenerInner,
    /// The socket file to remove when the listener is dropped.
    unix_path: Option<PathBuf>,
}

#[derive(Debug)]
enum ListenerInner {
    Tcp(TcpListener),
    Unix(UnixListener),
    Vsock(VsockListener),
}

impl Listener {
    /// Binds `endpoint`. A stale Unix socket file (nothing listening) is replaced; a live one is not.
    ///
    /// # Errors
    ///
    /// [`Error::Bind`] if the socket cannot be bound, [`Error::SocketPathInUse`] if a Unix path is taken.
    pub async fn bind(endpoint: &Endpoint) -> Result<Self> {
        let bind_err = |source| Error::Bind {
            endpoint: endpoint.to_string(),
            source,
        };
        let (inner, unix_path) = match endpoint {
            Endpoint::Tcp(addr) => (
                ListenerInner::Tcp(TcpListener::bind(addr).await.map_err(bind_err)?),
                None,
            ),
            Endpoint::Unix(path) => {
                remove_stale_socket(path)?;
                let listener = UnixListener::bind(path).map_err(bind_err)?;
                (ListenerInner::Unix(listener), Some(path.clone()))
            }
            Endpoint::Vsock { cid, port } => {
                let listener =
                    VsockListener::bind(VsockAddr::new(*cid, *port)).map_err(bind_err)?;
                (ListenerInner::Vsock(listener), None)
            }
        };
        Ok(Self { inner, unix_path })
    }

    /// Accepts one connection. TCP connections get `TCP_NODELAY` (the relay forwards whole TLS records).
    ///
    /// # Errors
    ///
    /// The transport's accept error (e.g. `EMFILE` when out of file descriptors).
    pub async fn accept(&self) -> io::Result<(Stream, PeerAddr)> {
        match &self.inner {
            ListenerInner::Tcp(l) => {
                let (s, addr) = l.accept().await?;
                s.set_nodelay(true)?;
                Ok((Stream::Tcp(s), PeerAddr::Tcp(addr)))
            }
            ListenerInner::Unix(l) => {
                let (s, _) = l.accept().await?;
                Ok((Stream::Unix(s), PeerAddr::Unix))
            }
            ListenerInner::Vsock(l) => {
                let (s, addr) = l.accept().await?;
                Ok((
                    Stream::Vsock(s),
                    PeerAddr::Vsock {
                        cid: addr.cid(),
                        port: addr.port(),
                    },
                ))
            }
        }
    }

    /// The endpoint actually bound (useful after binding TCP port 0).
    ///
    /// # Errors
    ///
    /// The transport's `getsockname` error.
    pub fn local_endpoint(&self) -> io::Result<Endpoint> {
        Ok(match &self.inner {
            ListenerInner::Tcp(l) => Endpoint::Tcp(l.local_addr()?),
            ListenerInner::Unix(l) => {
                let addr = l.local_addr()?;
                let path = addr
                    .as_pathname()
                    .map(Path::to_path_buf)
                    .unwrap_or_default();
                Endpoint::Unix(path)
            }
            ListenerInner::Vsock(l) => {
                let addr = l.local_addr()?;
                Endpoint::Vsock {
                    cid: addr.cid(),
                    port: addr.port(),
                }
            }
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(path) = &self.unix_path {
            // Best effort: a leftover file is replaced on the next bind anyway.
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Connects to `endpoint`. TCP streams get `TCP_NODELAY`.
///
/// # Errors
///
/// The transport's connect error.
pub async fn connect(endpoint: &Endpoint) -> io::Result<Stream> {
    match endpoint {
        Endpoint::Tcp(addr) => {
            let s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            Ok(Stream::Tcp(s))
        }
        Endpoint::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path).await?)),
        Endpoint::Vsock { cid, port } => Ok(Stream::Vsock(
            VsockStream::connect(VsockAddr::new(*cid, *port)).await?,
        )),
    }
}

/// Removes `path` if it is a Unix socket nobody listens on; refuses anything else that exists.
fn remove_stale_socket(path: &Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let in_use = || Error::SocketPathInUse {
        path: path.to_path_buf(),
    };
    if !meta.file_type().is_socket() {
        return Err(in_use());
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(in_use()),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(std::fs::remove_file(path)?),
        Err(_) => Err(in_use()),
    }
}
