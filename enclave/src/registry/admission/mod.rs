//! Admission: what kube-apiserver's built-in admission plugins do to a
//! write after it is decoded and before it is stored, for the plugins this
//! control plane has so far:
//!
//! - `NamespaceLifecycle`'s protection of the system namespaces
//!   (`validate_delete`): `default`, `kube-system`, `kube-public` and
//!   `kube-node-lease` may not be deleted;
//! - `DefaultTolerationSeconds` (`tolerations`): pods tolerate the
//!   `not-ready` and `unreachable` NoExecute taints for 300 s unless they
//!   say otherwise;
//! - `LimitRanger` (`limit_ranger`): LimitRange defaults for container
//!   requests and limits, then its min, max and ratio checks;
//! - `Priority` (`priority`): a pod's `spec.priority` and
//!   `preemptionPolicy` from its PriorityClass or the global default, at
//!   most one global default PriorityClass;
//! - `ResourceQuota` (`quota`): refuses a create that would exceed a
//!   quota of the namespace and charges the quota's `status.used` for it,
//!   with a compare-and-swap write, so that concurrent creates cannot both
//!   take the last unit.
//!
//! Each is a plugin in its slot of the admission chain
//! ([`crate::admission::Chain`], [`builtin_chain`]), which runs inside
//! [`crate::registry::ObjectStore`]'s create, update and delete, so writes by the controllers
//! are admitted exactly as API requests are (upstream's controllers go
//! through the API server too). Mutations happen before the recording of
//! managed fields (they are the request's), checks after validation. Quota
//! charges only creates (pod resource updates and service type changes are
//! not charged).

pub(crate) mod limit_ranger;
mod plugins;
pub mod priority;
pub(crate) mod quota;
pub(crate) mod tolerations;
pub(crate) mod usage;

use serde_json::Value;

use super::{Error, ResourceInfo, Result};

pub(crate) use plugins::set_qos_class;
pub use plugins::{
    DefaultTolerationSeconds, LimitRanger, NamespaceLifecycle, Priority, ResourceQuota,
    builtin_chain,
};
pub use priority::ensure_system_priority_classes;

/// The namespaces upstream's `NamespaceLifecycle` never lets go
/// (kube-apiserver's immortal namespaces plus the node lease namespace).
pub const IMMORTAL_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Settings of the admission plugins, each a kube-apiserver flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionOptions {
    /// `--default-not-ready-toleration-seconds` (300).
    pub not_ready_toleration_seconds: i64,
    /// `--default-unreachable-toleration-seconds` (300).
    pub unreachable_toleration_seconds: i64,
}

impl Default for AdmissionOptions {
    fn default() -> Self {
        AdmissionOptions {
            not_ready_toleration_seconds: 300,
            unreachable_toleration_seconds: 300,
        }
    }
}

/// Whether `info` is core/v1 `resource`.
pub(crate) fn is_core(info: &ResourceInfo, resource: &str) -> bool {
    info.group.is_empty() && info.resource == resource
}

/// upstream's `admission.NewForbidden` for a request on `info` named `name`.
pub(crate) fn forbidden(info: &ResourceInfo, name: &str, why: String) -> Error {
    Error::ForbiddenObject {
        qualified: info.qualified(),
        group: info.group.to_string(),
        resource: info.resource.to_string(),
        name: name.to_string(),
        why,
    }
}

/// Decodes `obj` as the typed `T` (the registry stores canonical objects,
/// so this fails only on a bug).
pub(crate) fn typed<T: serde::de::DeserializeOwned>(obj: &Value) -> Result<T> {
    // From the reference: a clone of the whole tree would cost as much as the decode.
    T::deserialize(obj)
        .map_err(|e| Error::BadRequest(format!("decoding the object for admission: {e}")))
}

/// Encodes a typed object back into `obj`.
pub(crate) fn untyped<T: serde::Serialize>(t: &T, obj: &mut Value) -> Result<()> {
    *obj = serde_json::to_value(t)
        .map_err(|e| Error::BadRequest(format!("encoding the admitted object: {e}")))?;
    Ok(())
}

/// The checks on a DELETE of `name`: the system namespaces stay.
///
/// # Errors
/// 403 `namespaces "default" is forbidden: this namespace may not be deleted`.
pub(crate) fn validate_delete(info: &ResourceInfo, name: &str) -> Result<()> {
    if is_core(info, "namespaces") && IMMORTAL_NAMESPACES.contains(&name) {
        return Err(forbidden(
            info,
            name,
            "this namespace may not be deleted".into(),
        ));
    }
    Ok(())
}
