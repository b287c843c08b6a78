//! The worker's end of the node tunnel (see [`protocol::tunnel`]): the worker dials the
//! enclave, upgrades one TLS connection (its node certificate) and then *serves* HTTP/2 on it,
//! so the enclave can open streams to this node without ever dialing it.
//!
//! - [`run`] keeps the tunnel up: dial, upgrade, serve, and on any loss dial again with
//!   backoff; [`TunnelState`] says where it is.
//! - [`ContainerStreams`] is the seam to the container runtime: logs, exec, attach,
//!   port-forward and usage for the pods of this node. The CRI runtime implements it;
//!   `fake::FakeContainers` (feature `testing`) runs local processes instead.
//! - [`TunnelTls`] is the seam to the node's credentials: the TLS client configuration (the
//!   node certificate, and how the enclave's certificate is verified), asked for at every
//!   dial so renewed certificates are used. [`PemCredentials`] reads PEM files; the join's
//!   [`ApiAccess`](crate::client::ApiAccess) pins the attested key and presents the node
//!   certificate.
//! - [`agent_task`] runs the tunnel as a task of the node agent, with the join's credentials.
//! - [`cri_log`] reads CRI-format container log files as `pods/log` returns them (follow,
//!   tail, since, timestamps, limitBytes), for any implementation of the seam.

pub mod cri_log;
mod dial;
mod exec;
#[cfg(any(test, feature = "testing"))]
pub mod fake;
mod serve;
mod stats;
mod streams;
mod task;
mod tls;

pub use dial::{Backoff, TunnelConfig, TunnelState, run};
pub use stats::{CumulativeUsage, PodUsage, UsageSample};
pub use streams::{
    BoxFuture, ByteStream, ContainerStreams, Duplex, Process, StreamError, boxed_duplex,
};
pub use task::agent_task;
pub use tls::{PemCredentials, TunnelTls};
