//! Where the server listens: TCP, a Unix socket, or (feature `vsock`) a
//! vsock port. Every listener yields byte streams; TLS runs on top.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use tokio::io::{AsyncRead, AsyncWrite};

use super::ServeError;

/// A listen address: `tcp:HOST:PORT`, `unix:PATH` or `vsock:CID:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP socket address.
    Tcp(SocketAddr),
    /// A Unix socket path.
    Unix(PathBuf),
    /// A vsock context id and port.
    Vsock {
        /// Context id (`u32::MAX` = any).
        cid: u32,
        /// Port.
        port: u32,
    },
}

impl FromStr for ListenAddr {
    type Err = ServeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| ServeError::Config(format!("invalid listen address {s:?}: {why}"));
        if let Some(a) = s.strip_prefix("tcp:") {
            return a
                .parse()
                .map(ListenAddr::Tcp)
                .map_err(|_| bad("expected tcp:HOST:PORT"));
        }
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(bad("empty path"));
            }
            return Ok(ListenAddr::Unix(PathBuf::from(p)));
        }
        if let Some(a) = s.strip_prefix("vsock:") {
            let (cid, port) = a
                .split_once(':')
                .ok_or_else(|| bad("expected vsock:CID:PORT"))?;
            return Ok(ListenAddr::Vsock {
                cid: cid.parse().map_err(|_| bad("bad CID"))?,
                port: port.parse().map_err(|_| bad("bad port"))?,
            });
        }
        Err(bad("expected a tcp:, unix: or vsock: prefix"))
    }
}

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
            addr: format!("{addr:?}"),
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

    #[test]
    fn parses_addresses() {
        assert_eq!(
            "tcp:127.0.0.1:6443".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp("127.0.0.1:6443".parse().unwrap())
        );
        assert_eq!(
            "unix:/tmp/x.sock".parse::<ListenAddr>().unwrap(),
            ListenAddr::Unix("/tmp/x.sock".into())
        );
        assert_eq!(
            "vsock:3:5000".parse::<ListenAddr>().unwrap(),
            ListenAddr::Vsock { cid: 3, port: 5000 }
        );
        for bad in ["127.0.0.1:1", "tcp:nope", "unix:", "vsock:1"] {
            assert!(bad.parse::<ListenAddr>().is_err(), "{bad}");
        }
    }

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
