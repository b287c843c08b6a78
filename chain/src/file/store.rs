//! The registry file on disk: JSON, changed only under an exclusive `flock` on a sibling
//! `.lock` file and replaced by atomic rename, so concurrent processes see either the old or
//! the new state and never lose an update.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::types::ClusterState;

use super::LocalEvent;

/// Format tag written into every registry file.
pub(super) const FORMAT: &str = "k3s-daas-registry/1";

/// The whole file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct RegistryFile {
    pub(super) format: String,
    pub(super) cluster: ClusterState,
    /// Everything that happened, oldest first (the local stand-in for chain events).
    pub(super) events: Vec<LocalEvent>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Holds the exclusive lock until dropped (closing the descriptor releases the `flock`).
pub(super) struct Locked {
    _lock: File,
}

/// Takes the registry's exclusive lock, blocking until other processes release it.
pub(super) fn lock(path: &Path) -> Result<Locked> {
    let lock_path = lock_path(path);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    fs4::FileExt::lock(&file).map_err(io(&lock_path))?;
    Ok(Locked { _lock: file })
}

/// Reads the registry file.
pub(super) fn read(path: &Path) -> Result<RegistryFile> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotFound {
                path: path.to_path_buf(),
            });
        }
        Err(e) => return Err(io(path)(e)),
    };
    let file: RegistryFile = serde_json::from_slice(&bytes).map_err(|source| Error::Corrupt {
        path: path.to_path_buf(),
        source,
    })?;
    if file.format != FORMAT {
        return Err(Error::Corrupt {
            path: path.to_path_buf(),
            source: serde::de::Error::custom(format!("unknown format {:?}", file.format)),
        });
    }
    Ok(file)
}

/// Replaces the registry file atomically: write a temporary sibling, fsync, rename, fsync the
/// directory. Call only while holding [`lock`].
pub(super) fn write(path: &Path, file: &RegistryFile, _locked: &Locked) -> Result<()> {
    let json = serde_json::to_vec_pretty(file).map_err(|source| Error::Corrupt {
        path: path.to_path_buf(),
        source,
    })?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    {
        let mut out = File::create(&tmp).map_err(io(&tmp))?;
        out.write_all(&json).map_err(io(&tmp))?;
        out.write_all(b"\n").map_err(io(&tmp))?;
        out.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}
