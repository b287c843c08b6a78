//! LIST: selectors, `limit`/`continue` at one revision, resourceVersion semantics.
//!
//! The store answers reads at the current revision from its resident copy of the current
//! state; [`ObjectStore::list_encoded`] adds the other half of kube-apiserver's watch cache:
//! each stored value's response bytes are made once, kept in the value's slot in that copy,
//! and shared by every LIST until the value changes.

use bytes::Bytes;
use serde_json::{Value, json};

use super::ObjectStore;
use crate::registry::{Error, FieldSelector, LabelSelector, ResourceInfo, Result};
use crate::store::{ContinueToken, DerivedSlot, KeyValue, RangeRequest, RangeResponse, StoreError};

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

/// An object's JSON as a response carries it (with its resourceVersion), made once per stored
/// value.
#[derive(Debug, Clone)]
pub struct EncodedObject(pub Bytes);

/// What is kept in a stored value's slot: its response bytes, or why it does not decode.
struct Encoded(std::result::Result<Bytes, String>);

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

/// A stored value as a response carries it: decoded, resourceVersion stamped, encoded.
fn served_bytes(kv: &KeyValue) -> Result<Bytes> {
    let obj = ObjectStore::decode(kv)?;
    serde_json::to_vec(&obj).map(Bytes::from).map_err(|e| {
        Error::Store(StoreError::Corrupt(format!(
            "encoding a stored object: {e}"
        )))
    })
}

impl ObjectStore {
    /// After a write: keeps `obj` (as written at `revision`, resourceVersion stamped) as its
    /// response bytes in the slot of the stored value, so the first LIST after a write
    /// encodes nothing (kube-apiserver's watch cache serializes once per object too). The
    /// bytes equal what [`served_bytes`] makes of the stored value: the stored value is `obj`
    /// without its resourceVersion and selfLink, and JSON objects keep their keys sorted.
    pub(super) fn keep_response_bytes(&self, key: &[u8], revision: u64, obj: &Value) {
        if crate::registry::meta::meta_str(obj, "selfLink").is_some() {
            return;
        }
        if let Some(slot) = self.store.resident_slot(key, revision) {
            slot.get_or_init(|| {
                Encoded(
                    serde_json::to_vec(obj)
                        .map(Bytes::from)
                        .map_err(|e| format!("encoding a stored object: {e}")),
                )
            });
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
    item: fn(&KeyValue, &DerivedSlot, Option<Value>) -> Result<T>,
}

impl<T> Pager<T> {
    /// Appends the matching objects of one page.
    fn take(&self, resp: &RangeResponse, items: &mut Vec<T>) -> Result<()> {
        let selects = !(self.labels.is_empty() && self.fields.is_empty());
        for (kv, slot) in resp.kvs.iter().zip(&resp.derived) {
            if !selects {
                items.push((self.item)(kv, slot, None)?);
                continue;
            }
            let obj = ObjectStore::decode(kv)?;
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
            self.take(&resp, &mut items)?;
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
            None => ObjectStore::decode(kv),
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
            let encoded = slot.get_or_init(|| Encoded(served_bytes(kv).map_err(|e| e.to_string())));
            match encoded {
                Some(Encoded(Ok(bytes))) => Ok(EncodedObject(bytes.clone())),
                Some(Encoded(Err(why))) => Err(Error::Store(StoreError::Corrupt(why.clone()))),
                // Another derivation in the slot (not made by a LIST): encode this once.
                None => served_bytes(kv).map(EncodedObject),
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
        item: fn(&KeyValue, &DerivedSlot, Option<Value>) -> Result<T>,
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
            .lookup(info.group, info.version, info.resource)
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
                Some(pager.take(&resp, &mut items).map(|()| ListPage {
                    items,
                    revision: resp.revision,
                    continue_token: None,
                }))
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
