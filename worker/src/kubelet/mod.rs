//! The pod manager, as an agent task: lists and watches the pods bound to this node
//! (`fieldSelector=spec.nodeName=NAME`, resuming from the last resourceVersion, relisting after
//! 410 Gone) and feeds them to [`PodRuntime`], whose status and deletions go back to the API
//! through the seams of `kubelet/api.rs` over the node's own credentials.
//!
//! Start at [`pod_manager`], added to the agent with [`crate::Agent::with_task`].

mod api;
mod networked;
mod patch;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use hyper::StatusCode;
use k8s_openapi::api::core::v1::Pod;
use tokio_util::sync::CancellationToken;

use self::api::{NodeApi, ServerStatuses};
use crate::agent::{AgentContext, AgentError, AgentTask};
use crate::client::{ClientError, Watch};
use crate::node::machine;
use crate::pods::{PodRuntime, PodRuntimeConfig, Shutdown};
use crate::runtime::Cri;

pub use self::networked::{NetworkedPodsConfig, networked_pod_manager};

/// How long a watch asks the server to stay open.
const WATCH_SECONDS: u64 = 300;
/// How long a watch may stay silent before it is taken for broken.
const WATCH_IDLE: Duration = Duration::from_secs(WATCH_SECONDS + 60);

/// What the pod manager needs besides the agent's context.
#[derive(Debug)]
pub struct PodManagerConfig {
    /// The container runtime.
    pub cri: Cri,
    /// The cgroup under which pods go (`PodRuntimeConfig::with_cgroup_root`).
    pub cgroup_root: String,
    /// How the pods are left when the agent stops.
    pub on_stop: Shutdown,
    /// The cluster DNS servers and domain for `dnsPolicy: ClusterFirst`
    /// (`PodRuntimeConfig::with_cluster_dns`), when the node runs cluster DNS.
    pub cluster_dns: Option<(Vec<IpAddr>, String)>,
    /// When container logs are rotated.
    pub container_logs: ContainerLogs,
}

/// Container log rotation (`PodRuntimeConfig::with_container_log_rotation`): the kubelet's
/// `containerLogMaxSize` and `containerLogMaxFiles`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerLogs {
    /// A log is rotated once it has this many bytes.
    pub max_size: u64,
    /// Files kept per container, the current one included.
    pub max_files: usize,
}

impl Default for ContainerLogs {
    /// 10 MiB, 5 files, as the kubelet.
    fn default() -> Self {
        Self {
            max_size: 10 << 20,
            max_files: 5,
        }
    }
}

/// The pod manager task: runs the pods bound to the agent's node until the agent stops, then
/// shuts the pod runtime down as `config.on_stop` says.
#[must_use]
pub fn pod_manager(config: PodManagerConfig) -> AgentTask {
    Box::new(move |context, stop| Box::pin(run(context, config, stop)))
}

fn host_ip(context: &AgentContext) -> IpAddr {
    let server = context.access.server();
    machine::route_source(&server.host, server.port)
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
}

async fn run(
    context: AgentContext,
    config: PodManagerConfig,
    stop: CancellationToken,
) -> Result<(), AgentError> {
    let mut runtime_config =
        PodRuntimeConfig::new(&context.node_name, host_ip(&context), &context.data_dir)
            .with_cgroup_root(config.cgroup_root.clone())
            .with_container_log_rotation(
                config.container_logs.max_size,
                config.container_logs.max_files,
            );
    if let Some((servers, domain)) = config.cluster_dns.clone() {
        runtime_config = runtime_config.with_cluster_dns(servers, domain);
    }
    let statuses: ServerStatuses = Arc::default();
    let api = Arc::new(NodeApi::new(context.access.clone(), Arc::clone(&statuses)));
    let runtime = PodRuntime::new(
        runtime_config,
        config.cri.clone(),
        Arc::clone(&api) as _,
        api as _,
    );
    let feed = Feed {
        context: &context,
        runtime: &runtime,
        statuses,
        known: HashMap::new(),
    };
    feed.run(&stop).await;
    tracing::info!(mode = ?config.on_stop, "stopping the pod runtime");
    runtime
        .shutdown(config.on_stop)
        .await
        .map_err(|e| AgentError::Task {
            task: "pods",
            reason: format!("stopping the pods: {e}"),
        })
}

/// The list+watch of this node's pods, feeding the runtime.
struct Feed<'a> {
    context: &'a AgentContext,
    runtime: &'a PodRuntime,
    statuses: ServerStatuses,
    /// The pods as last seen, by UID.
    known: HashMap<String, Pod>,
}

/// Why a watch ended.
enum WatchEnd {
    /// Stopped.
    Stop,
    /// The resourceVersion is too old: list again.
    Relist,
    /// Broken or ended: watch again from the last resourceVersion.
    Resume,
}

impl Feed<'_> {
    fn selector(&self) -> String {
        format!("fieldSelector=spec.nodeName%3D{}", self.context.node_name)
    }

    fn remember(&mut self, pod: &Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        if let Some(status) = &pod.status {
            self.statuses
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(uid.clone(), status.clone());
        }
        self.known.insert(uid, pod.clone());
    }

    fn drop_pod(&mut self, uid: &str) -> Option<Pod> {
        self.statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(uid);
        self.known.remove(uid)
    }

    async fn run(mut self, stop: &CancellationToken) {
        let mut delay = Duration::from_millis(500);
        loop {
            let listed = tokio::select! {
                () = stop.cancelled() => return,
                l = self.list() => l,
            };
            let version = match listed {
                Ok(v) => {
                    delay = Duration::from_millis(500);
                    v
                }
                Err(e) => {
                    tracing::warn!(error = %e, "listing this node's pods failed; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            let mut version = version;
            loop {
                match self.watch(&mut version, stop).await {
                    WatchEnd::Stop => return,
                    WatchEnd::Relist => break,
                    WatchEnd::Resume => {}
                }
            }
        }
    }

    /// Lists the node's pods, hands the whole list to the runtime, and returns the list's
    /// resourceVersion.
    async fn list(&mut self) -> Result<String, ClientError> {
        let mut client = self.context.access.client();
        let path = format!("/api/v1/pods?{}", self.selector());
        let list: k8s_openapi::List<Pod> =
            client
                .get(&path)
                .await?
                .ok_or_else(|| ClientError::Status {
                    what: format!("GET {path}"),
                    code: StatusCode::NOT_FOUND,
                    message: "not found".into(),
                })?;
        let version = list.metadata.resource_version.clone().unwrap_or_default();
        let listed: std::collections::HashSet<String> = list
            .items
            .iter()
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        let vanished: Vec<String> = self
            .known
            .keys()
            .filter(|uid| !listed.contains(*uid))
            .cloned()
            .collect();
        for uid in vanished {
            if let Some(pod) = self.drop_pod(&uid) {
                self.runtime.forget(pod);
            }
        }
        for pod in &list.items {
            self.remember(pod);
        }
        tracing::info!(pods = list.items.len(), version = %version, "listed this node's pods");
        if let Err(e) = self.runtime.sync_pods(list.items).await {
            tracing::warn!(error = %e, "listing the runtime's pods failed");
        }
        Ok(version)
    }

    /// Watches from `version` (advanced with each event) until the watch ends.
    async fn watch(&mut self, version: &mut String, stop: &CancellationToken) -> WatchEnd {
        let path = format!(
            "/api/v1/pods?watch=1&{}&resourceVersion={version}&allowWatchBookmarks=true&timeoutSeconds={WATCH_SECONDS}",
            self.selector()
        );
        let opened = tokio::select! {
            () = stop.cancelled() => return WatchEnd::Stop,
            w = Watch::open(&self.context.access, &path, WATCH_IDLE) => w,
        };
        let mut watch = match opened {
            Ok(w) => w,
            Err(e) if e.status() == Some(StatusCode::GONE) => return WatchEnd::Relist,
            Err(e) => {
                tracing::warn!(error = %e, "watching this node's pods failed; retrying");
                tokio::select! {
                    () = stop.cancelled() => return WatchEnd::Stop,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                return WatchEnd::Resume;
            }
        };
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return WatchEnd::Stop,
                n = watch.next() => n,
            };
            let event = match next {
                Ok(Some(event)) => event,
                Ok(None) => return WatchEnd::Resume,
                Err(e) => {
                    tracing::warn!(error = %e, "the pod watch broke; resuming");
                    return WatchEnd::Resume;
                }
            };
            if event.kind == "ERROR" {
                let code = event.object.get("code").and_then(serde_json::Value::as_u64);
                if code != Some(410) {
                    tracing::warn!(status = %event.object, "the pod watch sent an error; relisting");
                }
                return WatchEnd::Relist;
            }
            if let Some(rv) = event
                .object
                .pointer("/metadata/resourceVersion")
                .and_then(serde_json::Value::as_str)
            {
                rv.clone_into(version);
            }
            if event.kind == "BOOKMARK" {
                continue;
            }
            let pod: Pod = match serde_json::from_value(event.object) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "an undecodable pod in the watch");
                    continue;
                }
            };
            match event.kind.as_str() {
                "ADDED" | "MODIFIED" => {
                    self.remember(&pod);
                    self.runtime.upsert(pod);
                }
                "DELETED" => {
                    if let Some(uid) = pod.metadata.uid.as_deref() {
                        self.drop_pod(uid);
                    }
                    self.runtime.forget(pod);
                }
                other => tracing::warn!(kind = other, "an unknown watch event"),
            }
        }
    }
}
