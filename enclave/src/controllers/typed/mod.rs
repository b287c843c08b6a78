//! The controllers' typed view of the API: [`TypedApi`] reads and writes
//! objects as their `k8s-openapi` types over the same [`Api`] calls the
//! JSON controllers use (field manager, optimistic concurrency, errors that
//! say what was being done), plus typed ownership ([`owner`]) and pod
//! ([`pod`]) helpers after upstream's `pkg/controller` utilities.

mod access;
pub(crate) mod owner;
pub(crate) mod pod;

pub(crate) use access::Typed;

use std::marker::PhantomData;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Error;
use super::client::Api;
use super::events::{EventRecorder, EventType};
use crate::registry::generic::Propagation;
use crate::registry::{ObjectStore, ResourceInfo, meta};

/// An API object the typed controllers handle: a `k8s-openapi` resource
/// with standard object metadata.
pub(crate) trait Object:
    k8s_openapi::Metadata<Ty = ObjectMeta>
    + Serialize
    + DeserializeOwned
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> Object for T where
    T: k8s_openapi::Metadata<Ty = ObjectMeta>
        + Serialize
        + DeserializeOwned
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// One resource of the store, read and written as `K`.
#[derive(Debug)]
pub(crate) struct TypedApi<K> {
    api: Api,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for TypedApi<K> {
    fn clone(&self) -> Self {
        TypedApi {
            api: self.api.clone(),
            kind: PhantomData,
        }
    }
}

/// The name of `obj`.
pub(crate) fn name<K: Object>(obj: &K) -> &str {
    obj.metadata().name.as_deref().unwrap_or("")
}

/// The namespace of `obj`.
pub(crate) fn namespace<K: Object>(obj: &K) -> &str {
    obj.metadata().namespace.as_deref().unwrap_or("")
}

/// The uid of `obj`.
pub(crate) fn uid<K: Object>(obj: &K) -> &str {
    obj.metadata().uid.as_deref().unwrap_or("")
}

/// Whether `obj` has a deletionTimestamp.
pub(crate) fn is_deleting<K: Object>(obj: &K) -> bool {
    obj.metadata().deletion_timestamp.is_some()
}

impl<K: Object> TypedApi<K> {
    /// `info` in `objects`.
    pub(crate) fn new(objects: ObjectStore, info: Arc<ResourceInfo>) -> Self {
        TypedApi {
            api: Api::new(objects, info),
            kind: PhantomData,
        }
    }

    fn decode(&self, v: Value) -> Result<K, Error> {
        let name = meta::name(&v).to_string();
        serde_json::from_value(v).map_err(|source| Error::Codec {
            resource: self.api.info().resource,
            name,
            source,
        })
    }

    fn encode(&self, obj: &K) -> Result<Value, Error> {
        serde_json::to_value(obj).map_err(|source| Error::Codec {
            resource: self.api.info().resource,
            name: name(obj).to_string(),
            source,
        })
    }

    /// GET; `None` when it does not exist.
    pub(crate) async fn get(&self, ns: &str, name: &str) -> Result<Option<K>, Error> {
        match self.api.get(ns, name).await? {
            Some(v) => self.decode(v).map(Some),
            None => Ok(None),
        }
    }

    /// LIST everything in `ns` (every namespace when empty). An object
    /// that does not decode is logged and left out.
    pub(crate) async fn list(&self, ns: &str) -> Result<Vec<K>, Error> {
        let items = self.api.list(ns).await?;
        Ok(items
            .into_iter()
            .filter_map(|v| match self.decode(v) {
                Ok(o) => Some(o),
                Err(e) => {
                    tracing::warn!(error = %e.one_line(), "skipping an object that does not decode");
                    None
                }
            })
            .collect())
    }

    /// POST.
    pub(crate) async fn create(&self, ns: &str, obj: &K) -> Result<K, Error> {
        let body = self.encode(obj)?;
        let created = self.api.create(ns, body).await?;
        self.decode(created)
    }

    /// PUT, conditional on `obj`'s resourceVersion.
    pub(crate) async fn replace(&self, obj: &K) -> Result<K, Error> {
        let body = self.encode(obj)?;
        let written = self.api.replace(body).await?;
        self.decode(written)
    }

    /// PUT to `/status`, conditional on `obj`'s resourceVersion.
    pub(crate) async fn replace_status(&self, obj: &K) -> Result<K, Error> {
        let body = self.encode(obj)?;
        let written = self.api.replace_status(body).await?;
        self.decode(written)
    }

    /// Read-modify-write of the current object through `edit`, retried on
    /// concurrent writes (each try sees the object as it is then); `edit`
    /// returning `None` leaves it as it is.
    pub(crate) async fn edit(
        &self,
        ns: &str,
        name: &str,
        edit: impl Fn(&K) -> Option<K>,
    ) -> Result<K, Error> {
        let written = self
            .api
            .edit(ns, name, |cur| {
                let typed: K = serde_json::from_value(cur.clone()).ok()?;
                serde_json::to_value(edit(&typed)?).ok()
            })
            .await?;
        self.decode(written)
    }

    /// DELETE with `propagation`, conditional on `uid`; a missing object
    /// is not an error.
    pub(crate) async fn delete(
        &self,
        ns: &str,
        name: &str,
        uid: Option<&str>,
        propagation: Propagation,
    ) -> Result<(), Error> {
        self.api.delete(ns, name, uid, propagation).await
    }
}

/// Records an Event about the typed object `obj` (which must carry its
/// apiVersion and kind, as `k8s-openapi` objects serialise them).
pub(crate) async fn record<K: Object>(
    events: &EventRecorder,
    obj: &K,
    ty: EventType,
    reason: &str,
    message: &str,
) {
    match serde_json::to_value(obj) {
        Ok(v) => events.record(&v, ty, reason, message).await,
        Err(e) => tracing::warn!(error = %e, reason, "could not encode an event's object"),
    }
}
