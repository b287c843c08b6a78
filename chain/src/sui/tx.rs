//! Programmable transactions for the `k3s_daas` package, built offline with
//! `sui-transaction-builder` from fully resolved inputs (object references, gas, price). The
//! TypeScript SDK builds the same bytes (`chain/tests/sui_crosscheck.rs`).
//!
//! Pure inputs are never deduplicated (as in `@mysten/sui`); object inputs are (as in both SDKs).

use sui_sdk_types::{Address as SuiAddress, Digest, Identifier, Transaction};
use sui_transaction_builder::{Argument, Function, ObjectInput, TransactionBuilder};

use crate::anchor::SignedAnchor;
use crate::error::{Error, Result};
use crate::types::{Address, ClusterSettings, Pcrs};

/// The `Clock` shared object and its initial shared version.
const CLOCK: (SuiAddress, u64) = (SuiAddress::new(clock_id()), 1);

const fn clock_id() -> [u8; 32] {
    let mut id = [0u8; 32];
    id[31] = 6;
    id
}

/// A shared object: its ID and the version at which it became shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedRef {
    /// Object ID.
    pub id: Address,
    /// `initial_shared_version`.
    pub initial_shared_version: u64,
}

/// An owned object at a specific version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnedRef {
    /// Object ID.
    pub id: Address,
    /// Version.
    pub version: u64,
    /// Object digest (base58 on the wire, 32 bytes here).
    pub digest: [u8; 32],
}

/// Who pays and how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GasConfig {
    /// Sender and gas owner.
    pub sender: Address,
    /// SUI coins that pay for gas.
    pub coins: Vec<OwnedRef>,
    /// Gas budget in MIST.
    pub budget: u64,
    /// Gas price in MIST per unit.
    pub price: u64,
}

/// One registry operation as a Move call (plus the transfers it needs).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Call {
    /// `cluster::create`, then transfer the `AdminCap` to the sender.
    CreateCluster {
        /// Name.
        name: String,
        /// Limits.
        settings: ClusterSettings,
    },
    /// `cluster::allow_image`.
    AllowImage {
        /// The cluster.
        cluster: SharedRef,
        /// The sender's `AdminCap`.
        cap: OwnedRef,
        /// Measurements.
        pcrs: Pcrs,
        /// Label.
        label: String,
        /// Version.
        version: u64,
    },
    /// `cluster::retire_image`.
    RetireImage {
        /// The cluster.
        cluster: SharedRef,
        /// The sender's `AdminCap`.
        cap: OwnedRef,
        /// Version.
        version: u64,
    },
    /// `0x2::nitro_attestation::load_nitro_attestation`, then `enclave::register_enclave`.
    RegisterEnclave {
        /// The cluster.
        cluster: SharedRef,
        /// The raw attestation document.
        document: Vec<u8>,
    },
    /// Split `amount` from the gas coin, then `stake::stake`.
    Stake {
        /// The cluster.
        cluster: SharedRef,
        /// Node name.
        node_name: String,
        /// MIST.
        amount: u64,
    },
    /// `stake::request_unstake`.
    RequestUnstake {
        /// The `Stake`.
        stake: SharedRef,
        /// The cluster (read only).
        cluster: SharedRef,
    },
    /// `stake::withdraw`, then transfer the coin to the sender.
    Withdraw {
        /// The `Stake` (deleted).
        stake: SharedRef,
        /// The cluster.
        cluster: SharedRef,
    },
    /// `stake::slash`.
    Slash {
        /// The cluster.
        cluster: SharedRef,
        /// The sender's `AdminCap`.
        cap: OwnedRef,
        /// The `Stake`.
        stake: SharedRef,
        /// MIST.
        amount: u64,
    },
    /// `anchor::record_anchor`.
    RecordAnchor {
        /// The cluster.
        cluster: SharedRef,
        /// The signed anchor.
        anchor: SignedAnchor,
    },
}

fn ident(name: &'static str) -> Result<Identifier> {
    Identifier::new(name).map_err(|e| Error::Transaction {
        reason: format!("invalid Move identifier {name}: {e}"),
    })
}

struct Builder {
    tx: TransactionBuilder,
    package: SuiAddress,
}

impl Builder {
    fn call(
        &mut self,
        module: &'static str,
        function: &'static str,
        args: Vec<Argument>,
    ) -> Result<Argument> {
        let f = Function::new(self.package, ident(module)?, ident(function)?);
        Ok(self.tx.move_call(f, args))
    }

    fn shared(&mut self, object: SharedRef, mutable: bool) -> Argument {
        self.tx.object(ObjectInput::shared(
            SuiAddress::new(object.id.0),
            object.initial_shared_version,
            mutable,
        ))
    }

    fn owned(&mut self, object: OwnedRef) -> Argument {
        self.tx.object(ObjectInput::owned(
            SuiAddress::new(object.id.0),
            object.version,
            Digest::new(object.digest),
        ))
    }

    fn clock(&mut self) -> Argument {
        self.tx.object(ObjectInput::shared(CLOCK.0, CLOCK.1, false))
    }

    fn pure<T: serde::Serialize>(&mut self, value: &T) -> Argument {
        self.tx.pure_unique(value)
    }
}

/// Builds the transaction for `call` against package `package`.
///
/// # Errors
///
/// [`Error::Transaction`] when the builder rejects the inputs (e.g. no gas coins).
pub fn build(package: Address, call: &Call, gas: &GasConfig) -> Result<Transaction> {
    let mut b = Builder {
        tx: TransactionBuilder::new(),
        package: SuiAddress::new(package.0),
    };
    match call {
        Call::CreateCluster { name, settings } => {
            let args = vec![
                b.pure(name),
                b.pure(&settings.min_stake),
                b.pure(&settings.unstake_cooldown_ms),
                b.pure(&settings.max_document_age_ms),
            ];
            let cap = b.call("cluster", "create", args)?;
            let to = b.pure(&SuiAddress::new(gas.sender.0));
            b.tx.transfer_objects(vec![cap], to);
        }
        Call::AllowImage {
            cluster,
            cap,
            pcrs,
            label,
            version,
        } => {
            let args = vec![
                b.shared(*cluster, true),
                b.owned(*cap),
                b.pure(&pcrs.pcr0.as_bytes().to_vec()),
                b.pure(&pcrs.pcr1.as_bytes().to_vec()),
                b.pure(&pcrs.pcr2.as_bytes().to_vec()),
                b.pure(label),
                b.pure(version),
            ];
            b.call("cluster", "allow_image", args)?;
        }
        Call::RetireImage {
            cluster,
            cap,
            version,
        } => {
            let args = vec![b.shared(*cluster, true), b.owned(*cap), b.pure(version)];
            b.call("cluster", "retire_image", args)?;
        }
        Call::RegisterEnclave { cluster, document } => {
            let bytes = b.pure(document);
            let clock = b.clock();
            let load = Function::new(
                SuiAddress::TWO,
                ident("nitro_attestation")?,
                ident("load_nitro_attestation")?,
            );
            let doc = b.tx.move_call(load, vec![bytes, clock]);
            let args = vec![b.shared(*cluster, true), doc, clock];
            b.call("enclave", "register_enclave", args)?;
        }
        Call::Stake {
            cluster,
            node_name,
            amount,
        } => {
            let gas_coin = b.tx.gas();
            let amount = b.pure(amount);
            let coin =
                b.tx.split_coins(gas_coin, vec![amount])
                    .into_iter()
                    .next()
                    .ok_or(Error::Transaction {
                        reason: "split_coins returned no coin".to_owned(),
                    })?;
            let args = vec![b.shared(*cluster, true), b.pure(node_name), coin, b.clock()];
            b.call("stake", "stake", args)?;
        }
        Call::RequestUnstake { stake, cluster } => {
            let args = vec![b.shared(*stake, true), b.shared(*cluster, false), b.clock()];
            b.call("stake", "request_unstake", args)?;
        }
        Call::Withdraw { stake, cluster } => {
            let args = vec![b.shared(*stake, true), b.shared(*cluster, true), b.clock()];
            let coin = b.call("stake", "withdraw", args)?;
            let to = b.pure(&SuiAddress::new(gas.sender.0));
            b.tx.transfer_objects(vec![coin], to);
        }
        Call::Slash {
            cluster,
            cap,
            stake,
            amount,
        } => {
            let args = vec![
                b.shared(*cluster, true),
                b.owned(*cap),
                b.shared(*stake, true),
                b.pure(amount),
            ];
            b.call("stake", "slash", args)?;
        }
        Call::RecordAnchor { cluster, anchor } => {
            let args = vec![
                b.shared(*cluster, true),
                b.pure(&anchor.revision),
                b.pure(&anchor.chain_hash.to_vec()),
                b.pure(&anchor.timestamp_ms),
                b.pure(&anchor.signature.to_vec()),
                b.clock(),
            ];
            b.call("anchor", "record_anchor", args)?;
        }
    }
    b.tx.set_sender(SuiAddress::new(gas.sender.0));
    b.tx.set_gas_budget(gas.budget);
    b.tx.set_gas_price(gas.price);
    b.tx.add_gas_objects(
        gas.coins
            .iter()
            .map(|c| ObjectInput::owned(SuiAddress::new(c.id.0), c.version, Digest::new(c.digest))),
    );
    b.tx.try_build().map_err(|e| Error::Transaction {
        reason: e.to_string(),
    })
}
