//! The registry's public facts, as both backends report them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use attestation::Pcr;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Longest node name (a DNS subdomain).
pub const MAX_NODE_NAME_LEN: usize = 253;
/// Longest freshness bound a cluster may set: the Nitro leaf certificate lives about 3 h.
pub const MAX_DOCUMENT_AGE_LIMIT_MS: u64 = 3 * 60 * 60 * 1000;
/// How far a document may be dated ahead of the clock.
pub const MAX_CLOCK_SKEW_MS: u64 = 60_000;

/// A 32-byte Sui address or object ID, shown as `0x` and 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Address(pub [u8; 32]);

impl Address {
    /// The all-zero address.
    pub const ZERO: Address = Address([0; 32]);
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Address {
    type Err = hex::FromHexError;

    /// Parses `0x`-prefixed or bare hex of up to 64 digits (short forms are left-padded, as
    /// Sui writes `0x6` for the clock).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix("0x").unwrap_or(s);
        if digits.is_empty() || digits.len() > 64 {
            return Err(hex::FromHexError::InvalidStringLength);
        }
        let padded = format!("{digits:0>64}");
        let mut out = [0u8; 32];
        hex::decode_to_slice(padded, &mut out)?;
        Ok(Self(out))
    }
}

impl From<Address> for String {
    fn from(a: Address) -> Self {
        a.to_string()
    }
}

impl TryFrom<String> for Address {
    type Error = hex::FromHexError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// Serde for a [`Pcr`] as 96 hex digits.
mod pcr_hex {
    use attestation::Pcr;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(pcr: &Pcr, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(pcr.as_bytes()))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Pcr, D::Error> {
        let text = String::deserialize(d)?;
        Pcr::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// PCR0 (image), PCR1 (kernel and boot ramfs), PCR2 (application).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pcrs {
    /// PCR0.
    #[serde(with = "pcr_hex")]
    pub pcr0: Pcr,
    /// PCR1.
    #[serde(with = "pcr_hex")]
    pub pcr1: Pcr,
    /// PCR2.
    #[serde(with = "pcr_hex")]
    pub pcr2: Pcr,
}

impl Pcrs {
    /// Index (0, 1 or 2) of the first all-zero PCR: a debug-mode measurement.
    #[must_use]
    pub fn first_zero(&self) -> Option<u8> {
        [&self.pcr0, &self.pcr1, &self.pcr2]
            .iter()
            .position(|p| p.is_zero())
            .and_then(|i| u8::try_from(i).ok())
    }

    /// Reads a measurements file: nitro-cli's `{"Measurements": {"PCR0": ..}}`, or the
    /// `{"HashAlgorithm": .., "PCR0": .., "PCR1": .., "PCR2": ..}` that `eif_build
    /// --pcrs_output` and `daas image` write.
    ///
    /// # Errors
    ///
    /// [`Error::BadMeasurements`] when the JSON lacks PCR0..2 or a value is not 48 bytes of hex.
    pub fn from_measurements_json(json: &str) -> Result<Self> {
        let bad = |reason: String| Error::BadMeasurements { reason };
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| bad(format!("not JSON: {e}")))?;
        let map = value.get("Measurements").unwrap_or(&value);
        let pcr = |name: &str| -> Result<Pcr> {
            let text = map
                .get(name)
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| bad(format!("no {name} string")))?;
            Pcr::from_hex(text).map_err(|e| bad(format!("{name}: {e}")))
        };
        Ok(Self {
            pcr0: pcr("PCR0")?,
            pcr1: pcr("PCR1")?,
            pcr2: pcr("PCR2")?,
        })
    }
}

/// Per-cluster limits, fixed at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSettings {
    /// Smallest stake, in MIST, that admits a worker.
    pub min_stake: u64,
    /// How long a stake stays locked after its owner asks to unstake.
    pub unstake_cooldown_ms: u64,
    /// How old an attestation document may be when it is registered.
    pub max_document_age_ms: u64,
}

impl ClusterSettings {
    /// Checks the rules of `cluster::create`.
    ///
    /// # Errors
    ///
    /// [`Error::BadSettings`] for a zero minimum stake or a freshness bound outside 1 ms..3 h.
    pub fn validate(&self) -> Result<()> {
        if self.min_stake == 0 {
            return Err(Error::BadSettings {
                reason: "minimum stake must be positive",
            });
        }
        if self.max_document_age_ms == 0 || self.max_document_age_ms > MAX_DOCUMENT_AGE_LIMIT_MS {
            return Err(Error::BadSettings {
                reason: "document age bound must be within 1 ms ..= 3 h",
            });
        }
        Ok(())
    }
}

/// An image whose enclaves may serve the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowedImage {
    /// Its measurements.
    pub pcrs: Pcrs,
    /// Human-readable label.
    pub label: String,
    /// Unique per cluster.
    pub version: u64,
}

/// The registered enclave instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveEnclave {
    /// Raw Ed25519 key from the document's `user_data`; it signs anchors.
    #[serde(with = "hex::serde")]
    pub anchor_key: [u8; 32],
    /// The document's `public_key`: SHA-256 of the enclave's TLS SubjectPublicKeyInfo, which
    /// clients compare with the certificate the enclave serves.
    #[serde(with = "hex::serde")]
    pub tls_key_digest: [u8; 32],
    /// Its PCRs.
    pub pcrs: Pcrs,
    /// Version of the allowed image the PCRs matched.
    pub image_version: u64,
    /// The document's own timestamp.
    pub document_timestamp_ms: u64,
    /// blake2b256 of the BCS of the document as Sui parses it (see [`crate::document_digest`]).
    #[serde(with = "hex::serde")]
    pub document_digest: [u8; 32],
    /// Clock time of the registration.
    pub registered_at_ms: u64,
    /// Who submitted it.
    pub registered_by: Address,
}

/// Bytes shown as hex in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HexBytes(#[serde(with = "hex::serde")] pub Vec<u8>);

/// A (revision, journal chain hash) pair the live enclave vouched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// Store revision.
    pub revision: u64,
    /// Journal chain hash at that revision.
    #[serde(with = "hex::serde")]
    pub chain_hash: [u8; 32],
    /// When the enclave signed it.
    pub timestamp_ms: u64,
    /// Clock time it was recorded.
    pub recorded_at_ms: u64,
    /// The enclave's Ed25519 signature over [`crate::anchor_message`], kept so that whoever reads
    /// the anchor (an enclave at boot) can check it was made with the cluster's anchor key, not
    /// only trust the registry that returned it. All zero in files written before it was kept.
    #[serde(with = "hex::serde", default = "zero_signature")]
    pub signature: [u8; 64],
}

fn zero_signature() -> [u8; 64] {
    [0; 64]
}

impl Anchor {
    /// The anchor as the enclave submitted it (for [`crate::verify_anchor_signature`]).
    #[must_use]
    pub fn signed(&self) -> crate::SignedAnchor {
        crate::SignedAnchor {
            revision: self.revision,
            chain_hash: self.chain_hash,
            timestamp_ms: self.timestamp_ms,
            signature: self.signature,
        }
    }
}

/// One worker's stake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StakeInfo {
    /// Object ID of the `Stake` (the local backend makes one up).
    pub id: Address,
    /// The node name it holds.
    pub node_name: String,
    /// Who may unstake.
    pub owner: Address,
    /// Staked MIST.
    pub amount: u64,
    /// When it was staked.
    pub staked_at_ms: u64,
    /// When unstaking was requested, if it was.
    pub unstake_requested_at_ms: Option<u64>,
}

impl StakeInfo {
    /// True when the stake admits its node (`stake::is_active`).
    #[must_use]
    pub fn is_active(&self, settings: &ClusterSettings) -> bool {
        self.unstake_requested_at_ms.is_none() && self.amount >= settings.min_stake
    }
}

/// Everything a registry knows about one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Object ID of the cluster.
    pub id: Address,
    /// Its name.
    pub name: String,
    /// Who administers it (the local backend's stand-in for holding the `AdminCap`).
    pub admin: Address,
    /// Its limits.
    pub settings: ClusterSettings,
    /// Allowed images, oldest first.
    pub images: Vec<AllowedImage>,
    /// The live enclave.
    pub live_enclave: Option<LiveEnclave>,
    /// The newest anchor.
    pub latest_anchor: Option<Anchor>,
    /// Stakes by node name.
    pub stakes: BTreeMap<String, StakeInfo>,
    /// MIST taken by slashing.
    pub slashed: u64,
}

impl ClusterState {
    /// Version of the allowed image with exactly these PCRs.
    #[must_use]
    pub fn image_version_for(&self, pcrs: &Pcrs) -> Option<u64> {
        self.images
            .iter()
            .find(|i| &i.pcrs == pcrs)
            .map(|i| i.version)
    }

    /// True when an allowed image has this version.
    #[must_use]
    pub fn is_image_allowed(&self, version: u64) -> bool {
        self.images.iter().any(|i| i.version == version)
    }
}
