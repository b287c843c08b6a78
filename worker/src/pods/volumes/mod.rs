//! A pod's volumes on the node: emptyDir (on disk, or tmpfs for `medium: Memory` sized by
//! `sizeLimit`), configMap, secret, projected (configMap, secret, downwardAPI and bound
//! service-account tokens; `kube-root-ca.crt` is a configMap source), downwardAPI and
//! hostPath, and persistentVolumeClaim where the bound volume is a `hostPath` or `local`
//! volume of this node. Content volumes are rewritten through [`atomic`] on every sync, so a changed
//! configmap or secret shows up at the next resync.
//!
//! Layout as the kubelet's: `<pod dir>/volumes/kubernetes.io~<plugin>/<volume>`.

mod atomic;
mod sources;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Pod, Volume};

pub(crate) use sources::TokenCache;

use super::env::Downward;
use super::objects::{ConfigError, ObjectCache};
use super::quantity;
use crate::runtime::{Error, Result};

/// Where a volume is on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostVolume {
    /// The directory (or file, for a hostPath file).
    pub(crate) path: PathBuf,
    /// Mounted read-only whatever the container asks (content volumes).
    pub(crate) read_only: bool,
}

/// The pod's volumes by name.
pub(crate) type PodVolumes = HashMap<String, HostVolume>;

fn plugin_dir(pod_dir: &Path, plugin: &str, name: &str) -> PathBuf {
    pod_dir
        .join("volumes")
        .join(format!("kubernetes.io~{plugin}"))
        .join(name)
}

/// Sets up (or refreshes) every volume of the pod.
pub(crate) async fn setup(
    pod: &Pod,
    pod_dir: &Path,
    objects: &mut ObjectCache<'_>,
    downward: &Downward,
    tokens: &mut TokenCache,
) -> Result<Result<PodVolumes, ConfigError>> {
    let mut out = PodVolumes::new();
    let volumes: Vec<Volume> = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    for volume in &volumes {
        let name = volume.name.as_str();
        let host = if let Some(empty) = &volume.empty_dir {
            let dir = plugin_dir(pod_dir, "empty-dir", name);
            create_dir(&dir).await?;
            if empty.medium.as_deref() == Some("Memory") {
                let size = empty
                    .size_limit
                    .as_ref()
                    .and_then(|q| quantity::bytes(&q.0))
                    .filter(|b| *b > 0)
                    .unwrap_or(downward.node_memory);
                ensure_tmpfs(&dir, Some(size))?;
            }
            HostVolume {
                path: dir,
                read_only: false,
            }
        } else if let Some(host_path) = &volume.host_path {
            match host_path_volume(&host_path.path, host_path.type_.as_deref().unwrap_or(""))
                .await?
            {
                Ok(v) => v,
                Err(e) => return Ok(Err(e)),
            }
        } else if volume.config_map.is_some()
            || volume.secret.is_some()
            || volume.projected.is_some()
            || volume.downward_api.is_some()
        {
            let plugin = if volume.config_map.is_some() {
                "configmap"
            } else if volume.secret.is_some() {
                "secret"
            } else if volume.projected.is_some() {
                "projected"
            } else {
                "downward-api"
            };
            let dir = plugin_dir(pod_dir, plugin, name);
            create_dir(&dir).await?;
            // Secrets and tokens never touch the disk.
            if matches!(plugin, "secret" | "projected") {
                ensure_tmpfs(&dir, None)?;
            }
            let payload =
                match Box::pin(sources::payload(pod, volume, objects, downward, tokens)).await? {
                    Ok(p) => p,
                    Err(e) => {
                        return Ok(Err(ConfigError(format!(
                            "MountVolume.SetUp failed for volume \"{name}\" : {}",
                            e.0
                        ))));
                    }
                };
            let write_dir = dir.clone();
            tokio::task::spawn_blocking(move || atomic::write(&write_dir, &payload))
                .await
                .map_err(|e| Error::io("writing volume", &dir, std::io::Error::other(e)))??;
            HostVolume {
                path: dir,
                read_only: true,
            }
        } else if let Some(source) = &volume.persistent_volume_claim {
            let pv = match objects.claimed_volume(&source.claim_name).await? {
                Ok(pv) => pv,
                Err(e) => return Ok(Err(e)),
            };
            match persistent_volume(&pv, source.read_only.unwrap_or(false)).await? {
                Ok(v) => v,
                Err(e) => return Ok(Err(e)),
            }
        } else {
            // Kinds this node does not support (CSI, network volumes, ...): the pod waits.
            return Ok(Err(ConfigError(format!(
                "volume \"{name}\" has a type this node does not support"
            ))));
        };
        out.insert(name.to_owned(), host);
    }
    Ok(Ok(out))
}

/// Where a bound persistent volume is on this node: a `hostPath` volume as a hostPath volume
/// (created if its type asks for it), a `local` volume at its path, which must exist (the
/// local static provisioner, or an administrator, made it); other sources are not supported.
async fn persistent_volume(
    pv: &k8s_openapi::api::core::v1::PersistentVolume,
    read_only: bool,
) -> Result<Result<HostVolume, ConfigError>> {
    let name = pv.metadata.name.as_deref().unwrap_or("");
    let Some(spec) = pv.spec.as_ref() else {
        return Ok(Err(ConfigError(format!(
            "persistentvolume \"{name}\" has no spec"
        ))));
    };
    let found = if let Some(host) = &spec.host_path {
        host_path_volume(&host.path, host.type_.as_deref().unwrap_or("")).await?
    } else if let Some(local) = &spec.local {
        let path = PathBuf::from(&local.path);
        match tokio::fs::metadata(&path).await {
            Ok(_) => Ok(HostVolume {
                path,
                read_only: false,
            }),
            Err(e) => Err(ConfigError(format!(
                "MountVolume.NewMounter initialization failed for volume \"{name}\" : path \"{}\" does not exist ({e})",
                local.path
            ))),
        }
    } else {
        Err(ConfigError(format!(
            "persistentvolume \"{name}\" has a type this node does not support"
        )))
    };
    Ok(found.map(|v| HostVolume {
        read_only: v.read_only || read_only,
        ..v
    }))
}

async fn create_dir(dir: &Path) -> Result<()> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| Error::io("creating", dir, e))
}

async fn host_path_volume(path: &str, kind: &str) -> Result<Result<HostVolume, ConfigError>> {
    let p = PathBuf::from(path);
    let meta = tokio::fs::metadata(&p).await.ok();
    let fail = |what: &str| {
        Ok(Err(ConfigError(format!(
            "hostPath type check failed: {path} is not a {what}"
        ))))
    };
    match kind {
        "DirectoryOrCreate" if meta.is_none() => {
            create_dir(&p).await?;
            use std::os::unix::fs::PermissionsExt;
            let _ = tokio::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).await;
        }
        "FileOrCreate" if meta.is_none() => {
            if let Some(parent) = p.parent() {
                create_dir(parent).await?;
            }
            tokio::fs::write(&p, b"")
                .await
                .map_err(|e| Error::io("creating", &p, e))?;
        }
        "Directory" if !meta.as_ref().is_some_and(std::fs::Metadata::is_dir) => {
            return fail("directory");
        }
        "File" if !meta.as_ref().is_some_and(std::fs::Metadata::is_file) => return fail("file"),
        "Socket" | "CharDevice" | "BlockDevice" if meta.is_none() => return fail(kind),
        _ => {}
    }
    Ok(Ok(HostVolume {
        path: p,
        read_only: false,
    }))
}

/// Mounts a tmpfs on `dir` unless one is already there.
fn ensure_tmpfs(dir: &Path, size: Option<i64>) -> Result<()> {
    if is_mount_point(dir) {
        return Ok(());
    }
    let options = size.map(|s| format!("size={s}"));
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        options.as_deref(),
    )
    .map_err(|source| Error::Sys {
        what: format!("mounting tmpfs on {}", dir.display()),
        source,
    })
}

fn is_mount_point(dir: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines()
                .any(|l| l.split(' ').nth(4).is_some_and(|p| Path::new(p) == dir))
        })
        .unwrap_or(false)
}

/// Unmounts every tmpfs under the pod's directory and removes it.
pub(crate) fn teardown(pod_dir: &Path) {
    if let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") {
        let mut points: Vec<&str> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| Path::new(p).starts_with(pod_dir))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in points {
            let _ = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _ = std::fs::remove_dir_all(pod_dir);
}

/// Bytes used under `dir` (an emptyDir's usage against its `sizeLimit`).
pub(crate) fn disk_usage(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_usage(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
