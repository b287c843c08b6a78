//! The node agent's main loop: register the Node, then run its tasks until told to stop —
//! the Lease heartbeat, the status reports, the certificate renewal, and whatever else was
//! added with [`Agent::with_task`] (the pod manager slots in there). The first task that fails
//! stops the others and the agent; a stop signal stops them all gracefully.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use k8s_openapi::api::core::v1::{Node, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::attested::now_ms;
use crate::client::{ApiAccess, ClientError, KubeClient};
use crate::join::{self, JoinConfig, JoinError, JoinMode, JoinRecord, Joined, NodeFiles};
use crate::node::lease::LeaseKeeper;
use crate::node::status::{StatusInputs, changed, node_status};
use crate::node::{
    LEASE_RENEW_INTERVAL, STATUS_CHECK_INTERVAL, STATUS_REPORT_INTERVAL, machine, node_path,
    registration,
};

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The enclave no longer admits this node (its stake stopped admitting it).
    #[error("the node is no longer admitted: {0}")]
    NotAdmitted(String),
    /// The API refused something the agent cannot do without.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// A join or renewal failed for good.
    #[error("{0}")]
    Join(#[from] JoinError),
    /// A task added with [`Agent::with_task`] failed.
    #[error("task {task}: {reason}")]
    Task {
        /// Its name.
        task: &'static str,
        /// Why.
        reason: String,
    },
}

/// What a task gets: how to reach the API as this node, and the node's name and directory.
#[derive(Debug, Clone)]
pub struct AgentContext {
    /// The API, as this node (certificate renewals are picked up by new connections).
    pub access: ApiAccess,
    /// The node name.
    pub node_name: String,
    /// The node's data directory.
    pub data_dir: PathBuf,
}

/// A task's future.
pub type TaskFuture = Pin<Box<dyn Future<Output = Result<(), AgentError>> + Send>>;
/// A task of the agent: started once the Node is registered, stopped by the token.
pub type AgentTask = Box<dyn FnOnce(AgentContext, CancellationToken) -> TaskFuture + Send>;

/// The node agent.
pub struct Agent {
    joined: Joined,
    files: NodeFiles,
    join: Option<JoinConfig>,
    instance_type: Option<String>,
    container_runtime_version: String,
    tasks: Vec<(&'static str, AgentTask)>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("node", &self.joined.record.node_name)
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

/// Evaluates `$attempt` (a `Result<_, ClientError>` future expression) until it succeeds, fails
/// for good (not a transport or server error), or `$stop` fires (then returns `Ok(())` from the
/// enclosing function).
macro_rules! retry {
    ($stop:expr, $what:expr, $attempt:expr) => {{
        let mut delay = Duration::from_millis(500);
        loop {
            match $attempt.await {
                Ok(v) => break Ok(v),
                Err(e) if transient(&e) => {
                    tracing::warn!(error = %e, "{} failed; retrying", $what);
                }
                Err(e) => break Err(e),
            }
            tokio::select! {
                () = $stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }};
}

/// A transport failure or a server error: worth retrying.
fn transient(e: &ClientError) -> bool {
    e.is_transport() || e.status().is_some_and(|s| s.is_server_error())
}

impl Agent {
    /// The agent of a node that joined (or resumed) as `joined`, keeping its files in `files`.
    /// With `join`, a node whose certificate can no longer be renewed joins again with its
    /// stake; without, it stops.
    #[must_use]
    pub fn new(joined: Joined, files: NodeFiles, join: Option<JoinConfig>) -> Self {
        Self {
            joined,
            files,
            join,
            instance_type: None,
            container_runtime_version: String::new(),
            tasks: Vec::new(),
        }
    }

    /// Reports `nodeInfo.containerRuntimeVersion` (e.g. `containerd://1.7.24`); empty (the
    /// default) while no runtime runs pods.
    #[must_use]
    pub fn with_container_runtime_version(mut self, version: impl Into<String>) -> Self {
        self.container_runtime_version = version.into();
        self
    }

    /// Labels the Node `node.kubernetes.io/instance-type=TYPE`.
    #[must_use]
    pub fn with_instance_type(mut self, instance_type: Option<String>) -> Self {
        self.instance_type = instance_type;
        self
    }

    /// Adds a task, started once the Node is registered (e.g. the pod manager).
    #[must_use]
    pub fn with_task(mut self, name: &'static str, task: AgentTask) -> Self {
        self.tasks.push((name, task));
        self
    }

    /// Registers the Node and runs every task until `stop` fires (Ok) or a task fails (its
    /// error).
    ///
    /// # Errors
    ///
    /// The first failure: [`AgentError::NotAdmitted`] when the stake stopped admitting the
    /// node, or a task's error.
    pub async fn run(self, stop: CancellationToken) -> Result<(), AgentError> {
        let access = self.joined.access.clone();
        let name = self.joined.record.node_name.clone();
        let mut client = access.client();
        let version = retry!(stop, "reading /version", client.git_version())?;
        let dir = self.files.dir().to_path_buf();
        let facts = machine::read(&dir);
        let server = access.server().clone();
        let inputs = StatusInputs {
            internal_ip: machine::route_source(&server.host, server.port).map(|ip| ip.to_string()),
            pressure: machine::pressure(&dir),
            kubelet_version: version,
            container_runtime_version: self.container_runtime_version.clone(),
            facts,
        };
        let labels = registration::labels(
            &name,
            &inputs.facts.architecture,
            self.instance_type.as_deref(),
        );
        let first = node_status(&inputs, None, Time(k8s_openapi::jiff::Timestamp::now()));
        let node: Node = retry!(
            stop,
            "registering the Node",
            registration::register(&mut client, &name, labels.clone(), first.clone())
        )?;
        let uid = node.metadata.uid.clone();
        let reported = node.status.unwrap_or(first);

        let tasks = stop.child_token();
        let renew_now = Arc::new(Notify::new());
        let mut set: JoinSet<(&'static str, Result<(), AgentError>)> = JoinSet::new();
        set.spawn(named(
            "lease",
            lease_loop(
                access.client(),
                name.clone(),
                uid,
                tasks.clone(),
                renew_now.clone(),
            ),
        ));
        set.spawn(named(
            "status",
            status_loop(
                access.client(),
                name.clone(),
                dir.clone(),
                inputs,
                reported,
                tasks.clone(),
            ),
        ));
        set.spawn(named(
            "certificate",
            certificate_loop(
                self.joined,
                self.files.clone(),
                self.join.clone(),
                tasks.clone(),
                renew_now,
            ),
        ));
        let context = AgentContext {
            access,
            node_name: name,
            data_dir: dir,
        };
        for (task, start) in self.tasks {
            set.spawn(named(task, start(context.clone(), tasks.clone())));
        }
        let outcome = loop {
            tokio::select! {
                () = stop.cancelled() => break Ok(()),
                next = set.join_next() => match next {
                    None => break Ok(()),
                    Some(Ok((task, Ok(())))) => {
                        if !tasks.is_cancelled() {
                            tracing::info!(task, "agent task ended");
                        }
                    }
                    Some(Ok((task, Err(e)))) => {
                        tracing::error!(task, error = %e, "agent task failed");
                        break Err(e);
                    }
                    Some(Err(e)) => break Err(AgentError::Task { task: "?", reason: e.to_string() }),
                }
            }
        };
        tasks.cancel();
        // Graceful: each loop returns at its next await; then nothing is left running.
        let drain = async { while set.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), drain)
            .await
            .is_err()
        {
            set.abort_all();
        }
        outcome
    }
}

async fn named(
    task: &'static str,
    future: impl Future<Output = Result<(), AgentError>>,
) -> (&'static str, Result<(), AgentError>) {
    (task, future.await)
}

/// True for an error that means "these credentials are not accepted" (a 401, or a TLS
/// handshake the server ended: a revoked node certificate is refused there).
fn refused_credentials(e: &ClientError) -> bool {
    e.status() == Some(StatusCode::UNAUTHORIZED) || matches!(e, ClientError::Tls { .. })
}

async fn lease_loop(
    mut client: KubeClient,
    name: String,
    node_uid: Option<String>,
    stop: CancellationToken,
    renew_now: Arc<Notify>,
) -> Result<(), AgentError> {
    let mut keeper = LeaseKeeper::new(&name, node_uid);
    let mut tick = tokio::time::interval(LEASE_RENEW_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refusals = 0u32;
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        match keeper.renew(&mut client).await {
            Ok(_) => refusals = 0,
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "renewing the Lease failed");
                if refused_credentials(&e) {
                    refusals += 1;
                    if refusals >= 2 {
                        // Our certificate is refused: renew or join again now.
                        renew_now.notify_one();
                        refusals = 0;
                    }
                }
            }
        }
    }
}

async fn status_loop(
    mut client: KubeClient,
    name: String,
    dir: PathBuf,
    mut inputs: StatusInputs,
    mut reported: NodeStatus,
    stop: CancellationToken,
) -> Result<(), AgentError> {
    let mut tick = tokio::time::interval(STATUS_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut reported_at = tokio::time::Instant::now();
    let path = format!("{}/status", node_path(&name));
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        inputs.pressure = machine::pressure(&dir);
        let next = node_status(
            &inputs,
            Some(&reported),
            Time(k8s_openapi::jiff::Timestamp::now()),
        );
        if !changed(&reported, &next) && reported_at.elapsed() < STATUS_REPORT_INTERVAL {
            continue;
        }
        let patch = match serde_json::to_value(&next) {
            Ok(status) => serde_json::json!({ "status": status }),
            Err(e) => {
                tracing::error!(error = %e, "encoding the node status");
                continue;
            }
        };
        match client.merge_patch::<Node>(&path, &patch).await {
            Ok(_) => {
                reported = next;
                reported_at = tokio::time::Instant::now();
            }
            Err(e) => tracing::warn!(node = %name, error = %e, "reporting the node status failed"),
        }
    }
}

/// Milliseconds until `at_ms`, as a duration (zero when past).
fn until(at_ms: u64) -> Duration {
    Duration::from_millis(at_ms.saturating_sub(now_ms()))
}

async fn certificate_loop(
    joined: Joined,
    files: NodeFiles,
    join: Option<JoinConfig>,
    stop: CancellationToken,
    renew_now: Arc<Notify>,
) -> Result<(), AgentError> {
    let access = joined.access.clone();
    let mut record: JoinRecord = joined.record;
    let mut server_cert = joined.server_certificate;
    let key = files.node_key().map_err(JoinError::from)?;
    loop {
        let urgent = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(until(record.renew_after_ms)) => false,
            () = renew_now.notified() => true,
        };
        let renewed = match join::renew(&access).await {
            Ok(credentials) => Ok(credentials),
            Err(e) => {
                tracing::warn!(error = %e, "renewing the node certificate failed");
                Err(e)
            }
        };
        match renewed {
            Ok(credentials) => {
                record.not_after_ms = credentials.not_after_ms;
                record.renew_after_ms = credentials.renew_after_ms;
                let identity = files
                    .save(&record, &credentials, access.server(), &server_cert, &key)
                    .map_err(JoinError::from)?;
                access.set_identity(identity);
                tracing::info!(
                    not_after_ms = credentials.not_after_ms,
                    "node certificate renewed"
                );
            }
            Err(e) => {
                let must_join = urgent
                    || matches!(e, JoinError::Refused(_))
                    || record.not_after_ms <= now_ms().saturating_add(60_000);
                if !must_join {
                    record.renew_after_ms = now_ms().saturating_add(10_000);
                    continue;
                }
                let Some(config) = &join else {
                    return Err(AgentError::NotAdmitted(e.to_string()));
                };
                match join::join_or_resume(config, &files, JoinMode::Fresh).await {
                    Ok(fresh) => {
                        let (_, identity) = fresh.access.identity();
                        access.set_server_key(fresh.access.pinned_key(), (*identity).clone());
                        record = fresh.record;
                        server_cert = fresh.server_certificate;
                        tracing::info!("joined again with the stake");
                    }
                    Err(e) if e.is_transient() => {
                        tracing::warn!(error = %e, "joining again failed; retrying");
                        record.renew_after_ms = now_ms().saturating_add(10_000);
                    }
                    Err(JoinError::Refused(reason)) => return Err(AgentError::NotAdmitted(reason)),
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
}
