//! `daas registry ...`: create a cluster's registry, admit images, inspect it, stake and unstake.
//!
//! The backend is chosen by `--registry`: `local:PATH` (a `chain::FileRegistry` file, for dev
//! mode) or `sui:RPC_URL#CLUSTER_OBJECT_ID`. Both act as an account of a Sui CLI keystore
//! (`--keystore`, `--address`): on Sui it signs the transactions, locally the registry acts as
//! its address, so dev and Sui follow one path. `daas registry new-account` makes one.

mod show;

use std::path::PathBuf;

use anyhow::{Context, bail};
use chain::{
    AccountKeystore, Address, AnyRegistry, ClusterSettings, OpenOptions, Pcrs, Registry,
    RegistryAdmin, RegistryUrl, SuiAccount,
};
use clap::{Args, Subcommand};

/// Options every `daas registry` subcommand takes.
#[derive(Debug, Args)]
pub(crate) struct Target {
    /// Where the registry lives: `local:PATH` or `sui:RPC_URL#CLUSTER_OBJECT_ID`.
    #[arg(long, env = "DAAS_REGISTRY")]
    registry: RegistryUrl,

    /// Local registry only: trust this root certificate (PEM) instead of AWS Nitro Root-G1 when
    /// verifying attestation documents, e.g. the dev simulator's root. Never in production.
    #[arg(long, value_name = "PEM")]
    dangerous_trust_root: Option<PathBuf>,

    /// The Sui CLI keystore whose account acts (signs on Sui; is the caller of a local
    /// registry). Default: ~/.sui/sui_config/sui.keystore when it exists. Reading needs none.
    #[arg(long, env = "DAAS_SUI_KEYSTORE", value_name = "FILE")]
    keystore: Option<PathBuf>,

    /// Which account of the keystore acts (default: its first Ed25519 key).
    #[arg(long, env = "DAAS_SUI_ADDRESS")]
    address: Option<Address>,

    /// Sui registry only: the published `k3s_daas` package (needed by `init`; otherwise read
    /// from the cluster object).
    #[arg(long, env = "DAAS_SUI_PACKAGE")]
    package: Option<Address>,

    /// Sui registry only: gas budget per transaction, in MIST.
    #[arg(long, default_value_t = 100_000_000)]
    gas_budget: u64,
}

/// `daas registry` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum RegistryCommand {
    /// Create a cluster; the account becomes its admin.
    Init {
        #[command(flatten)]
        target: Target,
        /// Cluster name.
        #[arg(long)]
        name: String,
        /// Smallest stake, in MIST (1 SUI = 10^9 MIST), that admits a worker.
        #[arg(long, default_value_t = 1_000_000_000)]
        min_stake: u64,
        /// How long a stake stays locked after `unstake`, in milliseconds.
        #[arg(long, default_value_t = 86_400_000)]
        unstake_cooldown_ms: u64,
        /// How old an attestation document may be when registered, in milliseconds (max 3 h).
        #[arg(long, default_value_t = 300_000)]
        max_document_age_ms: u64,
    },
    /// Admit an enclave image by its measurements (admin).
    AllowImage {
        #[command(flatten)]
        target: Target,
        /// Measurements JSON with PCR0, PCR1, PCR2 (as written by `daas image` or nitro-cli).
        #[arg(long, value_name = "FILE")]
        pcrs: PathBuf,
        /// Human-readable label.
        #[arg(long)]
        label: String,
        /// Version number, unique within the cluster.
        #[arg(long)]
        version: u64,
    },
    /// Retire an allowed image (admin).
    RetireImage {
        #[command(flatten)]
        target: Target,
        /// Version to retire.
        #[arg(long)]
        version: u64,
    },
    /// Print the allowed images, live enclave, stakes and latest anchor.
    Show {
        #[command(flatten)]
        target: Target,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Register an enclave from its attestation document (raw COSE bytes).
    RegisterEnclave {
        #[command(flatten)]
        target: Target,
        /// The attestation document.
        #[arg(long, value_name = "FILE")]
        document: PathBuf,
    },
    /// Stake MIST for a node name.
    Stake {
        #[command(flatten)]
        target: Target,
        /// Node name the stake admits.
        #[arg(long)]
        node: String,
        /// Amount in MIST.
        #[arg(long)]
        amount: u64,
    },
    /// Ask to unstake: starts the cool-down, and the node is no longer admitted.
    Unstake {
        #[command(flatten)]
        target: Target,
        /// Node name.
        #[arg(long)]
        node: String,
    },
    /// After the cool-down, take the stake back.
    Withdraw {
        #[command(flatten)]
        target: Target,
        /// Node name.
        #[arg(long)]
        node: String,
    },
    /// Add a new Ed25519 account to a Sui CLI keystore (created if missing) and print its
    /// address, as `sui client new-address ed25519` does.
    NewAccount {
        /// The keystore file.
        #[arg(long, env = "DAAS_SUI_KEYSTORE", value_name = "FILE")]
        keystore: PathBuf,
    },
    /// Take MIST from a stake (admin).
    Slash {
        #[command(flatten)]
        target: Target,
        /// Node name.
        #[arg(long)]
        node: String,
        /// Amount in MIST.
        #[arg(long)]
        amount: u64,
    },
}

/// A subcommand without its [`Target`].
#[derive(Debug)]
enum Action {
    Init(String, ClusterSettings),
    AllowImage {
        pcrs: PathBuf,
        label: String,
        version: u64,
    },
    RetireImage {
        version: u64,
    },
    Show {
        json: bool,
    },
    RegisterEnclave {
        document: PathBuf,
    },
    Stake {
        node: String,
        amount: u64,
    },
    Unstake {
        node: String,
    },
    Withdraw {
        node: String,
    },
    Slash {
        node: String,
        amount: u64,
    },
}

impl RegistryCommand {
    /// The subcommand's target and action; `None` for `new-account`, which has no target.
    fn split(self) -> Option<(Target, Action)> {
        Some(match self {
            Self::Init {
                target,
                name,
                min_stake,
                unstake_cooldown_ms,
                max_document_age_ms,
            } => (
                target,
                Action::Init(
                    name,
                    ClusterSettings {
                        min_stake,
                        unstake_cooldown_ms,
                        max_document_age_ms,
                    },
                ),
            ),
            Self::AllowImage {
                target,
                pcrs,
                label,
                version,
            } => (
                target,
                Action::AllowImage {
                    pcrs,
                    label,
                    version,
                },
            ),
            Self::RetireImage { target, version } => (target, Action::RetireImage { version }),
            Self::Show { target, json } => (target, Action::Show { json }),
            Self::RegisterEnclave { target, document } => {
                (target, Action::RegisterEnclave { document })
            }
            Self::Stake {
                target,
                node,
                amount,
            } => (target, Action::Stake { node, amount }),
            Self::Unstake { target, node } => (target, Action::Unstake { node }),
            Self::Withdraw { target, node } => (target, Action::Withdraw { node }),
            Self::Slash {
                target,
                node,
                amount,
            } => (target, Action::Slash { node, amount }),
            Self::NewAccount { .. } => return None,
        })
    }
}

pub(crate) fn run(cmd: RegistryCommand) -> anyhow::Result<()> {
    if let RegistryCommand::NewAccount { keystore } = &cmd {
        return new_account(keystore);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_async(cmd))
}

async fn run_async(cmd: RegistryCommand) -> anyhow::Result<()> {
    let Some((target, action)) = cmd.split() else {
        bail!("new-account acts on a keystore, not on a registry");
    };
    let verifier = match &target.dangerous_trust_root {
        Some(pem) => {
            let bytes = std::fs::read(pem).with_context(|| format!("reading {}", pem.display()))?;
            attestation::Verifier::dangerous_trust_root_pem(&bytes)
                .with_context(|| format!("{} holds no PEM certificate", pem.display()))?
        }
        None => attestation::Verifier::aws_nitro(),
    };
    let keystore = target.keystore.or_else(|| {
        std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".sui/sui_config/sui.keystore"))
            .filter(|p| p.exists())
    });
    let options = OpenOptions {
        verifier,
        keystore,
        address: target.address,
        package: target.package,
        gas_budget: target.gas_budget,
    };
    let url = target.registry;

    if let Action::Init(name, settings) = &action {
        let (registry, id) = AnyRegistry::init(&url, name, *settings, &options).await?;
        let state = registry.cluster().await?;
        println!(
            "created cluster {:?} ({id}); admin {}; use --registry {}",
            state.name,
            state.admin,
            match &url {
                RegistryUrl::Sui { rpc, .. } => format!("sui:{rpc}#{id}"),
                RegistryUrl::Local(_) => url.to_string(),
            }
        );
        return Ok(());
    }
    let registry = AnyRegistry::open(&url, &options).await?;
    act(&registry, action).await
}

/// `daas registry new-account`: appends a fresh Ed25519 key to `path`.
fn new_account(path: &std::path::Path) -> anyhow::Result<()> {
    let mut keystore = AccountKeystore::load_or_empty(path)?;
    let account = SuiAccount::generate()?;
    let address = account.address();
    keystore.push(account);
    keystore.save()?;
    println!("{address}");
    Ok(())
}

async fn act<R: RegistryAdmin>(registry: &R, action: Action) -> anyhow::Result<()> {
    match action {
        Action::Init(..) => bail!("init is handled before opening a registry"),
        Action::AllowImage {
            pcrs,
            label,
            version,
        } => {
            let json = std::fs::read_to_string(&pcrs)
                .with_context(|| format!("reading {}", pcrs.display()))?;
            let measurements = Pcrs::from_measurements_json(&json)
                .with_context(|| format!("in {}", pcrs.display()))?;
            let image = registry.allow_image(measurements, &label, version).await?;
            println!(
                "allowed image v{} {:?} (PCR0 {})",
                image.version,
                image.label,
                hex::encode(image.pcrs.pcr0.as_bytes())
            );
        }
        Action::RetireImage { version } => {
            registry.retire_image(version).await?;
            println!("retired image v{version}");
        }
        Action::Show { json } => {
            let state = registry.cluster().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&state)?);
            } else {
                print!("{}", show::render(&state));
            }
        }
        Action::RegisterEnclave { document } => {
            let bytes = std::fs::read(&document)
                .with_context(|| format!("reading {}", document.display()))?;
            let live = registry.register_enclave(&bytes).await?;
            println!(
                "enclave with anchor key {} is live (image v{})",
                hex::encode(live.anchor_key),
                live.image_version
            );
        }
        Action::Stake { node, amount } => {
            let stake = registry.stake(&node, amount).await?;
            println!(
                "staked {} MIST for node {:?} (stake {})",
                stake.amount, stake.node_name, stake.id
            );
        }
        Action::Unstake { node } => {
            let at = registry.request_unstake(&node).await?;
            println!("unstaking node {node:?}; withdraw possible at {at} ms since the epoch");
        }
        Action::Withdraw { node } => {
            let amount = registry.withdraw(&node).await?;
            println!("withdrew {amount} MIST; node {node:?} is free");
        }
        Action::Slash { node, amount } => {
            registry.slash(&node, amount).await?;
            println!("slashed {amount} MIST from node {node:?}");
        }
    }
    Ok(())
}
