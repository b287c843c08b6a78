//! The two images built locally by `scripts/build-images` (no registry is reachable on the
//! build machines) and their import into containerd.

use std::path::{Path, PathBuf};

use tokio::process::Command;

use super::error::{Error, Result};

/// The busybox image built from Debian's busybox-static 1.35.
pub const BUSYBOX_IMAGE: &str = "docker.io/library/busybox:1.35";
/// The pause image (the pod sandbox's process) built from `worker/images/pause.c`.
pub const PAUSE_IMAGE: &str = "localhost/k3s-daas/pause:1.0";

/// One OCI image archive that `ctr images import` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageArchive {
    /// The image reference its index names (`io.containerd.image.name`).
    pub reference: String,
    /// The archive's path.
    pub path: PathBuf,
}

impl ImageArchive {
    /// Parses `scripts/build-images` output: one `<reference> <path>` line per image.
    #[must_use]
    pub fn parse_list(text: &str) -> Vec<Self> {
        text.lines()
            .filter_map(|line| {
                let (reference, path) = line.trim().split_once(' ')?;
                Some(Self {
                    reference: reference.to_owned(),
                    path: PathBuf::from(path.trim()),
                })
            })
            .collect()
    }

    /// Runs `scripts/build-images` of the repository at `repo` (a no-op when its cache is
    /// warm) and returns the archives it lists.
    ///
    /// # Errors
    /// [`Error::Containerd`] when the script fails.
    pub async fn build_local(repo: &Path) -> Result<Vec<Self>> {
        let script = repo.join("scripts/build-images");
        let output = Command::new(&script)
            .output()
            .await
            .map_err(|source| Error::io("running", &script, source))?;
        if !output.status.success() {
            return Err(Error::Containerd {
                message: format!(
                    "{} failed: {}",
                    script.display(),
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            });
        }
        Ok(Self::parse_list(&String::from_utf8_lossy(&output.stdout)))
    }
}

/// Imports `archive` into the `k8s.io` namespace of the containerd at `socket` with `ctr`.
///
/// # Errors
/// [`Error::ImageImport`] when ctr fails.
pub async fn import(socket: &Path, archive: &ImageArchive) -> Result<()> {
    let output = Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["--namespace", "k8s.io", "images", "import"])
        .arg(&archive.path)
        .output()
        .await
        .map_err(|source| Error::io("running ctr for", &archive.path, source))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::ImageImport {
            archive: archive.path.clone(),
            message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_scripts_list() {
        let list = ImageArchive::parse_list(
            "docker.io/library/busybox:1.35 /c/busybox/image.tar\nlocalhost/k3s-daas/pause:1.0 /c/pause/image.tar\n\n",
        );
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].reference, BUSYBOX_IMAGE);
        assert_eq!(list[1].path, PathBuf::from("/c/pause/image.tar"));
    }
}
