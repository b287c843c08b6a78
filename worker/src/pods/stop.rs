//! Stopping containers and pods as the kubelet's `killContainer`/`killPod`: preStop within
//! the grace period, then StopContainer (SIGTERM, SIGKILL when the rest of the grace period
//! runs out); removing everything a deleted pod had.

use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod};

use super::Ctx;
use super::handlers::{Action, Target, run};
use super::labels;
use super::observed::{ObservedContainer, ObservedPod};
use super::resources::{QosClass, cgroup_parent};
use crate::runtime::Result;

/// upstream's minimum grace period once a preStop hook ran.
const MIN_GRACE: i64 = 2;

/// The grace period of a pod being deleted (or of its containers being killed).
pub(crate) fn pod_grace(pod: &Pod) -> i64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
        .max(0)
}

/// Stops one container: its preStop hook (from the spec, or from the container's annotation
/// after an agent restart), then StopContainer with what is left of `grace`.
pub(crate) async fn kill_container(
    ctx: &Ctx,
    pod: &Pod,
    c: &ObservedContainer,
    grace: i64,
    pod_ip: Option<&str>,
) -> Result<()> {
    let spec_container: Option<Container> = pod.spec.as_ref().and_then(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .find(|x| x.name == c.name)
            .cloned()
    });
    let pre_stop: Option<LifecycleHandler> = spec_container
        .as_ref()
        .and_then(|s| s.lifecycle.as_ref())
        .and_then(|l| l.pre_stop.clone())
        .or_else(|| {
            c.annotations
                .get(labels::PRE_STOP)
                .and_then(|j| serde_json::from_str(j).ok())
        });
    let mut remaining = grace;
    if c.running()
        && grace > 0
        && let Some(action) = pre_stop.as_ref().and_then(Action::from_handler)
    {
        let started = Instant::now();
        let container = spec_container.clone().unwrap_or_else(|| Container {
            name: c.name.clone(),
            ..Default::default()
        });
        let target = Target {
            cri: &ctx.cri,
            container_id: &c.id,
            container: &container,
            pod_ip,
        };
        let limit = Duration::from_secs(u64::try_from(grace).unwrap_or(0));
        if tokio::time::timeout(limit, run(&action, &target, limit))
            .await
            .is_err()
        {
            tracing::info!(container = %c.name, "preStop hook did not finish within the grace period");
        }
        let spent = i64::try_from(started.elapsed().as_secs()).unwrap_or(grace);
        remaining = (grace - spent).max(MIN_GRACE);
    }
    match ctx
        .cri
        .stop_container(cri::StopContainerRequest {
            container_id: c.id.clone(),
            timeout: remaining,
        })
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.cri_code() == Some(tonic::Code::NotFound) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Stops every running container of the pod (in parallel) and its sandboxes.
pub(crate) async fn kill_pod(
    ctx: &Ctx,
    pod: &Pod,
    observed: &ObservedPod,
    grace: i64,
) -> Result<()> {
    let pod_ip = observed.ips.first().map(String::as_str);
    let kills = observed
        .containers
        .iter()
        .filter(|c| c.running())
        .map(|c| kill_container(ctx, pod, c, grace, pod_ip));
    for result in futures::future::join_all(kills).await {
        result?;
    }
    for s in observed.sandboxes.iter().filter(|s| s.ready) {
        ctx.cri
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: s.id.clone(),
            })
            .await?;
    }
    Ok(())
}

/// Removes a container. One that containerd is still starting (a sync's start raced this
/// removal) cannot be removed until the start ends: stop it and try again, for up to 5 s.
async fn remove_container(ctx: &Ctx, id: &str) -> Result<()> {
    let mut tries = 0;
    loop {
        match ctx
            .cri
            .remove_container(cri::RemoveContainerRequest {
                container_id: id.to_string(),
            })
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if e.cri_code() == Some(tonic::Code::NotFound) => return Ok(()),
            Err(e) if tries < 50 && e.to_string().contains("starting state") => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                let _ = ctx
                    .cri
                    .stop_container(cri::StopContainerRequest {
                        container_id: id.to_string(),
                        timeout: 0,
                    })
                    .await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Removes every container and sandbox of the pod, its volumes, its cgroups (under every
/// QoS class: an orphan's class is not known) and its logs.
pub(crate) async fn remove_pod(ctx: &Ctx, observed: &ObservedPod, uid: &str) -> Result<()> {
    for c in &observed.containers {
        if c.running() {
            let _ = ctx
                .cri
                .stop_container(cri::StopContainerRequest {
                    container_id: c.id.clone(),
                    timeout: 0,
                })
                .await;
        }
        remove_container(ctx, &c.id).await?;
    }
    for s in &observed.sandboxes {
        let _ = ctx
            .cri
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: s.id.clone(),
            })
            .await;
        match ctx
            .cri
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: s.id.clone(),
            })
            .await
        {
            Ok(_) => {}
            Err(e) if e.cri_code() == Some(tonic::Code::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    let pod_dir = ctx.config.pod_dir(uid);
    let logs = ctx.config.log_dir();
    let suffix = format!("_{uid}");
    let cgroups: Vec<String> = [
        QosClass::Guaranteed,
        QosClass::Burstable,
        QosClass::BestEffort,
    ]
    .into_iter()
    .map(|qos| cgroup_parent(&ctx.config.cgroup_root, qos, uid))
    .collect();
    let _ = tokio::task::spawn_blocking(move || {
        super::volumes::teardown(&pod_dir);
        if let Ok(entries) = std::fs::read_dir(&logs) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().ends_with(&suffix) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        for parent in cgroups {
            super::resources::remove_pod_cgroups(&parent);
        }
    })
    .await;
    Ok(())
}
