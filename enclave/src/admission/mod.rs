//! Admission: the plugins every write passes through after authorization,
//! whoever makes it (API clients and the enclave's own controllers alike),
//! in upstream's order: NamespaceLifecycle, LimitRanger, ServiceAccount,
//! NodeRestriction, PodSecurity, Priority, DefaultTolerationSeconds, the
//! certificate plugins, MutatingAdmissionWebhook, ValidatingAdmissionPolicy,
//! ValidatingAdmissionWebhook, ResourceQuota. Each has a named [`Slot`];
//! a [`Chain`] holds at most one plugin per slot and runs them in slot
//! order: every plugin's mutating [`Plugin::admit`] first, then, after the
//! kind's own validation, every plugin's [`Plugin::validate`] (upstream's
//! mutating then validating phases).
//!
//! The [`crate::registry::ObjectStore`] runs its chain on create, update
//! (each try of the optimistic loop) and delete. Plugins live where their
//! knowledge does: [`serviceaccount`], [`podsecurity`], [`webhook`] and [`policy`] here, the RBAC
//! escalation check in `crate::api::authz::escalation`, NodeRestriction in
//! `crate::api::authz::restriction`, the plugins that need only the store
//! (NamespaceLifecycle, LimitRanger, Priority, DefaultTolerationSeconds,
//! ResourceQuota) in [`crate::registry::admission`], whose
//! [`crate::registry::admission::builtin_chain`] every store starts with.

mod matching;
pub mod podsecurity;
pub mod policy;
pub mod serviceaccount;
pub mod webhook;

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::registry::{ObjectStore, ResourceInfo, Result, UserInfo};

/// Upstream's admission operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// POST (and apply creating an object).
    Create,
    /// PUT, PATCH, apply.
    Update,
    /// DELETE.
    Delete,
}

impl Operation {
    /// `CREATE`, `UPDATE`, `DELETE`, as audit and webhooks spell them.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
}

/// What a plugin is asked about (upstream's `admission.Attributes`).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The operation.
    pub operation: Operation,
    /// The resource.
    pub info: &'a ResourceInfo,
    /// The subresource written through (`status`, `scale`, ...), if any.
    pub subresource: Option<&'a str>,
    /// The namespace (None for cluster-scoped resources).
    pub namespace: Option<&'a str>,
    /// The object's name.
    pub name: &'a str,
    /// What messages call the object: its name, or on a create the
    /// `generateName` prefix before a name was generated (as upstream).
    pub request_name: &'a str,
    /// Who writes; `None` for the control plane's own writers.
    pub user: Option<&'a UserInfo>,
    /// `dryRun=All`.
    pub dry_run: bool,
    /// The stored object before an update or delete.
    pub old: Option<&'a Value>,
}

impl Request<'_> {
    /// Whether the request is about `group`'s `resource` (no subresource).
    pub fn is(&self, group: &str, resource: &str) -> bool {
        self.info.group == group && self.info.resource == resource && self.subresource.is_none()
    }
}

/// The upstream admission plugins, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    /// RBAC's escalation prevention. Upstream runs it in the RBAC storage,
    /// before the kind's validation; here it is the first validating step.
    RbacEscalation,
    /// Namespaces: no content in terminating namespaces, system namespaces
    /// cannot be deleted.
    NamespaceLifecycle,
    /// LimitRange defaults and limits.
    LimitRanger,
    /// Default service account and its projected token volume.
    ServiceAccount,
    /// What nodes may write.
    NodeRestriction,
    /// Pod Security Standards per namespace.
    PodSecurity,
    /// A pod's priority from its PriorityClass.
    Priority,
    /// Default `tolerationSeconds` for the not-ready and unreachable taints.
    DefaultTolerationSeconds,
    /// CertificateApproval, CertificateSigning and
    /// CertificateSubjectRestriction: who may approve and sign
    /// CertificateSigningRequests of a signer, and no `system:masters`
    /// client certificates.
    Certificates,
    /// MutatingAdmissionWebhook: the mutating webhooks of the cluster's configurations.
    MutatingAdmissionWebhook,
    /// ValidatingAdmissionPolicy: the CEL policies the cluster's bindings apply.
    ValidatingAdmissionPolicy,
    /// ValidatingAdmissionWebhook: the validating webhooks of the cluster's configurations.
    ValidatingAdmissionWebhook,
    /// ResourceQuota usage.
    ResourceQuota,
}

impl Slot {
    /// Upstream's plugin name.
    pub fn name(self) -> &'static str {
        match self {
            Slot::RbacEscalation => "RBAC",
            Slot::NamespaceLifecycle => "NamespaceLifecycle",
            Slot::LimitRanger => "LimitRanger",
            Slot::ServiceAccount => "ServiceAccount",
            Slot::NodeRestriction => "NodeRestriction",
            Slot::PodSecurity => "PodSecurity",
            Slot::Priority => "Priority",
            Slot::DefaultTolerationSeconds => "DefaultTolerationSeconds",
            Slot::Certificates => "CertificateApproval",
            Slot::MutatingAdmissionWebhook => "MutatingAdmissionWebhook",
            Slot::ValidatingAdmissionPolicy => "ValidatingAdmissionPolicy",
            Slot::ValidatingAdmissionWebhook => "ValidatingAdmissionWebhook",
            Slot::ResourceQuota => "ResourceQuota",
        }
    }
}

/// What plugins add to a successful write.
#[derive(Debug, Default)]
pub struct Outcome {
    /// `Warning` headers (PodSecurity's warn mode, ...).
    pub warnings: Vec<String>,
}

/// One admission plugin. Both phases default to accepting.
pub trait Plugin: Send + Sync + fmt::Debug {
    /// Mutates `obj` (upstream's `MutationInterface.Admit`).
    ///
    /// # Errors
    /// The error the request fails with (usually 403 Forbidden).
    fn admit<'a>(
        &'a self,
        _objects: &'a ObjectStore,
        _req: &'a Request<'a>,
        _obj: &'a mut Value,
        _out: &'a mut Outcome,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Checks `obj` (upstream's `ValidationInterface.Validate`).
    ///
    /// # Errors
    /// The error the request fails with (usually 403 Forbidden).
    fn validate<'a>(
        &'a self,
        _objects: &'a ObjectStore,
        _req: &'a Request<'a>,
        _obj: &'a Value,
        _out: &'a mut Outcome,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The plugins of the chain, one per slot, in slot order.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    plugins: Vec<(Slot, Arc<dyn Plugin>)>,
}

impl Chain {
    /// No plugins: every write is admitted as it is.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts `plugin` in `slot` (replacing what was there).
    #[must_use]
    pub fn with(mut self, slot: Slot, plugin: Arc<dyn Plugin>) -> Self {
        self.plugins.retain(|(s, _)| *s != slot);
        self.plugins.push((slot, plugin));
        self.plugins.sort_by_key(|(s, _)| *s);
        self
    }

    /// The filled slots, in order.
    pub fn slots(&self) -> Vec<Slot> {
        self.plugins.iter().map(|(s, _)| *s).collect()
    }

    /// Whether no plugin is installed.
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    /// The mutating phase.
    ///
    /// # Errors
    /// The first plugin's refusal.
    pub async fn admit(
        &self,
        objects: &ObjectStore,
        req: &Request<'_>,
        obj: &mut Value,
        out: &mut Outcome,
    ) -> Result<()> {
        for (_, p) in &self.plugins {
            p.admit(objects, req, obj, out).await?;
        }
        Ok(())
    }

    /// The validating phase.
    ///
    /// # Errors
    /// The first plugin's refusal.
    pub async fn validate(
        &self,
        objects: &ObjectStore,
        req: &Request<'_>,
        obj: &Value,
        out: &mut Outcome,
    ) -> Result<()> {
        for (_, p) in &self.plugins {
            p.validate(objects, req, obj, out).await?;
        }
        Ok(())
    }
}

tokio::task_local! {
    static ANNOTATIONS: RefCell<Vec<(String, String)>>;
}

/// Records an audit annotation for the request being served (PodSecurity's
/// `pod-security.kubernetes.io/audit-violations`, ...). Outside
/// [`with_annotations`] it is dropped.
pub fn annotate(key: &str, value: String) {
    let _ = ANNOTATIONS.try_with(|a| a.borrow_mut().push((key.to_string(), value)));
}

/// Runs `f`, collecting the audit annotations recorded while it runs.
pub async fn with_annotations<F: std::future::Future>(f: F) -> (F::Output, Vec<(String, String)>) {
    ANNOTATIONS
        .scope(RefCell::new(Vec::new()), async move {
            let out = f.await;
            let annotations = ANNOTATIONS.with(|a| std::mem::take(&mut *a.borrow_mut()));
            (out, annotations)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Nothing;
    impl Plugin for Nothing {}

    #[test]
    fn slots_keep_upstream_order() {
        let chain = Chain::new()
            .with(Slot::ResourceQuota, Arc::new(Nothing))
            .with(Slot::ServiceAccount, Arc::new(Nothing))
            .with(Slot::NamespaceLifecycle, Arc::new(Nothing))
            .with(Slot::PodSecurity, Arc::new(Nothing))
            .with(Slot::ServiceAccount, Arc::new(Nothing));
        assert_eq!(
            chain.slots(),
            vec![
                Slot::NamespaceLifecycle,
                Slot::ServiceAccount,
                Slot::PodSecurity,
                Slot::ResourceQuota
            ]
        );
    }

    #[tokio::test]
    async fn annotations_are_collected_per_request() {
        annotate("dropped", "outside".into());
        let ((), a) = with_annotations(async { annotate("k", "v".into()) }).await;
        assert_eq!(a, vec![("k".to_string(), "v".to_string())]);
    }
}
