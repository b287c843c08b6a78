//! [`RelayConfig`] and its builder.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::transport::Endpoint;

/// What a new connection must achieve before `handshake_timeout` runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HandshakeRule {
    /// The client must send a TLS stream and complete its side of the handshake: its first complete
    /// application_data record (in TLS 1.3 this carries the client `Finished`) must arrive before the deadline.
    /// Anything that is not a TLS record stream is closed at once. See `tls_watch` for the exact framing rules.
    #[default]
    Tls,
    /// The client must send its first byte before the deadline (for protocols other than TLS).
    FirstByte,
}

/// Whether to send a PROXY protocol header to the enclave before the client's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyProtocol {
    /// Send nothing extra.
    #[default]
    Off,
    /// Send a binary PROXY protocol v2 header (`PROXY` command with the client's and the listener's TCP
    /// addresses; `LOCAL` when the client is not TCP).
    V2,
}

/// How the relay forwards connections. Built with [`RelayConfig::builder`].
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub(crate) upstream: Endpoint,
    pub(crate) max_connections: usize,
    pub(crate) handshake: HandshakeRule,
    pub(crate) handshake_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) drain_timeout: Duration,
    pub(crate) proxy_protocol: ProxyProtocol,
    pub(crate) buffer_size: usize,
    pub(crate) busy_poll: Duration,
}

impl RelayConfig {
    /// Starts a configuration that forwards to `upstream` (the enclave's vsock port or, in dev mode, its Unix
    /// socket).
    pub fn builder(upstream: Endpoint) -> RelayConfigBuilder {
        RelayConfigBuilder {
            config: Self {
                upstream,
                max_connections: 4096,
                handshake: HandshakeRule::Tls,
                handshake_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(3600),
                connect_timeout: Duration::from_secs(5),
                drain_timeout: Duration::from_secs(30),
                proxy_protocol: ProxyProtocol::Off,
                buffer_size: 16 * 1024,
                busy_poll: Duration::ZERO,
            },
        }
    }

    /// The endpoint connections are forwarded to.
    #[must_use]
    pub fn upstream(&self) -> &Endpoint {
        &self.upstream
    }
}

/// Builder for [`RelayConfig`]; every option has a default, validated in [`build`](Self::build).
#[derive(Debug, Clone)]
#[must_use]
pub struct RelayConfigBuilder {
    config: RelayConfig,
}

impl RelayConfigBuilder {
    /// Connections relayed at once; one more is accepted and closed immediately. Default 4096.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.max_connections = n;
        self
    }

    /// What counts as a completed handshake. Default [`HandshakeRule::Tls`].
    pub fn handshake_rule(mut self, rule: HandshakeRule) -> Self {
        self.config.handshake = rule;
        self
    }

    /// Deadline, counted from accept, for the handshake rule. Default 10 s.
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.config.handshake_timeout = d;
        self
    }

    /// Close a connection when no byte moved in either direction for this long. Default 3600 s: long enough for a
    /// quiet `kubectl get -w` over HTTP/1.1 (the API server ends watches after 30-60 min anyway).
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.config.idle_timeout = d;
        self
    }

    /// Give up connecting to the upstream after this long. Default 5 s.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.config.connect_timeout = d;
        self
    }

    /// On graceful shutdown, wait this long for open connections before cutting them. Default 30 s.
    pub fn drain_timeout(mut self, d: Duration) -> Self {
        self.config.drain_timeout = d;
        self
    }

    /// PROXY protocol toward the upstream. Default [`ProxyProtocol::Off`].
    pub fn proxy_protocol(mut self, p: ProxyProtocol) -> Self {
        self.config.proxy_protocol = p;
        self
    }

    /// Bytes buffered per direction per connection (1 KiB ..= 1 MiB). Default 16 KiB, one TLS record.
    pub fn buffer_size(mut self, n: usize) -> Self {
        self.config.buffer_size = n;
        self
    }

    /// After a connection forwarded client bytes to the enclave, keep polling for the answer this long before the
    /// relay thread parks (at most 1 ms). An answer that arrives within the window is forwarded without a thread
    /// wake-up, which saves tens of microseconds per request on a virtual machine, at the price of up to that
    /// much CPU per request. There is no spinning after an answer went back to the client. Default zero: off.
    pub fn busy_poll(mut self, d: Duration) -> Self {
        self.config.busy_poll = d;
        self
    }

    /// Validates and returns the configuration.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a zero connection limit, a zero timeout or a buffer size out of range.
    pub fn build(self) -> Result<RelayConfig> {
        let c = &self.config;
        let bad = |field, reason| Err(Error::InvalidConfig { field, reason });
        if c.max_connections == 0 {
            return bad("max_connections", "must be at least 1");
        }
        for (field, d) in [
            ("handshake_timeout", c.handshake_timeout),
            ("idle_timeout", c.idle_timeout),
            ("connect_timeout", c.connect_timeout),
            ("drain_timeout", c.drain_timeout),
        ] {
            if d.is_zero() {
                return bad(field, "must be greater than zero");
            }
        }
        if !(1024..=1024 * 1024).contains(&c.buffer_size) {
            return bad("buffer_size", "must be between 1 KiB and 1 MiB");
        }
        if c.busy_poll > Duration::from_millis(1) {
            return bad("busy_poll", "must be at most 1 ms");
        }
        Ok(self.config)
    }
}
