//! The Move package's rules as pure functions on a [`ClusterState`]: the local backend applies
//! them under its file lock; the Sui backend relies on the chain but the same functions let it
//! fail early with the same error. Each function names the Move entry point it mirrors.

use attestation::VerifiedDocument;

use crate::anchor::{SignedAnchor, verify_anchor_signature};
use crate::digest::document_digest;
use crate::error::{Error, Result};
use crate::types::{
    Address, AllowedImage, Anchor, ClusterState, LiveEnclave, MAX_CLOCK_SKEW_MS, MAX_NODE_NAME_LEN,
    Pcrs, StakeInfo,
};

/// `cluster::assert_admin`.
pub(crate) fn require_admin(state: &ClusterState, caller: Address) -> Result<()> {
    if state.admin == caller {
        Ok(())
    } else {
        Err(Error::NotAdmin {
            caller: caller.to_string(),
        })
    }
}

/// `cluster::allow_image`.
pub(crate) fn allow_image(
    state: &mut ClusterState,
    caller: Address,
    image: AllowedImage,
) -> Result<()> {
    require_admin(state, caller)?;
    if let Some(index) = image.pcrs.first_zero() {
        return Err(Error::DebugPcrs { index });
    }
    if state.is_image_allowed(image.version) {
        return Err(Error::VersionExists {
            version: image.version,
        });
    }
    if let Some(version) = state.image_version_for(&image.pcrs) {
        return Err(Error::ImageExists { version });
    }
    state.images.push(image);
    Ok(())
}

/// `cluster::retire_image`.
pub(crate) fn retire_image(state: &mut ClusterState, caller: Address, version: u64) -> Result<()> {
    require_admin(state, caller)?;
    let before = state.images.len();
    state.images.retain(|i| i.version != version);
    if state.images.len() == before {
        return Err(Error::ImageNotFound { version });
    }
    Ok(())
}

/// `enclave::register_enclave` on a document the verifier already accepted at `now_ms`.
pub(crate) fn register_enclave(
    state: &mut ClusterState,
    document: &VerifiedDocument,
    now_ms: u64,
    caller: Address,
) -> Result<LiveEnclave> {
    let pcr = |index: u8| {
        document
            .pcrs()
            .get(index)
            .copied()
            .ok_or(Error::MissingPcr { index })
    };
    let pcrs = Pcrs {
        pcr0: pcr(0)?,
        pcr1: pcr(1)?,
        pcr2: pcr(2)?,
    };
    if let Some(index) = pcrs.first_zero() {
        return Err(Error::DebugEnclave { index });
    }
    let image_version = state
        .image_version_for(&pcrs)
        .ok_or_else(|| Error::PcrsNotAllowed {
            pcr0: hex::encode(pcrs.pcr0.as_bytes()),
        })?;
    let timestamp_ms = document.timestamp_ms();
    if timestamp_ms > now_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
        return Err(Error::DocumentFromFuture {
            ahead_ms: timestamp_ms - now_ms,
        });
    }
    let age_ms = now_ms.saturating_sub(timestamp_ms);
    if age_ms > state.settings.max_document_age_ms {
        return Err(Error::DocumentTooOld {
            age_ms,
            max_ms: state.settings.max_document_age_ms,
        });
    }
    if let Some(live) = &state.live_enclave
        && timestamp_ms <= live.document_timestamp_ms
    {
        return Err(Error::NotNewer {
            timestamp_ms,
            live_ms: live.document_timestamp_ms,
        });
    }
    // The document binds two keys: `public_key` the TLS key (as a SHA-256 digest of its
    // SubjectPublicKeyInfo, checked by clients), `user_data` the Ed25519 key signing anchors.
    let digest = document.public_key().ok_or(Error::MissingPublicKey)?;
    let tls_key_digest: [u8; 32] = digest
        .try_into()
        .map_err(|_| Error::BadPublicKey { len: digest.len() })?;
    let key = document.user_data().ok_or(Error::MissingAnchorKey)?;
    let anchor_key: [u8; 32] = key
        .try_into()
        .map_err(|_| Error::BadAnchorKey { len: key.len() })?;
    let live = LiveEnclave {
        anchor_key,
        tls_key_digest,
        pcrs,
        image_version,
        document_timestamp_ms: timestamp_ms,
        document_digest: document_digest(document.document()),
        registered_at_ms: now_ms,
        registered_by: caller,
    };
    state.live_enclave = Some(live.clone());
    Ok(live)
}

/// `stake::stake`.
pub(crate) fn stake(
    state: &mut ClusterState,
    node_name: &str,
    amount: u64,
    owner: Address,
    id: Address,
    now_ms: u64,
) -> Result<StakeInfo> {
    if node_name.is_empty() || node_name.len() > MAX_NODE_NAME_LEN {
        return Err(Error::BadNodeName {
            node: node_name.to_owned(),
        });
    }
    if state.stakes.contains_key(node_name) {
        return Err(Error::NodeNameTaken {
            node: node_name.to_owned(),
        });
    }
    if amount < state.settings.min_stake {
        return Err(Error::BelowMinimum {
            amount,
            min: state.settings.min_stake,
        });
    }
    let info = StakeInfo {
        id,
        node_name: node_name.to_owned(),
        owner,
        amount,
        staked_at_ms: now_ms,
        unstake_requested_at_ms: None,
    };
    state.stakes.insert(node_name.to_owned(), info.clone());
    Ok(info)
}

fn stake_mut<'a>(state: &'a mut ClusterState, node_name: &str) -> Result<&'a mut StakeInfo> {
    state
        .stakes
        .get_mut(node_name)
        .ok_or_else(|| Error::NoStake {
            node: node_name.to_owned(),
        })
}

fn require_owner(stake: &StakeInfo, caller: Address) -> Result<()> {
    if stake.owner == caller {
        Ok(())
    } else {
        Err(Error::NotOwner {
            node: stake.node_name.clone(),
            caller: caller.to_string(),
        })
    }
}

/// `stake::request_unstake`; returns when the stake can be withdrawn.
pub(crate) fn request_unstake(
    state: &mut ClusterState,
    node_name: &str,
    caller: Address,
    now_ms: u64,
) -> Result<u64> {
    let cooldown = state.settings.unstake_cooldown_ms;
    let stake = stake_mut(state, node_name)?;
    require_owner(stake, caller)?;
    if stake.unstake_requested_at_ms.is_some() {
        return Err(Error::AlreadyUnstaking {
            node: node_name.to_owned(),
        });
    }
    stake.unstake_requested_at_ms = Some(now_ms);
    Ok(now_ms.saturating_add(cooldown))
}

/// `stake::withdraw`; returns the withdrawn MIST.
pub(crate) fn withdraw(
    state: &mut ClusterState,
    node_name: &str,
    caller: Address,
    now_ms: u64,
) -> Result<u64> {
    let cooldown = state.settings.unstake_cooldown_ms;
    let stake = stake_mut(state, node_name)?;
    require_owner(stake, caller)?;
    let requested = stake
        .unstake_requested_at_ms
        .ok_or_else(|| Error::NotUnstaking {
            node: node_name.to_owned(),
        })?;
    let available_at_ms = requested.saturating_add(cooldown);
    if now_ms < available_at_ms {
        return Err(Error::CooldownNotOver {
            node: node_name.to_owned(),
            available_at_ms,
            now_ms,
        });
    }
    let amount = stake.amount;
    state.stakes.remove(node_name);
    Ok(amount)
}

/// `stake::slash`.
pub(crate) fn slash(
    state: &mut ClusterState,
    caller: Address,
    node_name: &str,
    amount: u64,
) -> Result<()> {
    require_admin(state, caller)?;
    let stake = stake_mut(state, node_name)?;
    if amount == 0 || amount > stake.amount {
        return Err(Error::BadSlashAmount {
            amount,
            staked: stake.amount,
        });
    }
    stake.amount -= amount;
    state.slashed = state.slashed.saturating_add(amount);
    Ok(())
}

/// `anchor::record_anchor`.
pub(crate) fn record_anchor(
    state: &mut ClusterState,
    anchor: &SignedAnchor,
    now_ms: u64,
) -> Result<Anchor> {
    let live = state.live_enclave.as_ref().ok_or(Error::NoLiveEnclave)?;
    if !state.is_image_allowed(live.image_version) {
        return Err(Error::ImageRetired {
            version: live.image_version,
        });
    }
    if !verify_anchor_signature(&live.anchor_key, state.id, anchor) {
        return Err(Error::BadSignature);
    }
    if let Some(latest) = &state.latest_anchor
        && anchor.revision <= latest.revision
    {
        return Err(Error::NotMonotonic {
            revision: anchor.revision,
            latest: latest.revision,
        });
    }
    let recorded = Anchor {
        revision: anchor.revision,
        chain_hash: anchor.chain_hash,
        timestamp_ms: anchor.timestamp_ms,
        recorded_at_ms: now_ms,
        signature: anchor.signature,
    };
    state.latest_anchor = Some(recorded);
    Ok(recorded)
}
