//! Where a production enclave finds its parent instance's services: [`protocol::parent`]'s
//! vsock ports, re-exported here for the enclave's own code, and [`dial`] to reach one.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

pub use protocol::parent::*;

/// A connected stream to one of the parent's services, whichever transport carried it.
pub trait ParentStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ParentStream for T {}

/// Dials `endpoint`, a service of the parent instance (`service` names it in errors):
/// `unix:PATH` in dev mode and tests, `vsock:CID:PORT` in an enclave (with the `vsock`
/// feature).
///
/// # Errors
/// The connection failed; `Unsupported` for `tcp:` (the enclave has no network of its own)
/// and `hybrid-vsock:` (a host-side transport), and for `vsock:` without the feature.
pub async fn dial(
    endpoint: &protocol::Endpoint,
    service: &str,
) -> io::Result<Box<dyn ParentStream>> {
    match endpoint {
        protocol::Endpoint::Unix(path) => {
            Ok(Box::new(tokio::net::UnixStream::connect(path).await?))
        }
        #[cfg(feature = "vsock")]
        protocol::Endpoint::Vsock { cid, port } => Ok(Box::new(
            tokio_vsock::VsockStream::connect(tokio_vsock::VsockAddr::new(*cid, *port)).await?,
        )),
        #[cfg(not(feature = "vsock"))]
        protocol::Endpoint::Vsock { .. } => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "connecting over vsock needs the enclave's `vsock` feature",
        )),
        protocol::Endpoint::Tcp(_) | protocol::Endpoint::HybridVsock { .. } => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "the {service} is reached over unix: or vsock:, not TCP or hybrid-vsock: (a host-side transport)"
            ),
        )),
    }
}
