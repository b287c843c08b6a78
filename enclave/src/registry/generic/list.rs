//! LIST: selectors, `limit`/`continue` at one revision, resourceVersion semantics.
//!
//! The store answers reads at the current revision from its resident copy of the current
//! state; [`ObjectStore::list_encoded`] adds the other half of kube-apiserver's watch cache:
//! each stored value's response bytes are made once, kept in the value's slot in that copy,
//! and shared by every LIST until the value changes.

use bytes::Bytes;
use serde_json::{Value, json};

use super::ObjectStore;
use super::encoding::{Stored, VersionSlot};
use crate::registry::{Error, FieldSelector, LabelSelector, ResourceInfo, Result};
use crate::store::{ContinueToken, DerivedSlot, KeyValue, RangeRequest, StoreError};

/// LIST options.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `limit`; 0 = no limit.
    pub limit: usize,
    /// `continue`.
    pub continue_token: Option<String>,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`: `Exact` or `NotOlderThan`.
    pub resource_version_match: Option<String>,
}

/// One page of matching objects: decoded ([`Value`]) or as response bytes ([`EncodedObject`]).
#[derive(Debug, Clone)]
pub struct ListPage<T = Value> {
    /// The matching objects.
    pub items: Vec<T>,
    /// The list's resourceVersion (the revision read).
    pub revision: u64,
    /// The continue token, if there are more.
    pub continue_token: Option<String>,
}

/// An object's JSON as a response carries it (with its resourceVersion): bytes made once per
/// stored value, or the stored bytes that a response writes with the resourceVersion spliced
/// in (no copy of its own).
#[derive(Debug, Clone)]
pub struct EncodedObject(Encoding);

#[derive(Debug, Clone)]
enum Encoding {
    Whole(Bytes),
    Spliced {
        stored: Vec<u8>,
        at: VersionSlot,
        revision: u64,
    },
}

impl EncodedObject {
    /// An object already encoded whole.
    pub fn whole(bytes: Bytes) -> Self {
        EncodedObject(Encoding::Whole(bytes))
    }

    /// About how many bytes [`EncodedObject::write_to`] writes (for sizing the response).
    pub fn len_hint(&self) -> usize {
        match &self.0 {
            Encoding::Whole(b) => b.len(),
            Encoding::Spliced { stored, .. } => stored.len() + 40,
        }
    }

    /// Appends the object's JSON to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match &self.0 {
            Encoding::Whole(b) => out.extend_from_slice(b),
            Encoding::Spliced {
                stored,
                at,
                revision,
            } => at.write_spliced(stored, *revision, out),
        }
    }
}

impl<T> ListPage<T> {
    /// The list metadata object.
    pub fn list_meta(&self) -> Value {
        let mut m = json!({"resourceVersion": self.revision.to_string()});
        if let Some(c) = &self.continue_token {
            m["continue"] = Value::String(c.clone());
        }
        m
    }
}

/// How a stored value becomes the bytes a response carries: where its resourceVersion is
/// spliced in (what a write leaves, a few bytes per object), else the bytes themselves, or
/// why it does not decode.
enum Encoded {
    Splice(VersionSlot),
    Bytes(Bytes),
    Failed(String),
}

/// What a LIST keeps for a stored value it found no [`Encoded`] for: the splice when the
/// value is exactly what [`Stored::encode`] makes of it (every value this code wrote), else
/// the response bytes.
fn derive_encoded(kv: &KeyValue) -> Encoded {
    let obj = match ObjectStore::decode(kv) {
        Ok(o) => o,
        Err(e) => return Encoded::Failed(e.to_string()),
    };
    match Stored::encode(&obj) {
        Ok(s) if s.bytes == kv.value => match s.version_slot() {
            Some(slot) => Encoded::Splice(slot),
            None => encode_whole(&obj),
        },
        _ => encode_whole(&obj),
    }
}

fn encode_whole(obj: &Value) -> Encoded {
    match serde_json::to_vec(obj) {
        Ok(b) => Encoded::Bytes(Bytes::from(b)),
        Err(e) => Encoded::Failed(format!("encoding a stored object: {e}")),
    }
}

impl Encoded {
    fn object(&self, kv: KeyValue) -> Result<EncodedObject> {
        match self {
            Encoded::Splice(at) => Ok(EncodedObject(Encoding::Spliced {
                stored: kv.value,
                at: *at,
                revision: kv.mod_revision,
            })),
            Encoded::Bytes(b) => Ok(EncodedObject::whole(b.clone())),
            Encoded::Failed(why) => Err(Error::Store(StoreError::Corrupt(why.clone()))),
        }
    }
}

impl ObjectStore {
    /// After a write: keeps, in the slot of the value written at `revision`, where its
    /// response bytes take the resourceVersion, so no LIST decodes or encodes it (a LIST
    /// copies the stored bytes with the resourceVersion spliced in; kube-apiserver's watch
    /// cache serializes once per object). A value the splice cannot serve (one with a
    /// selfLink) is left for the first LIST to derive.
    pub(super) fn keep_served_splice(&self, key: &[u8], revision: u64, stored: &Stored) {
        if let (Some(slot), Some(at)) = (
            self.store.resident_slot(key, revision),
            stored.version_slot(),
        ) {
            slot.get_or_init(|| Encoded::Splice(at));
        }
    }
}

/// The most items a LIST answered from memory makes on the calling task.
const INLINE_ITEMS: usize = 64;

/// How the pages of one LIST become its items.
struct Pager<T> {
    limit: usize,
    labels: LabelSelector,
    fields: FieldSelector,
    strategy_info: std::sync::Arc<ResourceInfo>,
    item: fn(KeyValue, &DerivedSlot, Option<Value>) -> Result<T>,
}

impl<T> Pager<T> {
    /// Appends the matching objects of one page.
    fn take(&self, kvs: Vec<KeyValue>, derived: &[DerivedSlot], items: &mut Vec<T>) -> Result<()> {
        let selects = !(self.labels.is_empty() && self.fields.is_empty());
        for (kv, slot) in kvs.into_iter().zip(derived) {
            if !selects {
                items.push((self.item)(kv, slot, None)?);
                continue;
            }
            let obj = ObjectStore::decode(&kv)?;
            if self.labels.matches(&obj) && self.fields.matches(&obj, &*self.strategy_info.strategy)
            {
                items.push((self.item)(kv, slot, Some(obj))?);
            }
        }
        Ok(())
    }

    /// Reads pages from `req` on until the limit is reached or the keys end (blocking).
    fn read(&self, store: &crate::store::Store, mut req: RangeRequest) -> Result<ListPage<T>> {
        let mut items = Vec::new();
        loop {
            let want = if self.limit == 0 {
                0
            } else {
                self.limit - items.len()
            };
            let resp = store.range(&req.clone().with_limit(want))?;
            self.take(resp.kvs, &resp.derived, &mut items)?;
            match resp.next {
                Some(next) if self.limit == 0 || items.len() < self.limit => {
                    req = RangeRequest::prefix(req.prefix.clone()).continuing(next);
                }
                next => {
                    return Ok(ListPage {
                        items,
                        revision: resp.revision,
                        continue_token: next.map(|t| t.encode()),
                    });
                }
            }
        }
    }
}

const EXPIRED_CONTINUE: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

impl ObjectStore {
    /// LIST the objects of `info` in namespace `ns` (None: all namespaces).
    ///
    /// # Errors
    /// 400 for bad parameters, 410 Expired for a compacted revision or
    /// continue token, 504 for a resourceVersion from the future.
    pub async fn list(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ListPage> {
        self.collect(info, ns, opts, |kv, _, decoded| match decoded {
            Some(obj) => Ok(obj),
            None => ObjectStore::decode(&kv),
        })
        .await
    }

    /// LIST as [`ObjectStore::list`] does, each object as the JSON bytes a response carries:
    /// made once per stored value and shared by every LIST until it changes, so a LIST
    /// without selectors decodes and encodes nothing.
    ///
    /// # Errors
    /// As [`ObjectStore::list`].
    pub async fn list_encoded(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ListPage<EncodedObject>> {
        self.collect(info, ns, opts, |kv, slot, _| {
            match slot.get_or_init(|| derive_encoded(&kv)) {
                Some(encoded) => encoded.object(kv),
                // Another derivation in the slot (not made by a LIST): encode this once.
                None => derive_encoded(&kv).object(kv),
            }
        })
        .await
    }

    /// The LIST both forms share: `item` makes one matching object from its stored value, its
    /// slot, and its decoded form when the selectors needed one.
    async fn collect<T: Send + 'static>(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        opts: &ListOptions,
        item: fn(KeyValue, &DerivedSlot, Option<Value>) -> Result<T>,
    ) -> Result<ListPage<T>> {
        let prefix = info.key_prefix(ns);
        let token = match opts.continue_token.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => Some(
                ContinueToken::decode(c)
                    .map_err(|_| Error::BadRequest(format!("invalid continue token {c:?}")))?,
            ),
            None => None,
        };
        let rv = match opts.resource_version.as_deref() {
            None | Some("") | Some("0") => None,
            Some(s) => Some(
                s.parse::<u64>()
                    .map_err(|_| Error::BadRequest(format!("invalid resource version {s:?}")))?,
            ),
        };
        let current = self.store.revision();
        let at = match (rv, opts.resource_version_match.as_deref()) {
            (_, Some(m)) if m != "Exact" && m != "NotOlderThan" => {
                return Err(Error::BadRequest(format!(
                    "resourceVersionMatch: Unsupported value: {m:?}: supported values: \"Exact\", \"NotOlderThan\""
                )));
            }
            (None, Some(m)) => {
                return Err(Error::BadRequest(format!(
                    "resourceVersionMatch: Forbidden: resourceVersionMatch {m:?} is forbidden unless resourceVersion is provided"
                )));
            }
            (Some(r), _) if r > current => {
                return Err(Error::Timeout(format!(
                    "Too large resource version: {r}, current: {current}"
                )));
            }
            (Some(r), Some("Exact")) => Some(r),
            _ => None,
        };
        let strategy_info = self
            .table()
            .lookup(&info.group, &info.version, &info.resource)
            .ok_or_else(|| Error::BadRequest(format!("unknown resource {}", info.resource)))?;
        let resuming = token.is_some();
        let pager = Pager {
            limit: opts.limit,
            labels: opts.labels.clone(),
            fields: opts.fields.clone(),
            strategy_info,
            item,
        };
        let mut req = RangeRequest::prefix(prefix);
        if let Some(r) = at {
            req = req.at_revision(r);
        }
        if let Some(t) = token {
            req = req.continuing(t);
        }
        // A small answer from memory is made on this task: handing it to a blocking thread
        // and back would cost more than making it (admission reads a few such lists per
        // write). Everything else, RocksDB reads included, goes to the blocking pool. The
        // look in memory copies at most INLINE_ITEMS values: when there are more, the
        // blocking read starts over.
        let cap = match pager.limit {
            0 => INLINE_ITEMS,
            l => l.min(INLINE_ITEMS),
        };
        let inline = match self.store.range_resident(&req.clone().with_limit(cap)) {
            Some(Ok(resp)) if resp.next.is_none() => {
                let mut items = Vec::new();
                Some(
                    pager
                        .take(resp.kvs, &resp.derived, &mut items)
                        .map(|()| ListPage {
                            items,
                            revision: resp.revision,
                            continue_token: None,
                        }),
                )
            }
            Some(Err(e)) => Some(Err(e.into())),
            _ => None,
        };
        let page = match inline {
            Some(page) => page,
            None => {
                let store = self.store.clone();
                tokio::task::spawn_blocking(move || pager.read(&store, req))
                    .await
                    .map_err(|e| Error::Store(StoreError::Closed(e.to_string())))?
            }
        };
        match page {
            Err(Error::Expired(_)) if resuming => Err(Error::Expired(EXPIRED_CONTINUE.into())),
            other => other,
        }
    }
}
