//! The Sui backend (feature `sui`): the Sui CLI keystore, the `k3s_daas` transactions built
//! offline with `sui-transaction-builder`, and [`SuiRegistry`], which reads the `Cluster` and
//! `Stake` objects and submits signed transactions through a fullnode's gRPC API (`sui-rpc`).

mod keystore;
mod objects;
mod registry;
pub mod tx;

pub use keystore::{Keystore, address_of};
pub use registry::{SuiRegistry, SuiRegistryConfig};
