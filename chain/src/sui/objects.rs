//! BCS mirrors of the `k3s_daas` Move structs, field for field, for decoding the `contents` a
//! fullnode returns for `Cluster` and `Stake` objects.

use std::collections::BTreeMap;

use attestation::Pcr;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::types::{
    Address, AllowedImage, Anchor, ClusterSettings, ClusterState, LiveEnclave, Pcrs, StakeInfo,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct MovePcrs {
    pub(super) pcr0: Vec<u8>,
    pub(super) pcr1: Vec<u8>,
    pub(super) pcr2: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct MoveSettings {
    pub(super) min_stake: u64,
    pub(super) unstake_cooldown_ms: u64,
    pub(super) max_document_age_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct MoveAllowedImage {
    pub(super) pcrs: MovePcrs,
    pub(super) label: String,
    pub(super) version: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct MoveLiveEnclave {
    pub(super) anchor_key: Vec<u8>,
    pub(super) tls_key_digest: Vec<u8>,
    pub(super) pcrs: MovePcrs,
    pub(super) image_version: u64,
    pub(super) document_timestamp_ms: u64,
    pub(super) document_digest: Vec<u8>,
    pub(super) registered_at_ms: u64,
    pub(super) registered_by: [u8; 32],
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct MoveAnchor {
    pub(super) revision: u64,
    pub(super) chain_hash: Vec<u8>,
    pub(super) timestamp_ms: u64,
    pub(super) recorded_at_ms: u64,
    pub(super) signature: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct VecMapEntry {
    pub(super) key: String,
    pub(super) value: [u8; 32],
}

/// `k3s_daas::cluster::Cluster`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct MoveCluster {
    pub(super) id: [u8; 32],
    pub(super) name: String,
    pub(super) settings: MoveSettings,
    pub(super) images: Vec<MoveAllowedImage>,
    pub(super) live_enclave: Option<MoveLiveEnclave>,
    pub(super) latest_anchor: Option<MoveAnchor>,
    /// `VecMap<String, ID>` is `{ contents: vector<Entry { key, value }> }`.
    pub(super) stakes: Vec<VecMapEntry>,
    /// `Balance<SUI>` is `{ value: u64 }`.
    pub(super) slashed: u64,
}

/// `k3s_daas::stake::Stake`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct MoveStake {
    pub(super) id: [u8; 32],
    pub(super) cluster_id: [u8; 32],
    pub(super) node_name: String,
    pub(super) owner: [u8; 32],
    pub(super) balance: u64,
    pub(super) staked_at_ms: u64,
    pub(super) unstake_requested_at_ms: Option<u64>,
}

fn bad(what: &str) -> Error {
    Error::Rpc {
        call: "decode object",
        reason: format!("unexpected {what} in Move object"),
    }
}

fn pcr(bytes: &[u8]) -> Result<Pcr> {
    let array: [u8; Pcr::LEN] = bytes.try_into().map_err(|_| bad("PCR length"))?;
    Ok(Pcr::new(array))
}

fn pcrs(p: &MovePcrs) -> Result<Pcrs> {
    Ok(Pcrs {
        pcr0: pcr(&p.pcr0)?,
        pcr1: pcr(&p.pcr1)?,
        pcr2: pcr(&p.pcr2)?,
    })
}

fn array32(bytes: &[u8], what: &str) -> Result<[u8; 32]> {
    bytes.try_into().map_err(|_| bad(what))
}

/// Decodes a `Cluster`'s BCS contents.
pub(super) fn decode_cluster(contents: &[u8]) -> Result<MoveCluster> {
    bcs::from_bytes(contents).map_err(|e| Error::Rpc {
        call: "decode Cluster",
        reason: e.to_string(),
    })
}

/// Decodes a `Stake`'s BCS contents.
pub(super) fn decode_stake(contents: &[u8]) -> Result<MoveStake> {
    bcs::from_bytes(contents).map_err(|e| Error::Rpc {
        call: "decode Stake",
        reason: e.to_string(),
    })
}

impl MoveStake {
    pub(super) fn info(&self) -> StakeInfo {
        StakeInfo {
            id: Address(self.id),
            node_name: self.node_name.clone(),
            owner: Address(self.owner),
            amount: self.balance,
            staked_at_ms: self.staked_at_ms,
            unstake_requested_at_ms: self.unstake_requested_at_ms,
        }
    }
}

impl MoveCluster {
    /// The cluster as [`ClusterState`]; `admin` is who holds the `AdminCap` if known (else
    /// zero), and `stakes` are the decoded `Stake` objects.
    pub(super) fn state(&self, admin: Address, stakes: &[MoveStake]) -> Result<ClusterState> {
        let images = self
            .images
            .iter()
            .map(|i| {
                Ok(AllowedImage {
                    pcrs: pcrs(&i.pcrs)?,
                    label: i.label.clone(),
                    version: i.version,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let live_enclave = match &self.live_enclave {
            None => None,
            Some(l) => Some(LiveEnclave {
                anchor_key: array32(&l.anchor_key, "anchor key length")?,
                tls_key_digest: array32(&l.tls_key_digest, "TLS key digest length")?,
                pcrs: pcrs(&l.pcrs)?,
                image_version: l.image_version,
                document_timestamp_ms: l.document_timestamp_ms,
                document_digest: array32(&l.document_digest, "digest length")?,
                registered_at_ms: l.registered_at_ms,
                registered_by: Address(l.registered_by),
            }),
        };
        let latest_anchor = match &self.latest_anchor {
            None => None,
            Some(a) => Some(Anchor {
                revision: a.revision,
                chain_hash: array32(&a.chain_hash, "chain hash length")?,
                timestamp_ms: a.timestamp_ms,
                recorded_at_ms: a.recorded_at_ms,
                signature: a
                    .signature
                    .as_slice()
                    .try_into()
                    .map_err(|_| bad("anchor signature length"))?,
            }),
        };
        let stakes: BTreeMap<String, StakeInfo> = stakes
            .iter()
            .map(|s| (s.node_name.clone(), s.info()))
            .collect();
        Ok(ClusterState {
            id: Address(self.id),
            name: self.name.clone(),
            admin,
            settings: ClusterSettings {
                min_stake: self.settings.min_stake,
                unstake_cooldown_ms: self.settings.unstake_cooldown_ms,
                max_document_age_ms: self.settings.max_document_age_ms,
            },
            images,
            live_enclave,
            latest_anchor,
            stakes,
            slashed: self.slashed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The BCS of a `Cluster` written out by hand from the Move layout, decoded.
    #[test]
    fn cluster_layout_decodes() {
        let mut b = Vec::new();
        b.extend([0xc1; 32]); // id
        b.push(4);
        b.extend(b"demo"); // name
        for v in [10u64, 20, 30] {
            b.extend(v.to_le_bytes()); // settings
        }
        b.push(1); // one image
        for byte in [1u8, 2, 3] {
            b.push(48);
            b.extend([byte; 48]);
        }
        b.push(2);
        b.extend(b"v1");
        b.extend(7u64.to_le_bytes());
        b.push(0); // live_enclave: none
        b.push(1); // latest_anchor: some
        b.extend(42u64.to_le_bytes());
        b.push(32);
        b.extend([0xab; 32]);
        b.extend(5u64.to_le_bytes());
        b.extend(6u64.to_le_bytes());
        b.push(64);
        b.extend([0x5e; 64]); // signature
        b.push(1); // one stake entry
        b.push(6);
        b.extend(b"node-a");
        b.extend([0x5a; 32]);
        b.extend(99u64.to_le_bytes()); // slashed
        let cluster = decode_cluster(&b).unwrap();
        let state = cluster.state(Address::ZERO, &[]).unwrap();
        assert_eq!(state.id, Address([0xc1; 32]));
        assert_eq!(state.name, "demo");
        assert_eq!(state.settings.max_document_age_ms, 30);
        assert_eq!(state.images[0].version, 7);
        assert_eq!(state.images[0].pcrs.pcr2, Pcr::new([3; 48]));
        assert_eq!(state.latest_anchor.unwrap().revision, 42);
        assert_eq!(state.latest_anchor.unwrap().signature, [0x5e; 64]);
        assert_eq!(cluster.stakes[0].key, "node-a");
        assert_eq!(state.slashed, 99);
        assert!(decode_cluster(&b[..b.len() - 1]).is_err());
    }
}
