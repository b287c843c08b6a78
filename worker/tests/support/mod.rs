//! A real containerd (a child process under a temp dir) and a pod runtime over it, driven
//! through the fake API. Skips (with a message) when containerd is not installed, except
//! under CI, where that fails.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use worker::pods::fake::FakeApi;
use worker::pods::{PodRuntime, PodRuntimeConfig, Shutdown};
use worker::runtime::{
    BUSYBOX_IMAGE, BridgeNetwork, Containerd, ContainerdConfig, Cri, ImageArchive,
};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// containerd + pod runtime + fake API; everything stopped and removed on drop.
pub struct Harness {
    pub api: FakeApi,
    pub pods: Option<PodRuntime>,
    pub containerd: Option<Containerd>,
    pub dir: tempfile::TempDir,
    pub node: String,
    config: PodRuntimeConfig,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Whether the machine can run these tests; prints why not.
pub fn available() -> bool {
    let found = std::process::Command::new("containerd")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "containerd is not installed (scripts/setup installs it); CI requires it"
        );
        eprintln!("SKIPPED: containerd is not installed (run scripts/setup)");
    }
    found
}

impl Harness {
    /// Starts containerd and a pod runtime (resync every `resync`), or `None` when skipped.
    pub async fn start_with(resync: Duration) -> Option<Self> {
        Self::start_configured(move |c| c.with_resync(resync)).await
    }

    /// Starts containerd and a pod runtime whose configuration `configure` finishes, or
    /// `None` when skipped.
    pub async fn start_configured(
        configure: impl FnOnce(PodRuntimeConfig) -> PodRuntimeConfig,
    ) -> Option<Self> {
        if !available() {
            return None;
        }
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "worker=info".into()),
            )
            .with_test_writer()
            .try_init();
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let id = (std::process::id() % 200) * 8 + n;
        let dir = tempfile::Builder::new()
            .prefix("daas-rt")
            .tempdir_in("/tmp")
            .unwrap();
        let images = ImageArchive::build_local(&repo()).await.unwrap();
        let network = BridgeNetwork {
            bridge: format!("daast{id}"),
            subnet: std::net::Ipv4Addr::new(10, 88, u8::try_from(id % 250).unwrap(), 0),
            prefix: 24,
        };
        let containerd = Containerd::start(
            ContainerdConfig::new(dir.path())
                .with_images(images)
                .with_network(network),
        )
        .await
        .unwrap();
        let node = format!("node-{id}");
        let config = configure(
            PodRuntimeConfig::new(node.clone(), "127.0.0.1".parse().unwrap(), dir.path())
                .with_cgroup_root(format!("/daas-test-{id}/kubepods")),
        );
        let api = FakeApi::default();
        let pods = PodRuntime::new(
            config.clone(),
            containerd.cri(),
            Arc::new(api.clone()),
            Arc::new(api.clone()),
        );
        Some(Self {
            api,
            pods: Some(pods),
            containerd: Some(containerd),
            dir,
            node,
            config,
        })
    }

    pub async fn start() -> Option<Self> {
        Self::start_with(Duration::from_secs(2)).await
    }

    /// The cgroup under which this harness's pods live (removed on drop).
    pub fn config_cgroup_root(&self) -> String {
        format!("/daas-test-{}", self.node.trim_start_matches("node-"))
    }

    pub fn pods(&self) -> &PodRuntime {
        self.pods.as_ref().unwrap()
    }

    pub fn cri(&self) -> Cri {
        self.containerd.as_ref().unwrap().cri()
    }

    /// Drops the pod runtime without stopping anything (as `kill -9` of the agent) and starts
    /// a new one over the same containerd.
    pub fn restart_runtime(&mut self) {
        drop(self.pods.take());
        let pods = PodRuntime::new(
            self.config.clone(),
            self.cri(),
            Arc::new(self.api.clone()),
            Arc::new(self.api.clone()),
        );
        self.pods = Some(pods);
    }

    /// Waits for the pod's status to satisfy `check`; panics with the last status otherwise.
    pub async fn wait(
        &self,
        pod: &Pod,
        secs: u64,
        what: &str,
        check: impl Fn(&PodStatus) -> bool,
    ) -> PodStatus {
        let uid = pod.metadata.uid.clone().unwrap();
        match self
            .api
            .wait_status(&uid, Duration::from_secs(secs), check)
            .await
        {
            Ok(s) => s,
            Err(last) => panic!(
                "timed out waiting for {what}; last status: {}",
                serde_json::to_string_pretty(&last).unwrap()
            ),
        }
    }

    pub async fn stop(mut self) {
        if let Some(pods) = self.pods.take() {
            pods.shutdown(Shutdown::RemovePods).await.unwrap();
        }
        if let Some(c) = self.containerd.take() {
            c.stop().await.unwrap();
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        drop(self.pods.take());
        // Containerd's Drop removes every pod it ran and stops it.
        drop(self.containerd.take());
        // The test's own cgroup root (the pods' cgroups under it are removed with the pods).
        let root = self.config_cgroup_root();
        if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
            for e in entries.flatten() {
                remove_tree(&e.path().join(root.trim_start_matches('/')));
            }
        }
    }
}

fn remove_tree(dir: &Path) {
    if let Ok(children) = std::fs::read_dir(dir) {
        for child in children.flatten() {
            if child.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&child.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// A busybox pod running `script` with `sh -c`.
pub fn busybox_pod(name: &str, script: &str) -> Pod {
    let uid = format!("uid-{name}-{}", NEXT.fetch_add(1, Ordering::SeqCst));
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some("default".to_owned()),
            uid: Some(uid),
            labels: Some(BTreeMap::from([("app".to_owned(), name.to_owned())])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![container("main", script)],
            termination_grace_period_seconds: Some(2),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Pending".to_owned()),
            ..Default::default()
        }),
    }
}

/// A busybox container running `script`.
pub fn container(name: &str, script: &str) -> Container {
    Container {
        name: name.to_owned(),
        image: Some(BUSYBOX_IMAGE.to_owned()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        command: Some(vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()]),
        ..Default::default()
    }
}

/// Marks the pod deleted (as the API server does on DELETE).
pub fn deleted(mut pod: Pod, grace: i64) -> Pod {
    pod.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
    pod.metadata.deletion_grace_period_seconds = Some(grace);
    pod
}

pub fn phase(s: &PodStatus) -> &str {
    s.phase.as_deref().unwrap_or_default()
}

pub fn container_status<'a>(
    s: &'a PodStatus,
    name: &str,
) -> &'a k8s_openapi::api::core::v1::ContainerStatus {
    s.container_statuses
        .iter()
        .flatten()
        .chain(s.init_container_statuses.iter().flatten())
        .find(|c| c.name == name)
        .unwrap()
}

pub fn waiting_reason(s: &PodStatus, name: &str) -> Option<String> {
    s.container_statuses
        .iter()
        .flatten()
        .chain(s.init_container_statuses.iter().flatten())
        .find(|c| c.name == name)
        .and_then(|c| c.state.as_ref())
        .and_then(|st| st.waiting.as_ref())
        .and_then(|w| w.reason.clone())
}

pub fn condition(s: &PodStatus, kind: &str) -> Option<String> {
    s.conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == kind)
        .map(|c| c.status.clone())
}

/// Runs a command in the pod's container `name` and returns its stdout.
pub async fn exec(h: &Harness, s: &PodStatus, name: &str, cmd: &[&str]) -> String {
    let id = container_status(s, name).container_id.clone().unwrap();
    let id = id.trim_start_matches("containerd://").to_owned();
    let out = h
        .cri()
        .exec_sync(k8s_cri::v1::ExecSyncRequest {
            container_id: id,
            cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
            timeout: 10,
        })
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A volume mount.
pub fn mount(name: &str, path: &str) -> k8s_openapi::api::core::v1::VolumeMount {
    k8s_openapi::api::core::v1::VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        ..Default::default()
    }
}

/// Object metadata in `default`.
pub fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some("default".to_owned()),
        ..Default::default()
    }
}

/// A configmap in `default`.
pub fn config_map(name: &str, data: &[(&str, &str)]) -> k8s_openapi::api::core::v1::ConfigMap {
    k8s_openapi::api::core::v1::ConfigMap {
        metadata: meta(name),
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
        ..Default::default()
    }
}

/// A secret in `default`.
pub fn secret(name: &str, data: &[(&str, &str)]) -> k8s_openapi::api::core::v1::Secret {
    k8s_openapi::api::core::v1::Secret {
        metadata: meta(name),
        data: Some(
            data.iter()
                .map(|(k, v)| {
                    (
                        (*k).to_owned(),
                        k8s_openapi::ByteString(v.as_bytes().to_vec()),
                    )
                })
                .collect(),
        ),
        ..Default::default()
    }
}
