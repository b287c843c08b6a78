//! Rollback anchors: the enclave vouches on the registry for how far its sealed journal has
//! come, and refuses on boot a journal that the registry says it has seen further.
//!
//! An anchor is (cluster, revision, journal chain hash, time) signed with the cluster's anchor
//! key, an Ed25519 key derived from the root secret ([`attestation::RootSecret::anchor_signing_key`])
//! whose public half the enclave's attestation documents carry in `user_data`. [`AnchorRecorder`]
//! records one every `--anchor-interval` while the store moves, and a last one on clean
//! shutdown. On boot, [`check_journal`] compares the registry's latest anchor with the points of
//! the journal the store verified while opening ([`crate::store::Store::opened_points`]): the
//! anchor must verify under this cluster's anchor key (not forged, not another cluster's), the
//! journal must reach its revision, and its chain hash there must be the anchored one. A host
//! that serves an older journal, a different history, or an anchor it made up is refused with a
//! message naming the anchor and the journal's end.
//!
//! [`latest_anchor`] reads the registry at boot and does not give up: with the registry
//! unreachable the enclave does not serve, unless the operator chose a degraded start
//! ([`Unreachable::StartDegraded`]), which is logged loudly.

mod recorder;
#[cfg(test)]
mod tests;

pub use recorder::{AnchorError, AnchorRecorder};

use std::fmt;
use std::time::Duration;

use chain::{Address, Anchor, AnyRegistry, Registry};

use crate::store::ChainPoint;

/// Why the journal does not match the registry's latest anchor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RollbackError {
    /// The anchor's signature does not verify under this cluster's anchor key for this cluster:
    /// it was forged, or made for another cluster.
    #[error(
        "the registry's latest anchor ({anchor}) does not verify under this cluster's anchor key \
         {anchor_key} for cluster {cluster}: it is forged or belongs to another cluster; refusing to \
         start on a journal whose freshness cannot be established"
    )]
    ForgedAnchor {
        /// The anchor as read.
        anchor: AnchorSummary,
        /// This cluster's anchor key (hex).
        anchor_key: String,
        /// The registry cluster the anchor was checked for.
        cluster: Address,
    },
    /// The journal ends before the anchored revision: it was rolled back.
    #[error(
        "the journal ends at revision {journal_revision} (chain hash {journal_hash}), before the \
         registry's latest anchor ({anchor}): the host served an older journal (rolled back); \
         refusing to start"
    )]
    JournalBehindAnchor {
        /// The anchor.
        anchor: AnchorSummary,
        /// Where the journal ends.
        journal_revision: u64,
        /// The chain hash at the journal's end (hex).
        journal_hash: String,
    },
    /// The journal reaches the anchored revision through a different history.
    #[error(
        "the journal's chain hash at revision {revision} is {journal_hash}, but the registry's \
         latest anchor ({anchor}) says {anchor_hash}: the journal is not the history the enclave \
         anchored (journal ends at revision {journal_revision}); refusing to start"
    )]
    ChainDiffers {
        /// The anchor.
        anchor: AnchorSummary,
        /// The anchored revision.
        revision: u64,
        /// The anchored chain hash (hex).
        anchor_hash: String,
        /// The journal's chain hash at that revision (hex), or a description if no record of the
        /// journal ends there.
        journal_hash: String,
        /// Where the journal ends.
        journal_revision: u64,
    },
}

/// An anchor as error messages name it: revision, chain hash and when it was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorSummary {
    /// Anchored revision.
    pub revision: u64,
    /// Anchored chain hash (hex).
    pub chain_hash: String,
    /// When the enclave signed it (ms since the epoch).
    pub timestamp_ms: u64,
}

impl From<&Anchor> for AnchorSummary {
    fn from(a: &Anchor) -> Self {
        Self {
            revision: a.revision,
            chain_hash: hex::encode(a.chain_hash),
            timestamp_ms: a.timestamp_ms,
        }
    }
}

impl fmt::Display for AnchorSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = std::time::UNIX_EPOCH + Duration::from_millis(self.timestamp_ms);
        write!(
            f,
            "revision {}, chain hash {}, signed {}",
            self.revision,
            self.chain_hash,
            humantime::format_rfc3339_seconds(at)
        )
    }
}

/// What [`check_journal`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalVerdict {
    /// The registry holds no anchor yet (a new cluster).
    NoAnchor,
    /// The journal passes the anchor at the anchored chain hash.
    Matches {
        /// The anchored revision.
        anchored: u64,
    },
    /// The journal is past the anchor, whose revision the sealed snapshot covers: the records
    /// it was chained through are pruned, so the hash there cannot be compared.
    PastAnchorInSnapshot {
        /// The anchored revision.
        anchored: u64,
        /// The snapshot's revision.
        snapshot: u64,
    },
}

/// Checks the journal the store opened (`points`, oldest first; the last is its end) against
/// the registry's latest `anchor` for `cluster`, whose signature must verify under `anchor_key`.
///
/// # Errors
///
/// [`RollbackError`] naming the anchor and the journal's end.
pub fn check_journal(
    anchor: Option<&Anchor>,
    anchor_key: &[u8; 32],
    cluster: Address,
    points: &[ChainPoint],
) -> Result<JournalVerdict, RollbackError> {
    let Some(anchor) = anchor else {
        return Ok(JournalVerdict::NoAnchor);
    };
    let summary = AnchorSummary::from(anchor);
    if !chain::verify_anchor_signature(anchor_key, cluster, &anchor.signed()) {
        return Err(RollbackError::ForgedAnchor {
            anchor: summary,
            anchor_key: hex::encode(anchor_key),
            cluster,
        });
    }
    let genesis = ChainPoint {
        revision: 0,
        chain_hash: [0; 32],
    };
    let end = points.last().copied().unwrap_or(genesis);
    let first = points.first().copied().unwrap_or(genesis);
    if end.revision < anchor.revision {
        return Err(RollbackError::JournalBehindAnchor {
            anchor: summary,
            journal_revision: end.revision,
            journal_hash: hex::encode(end.chain_hash),
        });
    }
    if anchor.revision < first.revision {
        return Ok(JournalVerdict::PastAnchorInSnapshot {
            anchored: anchor.revision,
            snapshot: first.revision,
        });
    }
    match points.iter().find(|p| p.revision == anchor.revision) {
        Some(point) if point.chain_hash == anchor.chain_hash => Ok(JournalVerdict::Matches {
            anchored: anchor.revision,
        }),
        found => Err(RollbackError::ChainDiffers {
            revision: anchor.revision,
            anchor_hash: summary.chain_hash.clone(),
            journal_hash: found.map_or_else(
                || "absent (no journal record ends there)".to_owned(),
                |p| hex::encode(p.chain_hash),
            ),
            journal_revision: end.revision,
            anchor: summary,
        }),
    }
}

/// What to do while the registry cannot be read at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// Keep trying; serve nothing until the latest anchor is read.
    Wait,
    /// Start without the check (logged as a degraded start); anchoring keeps being tried.
    StartDegraded,
}

/// The registry cluster and its latest anchor, as read at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryView {
    /// The cluster's registry ID (what anchors are signed for).
    pub cluster: Address,
    /// Its latest anchor.
    pub latest: Option<Anchor>,
}

/// Reads the registry's cluster and latest anchor. While it cannot be read: with
/// [`Unreachable::Wait`], retries (backing off to `max_delay`) and logs each failure, forever;
/// with [`Unreachable::StartDegraded`], returns `None` after the first failure, logged as a
/// degraded start.
pub async fn latest_anchor(
    registry: &AnyRegistry,
    unreachable: Unreachable,
    max_delay: Duration,
) -> Option<RegistryView> {
    let mut delay = Duration::from_millis(200);
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        match registry.cluster().await {
            Ok(state) => {
                return Some(RegistryView {
                    cluster: state.id,
                    latest: state.latest_anchor,
                });
            }
            Err(e) if unreachable == Unreachable::StartDegraded => {
                tracing::warn!(
                    error = %one_line(&e),
                    "DEGRADED START: the registry cannot be read, so the journal is NOT checked against \
                     the latest rollback anchor (--degraded-start-without-registry); serving anyway"
                );
                return None;
            }
            Err(e) => {
                tracing::warn!(
                    attempt,
                    error = %one_line(&e),
                    "the registry cannot be read: not serving until its latest anchor is read \
                     (--degraded-start-without-registry starts without it)"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(max_delay);
            }
        }
    }
}

/// An error and its causes on one line, for logs and messages.
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
