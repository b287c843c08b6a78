//! The on-chain registry client: which enclave images a cluster allows, which enclave is live,
//! which workers have staked, and how far the sealed state has been anchored.
//!
//! Layering: `chain` sits above `attestation` (documents are verified with its [`Verifier`]
//! before the registry's rules run) and below `cli`, `worker` and `enclave` (types only). Only
//! this crate names Sui crates.
//!
//! Start with the [`Registry`] trait (and [`RegistryAdmin`] for the cluster admin). Backends:
//! - [`FileRegistry`]: a local JSON file for dev mode and tests, safe under concurrent
//!   processes, enforcing the rules of the Move package `k3s_daas` (`Move/`).
//! - `sui::SuiRegistry` (feature `sui`): the `Cluster` object on a Sui network.
//!
//! | feature | what it adds |
//! |---|---|
//! | `sui` | the Sui backend, keystore and transaction builders (the Sui Rust SDK 0.4; heavy to compile) |
//!
//! Accounts are Sui Ed25519 keys in the Sui CLI keystore format for both backends
//! ([`AccountKeystore`], [`SuiAccount`]); [`verify_personal_message`] checks the personal-message
//! signatures workers join with. [`attest::check_enclave`] is attested first contact's checks
//! against the registry, shared by `daas` and `daas-worker`.
//!
//! The Move package's abort codes map one to one onto [`Error`] variants. Anchor messages are
//! built by [`anchor_message`], byte for byte what the Move code verifies.
//!
//! [`Verifier`]: attestation::Verifier

mod account;
mod anchor;
mod any;
pub mod attest;
mod clock;
mod digest;
mod error;
mod file;
mod registry;
mod rules;
#[cfg(feature = "sui")]
pub mod sui;
mod types;
mod url;

pub use account::{
    AccountKeystore, ED25519_FLAG, PERSONAL_MESSAGE_INTENT, SUI_SIGNATURE_LEN, SignatureProblem,
    SuiAccount, address_of_public_key, personal_message_digest, verify_personal_message,
};
pub use anchor::{ANCHOR_INTENT, SignedAnchor, anchor_message, verify_anchor_signature};
pub use any::{AnyRegistry, OpenOptions};
pub use clock::{Clock, ManualClock, SystemClock};
pub use digest::document_digest;
pub use error::{Error, Result};
pub use file::{FileRegistry, LocalEvent, LocalEventKind};
pub use registry::{Registry, RegistryAdmin};
pub use types::{
    Address, AllowedImage, Anchor, ClusterSettings, ClusterState, HexBytes, LiveEnclave,
    MAX_CLOCK_SKEW_MS, MAX_DOCUMENT_AGE_LIMIT_MS, MAX_NODE_NAME_LEN, Pcrs, StakeInfo,
};
pub use url::{RegistryUrl, RegistryUrlError};
