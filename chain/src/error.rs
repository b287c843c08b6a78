//! The crate's error type. Rule violations mirror the Move package's abort codes one to one
//! (the Move constant is named in each variant's doc) so both backends fail the same way.

use std::path::PathBuf;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a registry operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- cluster (k3s_daas::cluster) ---
    /// The caller does not administer this cluster (`cluster::ENotAdmin`).
    #[error("{caller} is not the admin of this cluster")]
    NotAdmin {
        /// Who tried.
        caller: String,
    },
    /// A PCR value is all zeros, as in a debug-mode enclave (`cluster::EDebugPcrs`).
    #[error("PCR{index} is all zeros (debug mode); such an image cannot be allowed")]
    DebugPcrs {
        /// First zero PCR.
        index: u8,
    },
    /// An allowed image with this version exists (`cluster::EVersionExists`).
    #[error("an allowed image with version {version} already exists")]
    VersionExists {
        /// The version.
        version: u64,
    },
    /// An allowed image with these PCRs exists (`cluster::EImageExists`).
    #[error("these PCRs are already allowed as version {version}")]
    ImageExists {
        /// The existing image's version.
        version: u64,
    },
    /// No allowed image has this version (`cluster::EImageNotFound`).
    #[error("no allowed image has version {version}")]
    ImageNotFound {
        /// The version.
        version: u64,
    },
    /// A cluster setting is out of range (`cluster::EBadSettings`).
    #[error("bad cluster settings: {reason}")]
    BadSettings {
        /// Which rule.
        reason: &'static str,
    },

    // --- enclave (k3s_daas::enclave) ---
    /// The attestation document failed cryptographic verification (on chain: the native
    /// `load_nitro_attestation` aborts).
    #[error("attestation document does not verify")]
    Attestation(#[from] attestation::VerifyError),
    /// The document is from a debug-mode enclave (`enclave::EDebugEnclave`).
    #[error("the document comes from a debug-mode enclave (PCR{index} is all zeros)")]
    DebugEnclave {
        /// First zero PCR.
        index: u8,
    },
    /// The document lacks PCR0, PCR1 or PCR2 (`enclave::EMissingPcr`).
    #[error("the document has no PCR{index}")]
    MissingPcr {
        /// The missing index.
        index: u8,
    },
    /// The PCRs match no allowed image (`enclave::EPcrsNotAllowed`).
    #[error("the enclave's PCRs (PCR0 {pcr0}) match no allowed image")]
    PcrsNotAllowed {
        /// Hex of the offending PCR0, for the operator.
        pcr0: String,
    },
    /// The document carries no `public_key`, the binding of the enclave's TLS key
    /// (`enclave::EMissingPublicKey`).
    #[error("the document carries no public_key (the SHA-256 of the enclave's TLS key)")]
    MissingPublicKey,
    /// The `public_key` is not a 32-byte SHA-256 digest (`enclave::EBadPublicKey`).
    #[error("the document's public_key is {len} bytes, not a 32-byte SHA-256 digest")]
    BadPublicKey {
        /// Its length.
        len: usize,
    },
    /// The document carries no `user_data`, the enclave's Ed25519 anchor key
    /// (`enclave::EMissingAnchorKey`).
    #[error("the document carries no user_data (the enclave's Ed25519 anchor key)")]
    MissingAnchorKey,
    /// The `user_data` is not a raw 32-byte Ed25519 key (`enclave::EBadAnchorKey`).
    #[error("the document's user_data is {len} bytes, not a 32-byte Ed25519 anchor key")]
    BadAnchorKey {
        /// Its length.
        len: usize,
    },
    /// The document is older than the freshness bound (`enclave::EDocumentTooOld`).
    #[error("the document is {age_ms} ms old; the cluster accepts at most {max_ms} ms")]
    DocumentTooOld {
        /// Its age against the clock.
        age_ms: u64,
        /// The cluster's bound.
        max_ms: u64,
    },
    /// The document's timestamp is ahead of the clock (`enclave::EDocumentFromFuture`).
    #[error("the document is dated {ahead_ms} ms in the future")]
    DocumentFromFuture {
        /// How far ahead.
        ahead_ms: u64,
    },
    /// The document is not newer than the live enclave's (`enclave::ENotNewer`).
    #[error("the document (t={timestamp_ms}) is not newer than the live enclave's (t={live_ms})")]
    NotNewer {
        /// The new document's timestamp.
        timestamp_ms: u64,
        /// The live enclave's document timestamp.
        live_ms: u64,
    },

    // --- stake (k3s_daas::stake) ---
    /// The amount is below the cluster's minimum (`stake::EBelowMinimum`).
    #[error("stake of {amount} MIST is below the cluster minimum of {min} MIST")]
    BelowMinimum {
        /// Offered.
        amount: u64,
        /// Required.
        min: u64,
    },
    /// Another stake holds this node name (`stake::ENodeNameTaken`).
    #[error("node name {node:?} is already staked")]
    NodeNameTaken {
        /// The name.
        node: String,
    },
    /// The node name is empty or longer than 253 bytes (`stake::EBadNodeName`).
    #[error("node name {node:?} must be 1..=253 bytes")]
    BadNodeName {
        /// The name.
        node: String,
    },
    /// Only the stake's owner may unstake (`stake::ENotOwner`).
    #[error("{caller} does not own the stake for {node:?}")]
    NotOwner {
        /// The node name.
        node: String,
        /// Who tried.
        caller: String,
    },
    /// Unstaking was already requested (`stake::EAlreadyUnstaking`).
    #[error("unstaking {node:?} was already requested")]
    AlreadyUnstaking {
        /// The node name.
        node: String,
    },
    /// Withdraw before `request_unstake` (`stake::ENotUnstaking`).
    #[error("unstaking {node:?} was never requested")]
    NotUnstaking {
        /// The node name.
        node: String,
    },
    /// The cool-down is still running (`stake::ECooldownNotOver`).
    #[error("the stake for {node:?} unlocks at {available_at_ms} ms (now {now_ms} ms)")]
    CooldownNotOver {
        /// The node name.
        node: String,
        /// When withdrawing becomes possible.
        available_at_ms: u64,
        /// The clock now.
        now_ms: u64,
    },
    /// The slash amount is zero or more than the stake (`stake::EBadSlashAmount`).
    #[error("cannot slash {amount} MIST from a stake of {staked} MIST")]
    BadSlashAmount {
        /// Requested.
        amount: u64,
        /// Staked.
        staked: u64,
    },
    /// No stake holds this node name.
    #[error("no stake holds node name {node:?}")]
    NoStake {
        /// The name.
        node: String,
    },

    // --- anchor (k3s_daas::anchor) ---
    /// No live enclave (`anchor::ENoLiveEnclave`).
    #[error("no enclave is live, so no anchor can be recorded")]
    NoLiveEnclave,
    /// The signature does not verify under the live enclave's key (`anchor::EBadSignature`).
    #[error("the anchor's signature does not verify under the live enclave's key")]
    BadSignature,
    /// The revision does not increase (`anchor::ENotMonotonic`).
    #[error("anchor revision {revision} does not exceed the latest anchored revision {latest}")]
    NotMonotonic {
        /// Offered.
        revision: u64,
        /// Latest recorded.
        latest: u64,
    },
    /// The live enclave's image was retired (`anchor::EImageRetired`).
    #[error("the live enclave's image (version {version}) has been retired")]
    ImageRetired {
        /// The retired version.
        version: u64,
    },

    // --- local backend ---
    /// The registry file could not be read, written or locked.
    #[error("registry file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The registry file is not valid registry JSON.
    #[error("registry file {path} is corrupt")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// `init` on a path that already holds a registry.
    #[error("a registry already exists at {path}")]
    AlreadyExists {
        /// The file.
        path: PathBuf,
    },
    /// Opening a path that holds no registry.
    #[error("no registry at {path} (run `daas registry init` first)")]
    NotFound {
        /// The file.
        path: PathBuf,
    },
    /// A PCR measurements file is not usable.
    #[error("bad PCR measurements: {reason}")]
    BadMeasurements {
        /// What is wrong.
        reason: String,
    },
    /// A transaction could not be built.
    #[error("cannot build the transaction: {reason}")]
    Transaction {
        /// The builder's message.
        reason: String,
    },
    /// A Sui fullnode call failed, or its answer was unusable.
    #[error("Sui RPC {call}: {reason}")]
    Rpc {
        /// Which call.
        call: &'static str,
        /// The status or decoding problem.
        reason: String,
    },
    /// A transaction executed on chain but aborted or failed.
    #[error("transaction {digest} failed on chain: {reason}")]
    Execution {
        /// Its digest.
        digest: String,
        /// The effects' error (e.g. a Move abort code and module).
        reason: String,
    },
    /// The Sui keystore could not be used.
    #[error("keystore {path}: {reason}")]
    Keystore {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A `sui:` registry was asked of a build without the `sui` feature.
    #[error("this build has no Sui backend (chain's `sui` feature is off); use a local: registry")]
    SuiUnavailable,
    /// The host's registry relay could not be reached, or spoke something else than the relay
    /// protocol.
    #[error("registry relay {endpoint}: {reason}")]
    Relay {
        /// The relay's endpoint.
        endpoint: String,
        /// What went wrong (I/O or protocol).
        reason: String,
    },
    /// The registry behind the relay refused or failed the call; `message` is its error as the
    /// relay reported it.
    #[error("the registry behind the relay failed {call}: {message}")]
    RelayRefused {
        /// Which call.
        call: &'static str,
        /// The registry's error message.
        message: String,
    },
    /// A call the registry relay does not carry (it carries what an enclave asks).
    #[error("the registry relay does not carry {call}")]
    RelayUnsupported {
        /// Which call.
        call: &'static str,
    },
    /// A blocking task panicked or was cancelled.
    #[error("registry worker task failed")]
    Task(#[source] tokio::task::JoinError),
}
