//! The built-in plugins of this module as slots of the admission chain
//! ([`crate::admission::Chain`]): NamespaceLifecycle's protection of the
//! system namespaces, LimitRanger, Priority, DefaultTolerationSeconds and
//! ResourceQuota. [`builtin_chain`] is what every [`ObjectStore`] runs
//! unless given another chain; the enclave adds the plugins that need its
//! keys and policy (ServiceAccount, NodeRestriction, PodSecurity, RBAC, the
//! certificate plugins) to the same chain.

use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use super::{is_core, limit_ranger, priority, quota, tolerations, typed, untyped, usage};
use crate::admission::{Chain, Operation, Outcome, Plugin, Request, Slot};
use crate::registry::{ObjectStore, Result};

/// The plugins that need nothing but the store, each in its slot.
pub fn builtin_chain() -> Chain {
    Chain::new()
        .with(Slot::NamespaceLifecycle, Arc::new(NamespaceLifecycle))
        .with(Slot::LimitRanger, Arc::new(LimitRanger))
        .with(Slot::Priority, Arc::new(Priority))
        .with(
            Slot::DefaultTolerationSeconds,
            Arc::new(DefaultTolerationSeconds),
        )
        .with(Slot::ResourceQuota, Arc::new(ResourceQuota))
}

/// Upstream's NamespaceLifecycle, the part that is admission here: the
/// system namespaces may not be deleted (content in a missing or
/// terminating namespace is refused by the store's create itself).
#[derive(Debug, Clone, Copy)]
pub struct NamespaceLifecycle;

impl Plugin for NamespaceLifecycle {
    fn validate<'a>(
        &'a self,
        _objects: &'a ObjectStore,
        req: &'a Request<'a>,
        _obj: &'a Value,
        _out: &'a mut Outcome,
    ) -> BoxFuture<'a, Result<()>> {
        let result = if req.operation == Operation::Delete {
            super::validate_delete(req.info, req.name)
        } else {
            Ok(())
        };
        Box::pin(std::future::ready(result))
    }
}

/// Upstream's LimitRanger for pods being created: the namespace's
/// LimitRange defaults, then its min, max and ratio checks.
#[derive(Debug, Clone, Copy)]
pub struct LimitRanger;

impl Plugin for LimitRanger {
    fn admit<'a>(
        &'a self,
        objects: &'a ObjectStore,
        req: &'a Request<'a>,
        obj: &'a mut Value,
        _out: &'a mut Outcome,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let Some(ns) = creating_pod_in(req) else {
                return Ok(());
            };
            let ranges = limit_ranger::limit_ranges(objects, ns).await?;
            if ranges.is_empty() {
                return Ok(());
            }
            let mut pod: Pod = typed(obj)?;
            limit_ranger::apply_defaults(&ranges, &mut pod);
            untyped(&pod, obj)
        })
    }

    fn validate<'a>(
        &'a self,
        objects: &'a ObjectStore,
        req: &'a Request<'a>,
        obj: &'a Value,
        _out: &'a mut Outcome,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match creating_pod_in(req) {
                Some(ns) => {
                    limit_ranger::validate(objects, req.info, ns, obj, req.request_name).await
                }
                None => Ok(()),
            }
        })
    }
}

/// Upstream's Priority: a pod's priority from its PriorityClass, and at
/// most one global default PriorityClass.
#[derive(Debug, Clone, Copy)]
pub struct Priority;

impl Plugin for Priority {
    fn admit<'a>(
        &'a self,
        objects: &'a ObjectStore,
        req: &'a Request<'a>,
        obj: &'a mut Value,
        _out: &'a mut Outcome,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if req.subresource.is_some() {
                return Ok(());
            }
            match req.operation {
                Operation::Create => priority::admit_create(objects, req.info, obj).await,
                Operation::Update if priority::admits_updates(req.info) => {
                    priority::admit_update(objects, req.info, obj).await
                }
                _ => Ok(()),
            }
        })
    }
}

/// Upstream's DefaultTolerationSeconds: pods (created or updated) tolerate the
/// `not-ready` and `unreachable` NoExecute taints for the configured time unless they say
/// otherwise.
#[derive(Debug, Clone, Copy)]
pub struct DefaultTolerationSeconds;

impl Plugin for DefaultTolerationSeconds {
    fn admit<'a>(
        &'a self,
        objects: &'a ObjectStore,
        req: &'a Request<'a>,
        obj: &'a mut Value,
        _out: &'a mut Outcome,
    ) -> BoxFuture<'a, Result<()>> {
        // On updates too, as upstream's plugin: a manifest sent again without them
        // (`kubectl replace`) gets the same tolerations back.
        let writing_pod = matches!(req.operation, Operation::Create | Operation::Update)
            && req.subresource.is_none()
            && is_core(req.info, "pods");
        let result = if writing_pod {
            tolerations::admit_pod(objects.admission_options(), obj)
        } else {
            Ok(())
        };
        Box::pin(std::future::ready(result))
    }
}

/// Upstream's ResourceQuota: a create that would exceed a quota of its
/// namespace is refused, else charged (not on a dry run).
#[derive(Debug, Clone, Copy)]
pub struct ResourceQuota;

impl Plugin for ResourceQuota {
    fn validate<'a>(
        &'a self,
        objects: &'a ObjectStore,
        req: &'a Request<'a>,
        obj: &'a Value,
        _out: &'a mut Outcome,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let ns = req.namespace.filter(|_| req.info.namespaced());
            match (req.operation, ns, req.subresource) {
                (Operation::Create, Some(ns), None) => {
                    quota::admit(objects, req.info, ns, obj, req.request_name, req.dry_run).await
                }
                _ => Ok(()),
            }
        })
    }
}

/// Whether `req` creates a pod (not through a subresource).
fn creating_pod(req: &Request<'_>) -> bool {
    req.operation == Operation::Create && req.subresource.is_none() && is_core(req.info, "pods")
}

/// The namespace of a pod being created.
fn creating_pod_in<'a>(req: &Request<'a>) -> Option<&'a str> {
    req.namespace.filter(|_| creating_pod(req))
}

/// A created pod's `status.qosClass`, from its containers after the
/// mutating plugins (upstream's pod strategy sets it on create).
///
/// # Errors
/// 400 on a pod that does not decode.
pub(crate) fn set_qos_class(req: &Request<'_>, obj: &mut Value) -> Result<()> {
    if req.operation != Operation::Create || !is_core(req.info, "pods") {
        return Ok(());
    }
    let pod: Pod = typed(obj)?;
    let qos = usage::qos_class(&pod);
    // The class alone is written: re-encoding the whole pod would change nothing else.
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        status.insert("qosClass".into(), Value::String(qos.into()));
    }
    Ok(())
}
