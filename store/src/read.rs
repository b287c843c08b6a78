//! Reads: get and prefix range at the current revision or a retained past
//! revision, each from one RocksDB snapshot. The current state is read from
//! the `latest` column family; past revisions from `history`. A paged list
//! keeps the revision of its first page in its continue token, so later
//! pages read the same revision and never mix states.

use rocksdb::{DB, DBRawIteratorWithThreadMode, IteratorMode, ReadOptions, SnapshotWithThreadMode};

use super::Store;
use super::encoding::{
    LatestRecord, VersionRecord, be_u64, escape_prefix_into, history_key, split_history_key,
};
use super::error::{Result, StoreError};
use super::journal::record::{ChainHash, GENESIS};
use super::shared::{CF_HISTORY, CF_LATEST, CF_META, META_APPLIED, Shared};
use super::types::{DerivedSlot, KeyValue, Revision};

/// Decodes the `applied` meta record: revision, journal seq, chain hash.
pub(crate) fn decode_applied(v: &[u8]) -> Result<(Revision, (u64, ChainHash))> {
    if v.len() != 48 {
        return Err(StoreError::Corrupt(format!(
            "applied record of {} bytes",
            v.len()
        )));
    }
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&v[16..48]);
    Ok((be_u64(&v[..8]), (be_u64(&v[8..16]), hash)))
}

/// A prefix range request.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RangeRequest {
    /// Every key starting with these bytes (use the whole key for one key).
    pub prefix: Vec<u8>,
    /// At most this many keys; 0 means no limit.
    pub limit: usize,
    /// Read at this revision; `None` reads the current revision.
    pub revision: Option<Revision>,
    /// Continue a previous page; its revision overrides `revision`.
    pub continue_from: Option<ContinueToken>,
}

impl RangeRequest {
    /// All keys under `prefix` at the current revision.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        RangeRequest {
            prefix: prefix.into(),
            ..Default::default()
        }
    }

    /// Limits the page size.
    #[must_use]
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Reads at a past revision.
    #[must_use]
    pub fn at_revision(mut self, revision: Revision) -> Self {
        self.revision = Some(revision);
        self
    }

    /// Continues after a previous page.
    #[must_use]
    pub fn continuing(mut self, token: ContinueToken) -> Self {
        self.continue_from = Some(token);
        self
    }
}

/// One page of a range.
#[derive(Debug, Clone)]
pub struct RangeResponse {
    /// The keys, in byte order.
    pub kvs: Vec<KeyValue>,
    /// One slot per key, where the layer above keeps what it derives from the value. Read
    /// from the resident copy, a key's slot is shared by every read until its value changes;
    /// read from RocksDB, each slot is new.
    pub derived: Vec<DerivedSlot>,
    /// The revision the page was read at (the list's resourceVersion).
    pub revision: Revision,
    /// Where the next page starts, if there are more keys.
    pub next: Option<ContinueToken>,
}

/// Where a paged range continues: the revision of its first page and the
/// last key returned. Encoded as an opaque string for clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContinueToken {
    /// Revision every page of the list is read at.
    pub revision: Revision,
    /// The last key of the previous page.
    pub after_key: Vec<u8>,
}

impl ContinueToken {
    /// Encodes as `<revision>.<hex key>`.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.revision, hex::encode(&self.after_key))
    }

    /// Decodes [`ContinueToken::encode`]'s output.
    pub fn decode(s: &str) -> Result<Self> {
        let (rev, key) = s
            .split_once('.')
            .ok_or(StoreError::InvalidContinue("missing separator"))?;
        let revision = rev
            .parse::<Revision>()
            .map_err(|_| StoreError::InvalidContinue("bad revision"))?;
        if revision == 0 {
            return Err(StoreError::InvalidContinue("revision 0"));
        }
        let after_key =
            hex::decode(key).map_err(|_| StoreError::InvalidContinue("bad key encoding"))?;
        Ok(ContinueToken {
            revision,
            after_key,
        })
    }
}

type Snap<'a> = SnapshotWithThreadMode<'a, DB>;

/// A consistent view: one RocksDB snapshot and the revision it holds.
pub(crate) struct View<'a> {
    shared: &'a Shared,
    snap: Snap<'a>,
    current: Revision,
    /// Journal sequence number and chain hash of the record that produced `current`.
    pub(crate) head: (u64, ChainHash),
}

impl<'a> View<'a> {
    pub(crate) fn new(shared: &'a Shared) -> Result<Self> {
        let snap = shared.db.snapshot();
        let (current, head) = match snap.get_cf(shared.cf(CF_META)?, META_APPLIED)? {
            Some(v) => decode_applied(&v)?,
            None => (0, (0, GENESIS)),
        };
        Ok(View {
            shared,
            snap,
            current,
            head,
        })
    }

    /// Points `ro` at this view's snapshot.
    pub(crate) fn set_snapshot(&self, ro: &mut ReadOptions) {
        ro.set_snapshot(&self.snap);
    }

    /// The revision this view reads.
    pub(crate) fn current(&self) -> Revision {
        self.current
    }

    /// Checks `requested` against the retained window; returns the revision to read.
    fn resolve(&self, requested: Option<Revision>) -> Result<Revision> {
        let Some(rev) = requested else {
            return Ok(self.current);
        };
        if rev == 0 {
            return Ok(self.current);
        }
        if rev > self.current {
            return Err(StoreError::FutureRevision {
                requested: rev,
                current: self.current,
            });
        }
        let compacted = self
            .shared
            .compacted
            .load(std::sync::atomic::Ordering::Acquire);
        if rev < compacted {
            return Err(StoreError::Compacted {
                requested: rev,
                compacted,
            });
        }
        Ok(rev)
    }

    fn raw_iter(&self, cf: &'static str) -> Result<DBRawIteratorWithThreadMode<'a, DB>> {
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&self.snap);
        Ok(self.shared.db.raw_iterator_cf_opt(self.shared.cf(cf)?, ro))
    }

    fn latest_kv(&self, key: &[u8], raw: &[u8]) -> Result<KeyValue> {
        let rec = LatestRecord::decode(raw)?;
        let value = self.shared.unseal(
            key,
            rec.mod_revision,
            rec.create_revision,
            rec.version,
            &rec.sealed,
        )?;
        Ok(KeyValue {
            key: key.to_vec(),
            value,
            create_revision: rec.create_revision,
            mod_revision: rec.mod_revision,
            version: rec.version,
        })
    }

    fn history_kv(&self, key: Vec<u8>, rev: Revision, raw: &[u8]) -> Result<Option<KeyValue>> {
        let rec = VersionRecord::decode(raw)?;
        let Some(sealed) = rec.sealed else {
            return Ok(None);
        };
        let value = self
            .shared
            .unseal(&key, rev, rec.create_revision, rec.version, &sealed)?;
        Ok(Some(KeyValue {
            key,
            value,
            create_revision: rec.create_revision,
            mod_revision: rev,
            version: rec.version,
        }))
    }

    fn get(&self, key: &[u8], rev: Revision) -> Result<Option<KeyValue>> {
        if rev == self.current {
            let mut ro = ReadOptions::default();
            ro.set_snapshot(&self.snap);
            return match self
                .shared
                .db
                .get_pinned_cf_opt(self.shared.cf(CF_LATEST)?, key, &ro)?
            {
                Some(raw) => self.latest_kv(key, &raw).map(Some),
                None => Ok(None),
            };
        }
        let mut it = self.raw_iter(CF_HISTORY)?;
        let target = history_key(key, rev);
        it.seek(&target);
        if let (Some(k), Some(v)) = (it.key(), it.value()) {
            let (esc, found_rev) = split_history_key(k)?;
            if esc.len() + 8 == target.len() && esc == &target[..esc.len()] {
                return self.history_kv(key.to_vec(), found_rev, v);
            }
        }
        it.status()?;
        Ok(None)
    }

    fn range(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        rev: Revision,
    ) -> Result<(Vec<KeyValue>, bool)> {
        let want = if limit == 0 { usize::MAX } else { limit };
        let mut kvs = Vec::new();
        let mut more = false;
        if rev == self.current {
            let mut it = self.raw_iter(CF_LATEST)?;
            match after {
                Some(a) => it.seek(a),
                None => it.seek(prefix),
            }
            while let (Some(k), Some(v)) = (it.key(), it.value()) {
                if !k.starts_with(prefix) {
                    break;
                }
                if after != Some(k) {
                    if kvs.len() == want {
                        more = true;
                        break;
                    }
                    kvs.push(self.latest_kv(k, v)?);
                }
                it.next();
            }
            it.status()?;
            return Ok((kvs, more));
        }
        // Past revision: walk every retained version under the prefix; the
        // first version of a key at or below `rev` decides it.
        let mut esc_prefix = Vec::with_capacity(prefix.len() + 2);
        escape_prefix_into(prefix, &mut esc_prefix);
        let mut it = self.raw_iter(CF_HISTORY)?;
        let skip_key = after.map(|a| {
            let hk = history_key(a, 0);
            hk[..hk.len() - 8].to_vec()
        });
        match after {
            Some(a) => it.seek(history_key(a, 0)),
            None => it.seek(&esc_prefix),
        }
        let mut decided: Option<Vec<u8>> = None;
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(&esc_prefix) {
                break;
            }
            let (esc, krev) = split_history_key(k)?;
            let skip =
                decided.as_deref() == Some(esc) || skip_key.as_deref() == Some(esc) || krev > rev;
            if !skip {
                decided = Some(esc.to_vec());
                let key = super::encoding::unescape(esc)?;
                let rec = VersionRecord::decode(v)?;
                if rec.sealed.is_some() {
                    if kvs.len() == want {
                        more = true;
                        break;
                    }
                    if let Some(kv) = self.history_kv(key, krev, v)? {
                        kvs.push(kv);
                    }
                }
            }
            it.next();
        }
        it.status()?;
        Ok((kvs, more))
    }
}

impl Store {
    /// The current value of `key` and the revision it was read at.
    pub fn get(&self, key: &[u8]) -> Result<(Option<KeyValue>, Revision)> {
        self.get_at(key, None)
    }

    /// The value of `key` at `revision` (`None` or 0: current), and the revision read.
    pub fn get_at(
        &self,
        key: &[u8],
        revision: Option<Revision>,
    ) -> Result<(Option<KeyValue>, Revision)> {
        if key.is_empty() {
            return Err(StoreError::EmptyKey);
        }
        if revision.unwrap_or(0) == 0
            && let Some(found) = self.get_resident(key)
        {
            return Ok(found);
        }
        if let Some(observer) = &self.shared.opts.observer {
            observer.read("get");
        }
        let view = View::new(&self.shared)?;
        let rev = view.resolve(revision)?;
        Ok((view.get(key, rev)?, rev))
    }

    /// The current value of `key` if the resident copy answers for it, without touching
    /// RocksDB, so a caller on an async runtime need not move to a blocking thread; `None`
    /// when only [`Store::get`] can answer.
    pub fn get_resident(&self, key: &[u8]) -> Option<(Option<KeyValue>, Revision)> {
        if key.is_empty() {
            return None;
        }
        let found = self.shared.resident.get(key)?;
        if let Some(observer) = &self.shared.opts.observer {
            observer.read("get");
        }
        Some(found)
    }

    /// One page of keys under a prefix.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        if let Some(page) = self.range_resident(req) {
            return page;
        }
        let (requested, after) = Self::range_start(req)?;
        if let Some(observer) = &self.shared.opts.observer {
            observer.read("range");
        }
        let view = View::new(&self.shared)?;
        let rev = view.resolve(requested)?;
        let (kvs, more) = view.range(&req.prefix, after, req.limit, rev)?;
        let derived = kvs.iter().map(|_| DerivedSlot::default()).collect();
        Ok(Self::page(kvs, derived, more, rev))
    }

    /// [`Store::range`] if the resident copy answers it (the current revision, or the one a
    /// continue token names while it is still current), without touching RocksDB; `None`
    /// when only [`Store::range`] can answer.
    pub fn range_resident(&self, req: &RangeRequest) -> Option<Result<RangeResponse>> {
        let (requested, after) = match Self::range_start(req) {
            Ok(start) => start,
            Err(e) => return Some(Err(e)),
        };
        let page = self.shared.resident.range(
            &req.prefix,
            after,
            req.limit,
            requested.filter(|&r| r != 0),
        )?;
        if let Some(observer) = &self.shared.opts.observer {
            observer.read("range");
        }
        Some(Ok(Self::page(
            page.kvs,
            page.derived,
            page.more,
            page.revision,
        )))
    }

    /// The revision a range reads (`None`: current) and the key it starts after.
    fn range_start(req: &RangeRequest) -> Result<(Option<Revision>, Option<&[u8]>)> {
        match &req.continue_from {
            Some(t) => {
                if !t.after_key.starts_with(&req.prefix) {
                    return Err(StoreError::InvalidContinue("token is for another prefix"));
                }
                if req.revision.is_some_and(|r| r != 0 && r != t.revision) {
                    return Err(StoreError::InvalidContinue("token is for another revision"));
                }
                Ok((Some(t.revision), Some(t.after_key.as_slice())))
            }
            None => Ok((req.revision, None)),
        }
    }

    fn page(
        kvs: Vec<KeyValue>,
        derived: Vec<DerivedSlot>,
        more: bool,
        rev: Revision,
    ) -> RangeResponse {
        let next = match (more, kvs.last()) {
            (true, Some(last)) => Some(ContinueToken {
                revision: rev,
                after_key: last.key.clone(),
            }),
            _ => None,
        };
        RangeResponse {
            kvs,
            derived,
            revision: rev,
            next,
        }
    }

    /// How many live keys are under `prefix`, counted in the resident copy without touching
    /// RocksDB; `None` when no resident copy covers the prefix.
    pub fn count_resident(&self, prefix: &[u8]) -> Option<usize> {
        self.shared.resident.count(prefix)
    }

    /// How many bytes (keys, values and per-entry overhead) the resident copy of the current
    /// state holds; `None` when none is kept (disabled, or outgrown since the store opened).
    pub fn resident_bytes(&self) -> Option<usize> {
        self.shared.resident.held_bytes()
    }

    /// The [`DerivedSlot`] of `key`'s value written at `revision`, while the resident copy
    /// holds that value: a writer fills it with what reads would derive, so the first read
    /// after a write finds it made.
    pub fn resident_slot(&self, key: &[u8], revision: Revision) -> Option<DerivedSlot> {
        self.shared.resident.slot(key, revision)
    }

    /// Every live key at one consistent revision, with the view it was read from.
    pub(crate) fn scan_latest(&self) -> Result<(Vec<KeyValue>, Revision, (u64, ChainHash))> {
        scan_latest(&self.shared)
    }
}

/// Every live key of `shared` at one consistent revision, with the view it was read from.
pub(crate) fn scan_latest(shared: &Shared) -> Result<(Vec<KeyValue>, Revision, (u64, ChainHash))> {
    let view = View::new(shared)?;
    let mut out = Vec::new();
    let mut ro = ReadOptions::default();
    ro.set_snapshot(&view.snap);
    for item in shared
        .db
        .iterator_cf_opt(shared.cf(CF_LATEST)?, ro, IteratorMode::Start)
    {
        let (k, v) = item?;
        out.push(view.latest_kv(&k, &v)?);
    }
    Ok((out, view.current, view.head))
}
