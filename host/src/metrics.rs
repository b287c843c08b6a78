//! Prometheus metrics for the relay and the outbound proxy, served on a separate admin port.
//!
//! Metric names (prefix `relay_` or `outbound_`, chosen at registration):
//!
//! | name | type | labels |
//! |---|---|---|
//! | `<p>_connections_accepted_total` | counter | |
//! | `<p>_connections_rejected_total` | counter | (refused at the connection limit) |
//! | `<p>_connections_active` | gauge | |
//! | `<p>_connections_closed_total` | counter | `reason` = [`CloseReason`] |
//! | `<p>_bytes_total` | counter | `direction` = `inbound` (toward the enclave side) or `outbound` |
//! | `<p>_errors_total` | counter | `kind` = `accept`, `connect`, `io`, `protocol`, `timeout`, `forbidden` |

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

type Labels = [(&'static str, &'static str); 1];

/// Why a relayed connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Both sides finished normally (EOF in both directions).
    Done,
    /// The client closed before sending a byte.
    ClientSilent,
    /// The handshake deadline passed (see [`crate::relay::HandshakeRule`]).
    HandshakeTimeout,
    /// No byte moved in either direction for the idle timeout.
    IdleTimeout,
    /// The first bytes were not TLS records although TLS was required.
    NotTls,
    /// The upstream (enclave or outbound target) could not be reached.
    ConnectFailed,
    /// A read or write failed (reset, broken pipe, ...).
    IoError,
    /// Closed by graceful shutdown before it started relaying.
    Shutdown,
    /// The outbound proxy refused a destination that is not on the allowlist.
    Forbidden,
    /// The outbound proxy could not parse the enclave's CONNECT request.
    BadRequest,
}

impl CloseReason {
    /// The label value used in `<p>_connections_closed_total{reason=...}`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::ClientSilent => "client_silent",
            Self::HandshakeTimeout => "handshake_timeout",
            Self::IdleTimeout => "idle_timeout",
            Self::NotTls => "not_tls",
            Self::ConnectFailed => "connect_failed",
            Self::IoError => "io_error",
            Self::Shutdown => "shutdown",
            Self::Forbidden => "forbidden",
            Self::BadRequest => "bad_request",
        }
    }

    const ALL: [Self; 10] = [
        Self::Done,
        Self::ClientSilent,
        Self::HandshakeTimeout,
        Self::IdleTimeout,
        Self::NotTls,
        Self::ConnectFailed,
        Self::IoError,
        Self::Shutdown,
        Self::Forbidden,
        Self::BadRequest,
    ];

    /// The `errors_total{kind}` this close counts as, if it is an error.
    const fn error_kind(self) -> Option<&'static str> {
        match self {
            Self::Done | Self::ClientSilent | Self::Shutdown => None,
            Self::HandshakeTimeout | Self::IdleTimeout => Some("timeout"),
            Self::NotTls | Self::BadRequest => Some("protocol"),
            Self::Forbidden => Some("forbidden"),
            Self::ConnectFailed => Some("connect"),
            Self::IoError => Some("io"),
        }
    }
}

/// Counters for one forwarding service. Cheap to clone (all handles are shared).
#[derive(Debug, Clone)]
pub struct TrafficMetrics {
    accepted: Counter,
    rejected: Counter,
    active: Gauge,
    closed: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    pub(crate) bytes_inbound: Counter,
    pub(crate) bytes_outbound: Counter,
}

impl TrafficMetrics {
    /// Creates the metrics and registers them under `prefix` (e.g. `relay`).
    pub fn register(registry: &mut Registry, prefix: &str) -> Self {
        let sub = registry.sub_registry_with_prefix(prefix);
        let accepted = Counter::default();
        let rejected = Counter::default();
        let active = Gauge::default();
        let closed = Family::<Labels, Counter>::default();
        let errors = Family::<Labels, Counter>::default();
        let bytes = Family::<Labels, Counter>::default();
        sub.register(
            "connections_accepted",
            "Connections accepted",
            accepted.clone(),
        );
        sub.register(
            "connections_rejected",
            "Connections refused at the connection limit",
            rejected.clone(),
        );
        sub.register("connections_active", "Connections open now", active.clone());
        sub.register(
            "connections_closed",
            "Connections closed, by reason",
            closed.clone(),
        );
        sub.register("bytes", "Bytes forwarded, by direction", bytes.clone());
        sub.register("errors", "Errors, by kind", errors.clone());
        // Create every series up front so a scrape shows zeros instead of missing series.
        for reason in CloseReason::ALL {
            let _ = closed.get_or_create(&[("reason", reason.as_str())]);
        }
        for kind in [
            "accept",
            "connect",
            "io",
            "protocol",
            "timeout",
            "forbidden",
        ] {
            let _ = errors.get_or_create(&[("kind", kind)]);
        }
        let bytes_inbound = bytes.get_or_create(&[("direction", "inbound")]).clone();
        let bytes_outbound = bytes.get_or_create(&[("direction", "outbound")]).clone();
        Self {
            accepted,
            rejected,
            active,
            closed,
            errors,
            bytes_inbound,
            bytes_outbound,
        }
    }

    /// Metrics registered nowhere (for callers that do not export them).
    #[must_use]
    pub fn unregistered() -> Self {
        Self::register(&mut Registry::default(), "unused")
    }

    pub(crate) fn accepted(&self) {
        self.accepted.inc();
        self.active.inc();
    }

    pub(crate) fn rejected(&self) {
        self.rejected.inc();
    }

    pub(crate) fn accept_error(&self) {
        self.errors.get_or_create(&[("kind", "accept")]).inc();
    }

    pub(crate) fn closed(&self, reason: CloseReason) {
        self.active.dec();
        self.closed
            .get_or_create(&[("reason", reason.as_str())])
            .inc();
        if let Some(kind) = reason.error_kind() {
            self.errors.get_or_create(&[("kind", kind)]).inc();
        }
    }

    /// Connections open now.
    #[must_use]
    pub fn active(&self) -> i64 {
        self.active.get()
    }

    /// Connections closed so far for `reason`.
    #[must_use]
    pub fn closed_count(&self, reason: CloseReason) -> u64 {
        self.closed
            .get_or_create(&[("reason", reason.as_str())])
            .get()
    }

    /// Connections refused at the limit so far.
    #[must_use]
    pub fn rejected_count(&self) -> u64 {
        self.rejected.get()
    }
}

/// Renders `registry` in the Prometheus/OpenMetrics text format.
///
/// # Errors
///
/// Only if formatting fails, which writing to a `String` does not.
pub fn render(registry: &Registry) -> std::result::Result<String, std::fmt::Error> {
    let mut out = String::new();
    encode(&mut out, registry)?;
    Ok(out)
}

/// Serves `GET /metrics` (and `GET /healthz`) on `listener` until `shutdown` fires.
///
/// # Errors
///
/// [`Error::Metrics`] if the server fails.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> Result<()> {
    use axum::http::{StatusCode, header};
    use axum::routing::get;

    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = Arc::clone(&registry);
                async move {
                    match render(&registry) {
                        Ok(body) => (
                            StatusCode::OK,
                            [(
                                header::CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            body,
                        ),
                        Err(_) => (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            [(header::CONTENT_TYPE, "text/plain")],
                            "cannot encode metrics".to_owned(),
                        ),
                    }
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(Error::Metrics)
}
