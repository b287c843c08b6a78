//! [`AnyRegistry`]: the backend a [`RegistryUrl`] names, behind one type, so binaries need no
//! `cfg` of their own. Without the `sui` feature a `sui:` URL is [`Error::SuiUnavailable`].

use std::path::PathBuf;

use attestation::Verifier;

use crate::account::AccountKeystore;
use crate::anchor::SignedAnchor;
use crate::error::{Error, Result};
use crate::file::FileRegistry;
use crate::registry::{Registry, RegistryAdmin};
use crate::types::{
    Address, AllowedImage, Anchor, ClusterSettings, ClusterState, LiveEnclave, Pcrs, StakeInfo,
};
use crate::url::RegistryUrl;

/// How to act on a registry.
///
/// Both backends act as an account of a Sui CLI keystore (`keystore`, `address`): on Sui it
/// signs the transactions; the local backend acts as its address. Without a keystore the local
/// backend acts as `0x0`, which owns nothing: enough to read.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Local backend: how attestation documents are verified. Default: AWS Nitro Root-G1.
    pub verifier: Verifier,
    /// The Sui CLI keystore whose account acts. Required for `sui:` URLs.
    pub keystore: Option<PathBuf>,
    /// Which account of the keystore; the first Ed25519 one when `None`.
    pub address: Option<Address>,
    /// Sui backend: the `k3s_daas` package (read from the cluster when `None`; required by
    /// `init`).
    pub package: Option<Address>,
    /// Sui backend: gas budget per transaction in MIST. Default: 100_000_000.
    pub gas_budget: u64,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            verifier: Verifier::aws_nitro(),
            keystore: None,
            address: None,
            package: None,
            gas_budget: 100_000_000,
        }
    }
}

/// A registry of either backend.
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyRegistry {
    /// A local file.
    Local(FileRegistry),
    /// A Sui network.
    #[cfg(feature = "sui")]
    Sui(Box<crate::sui::SuiRegistry>),
}

#[cfg(feature = "sui")]
async fn sui_registry(
    rpc: &str,
    cluster: Address,
    options: &OpenOptions,
    package: Option<Address>,
) -> Result<crate::sui::SuiRegistry> {
    let keystore = options.keystore.clone().ok_or_else(|| Error::Keystore {
        path: PathBuf::new(),
        reason: "a sui: registry needs a keystore".to_owned(),
    })?;
    crate::sui::SuiRegistry::connect(crate::sui::SuiRegistryConfig {
        rpc: rpc.to_owned(),
        cluster,
        package,
        keystore,
        address: options.address,
        gas_budget: options.gas_budget,
    })
    .await
}

impl OpenOptions {
    /// The address the local backend acts as: the keystore's account, or `0x0` without one.
    ///
    /// # Errors
    ///
    /// [`Error::Keystore`] when the keystore is unreadable or lacks the account.
    pub fn local_account(&self) -> Result<Address> {
        match &self.keystore {
            Some(path) => Ok(AccountKeystore::load(path)?
                .account(self.address)?
                .address()),
            None => Ok(Address::ZERO),
        }
    }
}

impl AnyRegistry {
    /// Opens the registry `url` names.
    ///
    /// # Errors
    ///
    /// The backend's open errors, or [`Error::SuiUnavailable`].
    pub async fn open(url: &RegistryUrl, options: &OpenOptions) -> Result<Self> {
        match url {
            RegistryUrl::Local(path) => Ok(Self::Local(FileRegistry::open(
                path,
                options.local_account()?,
                options.verifier.clone(),
            )?)),
            #[cfg(feature = "sui")]
            RegistryUrl::Sui { rpc, cluster } => Ok(Self::Sui(Box::new(
                sui_registry(rpc, *cluster, options, options.package).await?,
            ))),
            #[cfg(not(feature = "sui"))]
            RegistryUrl::Sui { .. } => Err(Error::SuiUnavailable),
        }
    }

    /// Creates a cluster at `url` (the acting account becomes its admin; locally that needs a
    /// keystore) and returns it with the cluster's ID. For `sui:` URLs the part after `#` is ignored and `options.package`
    /// is required.
    ///
    /// # Errors
    ///
    /// The backend's errors, or [`Error::SuiUnavailable`].
    pub async fn init(
        url: &RegistryUrl,
        name: &str,
        settings: ClusterSettings,
        options: &OpenOptions,
    ) -> Result<(Self, Address)> {
        match url {
            RegistryUrl::Local(path) => {
                if options.keystore.is_none() {
                    return Err(Error::Keystore {
                        path: PathBuf::new(),
                        reason: "creating a cluster needs a keystore: its account becomes the \
                                 admin"
                            .to_owned(),
                    });
                }
                let registry = FileRegistry::init(
                    path,
                    name,
                    settings,
                    options.local_account()?,
                    options.verifier.clone(),
                )?;
                let id = registry.cluster().await?.id;
                Ok((Self::Local(registry), id))
            }
            #[cfg(feature = "sui")]
            RegistryUrl::Sui { rpc, .. } => {
                let package = options.package.ok_or(Error::BadSettings {
                    reason: "creating a cluster on Sui needs the k3s_daas package ID",
                })?;
                let mut registry = sui_registry(rpc, Address::ZERO, options, Some(package)).await?;
                let id = registry.create_cluster(name, settings).await?;
                Ok((Self::Sui(Box::new(registry)), id))
            }
            #[cfg(not(feature = "sui"))]
            RegistryUrl::Sui { .. } => Err(Error::SuiUnavailable),
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $r:ident => $e:expr) => {
        match $self {
            AnyRegistry::Local($r) => $e,
            #[cfg(feature = "sui")]
            AnyRegistry::Sui($r) => $e,
        }
    };
}

impl Registry for AnyRegistry {
    async fn cluster(&self) -> Result<ClusterState> {
        dispatch!(self, r => r.cluster().await)
    }

    async fn register_enclave(&self, document: &[u8]) -> Result<LiveEnclave> {
        dispatch!(self, r => r.register_enclave(document).await)
    }

    async fn stake(&self, node_name: &str, amount: u64) -> Result<StakeInfo> {
        dispatch!(self, r => r.stake(node_name, amount).await)
    }

    async fn request_unstake(&self, node_name: &str) -> Result<u64> {
        dispatch!(self, r => r.request_unstake(node_name).await)
    }

    async fn withdraw(&self, node_name: &str) -> Result<u64> {
        dispatch!(self, r => r.withdraw(node_name).await)
    }

    async fn stake_info(&self, node_name: &str) -> Result<Option<StakeInfo>> {
        dispatch!(self, r => r.stake_info(node_name).await)
    }

    async fn record_anchor(&self, anchor: SignedAnchor) -> Result<Anchor> {
        dispatch!(self, r => r.record_anchor(anchor).await)
    }

    async fn latest_anchor(&self) -> Result<Option<Anchor>> {
        dispatch!(self, r => r.latest_anchor().await)
    }
}

impl RegistryAdmin for AnyRegistry {
    async fn allow_image(&self, pcrs: Pcrs, label: &str, version: u64) -> Result<AllowedImage> {
        dispatch!(self, r => r.allow_image(pcrs, label, version).await)
    }

    async fn retire_image(&self, version: u64) -> Result<()> {
        dispatch!(self, r => r.retire_image(version).await)
    }

    async fn slash(&self, node_name: &str, amount: u64) -> Result<()> {
        dispatch!(self, r => r.slash(node_name, amount).await)
    }
}
