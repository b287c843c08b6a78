//! Where the server listens: TCP, a Unix socket, or (feature `vsock`) a
//! vsock port. Every listener yields byte streams; TLS runs on top.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};

use super::ServeError;

/// A listen address: `protocol::Endpoint`, i.e. `[tcp:]IP:PORT`, `unix:PATH` or `vsock:CID:PORT` (`CID` may be
/// `any`).
pub type ListenAddr = protocol::Endpoint;

/// A connected byte stream.
pub trait Connection: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Connection for T {}

/// A bound listener.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(tokio::net::TcpListener),
    /// Unix socket.
    Unix(tokio::net::UnixListener),
    /// vsock.
    #[cfg(feature = "vsock")]
    Vsock(tokio_vsock::VsockListener),
}

impl Listener {
    /// Binds `addr`. A stale Unix socket file is replaced.
    ///
    /// # Errors
    /// Bind failures; vsock without the `vsock` feature.
    pub async fn bind(addr: &ListenAddr) -> Result<Self, ServeError> {
        let io = |cause| ServeError::Bind {
            addr: addr.to_string(),
            cause,
        };
        match addr {
            ListenAddr::Tcp(a) => Ok(Listener::Tcp(
                tokio::net::TcpListener::bind(a).await.map_err(io)?,
            )),
            ListenAddr::Unix(p) => {
                if p.exists() {
                    std::fs::remove_file(p).map_err(io)?;
                }
                Ok(Listener::Unix(
                    tokio::net::UnixListener::bind(p).map_err(io)?,
                ))
            }
            #[cfg(feature = "vsock")]
            ListenAddr::Vsock { cid, port } => Ok(Listener::Vsock(
                tokio_vsock::VsockListener::bind(tokio_vsock::VsockAddr::new(*cid, *port))
                    .map_err(io)?,
            )),
            #[cfg(not(feature = "vsock"))]
            ListenAddr::Vsock { .. } => Err(ServeError::Config(
                "vsock listening needs the `vsock` feature".into(),
            )),
        }
    }

    /// The bound address, printable (`tcp:127.0.0.1:6443`, `unix:/path`).
    pub fn local_addr(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map(|a| format!("tcp:{a}"))
                .unwrap_or_else(|_| "tcp:?".into()),
            Listener::Unix(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
                .unwrap_or_else(|| "unix:?".into()),
            #[cfg(feature = "vsock")]
            Listener::Vsock(l) => l
                .local_addr()
                .map(|a| format!("vsock:{}:{}", a.cid(), a.port()))
                .unwrap_or_else(|_| "vsock:?".into()),
        }
    }

    /// The TCP address, if this is a TCP listener.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            _ => None,
        }
    }

    /// Accepts one connection and a description of the peer.
    ///
    /// # Errors
    /// Accept failures (e.g. too many open files); the caller retries.
    pub async fn accept(&self) -> std::io::Result<(Box<dyn Connection>, String)> {
        match self {
            Listener::Tcp(l) => {
                let (s, a) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok((Box::new(s), a.to_string()))
            }
            Listener::Unix(l) => {
                let (s, _) = l.accept().await?;
                Ok((Box::new(s), "unix".into()))
            }
            #[cfg(feature = "vsock")]
            Listener::Vsock(l) => {
                let (s, a) = l.accept().await?;
                Ok((Box::new(s), format!("vsock:{}", a.cid())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unix_listener_binds_and_accepts() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.sock");
        let l = Listener::bind(&ListenAddr::Unix(p.clone())).await.unwrap();
        assert!(l.local_addr().starts_with("unix:"));
        let c = tokio::net::UnixStream::connect(&p);
        let (a, b) = tokio::join!(l.accept(), c);
        a.unwrap();
        b.unwrap();
    }
}
