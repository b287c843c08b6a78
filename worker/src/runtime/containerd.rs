//! containerd as the worker's child process (dev mode, no systemd): its own root, state,
//! socket and config under the worker's data dir; the local images imported once it answers;
//! on stop every pod it ran removed, then containerd itself.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use k8s_cri::v1 as cri;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::cni::BridgeNetwork;
use super::cri::Cri;
use super::error::{Error, Result};
use super::images::{self, ImageArchive, PAUSE_IMAGE};

/// How to start a worker's own containerd.
#[derive(Debug, Clone)]
pub struct ContainerdConfig {
    data_dir: PathBuf,
    images: Vec<ImageArchive>,
    network: BridgeNetwork,
    sandbox_image: String,
    binary: PathBuf,
}

impl ContainerdConfig {
    /// A containerd under `data_dir` (`containerd/{root,state,config.toml,containerd.sock}`
    /// and `cni/`). Defaults: no images to import, [`BridgeNetwork::default`], the sandbox
    /// image [`PAUSE_IMAGE`], the `containerd` found on `PATH`.
    #[must_use]
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            images: Vec::new(),
            network: BridgeNetwork::default(),
            sandbox_image: PAUSE_IMAGE.to_owned(),
            binary: PathBuf::from("containerd"),
        }
    }

    /// Image archives to import once containerd answers (default: none).
    #[must_use]
    pub fn with_images(mut self, images: Vec<ImageArchive>) -> Self {
        self.images = images;
        self
    }

    /// The pods' bridge network (default [`BridgeNetwork::default`]).
    #[must_use]
    pub fn with_network(mut self, network: BridgeNetwork) -> Self {
        self.network = network;
        self
    }

    /// The containerd binary (default `containerd` on `PATH`).
    #[must_use]
    pub fn with_binary(mut self, binary: impl Into<PathBuf>) -> Self {
        self.binary = binary.into();
        self
    }

    fn dir(&self) -> PathBuf {
        self.data_dir.join("containerd")
    }

    /// The socket containerd will listen on.
    #[must_use]
    pub fn socket(&self) -> PathBuf {
        self.dir().join("containerd.sock")
    }

    fn config_toml(&self) -> String {
        let dir = self.dir();
        let quote = |p: &Path| serde_json::Value::String(p.display().to_string()).to_string();
        format!(
            r#"version = 2
root = {root}
state = {state}
[grpc]
  address = {socket}
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  sandbox_image = {sandbox}
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = {cni}
"#,
            root = quote(&dir.join("root")),
            state = quote(&dir.join("state")),
            socket = quote(&self.socket()),
            sandbox = serde_json::Value::String(self.sandbox_image.clone()),
            cni = quote(&self.data_dir.join("cni/net.d")),
        )
    }
}

/// A running containerd child process. Stop it with [`Containerd::stop`]; dropping it
/// without stopping removes its pods and kills it from a helper thread.
#[derive(Debug)]
pub struct Containerd {
    child: Option<Child>,
    config: ContainerdConfig,
    cri: Cri,
}

impl Containerd {
    /// Writes the config and the CNI conflist, starts containerd, waits until its CRI
    /// answers (up to 30 s) and imports the configured images.
    ///
    /// # Errors
    /// [`Error::Io`] for the files, [`Error::Containerd`] when it exits or does not answer,
    /// [`Error::ImageImport`] when an import fails.
    pub async fn start(config: ContainerdConfig) -> Result<Self> {
        let dir = config.dir();
        let cni_dir = config.data_dir.join("cni/net.d");
        for d in [&dir, &cni_dir] {
            tokio::fs::create_dir_all(d)
                .await
                .map_err(|e| Error::io("creating", d, e))?;
        }
        let conflist = config.network.conflist(&config.data_dir.join("cni/ipam"));
        let conf_path = cni_dir.join("10-k3s-daas.conflist");
        tokio::fs::write(&conf_path, conflist.to_string())
            .await
            .map_err(|e| Error::io("writing", &conf_path, e))?;
        let config_path = dir.join("config.toml");
        tokio::fs::write(&config_path, config.config_toml())
            .await
            .map_err(|e| Error::io("writing", &config_path, e))?;
        // A bridge left by an earlier run of this node may carry another subnet's gateway.
        delete_link(&config.network.bridge).await;
        let socket = config.socket();
        let _ = tokio::fs::remove_file(&socket).await;
        let log_path = dir.join("containerd.log");
        let log =
            std::fs::File::create(&log_path).map_err(|e| Error::io("creating", &log_path, e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| Error::io("opening", &log_path, e))?;
        let child = Command::new(&config.binary)
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| Error::io("starting", &config.binary, e))?;
        let cri = Cri::connect(&socket)?;
        let mut this = Self {
            child: Some(child),
            config,
            cri,
        };
        this.wait_ready().await?;
        for archive in &this.config.images {
            images::import(&socket, archive).await?;
        }
        tracing::info!(socket = %socket.display(), "containerd started");
        Ok(this)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(Error::Containerd {
                    message: format!(
                        "exited with {status} before answering; see {}",
                        self.config.dir().join("containerd.log").display()
                    ),
                });
            }
            if self.config.socket().exists()
                && self
                    .cri
                    .version(cri::VersionRequest::default())
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Containerd {
                    message: "no answer on its socket within 30 s".to_owned(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A CRI client for this containerd.
    #[must_use]
    pub fn cri(&self) -> Cri {
        self.cri.clone()
    }

    /// containerd's socket.
    #[must_use]
    pub fn socket(&self) -> PathBuf {
        self.config.socket()
    }

    /// containerd's process id, while it runs.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Stops and removes every pod sandbox (and so every container) containerd runs, then
    /// stops containerd (SIGTERM, SIGKILL after 10 s) and deletes the pods' bridge.
    ///
    /// # Errors
    /// [`Error::Cri`] when the pods cannot be removed (containerd is stopped regardless).
    pub async fn stop(mut self) -> Result<()> {
        self.stop_inner().await
    }

    async fn stop_inner(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let removed = remove_all_pods(&self.cri).await;
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
        delete_link(&self.config.network.bridge).await;
        unmount_under(&self.config.dir());
        removed
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // A panic inside the stopper thread must not start another stopper.
        if std::thread::current().name() == Some(STOPPER_THREAD) {
            let _ = child.start_kill();
            return;
        }
        // Drop cannot await: stop from a thread of its own with a small runtime (the
        // original client's connection lives on the caller's runtime, which may be gone).
        let config = self.config.clone();
        let stopper = std::thread::Builder::new()
            .name(STOPPER_THREAD.to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                let Ok(runtime) = runtime else {
                    let _ = child.start_kill();
                    return;
                };
                runtime.block_on(async move {
                    match Cri::connect(&config.socket()) {
                        Ok(cri) => {
                            let mut this = Self {
                                child: Some(child),
                                config,
                                cri,
                            };
                            let _ = this.stop_inner().await;
                        }
                        Err(_) => {
                            let _ = child.kill().await;
                        }
                    }
                });
            });
        match stopper {
            Ok(handle) => {
                let _ = handle.join();
            }
            Err(_) => {
                tracing::warn!("could not start a thread to stop containerd; it keeps running")
            }
        }
    }
}

/// The name of the thread that stops a dropped [`Containerd`].
const STOPPER_THREAD: &str = "containerd-stop";

/// Stops and removes every pod sandbox the runtime at `cri` knows (with their containers).
///
/// # Errors
/// The first CRI failure; the other sandboxes are still tried.
pub async fn remove_all_pods(cri: &Cri) -> Result<()> {
    let sandboxes = cri
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await?
        .items;
    let mut first_error = None;
    for sandbox in sandboxes {
        let containers = cri
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    pod_sandbox_id: sandbox.id.clone(),
                    ..Default::default()
                }),
            })
            .await
            .map(|r| r.containers)
            .unwrap_or_default();
        for container in containers {
            let _ = cri
                .stop_container(cri::StopContainerRequest {
                    container_id: container.id.clone(),
                    timeout: 0,
                })
                .await;
            let _ = cri
                .remove_container(cri::RemoveContainerRequest {
                    container_id: container.id,
                })
                .await;
        }
        let stop = cri
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: sandbox.id.clone(),
            })
            .await;
        let remove = cri
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: sandbox.id,
            })
            .await;
        if let Err(e) = stop.and(remove) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Deletes a network link by name, if it exists.
async fn delete_link(name: &str) {
    let _ = Command::new("ip")
        .args(["link", "delete", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

/// Lazily unmounts whatever is still mounted under `dir` (overlay snapshots, shm, netns).
fn unmount_under(dir: &Path) {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| Path::new(point).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH);
    }
}
