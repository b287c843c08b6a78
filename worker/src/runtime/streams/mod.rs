//! [`CriStreams`]: the tunnel's [`ContainerStreams`] served by the node's containerd through
//! CRI, for the pods this node runs.
//!
//! - logs: the container (by the labels the pod runtime puts on it, in any of the pod's
//!   sandboxes; `previous` is the instance before the newest) and its CRI log file, read
//!   by [`cri_log`]; a followed log ends once `ContainerStatus` says the container exited;
//! - exec and attach: CRI `Exec`/`Attach`, then the streaming URL as a SPDY client
//!   ([`remote`]);
//! - port-forward: a connection to the port from inside the sandbox's network namespace
//!   ([`netns`]; the namespace's path from the sandbox's verbose status);
//! - usage: CRI container stats ([`super::usage`]).

mod netns;
mod remote;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_cri::v1 as cri;
use protocol::tunnel::{LogOptions, PodRef, StdStreams};

use super::Cri;
use crate::pods::labels;
use crate::tunnel::{
    BoxFuture, ByteStream, ContainerStreams, CumulativeUsage, Duplex, PodUsage, Process,
    StreamError, UsageSample, boxed_duplex, cri_log,
};

/// How often a followed log asks whether its container still runs.
const RUNNING_POLL: Duration = Duration::from_millis(500);

/// The container-streams seam over CRI, for the pods of one node. Cheap to clone.
///
/// Refusals: a pod without a sandbox here (or of another UID) is [`StreamError::NotFound`];
/// a container the sandbox has not created yet is [`StreamError::BadRequest`] ("waiting to
/// start", as the kubelet says; the enclave has already checked the name against the pod's
/// spec); exec or attach into a container that is not running is
/// [`StreamError::NotRunning`]; a port nothing listens on is [`StreamError::BadRequest`].
#[derive(Debug, Clone)]
pub struct CriStreams {
    cri: Cri,
    node: String,
}

fn runtime_error(e: &super::Error) -> StreamError {
    StreamError::Runtime(e.to_string())
}

fn pod_not_found(pod: &PodRef) -> StreamError {
    StreamError::NotFound(format!(
        "pod \"{}\" in namespace \"{}\" is not running on this node",
        pod.name, pod.namespace
    ))
}

impl CriStreams {
    /// Serves the pods `node` runs on the runtime behind `cri`.
    pub fn new(cri: Cri, node: impl Into<String>) -> Self {
        CriStreams {
            cri,
            node: node.into(),
        }
    }

    /// The labels identifying `pod` (its UID when the request names one).
    fn selector(&self, pod: &PodRef) -> HashMap<String, String> {
        let mut s = HashMap::from([
            (labels::POD_NAMESPACE.to_owned(), pod.namespace.clone()),
            (labels::POD_NAME.to_owned(), pod.name.clone()),
            (labels::NODE.to_owned(), self.node.clone()),
        ]);
        if !pod.uid.is_empty() {
            s.insert(labels::POD_UID.to_owned(), pod.uid.clone());
        }
        s
    }

    /// The pod's newest sandbox; with `ready`, only a running one.
    async fn sandbox(&self, pod: &PodRef, ready: bool) -> Result<cri::PodSandbox, StreamError> {
        let state = ready.then_some(cri::PodSandboxStateValue {
            state: cri::PodSandboxState::SandboxReady.into(),
        });
        let items = self
            .cri
            .list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    state,
                    label_selector: self.selector(pod),
                    ..Default::default()
                }),
            })
            .await
            .map_err(|e| runtime_error(&e))?
            .items;
        items
            .into_iter()
            .max_by_key(|s| s.created_at)
            .ok_or_else(|| pod_not_found(pod))
    }

    /// The instances of `container` in any of the pod's sandboxes, newest first: after the
    /// sandbox itself died and was made again, the previous instance (for `previous`, or
    /// while the new one waits to start) lives in the old sandbox, and the kubelet serves
    /// it from there too.
    async fn instances(
        &self,
        pod: &PodRef,
        container: &str,
    ) -> Result<Vec<cri::Container>, StreamError> {
        // The pod must be this node's (a clear "not found" otherwise).
        self.sandbox(pod, false).await?;
        let mut selector = self.selector(pod);
        selector.insert(labels::CONTAINER_NAME.to_owned(), container.to_owned());
        let mut found = self
            .cri
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    label_selector: selector,
                    ..Default::default()
                }),
            })
            .await
            .map_err(|e| runtime_error(&e))?
            .containers;
        if found.is_empty() {
            return Err(StreamError::BadRequest(format!(
                "container \"{container}\" in pod \"{}\" is waiting to start",
                pod.name
            )));
        }
        found.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        Ok(found)
    }

    /// The newest instance of `container`, which must be running.
    async fn running(&self, pod: &PodRef, container: &str) -> Result<String, StreamError> {
        let newest = self
            .instances(pod, container)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| pod_not_found(pod))?;
        if newest.state != i32::from(cri::ContainerState::ContainerRunning) {
            return Err(StreamError::NotRunning(format!(
                "container \"{container}\" in pod \"{}\" is not running",
                pod.name
            )));
        }
        Ok(newest.id)
    }

    async fn status(&self, id: &str) -> Result<cri::ContainerStatus, StreamError> {
        self.cri
            .container_status(cri::ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: false,
            })
            .await
            .map_err(|e| runtime_error(&e))?
            .status
            .ok_or_else(|| StreamError::Runtime(format!("no status for container {id}")))
    }

    async fn log(
        &self,
        pod: PodRef,
        container: String,
        options: LogOptions,
    ) -> Result<ByteStream, StreamError> {
        let instances = self.instances(&pod, &container).await?;
        let chosen = if options.previous {
            instances.get(1).ok_or_else(|| {
                StreamError::BadRequest(format!(
                    "previous terminated container \"{container}\" in pod \"{}\" not found",
                    pod.name
                ))
            })?
        } else {
            instances.first().ok_or_else(|| pod_not_found(&pod))?
        };
        let status = self.status(&chosen.id).await?;
        if status.log_path.is_empty() {
            return Err(StreamError::BadRequest(format!(
                "container \"{container}\" in pod \"{}\" has no log",
                pod.name
            )));
        }
        let running = Arc::new(AtomicBool::new(
            status.state == i32::from(cri::ContainerState::ContainerRunning),
        ));
        if options.follow && running.load(Ordering::SeqCst) {
            tokio::spawn(watch_running(
                self.clone(),
                chosen.id.clone(),
                Arc::downgrade(&running),
            ));
        }
        let still = Box::new(move || running.load(Ordering::SeqCst));
        Ok(cri_log::read(
            status.log_path.into(),
            options,
            still,
            jiff::Timestamp::now(),
        ))
    }

    async fn session(
        &self,
        pod: PodRef,
        container: String,
        command: Option<Vec<String>>,
        streams: StdStreams,
    ) -> Result<Process, StreamError> {
        let streams = StdStreams {
            // The runtime refuses stderr with a terminal (it is merged into stdout).
            stderr: streams.stderr && !streams.tty,
            ..streams
        };
        if !(streams.stdin || streams.stdout || streams.stderr) {
            return Err(StreamError::BadRequest(
                "one of stdin, stdout or stderr must be requested".into(),
            ));
        }
        let id = self.running(&pod, &container).await?;
        let exec = command.is_some();
        let url = match command {
            Some(cmd) => {
                if cmd.is_empty() {
                    return Err(StreamError::BadRequest("no command to execute".into()));
                }
                self.cri
                    .exec(cri::ExecRequest {
                        container_id: id,
                        cmd,
                        tty: streams.tty,
                        stdin: streams.stdin,
                        stdout: streams.stdout,
                        stderr: streams.stderr,
                    })
                    .await
                    .map(|r| r.url)
            }
            None => self
                .cri
                .attach(cri::AttachRequest {
                    container_id: id,
                    stdin: streams.stdin,
                    tty: streams.tty,
                    stdout: streams.stdout,
                    stderr: streams.stderr,
                })
                .await
                .map(|r| r.url),
        }
        .map_err(|e| match e.cri_code() {
            Some(tonic::Code::NotFound | tonic::Code::FailedPrecondition) => {
                StreamError::NotRunning(format!(
                    "container \"{container}\" in pod \"{}\" is not running: {e}",
                    pod.name
                ))
            }
            _ => runtime_error(&e),
        })?;
        remote::session(&url, streams, exec).await
    }

    async fn forward(&self, pod: PodRef, port: u16) -> Result<Duplex, StreamError> {
        let sandbox = self.sandbox(&pod, true).await?;
        let status = self
            .cri
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: sandbox.id.clone(),
                verbose: true,
            })
            .await
            .map_err(|e| runtime_error(&e))?;
        let info = status
            .info
            .get("info")
            .and_then(|info| serde_json::from_str::<serde_json::Value>(info).ok())
            .unwrap_or_default();
        let netns = sandbox_netns(&info).ok_or_else(|| {
            StreamError::Runtime(format!(
                "the runtime gave no network namespace for the sandbox of pod \"{}\"",
                pod.name
            ))
        })?;
        match netns::connect(netns, port).await {
            Ok(stream) => Ok(boxed_duplex(stream)),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                Err(StreamError::BadRequest(format!(
                    "failed to connect to localhost:{port} inside the network namespace of pod \
                     \"{}\": connection refused",
                    pod.name
                )))
            }
            Err(e) => Err(StreamError::Runtime(format!(
                "port-forward to port {port} of pod \"{}\": {e}",
                pod.name
            ))),
        }
    }

    /// (pod UID, container name) of this node's running containers.
    async fn running_containers(&self) -> Result<HashSet<(String, String)>, StreamError> {
        let containers = self
            .cri
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    state: Some(cri::ContainerStateValue {
                        state: cri::ContainerState::ContainerRunning.into(),
                    }),
                    label_selector: HashMap::from([(labels::NODE.to_owned(), self.node.clone())]),
                    ..Default::default()
                }),
            })
            .await
            .map_err(|e| runtime_error(&e))?
            .containers;
        Ok(containers
            .into_iter()
            .map(|c| {
                let label = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
                (label(labels::POD_UID), label(labels::CONTAINER_NAME))
            })
            .collect())
    }

    /// Usage of the running containers (as metrics-server shows them: an exited container or
    /// a finished pod is not listed).
    async fn sample(&self) -> Result<UsageSample, StreamError> {
        let running = self.running_containers().await?;
        let mut usage = super::usage(&self.cri, &self.node)
            .await
            .map_err(|e| runtime_error(&e))?;
        for pod in &mut usage.pods {
            pod.containers
                .retain(|(name, _, _)| running.contains(&(pod.uid.clone(), name.clone())));
        }
        usage.pods.retain(|p| !p.containers.is_empty());
        Ok(UsageSample {
            timestamp: usage.timestamp,
            node: CumulativeUsage {
                cpu_usage_ns: usage.node.cpu_usage_ns,
                memory_working_set_bytes: usage.node.memory_working_set_bytes,
            },
            pods: usage
                .pods
                .into_iter()
                .map(|p| PodUsage {
                    pod: PodRef {
                        namespace: p.namespace,
                        name: p.name,
                        uid: p.uid,
                    },
                    containers: p
                        .containers
                        .into_iter()
                        .map(|(name, cpu, memory)| {
                            (
                                name,
                                CumulativeUsage {
                                    cpu_usage_ns: cpu,
                                    memory_working_set_bytes: memory,
                                },
                            )
                        })
                        .collect(),
                })
                .collect(),
        })
    }
}

/// The sandbox's network namespace, from containerd's verbose sandbox info: the path in its
/// runtime spec, else its process's (`hostNetwork` sandboxes have neither a path nor a
/// namespace of their own, and their process's is the node's).
fn sandbox_netns(info: &serde_json::Value) -> Option<std::path::PathBuf> {
    let from_spec = info["runtimeSpec"]["linux"]["namespaces"]
        .as_array()
        .and_then(|namespaces| {
            namespaces
                .iter()
                .find(|n| n["type"] == "network")
                .and_then(|n| n["path"].as_str())
        })
        .filter(|path| !path.is_empty());
    if let Some(path) = from_spec {
        return Some(path.into());
    }
    info["pid"]
        .as_u64()
        .filter(|pid| *pid > 0)
        .map(|pid| format!("/proc/{pid}/ns/net").into())
}

/// Clears `running` once container `id` stops (or cannot be asked about), or ends when the log
/// reader is gone.
async fn watch_running(streams: CriStreams, id: String, running: std::sync::Weak<AtomicBool>) {
    loop {
        tokio::time::sleep(RUNNING_POLL).await;
        let Some(flag) = running.upgrade() else {
            return;
        };
        let still = streams
            .status(&id)
            .await
            .is_ok_and(|s| s.state == i32::from(cri::ContainerState::ContainerRunning));
        if !still {
            flag.store(false, Ordering::SeqCst);
            return;
        }
    }
}

impl ContainerStreams for CriStreams {
    fn logs(
        &self,
        pod: PodRef,
        container: String,
        options: LogOptions,
    ) -> BoxFuture<'_, Result<ByteStream, StreamError>> {
        Box::pin(self.log(pod, container, options))
    }

    fn exec(
        &self,
        pod: PodRef,
        container: String,
        command: Vec<String>,
        streams: StdStreams,
    ) -> BoxFuture<'_, Result<Process, StreamError>> {
        Box::pin(self.session(pod, container, Some(command), streams))
    }

    fn attach(
        &self,
        pod: PodRef,
        container: String,
        streams: StdStreams,
    ) -> BoxFuture<'_, Result<Process, StreamError>> {
        Box::pin(self.session(pod, container, None, streams))
    }

    fn port_forward(&self, pod: PodRef, port: u16) -> BoxFuture<'_, Result<Duplex, StreamError>> {
        Box::pin(self.forward(pod, port))
    }

    fn usage(&self) -> BoxFuture<'_, Result<UsageSample, StreamError>> {
        Box::pin(self.sample())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_netns_comes_from_the_spec_else_the_process() {
        let spec = serde_json::json!({
            "pid": 42,
            "runtimeSpec": {"linux": {"namespaces": [
                {"type": "pid"},
                {"type": "network", "path": "/run/netns/cni-1"},
            ]}},
        });
        assert_eq!(sandbox_netns(&spec), Some("/run/netns/cni-1".into()));
        let host = serde_json::json!({
            "pid": 42,
            "runtimeSpec": {"linux": {"namespaces": [{"type": "pid"}]}},
        });
        assert_eq!(sandbox_netns(&host), Some("/proc/42/ns/net".into()));
        assert_eq!(sandbox_netns(&serde_json::json!({"pid": 0})), None);
    }
}
