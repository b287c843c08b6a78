//! Points of the sealed journal's hash chain, as rollback anchors name them.
//!
//! A point is where a journal record ends: the last store revision it carries and the chain hash
//! after it (the SHA-256 of the record, which covers the hash before it). The enclave signs the
//! newest durable point into an anchor on the registry ([`Store::chain_head`]); on boot it
//! compares the registry's latest anchor with the points it verified while restoring
//! ([`Store::opened_points`]).

use super::Store;
use super::error::Result;
use super::read::View;
use super::types::Revision;

/// One point of the journal's hash chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainPoint {
    /// The last revision of the record ending here (0 before the first record).
    pub revision: Revision,
    /// The chain hash after that record (all zero before the first record).
    pub chain_hash: [u8; 32],
}

impl Store {
    /// The newest point the index has applied, which is durable in the journal: what an anchor
    /// signs. Read from one consistent view, so the revision and the hash belong together.
    ///
    /// # Errors
    ///
    /// A RocksDB read error, or a corrupt applied-position record.
    pub fn chain_head(&self) -> Result<ChainPoint> {
        let view = View::new(&self.shared)?;
        Ok(ChainPoint {
            revision: view.current(),
            chain_hash: view.head.1,
        })
    }

    /// The points verified when this store opened, oldest first: the sealed snapshot's (or the
    /// genesis point, revision 0, when there is none), then the end of every journal record
    /// chained after it. The last one is the journal's end.
    #[must_use]
    pub fn opened_points(&self) -> &[ChainPoint] {
        &self.opened
    }
}

/// True when `journal`'s newest sealed item (its latest record, or its snapshot when it has no
/// records) opens with `keys` for `cluster_id`; false when it does not, or the journal is
/// empty. Reads the journal only: used to say *why* a store did not open, e.g. that a journal
/// was sealed by a dev-mode enclave when a production enclave's keys refuse it.
///
/// # Errors
///
/// The journal's read errors.
pub fn journal_opens_with(
    journal: &mut dyn super::Journal,
    cluster_id: [u8; 16],
    keys: &dyn super::SealingKeys,
) -> Result<bool> {
    use super::journal::record::{open_record, open_snapshot};
    use super::keys::SealPurpose;
    use super::seal::Sealer;
    let Some(sealer) = Sealer::new(cluster_id, SealPurpose::Journal, keys) else {
        return Ok(false);
    };
    if let Some(record) = journal.read_records()?.last() {
        return Ok(open_record(&sealer, record).is_ok());
    }
    Ok(match journal.read_snapshot()? {
        Some(snapshot) => open_snapshot(&sealer, &snapshot).is_ok(),
        None => false,
    })
}
