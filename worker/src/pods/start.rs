//! Starting one container as the kubelet's `startContainer`: image, config (env, mounts,
//! security, resources), CreateContainer, StartContainer, postStart; each failure with its
//! upstream reason.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};

use super::env::{Downward, environment};
use super::expand::expand;
use super::handlers::{Action, Outcome, Target, run};
use super::labels;
use super::objects::ObjectCache;
use super::resources::{linux_resources, qos_class};
use super::security::{container_security, verify_non_root};
use super::status::WaitReason;
use super::volumes::PodVolumes;
use super::{Ctx, images};
use crate::runtime::{Error, Result};

/// What a container is started with.
#[derive(Debug)]
pub(crate) struct StartRequest<'a> {
    pub(crate) pod: &'a Pod,
    pub(crate) container: &'a Container,
    pub(crate) sandbox_id: &'a str,
    pub(crate) sandbox_config: &'a cri::PodSandboxConfig,
    pub(crate) volumes: &'a PodVolumes,
    pub(crate) downward: &'a Downward,
    pub(crate) restart_count: i32,
    pub(crate) pod_dir: &'a Path,
}

fn reason(reason: &str, message: impl Into<String>) -> WaitReason {
    WaitReason {
        reason: reason.to_owned(),
        message: message.into(),
    }
}

/// Starts the container; `Ok(Err(reason))` is a failure the status reports.
pub(crate) async fn start(
    ctx: &Ctx,
    req: &StartRequest<'_>,
    objects: &mut ObjectCache<'_>,
) -> Result<Result<String, WaitReason>> {
    let pod = req.pod;
    let container = req.container;
    let spec = pod.spec.clone().unwrap_or_default();
    let image = match Box::pin(images::ensure(ctx, pod, container)).await? {
        Ok(i) => i,
        Err(r) => return Ok(Err(r)),
    };
    let pod_name = labels::format_pod(pod);
    if let Some(message) = verify_non_root(&spec, container, image.uid, &image.username, &pod_name)
    {
        return Ok(Err(reason("CreateContainerConfigError", message)));
    }
    let env = match Box::pin(environment(pod, container, req.downward, objects)).await? {
        Ok(env) => env,
        Err(e) => return Ok(Err(reason("CreateContainerConfigError", e.0))),
    };
    let lookup = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let command: Vec<String> = container
        .command
        .iter()
        .flatten()
        .map(|c| expand(c, &lookup))
        .collect();
    let args: Vec<String> = container
        .args
        .iter()
        .flatten()
        .map(|a| expand(a, &lookup))
        .collect();
    let mounts = match mounts(req, &lookup).await? {
        Ok(m) => m,
        Err(e) => return Ok(Err(reason("CreateContainerConfigError", e))),
    };
    let mut annotations = HashMap::from([
        (
            labels::CONTAINER_HASH.to_owned(),
            labels::container_hash(container),
        ),
        (
            labels::RESTART_COUNT.to_owned(),
            req.restart_count.to_string(),
        ),
        (
            labels::TERMINATION_MESSAGE_PATH.to_owned(),
            container
                .termination_message_path
                .clone()
                .unwrap_or_else(|| "/dev/termination-log".to_owned()),
        ),
        (
            labels::TERMINATION_MESSAGE_POLICY.to_owned(),
            container
                .termination_message_policy
                .clone()
                .unwrap_or_else(|| "File".to_owned()),
        ),
        (
            labels::TERMINATION_GRACE.to_owned(),
            spec.termination_grace_period_seconds
                .unwrap_or(30)
                .to_string(),
        ),
    ]);
    if let Some(pre_stop) = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        && let Ok(json) = serde_json::to_string(pre_stop)
    {
        annotations.insert(labels::PRE_STOP.to_owned(), json);
    }
    let termination_host = termination_file(req.pod_dir, &container.name, req.restart_count);
    annotations.insert(
        labels::TERMINATION_MESSAGE_HOST_PATH.to_owned(),
        termination_host.display().to_string(),
    );
    let config = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: container.name.clone(),
            attempt: u32::try_from(req.restart_count).unwrap_or(0),
        }),
        image: Some(cri::ImageSpec {
            image: image.reference.clone(),
            user_specified_image: container.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command,
        args,
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs: env
            .iter()
            .map(|(key, value)| cri::KeyValue {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        mounts,
        labels: labels::container_labels(pod, container, &ctx.config.node_name),
        annotations,
        log_path: format!("{}/{}.log", container.name, req.restart_count),
        stdin: container.stdin == Some(true),
        stdin_once: container.stdin_once == Some(true),
        tty: container.tty == Some(true),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(linux_resources(
                container,
                qos_class(pod),
                ctx.config.node_memory,
            )),
            security_context: Some(container_security(&spec, container, &image.username)),
        }),
        ..Default::default()
    };
    let created = ctx
        .cri
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: req.sandbox_id.to_owned(),
            config: Some(config),
            sandbox_config: Some(req.sandbox_config.clone()),
        })
        .await;
    let id = match created {
        Ok(r) => r.container_id,
        Err(Error::Cri { status, .. }) => {
            return Ok(Err(reason("CreateContainerError", status.message())));
        }
        Err(e) => return Err(e),
    };
    match ctx
        .cri
        .start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
    {
        Ok(_) => {}
        Err(Error::Cri { status, .. }) => {
            return Ok(Err(reason("RunContainerError", status.message())));
        }
        Err(e) => return Err(e),
    }
    if let Some(handler) = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.post_start.as_ref())
        && let Some(action) = Action::from_handler(handler)
    {
        let pod_ip = ctx_pod_ip(req);
        let target = Target {
            cri: &ctx.cri,
            container_id: &id,
            container,
            pod_ip: pod_ip.as_deref(),
        };
        if let Outcome::Failure(message) = run(&action, &target, Duration::from_secs(30)).await {
            tracing::info!(container = %container.name, %message, "postStart hook failed; killing the container");
            let _ = ctx
                .cri
                .stop_container(cri::StopContainerRequest {
                    container_id: id.clone(),
                    timeout: 0,
                })
                .await;
            return Ok(Err(reason("PostStartHookError", message)));
        }
    }
    Ok(Ok(id))
}

fn ctx_pod_ip(req: &StartRequest<'_>) -> Option<String> {
    req.downward.pod_ips.first().cloned()
}

/// The host file behind a container's termination message.
fn termination_file(pod_dir: &Path, name: &str, restart_count: i32) -> PathBuf {
    pod_dir
        .join("containers")
        .join(name)
        .join(format!("termination-{restart_count}"))
}

async fn mounts(
    req: &StartRequest<'_>,
    lookup: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Result<Result<Vec<cri::Mount>, String>> {
    let container = req.container;
    let mut out = Vec::new();
    let mut etc_hosts_mounted = false;
    for m in container.volume_mounts.iter().flatten() {
        let Some(volume) = req.volumes.get(&m.name) else {
            return Ok(Err(format!(
                "cannot find volume \"{}\" to mount into container \"{}\"",
                m.name, container.name
            )));
        };
        let sub = match (&m.sub_path, &m.sub_path_expr) {
            (Some(p), _) if !p.is_empty() => p.clone(),
            (_, Some(e)) if !e.is_empty() => expand(e, lookup),
            _ => String::new(),
        };
        let mut host = volume.path.clone();
        if !sub.is_empty() {
            if sub.starts_with('/') || sub.split('/').any(|c| c == "..") {
                return Ok(Err(format!("invalid subpath {sub:?}")));
            }
            host = host.join(&sub);
            if tokio::fs::symlink_metadata(&host).await.is_err() {
                tokio::fs::create_dir_all(&host)
                    .await
                    .map_err(|e| Error::io("creating", &host, e))?;
            }
        }
        if m.mount_path == "/etc/hosts" {
            etc_hosts_mounted = true;
        }
        out.push(cri::Mount {
            container_path: m.mount_path.clone(),
            host_path: host.display().to_string(),
            readonly: m.read_only == Some(true) || volume.read_only,
            propagation: match m.mount_propagation.as_deref() {
                Some("HostToContainer") => cri::MountPropagation::PropagationHostToContainer,
                Some("Bidirectional") => cri::MountPropagation::PropagationBidirectional,
                _ => cri::MountPropagation::PropagationPrivate,
            } as i32,
            ..Default::default()
        });
    }
    if !etc_hosts_mounted {
        out.push(cri::Mount {
            container_path: "/etc/hosts".to_owned(),
            host_path: req.pod_dir.join("etc-hosts").display().to_string(),
            ..Default::default()
        });
    }
    let path = container
        .termination_message_path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/dev/termination-log".to_owned());
    let host = termination_file(req.pod_dir, &container.name, req.restart_count);
    if let Some(parent) = host.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| Error::io("creating", parent, e))?;
    }
    tokio::fs::write(&host, b"")
        .await
        .map_err(|e| Error::io("creating", &host, e))?;
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = tokio::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o666)).await;
    }
    out.push(cri::Mount {
        container_path: path,
        host_path: host.display().to_string(),
        ..Default::default()
    });
    Ok(Ok(out))
}

/// The message of an exited container: its termination-message file, else (with
/// `FallbackToLogsOnError` and a failure) the tail of its log, else the runtime's message.
pub(crate) fn termination_message(
    c: &super::observed::ObservedContainer,
    log_dir: &Path,
) -> String {
    const MAX: usize = 4096;
    if let Some(path) = c.annotations.get(labels::TERMINATION_MESSAGE_HOST_PATH)
        && let Ok(bytes) = std::fs::read(path)
        && !bytes.is_empty()
    {
        let end = bytes.len().min(MAX);
        return String::from_utf8_lossy(&bytes[..end]).into_owned();
    }
    let fallback = c
        .annotations
        .get(labels::TERMINATION_MESSAGE_POLICY)
        .is_some_and(|p| p == "FallbackToLogsOnError");
    if fallback && c.exit_code != 0 {
        let log = log_dir
            .join(&c.name)
            .join(format!("{}.log", c.restart_count));
        if let Ok(text) = std::fs::read_to_string(log) {
            let lines: Vec<&str> = text.lines().collect();
            let tail: Vec<String> = lines
                .iter()
                .skip(lines.len().saturating_sub(80))
                .map(|l| l.splitn(4, ' ').nth(3).unwrap_or_default().to_owned())
                .collect();
            let mut joined = tail.join("\n");
            if joined.len() > 2048 {
                let cut = joined.len() - 2048;
                let start = (cut..joined.len())
                    .find(|i| joined.is_char_boundary(*i))
                    .unwrap_or(joined.len());
                joined = joined[start..].to_owned();
            }
            return joined;
        }
    }
    c.message.clone()
}
