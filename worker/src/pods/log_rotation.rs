//! Container log rotation, as the kubelet's container log manager does it: every
//! `log_rotation_interval` (10 s) each running container's log that has reached
//! `container_log_max_size` (10 MiB) is renamed to `<log>.<UTC %Y%m%d-%H%M%S>` and the
//! runtime reopens the original path (CRI `ReopenContainerLog`); rotated files beyond
//! `container_log_max_files` (5, the current one included) go, oldest first. Without it a
//! chatty container fills the node's disk. Unlike the kubelet, rotated files are not
//! gzip-compressed. `pods/log` reads the current file, as upstream's does, and a followed log
//! carries on into the reopened file (`tunnel::cri_log`).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_cri::v1 as cri;
use tokio_util::sync::CancellationToken;

use super::Ctx;
use crate::runtime::{Cri, Result};

/// Rotates every running container's log when due, until `cancel`.
pub(crate) async fn rotation_loop(ctx: Arc<Ctx>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(ctx.config.log_rotation_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = rotate_running(
            &ctx.cri,
            ctx.config.container_log_max_size,
            ctx.config.container_log_max_files,
        )
        .await
        {
            tracing::warn!(error = %e, "rotating container logs failed");
        }
    }
}

/// One pass over the running containers.
async fn rotate_running(cri: &Cri, max_size: u64, max_files: usize) -> Result<()> {
    let running = cri
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                state: Some(cri::ContainerStateValue {
                    state: cri::ContainerState::ContainerRunning as i32,
                }),
                ..Default::default()
            }),
        })
        .await?
        .containers;
    for container in running {
        let status = cri.container_status_if_present(&container.id).await?;
        let Some(log_path) = status.map(|s| s.log_path).filter(|p| !p.is_empty()) else {
            continue;
        };
        let log = PathBuf::from(log_path);
        match rotate_file(&log, max_size, max_files, jiff::Timestamp::now()) {
            Ok(None) => {}
            Ok(Some(rotated)) => {
                let reopened = cri
                    .reopen_container_log(cri::ReopenContainerLogRequest {
                        container_id: container.id.clone(),
                    })
                    .await;
                if let Err(e) = reopened {
                    // The runtime still writes to the renamed file: give it its name back.
                    let _ = std::fs::rename(&rotated, &log);
                    tracing::warn!(container = %container.id, error = %e, "reopening a rotated container log failed");
                } else {
                    tracing::debug!(container = %container.id, rotated = %rotated.display(), "container log rotated");
                }
            }
            Err(e) => {
                tracing::warn!(log = %log.display(), error = %e, "rotating a container log failed");
            }
        }
    }
    Ok(())
}

/// The rotated files of `log` (`<log>.<stamp>`), oldest first.
fn rotated_files(log: &Path) -> io::Result<Vec<PathBuf>> {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        })
        .collect();
    // The stamps sort as the times they name.
    found.sort();
    Ok(found)
}

/// Renames `log` to `<log>.<now as %Y%m%d-%H%M%S>` when it has reached `max_size`, first
/// removing the oldest rotated files so that `max_files` remain with the new current one;
/// returns the rotated file, or `None` when nothing was due (or the log does not exist).
pub(crate) fn rotate_file(
    log: &Path,
    max_size: u64,
    max_files: usize,
    now: jiff::Timestamp,
) -> io::Result<Option<PathBuf>> {
    let size = match std::fs::metadata(log) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if size < max_size {
        return Ok(None);
    }
    let rotated = rotated_files(log)?;
    // After this rotation: the current file and `max_files - 1` rotated ones.
    let keep = max_files.saturating_sub(2);
    for old in &rotated[..rotated.len().saturating_sub(keep)] {
        match std::fs::remove_file(old) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    let stamp = now.strftime("%Y%m%d-%H%M%S").to_string();
    let mut target = PathBuf::from(format!("{}.{stamp}", log.display()));
    // Two rotations within a second (a tiny max size): keep both.
    let mut n = 1;
    while target.exists() {
        target = PathBuf::from(format!("{}.{stamp}-{n}", log.display()));
        n += 1;
    }
    std::fs::rename(log, &target)?;
    Ok(Some(target))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn a_log_below_the_limit_or_missing_stays() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        assert_eq!(rotate_file(&log, 10, 5, at(0)).unwrap(), None);
        std::fs::write(&log, "123456789").unwrap();
        assert_eq!(rotate_file(&log, 10, 5, at(0)).unwrap(), None);
        assert_eq!(names(dir.path()), ["0.log"]);
    }

    #[test]
    fn a_full_log_is_renamed_with_its_utc_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        std::fs::write(&log, "0123456789").unwrap();
        let rotated = rotate_file(&log, 10, 5, at(0)).unwrap().unwrap();
        // 1_700_000_000 is 2023-11-14T22:13:20Z.
        assert_eq!(rotated, dir.path().join("0.log.20231114-221320"));
        assert!(!log.exists());
        assert_eq!(std::fs::read_to_string(rotated).unwrap(), "0123456789");
    }

    #[test]
    fn at_most_max_files_remain_the_oldest_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        // Another container's files in the same directory are not touched.
        std::fs::write(dir.path().join("1.log.20200101-000000"), "other").unwrap();
        for s in 0..6 {
            std::fs::write(&log, format!("rotation {s}")).unwrap();
            rotate_file(&log, 1, 3, at(s * 60)).unwrap().unwrap();
            std::fs::write(&log, "current").unwrap();
        }
        assert_eq!(
            names(dir.path()),
            [
                "0.log",
                "0.log.20231114-221720",
                "0.log.20231114-221820",
                "1.log.20200101-000000"
            ]
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("0.log.20231114-221820")).unwrap(),
            "rotation 5"
        );
    }

    #[test]
    fn two_rotations_in_one_second_keep_both() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        std::fs::write(&log, "first").unwrap();
        let a = rotate_file(&log, 1, 5, at(0)).unwrap().unwrap();
        std::fs::write(&log, "second").unwrap();
        let b = rotate_file(&log, 1, 5, at(0)).unwrap().unwrap();
        assert_ne!(a, b);
        assert_eq!(std::fs::read_to_string(b).unwrap(), "second");
    }
}
