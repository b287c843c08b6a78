//! The HTTP surface of the control plane: a Kubernetes-compatible API
//! server over TLS (rustls; HTTP/1.1 and HTTP/2 by ALPN) on any
//! [`Listener`]. Requests are authenticated ([`auth`]), routed against the
//! resource table ([`route`]), and served by generic handlers over the
//! [`ObjectStore`](crate::registry::ObjectStore): discovery, OpenAPI, and
//! get/list/watch/create/update/patch/delete for every table resource, and
//! attested first contact (`GET /attestation?nonce=<hex>`, [`attestation`]). Resource requests
//! are authorized by [`authz`] (nodes are restricted as upstream's Node authorizer and
//! NodeRestriction do); nodes join with stake tickets through [`nodes`] (`/join/v1/...`). Pods' logs,
//! exec, attach and port-forward, and `metrics.k8s.io`, go to the workers over the tunnels
//! they keep open ([`streams`]).
//!
//! Start with [`ApiServer::new`] and [`ApiServer::serve`].

mod accept;
pub mod access;
pub mod attestation;
pub mod audit;
pub mod auth;
pub mod authz;
mod component_status;
mod conversion;
pub mod discovery;
mod eviction;
pub mod http;
mod identity;
pub mod listener;
mod metrics;
pub mod nodes;
pub mod openapi;
pub mod pki;
pub mod protobuf;
pub mod query;
pub mod resource;
pub mod route;
pub mod sealed;
mod server;
pub mod status;
pub mod streams;
mod subresource;
mod watch;

pub use access::Security;
pub use attestation::Attestor;
pub use auth::{Authenticator, UserInfo};
pub use listener::{ListenAddr, Listener};
pub use pki::DevPki;
pub use server::{ApiConfig, ApiServer, Negotiated, tls_config, tls_config_with_client_cas};

use std::path::PathBuf;

/// Errors starting or running the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
///
/// Causes are part of the messages, so they are not also `source`s: `{:#}` chains would repeat them.
pub enum ServeError {
    /// A file could not be read or written.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// Binding the listener failed.
    #[error("bind {addr}: {cause}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        cause: std::io::Error,
    },
    /// Certificate generation or parsing failed.
    #[error("certificate: {0}")]
    Certificate(String),
    /// The TLS configuration was rejected.
    /// (The cause is part of the message, so it is not also the `source`: `{:#}` chains would repeat it.)
    #[error("tls: {0}")]
    Tls(rustls::Error),
    /// Inconsistent configuration or state.
    #[error("{0}")]
    Config(String),
}

impl From<rustls::Error> for ServeError {
    fn from(e: rustls::Error) -> Self {
        Self::Tls(e)
    }
}
