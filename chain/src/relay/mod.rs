//! The registry through the host: [`RelayRegistry`] (in the enclave) and [`serve_relay`] (on the
//! parent instance, `daas-host registry`).
//!
//! An enclave has no network. It reaches the registry the way it reaches its journal: over vsock
//! to a service on the parent, which holds the real backend (a local file, or a Sui fullnode and
//! the keystore that pays for transactions). The relay carries what an enclave asks: the cluster,
//! the latest anchor, recording an anchor, and a stake. It adds no trust: anchors are Ed25519
//! signed by the enclave (the registry checks them on record; the enclave checks them again when
//! it reads one back, [`crate::verify_anchor_signature`]), so the host can delay or withhold them
//! but not forge them. What it can do is answer with an older, genuine anchor; reading the chain
//! directly over TLS through the outbound proxy closes that and is not done here.
//!
//! Wire: one call per connection. Request and reply are frames `u32 BE length | JSON`, at most
//! [`MAX_FRAME_BYTES`]. Request `{"call": "cluster" | "latest_anchor" | "record_anchor" |
//! "stake_info", ...}`; reply `{"ok": VALUE}` or `{"error": MESSAGE}`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::anchor::SignedAnchor;
use crate::error::{Error, Result};
use crate::registry::Registry;
use crate::types::{Anchor, ClusterState, LiveEnclave, StakeInfo};

/// Largest request or reply frame.
pub const MAX_FRAME_BYTES: u32 = 1 << 20;
/// How long one call may take, connect included.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the registry relay listens: `unix:PATH` or `vsock:CID:PORT` (CID 3 is a Nitro enclave's
/// parent; connecting over vsock needs chain's `vsock` feature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEndpoint {
    /// A Unix stream socket.
    Unix(PathBuf),
    /// AF_VSOCK.
    Vsock {
        /// Context id.
        cid: u32,
        /// Port.
        port: u32,
    },
}

impl FromStr for RelayEndpoint {
    type Err = &'static str;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("empty Unix socket path");
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = s.strip_prefix("vsock:") {
            let (cid, port) = rest.split_once(':').ok_or("expected vsock:CID:PORT")?;
            let cid = cid.parse().map_err(|_| "the vsock CID must be a number")?;
            let port = port
                .parse()
                .map_err(|_| "the vsock port must be a number")?;
            return Ok(Self::Vsock { cid, port });
        }
        Err("expected unix:PATH or vsock:CID:PORT")
    }
}

impl fmt::Display for RelayEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
            Self::Vsock { cid, port } => write!(f, "vsock:{cid}:{port}"),
        }
    }
}

/// One call.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
enum Call {
    Cluster,
    LatestAnchor,
    RecordAnchor { anchor: SignedAnchor },
    StakeInfo { node_name: String },
}

impl Call {
    fn name(&self) -> &'static str {
        match self {
            Call::Cluster => "cluster",
            Call::LatestAnchor => "latest_anchor",
            Call::RecordAnchor { .. } => "record_anchor",
            Call::StakeInfo { .. } => "stake_info",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply<T> {
    Ok(T),
    Error(String),
}

/// A connected stream of either transport.
trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

/// The registry as the host's relay presents it.
#[derive(Debug, Clone)]
pub struct RelayRegistry {
    endpoint: RelayEndpoint,
}

impl RelayRegistry {
    /// A registry reached through the relay at `endpoint`. Nothing is connected until a call.
    #[must_use]
    pub fn new(endpoint: RelayEndpoint) -> Self {
        Self { endpoint }
    }

    /// The relay's endpoint.
    #[must_use]
    pub fn endpoint(&self) -> &RelayEndpoint {
        &self.endpoint
    }

    async fn connect(&self) -> std::io::Result<Box<dyn Conn>> {
        match &self.endpoint {
            RelayEndpoint::Unix(path) => Ok(Box::new(tokio::net::UnixStream::connect(path).await?)),
            #[cfg(feature = "vsock")]
            RelayEndpoint::Vsock { cid, port } => Ok(Box::new(
                tokio_vsock::VsockStream::connect(tokio_vsock::VsockAddr::new(*cid, *port)).await?,
            )),
            #[cfg(not(feature = "vsock"))]
            RelayEndpoint::Vsock { .. } => Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "connecting over vsock needs chain's `vsock` feature",
            )),
        }
    }

    async fn call<T: serde::de::DeserializeOwned>(&self, call: Call) -> Result<T> {
        let name = call.name();
        let io = |reason: String| Error::Relay {
            endpoint: self.endpoint.to_string(),
            reason,
        };
        let exchange = async {
            let mut conn = self
                .connect()
                .await
                .map_err(|e| io(format!("connect: {e}")))?;
            let request = serde_json::to_vec(&call).map_err(|e| io(e.to_string()))?;
            write_frame(&mut conn, &request)
                .await
                .map_err(|e| io(format!("sending {name}: {e}")))?;
            read_frame(&mut conn)
                .await
                .map_err(|e| io(format!("reading the reply to {name}: {e}")))
        };
        let reply = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| io(format!("{name} took longer than {CALL_TIMEOUT:?}")))??;
        match serde_json::from_slice::<Reply<T>>(&reply)
            .map_err(|e| io(format!("malformed reply to {name}: {e}")))?
        {
            Reply::Ok(value) => Ok(value),
            Reply::Error(message) => Err(Error::RelayRefused {
                call: name,
                message,
            }),
        }
    }
}

impl Registry for RelayRegistry {
    async fn cluster(&self) -> Result<ClusterState> {
        self.call(Call::Cluster).await
    }

    async fn register_enclave(&self, _document: &[u8]) -> Result<LiveEnclave> {
        Err(Error::RelayUnsupported {
            call: "register_enclave",
        })
    }

    async fn stake(&self, _node_name: &str, _amount: u64) -> Result<StakeInfo> {
        Err(Error::RelayUnsupported { call: "stake" })
    }

    async fn request_unstake(&self, _node_name: &str) -> Result<u64> {
        Err(Error::RelayUnsupported {
            call: "request_unstake",
        })
    }

    async fn withdraw(&self, _node_name: &str) -> Result<u64> {
        Err(Error::RelayUnsupported { call: "withdraw" })
    }

    async fn stake_info(&self, node_name: &str) -> Result<Option<StakeInfo>> {
        self.call(Call::StakeInfo {
            node_name: node_name.to_owned(),
        })
        .await
    }

    async fn record_anchor(&self, anchor: SignedAnchor) -> Result<Anchor> {
        self.call(Call::RecordAnchor { anchor }).await
    }

    async fn latest_anchor(&self) -> Result<Option<Anchor>> {
        self.call(Call::LatestAnchor).await
    }
}

/// Answers one relay call read from `stream` with `registry` (the host side). Errors of the
/// registry go back to the caller as its message; I/O and protocol errors end the connection
/// and are returned.
///
/// # Errors
///
/// The stream's I/O error, an oversized or malformed request (after telling the caller).
pub async fn serve_relay<R, S>(registry: &R, stream: &mut S) -> std::io::Result<()>
where
    R: Registry + ?Sized,
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let request = read_frame(stream).await?;
    let call: Call = match serde_json::from_slice(&request) {
        Ok(call) => call,
        Err(e) => {
            let reply = serde_json::to_vec(&Reply::<()>::Error(format!("malformed request: {e}")))
                .map_err(std::io::Error::other)?;
            write_frame(stream, &reply).await?;
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
        }
    };
    tracing::debug!(call = call.name(), "registry relay call");
    let reply = match call {
        Call::Cluster => encode(registry.cluster().await),
        Call::LatestAnchor => encode(registry.latest_anchor().await),
        Call::RecordAnchor { anchor } => encode(registry.record_anchor(anchor).await),
        Call::StakeInfo { node_name } => encode(registry.stake_info(&node_name).await),
    }
    .map_err(std::io::Error::other)?;
    write_frame(stream, &reply).await
}

fn encode<T: Serialize>(result: Result<T>) -> serde_json::Result<Vec<u8>> {
    match result {
        Ok(value) => serde_json::to_vec(&Reply::Ok(value)),
        Err(e) => serde_json::to_vec(&Reply::<()>::Error(error_chain(&e))),
    }
}

/// An error and its causes on one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn write_frame<S: AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    body: &[u8],
) -> std::io::Result<()> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|len| *len <= MAX_FRAME_BYTES)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too large"))?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await
}

async fn read_frame<S: AsyncRead + Unpin + ?Sized>(stream: &mut S) -> std::io::Result<Vec<u8>> {
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).await?;
    let len = u32::from_be_bytes(head);
    if len > MAX_FRAME_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes (limit {MAX_FRAME_BYTES})"),
        ));
    }
    let mut body = vec![0u8; len as usize];
    stream.read_exact(&mut body).await?;
    Ok(body)
}

#[cfg(test)]
mod tests;
