//! The commit pipeline: two threads so that the journal's fsync of one group
//! overlaps the evaluation of the next.
//!
//! The *evaluator* (thread `store-commit`) is the only writer of new
//! revisions. It takes every write queued since it last looked as one group,
//! evaluates each condition against the index plus an overlay of the groups
//! it has handed on but that are not applied yet, seals the group into one
//! hash-chained journal record and the index batch, and hands the group to
//! the *durability* thread (`store-journal`). That thread appends the record
//! (durable when `append` returns), applies the batch to RocksDB, publishes
//! the revision and the events, and only then acknowledges the writers, so
//! nobody ever sees a write that is not durable and visible.
//!
//! A group is evaluated on top of groups that may still fail. Each group
//! therefore names the chain position it was built on; the durability thread
//! refuses a group whose base is not what it last made durable, and the
//! evaluator, told of a failure, waits for the pipeline to drain and restarts
//! from what is durable.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc as std_mpsc;

use rocksdb::WriteBatch;
use tokio::sync::{mpsc, oneshot};

use super::commit::{Condition, Request, WriteOp};
use super::error::{Result, StoreError};
use super::journal::Journal;
use super::journal::record::{JournalOp, chain_hash, seal_record};
use super::shared::{ChainPosition, Shared};
use super::types::{DerivedSlot, Event, EventKind, KeyValue, Revision, TxnOutcome};

/// Groups handed to the durability thread but not yet finished: enough to
/// keep the journal busy while the evaluator prepares the next one.
const PIPELINE_DEPTH: usize = 4;

/// Most queued groups folded into one journal append.
const MAX_FOLD: usize = 8;

type Reply = oneshot::Sender<Result<TxnOutcome>>;

/// A group evaluated and sealed, ready to be made durable.
struct PreparedGroup {
    /// The chain position this group was evaluated on.
    base: ChainPosition,
    /// The journal record and the index batch; `None` when every write in
    /// the group failed its condition (nothing to append).
    commit: Option<SealedCommit>,
    replies: Vec<(Reply, Result<TxnOutcome>)>,
}

struct SealedCommit {
    record: Vec<u8>,
    /// Where the chain stands once `record` is durable.
    position: ChainPosition,
    batch: WriteBatch,
    first: Revision,
    last: Revision,
    events: Vec<Event>,
}

/// Work for the durability thread, in commit order.
enum Stage {
    Group(PreparedGroup),
    Snapshot {
        sealed: Vec<u8>,
        covers_through_seq: u64,
        reply: oneshot::Sender<Result<()>>,
    },
}

/// What the durability thread reports back for each stage.
struct Finished {
    /// False if the group was refused: later groups built on it are stale.
    durable: bool,
}

/// Starts both threads. Returns their join handles (evaluator first).
pub(crate) fn start(
    shared: Arc<Shared>,
    journal: Box<dyn Journal>,
    next_revision: Revision,
    position: ChainPosition,
    requests: mpsc::Receiver<Request>,
) -> std::io::Result<(std::thread::JoinHandle<()>, std::thread::JoinHandle<()>)> {
    let (stages, stage_rx) = std_mpsc::sync_channel(PIPELINE_DEPTH);
    let (finished, finished_rx) = std_mpsc::channel();
    let durability = Durability {
        shared: shared.clone(),
        journal,
        durable: position,
        finished,
    };
    let durability_thread = std::thread::Builder::new()
        .name("store-journal".into())
        .spawn(move || durability.run(stage_rx))?;
    let evaluator = Evaluator {
        shared,
        next_revision,
        position,
        overlay: HashMap::new(),
        stages,
        finished: finished_rx,
        in_flight: 0,
        rewind: false,
    };
    let evaluator_thread = std::thread::Builder::new()
        .name("store-commit".into())
        .spawn(move || evaluator.run(requests))?;
    Ok((evaluator_thread, durability_thread))
}

/// The evaluator's state.
struct Evaluator {
    shared: Arc<Shared>,
    /// The revision the next committed write gets.
    next_revision: Revision,
    /// The chain position after the last group handed on.
    position: ChainPosition,
    /// Keys written by groups handed on, with the revision that wrote them;
    /// entries at or below the applied revision are in RocksDB already.
    overlay: HashMap<Vec<u8>, (Revision, Option<KeyValue>)>,
    stages: std_mpsc::SyncSender<Stage>,
    finished: std_mpsc::Receiver<Finished>,
    in_flight: usize,
    /// A group failed: wait for the pipeline to drain, then restart from
    /// what is durable.
    rewind: bool,
}

impl Evaluator {
    fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        let max_writes = self.shared.opts.max_group_writes;
        let max_bytes = self.shared.opts.max_group_bytes;
        let mut group = Vec::new();
        while let Some(first) = requests.blocking_recv() {
            let mut bytes = 0;
            let mut pending = Some(first);
            while let Some(request) = pending.take() {
                match request {
                    Request::Snapshot {
                        sealed,
                        covers_through_seq,
                        reply,
                    } => {
                        // What came before, then the snapshot, in order.
                        if !self.hand_on(std::mem::take(&mut group)) {
                            let _ = reply.send(Err(self.shared.closed_error()));
                            return;
                        }
                        let stage = Stage::Snapshot {
                            sealed,
                            covers_through_seq,
                            reply,
                        };
                        if let Err(std_mpsc::SendError(Stage::Snapshot { reply, .. })) =
                            self.stages.send(stage)
                        {
                            let _ = reply.send(Err(self.shared.closed_error()));
                            return;
                        }
                        self.in_flight += 1;
                        bytes = 0;
                    }
                    Request::Write { op, reply } => {
                        bytes += op.size();
                        group.push((op, reply));
                    }
                }
                if group.len() < max_writes && bytes < max_bytes {
                    pending = requests.try_recv().ok();
                }
            }
            if !self.hand_on(std::mem::take(&mut group)) {
                return;
            }
        }
    }

    /// Evaluates `group` and hands it to the durability thread. Returns
    /// false if the store must stop.
    fn hand_on(&mut self, group: Vec<(WriteOp, Reply)>) -> bool {
        if group.is_empty() {
            return true;
        }
        self.collect_finished(false);
        if self.rewind {
            self.collect_finished(true);
            self.restart_from_durable();
        }
        if self.shared.fatal_reason().is_some() {
            for (_, reply) in group {
                let _ = reply.send(Err(self.shared.closed_error()));
            }
            return false;
        }
        let prepared = self.evaluate(group);
        match self.stages.send(Stage::Group(prepared)) {
            Ok(()) => {
                self.in_flight += 1;
                true
            }
            Err(std_mpsc::SendError(stage)) => {
                if let Stage::Group(g) = stage {
                    for (reply, _) in g.replies {
                        let _ = reply.send(Err(self.shared.closed_error()));
                    }
                }
                false
            }
        }
    }

    /// Takes the durability thread's reports; with `drain`, waits until
    /// nothing is in flight.
    fn collect_finished(&mut self, drain: bool) {
        loop {
            let next = if drain && self.in_flight > 0 {
                self.finished.recv().ok()
            } else {
                self.finished.try_recv().ok()
            };
            let Some(done) = next else {
                if drain && self.in_flight > 0 {
                    // The durability thread is gone; nothing more will finish.
                    self.in_flight = 0;
                }
                return;
            };
            self.in_flight = self.in_flight.saturating_sub(1);
            if !done.durable {
                self.rewind = true;
            }
        }
    }

    /// After a refused group: forget everything not durable.
    fn restart_from_durable(&mut self) {
        let (revision, position) = self.shared.durable_position();
        self.next_revision = revision + 1;
        self.position = position;
        self.overlay.clear();
        self.rewind = false;
    }

    /// The current state of `key`: the overlay if a group in flight wrote
    /// it, else the index.
    fn current(&self, key: &[u8], applied: Revision) -> Result<Option<KeyValue>> {
        match self.overlay.get(key) {
            Some((rev, kv)) if *rev > applied => Ok(kv.clone()),
            _ => self.shared.load_latest(key),
        }
    }

    fn evaluate(&mut self, group: Vec<(WriteOp, Reply)>) -> PreparedGroup {
        let applied = self.shared.revision.load(Ordering::Acquire);
        self.overlay.retain(|_, (rev, _)| *rev > applied);
        let base = self.position;
        let first = self.next_revision;
        let mut rev = first;
        let mut ops = Vec::new();
        let mut events = Vec::new();
        let mut replies = Vec::with_capacity(group.len());
        for (op, reply) in group {
            let current = match self.current(op.key(), applied) {
                Ok(c) => c,
                Err(e) => {
                    replies.push((reply, Err(e)));
                    continue;
                }
            };
            let cur_mod = current.as_ref().map_or(0, |kv| kv.mod_revision);
            let passes = |cond: Condition| match cond {
                Condition::Always => true,
                Condition::ModRevision(r) => r == cur_mod,
            };
            let outcome = match op {
                WriteOp::Put { key, value, cond } if passes(cond) => {
                    let (create, version) = current
                        .as_ref()
                        .map_or((rev, 1), |kv| (kv.create_revision, kv.version + 1));
                    let kv = KeyValue {
                        key,
                        value,
                        create_revision: create,
                        mod_revision: rev,
                        version,
                    };
                    ops.push(JournalOp {
                        revision: rev,
                        key: kv.key.clone(),
                        put: Some((kv.value.clone(), create, version)),
                    });
                    self.overlay.insert(kv.key.clone(), (rev, Some(kv.clone())));
                    events.push(Event {
                        kind: EventKind::Put,
                        kv,
                        prev: current.clone(),
                        derived: DerivedSlot::default(),
                    });
                    rev += 1;
                    Ok(TxnOutcome::Committed {
                        revision: rev - 1,
                        prev: current,
                    })
                }
                WriteOp::Delete { key, cond } if current.is_some() && passes(cond) => {
                    ops.push(JournalOp {
                        revision: rev,
                        key: key.clone(),
                        put: None,
                    });
                    self.overlay.insert(key.clone(), (rev, None));
                    events.push(Event {
                        kind: EventKind::Delete,
                        kv: KeyValue {
                            key,
                            value: Vec::new(),
                            create_revision: 0,
                            mod_revision: rev,
                            version: 0,
                        },
                        prev: current.clone(),
                        derived: DerivedSlot::default(),
                    });
                    rev += 1;
                    Ok(TxnOutcome::Committed {
                        revision: rev - 1,
                        prev: current,
                    })
                }
                _ => Ok(TxnOutcome::Failed { current }),
            };
            replies.push((reply, outcome));
        }
        let commit = if ops.is_empty() {
            None
        } else {
            match self.seal(base, first, rev - 1, &ops, events) {
                Ok(commit) => Some(commit),
                Err(e) => {
                    // Nothing of this group can be committed, and its
                    // overlay entries are wrong: restart from what is durable
                    // before the next group.
                    let msg = e.to_string();
                    self.rewind = true;
                    for (_, outcome) in &mut replies {
                        *outcome = Err(StoreError::NotCommitted(format!(
                            "preparing the index write failed: {msg}"
                        )));
                    }
                    return PreparedGroup {
                        base,
                        commit: None,
                        replies,
                    };
                }
            }
        };
        if commit.is_some() {
            self.next_revision = rev;
        }
        PreparedGroup {
            base,
            commit,
            replies,
        }
    }

    /// Seals the group's journal record and index batch and advances the
    /// chain position.
    fn seal(
        &mut self,
        base: ChainPosition,
        first: Revision,
        last: Revision,
        ops: &[JournalOp],
        events: Vec<Event>,
    ) -> Result<SealedCommit> {
        let seq = base.seq + 1;
        let record = seal_record(&self.shared.journal_sealer, seq, base.head, ops)?;
        let head = chain_hash(&record);
        let mut batch = WriteBatch::default();
        self.shared.stage_ops(&mut batch, ops)?;
        self.shared.stage_applied(&mut batch, last, seq, &head)?;
        self.position = ChainPosition { seq, head };
        Ok(SealedCommit {
            record,
            position: self.position,
            batch,
            first,
            last,
            events,
        })
    }
}

/// The durability thread's state.
struct Durability {
    shared: Arc<Shared>,
    journal: Box<dyn Journal>,
    /// The chain position of the last durable record.
    durable: ChainPosition,
    finished: std_mpsc::Sender<Finished>,
}

impl Durability {
    fn run(mut self, stages: std_mpsc::Receiver<Stage>) {
        let mut next = None;
        loop {
            let stage = match next.take() {
                Some(stage) => stage,
                None => match stages.recv() {
                    Ok(stage) => stage,
                    Err(_) => return,
                },
            };
            match stage {
                Stage::Group(group) => {
                    // Fold the groups queued behind this one into the same
                    // append, so they share one wait for durability.
                    let mut groups = vec![group];
                    while groups.len() < MAX_FOLD {
                        match stages.try_recv() {
                            Ok(Stage::Group(g)) => groups.push(g),
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    let mut outbox = Vec::new();
                    for durable in self.commit(groups, &mut outbox) {
                        // The evaluator may be gone already (shutting down).
                        let _ = self.finished.send(Finished { durable });
                    }
                    // Writers hear their outcome only after the evaluator was told: a writer that
                    // saw its write fail and writes again must find the evaluator rewound, not
                    // building on the failed group.
                    deliver(outbox);
                }
                Stage::Snapshot {
                    sealed,
                    covers_through_seq,
                    reply,
                } => {
                    let result = if self.shared.fatal_reason().is_some() {
                        Err(self.shared.closed_error())
                    } else {
                        self.journal
                            .write_snapshot(&sealed, covers_through_seq)
                            .map_err(StoreError::from)
                    };
                    let _ = reply.send(result);
                    let _ = self.finished.send(Finished { durable: true });
                }
            }
        }
    }

    /// Makes groups durable with one append, applies them in order and
    /// answers their writers. Returns, per group, whether it was committed.
    fn commit(&mut self, groups: Vec<PreparedGroup>, outbox: &mut Outbox) -> Vec<bool> {
        if self.shared.fatal_reason().is_some() {
            return groups
                .into_iter()
                .map(|g| {
                    refuse(g.replies, outbox, || self.shared.closed_error());
                    false
                })
                .collect();
        }
        // Groups not built on what is durable (an earlier group was refused)
        // are refused; the rest form a chain from `self.durable`.
        let mut verdicts = vec![false; groups.len()];
        let mut chained = Vec::new();
        let mut expected = self.durable;
        for (i, group) in groups.into_iter().enumerate() {
            if group.base != expected {
                refuse(group.replies, outbox, || {
                    StoreError::NotCommitted(
                        "an earlier write in the same commit pipeline failed; retry".into(),
                    )
                });
                continue;
            }
            if let Some(commit) = &group.commit {
                expected = commit.position;
            }
            chained.push((i, group));
        }
        let records: Vec<&[u8]> = chained
            .iter()
            .filter_map(|(_, g)| g.commit.as_ref().map(|c| c.record.as_slice()))
            .collect();
        let (durable_records, failure) = match self.journal.append_batch(&records) {
            Ok(()) => (records.len(), None),
            Err(partial) => (partial.durable, Some(partial.error.to_string())),
        };
        drop(records);
        let mut appended = 0;
        // Set once a group fails: everything after it was built on it.
        let mut broken = false;
        for (i, group) in chained {
            let PreparedGroup {
                base: _,
                commit,
                replies,
            } = group;
            if let Some(why) = self.shared.fatal_reason() {
                refuse(replies, outbox, || StoreError::Closed(why.clone()));
                continue;
            }
            let Some(commit) = commit else {
                // Only failed compares; they stand if everything before them did.
                if !broken {
                    answer(replies, outbox);
                    verdicts[i] = true;
                } else {
                    refuse(replies, outbox, || {
                        StoreError::NotCommitted(
                            "an earlier write in the same commit pipeline failed; retry".into(),
                        )
                    });
                }
                continue;
            };
            if broken || appended >= durable_records {
                broken = true;
                let msg = format!(
                    "journal append of revisions {}..={} failed, not committed: {}",
                    commit.first,
                    commit.last,
                    failure.as_deref().unwrap_or("unknown error")
                );
                tracing::error!("{msg}");
                refuse(replies, outbox, || StoreError::NotCommitted(msg.clone()));
                continue;
            }
            appended += 1;
            if let Err(e) = self.shared.write_index(commit.batch) {
                // The journal has the group but the index does not: the
                // in-memory view is now behind. Stop; reopening replays it.
                let msg = format!(
                    "index write failed after the journal made revisions {}..={} durable: {e}",
                    commit.first, commit.last
                );
                tracing::error!("{msg}");
                self.shared.set_fatal(msg.clone());
                refuse(replies, outbox, || StoreError::Closed(msg.clone()));
                broken = true;
                continue;
            }
            self.durable = commit.position;
            self.shared
                .publish(commit.last, self.durable, commit.events);
            answer(replies, outbox);
            verdicts[i] = true;
        }
        verdicts
    }
}

/// Outcomes decided by a commit, delivered once the evaluator has the verdicts.
type Outbox = Vec<(Reply, Result<TxnOutcome>)>;

fn deliver(outbox: Outbox) {
    for (reply, outcome) in outbox {
        let _ = reply.send(outcome);
    }
}

fn answer(replies: Vec<(Reply, Result<TxnOutcome>)>, outbox: &mut Outbox) {
    outbox.extend(replies);
}

fn refuse(
    replies: Vec<(Reply, Result<TxnOutcome>)>,
    outbox: &mut Outbox,
    error: impl Fn() -> StoreError,
) {
    outbox.extend(replies.into_iter().map(|(reply, _)| (reply, Err(error()))));
}
