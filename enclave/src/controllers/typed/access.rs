//! Typed access for the controllers: a kind's `k8s-openapi` struct over
//! [`Api`], so that controllers read and write `Pod`, `Node`, `Service`, …
//! instead of JSON pointers. Stored objects are canonical round trips of
//! these structs, so decoding them does not fail short of a bug (which is
//! reported as [`Error::Decode`]).

use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::super::Error;
use super::super::client::Api;
use crate::registry::generic::{DeleteOptions, Propagation};
use crate::registry::{ObjectStore, ResourceInfo};

/// One resource of the store, as `K`.
pub(crate) struct Typed<K> {
    api: Api,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Typed<K> {
    fn clone(&self) -> Self {
        Typed {
            api: self.api.clone(),
            kind: PhantomData,
        }
    }
}

impl<K> std::fmt::Debug for Typed<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Typed")
            .field("resource", &self.api.info().resource)
            .finish()
    }
}

/// Decodes a stored object as `K`.
fn decode<K: DeserializeOwned>(info: &ResourceInfo, v: Value) -> Result<K, Error> {
    let name = crate::registry::meta::name(&v).to_string();
    serde_json::from_value(v).map_err(|source| Error::Codec {
        resource: info.resource.clone(),
        name,
        source,
    })
}

impl<K: Serialize + DeserializeOwned> Typed<K> {
    /// `info` in `objects`.
    pub(crate) fn new(objects: ObjectStore, info: Arc<ResourceInfo>) -> Self {
        Typed {
            api: Api::new(objects, info),
            kind: PhantomData,
        }
    }

    /// The untyped access underneath.
    pub(crate) fn api(&self) -> &Api {
        &self.api
    }

    fn decode(&self, v: Value) -> Result<K, Error> {
        decode(self.api.info(), v)
    }

    fn encode(&self, k: &K) -> Result<Value, Error> {
        serde_json::to_value(k).map_err(|source| Error::Codec {
            resource: self.api.info().resource.clone(),
            name: String::new(),
            source,
        })
    }

    /// GET; `None` when it does not exist.
    pub(crate) async fn get(&self, ns: &str, name: &str) -> Result<Option<K>, Error> {
        self.api
            .get(ns, name)
            .await?
            .map(|v| self.decode(v))
            .transpose()
    }

    /// LIST everything in `ns` (every namespace when empty). An object that
    /// does not decode is logged and left out.
    pub(crate) async fn list(&self, ns: &str) -> Result<Vec<K>, Error> {
        Ok(self.decode_all(self.api.list(ns).await?))
    }

    /// LIST with a field selector (e.g. `spec.nodeName=n1`), as [`Typed::list`].
    pub(crate) async fn list_fields(&self, ns: &str, fields: &str) -> Result<Vec<K>, Error> {
        Ok(self.decode_all(self.api.list_fields(ns, fields).await?))
    }

    fn decode_all(&self, items: Vec<Value>) -> Vec<K> {
        items
            .into_iter()
            .filter_map(|v| match self.decode(v) {
                Ok(o) => Some(o),
                Err(e) => {
                    tracing::warn!(error = %e.one_line(), "skipping an object that does not decode");
                    None
                }
            })
            .collect()
    }

    /// POST.
    pub(crate) async fn create(&self, ns: &str, obj: &K) -> Result<K, Error> {
        let v = self.api.create(ns, self.encode(obj)?).await?;
        self.decode(v)
    }

    /// PUT of `obj`, conditional on its resourceVersion.
    pub(crate) async fn replace(&self, obj: &K) -> Result<K, Error> {
        let v = self.api.replace(self.encode(obj)?).await?;
        self.decode(v)
    }

    /// PUT of `obj` to `/status`, conditional on its resourceVersion.
    pub(crate) async fn replace_status(&self, obj: &K) -> Result<K, Error> {
        let v = self.api.replace_status(self.encode(obj)?).await?;
        self.decode(v)
    }

    /// Read-modify-write through `edit` (returning whether it changed
    /// anything), retried with the fresh object on concurrent writes.
    pub(crate) async fn edit(
        &self,
        ns: &str,
        name: &str,
        edit: impl Fn(&mut K) -> bool,
    ) -> Result<K, Error> {
        let info = self.api.info().clone();
        let v = self
            .api
            .edit(ns, name, |cur| typed_edit(&info, cur, &edit))
            .await?;
        self.decode(v)
    }

    /// Read-modify-write of `/status` through `edit`, as [`Typed::edit`].
    pub(crate) async fn edit_status(
        &self,
        ns: &str,
        name: &str,
        edit: impl Fn(&mut K) -> bool,
    ) -> Result<K, Error> {
        let info = self.api.info().clone();
        let v = self
            .api
            .edit_status(ns, name, |cur| typed_edit(&info, cur, &edit))
            .await?;
        self.decode(v)
    }

    /// DELETE with `opts`; a missing object is not an error.
    pub(crate) async fn delete(
        &self,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<(), Error> {
        self.api.delete_with(ns, name, opts).await
    }

    /// DELETE with `propagation`, conditional on `uid`; a missing object is
    /// not an error.
    pub(crate) async fn delete_propagating(
        &self,
        ns: &str,
        name: &str,
        uid: Option<&str>,
        propagation: Propagation,
    ) -> Result<(), Error> {
        self.api.delete(ns, name, uid, propagation).await
    }
}

fn typed_edit<K: Serialize + DeserializeOwned>(
    info: &ResourceInfo,
    cur: &Value,
    edit: &impl Fn(&mut K) -> bool,
) -> Option<Value> {
    let mut k: K = decode(info, cur.clone()).ok()?;
    if !edit(&mut k) {
        return None;
    }
    serde_json::to_value(&k).ok()
}
