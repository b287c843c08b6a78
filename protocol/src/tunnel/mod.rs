//! The node tunnel: how the enclave reaches a worker without ever dialing one.
//!
//! Each worker keeps one connection open to the enclave (through the host relay, TLS with its
//! node certificate): it sends `GET` [`TUNNEL_PATH`] with `Connection: Upgrade` and
//! `Upgrade:` [`TUNNEL_UPGRADE`], authenticated as `system:node:NAME`. On the `101` answer the
//! roles reverse: the enclave speaks HTTP/2 as the client on the upgraded connection and the
//! worker serves it. Every stream the enclave needs (a container's log, an exec or attach
//! session, one port-forward connection, a usage sample) is one HTTP/2 request described by a
//! [`TunnelRequest`]:
//!
//! | request | method and path | request body | response body |
//! |---|---|---|---|
//! | [`TunnelRequest::Logs`] | `GET /containerLogs/{ns}/{pod}/{container}?…` | none | the log bytes, as `pods/log` returns them |
//! | [`TunnelRequest::Exec`] | `POST /exec/{ns}/{pod}/{container}?command=…` | [`channel`] frames: stdin, resize, close | [`channel`] frames: stdout, stderr, then the [`channel::StreamEnd`] |
//! | [`TunnelRequest::Attach`] | `POST /attach/{ns}/{pod}/{container}?…` | as exec | as exec |
//! | [`TunnelRequest::PortForward`] | `POST /portForward/{ns}/{pod}?port=N` | bytes to the pod's port | bytes from it |
//! | [`TunnelRequest::Stats`] | `GET /stats` | none | a [`stats::NodeStats`] |
//!
//! A worker that cannot serve a request answers a non-200 status whose body is a one-line
//! message ([`RefusalKind`] names the statuses); the enclave turns it into a Kubernetes
//! `Status` for the user. The paths follow the kubelet's (`/containerLogs`, `/exec`,
//! `/attach`, `/portForward`), with the kubelet's `input`/`output`/`error`/`tty` flags.

pub mod channel;
mod query;
mod request;
pub mod stats;

pub use request::{LogOptions, PodRef, RefusalKind, StdStreams, TunnelRequest, TunnelRequestError};

/// The path a worker opens its tunnel on.
pub const TUNNEL_PATH: &str = "/daas/v1/tunnel";

/// The `Upgrade` token of the tunnel (HTTP/2 with reversed roles on the upgraded connection).
pub const TUNNEL_UPGRADE: &str = "daas-tunnel/1";

/// The user-name prefix of node identities (`system:node:NAME`), as upstream's.
pub const NODE_USER_PREFIX: &str = "system:node:";

/// The group every node identity carries, as upstream's.
pub const NODES_GROUP: &str = "system:nodes";

/// The node name of a node identity: the user is `system:node:NAME` with a non-empty `NAME`
/// and is in [`NODES_GROUP`] (upstream's Node authorizer asks both).
pub fn node_name<'a>(user: &'a str, groups: &[String]) -> Option<&'a str> {
    let name = user.strip_prefix(NODE_USER_PREFIX)?;
    (!name.is_empty() && groups.iter().any(|g| g == NODES_GROUP)).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_identities_need_the_prefix_a_name_and_the_group() {
        let nodes = vec![NODES_GROUP.to_string()];
        assert_eq!(node_name("system:node:w1", &nodes), Some("w1"));
        assert_eq!(node_name("system:node:", &nodes), None);
        assert_eq!(node_name("system:node:w1", &[]), None);
        assert_eq!(node_name("admin", &nodes), None);
    }
}
