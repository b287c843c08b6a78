//! `FileRegistry`: the registry in one local JSON file, for dev mode and tests. It applies the
//! Move package's rules ([`crate::rules`]) and verifies attestation documents with
//! [`attestation::Verifier`] at the clock's time, as `load_nitro_attestation` does on chain.

mod store;
#[cfg(test)]
pub(crate) mod test_docs;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use attestation::Verifier;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::anchor::SignedAnchor;
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::registry::{Registry, RegistryAdmin};
use crate::rules;
use crate::types::{
    Address, AllowedImage, Anchor, ClusterSettings, ClusterState, LiveEnclave, Pcrs, StakeInfo,
};

/// One entry of the local event log (the counterpart of the Move package's events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalEvent {
    /// Clock time.
    pub at_ms: u64,
    /// Who caused it.
    pub by: Address,
    /// What happened.
    pub kind: LocalEventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LocalEventKind {
    /// `ClusterCreated`.
    ClusterCreated,
    /// `ImageAllowed`.
    ImageAllowed {
        /// Version.
        version: u64,
        /// Label.
        label: String,
    },
    /// `ImageRetired`.
    ImageRetired {
        /// Version.
        version: u64,
    },
    /// `EnclaveRegistered`.
    EnclaveRegistered {
        /// The new anchor key (hex).
        anchor_key: String,
        /// SHA-256 of the new enclave's TLS key (hex).
        tls_key_digest: String,
        /// Its image.
        image_version: u64,
        /// The anchor key it replaced (hex).
        replaced_anchor_key: Option<String>,
    },
    /// `Staked`.
    Staked {
        /// Node name.
        node_name: String,
        /// MIST.
        amount: u64,
    },
    /// `UnstakeRequested`.
    UnstakeRequested {
        /// Node name.
        node_name: String,
        /// When it can be withdrawn.
        available_at_ms: u64,
    },
    /// `Unstaked`.
    Unstaked {
        /// Node name.
        node_name: String,
        /// MIST returned.
        amount: u64,
    },
    /// `Slashed`.
    Slashed {
        /// Node name.
        node_name: String,
        /// MIST taken.
        amount: u64,
    },
    /// `AnchorRecorded`.
    AnchorRecorded {
        /// Revision.
        revision: u64,
    },
}

/// A registry kept in a local file, safe to share between processes.
///
/// ```no_run
/// # async fn demo() -> chain::Result<()> {
/// use chain::{Address, ClusterSettings, FileRegistry, Registry};
/// let admin: Address = "0xad".parse().expect("address");
/// let settings = ClusterSettings { min_stake: 1, unstake_cooldown_ms: 0, max_document_age_ms: 300_000 };
/// let registry = FileRegistry::init("registry.json", "dev", settings, admin, attestation::Verifier::aws_nitro())?;
/// println!("{} allowed images", registry.cluster().await?.images.len());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FileRegistry<C: Clock = SystemClock> {
    path: PathBuf,
    caller: Address,
    verifier: Verifier,
    clock: Arc<C>,
}

impl FileRegistry<SystemClock> {
    /// Creates a registry file for a new cluster administered by `admin`, acting as `admin`.
    ///
    /// # Errors
    ///
    /// [`Error::BadSettings`], [`Error::AlreadyExists`], or [`Error::Io`].
    pub fn init(
        path: impl AsRef<Path>,
        name: &str,
        settings: ClusterSettings,
        admin: Address,
        verifier: Verifier,
    ) -> Result<Self> {
        Self::init_with_clock(path, name, settings, admin, verifier, Arc::new(SystemClock))
    }

    /// Opens an existing registry file, acting as `caller`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::Corrupt`] or [`Error::Io`].
    pub fn open(path: impl AsRef<Path>, caller: Address, verifier: Verifier) -> Result<Self> {
        Self::open_with_clock(path, caller, verifier, Arc::new(SystemClock))
    }
}

impl<C: Clock> FileRegistry<C> {
    /// [`FileRegistry::init`] with an explicit clock.
    ///
    /// # Errors
    ///
    /// As [`FileRegistry::init`].
    pub fn init_with_clock(
        path: impl AsRef<Path>,
        name: &str,
        settings: ClusterSettings,
        admin: Address,
        verifier: Verifier,
        clock: Arc<C>,
    ) -> Result<Self> {
        settings.validate()?;
        let path = path.as_ref().to_path_buf();
        let locked = store::lock(&path)?;
        if path.exists() {
            return Err(Error::AlreadyExists { path });
        }
        let now = clock.now_ms();
        let file = store::RegistryFile {
            format: store::FORMAT.to_owned(),
            cluster: ClusterState {
                id: random_id(&path)?,
                name: name.to_owned(),
                admin,
                settings,
                images: Vec::new(),
                live_enclave: None,
                latest_anchor: None,
                stakes: Default::default(),
                slashed: 0,
            },
            events: vec![LocalEvent {
                at_ms: now,
                by: admin,
                kind: LocalEventKind::ClusterCreated,
            }],
        };
        store::write(&path, &file, &locked)?;
        Ok(Self {
            path,
            caller: admin,
            verifier,
            clock,
        })
    }

    /// [`FileRegistry::open`] with an explicit clock.
    ///
    /// # Errors
    ///
    /// As [`FileRegistry::open`].
    pub fn open_with_clock(
        path: impl AsRef<Path>,
        caller: Address,
        verifier: Verifier,
        clock: Arc<C>,
    ) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        store::read(&path)?;
        Ok(Self {
            path,
            caller,
            verifier,
            clock,
        })
    }

    /// The same registry, acting as another account.
    #[must_use]
    pub fn acting_as(&self, caller: Address) -> Self {
        Self {
            path: self.path.clone(),
            caller,
            verifier: self.verifier.clone(),
            clock: Arc::clone(&self.clock),
        }
    }

    /// The account this handle acts as.
    #[must_use]
    pub fn caller(&self) -> Address {
        self.caller
    }

    /// The registry file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The event log, oldest first.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::Corrupt`] or [`Error::Io`].
    pub async fn events(&self) -> Result<Vec<LocalEvent>> {
        let path = self.path.clone();
        blocking(move || Ok(store::read(&path)?.events)).await
    }

    /// Reads the state, applies `change` under the file lock and writes the result with the
    /// events it returns; nothing is written when `change` fails.
    async fn mutate<T, F>(&self, change: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut ClusterState, u64, Address) -> Result<(T, Vec<LocalEventKind>)>
            + Send
            + 'static,
    {
        let path = self.path.clone();
        let caller = self.caller;
        let clock = Arc::clone(&self.clock);
        blocking(move || {
            let locked = store::lock(&path)?;
            let mut file = store::read(&path)?;
            let now = clock.now_ms();
            let (out, kinds) = change(&mut file.cluster, now, caller)?;
            file.events.extend(kinds.into_iter().map(|kind| LocalEvent {
                at_ms: now,
                by: caller,
                kind,
            }));
            store::write(&path, &file, &locked)?;
            Ok(out)
        })
        .await
    }

    async fn read_state(&self) -> Result<ClusterState> {
        let path = self.path.clone();
        blocking(move || Ok(store::read(&path)?.cluster)).await
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(Error::Task)?
}

fn random_id(path: &Path) -> Result<Address> {
    let mut id = [0u8; 32];
    SystemRandom::new().fill(&mut id).map_err(|_| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other("system random generator failed"),
    })?;
    Ok(Address(id))
}

impl<C: Clock> Registry for FileRegistry<C> {
    async fn cluster(&self) -> Result<ClusterState> {
        self.read_state().await
    }

    async fn register_enclave(&self, document: &[u8]) -> Result<LiveEnclave> {
        let document = document.to_vec();
        let verifier = self.verifier.clone();
        self.mutate(move |state, now, caller| {
            let verified = verifier.verify(&document, now)?;
            let replaced_anchor_key = state
                .live_enclave
                .as_ref()
                .map(|l| hex::encode(l.anchor_key));
            let live = rules::register_enclave(state, &verified, now, caller)?;
            let event = LocalEventKind::EnclaveRegistered {
                anchor_key: hex::encode(live.anchor_key),
                tls_key_digest: hex::encode(live.tls_key_digest),
                image_version: live.image_version,
                replaced_anchor_key,
            };
            tracing::info!(image_version = live.image_version, "enclave registered");
            Ok((live, vec![event]))
        })
        .await
    }

    async fn stake(&self, node_name: &str, amount: u64) -> Result<StakeInfo> {
        let node = node_name.to_owned();
        let path = self.path.clone();
        self.mutate(move |state, now, caller| {
            let info = rules::stake(state, &node, amount, caller, random_id(&path)?, now)?;
            Ok((
                info,
                vec![LocalEventKind::Staked {
                    node_name: node,
                    amount,
                }],
            ))
        })
        .await
    }

    async fn request_unstake(&self, node_name: &str) -> Result<u64> {
        let node = node_name.to_owned();
        self.mutate(move |state, now, caller| {
            let available_at_ms = rules::request_unstake(state, &node, caller, now)?;
            Ok((
                available_at_ms,
                vec![LocalEventKind::UnstakeRequested {
                    node_name: node,
                    available_at_ms,
                }],
            ))
        })
        .await
    }

    async fn withdraw(&self, node_name: &str) -> Result<u64> {
        let node = node_name.to_owned();
        self.mutate(move |state, now, caller| {
            let amount = rules::withdraw(state, &node, caller, now)?;
            Ok((
                amount,
                vec![LocalEventKind::Unstaked {
                    node_name: node,
                    amount,
                }],
            ))
        })
        .await
    }

    async fn stake_info(&self, node_name: &str) -> Result<Option<StakeInfo>> {
        Ok(self.read_state().await?.stakes.remove(node_name))
    }

    async fn record_anchor(&self, anchor: SignedAnchor) -> Result<Anchor> {
        self.mutate(move |state, now, _caller| {
            let recorded = rules::record_anchor(state, &anchor, now)?;
            Ok((
                recorded,
                vec![LocalEventKind::AnchorRecorded {
                    revision: recorded.revision,
                }],
            ))
        })
        .await
    }

    async fn latest_anchor(&self) -> Result<Option<Anchor>> {
        Ok(self.read_state().await?.latest_anchor)
    }
}

impl<C: Clock> RegistryAdmin for FileRegistry<C> {
    async fn allow_image(&self, pcrs: Pcrs, label: &str, version: u64) -> Result<AllowedImage> {
        let image = AllowedImage {
            pcrs,
            label: label.to_owned(),
            version,
        };
        self.mutate(move |state, _now, caller| {
            rules::allow_image(state, caller, image.clone())?;
            let event = LocalEventKind::ImageAllowed {
                version: image.version,
                label: image.label.clone(),
            };
            Ok((image, vec![event]))
        })
        .await
    }

    async fn retire_image(&self, version: u64) -> Result<()> {
        self.mutate(move |state, _now, caller| {
            rules::retire_image(state, caller, version)?;
            Ok(((), vec![LocalEventKind::ImageRetired { version }]))
        })
        .await
    }

    async fn slash(&self, node_name: &str, amount: u64) -> Result<()> {
        let node = node_name.to_owned();
        self.mutate(move |state, _now, caller| {
            rules::slash(state, caller, &node, amount)?;
            Ok((
                (),
                vec![LocalEventKind::Slashed {
                    node_name: node,
                    amount,
                }],
            ))
        })
        .await
    }
}
