//! WATCH: store events turned into Kubernetes watch events, filtered by
//! selectors, with objects entering or leaving a selector delivered as
//! ADDED or DELETED.

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::Value;

use super::generic::ListOptions;
use super::{Error, FieldSelector, LabelSelector, ObjectStore, ResourceInfo, Result, meta};
use crate::store::{EventKind, KeyValue, StoreError, WatchTarget, Watcher};

/// A Kubernetes watch event.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// `ADDED` with the object.
    Added(Value),
    /// `MODIFIED` with the object.
    Modified(Value),
    /// `DELETED` with the last state, stamped with the deletion's revision.
    Deleted(Value),
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
    initial: VecDeque<Value>,
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
                stream.initial = page.items.into();
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
    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj, &*self.info.strategy)
    }

    fn decode(kv: &KeyValue) -> Option<Value> {
        ObjectStore::decode(kv).ok()
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
            let prev = ev
                .prev
                .as_ref()
                .and_then(Self::decode)
                .filter(|p| self.matches(p));
            match ev.kind {
                EventKind::Put => {
                    let Some(obj) = Self::decode(&ev.kv) else {
                        continue;
                    };
                    let now = self.matches(&obj);
                    match (prev.is_some(), now) {
                        (false, true) => return Some(WatchEvent::Added(obj)),
                        (true, true) => return Some(WatchEvent::Modified(obj)),
                        (true, false) => return Some(WatchEvent::Deleted(obj)),
                        (false, false) => continue,
                    }
                }
                EventKind::Delete => {
                    if let Some(mut last) = prev {
                        meta::set_resource_version(&mut last, ev.kv.mod_revision);
                        return Some(WatchEvent::Deleted(last));
                    }
                }
            }
        }
    }
}
