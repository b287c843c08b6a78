//! The enclave's only way out: fixed routes from a vsock (or dev Unix) port to an allowlisted `host:port`.
//!
//! Compare AWS `vsock-proxy`: it binds one vsock port per remote endpoint and refuses a remote that is not in its
//! YAML allowlist. Here every [`OutboundRoute`] maps one listening [`Endpoint`] to one [`Target`], and
//! [`OutboundProxy::new`] refuses any route whose target is not on the [`Allowlist`], before binding anything.
//! The enclave cannot name a destination at all: a port that has no route has no listener. The target host name
//! is resolved on every connection (DNS answers may change), and the proxy dials the resolved addresses in order.
//! Unlike `vsock-proxy` (4 worker threads by default), connections are async tasks bounded by `max_connections`.
//!
//! [`ConnectProxy`] is the dynamic variant: one endpoint, the enclave names `host:port` in an HTTP `CONNECT`
//! request, and the allowlist is checked per request (`403 Forbidden` otherwise).

mod connect;
#[cfg(test)]
mod tests;

pub use connect::{BoundConnectProxy, ConnectProxy};

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::accept::accept_until_shutdown;
use crate::error::{Error, Result};
use crate::metrics::{CloseReason, TrafficMetrics};
use crate::splice::{SpliceRules, splice};
use crate::transport::{Endpoint, Listener};

/// A TCP destination: a DNS name or IP literal and a port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    host: String,
    port: u16,
}

impl Target {
    /// The host name or IP literal (without brackets).
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl FromStr for Target {
    type Err = Error;

    /// Parses `host:port` or `[v6]:port`. Host names are compared case-insensitively (stored lowercase).
    fn from_str(input: &str) -> Result<Self> {
        let bad = |reason| Error::InvalidEndpoint {
            input: input.to_owned(),
            reason,
        };
        let (host, port) = input
            .rsplit_once(':')
            .ok_or_else(|| bad("expected HOST:PORT"))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty()
            || host.contains(['/', ' ', '@'])
            || (host.contains(':') && !input.starts_with('['))
        {
            return Err(bad("expected HOST:PORT (IPv6 as [addr]:port)"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| bad("port must be a number from 1 to 65535"))?;
        if port == 0 {
            return Err(bad("port must be a number from 1 to 65535"));
        }
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The destinations the enclave may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    entries: BTreeSet<Target>,
}

impl Allowlist {
    /// An allowlist of exactly `targets`.
    pub fn new(targets: impl IntoIterator<Item = Target>) -> Self {
        Self {
            entries: targets.into_iter().collect(),
        }
    }

    /// Whether `target` is allowed (exact host and port match).
    #[must_use]
    pub fn allows(&self, target: &Target) -> bool {
        self.entries.contains(target)
    }
}

/// One listening endpoint and the one target it forwards to. Parses from `ENDPOINT=HOST:PORT`, e.g.
/// `vsock:any:8000=kms.us-east-1.amazonaws.com:443`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRoute {
    /// Where the enclave connects.
    pub listen: Endpoint,
    /// Where its bytes go.
    pub target: Target,
}

impl FromStr for OutboundRoute {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self> {
        let (listen, target) = input
            .split_once('=')
            .ok_or_else(|| Error::InvalidEndpoint {
                input: input.to_owned(),
                reason: "expected LISTEN_ENDPOINT=HOST:PORT",
            })?;
        Ok(Self {
            listen: listen.parse()?,
            target: target.parse()?,
        })
    }
}

/// The outbound proxy service.
#[derive(Debug)]
pub struct OutboundProxy {
    routes: Vec<OutboundRoute>,
    metrics: TrafficMetrics,
    idle_timeout: Duration,
    connect_timeout: Duration,
    max_connections: usize,
}

impl OutboundProxy {
    /// Checks every route against `allowlist`. Defaults: idle timeout 300 s, connect timeout 5 s, 256
    /// connections at once across all routes.
    ///
    /// # Errors
    ///
    /// [`Error::NotAllowed`] naming the first route whose target is not on the allowlist.
    pub fn new(
        routes: Vec<OutboundRoute>,
        allowlist: &Allowlist,
        metrics: TrafficMetrics,
    ) -> Result<Self> {
        if let Some(route) = routes.iter().find(|r| !allowlist.allows(&r.target)) {
            return Err(Error::NotAllowed {
                target: route.target.to_string(),
            });
        }
        Ok(Self {
            routes,
            metrics,
            idle_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(5),
            max_connections: 256,
        })
    }

    /// Overrides the idle timeout (no byte either way for this long closes the connection).
    #[must_use]
    pub fn with_idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }

    /// Binds every route's endpoint. Nothing is served until [`BoundOutbound::serve`].
    ///
    /// # Errors
    ///
    /// [`Error::Bind`] or [`Error::SocketPathInUse`] if a route's endpoint cannot be bound.
    pub async fn bind(self) -> Result<BoundOutbound> {
        let mut listeners = Vec::with_capacity(self.routes.len());
        for route in &self.routes {
            listeners.push((
                Listener::bind(&route.listen).await?,
                Arc::new(route.target.clone()),
            ));
        }
        Ok(BoundOutbound {
            proxy: self,
            listeners,
        })
    }
}

/// An [`OutboundProxy`] whose endpoints are bound.
#[derive(Debug)]
pub struct BoundOutbound {
    proxy: OutboundProxy,
    listeners: Vec<(Listener, Arc<Target>)>,
}

impl BoundOutbound {
    /// The endpoints actually bound, with their targets, in route order.
    #[must_use]
    pub fn endpoints(&self) -> Vec<(Endpoint, Target)> {
        self.listeners
            .iter()
            .filter_map(|(l, t)| l.local_endpoint().ok().map(|e| (e, Target::clone(t))))
            .collect()
    }

    /// Forwards until `shutdown` fires. Open connections are cut at shutdown: the enclave's clients retry.
    pub async fn serve(self, shutdown: CancellationToken) {
        let proxy = &self.proxy;
        let limit = Arc::new(Semaphore::new(proxy.max_connections));
        let mut tasks = JoinSet::new();
        for (listener, target) in self.listeners {
            tasks.spawn(accept_loop(
                listener,
                target,
                Arc::clone(&limit),
                proxy.metrics.clone(),
                (proxy.idle_timeout, proxy.connect_timeout),
                shutdown.clone(),
            ));
        }
        while tasks.join_next().await.is_some() {}
    }
}

async fn accept_loop(
    listener: Listener,
    target: Arc<Target>,
    limit: Arc<Semaphore>,
    metrics: TrafficMetrics,
    (idle_timeout, connect_timeout): (Duration, Duration),
    shutdown: CancellationToken,
) {
    let admit = |enclave, _peer, _open| {
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            metrics.rejected();
            return None;
        };
        metrics.accepted();
        let (metrics, target) = (metrics.clone(), Arc::clone(&target));
        Some(async move {
            let reason = match dial(&target, connect_timeout).await {
                Some(remote) => {
                    let rules = SpliceRules {
                        idle_timeout,
                        buffer_size: 16 * 1024,
                        tls: None,
                        handshake_deadline: Instant::now(),
                        inbound: &metrics.bytes_inbound,
                        outbound: &metrics.bytes_outbound,
                        busy_poll: Duration::ZERO,
                    };
                    splice(enclave, remote, rules).await
                }
                None => CloseReason::ConnectFailed,
            };
            metrics.closed(reason);
            drop(permit);
        })
    };
    let on_error = |e: &std::io::Error| {
        metrics.accept_error();
        tracing::warn!(error = %e, "outbound accept failed");
    };
    let mut conns = accept_until_shutdown(&listener, &shutdown, admit, on_error).await;
    conns.shutdown().await;
}

/// Resolves `target` now and dials its addresses in order.
async fn dial(target: &Target, connect_timeout: Duration) -> Option<TcpStream> {
    let addrs = match tokio::net::lookup_host((target.host(), target.port())).await {
        Ok(addrs) => addrs,
        Err(e) => {
            tracing::warn!(%target, error = %e, "cannot resolve outbound target");
            return None;
        }
    };
    for addr in addrs {
        match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Some(s);
            }
            Ok(Err(e)) => tracing::debug!(%target, %addr, error = %e, "outbound connect failed"),
            Err(_) => tracing::debug!(%target, %addr, "outbound connect timed out"),
        }
    }
    tracing::warn!(%target, "no address of the outbound target answered");
    None
}
