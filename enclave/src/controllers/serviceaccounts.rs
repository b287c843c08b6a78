//! The service account controller (upstream `pkg/controller/serviceaccount`):
//! every active namespace has a ServiceAccount named `default`, created
//! when the namespace appears and again if it is deleted.

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::Error;
use super::runtime::{Action, Reconciler};
use super::typed::Typed;
use crate::registry::{WatchEvent, meta};

/// The ServiceAccount every namespace gets.
pub(crate) const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// Whether a namespace takes new objects (not being deleted).
pub(crate) fn is_active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
}

/// The service account controller; its keys are namespace names.
#[derive(Debug)]
pub(crate) struct ServiceAccountController {
    namespaces: Typed<Namespace>,
    accounts: Typed<ServiceAccount>,
}

impl ServiceAccountController {
    /// Watches 0: namespaces, 1: serviceaccounts.
    pub(crate) fn new(namespaces: Typed<Namespace>, accounts: Typed<ServiceAccount>) -> Self {
        ServiceAccountController {
            namespaces,
            accounts,
        }
    }
}

impl Reconciler for ServiceAccountController {
    type Key = String;
    const NAME: &'static str = "serviceaccount";

    async fn keys_for(&mut self, kind: usize, event: &WatchEvent) -> Vec<String> {
        match (kind, event) {
            (0, WatchEvent::Added(o) | WatchEvent::Modified(o)) => vec![meta::name(o).to_string()],
            (1, WatchEvent::Deleted(o)) if meta::name(o) == DEFAULT_SERVICE_ACCOUNT => {
                vec![meta::namespace(o).to_string()]
            }
            _ => Vec::new(),
        }
    }

    async fn reconcile(&mut self, ns: &String) -> Result<Action, Error> {
        let Some(namespace) = self.namespaces.get("", ns).await? else {
            return Ok(Action::await_change());
        };
        if !is_active(&namespace)
            || self
                .accounts
                .get(ns, DEFAULT_SERVICE_ACCOUNT)
                .await?
                .is_some()
        {
            return Ok(Action::await_change());
        }
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(DEFAULT_SERVICE_ACCOUNT.into()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        match self.accounts.create(ns, &sa).await {
            Ok(_) => Ok(Action::await_change()),
            Err(e) if e.is_already_exists() || e.is_namespace_terminating() => {
                Ok(Action::await_change())
            }
            Err(e) => Err(e),
        }
    }
}
