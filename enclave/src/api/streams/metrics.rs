//! `metrics.k8s.io/v1beta1`: `NodeMetrics` and `PodMetrics`, answered from the usage each
//! node's worker reports over its tunnel (what metrics-server does with kubelets' summaries),
//! so `kubectl top nodes` and `kubectl top pods` work. A node without a tunnel, or that does
//! not answer in time, is left out, as metrics-server leaves out nodes it cannot scrape.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::{Method, Response};
use protocol::tunnel::TunnelRequest;
use protocol::tunnel::stats::{NodeStats, Usage};
use serde_json::{Value, json};

use super::body::ChannelBody;
use crate::api::ApiServer;
use crate::api::http::{self, Body};
use crate::api::resource::ResourceRequest;
use crate::registry::{Error, LabelSelector, ListOptions};

/// How long a node may take to report.
const STATS_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest usage report read from a worker.
const STATS_LIMIT: usize = 8 * 1024 * 1024;

const API_VERSION: &str = "metrics.k8s.io/v1beta1";

/// The report of pod `p` from its node's stats, and the node's stats.
fn reported<'a>(
    stats: &'a BTreeMap<String, NodeStats>,
    p: &Value,
) -> Option<(&'a NodeStats, &'a protocol::tunnel::stats::PodStats)> {
    let text = |ptr: &str| p.pointer(ptr).and_then(Value::as_str).unwrap_or("");
    let s = stats.get(text("/spec/nodeName"))?;
    let pod = s.pods.iter().find(|r| {
        r.namespace == text("/metadata/namespace")
            && r.name == text("/metadata/name")
            && (r.uid.is_empty() || r.uid == text("/metadata/uid"))
    })?;
    Some((s, pod))
}

/// `N` nanocores as a quantity (`1234n`).
fn cpu(nanocores: u64) -> String {
    format!("{nanocores}n")
}

/// `N` bytes as a quantity (`Ki` when exact, as metrics-server prints them).
fn memory(bytes: u64) -> String {
    if bytes.is_multiple_of(1024) {
        format!("{}Ki", bytes / 1024)
    } else {
        bytes.to_string()
    }
}

fn usage(u: &Usage) -> Value {
    json!({"cpu": cpu(u.cpu_nanocores), "memory": memory(u.memory_bytes)})
}

/// A Go duration string (`10s`, `1.5s`).
fn window(ms: u64) -> String {
    let (s, frac) = (ms / 1000, ms % 1000);
    if frac == 0 {
        format!("{s}s")
    } else {
        format!("{s}.{}s", format!("{frac:03}").trim_end_matches('0'))
    }
}

fn timestamp(ms: i64) -> String {
    jiff::Timestamp::from_second(ms.div_euclid(1000))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn metadata(obj: &Value, now: &str) -> Value {
    let mut m = json!({"name": obj.pointer("/metadata/name"), "creationTimestamp": now});
    if let Some(ns) = obj.pointer("/metadata/namespace") {
        m["namespace"] = ns.clone();
    }
    if let Some(labels) = obj.pointer("/metadata/labels") {
        m["labels"] = labels.clone();
    }
    m
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": API_VERSION, "metadata": {}, "items": items})
}

impl crate::controllers::horizontal_pod_autoscaler::UsageSource for ApiServer {
    fn usage<'a>(
        &'a self,
        pods: &'a [Value],
    ) -> futures::future::BoxFuture<
        'a,
        std::collections::HashMap<
            (String, String),
            crate::controllers::horizontal_pod_autoscaler::PodUsage,
        >,
    > {
        Box::pin(async move {
            let nodes = pods
                .iter()
                .filter_map(|p| p.pointer("/spec/nodeName").and_then(Value::as_str))
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect();
            let stats = self.stats_of(nodes).await;
            let mut out = std::collections::HashMap::new();
            for p in pods {
                let text = |ptr: &str| p.pointer(ptr).and_then(Value::as_str).unwrap_or("");
                let Some((_, reported)) = reported(&stats, p) else {
                    continue;
                };
                let (cpu, memory) = reported.containers.iter().fold((0u64, 0u64), |(c, m), x| {
                    (c + x.usage.cpu_nanocores, m + x.usage.memory_bytes)
                });
                out.insert(
                    (
                        text("/metadata/namespace").to_string(),
                        text("/metadata/name").to_string(),
                    ),
                    crate::controllers::horizontal_pod_autoscaler::PodUsage {
                        cpu_milli: cpu as f64 / 1e6,
                        memory_bytes: memory as f64,
                    },
                );
            }
            out
        })
    }
}

impl ApiServer {
    /// One node's usage report, if it gives one in time.
    async fn node_stats(&self, node: &str) -> Option<NodeStats> {
        let response = self
            .tunnels
            .request(
                node,
                &TunnelRequest::Stats,
                ChannelBody::empty(),
                STATS_TIMEOUT,
            )
            .await
            .map_err(|e| tracing::debug!(node, error = %e, "no usage from node"))
            .ok()?;
        let body = tokio::time::timeout(
            STATS_TIMEOUT,
            http_body_util::Limited::new(response.into_body(), STATS_LIMIT).collect(),
        )
        .await
        .ok()?
        .ok()?
        .to_bytes();
        NodeStats::decode(&String::from_utf8_lossy(&body))
            .map_err(|e| tracing::warn!(node, error = %e, "a node's usage report did not parse"))
            .ok()
    }

    /// The reports of `nodes`, fetched at once.
    async fn stats_of(&self, nodes: BTreeSet<String>) -> BTreeMap<String, NodeStats> {
        let fetches = nodes.into_iter().map(|n| async move {
            let s = self.node_stats(&n).await;
            (n, s)
        });
        futures::future::join_all(fetches)
            .await
            .into_iter()
            .filter_map(|(n, s)| s.map(|s| (n, s)))
            .collect()
    }

    /// Serves a `metrics.k8s.io` request (GET and LIST of `nodes` and `pods`).
    pub(crate) async fn metrics(&self, req: &ResourceRequest) -> Response<Body> {
        if req.method != Method::GET || req.query.watch {
            return http::error(&Error::MethodNotAllowed(
                "the server does not allow this method on the requested resource".into(),
            ));
        }
        let result = match req.target.info.resource.as_str() {
            "nodes" => self.node_metrics(req).await,
            _ => self.pod_metrics(req).await,
        };
        result.unwrap_or_else(|e| http::error(&e))
    }

    async fn list_of(
        &self,
        resource: &str,
        ns: Option<&str>,
        name: Option<&str>,
        selector: &str,
    ) -> Result<Vec<Value>, Error> {
        let table = self.objects.table();
        let info = table
            .lookup("", "v1", resource)
            .ok_or_else(|| Error::BadRequest(format!("no {resource} resource")))?;
        if let Some(name) = name {
            return Ok(vec![self.objects.get(&info, ns, name).await?]);
        }
        let opts = ListOptions {
            labels: LabelSelector::parse(selector)?,
            ..ListOptions::default()
        };
        Ok(self.objects.list(&info, ns, &opts).await?.items)
    }

    async fn node_metrics(&self, req: &ResourceRequest) -> Result<Response<Body>, Error> {
        let name = req.target.name.as_deref();
        let not_found = |n: &str| Error::NotFound {
            qualified: "nodemetrics.metrics.k8s.io".into(),
            group: "metrics.k8s.io".into(),
            resource: "nodes".into(),
            name: n.to_string(),
        };
        let nodes = match self
            .list_of("nodes", None, name, &req.query.label_selector)
            .await
        {
            Err(Error::NotFound { name, .. }) => return Err(not_found(&name)),
            other => other?,
        };
        let names = nodes
            .iter()
            .filter_map(|n| n.pointer("/metadata/name").and_then(Value::as_str))
            .map(str::to_string)
            .collect();
        let stats = self.stats_of(names).await;
        let now = jiff::Timestamp::now().to_string();
        let items: Vec<Value> = nodes
            .iter()
            .filter_map(|n| {
                let s = stats.get(n.pointer("/metadata/name")?.as_str()?)?;
                Some(json!({
                    "metadata": metadata(n, &now),
                    "timestamp": timestamp(s.timestamp_unix_ms),
                    "window": window(s.window_ms),
                    "usage": usage(&s.node),
                }))
            })
            .collect();
        match name {
            Some(n) => {
                let mut item = items.into_iter().next().ok_or_else(|| not_found(n))?;
                item["kind"] = json!("NodeMetrics");
                item["apiVersion"] = json!(API_VERSION);
                Ok(http::json(200, &item))
            }
            None => Ok(http::json(200, &list("NodeMetricsList", items))),
        }
    }

    async fn pod_metrics(&self, req: &ResourceRequest) -> Result<Response<Body>, Error> {
        let ns = req.target.namespace.as_deref();
        let name = req.target.name.as_deref();
        let not_found = |n: &str| Error::NotFound {
            qualified: "podmetrics.metrics.k8s.io".into(),
            group: "metrics.k8s.io".into(),
            resource: "pods".into(),
            name: format!("{}/{n}", ns.unwrap_or("")),
        };
        let pods = match self
            .list_of("pods", ns, name, &req.query.label_selector)
            .await
        {
            Err(Error::NotFound { name, .. }) => return Err(not_found(&name)),
            other => other?,
        };
        let nodes = pods
            .iter()
            .filter_map(|p| p.pointer("/spec/nodeName").and_then(Value::as_str))
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        let stats = self.stats_of(nodes).await;
        let now = jiff::Timestamp::now().to_string();
        let items: Vec<Value> = pods
            .iter()
            .filter_map(|p| {
                let (s, reported) = reported(&stats, p)?;
                let containers: Vec<Value> = reported
                    .containers
                    .iter()
                    .map(|c| json!({"name": c.name, "usage": usage(&c.usage)}))
                    .collect();
                Some(json!({
                    "metadata": metadata(p, &now),
                    "timestamp": timestamp(s.timestamp_unix_ms),
                    "window": window(s.window_ms),
                    "containers": containers,
                }))
            })
            .collect();
        match name {
            Some(n) => {
                let mut item = items.into_iter().next().ok_or_else(|| not_found(n))?;
                item["kind"] = json!("PodMetrics");
                item["apiVersion"] = json!(API_VERSION);
                Ok(http::json(200, &item))
            }
            None => Ok(http::json(200, &list("PodMetricsList", items))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_and_durations_read_as_go_writes_them() {
        assert_eq!(cpu(1_500_000), "1500000n");
        assert_eq!(memory(4096), "4Ki");
        assert_eq!(memory(4097), "4097");
        assert_eq!(window(10_000), "10s");
        assert_eq!(window(1_500), "1.5s");
        assert_eq!(window(1_001), "1.001s");
        assert_eq!(timestamp(1_704_164_645_999), "2024-01-02T03:04:05Z");
    }
}
