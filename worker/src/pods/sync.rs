//! One sync of a pod, as the kubelet's `SyncPod`/`computePodActions`: deadline, volumes,
//! sandbox, /etc/hosts, init containers in order, containers with their restart policy and
//! back-off, probe verdicts, garbage collection of dead containers, and the status.

use std::time::{Duration, Instant, SystemTime};

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};

use super::env::Downward;
use super::hosts;
use super::labels;
use super::objects::ObjectCache;
use super::observed::{ObservedContainer, ObservedPod, observe};
use super::sandbox::sandbox_config;
use super::start::{StartRequest, start};
use super::status::{TerminalVerdict, WaitReason};
use super::stop::kill_container;
use super::volumes::{self, PodVolumes};
use super::worker::{PodWorker, SyncOutcome};
use crate::runtime::{Error, Result};

/// Converts a runtime timestamp (Unix ns) into the monotonic clock, for the back-off.
fn instant_of(nanos: i64) -> Instant {
    let now_wall = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let event = Duration::from_nanos(u64::try_from(nanos).unwrap_or(0));
    let ago = now_wall.saturating_sub(event);
    Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
}

fn should_restart(policy: &str, c: &ObservedContainer) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => c.exit_code != 0,
        _ => true,
    }
}

enum Step {
    /// Nothing to do for this container.
    Keep,
    /// (Re)start it.
    Start,
    /// Kill the running instance (liveness, changed spec), then maybe start again.
    Kill { message: String, restart: bool },
}

impl PodWorker {
    /// One sync. `Ok(Terminal)` when the pod is done.
    pub(crate) async fn sync(&mut self) -> Result<SyncOutcome> {
        let ctx = std::sync::Arc::clone(&self.ctx);
        let pod: std::sync::Arc<Pod> = std::sync::Arc::clone(&self.pod);
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".to_owned());
        let node = ctx.config.node_name.clone();
        let mut observed = observe(&ctx.cri, &self.uid, &node).await?;

        // startTime: the first sandbox remembers it across agent restarts.
        if self.start_time.is_none() {
            self.start_time = observed
                .sandboxes
                .last()
                .and_then(|s| s.annotations.get(labels::POD_START_TIME))
                .and_then(|t| t.parse().ok())
                .or_else(|| {
                    pod.status
                        .as_ref()
                        .and_then(|s| s.start_time.as_ref())
                        .map(|t| t.0)
                })
                .or_else(|| Some(jiff::Timestamp::now()));
        }
        let start_time = self.start_time.unwrap_or_else(jiff::Timestamp::now);
        if let Some(deadline) = spec.active_deadline_seconds {
            let elapsed = jiff::Timestamp::now().duration_since(start_time).as_secs();
            if elapsed >= deadline {
                self.verdict = Some(TerminalVerdict {
                    reason: "DeadlineExceeded".to_owned(),
                    message: "Pod was active on the node longer than the specified deadline"
                        .to_owned(),
                });
                return Ok(SyncOutcome::Terminal);
            }
            let left = Duration::from_secs(u64::try_from(deadline - elapsed).unwrap_or(0));
            self.wake_at(tokio::time::Instant::now() + left);
        }
        if let Some(phase @ ("Failed" | "Succeeded")) =
            pod.status.as_ref().and_then(|s| s.phase.as_deref())
        {
            tracing::debug!(uid = %self.uid, phase, "pod already terminal");
            return Ok(SyncOutcome::Terminal);
        }

        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let mut objects = ObjectCache::new(ctx.objects.as_ref(), &namespace);
        let mut downward = Downward {
            pod_ips: if spec.host_network == Some(true) {
                ctx.config.host_ip_strings()
            } else {
                observed.ips.clone()
            },
            host_ips: ctx.config.host_ip_strings(),
            node_cpu_milli: ctx.config.node_cpu_milli,
            node_memory: ctx.config.node_memory,
        };
        let pod_dir = ctx.config.pod_dir(&self.uid);

        // Sandbox.
        let attempt = observed.sandboxes.first().map_or(0, |s| s.attempt + 1);
        let sandbox_cfg = sandbox_config(&ctx.config, &pod, attempt, start_time);
        if observed.ready_sandbox().is_none() {
            let ran_before = observed
                .containers
                .iter()
                .any(|c| spec.containers.iter().any(|s| s.name == c.name));
            if policy == "Never" && ran_before {
                // upstream: a Never pod whose sandbox died is not recreated.
                self.publish(&observed, false).await?;
                return Ok(SyncOutcome::Terminal);
            }
            for c in observed.containers.iter().filter(|c| c.running()) {
                kill_container(&ctx, &pod, c, 0, None).await?;
            }
            tokio::fs::create_dir_all(&pod_dir)
                .await
                .map_err(|e| Error::io("creating", &pod_dir, e))?;
            let log_dir = super::sandbox::log_directory(&ctx.config, &pod);
            tokio::fs::create_dir_all(&log_dir)
                .await
                .map_err(|e| Error::io("creating", &log_dir, e))?;
            if let Err(e) = ctx
                .cri
                .run_pod_sandbox(cri::RunPodSandboxRequest {
                    config: Some(sandbox_cfg.clone()),
                    runtime_handler: String::new(),
                })
                .await
            {
                tracing::warn!(uid = %self.uid, error = %e, "creating the pod sandbox failed");
                self.publish(&observed, false).await?;
                self.wake_at(tokio::time::Instant::now() + Duration::from_secs(2));
                return Ok(SyncOutcome::Continue);
            }
            observed = observe(&ctx.cri, &self.uid, &node).await?;
            if spec.host_network != Some(true) {
                downward.pod_ips = observed.ips.clone();
            }
        }
        let Some(sandbox_id) = observed.ready_sandbox().map(|s| s.id.clone()) else {
            self.publish(&observed, false).await?;
            self.wake_at(tokio::time::Instant::now() + Duration::from_secs(1));
            return Ok(SyncOutcome::Continue);
        };
        self.write_hosts(&pod, &downward.pod_ips).await?;

        // Volumes (refreshed on every sync: configmap and secret updates land here).
        let vols: PodVolumes = match volumes::setup(
            &pod,
            &pod_dir,
            &mut objects,
            &downward,
            &mut self.tokens,
        )
        .await?
        {
            Ok(v) => v,
            Err(e) => {
                tracing::info!(uid = %self.uid, error = %e.0, "volumes not ready");
                self.publish(&observed, false).await?;
                self.wake_at(tokio::time::Instant::now() + Duration::from_secs(2));
                return Ok(SyncOutcome::Continue);
            }
        };
        if let Some(verdict) = self.check_empty_dir_limits(&pod, &vols) {
            self.verdict = Some(verdict);
            return Ok(SyncOutcome::Terminal);
        }

        let in_sandbox = |name: &str, observed: &ObservedPod| -> Option<ObservedContainer> {
            observed
                .containers
                .iter()
                .find(|c| c.name == name && c.sandbox_id == sandbox_id)
                .cloned()
        };
        let request =
            |container: &'_ Container, restart_count: i32| (container.clone(), restart_count);
        let mut to_start: Vec<(Container, i32)> = Vec::new();
        let mut init_done = true;
        let mut init_failed = false;

        // Init containers, in order: the first that has not succeeded is the one to run.
        for c in spec.init_containers.iter().flatten() {
            let latest_any = observed.latest(&c.name).0.cloned();
            let next_count = latest_any.as_ref().map_or(0, |l| l.restart_count + 1);
            match in_sandbox(&c.name, &observed) {
                None => {
                    init_done = false;
                    to_start.push(request(c, next_count));
                    break;
                }
                Some(cur) if cur.running() => {
                    init_done = false;
                    self.reasons.remove(&c.name);
                    break;
                }
                Some(cur) if cur.exited() && cur.exit_code == 0 => {}
                Some(cur) if cur.exited() => {
                    init_done = false;
                    if policy == "Never" {
                        init_failed = true;
                    } else {
                        to_start.push(request(c, next_count));
                    }
                    break;
                }
                Some(cur) => {
                    // Created but never started: remove it and start over.
                    let _ = ctx
                        .cri
                        .remove_container(cri::RemoveContainerRequest {
                            container_id: cur.id.clone(),
                        })
                        .await;
                    init_done = false;
                    to_start.push(request(c, next_count));
                    break;
                }
            }
        }

        let mut kills: Vec<(ObservedContainer, String, bool)> = Vec::new();
        if init_done {
            for c in &spec.containers {
                let latest_any = observed.latest(&c.name).0.cloned();
                let next_count = latest_any.as_ref().map_or(0, |l| l.restart_count + 1);
                let step = match in_sandbox(&c.name, &observed) {
                    None => Step::Start,
                    Some(cur) if cur.running() => {
                        let probe = self.probes.state(&cur.id);
                        if cur.hash != labels::container_hash(c) {
                            Step::Kill {
                                message: format!(
                                    "Container {} definition changed, will be restarted",
                                    c.name
                                ),
                                restart: true,
                            }
                        } else if let Some(failed) = probe.and_then(|p| p.failed) {
                            Step::Kill {
                                message: failed,
                                restart: policy != "Never",
                            }
                        } else {
                            self.reasons.remove(&c.name);
                            Step::Keep
                        }
                    }
                    Some(cur) if cur.exited() => {
                        if should_restart(&policy, &cur) {
                            Step::Start
                        } else {
                            self.reasons.remove(&c.name);
                            Step::Keep
                        }
                    }
                    Some(cur) => {
                        let _ = ctx
                            .cri
                            .remove_container(cri::RemoveContainerRequest {
                                container_id: cur.id.clone(),
                            })
                            .await;
                        Step::Start
                    }
                };
                match step {
                    Step::Keep => {}
                    Step::Start => to_start.push(request(c, next_count)),
                    Step::Kill { message, restart } => {
                        if let Some(cur) = in_sandbox(&c.name, &observed) {
                            kills.push((cur, message, restart));
                        }
                        if restart {
                            to_start.push(request(c, next_count));
                        }
                    }
                }
            }
        }
        let grace = spec.termination_grace_period_seconds.unwrap_or(30);
        for (cur, message, _) in &kills {
            tracing::info!(uid = %self.uid, container = %cur.name, %message, "killing container");
            kill_container(
                &ctx,
                &pod,
                cur,
                grace,
                downward.pod_ips.first().map(String::as_str),
            )
            .await?;
        }
        if !kills.is_empty() {
            observed = observe(&ctx.cri, &self.uid, &node).await?;
        }

        for (container, restart_count) in to_start {
            // CrashLoopBackOff: a container that exited waits out its back-off.
            let key = format!(
                "{}_{}_{}_{}_{}",
                pod.metadata.name.as_deref().unwrap_or_default(),
                namespace,
                self.uid,
                container.name,
                labels::container_hash(&container)
            );
            if let Some(prev) = observed.latest(&container.name).0.filter(|p| p.exited()) {
                let event = instant_of(prev.finished_at);
                let now = Instant::now();
                let in_backoff = ctx.crash_backoff().in_backoff_since(&key, event, now);
                if let Some(until) = in_backoff {
                    let backoff = ctx.crash_backoff().get(&key);
                    self.reasons.insert(
                        container.name.clone(),
                        WaitReason {
                            reason: "CrashLoopBackOff".to_owned(),
                            message: format!(
                                "back-off {} restarting failed container={} pod={}",
                                go_duration(backoff),
                                container.name,
                                labels::format_pod(&pod)
                            ),
                        },
                    );
                    self.wake_at(tokio::time::Instant::from_std(until));
                    continue;
                }
                ctx.crash_backoff().next(&key, event, now);
            }
            let req = StartRequest {
                pod: &pod,
                container: &container,
                sandbox_id: &sandbox_id,
                sandbox_config: &sandbox_cfg,
                volumes: &vols,
                downward: &downward,
                restart_count,
                pod_dir: &pod_dir,
            };
            match Box::pin(start(&ctx, &req, &mut objects)).await? {
                Ok(id) => {
                    tracing::debug!(uid = %self.uid, container = %container.name, id = %id, "container started");
                    self.reasons.remove(&container.name);
                }
                Err(reason) => {
                    tracing::info!(uid = %self.uid, container = %container.name, reason = %reason.reason, message = %reason.message, "container did not start");
                    let retry = if reason.reason == "CreateContainerConfigError" {
                        1
                    } else {
                        2
                    };
                    self.reasons.insert(container.name.clone(), reason);
                    self.wake_at(tokio::time::Instant::now() + Duration::from_secs(retry));
                }
            }
            // Init containers run one at a time.
            if spec
                .init_containers
                .iter()
                .flatten()
                .any(|c| c.name == container.name)
            {
                break;
            }
        }

        observed = observe(&ctx.cri, &self.uid, &node).await?;
        self.collect_garbage(&observed).await;
        let running: Vec<(String, Container)> = observed
            .containers
            .iter()
            .filter(|c| c.running() && c.sandbox_id == sandbox_id)
            .filter_map(|c| {
                spec.containers
                    .iter()
                    .find(|s| s.name == c.name)
                    .map(|s| (c.id.clone(), s.clone()))
            })
            .collect();
        let pod_ip = downward.pod_ips.first().cloned();
        self.probes.ensure(&ctx.cri, &running, pod_ip, &self.wake);
        self.publish(&observed, false).await?;
        let phase = self
            .last_status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if init_failed || phase == "Failed" || phase == "Succeeded" {
            return Ok(SyncOutcome::Terminal);
        }
        Ok(SyncOutcome::Continue)
    }

    async fn write_hosts(&self, pod: &Pod, pod_ips: &[String]) -> Result<()> {
        let spec = pod.spec.clone().unwrap_or_default();
        let aliases = spec.host_aliases.clone().unwrap_or_default();
        let content = if spec.host_network == Some(true) {
            let node = tokio::fs::read_to_string("/etc/hosts")
                .await
                .unwrap_or_default();
            hosts::host_network_hosts(&node, &aliases)
        } else {
            let domain = hosts::host_domain(pod, &self.ctx.config.cluster_domain);
            hosts::managed_hosts(pod_ips, &hosts::hostname(pod), domain.as_deref(), &aliases)
        };
        let path = self.ctx.config.pod_dir(&self.uid).join("etc-hosts");
        if tokio::fs::read_to_string(&path).await.ok().as_deref() != Some(content.as_str()) {
            tokio::fs::write(&path, content)
                .await
                .map_err(|e| Error::io("writing", &path, e))?;
        }
        Ok(())
    }

    /// Keeps the newest two instances of each container (the current one and the one before,
    /// for `lastState` and `logs --previous`) and removes older dead ones, and dead sandboxes
    /// left without containers.
    async fn collect_garbage(&self, observed: &ObservedPod) {
        let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for c in &observed.containers {
            let n = seen.entry(c.name.as_str()).or_default();
            *n += 1;
            if *n > 2 && c.exited() {
                let _ = self
                    .ctx
                    .cri
                    .remove_container(cri::RemoveContainerRequest {
                        container_id: c.id.clone(),
                    })
                    .await;
            }
        }
        for s in observed.sandboxes.iter().skip(1).filter(|s| !s.ready) {
            if !observed.containers.iter().any(|c| c.sandbox_id == s.id) {
                let _ = self
                    .ctx
                    .cri
                    .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                        pod_sandbox_id: s.id.clone(),
                    })
                    .await;
            }
        }
    }

    /// The kubelet's eviction of a pod whose emptyDir outgrew its `sizeLimit`.
    fn check_empty_dir_limits(&self, pod: &Pod, vols: &PodVolumes) -> Option<TerminalVerdict> {
        for v in pod.spec.as_ref()?.volumes.iter().flatten() {
            let Some(empty) = &v.empty_dir else { continue };
            if empty.medium.as_deref() == Some("Memory") {
                continue;
            }
            let Some(limit) = empty.size_limit.as_ref() else {
                continue;
            };
            let Some(bytes) = super::quantity::bytes(&limit.0) else {
                continue;
            };
            let Some(host) = vols.get(&v.name) else {
                continue;
            };
            if i64::try_from(volumes::disk_usage(&host.path)).unwrap_or(i64::MAX) > bytes {
                return Some(TerminalVerdict {
                    reason: "Evicted".to_owned(),
                    message: format!(
                        "Usage of EmptyDir volume \"{}\" exceeds the limit \"{}\". ",
                        v.name, limit.0
                    ),
                });
            }
        }
        None
    }
}

/// Go's `time.Duration` rendering for whole seconds and minutes (`10s`, `5m0s`, `2m40s`).
pub(crate) fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}
