//! DELETE: preconditions, finalizers, deletecollection and the namespace lifecycle.

use serde_json::{Value, json};

use super::{ListOptions, ObjectStore, write::parse_rv};
use crate::registry::{Error, ResourceInfo, Result, meta};
use crate::store::{RangeRequest, TxnOutcome};

/// `propagationPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    /// Delete now; dependents are collected afterwards (the default).
    #[default]
    Background,
    /// Dependents first: the object gets the `foregroundDeletion`
    /// finalizer and stays until the garbage collector has deleted its
    /// blocking dependents.
    Foreground,
    /// Leave dependents: the object gets the `orphan` finalizer and stays
    /// until the garbage collector has removed it from their ownerReferences.
    Orphan,
}

/// `DeleteOptions` as far as the registry uses them.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `propagationPolicy`.
    pub propagation: Propagation,
    /// `gracePeriodSeconds`.
    pub grace_period_seconds: Option<i64>,
    /// `dryRun=All`.
    pub dry_run: bool,
    /// Who deletes, for admission; `None` for the control plane's own writers.
    pub user: Option<crate::registry::UserInfo>,
}

/// What a DELETE did.
#[derive(Debug, Clone)]
pub enum DeleteOutcome {
    /// The object is gone; respond with this Status (or the object, for
    /// kinds that return deleted objects).
    Deleted {
        /// The last state of the object.
        object: Value,
        /// `Status{Success}` with details.
        status: Value,
    },
    /// The object is marked for deletion (finalizers pending); respond 200 with it.
    Pending(Value),
}

/// The finalizer upstream's API server adds for the garbage collector
/// (`orphan` or `foregroundDeletion`); the collector in
/// `crate::controllers` removes it once the dependents are orphaned or
/// deleted. Namespaces keep their own lifecycle.
fn gc_finalizer(info: &ResourceInfo, propagation: Propagation) -> Option<&'static str> {
    if info.group.is_empty() && info.resource == "namespaces" {
        return None;
    }
    match propagation {
        Propagation::Background => None,
        Propagation::Orphan => Some("orphan"),
        Propagation::Foreground => Some("foregroundDeletion"),
    }
}

/// What a DELETE does about the object's grace period (upstream's `rest.BeforeDelete`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grace {
    /// No grace period (the kind has none, or it has run out): delete, or wait for the
    /// finalizers.
    Now,
    /// A grace period is running and the request does not shorten it: nothing changes.
    Pending,
    /// Start the grace period, or shorten the running one, to this many seconds.
    Mark(i64),
}

fn graceful_deletion(info: &ResourceInfo, obj: &Value, requested: Option<i64>) -> Grace {
    // Negative periods count as one second on the delete path.
    let requested = requested.map(|g| if g < 0 { 1 } else { g });
    if meta::meta_str(obj, "deletionTimestamp").is_none() {
        return info
            .strategy
            .graceful_deletion_period(obj, requested)
            .map_or(Grace::Now, Grace::Mark);
    }
    let running = obj
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .filter(|g| *g > 0);
    match (running, requested) {
        // Marked without a grace period (or with 0): a DELETE that failed half-way, or
        // finalizers; it goes now (or when they are done).
        (None, _) => Grace::Now,
        // Only a shorter period may be asked for.
        (Some(current), Some(p)) if p < current => Grace::Mark(p),
        (Some(_), _) => Grace::Pending,
    }
}

/// Marks `obj` for deletion in `period` seconds: a first mark counts from now, a shorter
/// period counts from when the running one started (as upstream's `BeforeDelete`). A first
/// mark also bumps `metadata.generation` where the kind keeps one, and adds the garbage
/// collector's finalizer the request asks for.
fn mark_graceful(obj: &mut Value, period: i64, gc_finalizer: Option<&'static str>) {
    let started = match (
        meta::meta_str(obj, "deletionTimestamp").and_then(|t| t.parse::<jiff::Timestamp>().ok()),
        obj.pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64),
    ) {
        (Some(at), Some(running)) => Some(
            at.checked_sub(jiff::SignedDuration::from_secs(running))
                .unwrap_or(at),
        ),
        _ => None,
    };
    let first = started.is_none();
    let from = started.unwrap_or_else(meta::now);
    let at = from
        .checked_add(jiff::SignedDuration::from_secs(period))
        .unwrap_or(from);
    let Some(m) = meta::metadata_mut(obj) else {
        return;
    };
    m.insert(
        "deletionTimestamp".into(),
        Value::String(meta::format_time(at)),
    );
    m.insert("deletionGracePeriodSeconds".into(), Value::from(period));
    if first
        && let Some(generation) = m
            .get("generation")
            .and_then(Value::as_i64)
            .filter(|g| *g > 0)
    {
        m.insert("generation".into(), Value::from(generation + 1));
    }
    if let Some(f) = gc_finalizer {
        let list = m.entry("finalizers").or_insert_with(|| json!([]));
        if let Some(list) = list.as_array_mut()
            && !list.iter().any(|x| x.as_str() == Some(f))
        {
            list.push(Value::String(f.to_string()));
        }
    }
}

impl ObjectStore {
    /// DELETE one object. Kinds with a grace period (pods on a node) are marked with
    /// `deletionTimestamp` and stay until a DELETE with grace period 0 comes (the kubelet's,
    /// once their containers are stopped), as upstream's `Store.Delete`.
    ///
    /// # Errors
    /// 404 NotFound; 409 Conflict when a precondition fails.
    pub async fn delete(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<DeleteOutcome> {
        let want_rv = parse_rv(opts.resource_version.as_deref())?;
        loop {
            let Some(kv) = self.get_kv(info, ns, name).await? else {
                return Err(Self::not_found(info, name));
            };
            let obj = Self::decode(&kv)?;
            let uid = meta::meta_str(&obj, "uid").unwrap_or("").to_string();
            let precondition = |message: String| Error::Conflict {
                group: info.group.to_string(),
                resource: info.resource.to_string(),
                name: name.to_string(),
                message,
            };
            if let Some(want) = opts.uid.as_deref().filter(|u| *u != uid) {
                return Err(precondition(format!(
                    "Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"
                )));
            }
            if let Some(want) = want_rv.filter(|r| *r != kv.mod_revision) {
                return Err(precondition(format!(
                    "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {}",
                    kv.mod_revision
                )));
            }
            let request = crate::admission::Request {
                operation: crate::admission::Operation::Delete,
                info,
                subresource: None,
                namespace: ns,
                name,
                request_name: name,
                user: opts.user.as_ref(),
                dry_run: opts.dry_run,
                old: Some(&obj),
            };
            let mut out = crate::admission::Outcome::default();
            self.admission()
                .validate(self, &request, &obj, &mut out)
                .await?;
            let has_finalizers = obj
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
            let gc_finalizer = gc_finalizer(info, opts.propagation);
            let kind_finalizer = info.strategy.deletion_finalizer();
            match graceful_deletion(info, &obj, opts.grace_period_seconds) {
                Grace::Now => {}
                Grace::Pending => return Ok(DeleteOutcome::Pending(obj)),
                Grace::Mark(period) if period > 0 || has_finalizers => {
                    let mut marked = obj.clone();
                    mark_graceful(&mut marked, period, gc_finalizer);
                    if opts.dry_run {
                        return Ok(DeleteOutcome::Pending(marked));
                    }
                    let bytes = Self::encode(&marked)?;
                    match self
                        .store
                        .update(&info.key(ns, name), &bytes, kv.mod_revision)
                        .await?
                    {
                        TxnOutcome::Committed { revision, .. } => {
                            meta::set_resource_version(&mut marked, revision);
                            return Ok(DeleteOutcome::Pending(marked));
                        }
                        TxnOutcome::Failed { .. } => continue,
                    }
                }
                // A grace period of 0 and nothing to wait for: deleted now.
                Grace::Mark(_) => {}
            }
            if has_finalizers || gc_finalizer.is_some() || kind_finalizer.is_some() {
                if meta::meta_str(&obj, "deletionTimestamp").is_some() || opts.dry_run {
                    return Ok(DeleteOutcome::Pending(obj));
                }
                let mut marked = obj.clone();
                if let Some(m) = meta::metadata_mut(&mut marked) {
                    m.insert(
                        "deletionTimestamp".into(),
                        Value::String(meta::format_time(meta::now())),
                    );
                    m.insert("deletionGracePeriodSeconds".into(), Value::from(0));
                    for f in gc_finalizer.into_iter().chain(kind_finalizer) {
                        let list = m.entry("finalizers").or_insert_with(|| json!([]));
                        if let Some(list) = list.as_array_mut()
                            && !list.iter().any(|x| x.as_str() == Some(f))
                        {
                            list.push(Value::String(f.to_string()));
                        }
                    }
                }
                if kind_finalizer.is_some() {
                    info.strategy.prepare_for_deletion(&mut marked);
                }
                let bytes = Self::encode(&marked)?;
                let key = info.key(ns, name);
                match self.store.update(&key, &bytes, kv.mod_revision).await? {
                    TxnOutcome::Committed { revision, .. } => {
                        meta::set_resource_version(&mut marked, revision);
                        return Ok(DeleteOutcome::Pending(marked));
                    }
                    TxnOutcome::Failed { .. } => continue,
                }
            }
            let status = json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "group": info.group, "kind": info.resource, "uid": uid},
            });
            if opts.dry_run {
                return Ok(DeleteOutcome::Deleted {
                    object: obj,
                    status,
                });
            }
            let mut expected = Some(kv.mod_revision);
            if info.group.is_empty() && info.resource == "namespaces" {
                self.empty_namespace(name).await?;
                // The namespace was just rewritten as Terminating; it goes now.
                expected = None;
            }
            match self.store.delete(&info.key(ns, name), expected).await? {
                TxnOutcome::Committed { .. } => {
                    self.after_delete(info, &obj).await;
                    return Ok(DeleteOutcome::Deleted {
                        object: obj,
                        status,
                    });
                }
                TxnOutcome::Failed { .. } if want_rv.is_some() => {
                    return Err(Self::conflict(info, name));
                }
                TxnOutcome::Failed { .. } => continue,
            }
        }
    }

    /// DELETE on a collection (`deletecollection`): lists what `list`
    /// selects in `ns` (None: every namespace, or a cluster-scoped kind) at
    /// one revision, then deletes each object with `opts`, as upstream's
    /// `Store.DeleteCollection`. Objects already gone are skipped; objects
    /// held by finalizers are marked and returned as they now are. Returns
    /// the deleted (or marked) objects.
    ///
    /// # Errors
    /// 400 for bad selectors or a resourceVersion precondition (upstream
    /// rejects preconditions on collections), the first delete error other
    /// than NotFound, 500 if the store fails.
    pub async fn delete_collection(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        list: &ListOptions,
        opts: &DeleteOptions,
    ) -> Result<Vec<Value>> {
        if opts.uid.is_some() || opts.resource_version.is_some() {
            return Err(Error::BadRequest(
                "preconditions are not supported on a collection delete".into(),
            ));
        }
        let all = ListOptions {
            limit: 0,
            continue_token: None,
            ..list.clone()
        };
        let page = self.list(info, ns, &all).await?;
        let mut deleted = Vec::with_capacity(page.items.len());
        for item in &page.items {
            let item_ns = info
                .namespaced()
                .then(|| meta::namespace(item))
                .filter(|n| !n.is_empty());
            match self.delete(info, item_ns, meta::name(item), opts).await {
                Ok(DeleteOutcome::Deleted { object, .. } | DeleteOutcome::Pending(object)) => {
                    deleted.push(object);
                }
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }

    /// Namespace deletion: marks the namespace Terminating (so creates in it
    /// fail with 403), then deletes every namespaced object in it.
    async fn empty_namespace(&self, ns: &str) -> Result<()> {
        let Some(nsinfo) = self.table().lookup("", "v1", "namespaces") else {
            return Ok(());
        };
        // Written directly: the namespace strategy keeps `status` on ordinary updates.
        loop {
            let Some(kv) = self.get_kv(&nsinfo, None, ns).await? else {
                return Ok(());
            };
            let mut o = Self::decode(&kv)?;
            o["status"] = json!({"phase": "Terminating"});
            if let Some(m) = meta::metadata_mut(&mut o) {
                m.insert(
                    "deletionTimestamp".into(),
                    Value::String(meta::format_time(meta::now())),
                );
            }
            let bytes = Self::encode(&o)?;
            let key = nsinfo.key(None, ns);
            if let TxnOutcome::Committed { .. } =
                self.store.update(&key, &bytes, kv.mod_revision).await?
            {
                break;
            }
        }
        for info in self
            .table()
            .iter()
            .filter(|r| r.namespaced() && r.is_stored())
        {
            let prefix = info.key_prefix(Some(ns));
            let store = self.store.clone();
            let page =
                tokio::task::spawn_blocking(move || store.range(&RangeRequest::prefix(prefix)))
                    .await
                    .map_err(|e| Error::Store(crate::store::StoreError::Closed(e.to_string())))??;
            for kv in page.kvs {
                if let TxnOutcome::Committed { .. } = self.store.delete(&kv.key, None).await?
                    && let Ok(obj) = Self::decode(&kv)
                {
                    self.after_delete(info, &obj).await;
                }
            }
        }
        Ok(())
    }
}
