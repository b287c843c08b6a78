//! LIST: selectors, `limit`/`continue` at one revision, resourceVersion semantics.

use serde_json::{Value, json};

use super::ObjectStore;
use crate::registry::{Error, FieldSelector, LabelSelector, ResourceInfo, Result};
use crate::store::{ContinueToken, RangeRequest, StoreError};

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

/// One page of matching objects.
#[derive(Debug, Clone)]
pub struct ListPage {
    /// The matching objects.
    pub items: Vec<Value>,
    /// The list's resourceVersion (the revision read).
    pub revision: u64,
    /// The continue token, if there are more.
    pub continue_token: Option<String>,
}

impl ListPage {
    /// The list metadata object.
    pub fn list_meta(&self) -> Value {
        let mut m = json!({"resourceVersion": self.revision.to_string()});
        if let Some(c) = &self.continue_token {
            m["continue"] = Value::String(c.clone());
        }
        m
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
        let store = self.store.clone();
        let limit = opts.limit;
        let (labels, fields) = (opts.labels.clone(), opts.fields.clone());
        let strategy_info = self
            .table()
            .lookup(info.group, info.version, info.resource)
            .ok_or_else(|| Error::BadRequest(format!("unknown resource {}", info.resource)))?;
        let resuming = token.is_some();
        let page = tokio::task::spawn_blocking(move || -> Result<ListPage> {
            let mut items = Vec::new();
            let mut req = RangeRequest::prefix(prefix);
            if let Some(r) = at {
                req = req.at_revision(r);
            }
            if let Some(t) = token {
                req = req.continuing(t);
            }
            loop {
                let want = if limit == 0 { 0 } else { limit - items.len() };
                let resp = store.range(&req.clone().with_limit(want))?;
                for kv in &resp.kvs {
                    let obj = ObjectStore::decode(kv)?;
                    if labels.matches(&obj) && fields.matches(&obj, &*strategy_info.strategy) {
                        items.push(obj);
                    }
                }
                match resp.next {
                    Some(next) if limit == 0 || items.len() < limit => {
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
        })
        .await
        .map_err(|e| Error::Store(StoreError::Closed(e.to_string())))?;
        match page {
            Err(Error::Expired(_)) if resuming => Err(Error::Expired(EXPIRED_CONTINUE.into())),
            other => other,
        }
    }
}
