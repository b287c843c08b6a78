//! The garbage collector (upstream `pkg/controller/garbagecollector`), in
//! small: it watches every stored kind, keeps an index from owner uid to
//! dependents, and when an owner is gone deletes dependents all of whose
//! owners are gone (background propagation). It also serves the two
//! finalizers the API server puts on owners deleted with another policy:
//! `orphan` (strip the owner from its dependents' ownerReferences, then
//! let the owner go) and `foregroundDeletion` (delete the dependents that
//! block the owner, in foreground themselves, then let the owner go).
//!
//! Unlike upstream there is no graph of virtual nodes and no cycle
//! detection between foreground deletions. When custom resources come or
//! go, the collector starts over from a fresh list of every served kind.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::Error;
use super::client::{Api, is_deleting, text, uid};
use super::runtime::{self, Action, Reconciler};
use crate::registry::generic::Propagation;
use crate::registry::{ObjectStore, ResourceInfo, WatchEvent, meta};
use tokio_util::sync::CancellationToken;

/// The finalizer of an owner deleted with `propagationPolicy=Orphan`.
pub(crate) const ORPHAN: &str = "orphan";
/// The finalizer of an owner deleted with `propagationPolicy=Foreground`.
pub(crate) const FOREGROUND: &str = "foregroundDeletion";

/// An object of one watched kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct GcKey {
    kind: usize,
    namespace: String,
    name: String,
}

/// One ownerReference, as far as the collector needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OwnerRef {
    uid: String,
    api_version: String,
    kind: String,
    name: String,
    block: bool,
}

/// An object with ownerReferences.
#[derive(Debug, Clone)]
struct Dependent {
    key: GcKey,
    owners: Vec<OwnerRef>,
}

/// The garbage collector.
#[derive(Debug)]
pub(crate) struct GarbageCollector {
    objects: ObjectStore,
    kinds: Vec<Arc<ResourceInfo>>,
    /// Objects with owners, by their uid.
    dependents: HashMap<String, Dependent>,
    /// Owner uid → dependent uids.
    by_owner: HashMap<String, HashSet<String>>,
}

fn owner_refs(obj: &Value) -> Vec<OwnerRef> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .map(|r| OwnerRef {
                    uid: text(r, "/uid").to_string(),
                    api_version: text(r, "/apiVersion").to_string(),
                    kind: text(r, "/kind").to_string(),
                    name: text(r, "/name").to_string(),
                    block: r.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn has_finalizer(obj: &Value, f: &str) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|fs| fs.iter().any(|x| x.as_str() == Some(f)))
}

/// `obj` without the finalizer `f` (`None` if it does not have it).
fn without_finalizer(obj: &Value, f: &str) -> Option<Value> {
    let mut next = obj.clone();
    let fs = next.pointer_mut("/metadata/finalizers")?.as_array_mut()?;
    let before = fs.len();
    fs.retain(|x| x.as_str() != Some(f));
    (fs.len() != before).then_some(next)
}

/// `obj` without the ownerReferences whose uid is in `uids`.
fn without_owners(obj: &Value, uids: &[String]) -> Option<Value> {
    let mut next = obj.clone();
    let refs = next
        .pointer_mut("/metadata/ownerReferences")?
        .as_array_mut()?;
    let before = refs.len();
    refs.retain(|r| {
        !uids
            .iter()
            .any(|u| r.get("uid").and_then(Value::as_str) == Some(u))
    });
    (refs.len() != before).then_some(next)
}

/// Runs the collector over every kind `objects` serves until `stop`, and
/// again from a fresh list whenever custom resources change that set: a
/// custom resource can own objects and be owned, and one deleted in
/// foreground or orphan mode waits for the collector.
pub(crate) async fn run(objects: ObjectStore, stop: CancellationToken) {
    let mut swaps = objects.table_swaps();
    loop {
        let (gc, watched) = GarbageCollector::new(objects.clone());
        let served: Vec<(&str, &str, &str)> = watched
            .iter()
            .map(|k| (k.group.as_str(), k.version.as_str(), k.resource.as_str()))
            .collect();
        let this_run = stop.child_token();
        let mut running = tokio::spawn(runtime::run(
            gc,
            objects.clone(),
            watched.clone(),
            this_run.clone(),
        ));
        loop {
            tokio::select! {
                _ = &mut running => return,
                swapped = swaps.changed() => {
                    if swapped.is_err() {
                        this_run.cancel();
                        let _ = running.await;
                        return;
                    }
                }
            }
            let now = GarbageCollector::watched_kinds(&objects);
            let unchanged = now
                .iter()
                .map(|k| (k.group.as_str(), k.version.as_str(), k.resource.as_str()))
                .eq(served.iter().copied());
            if !unchanged {
                break;
            }
        }
        tracing::debug!("served resources changed; the garbage collector lists them again");
        this_run.cancel();
        let _ = running.await;
    }
}

impl GarbageCollector {
    /// The kinds the collector watches: every stored kind but events, which
    /// own nothing.
    fn watched_kinds(objects: &ObjectStore) -> Vec<Arc<ResourceInfo>> {
        objects
            .table()
            .iter()
            .filter(|r| r.is_stored() && r.resource != "events")
            .cloned()
            .collect()
    }

    /// A collector over `objects` and the kinds it watches.
    pub(crate) fn new(objects: ObjectStore) -> (Self, Vec<Arc<ResourceInfo>>) {
        let kinds = Self::watched_kinds(&objects);
        let gc = GarbageCollector {
            objects,
            kinds: kinds.clone(),
            dependents: HashMap::new(),
            by_owner: HashMap::new(),
        };
        (gc, kinds)
    }

    fn api(&self, kind: usize) -> Option<Api> {
        self.kinds
            .get(kind)
            .map(|info| Api::new(self.objects.clone(), info.clone()))
    }

    /// The watched kind an ownerReference names.
    fn kind_of(&self, r: &OwnerRef) -> Option<usize> {
        let (group, version) = r
            .api_version
            .rsplit_once('/')
            .unwrap_or(("", &r.api_version));
        self.kinds
            .iter()
            .position(|k| k.group == group && k.version == version && k.kind == r.kind)
    }

    /// The key of the owner `r` of an object in `namespace`.
    fn owner_key(&self, r: &OwnerRef, namespace: &str) -> Option<GcKey> {
        let kind = self.kind_of(r)?;
        let namespace = if self.kinds.get(kind)?.namespaced() {
            namespace.to_string()
        } else {
            String::new()
        };
        Some(GcKey {
            kind,
            namespace,
            name: r.name.clone(),
        })
    }

    fn forget(&mut self, dep_uid: &str) {
        if let Some(old) = self.dependents.remove(dep_uid) {
            for o in old.owners {
                if let Some(set) = self.by_owner.get_mut(&o.uid) {
                    set.remove(dep_uid);
                    if set.is_empty() {
                        self.by_owner.remove(&o.uid);
                    }
                }
            }
        }
    }

    /// Records `obj`'s owners; true if they changed.
    fn index(&mut self, key: &GcKey, obj: &Value) -> bool {
        let id = uid(obj).to_string();
        let owners = owner_refs(obj);
        if self.dependents.get(&id).map(|d| &d.owners) == Some(&owners) {
            return false;
        }
        self.forget(&id);
        if owners.is_empty() {
            return true;
        }
        for o in &owners {
            self.by_owner
                .entry(o.uid.clone())
                .or_default()
                .insert(id.clone());
        }
        self.dependents.insert(
            id,
            Dependent {
                key: key.clone(),
                owners,
            },
        );
        true
    }

    /// Dependents of `owner_uid` as the index knows them.
    fn dependents_of(&self, owner_uid: &str) -> Vec<(GcKey, bool)> {
        self.by_owner
            .get(owner_uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.dependents.get(d))
            .map(|d| {
                let block = d.owners.iter().any(|o| o.uid == owner_uid && o.block);
                (d.key.clone(), block)
            })
            .collect()
    }

    /// upstream's `attemptToDeleteItem` for an object that is not being
    /// deleted: drop owners that are gone if a live owner remains, else
    /// delete it (in foreground if an owner waits for its dependents).
    async fn attempt_to_delete(&self, key: &GcKey, obj: &Value) -> Result<(), Error> {
        let owners = owner_refs(obj);
        if owners.is_empty() {
            return Ok(());
        }
        let (mut solid, mut dangling, mut waiting) = (0, Vec::new(), Vec::new());
        for o in &owners {
            let Some(okey) = self.owner_key(o, &key.namespace) else {
                // A kind this server does not serve: leave it be, as
                // upstream does while it cannot resolve the owner.
                solid += 1;
                continue;
            };
            let owner = match self.api(okey.kind) {
                Some(api) => api.get(&okey.namespace, &okey.name).await?,
                None => None,
            };
            match owner {
                Some(owner) if uid(&owner) == o.uid => {
                    if is_deleting(&owner) && has_finalizer(&owner, FOREGROUND) {
                        waiting.push(o.uid.clone());
                    } else {
                        solid += 1;
                    }
                }
                _ => dangling.push(o.uid.clone()),
            }
        }
        let Some(api) = self.api(key.kind) else {
            return Ok(());
        };
        if solid > 0 {
            let mut gone = dangling;
            gone.extend(waiting);
            if !gone.is_empty() {
                tracing::debug!(object = %key.name, "removing owners that are gone");
                match api
                    .edit(&key.namespace, &key.name, |cur| without_owners(cur, &gone))
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(());
        }
        let policy = if !waiting.is_empty() || has_finalizer(obj, FOREGROUND) {
            Propagation::Foreground
        } else if has_finalizer(obj, ORPHAN) {
            Propagation::Orphan
        } else {
            Propagation::Background
        };
        tracing::debug!(resource = %api.info().resource, object = %key.name, ?policy, "collecting");
        api.delete(&key.namespace, &key.name, Some(uid(obj)), policy)
            .await
    }

    /// An owner deleted with Orphan: strip it from its dependents, then
    /// remove the finalizer.
    async fn orphan_dependents(&self, key: &GcKey, owner: &Value) -> Result<(), Error> {
        let owner_uid = uid(owner).to_string();
        for (dep, _) in self.dependents_of(&owner_uid) {
            let Some(api) = self.api(dep.kind) else {
                continue;
            };
            let uids = [owner_uid.clone()];
            match api
                .edit(&dep.namespace, &dep.name, |cur| without_owners(cur, &uids))
                .await
            {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        self.remove_finalizer(key, ORPHAN).await
    }

    /// An owner deleted in foreground: deletes its blocking dependents,
    /// and lets it go once none is left.
    async fn delete_dependents(&self, key: &GcKey, owner: &Value) -> Result<(), Error> {
        let blocking: Vec<GcKey> = self
            .dependents_of(uid(owner))
            .into_iter()
            .filter_map(|(k, block)| block.then_some(k))
            .collect();
        if blocking.is_empty() {
            return self.remove_finalizer(key, FOREGROUND).await;
        }
        for dep in blocking {
            let Some(api) = self.api(dep.kind) else {
                continue;
            };
            if let Some(obj) = api.get(&dep.namespace, &dep.name).await?
                && !is_deleting(&obj)
            {
                self.attempt_to_delete(&dep, &obj).await?;
            }
        }
        // The dependents' DELETED events bring the owner back here.
        Ok(())
    }

    async fn remove_finalizer(&self, key: &GcKey, f: &str) -> Result<(), Error> {
        let Some(api) = self.api(key.kind) else {
            return Ok(());
        };
        match api
            .edit(&key.namespace, &key.name, |cur| without_finalizer(cur, f))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Reconciler for GarbageCollector {
    type Key = GcKey;
    const NAME: &'static str = "garbagecollector";

    async fn keys_for(&mut self, kind: usize, event: &WatchEvent) -> Vec<GcKey> {
        let (obj, deleted) = match event {
            WatchEvent::Added(o) | WatchEvent::Modified(o) => (o, false),
            WatchEvent::Deleted(o) => (o, true),
            _ => return Vec::new(),
        };
        let key = GcKey {
            kind,
            namespace: meta::namespace(obj).to_string(),
            name: meta::name(obj).to_string(),
        };
        let id = uid(obj).to_string();
        let mut keys = Vec::new();
        if deleted {
            // Its dependents may now be orphans, and an owner waiting in
            // foreground may have lost its last blocking dependent.
            keys.extend(self.dependents_of(&id).into_iter().map(|(k, _)| k));
            for o in owner_refs(obj) {
                keys.extend(self.owner_key(&o, &key.namespace));
            }
            self.forget(&id);
            return keys;
        }
        let changed = self.index(&key, obj);
        let pending_finalizer =
            is_deleting(obj) && (has_finalizer(obj, ORPHAN) || has_finalizer(obj, FOREGROUND));
        if (changed && !owner_refs(obj).is_empty()) || pending_finalizer {
            keys.push(key);
        }
        keys
    }

    async fn reconcile(&mut self, key: &GcKey) -> Result<Action, Error> {
        let Some(api) = self.api(key.kind) else {
            return Ok(Action::await_change());
        };
        let Some(obj) = api.get(&key.namespace, &key.name).await? else {
            return Ok(Action::await_change());
        };
        if is_deleting(&obj) {
            if has_finalizer(&obj, ORPHAN) {
                self.orphan_dependents(key, &obj).await?;
            } else if has_finalizer(&obj, FOREGROUND) {
                self.delete_dependents(key, &obj).await?;
            }
            return Ok(Action::await_change());
        }
        self.attempt_to_delete(key, &obj).await?;
        Ok(Action::await_change())
    }
}
