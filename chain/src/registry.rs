//! The `Registry` seam: what the enclave, workers and the CLI ask of the registry, whichever
//! backend holds it.

use std::future::Future;

use crate::anchor::SignedAnchor;
use crate::error::Result;
use crate::types::{AllowedImage, Anchor, ClusterState, LiveEnclave, Pcrs, StakeInfo};

/// A cluster's registry: allowed images, the live enclave, stakes and state anchors.
///
/// Every call acts as the backend's configured account (a Sui key, or the local backend's
/// caller address), the way a Sui transaction acts as its sender.
pub trait Registry: Send + Sync {
    /// Everything known about the cluster: allowed images, live enclave, stakes, latest anchor.
    fn cluster(&self) -> impl Future<Output = Result<ClusterState>> + Send;

    /// Verifies an attestation document and makes its enclave the live one.
    fn register_enclave(&self, document: &[u8])
    -> impl Future<Output = Result<LiveEnclave>> + Send;

    /// Stakes `amount` MIST for `node_name`, owned by the caller.
    fn stake(&self, node_name: &str, amount: u64)
    -> impl Future<Output = Result<StakeInfo>> + Send;

    /// Starts the cool-down of the caller's stake; returns when it can be withdrawn (ms).
    fn request_unstake(&self, node_name: &str) -> impl Future<Output = Result<u64>> + Send;

    /// After the cool-down, removes the stake and returns its MIST to the caller.
    fn withdraw(&self, node_name: &str) -> impl Future<Output = Result<u64>> + Send;

    /// The stake holding `node_name`, if any.
    fn stake_info(&self, node_name: &str)
    -> impl Future<Output = Result<Option<StakeInfo>>> + Send;

    /// Records an anchor signed by the live enclave.
    fn record_anchor(&self, anchor: SignedAnchor) -> impl Future<Output = Result<Anchor>> + Send;

    /// The newest anchor.
    fn latest_anchor(&self) -> impl Future<Output = Result<Option<Anchor>>> + Send;
}

/// Administration of a cluster (holding its `AdminCap` on Sui).
pub trait RegistryAdmin: Registry {
    /// Admits an image.
    fn allow_image(
        &self,
        pcrs: Pcrs,
        label: &str,
        version: u64,
    ) -> impl Future<Output = Result<AllowedImage>> + Send;

    /// Retires an image by version.
    fn retire_image(&self, version: u64) -> impl Future<Output = Result<()>> + Send;

    /// Moves `amount` MIST of a stake into the cluster's slashed balance.
    fn slash(&self, node_name: &str, amount: u64) -> impl Future<Output = Result<()>> + Send;
}
