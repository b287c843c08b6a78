//! The controllers' typed view of the API: [`Typed`] reads and writes
//! objects as their `k8s-openapi` types over the same
//! [`super::client::Api`] calls the JSON controllers use (field manager,
//! optimistic concurrency, errors that say what was being done), plus typed
//! ownership ([`owner`]) and pod ([`pod`]) helpers after upstream's
//! `pkg/controller` utilities.

mod access;
pub(crate) mod owner;
pub(crate) mod pod;

pub(crate) use access::Typed;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::events::{EventRecorder, EventType};

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
