//! Pods' streams through their workers: `pods/log`, `pods/exec`, `pods/attach` and
//! `pods/portforward`, and `metrics.k8s.io` from what the workers report. The enclave never
//! dials a worker: each keeps a [`tunnel`] open, and every stream is one request on it.
//!
//! kubectl's protocols are spoken here, as upstream's API server and kubelet together speak
//! them: WebSocket `v5.channel.k8s.io`/`v4.channel.k8s.io` and SPDY/3.1 (`v5`…`v2`) for exec
//! and attach; SPDY/3.1 for port-forward, raw or tunnelled in WebSocket messages
//! (`SPDY/3.1+portforward.k8s.io`).
//!
//! Authorization: the API server's authorizer chain is asked before anything is read, with
//! upstream's verbs: `get` on `pods/log`, `create` on `pods/exec`, `pods/attach` and
//! `pods/portforward` (WebSocket clients send GET; upstream 1.31+ still asks `create`), so a
//! node identity reaches none of them (as upstream's node authorizer). `ApiServer::pod_stream`
//! still refuses a node any pod not bound to it.

// The refusals are the HTTP responses themselves, made once per request: boxing them buys nothing.
#![allow(clippy::result_large_err)]

mod body;
mod exec;
mod logs;
pub mod metrics;
mod portforward;
mod remote;
pub mod tunnel;
mod upgrade;

use hyper::body::Incoming;
use hyper::{Request, Response};
use protocol::tunnel::PodRef;
use serde_json::Value;

pub use tunnel::{TunnelError, Tunnels};

use super::ApiServer;
use super::http::{self, Body};
use super::route::{self, ResourceTarget};
use crate::registry::{Error, UserInfo};

/// The streaming subresources of pods.
const STREAMS: &[&str] = &["log", "exec", "attach", "portforward"];

/// Whether `target` is one of the pod streams served here (before its body is read).
pub(crate) fn is_pod_stream(target: &ResourceTarget) -> bool {
    let info = &target.info;
    info.group.is_empty()
        && info.resource == "pods"
        && target.name.is_some()
        && target
            .subresource
            .as_deref()
            .is_some_and(|s| STREAMS.contains(&s))
}

/// The pod a stream goes to.
#[derive(Debug, Clone)]
pub(crate) struct StreamPod {
    /// The pod as stored.
    pub(crate) object: Value,
    /// Its namespace, name and UID.
    pub(crate) pod: PodRef,
    /// The node it is bound to.
    pub(crate) node: String,
}

impl StreamPod {
    /// The container a request names, or the only one; upstream's choice and messages.
    pub(crate) fn container(&self, requested: Option<&str>) -> Result<String, Response<Body>> {
        let names = |key: &str| -> Vec<String> {
            self.object
                .pointer(&format!("/spec/{key}"))
                .and_then(Value::as_array)
                .map(|cs| {
                    cs.iter()
                        .filter_map(|c| c.get("name").and_then(Value::as_str))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let (containers, init, ephemeral) = (
            names("containers"),
            names("initContainers"),
            names("ephemeralContainers"),
        );
        let name = &self.pod.name;
        let bad = |m: String| Err(http::status(400, "BadRequest", &m));
        match requested.filter(|c| !c.is_empty()) {
            Some(c) => {
                if containers
                    .iter()
                    .chain(&init)
                    .chain(&ephemeral)
                    .any(|n| n == c)
                {
                    Ok(c.to_string())
                } else {
                    bad(format!("container {c} is not valid for pod {name}"))
                }
            }
            None => match containers.as_slice() {
                [only] => Ok(only.clone()),
                [] => bad(format!("a container name must be specified for pod {name}")),
                many => {
                    let mut m = format!(
                        "a container name must be specified for pod {name}, choose one of: [{}]",
                        many.join(" ")
                    );
                    if !init.is_empty() {
                        m.push_str(&format!(
                            " or one of the init containers: [{}]",
                            init.join(" ")
                        ));
                    }
                    bad(m)
                }
            },
        }
    }
}

/// Decoded query parameters of a stream request.
pub(crate) fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    route::query_pairs(req.uri().query().unwrap_or(""))
}

/// A query flag (`true`, `1`, `True`, or present without a value).
pub(crate) fn flag(q: &[(String, String)], key: &str) -> Result<bool, Response<Body>> {
    match q
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
    {
        None => Ok(false),
        Some("true" | "1" | "True" | "") => Ok(true),
        Some("false" | "0" | "False") => Ok(false),
        Some(v) => Err(http::status(
            400,
            "BadRequest",
            &format!("invalid boolean value {v:?} for parameter {key}"),
        )),
    }
}

/// The last value of `key`.
pub(crate) fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

impl ApiServer {
    /// The live node tunnels.
    pub fn tunnels(&self) -> &Tunnels {
        &self.tunnels
    }

    /// Serves a pod stream ([`is_pod_stream`]).
    pub(crate) async fn pod_stream(
        &self,
        req: Request<Incoming>,
        user: Option<UserInfo>,
        target: ResourceTarget,
    ) -> Response<Body> {
        let sub = target.subresource.clone().unwrap_or_default();
        let pod = match self.stream_pod(&target, user.as_ref(), &sub).await {
            Ok(p) => p,
            Err(r) => {
                http::discard_body(req, http::UNREAD_BODY_DRAIN).await;
                return r;
            }
        };
        match sub.as_str() {
            "log" => self.pod_log(req, pod).await,
            "exec" | "attach" => self.remote_command(req, pod, sub == "exec").await,
            "portforward" => self.port_forward(req, pod),
            _ => http::path_not_found(),
        }
    }

    /// Reads the pod of `target` and checks who may reach it.
    async fn stream_pod(
        &self,
        target: &ResourceTarget,
        user: Option<&UserInfo>,
        sub: &str,
    ) -> Result<StreamPod, Response<Body>> {
        let ns = target.namespace.as_deref().unwrap_or("");
        let name = target.name.as_deref().unwrap_or("");
        let object = self
            .objects
            .get(&target.info, Some(ns), name)
            .await
            .map_err(|e| http::error(&e))?;
        let node = object
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if let Some(who) = user
            && let Some(me) = protocol::tunnel::node_name(&who.name, &who.groups)
            && me != node
        {
            let verb = if sub == "log" { "get" } else { "create" };
            return Err(http::error(&Error::Forbidden {
                message: format!(
                    "pods \"{name}\" is forbidden: User \"{}\" cannot {verb} resource \"pods/{sub}\" in API group \"\" in the namespace \"{ns}\": no relationship found between node '{me}' and this object",
                    who.name
                ),
            }));
        }
        if node.is_empty() {
            return Err(http::status(
                400,
                "BadRequest",
                &format!("pod {name} does not have a host assigned"),
            ));
        }
        let uid = object
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        Ok(StreamPod {
            pod: PodRef {
                namespace: ns.to_string(),
                name: name.to_string(),
                uid,
            },
            object,
            node,
        })
    }
}
