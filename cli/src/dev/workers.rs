//! `daas dev --workers N`: the dev registry and the workers that join through it.
//!
//! The registry is a local file, `DATA_DIR/registry.json`, administered by the account in
//! `DATA_DIR/registry-admin.keystore`. Once the enclave's attestation verified, `daas dev`
//! admits its image (the PCRs of the `daas-enclave` binary it runs) and registers it with the
//! document it just verified, as an operator would on Sui. Each worker `worker-I` has its own
//! data directory `DATA_DIR/workers/worker-I/` holding its account (`sui.keystore`, a Sui CLI
//! keystore), its node key, certificate and kubeconfig; its account stakes the cluster minimum
//! for its node name. Each runs as a real `daas-worker run` process that verifies the enclave
//! and joins through the relay. Everything is reused when `daas dev` runs again.
//!
//! When `containerd` is on `PATH`, each worker runs pods on a containerd of its own
//! (`--containerd-dir` = its data directory: root, state, socket under `containerd/`, CNI
//! config under `cni/`), with its pods' cgroups under a root of its own, and the images `scripts/build-images` cached imported; the
//! worker stops that containerd and every pod it ran when it stops (also when `daas dev` is
//! killed: it exits with its parent). Pods get their network in one of two ways:
//! - the dev network (default, see [`super::network`]): each worker runs in a network namespace
//!   of its own on the dev bridge (`nsenter --net=/run/netns/daas-dev-wI daas-worker run --network ...`),
//!   with the node's networking on: pods reach each other across nodes, Services and cluster
//!   DNS work;
//! - without it (`daas dev --no-network`, or when namespaces cannot be made here): each worker
//!   in the host's namespace on a bridge of its own (`daas{I-1}`, `10.88.{I-1}.0/24`), pods
//!   reachable only from their own node.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use chain::{
    AccountKeystore, AnyRegistry, ClusterSettings, OpenOptions, Pcrs, Registry, RegistryAdmin,
    RegistryUrl, SuiAccount,
};
use host::launcher::RestartPolicy;

use worker::network::devnet::DevNode;

use super::ChildSpec;
use crate::attested::ServerUrl;

/// The dev registry, under the data directory.
pub(super) const REGISTRY_FILE: &str = "registry.json";
/// The dev registry admin's keystore, under the data directory.
const ADMIN_KEYSTORE: &str = "registry-admin.keystore";
/// The workers' directories, under the data directory.
const WORKERS_DIR: &str = "workers";
/// Each worker's stake: the dev cluster's minimum, 1 SUI.
const DEV_STAKE: u64 = 1_000_000_000;

/// The dev workers of one data directory.
#[derive(Debug)]
pub(super) struct DevWorkers {
    count: u32,
    data_dir: PathBuf,
    program: PathBuf,
}

/// One worker: its node name and data directory.
#[derive(Debug, Clone)]
pub(super) struct DevWorker {
    pub(super) name: String,
    pub(super) dir: PathBuf,
}

impl DevWorker {
    fn keystore(&self) -> PathBuf {
        self.dir.join("sui.keystore")
    }

    /// Its kubeconfig (written by `daas-worker`).
    pub(super) fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }
}

fn keystore_with_account(path: &Path) -> anyhow::Result<()> {
    let mut keystore = AccountKeystore::load_or_empty(path)?;
    if keystore.accounts().is_empty() {
        keystore.push(SuiAccount::generate()?);
        keystore.save()?;
    }
    Ok(())
}

impl DevWorkers {
    /// `count` workers running `program` under `data_dir`.
    pub(super) fn new(data_dir: &Path, count: u32, program: PathBuf) -> Self {
        Self {
            count,
            data_dir: data_dir.to_path_buf(),
            program,
        }
    }

    /// `local:DATA_DIR/registry.json`.
    pub(super) fn registry_url(&self) -> RegistryUrl {
        RegistryUrl::Local(self.data_dir.join(REGISTRY_FILE))
    }

    fn admin_keystore(&self) -> PathBuf {
        self.data_dir.join(ADMIN_KEYSTORE)
    }

    /// The workers, by name.
    pub(super) fn workers(&self) -> Vec<DevWorker> {
        (1..=self.count)
            .map(|i| {
                let name = format!("worker-{i}");
                DevWorker {
                    dir: self.data_dir.join(WORKERS_DIR).join(&name),
                    name,
                }
            })
            .collect()
    }

    /// Creates the registry (and its admin's account) unless it exists: before the enclave
    /// starts, which reads it.
    pub(super) async fn prepare_registry(&self) -> anyhow::Result<()> {
        let url = self.registry_url();
        if self.data_dir.join(REGISTRY_FILE).exists() {
            return Ok(());
        }
        keystore_with_account(&self.admin_keystore())?;
        let options = OpenOptions {
            keystore: Some(self.admin_keystore()),
            ..OpenOptions::default()
        };
        let settings = ClusterSettings {
            min_stake: DEV_STAKE,
            unstake_cooldown_ms: 0,
            max_document_age_ms: 300_000,
        };
        AnyRegistry::init(&url, "k3s-daas-dev", settings, &options)
            .await
            .with_context(|| format!("creating the dev registry {url}"))?;
        eprintln!("daas dev: created the dev registry {url}");
        Ok(())
    }

    fn as_admin(&self, dev_root: &Path) -> anyhow::Result<OpenOptions> {
        let pem =
            std::fs::read(dev_root).with_context(|| format!("reading {}", dev_root.display()))?;
        Ok(OpenOptions {
            keystore: Some(self.admin_keystore()),
            verifier: attestation::Verifier::dangerous_trust_root_pem(&pem)?,
            ..OpenOptions::default()
        })
    }

    /// Admits the enclave's image (its measured `pcrs`) and registers it live with the
    /// `document` it attested with (verified under the dev root).
    pub(super) async fn admit_enclave(
        &self,
        pcrs: Pcrs,
        document: &[u8],
        dev_root: &Path,
    ) -> anyhow::Result<()> {
        let registry = AnyRegistry::open(&self.registry_url(), &self.as_admin(dev_root)?).await?;
        let state = registry.cluster().await?;
        if state.image_version_for(&pcrs).is_none() {
            let version = state.images.iter().map(|i| i.version).max().unwrap_or(0) + 1;
            let label = format!(
                "daas-enclave dev {}",
                hex::encode(pcrs.pcr0.as_bytes()).get(..12).unwrap_or("")
            );
            registry
                .allow_image(pcrs, &label, version)
                .await
                .context("admitting the enclave's image on the dev registry")?;
        }
        let live = registry
            .register_enclave(document)
            .await
            .context("registering the enclave on the dev registry")?;
        eprintln!(
            "daas dev: the enclave is live on the dev registry (image v{}, TLS key {})",
            live.image_version,
            hex::encode(live.tls_key_digest)
        );
        Ok(())
    }

    /// Gives each worker an account and a stake for its node name (unless it has them).
    pub(super) async fn ensure_stakes(&self) -> anyhow::Result<Vec<DevWorker>> {
        let workers = self.workers();
        for worker in &workers {
            keystore_with_account(&worker.keystore())?;
            let options = OpenOptions {
                keystore: Some(worker.keystore()),
                ..OpenOptions::default()
            };
            let registry = AnyRegistry::open(&self.registry_url(), &options).await?;
            let owner = options.local_account()?;
            match registry.stake_info(&worker.name).await? {
                None => {
                    registry
                        .stake(&worker.name, DEV_STAKE)
                        .await
                        .with_context(|| format!("staking for {}", worker.name))?;
                    eprintln!(
                        "daas dev: {owner} staked {DEV_STAKE} MIST for {}",
                        worker.name
                    );
                }
                Some(stake) if stake.owner == owner => {
                    if stake.unstake_requested_at_ms.is_some() {
                        eprintln!(
                            "daas dev: the stake for {} is unstaking; the enclave will refuse it",
                            worker.name
                        );
                    }
                }
                Some(stake) => bail!(
                    "the stake for {} is owned by {}, not by the worker's account {owner} ({})",
                    worker.name,
                    stake.owner,
                    worker.keystore().display()
                ),
            }
        }
        Ok(workers)
    }

    /// The `daas-worker run` processes of `workers`. With `net` (the dev network's nodes, one
    /// per worker, in order), each runs inside its namespace (`nsenter --net`) with the node's
    /// networking on and reaches the API at `server` (the relay on the bridge address).
    pub(super) fn specs(
        &self,
        server: &ServerUrl,
        dev_root: &Path,
        workers: &[DevWorker],
        net: Option<&[DevNode]>,
    ) -> Vec<ChildSpec> {
        let runtime = containerd_available();
        if !runtime {
            eprintln!(
                "daas dev: containerd is not on PATH (scripts/setup installs it): the workers \
                 run no pods"
            );
        }
        let images = if runtime { cached_images() } else { Vec::new() };
        if runtime && images.is_empty() {
            eprintln!(
                "daas dev: no image archives under {} (run scripts/build-images): containerd \
                 will try to pull every image",
                images_cache().display()
            );
        }
        let cgroup_scope = {
            use std::hash::{Hash as _, Hasher as _};
            let mut h = std::hash::DefaultHasher::new();
            self.data_dir.hash(&mut h);
            h.finish() & 0xffff_ffff
        };
        workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let node = net.and_then(|nodes| nodes.get(i));
                let mut args = self.worker_args(server, dev_root, w);
                if runtime {
                    args.extend(runtime_args(w, i, cgroup_scope, &images, node.is_some()));
                }
                // `nsenter --net` switches the network namespace only and execs the worker (same
                // pid, so `--exit-with-parent` still sees `daas dev`); `ip netns exec` would also
                // remount /sys, hiding /sys/fs/cgroup from runc.
                let (program, args) = match node.and_then(|n| n.netns.name()) {
                    Some(netns) => {
                        let mut wrapped: Vec<OsString> =
                            vec![format!("--net=/run/netns/{netns}").into()];
                        wrapped.push(self.program.clone().into());
                        wrapped.extend(args);
                        (PathBuf::from("nsenter"), wrapped)
                    }
                    None => (self.program.clone(), args),
                };
                ChildSpec {
                    name: w.name.clone(),
                    program,
                    args,
                    policy: RestartPolicy {
                        // Time to stop its pods and its containerd.
                        stop_grace: std::time::Duration::from_secs(30),
                        ..RestartPolicy::default()
                    },
                }
            })
            .collect()
    }

    fn worker_args(&self, server: &ServerUrl, dev_root: &Path, w: &DevWorker) -> Vec<OsString> {
        vec![
            "run".into(),
            "--server".into(),
            server.url.clone().into(),
            "--registry".into(),
            self.registry_url().to_string().into(),
            "--keystore".into(),
            w.keystore().into(),
            "--node-name".into(),
            OsString::from(&w.name),
            "--data-dir".into(),
            w.dir.clone().into(),
            "--dev-root".into(),
            dev_root.into(),
            // Dev workers share the developer's (or CI's) disk with everything else on it,
            // often more than 90 % full: DiskPressure only below 1 % free, not the kubelet's
            // 10 %, so that a busy disk does not keep every pod Pending.
            "--eviction-hard-nodefs-available".into(),
            DEV_DISK_RESERVE_PERCENT.to_string().into(),
        ]
    }
}

/// The free disk share (percent) below which a dev worker reports DiskPressure.
const DEV_DISK_RESERVE_PERCENT: u64 = 1;

/// Whether a `containerd` runs here at all.
fn containerd_available() -> bool {
    std::process::Command::new("containerd")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Where `scripts/build-images` caches its archives: `$K3S_DAAS_CACHE/images`, default
/// `~/.cache/k3s-daas/images`.
fn images_cache() -> PathBuf {
    let base = std::env::var_os("K3S_DAAS_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/k3s-daas")))
        .unwrap_or_else(|| PathBuf::from(".cache/k3s-daas"));
    base.join("images")
}

/// The newest archive of each image `scripts/build-images` cached (`NAME-KEY/image.tar`).
fn cached_images() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(images_cache()) else {
        return Vec::new();
    };
    let mut newest: std::collections::BTreeMap<String, (std::time::SystemTime, PathBuf)> =
        std::collections::BTreeMap::new();
    for entry in entries.flatten() {
        let archive = entry.path().join("image.tar");
        let Ok(modified) = archive.metadata().and_then(|m| m.modified()) else {
            continue;
        };
        let dir = entry.file_name().to_string_lossy().into_owned();
        let name = dir
            .rsplit_once('-')
            .map_or(dir.as_str(), |(n, _)| n)
            .to_owned();
        if newest.get(&name).is_none_or(|(t, _)| *t < modified) {
            newest.insert(name, (modified, archive));
        }
    }
    newest.into_values().map(|(_, p)| p).collect()
}

/// The `daas-worker run` flags of worker number `index` (from 0) for its own containerd: with
/// `network`, the node's networking (in its own namespace); otherwise a bridge of its own in
/// the host's namespace.
fn runtime_args(
    w: &DevWorker,
    index: usize,
    scope: u64,
    images: &[PathBuf],
    network: bool,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--containerd-dir".into(), w.dir.clone().into()];
    if network {
        args.push("--network".into());
    } else {
        args.extend([
            "--pod-bridge".into(),
            format!("daas{index}").into(),
            "--pod-subnet".into(),
            format!("10.88.{}.0/24", index % 256).into(),
        ]);
    }
    args.extend([
        "--cgroup-root".into(),
        format!("/k3s-daas-dev-{scope:08x}/{}", w.name).into(),
    ]);
    for image in images {
        args.push("--import-image".into());
        args.push(image.clone().into());
    }
    args
}
