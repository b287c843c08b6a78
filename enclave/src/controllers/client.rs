//! The controllers' access to the API objects: [`ObjectStore`] calls with
//! the controllers' field manager and errors that say what was being done,
//! plus small accessors for the JSON objects.

use std::sync::Arc;

use serde_json::Value;

use super::{Error, FIELD_MANAGER};
use crate::registry::generic::{Endpoint, Propagation};
use crate::registry::{DeleteOptions, ListOptions, ObjectStore, ResourceInfo, WriteOptions, meta};

/// The resources the workload controllers read and write.
#[derive(Debug, Clone)]
pub(crate) struct Kinds {
    /// core/v1 pods.
    pub(crate) pods: Arc<ResourceInfo>,
    /// apps/v1 replicasets.
    pub(crate) replicasets: Arc<ResourceInfo>,
    /// apps/v1 deployments.
    pub(crate) deployments: Arc<ResourceInfo>,
    /// core/v1 events, which the controllers record.
    pub(crate) events: Arc<ResourceInfo>,
}

/// One resource of the store, as the controllers use it.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    objects: ObjectStore,
    info: Arc<ResourceInfo>,
}

fn opts() -> WriteOptions {
    WriteOptions {
        manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    }
}

impl Api {
    /// `info` in `objects`.
    pub(crate) fn new(objects: ObjectStore, info: Arc<ResourceInfo>) -> Self {
        Api { objects, info }
    }

    /// The resource.
    pub(crate) fn info(&self) -> &Arc<ResourceInfo> {
        &self.info
    }

    fn err(
        &self,
        verb: &'static str,
        ns: &str,
        name: &str,
    ) -> impl FnOnce(crate::registry::Error) -> Error {
        let resource = self.info.resource.clone();
        let namespace = ns.to_string();
        let name = name.to_string();
        move |source| Error::Api {
            verb,
            resource,
            namespace,
            name,
            source: Box::new(source),
        }
    }

    fn ns<'a>(&self, ns: &'a str) -> Option<&'a str> {
        (self.info.namespaced() && !ns.is_empty()).then_some(ns)
    }

    /// `obj` as the registry would store it (decoded and re-encoded
    /// through its typed struct), so a controller can tell whether a
    /// write would change anything without making it.
    pub(crate) fn canonical(&self, obj: &Value) -> Value {
        self.info
            .strategy
            .canonicalize(obj)
            .map_or_else(|_| obj.clone(), |c| c.value)
    }

    /// GET; `None` when it does not exist.
    pub(crate) async fn get(&self, ns: &str, name: &str) -> Result<Option<Value>, Error> {
        match self.objects.get(&self.info, self.ns(ns), name).await {
            Ok(v) => Ok(Some(v)),
            Err(crate::registry::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("get", ns, name)(e)),
        }
    }

    /// LIST everything in `ns` (every namespace when empty).
    pub(crate) async fn list(&self, ns: &str) -> Result<Vec<Value>, Error> {
        let page = self
            .objects
            .list(&self.info, self.ns(ns), &ListOptions::default())
            .await
            .map_err(self.err("list", ns, ""))?;
        Ok(page.items)
    }

    /// POST.
    pub(crate) async fn create(&self, ns: &str, body: Value) -> Result<Value, Error> {
        let name = meta::name(&body).to_string();
        let w = self
            .objects
            .create(&self.info, self.ns(ns), body, &opts())
            .await
            .map_err(self.err("create", ns, &name))?;
        Ok(w.object)
    }

    /// PUT of `obj`, conditional on its resourceVersion.
    pub(crate) async fn replace(&self, obj: Value) -> Result<Value, Error> {
        self.replace_at(Endpoint::Main, obj).await
    }

    /// PUT of `obj` to `/status`, conditional on its resourceVersion.
    pub(crate) async fn replace_status(&self, obj: Value) -> Result<Value, Error> {
        self.replace_at(Endpoint::Status, obj).await
    }

    async fn replace_at(&self, endpoint: Endpoint, obj: Value) -> Result<Value, Error> {
        let ns = meta::namespace(&obj).to_string();
        let name = meta::name(&obj).to_string();
        let w = self
            .objects
            .update_at(endpoint, &self.info, self.ns(&ns), &name, obj, &opts())
            .await
            .map_err(self.err("update", &ns, &name))?;
        Ok(w.object)
    }

    /// Read-modify-write of the current object through `edit`, retried on
    /// concurrent writes; `edit` returning `None` leaves it as it is.
    pub(crate) async fn edit(
        &self,
        ns: &str,
        name: &str,
        edit: impl Fn(&Value) -> Option<Value>,
    ) -> Result<Value, Error> {
        let w = self
            .objects
            .patch(&self.info, self.ns(ns), name, &opts(), |cur| {
                Ok(edit(cur).unwrap_or_else(|| cur.clone()))
            })
            .await
            .map_err(self.err("update", ns, name))?;
        Ok(w.object)
    }

    /// Read-modify-write of the current object's `/status` through `edit`,
    /// retried on concurrent writes; `edit` returning `None` leaves it.
    pub(crate) async fn edit_status(
        &self,
        ns: &str,
        name: &str,
        edit: impl Fn(&Value) -> Option<Value>,
    ) -> Result<Value, Error> {
        let w = self
            .objects
            .patch_at(
                Endpoint::Status,
                &self.info,
                self.ns(ns),
                name,
                &opts(),
                |cur| Ok(edit(cur).unwrap_or_else(|| cur.clone())),
            )
            .await
            .map_err(self.err("update", ns, name))?;
        Ok(w.object)
    }

    /// LIST in `ns` (every namespace when empty) with a field selector
    /// such as `spec.nodeName=n1`.
    pub(crate) async fn list_fields(&self, ns: &str, fields: &str) -> Result<Vec<Value>, Error> {
        let selector = crate::registry::FieldSelector::parse(fields, &*self.info.strategy)
            .map_err(self.err("list", ns, ""))?;
        let page = self
            .objects
            .list(
                &self.info,
                self.ns(ns),
                &ListOptions {
                    fields: selector,
                    ..Default::default()
                },
            )
            .await
            .map_err(self.err("list", ns, ""))?;
        Ok(page.items)
    }

    /// DELETE with `opts`; a missing object is not an error.
    pub(crate) async fn delete_with(
        &self,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<(), Error> {
        match self
            .objects
            .delete(&self.info, self.ns(ns), name, opts)
            .await
        {
            Ok(_) | Err(crate::registry::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("delete", ns, name)(e)),
        }
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
        let opts = DeleteOptions {
            uid: uid.map(str::to_string),
            propagation,
            ..Default::default()
        };
        self.delete_with(ns, name, &opts).await
    }
}

/// The integer at `ptr`, 0 when absent.
pub(crate) fn int(obj: &Value, ptr: &str) -> i64 {
    obj.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// The string at `ptr`, "" when absent.
pub(crate) fn text<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// `metadata.uid`.
pub(crate) fn uid(obj: &Value) -> &str {
    text(obj, "/metadata/uid")
}

/// Whether `metadata.deletionTimestamp` is set.
pub(crate) fn is_deleting(obj: &Value) -> bool {
    meta::meta_str(obj, "deletionTimestamp").is_some()
}

/// An annotation's value.
pub(crate) fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// Sets an annotation, creating the map if needed.
pub(crate) fn set_annotation(obj: &mut Value, key: &str, value: &str) {
    if let Some(m) = meta::metadata_mut(obj) {
        let a = m
            .entry("annotations")
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if !a.is_object() {
            *a = Value::Object(serde_json::Map::new());
        }
        if let Some(a) = a.as_object_mut() {
            a.insert(key.to_string(), Value::String(value.to_string()));
        }
    }
}

/// Orders objects oldest first by creationTimestamp (RFC 3339 in UTC with
/// second precision sorts as text), then by name, as upstream's
/// `ByCreationTimestamp`.
pub(crate) fn by_creation(a: &Value, b: &Value) -> std::cmp::Ordering {
    let ts = |o: &Value| text(o, "/metadata/creationTimestamp").to_string();
    ts(a)
        .cmp(&ts(b))
        .then_with(|| meta::name(a).cmp(meta::name(b)))
}
