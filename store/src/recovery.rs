//! Opening a store: check the index against the journal, restore what the
//! index lacks (from the sealed snapshot and the journal records after it),
//! and refuse a journal that is tampered, reordered, incomplete, from
//! another cluster, or older than the index.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, DB, DBRecoveryMode, IteratorMode, Options,
    WriteBatch,
};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::Store;
use super::commit::Request;
use super::compact::spawn_compactor;
use super::encoding::be_u64;
use super::error::{Result, StoreError};
use super::journal::record::{
    ChainHash, GENESIS, JournalOp, RecordError, chain_hash, open_record, open_snapshot,
    peek_header, seal_snapshot,
};
use super::journal::{Journal, JournalError};
use super::keys::{SealPurpose, SealingKeys};
use super::options::StoreOptions;

use super::pipeline;
use super::position::ChainPoint;
use super::read::{decode_applied, scan_latest};
use super::resident::Resident;
use super::seal::Sealer;
use super::shared::{
    CF_HISTORY, CF_LATEST, CF_LOG, CF_META, ChainPosition, META_APPLIED, META_CLUSTER,
    META_COMPACTED, Shared,
};
use super::types::Revision;
use super::workers::{Signal, Workers};

/// The memory all memtables may use together before RocksDB flushes them.
const MEMTABLE_BUDGET: usize = 32 << 20;

fn db_options() -> (Options, Vec<ColumnFamilyDescriptor>) {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    // The journal is the durable copy, so the index's WAL is not fsynced;
    // after a crash RocksDB recovers a consistent prefix and the journal
    // replays the rest. Atomic flush keeps the column families in step.
    opts.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
    opts.set_atomic_flush(true);
    opts.increase_parallelism(2);
    // Memtables across all column families together: RocksDB's default (64 MiB per column
    // family, two of them before a stall) let the index hold up to half a GiB of memtables,
    // which the enclave's memory then carries; the resident copy already answers reads.
    opts.set_db_write_buffer_size(MEMTABLE_BUDGET);
    let cf = |name: &str, bloom: bool| {
        let mut o = Options::default();
        o.set_write_buffer_size(MEMTABLE_BUDGET / 4);
        if bloom {
            let mut b = BlockBasedOptions::default();
            b.set_bloom_filter(10.0, false);
            o.set_block_based_table_factory(&b);
        }
        ColumnFamilyDescriptor::new(name, o)
    };
    let cfs = vec![
        cf(CF_HISTORY, false),
        cf(CF_LATEST, true),
        cf(CF_LOG, false),
        cf(CF_META, false),
    ];
    (opts, cfs)
}

fn hex16(id: &[u8]) -> String {
    hex::encode(id)
}

struct Position {
    revision: Revision,
    seq: u64,
    hash: ChainHash,
}

impl Store {
    /// Opens the store at `opts.path`, restoring the index from `journal`
    /// as needed. Fails if the journal does not verify (see [`RecordError`]).
    pub fn open(
        opts: StoreOptions,
        keys: &dyn SealingKeys,
        mut journal: Box<dyn Journal>,
    ) -> Result<Store> {
        opts.validate().map_err(StoreError::InvalidOptions)?;
        let sealer = Sealer::new(opts.cluster_id, SealPurpose::Store, keys).ok_or(
            StoreError::InvalidOptions("no store key for the current key epoch"),
        )?;
        let journal_sealer = Sealer::new(opts.cluster_id, SealPurpose::Journal, keys).ok_or(
            StoreError::InvalidOptions("no journal key for the current key epoch"),
        )?;
        let (db_opts, cfs) = db_options();
        let db = DB::open_cf_descriptors(&db_opts, &opts.path, cfs)?;
        let (events, _) = broadcast::channel(opts.watch_buffer);
        let shared = Arc::new(Shared {
            db,
            sealer,
            journal_sealer,
            opts: opts.clone(),
            revision: AtomicU64::new(0),
            compacted: AtomicU64::new(0),
            events,
            chain: Mutex::new(ChainPosition {
                seq: 0,
                head: GENESIS,
            }),
            fatal: Mutex::new(None),
            resident: Resident::new(opts.resident_max_bytes, opts.resident_prefix.clone()),
            closed: Default::default(),
        });
        let meta = shared.cf(CF_META)?;
        match shared.db.get_cf(meta, META_CLUSTER)? {
            Some(found) if found.as_slice() != opts.cluster_id => {
                return Err(StoreError::WrongCluster {
                    expected: hex16(&opts.cluster_id),
                    found: hex16(&found),
                });
            }
            Some(_) => {}
            None => shared.db.put_cf(meta, META_CLUSTER, opts.cluster_id)?,
        }
        let mut pos = match shared.db.get_cf(meta, META_APPLIED)? {
            Some(v) => {
                let (revision, (seq, hash)) = decode_applied(&v)?;
                Position {
                    revision,
                    seq,
                    hash,
                }
            }
            None => Position {
                revision: 0,
                seq: 0,
                hash: GENESIS,
            },
        };
        let mut compacted = match shared.db.get_cf(meta, META_COMPACTED)? {
            Some(v) if v.len() == 8 => be_u64(&v),
            Some(_) => return Err(StoreError::Corrupt("compacted record".into())),
            None => 0,
        };

        // The base the journal's records chain from: the snapshot, or genesis.
        let mut base = Position {
            revision: 0,
            seq: 0,
            hash: GENESIS,
        };
        if let Some(snapshot) = journal.read_snapshot()? {
            let (header, entries) =
                open_snapshot(&shared.journal_sealer, &snapshot).map_err(JournalError::Snapshot)?;
            base = Position {
                revision: header.last_revision,
                seq: header.seq,
                hash: header.prev_hash,
            };
            if header.seq > pos.seq {
                tracing::info!(
                    seq = header.seq,
                    revision = base.revision,
                    "rebuilding the index from the sealed snapshot"
                );
                clear_index(&shared)?;
                // The snapshot's entries become index entries exactly as
                // committed writes do (latest value, one history version).
                let ops: Vec<JournalOp> = entries
                    .into_iter()
                    .map(|e| JournalOp {
                        revision: e.mod_revision,
                        key: e.key,
                        put: Some((e.value, e.create_revision, e.version)),
                    })
                    .collect();
                let mut batch = WriteBatch::default();
                shared.stage_ops(&mut batch, &ops)?;
                shared.stage_applied(&mut batch, base.revision, base.seq, &base.hash)?;
                batch.put_cf(meta, META_COMPACTED, base.revision.to_be_bytes());
                shared.db.write(batch)?;
                pos = Position {
                    revision: base.revision,
                    seq: base.seq,
                    hash: base.hash,
                };
                compacted = base.revision;
            } else if header.seq == pos.seq && header.prev_hash != pos.hash {
                return Err(
                    JournalError::Snapshot(RecordError::BrokenChain { seq: header.seq }).into(),
                );
            }
        }

        let opened = replay(&shared, &mut journal, &base, &mut pos)?;
        shared
            .revision
            .store(pos.revision, std::sync::atomic::Ordering::Release);
        shared
            .compacted
            .store(compacted, std::sync::atomic::Ordering::Release);

        *shared.chain.lock().unwrap_or_else(|p| p.into_inner()) = ChainPosition {
            seq: pos.seq,
            head: pos.hash,
        };
        if opts.resident_max_bytes > 0 {
            // A value that does not open fails its own reads, as without the copy; it does
            // not keep the store from opening.
            match scan_latest(&shared) {
                Ok((kvs, revision, _)) => shared.resident.fill(kvs, revision),
                Err(e) => tracing::error!(
                    error = %e,
                    "reading the current state into memory failed; reads go to RocksDB"
                ),
            }
        }
        let (commits, rx) = mpsc::channel(opts.queue_depth);
        let (evaluator, durability) = pipeline::start(
            shared.clone(),
            journal,
            pos.revision + 1,
            ChainPosition {
                seq: pos.seq,
                head: pos.hash,
            },
            rx,
        )
        .map_err(|e| StoreError::Closed(format!("cannot start the commit threads: {e}")))?;
        let mut workers = Workers::new(commits, evaluator, durability);
        if let Some(c) = opts.compaction {
            let stop = Signal::default();
            let thread = spawn_compactor(Arc::downgrade(&shared), c, stop.clone())
                .map_err(|e| StoreError::Closed(format!("cannot start the compactor: {e}")))?;
            workers = workers.with_compactor(stop, thread);
        }
        Ok(Store {
            shared,
            workers: Arc::new(workers),
            opened: opened.into(),
        })
    }

    /// Writes a sealed snapshot of the current state to the journal, which
    /// then drops the records it covers. Returns the snapshot's revision.
    pub async fn write_snapshot(&self) -> Result<Revision> {
        let store = self.clone();
        let built = tokio::task::spawn_blocking(move || {
            let (kvs, revision, (seq, hash)) = store.scan_latest()?;
            let entries: Vec<_> = kvs
                .into_iter()
                .map(|kv| super::journal::record::SnapshotEntry {
                    key: kv.key,
                    value: kv.value,
                    create_revision: kv.create_revision,
                    mod_revision: kv.mod_revision,
                    version: kv.version,
                })
                .collect();
            Ok::<_, StoreError>((
                seal_snapshot(&store.shared.journal_sealer, seq, revision, hash, &entries)?,
                seq,
                revision,
            ))
        })
        .await
        .map_err(|e| StoreError::Closed(format!("snapshot task failed: {e}")))?;
        let (sealed, seq, revision) = built?;
        let (reply, rx) = oneshot::channel();
        let commits = self
            .workers
            .commits()
            .ok_or_else(|| self.shared.closed_error())?;
        commits
            .send(Request::Snapshot {
                sealed,
                covers_through_seq: seq,
                reply,
            })
            .await
            .map_err(|_| self.shared.closed_error())?;
        rx.await.map_err(|_| self.shared.closed_error())??;
        Ok(revision)
    }
}

fn clear_index(shared: &Shared) -> Result<()> {
    for name in [CF_HISTORY, CF_LATEST, CF_LOG] {
        let cf = shared.cf(name)?;
        let mut batch = WriteBatch::default();
        for item in shared.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, _) = item?;
            batch.delete_cf(cf, k);
        }
        shared.db.write(batch)?;
    }
    Ok(())
}

/// Verifies the chain of every record after `base` and applies the records
/// the index has not applied yet. Returns the points verified: `base`, then
/// the end of each record chained to it.
fn replay(
    shared: &Shared,
    journal: &mut Box<dyn Journal>,
    base: &Position,
    pos: &mut Position,
) -> Result<Vec<ChainPoint>> {
    let records = journal.read_records()?;
    let mut points = vec![ChainPoint {
        revision: base.revision,
        chain_hash: base.hash,
    }];
    let (mut seq, mut hash, mut next_rev) = (base.seq, base.hash, base.revision + 1);
    let mut leading = true;
    let mut applied = 0usize;
    let mut last_chained = None;
    for (i, record) in records.iter().enumerate() {
        let refuse = |reason| {
            StoreError::Journal(JournalError::Record {
                position: i as u64,
                reason,
            })
        };
        let header = peek_header(record).map_err(refuse)?;
        // Records the snapshot covers may precede the chain (a crash between
        // writing the snapshot and pruning them); they are ignored.
        if leading && header.seq <= base.seq && base.seq > 0 {
            continue;
        }
        leading = false;
        if header.seq != seq + 1 {
            return Err(refuse(RecordError::OutOfOrder {
                expected: seq + 1,
                found: header.seq,
            }));
        }
        if header.prev_hash != hash {
            return Err(refuse(RecordError::BrokenChain { seq: header.seq }));
        }
        if header.first_revision != next_rev || header.last_revision < header.first_revision {
            return Err(refuse(RecordError::RevisionGap {
                seq: header.seq,
                expected: next_rev,
                found: header.first_revision,
            }));
        }
        let this_hash = chain_hash(record);
        if header.seq <= pos.seq {
            // Already in the index; the chain must reach the index's position exactly.
            if header.seq == pos.seq && this_hash != pos.hash {
                return Err(refuse(RecordError::BrokenChain { seq: header.seq }));
            }
        } else {
            let (_, ops) = open_record(&shared.journal_sealer, record).map_err(refuse)?;
            let mut batch = WriteBatch::default();
            shared.stage_ops(&mut batch, &ops)?;
            shared.stage_applied(&mut batch, header.last_revision, header.seq, &this_hash)?;
            shared.db.write(batch)?;
            *pos = Position {
                revision: header.last_revision,
                seq: header.seq,
                hash: this_hash,
            };
            applied += 1;
        }
        seq = header.seq;
        hash = this_hash;
        next_rev = header.last_revision + 1;
        last_chained = Some((i, record));
        points.push(ChainPoint {
            revision: header.last_revision,
            chain_hash: this_hash,
        });
    }
    if seq < pos.seq {
        return Err(StoreError::JournalBehindIndex {
            journal: next_rev - 1,
            index: pos.revision,
        });
    }
    // With an up-to-date index nothing above was decrypted, so the keys were
    // never tried: open the newest record, so that a wrong root secret is
    // refused here instead of sealing new writes under a key the rest of the
    // journal does not open.
    if applied == 0
        && let Some((i, record)) = last_chained
    {
        open_record(&shared.journal_sealer, record).map_err(|reason| {
            StoreError::Journal(JournalError::Record {
                position: i as u64,
                reason,
            })
        })?;
    }
    if applied > 0 {
        tracing::info!(
            records = applied,
            revision = pos.revision,
            "restored from the journal"
        );
    }
    Ok(points)
}
