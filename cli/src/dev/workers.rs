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

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use chain::{
    AccountKeystore, AnyRegistry, ClusterSettings, OpenOptions, Pcrs, Registry, RegistryAdmin,
    RegistryUrl, SuiAccount,
};
use host::launcher::RestartPolicy;

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

    /// The `daas-worker run` processes of `workers`.
    pub(super) fn specs(
        &self,
        server: &ServerUrl,
        dev_root: &Path,
        workers: &[DevWorker],
    ) -> Vec<ChildSpec> {
        workers
            .iter()
            .map(|w| ChildSpec {
                name: w.name.clone(),
                program: self.program.clone(),
                args: vec![
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
                ],
                policy: RestartPolicy::default(),
            })
            .collect()
    }
}
