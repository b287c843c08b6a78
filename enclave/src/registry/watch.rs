//! WATCH: store events turned into Kubernetes watch events, filtered by
//! selectors, with objects entering or leaving a selector delivered as
//! ADDED or DELETED.

use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use super::generic::ListOptions;
use super::{Error, FieldSelector, LabelSelector, ObjectStore, ResourceInfo, Result, meta};
use crate::store::{Event, EventKind, KeyValue, StoreError, WatchTarget, Watcher};

/// An object as watch events carry it: one change reaches every watcher as the same object, decoded once and
/// serialized at most once however many watchers receive it. Dereferences to the object.
#[derive(Debug, Clone)]
pub struct WatchObject(Arc<SharedObject>);

#[derive(Debug)]
struct SharedObject {
    value: Value,
    json: OnceLock<Vec<u8>>,
}

impl WatchObject {
    /// The object as compact JSON, serialized by the first watcher that asks.
    pub fn json(&self) -> &[u8] {
        self.0
            .json
            .get_or_init(|| serde_json::to_vec(&self.0.value).unwrap_or_default())
    }
}

impl From<Value> for WatchObject {
    fn from(value: Value) -> Self {
        WatchObject(Arc::new(SharedObject {
            value,
            json: OnceLock::new(),
        }))
    }
}

impl Deref for WatchObject {
    type Target = Value;

    fn deref(&self) -> &Value {
        &self.0.value
    }
}

impl PartialEq for WatchObject {
    fn eq(&self, other: &Self) -> bool {
        self.0.value == other.0.value
    }
}

/// What watchers derive from one store event, kept in the event's [`crate::store::DerivedSlot`] so that the first
/// watcher to need a part decodes it and the others share it. Selectors differ per watcher, so filtering does not
/// happen here.
#[derive(Default)]
struct DecodedEvent {
    /// The value written (a put).
    object: OnceLock<Option<WatchObject>>,
    /// The value before the change.
    prev: OnceLock<Option<WatchObject>>,
    /// The value before a delete, stamped with the deletion's revision.
    deleted: OnceLock<Option<WatchObject>>,
}

impl DecodedEvent {
    fn object(&self, ev: &Event) -> Option<&WatchObject> {
        self.object.get_or_init(|| decode(&ev.kv)).as_ref()
    }

    fn prev(&self, ev: &Event) -> Option<&WatchObject> {
        self.prev
            .get_or_init(|| ev.prev.as_ref().and_then(decode))
            .as_ref()
    }

    fn deleted(&self, ev: &Event) -> Option<&WatchObject> {
        self.deleted
            .get_or_init(|| {
                let mut last = self.prev(ev)?.deref().clone();
                meta::set_resource_version(&mut last, ev.kv.mod_revision);
                Some(last.into())
            })
            .as_ref()
    }
}

/// A stored value decoded for watchers; `None`, and so no event, if it does not decode.
fn decode(kv: &KeyValue) -> Option<WatchObject> {
    ObjectStore::decode(kv).ok().map(WatchObject::from)
}

/// A Kubernetes watch event.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// `ADDED` with the object.
    Added(WatchObject),
    /// `MODIFIED` with the object.
    Modified(WatchObject),
    /// `DELETED` with the last state, stamped with the deletion's revision.
    Deleted(WatchObject),
    /// `BOOKMARK` at a revision.
    Bookmark(u64),
    /// `ERROR` with a Status; the stream ends after it.
    Error(Value),
}

impl WatchEvent {
    /// The event's `type` field.
    pub fn type_name(&self) -> &'static str {
        match self {
            WatchEvent::Added(_) => "ADDED",
            WatchEvent::Modified(_) => "MODIFIED",
            WatchEvent::Deleted(_) => "DELETED",
            WatchEvent::Bookmark(_) => "BOOKMARK",
            WatchEvent::Error(_) => "ERROR",
        }
    }
}

/// WATCH options.
#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `resourceVersion`: None/"0" replays current state as ADDED.
    pub resource_version: Option<String>,
}

/// A running watch. Call [`WatchStream::next`] until it returns `None`.
#[derive(Debug)]
pub struct WatchStream {
    info: Arc<ResourceInfo>,
    labels: LabelSelector,
    fields: FieldSelector,
    initial: VecDeque<WatchObject>,
    watcher: Option<Watcher>,
    failed: Option<Value>,
}

fn expired(requested: u64) -> Value {
    Error::Expired(format!("too old resource version: {requested}")).to_status()
}

impl ObjectStore {
    /// Starts a watch of `info` in namespace `ns` (None: all).
    ///
    /// # Errors
    /// 400 for a malformed resourceVersion; a compacted one is reported as
    /// an `ERROR` event (410 Expired) on the stream, as upstream does.
    pub async fn watch(
        &self,
        info: Arc<ResourceInfo>,
        ns: Option<&str>,
        opts: WatchOptions,
    ) -> Result<WatchStream> {
        let prefix = info.key_prefix(ns);
        let rv = match opts.resource_version.as_deref() {
            None | Some("") | Some("0") => None,
            Some(s) => Some(
                s.parse::<u64>()
                    .map_err(|_| Error::BadRequest(format!("invalid resource version {s:?}")))?,
            ),
        };
        let mut stream = WatchStream {
            info: info.clone(),
            labels: opts.labels.clone(),
            fields: opts.fields.clone(),
            initial: VecDeque::new(),
            watcher: None,
            failed: None,
        };
        let start = match rv {
            Some(r) => r + 1,
            None => {
                let page = self
                    .list(
                        &info,
                        ns,
                        &ListOptions {
                            labels: opts.labels,
                            fields: opts.fields,
                            ..Default::default()
                        },
                    )
                    .await?;
                stream.initial = page.items.into_iter().map(WatchObject::from).collect();
                page.revision + 1
            }
        };
        match self.store().watch(WatchTarget::Prefix(prefix), start) {
            Ok(w) => stream.watcher = Some(w),
            Err(StoreError::Compacted { .. }) => stream.failed = Some(expired(start - 1)),
            Err(e) => return Err(e.into()),
        }
        Ok(stream)
    }
}

impl WatchStream {
    fn selects_everything(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj, &*self.info.strategy)
    }

    /// The revision everything up to which has been delivered (for bookmarks).
    pub fn progress(&self) -> u64 {
        self.watcher.as_ref().map_or(0, Watcher::progress)
    }

    /// The next event; `None` when the store shut down or after an `ERROR`.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        if let Some(obj) = self.initial.pop_front() {
            return Some(WatchEvent::Added(obj));
        }
        if let Some(status) = self.failed.take() {
            self.watcher = None;
            return Some(WatchEvent::Error(status));
        }
        loop {
            let watcher = self.watcher.as_mut()?;
            let ev = match watcher.next().await? {
                Ok(ev) => ev,
                Err(StoreError::Compacted { requested, .. }) => {
                    self.watcher = None;
                    return Some(WatchEvent::Error(expired(requested)));
                }
                Err(e) => {
                    self.watcher = None;
                    return Some(WatchEvent::Error(Error::from(e).to_status()));
                }
            };
            let fallback;
            let decoded = match ev.derived.get_or_init(DecodedEvent::default) {
                Some(shared) => shared,
                None => {
                    fallback = DecodedEvent::default();
                    &fallback
                }
            };
            // Without selectors every object matches: the previous value need not be decoded.
            let prev_matched = if self.selects_everything() {
                ev.prev.is_some()
            } else {
                decoded.prev(&ev).is_some_and(|p| self.matches(p))
            };
            match ev.kind {
                EventKind::Put => {
                    let Some(obj) = decoded.object(&ev) else {
                        continue;
                    };
                    let now = self.matches(obj);
                    match (prev_matched, now) {
                        (false, true) => return Some(WatchEvent::Added(obj.clone())),
                        (true, true) => return Some(WatchEvent::Modified(obj.clone())),
                        (true, false) => return Some(WatchEvent::Deleted(obj.clone())),
                        (false, false) => continue,
                    }
                }
                EventKind::Delete => {
                    if prev_matched && let Some(last) = decoded.deleted(&ev) {
                        return Some(WatchEvent::Deleted(last.clone()));
                    }
                }
            }
        }
    }
}
