//! upstream's `AtomicWriter`: a volume's files live in a timestamped directory that the
//! `..data` symlink points to, and each top-level name is a symlink through `..data`. An
//! update writes a new directory and swaps `..data` with one rename, so a reader sees the old
//! set or the new set, never a mix.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path};

use crate::runtime::{Error, Result};

/// One file of a volume's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileProjection {
    /// The content.
    pub(crate) data: Vec<u8>,
    /// The file mode.
    pub(crate) mode: u32,
}

/// Relative path -> file.
pub(crate) type Payload = BTreeMap<String, FileProjection>;

const DATA_DIR: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// Whether `path` is a clean relative path (no `..`, not absolute, not starting with `..`).
pub(crate) fn valid_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with("..")
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// Writes `payload` into `dir` atomically; does nothing when `dir` already holds exactly it.
/// Returns whether anything changed. Blocking: call from `spawn_blocking`.
///
/// # Errors
/// [`Error::Io`] for any file operation.
pub(crate) fn write(dir: &Path, payload: &Payload) -> Result<bool> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    let data = dir.join(DATA_DIR);
    if current_matches(&data, payload) {
        return Ok(false);
    }
    let old_target = std::fs::read_link(&data).ok();
    let stamp = jiff::Timestamp::now()
        .strftime("%Y_%m_%d_%H_%M_%S.%f")
        .to_string();
    let ts_name = format!("..{stamp}");
    let ts_dir = dir.join(&ts_name);
    std::fs::create_dir(&ts_dir).map_err(|e| Error::io("creating", &ts_dir, e))?;
    for (path, file) in payload {
        let target = ts_dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
        }
        std::fs::write(&target, &file.data).map_err(|e| Error::io("writing", &target, e))?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(file.mode))
            .map_err(|e| Error::io("chmod", &target, e))?;
    }
    let tmp = dir.join(DATA_TMP);
    let _ = std::fs::remove_file(&tmp);
    symlink(&ts_name, &tmp).map_err(|e| Error::io("linking", &tmp, e))?;
    std::fs::rename(&tmp, &data).map_err(|e| Error::io("renaming onto", &data, e))?;
    // User-visible names: one symlink per top-level entry, through ..data.
    let wanted: BTreeSet<String> = payload
        .keys()
        .filter_map(|p| p.split('/').next().map(str::to_owned))
        .collect();
    for name in &wanted {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA_DIR).join(name), &link)
                .map_err(|e| Error::io("linking", &link, e))?;
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("..") && !wanted.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    if let Some(old) = old_target {
        let old_dir = dir.join(old);
        if old_dir != ts_dir {
            let _ = std::fs::remove_dir_all(old_dir);
        }
    }
    Ok(true)
}

fn current_matches(data: &Path, payload: &Payload) -> bool {
    if std::fs::read_link(data).is_err() {
        return false;
    }
    let mut found = Payload::new();
    if collect(data, data, &mut found).is_err() {
        return false;
    }
    found == *payload
}

fn collect(root: &Path, dir: &Path, out: &mut Payload) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let meta = std::fs::metadata(&path)?;
        if meta.is_dir() {
            collect(root, &path, out)?;
        } else {
            let relative = path.strip_prefix(root).map_err(std::io::Error::other)?;
            out.insert(
                relative.to_string_lossy().into_owned(),
                FileProjection {
                    data: std::fs::read(&path)?,
                    mode: meta.permissions().mode() & 0o7777,
                },
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(entries: &[(&str, &str)]) -> Payload {
        entries
            .iter()
            .map(|(k, v)| {
                (
                    (*k).to_owned(),
                    FileProjection {
                        data: v.as_bytes().to_vec(),
                        mode: 0o644,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn swaps_data_and_keeps_links() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        assert!(write(dir.path(), &payload(&[("a", "1"), ("sub/b", "2")]))?);
        assert_eq!(std::fs::read_to_string(dir.path().join("a"))?, "1");
        assert_eq!(std::fs::read_to_string(dir.path().join("sub/b"))?, "2");
        assert_eq!(
            std::fs::read_link(dir.path().join("a"))?,
            Path::new("..data/a")
        );
        let first = std::fs::read_link(dir.path().join(DATA_DIR))?;
        assert!(
            !write(dir.path(), &payload(&[("a", "1"), ("sub/b", "2")]))?,
            "unchanged payload rewrote"
        );
        assert!(write(dir.path(), &payload(&[("a", "3")]))?);
        assert_eq!(std::fs::read_to_string(dir.path().join("a"))?, "3");
        assert!(
            std::fs::symlink_metadata(dir.path().join("sub")).is_err(),
            "stale link kept"
        );
        assert!(!dir.path().join(first).exists(), "old data dir kept");
        assert!(
            valid_path("a/b") && !valid_path("../a") && !valid_path("/a") && !valid_path("..data")
        );
        Ok(())
    }
}
