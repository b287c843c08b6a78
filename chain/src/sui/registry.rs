//! [`SuiRegistry`]: the [`Registry`] on a Sui network through a fullnode's gRPC API.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sui_crypto::SuiSigner;
use sui_crypto::ed25519::Ed25519PrivateKey;
use sui_rpc::field::{FieldMask, FieldMaskUtil};
use sui_rpc::proto::sui::rpc::v2::{
    ExecuteTransactionRequest, ExecutedTransaction, GetObjectRequest, ListOwnedObjectsRequest,
    Object, owner::OwnerKind,
};
use sui_sdk_types::{StructTag, TypeTag};

use super::keystore::{Keystore, address_of};
use super::objects::{MoveStake, decode_cluster, decode_stake};
use super::tx::{self, Call, GasConfig, OwnedRef, SharedRef};
use crate::anchor::SignedAnchor;
use crate::error::{Error, Result};
use crate::registry::{Registry, RegistryAdmin};
use crate::types::{
    Address, AllowedImage, Anchor, ClusterSettings, ClusterState, LiveEnclave, Pcrs, StakeInfo,
};

/// How long to wait for a submitted transaction to reach a checkpoint.
const CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the cluster lives and who acts.
#[derive(Debug, Clone)]
pub struct SuiRegistryConfig {
    /// Fullnode gRPC URL, e.g. `https://fullnode.testnet.sui.io`.
    pub rpc: String,
    /// The `Cluster` object (zero until [`SuiRegistry::create_cluster`] makes one).
    pub cluster: Address,
    /// The `k3s_daas` package; read from the cluster's type when `None`.
    pub package: Option<Address>,
    /// A Sui CLI keystore (`~/.sui/sui_config/sui.keystore`).
    pub keystore: PathBuf,
    /// Which key of the keystore signs; the first when `None`.
    pub address: Option<Address>,
    /// Gas budget per transaction, in MIST. Default in the CLI: 100_000_000 (0.1 SUI).
    pub gas_budget: u64,
}

/// A cluster's registry on Sui.
pub struct SuiRegistry {
    client: sui_rpc::Client,
    key: Ed25519PrivateKey,
    sender: Address,
    cluster: Address,
    package: Address,
    gas_budget: u64,
}

impl std::fmt::Debug for SuiRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs; the client has no Debug.
        f.debug_struct("SuiRegistry")
            .field("rpc", self.client.uri())
            .field("sender", &self.sender)
            .field("cluster", &self.cluster)
            .field("package", &self.package)
            .field("gas_budget", &self.gas_budget)
            .finish_non_exhaustive()
    }
}

fn rpc<E: std::fmt::Display>(call: &'static str) -> impl FnOnce(E) -> Error {
    move |status| Error::Rpc {
        call,
        reason: status.to_string(),
    }
}

fn parse_address(text: &str, call: &'static str) -> Result<Address> {
    Address::from_str(text).map_err(|e| Error::Rpc {
        call,
        reason: format!("bad object ID {text:?}: {e}"),
    })
}

fn parse_digest(text: &str, call: &'static str) -> Result<[u8; 32]> {
    sui_sdk_types::Digest::from_str(text)
        .map(sui_sdk_types::Digest::into_inner)
        .map_err(|e| Error::Rpc {
            call,
            reason: format!("bad digest {text:?}: {e}"),
        })
}

impl SuiRegistry {
    /// Connects (lazily) to the fullnode and loads the signing key. Must run inside a Tokio
    /// runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Keystore`] for an unusable keystore, [`Error::Rpc`] for a bad URL or when the
    /// package must be read from the cluster and cannot be.
    pub async fn connect(config: SuiRegistryConfig) -> Result<Self> {
        let keystore = Keystore::load(&config.keystore)?;
        let key = keystore.key(config.address)?.clone();
        let client = sui_rpc::Client::new(config.rpc.as_str()).map_err(|e| Error::Rpc {
            call: "connect",
            reason: e.to_string(),
        })?;
        let mut registry = Self {
            client,
            sender: address_of(&key),
            key,
            cluster: config.cluster,
            package: config.package.unwrap_or(Address::ZERO),
            gas_budget: config.gas_budget,
        };
        if config.package.is_none() {
            let object = registry.object(config.cluster, "get Cluster").await?;
            let type_ = object.object_type.clone().unwrap_or_default();
            let package = type_.split("::").next().unwrap_or_default();
            registry.package = parse_address(package, "get Cluster")?;
        }
        Ok(registry)
    }

    /// The address that signs.
    #[must_use]
    pub fn sender(&self) -> Address {
        self.sender
    }

    /// Creates a cluster (the sender receives its `AdminCap`) and points this handle at it.
    ///
    /// # Errors
    ///
    /// [`Error::BadSettings`], or any RPC or execution error.
    pub async fn create_cluster(
        &mut self,
        name: &str,
        settings: ClusterSettings,
    ) -> Result<Address> {
        settings.validate()?;
        let call = Call::CreateCluster {
            name: name.to_owned(),
            settings,
        };
        let executed = self.submit(&call, 0).await?;
        let suffix = "::cluster::Cluster";
        let created = executed
            .effects
            .as_ref()
            .map(|e| e.changed_objects.as_slice())
            .unwrap_or_default()
            .iter()
            .find(|c| {
                c.object_type
                    .as_deref()
                    .is_some_and(|t| t.ends_with(suffix))
            })
            .and_then(|c| c.object_id.clone())
            .ok_or_else(|| Error::Rpc {
                call: "create cluster",
                reason: "the effects name no created Cluster".to_owned(),
            })?;
        self.cluster = parse_address(&created, "create cluster")?;
        Ok(self.cluster)
    }

    async fn object(&self, id: Address, call: &'static str) -> Result<Object> {
        let request = GetObjectRequest::default()
            .with_object_id(id.to_string())
            .with_read_mask(FieldMask::from_paths([
                "object_id",
                "version",
                "digest",
                "owner",
                "object_type",
                "contents",
            ]));
        let mut client = self.client.clone();
        let response = client
            .ledger_client()
            .get_object(request)
            .await
            .map_err(rpc(call))?;
        response.into_inner().object.ok_or_else(|| Error::Rpc {
            call,
            reason: format!("no object {id}"),
        })
    }

    async fn shared(&self, id: Address, call: &'static str) -> Result<SharedRef> {
        let object = self.object(id, call).await?;
        let owner = object.owner.as_ref();
        match owner.map(|o| (o.kind(), o.version)) {
            Some((OwnerKind::Shared, Some(version))) => Ok(SharedRef {
                id,
                initial_shared_version: version,
            }),
            _ => Err(Error::Rpc {
                call,
                reason: format!("object {id} is not shared"),
            }),
        }
    }

    fn contents(object: &Object) -> &[u8] {
        object
            .contents
            .as_ref()
            .and_then(|c| c.value.as_deref())
            .unwrap_or_default()
    }

    async fn stake_object(&self, id: Address) -> Result<MoveStake> {
        decode_stake(Self::contents(&self.object(id, "get Stake").await?))
    }

    /// The sender's `AdminCap` for this cluster.
    async fn admin_cap(&self) -> Result<Option<OwnedRef>> {
        let cap_type = format!("{}::cluster::AdminCap", self.package);
        let request = ListOwnedObjectsRequest::default()
            .with_owner(self.sender.to_string())
            .with_object_type(cap_type)
            .with_read_mask(FieldMask::from_paths([
                "object_id",
                "version",
                "digest",
                "contents",
            ]));
        let mut client = self.client.clone();
        let response = client
            .state_client()
            .list_owned_objects(request)
            .await
            .map_err(rpc("list AdminCaps"))?;
        for object in response.into_inner().objects {
            // AdminCap { id: UID, cluster_id: ID }
            let contents = Self::contents(&object);
            if contents.get(32..64) == Some(&self.cluster.0[..]) {
                return Ok(Some(OwnedRef {
                    id: parse_address(object.object_id.as_deref().unwrap_or_default(), "AdminCap")?,
                    version: object.version.unwrap_or_default(),
                    digest: parse_digest(object.digest.as_deref().unwrap_or_default(), "AdminCap")?,
                }));
            }
        }
        Ok(None)
    }

    async fn require_cap(&self) -> Result<OwnedRef> {
        self.admin_cap().await?.ok_or_else(|| Error::NotAdmin {
            caller: self.sender.to_string(),
        })
    }

    async fn cluster_ref(&self) -> Result<SharedRef> {
        self.shared(self.cluster, "get Cluster").await
    }

    async fn stake_id(&self, node_name: &str) -> Result<Address> {
        let cluster = decode_cluster(Self::contents(
            &self.object(self.cluster, "get Cluster").await?,
        ))?;
        cluster
            .stakes
            .iter()
            .find(|e| e.key == node_name)
            .map(|e| Address(e.value))
            .ok_or_else(|| Error::NoStake {
                node: node_name.to_owned(),
            })
    }

    /// Builds, signs and executes `call`, paying gas (and `extra` MIST split from gas) from
    /// the sender's SUI coins; fails with [`Error::Execution`] when the transaction aborts.
    async fn submit(&self, call: &Call, extra: u64) -> Result<ExecutedTransaction> {
        let mut client = self.client.clone();
        let price = client
            .get_reference_gas_price()
            .await
            .map_err(rpc("reference gas price"))?;
        let sui = TypeTag::Struct(Box::new(StructTag::sui()));
        let coins = client
            .select_coins(
                &sui_sdk_types::Address::new(self.sender.0),
                &sui,
                self.gas_budget.saturating_add(extra),
                &[],
            )
            .await
            .map_err(rpc("select gas coins"))?
            .iter()
            .map(|c| {
                Ok(OwnedRef {
                    id: parse_address(c.object_id(), "gas coin")?,
                    version: c.version(),
                    digest: parse_digest(c.digest(), "gas coin")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let gas = GasConfig {
            sender: self.sender,
            coins,
            budget: self.gas_budget,
            price,
        };
        let transaction = tx::build(self.package, call, &gas)?;
        let digest = transaction.digest().to_string();
        let signature =
            self.key
                .sign_transaction(&transaction)
                .map_err(|e| Error::Transaction {
                    reason: e.to_string(),
                })?;
        let request = ExecuteTransactionRequest::default()
            .with_transaction(transaction)
            .with_signatures(vec![signature.into()])
            .with_read_mask(FieldMask::from_paths([
                "digest",
                "effects.status",
                "effects.changed_objects",
            ]));
        let response = client
            .execute_transaction_and_wait_for_checkpoint(request, CHECKPOINT_TIMEOUT)
            .await
            .map_err(|e| Error::Rpc {
                call: "execute transaction",
                reason: e.to_string(),
            })?;
        let executed = response.into_inner().transaction.unwrap_or_default();
        let status = executed.effects.as_ref().and_then(|e| e.status.as_ref());
        if status.and_then(|s| s.success) != Some(true) {
            let reason = status
                .and_then(|s| s.error.as_ref())
                .and_then(|e| e.description.clone())
                .unwrap_or_else(|| "no status in effects".to_owned());
            return Err(Error::Execution { digest, reason });
        }
        tracing::info!(%digest, "transaction executed");
        Ok(executed)
    }
}

impl Registry for SuiRegistry {
    async fn cluster(&self) -> Result<ClusterState> {
        let object = self.object(self.cluster, "get Cluster").await?;
        let cluster = decode_cluster(Self::contents(&object))?;
        let mut stakes = Vec::with_capacity(cluster.stakes.len());
        for entry in &cluster.stakes {
            stakes.push(self.stake_object(Address(entry.value)).await?);
        }
        let admin = match self.admin_cap().await? {
            Some(_) => self.sender,
            None => Address::ZERO,
        };
        cluster.state(admin, &stakes)
    }

    async fn register_enclave(&self, document: &[u8]) -> Result<LiveEnclave> {
        let call = Call::RegisterEnclave {
            cluster: self.cluster_ref().await?,
            document: document.to_vec(),
        };
        self.submit(&call, 0).await?;
        self.cluster()
            .await?
            .live_enclave
            .ok_or_else(|| Error::Rpc {
                call: "register enclave",
                reason: "no live enclave after registration".to_owned(),
            })
    }

    async fn stake(&self, node_name: &str, amount: u64) -> Result<StakeInfo> {
        let call = Call::Stake {
            cluster: self.cluster_ref().await?,
            node_name: node_name.to_owned(),
            amount,
        };
        self.submit(&call, amount).await?;
        self.stake_info(node_name)
            .await?
            .ok_or_else(|| Error::NoStake {
                node: node_name.to_owned(),
            })
    }

    async fn request_unstake(&self, node_name: &str) -> Result<u64> {
        let stake = self
            .shared(self.stake_id(node_name).await?, "get Stake")
            .await?;
        let call = Call::RequestUnstake {
            stake,
            cluster: self.cluster_ref().await?,
        };
        self.submit(&call, 0).await?;
        let state = self.cluster().await?;
        let requested = state
            .stakes
            .get(node_name)
            .and_then(|s| s.unstake_requested_at_ms)
            .unwrap_or_default();
        Ok(requested.saturating_add(state.settings.unstake_cooldown_ms))
    }

    async fn withdraw(&self, node_name: &str) -> Result<u64> {
        let id = self.stake_id(node_name).await?;
        let amount = self.stake_object(id).await?.balance;
        let call = Call::Withdraw {
            stake: self.shared(id, "get Stake").await?,
            cluster: self.cluster_ref().await?,
        };
        self.submit(&call, 0).await?;
        Ok(amount)
    }

    async fn stake_info(&self, node_name: &str) -> Result<Option<StakeInfo>> {
        match self.stake_id(node_name).await {
            Ok(id) => Ok(Some(self.stake_object(id).await?.info())),
            Err(Error::NoStake { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn record_anchor(&self, anchor: SignedAnchor) -> Result<Anchor> {
        let call = Call::RecordAnchor {
            cluster: self.cluster_ref().await?,
            anchor,
        };
        self.submit(&call, 0).await?;
        self.latest_anchor().await?.ok_or_else(|| Error::Rpc {
            call: "record anchor",
            reason: "no anchor after recording".to_owned(),
        })
    }

    async fn latest_anchor(&self) -> Result<Option<Anchor>> {
        Ok(self.cluster().await?.latest_anchor)
    }
}

impl RegistryAdmin for SuiRegistry {
    async fn allow_image(&self, pcrs: Pcrs, label: &str, version: u64) -> Result<AllowedImage> {
        let call = Call::AllowImage {
            cluster: self.cluster_ref().await?,
            cap: self.require_cap().await?,
            pcrs,
            label: label.to_owned(),
            version,
        };
        self.submit(&call, 0).await?;
        Ok(AllowedImage {
            pcrs,
            label: label.to_owned(),
            version,
        })
    }

    async fn retire_image(&self, version: u64) -> Result<()> {
        let call = Call::RetireImage {
            cluster: self.cluster_ref().await?,
            cap: self.require_cap().await?,
            version,
        };
        self.submit(&call, 0).await.map(drop)
    }

    async fn slash(&self, node_name: &str, amount: u64) -> Result<()> {
        let call = Call::Slash {
            cluster: self.cluster_ref().await?,
            cap: self.require_cap().await?,
            stake: self
                .shared(self.stake_id(node_name).await?, "get Stake")
                .await?,
            amount,
        };
        self.submit(&call, 0).await.map(drop)
    }
}
