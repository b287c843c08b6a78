//! What every namespace has, as kube-controller-manager's service account
//! controller and root CA publisher make it: a `default` ServiceAccount
//! (recreated if deleted) and the `kube-root-ca.crt` ConfigMap with the CA
//! that signs the API server's certificate (what the projected token volume
//! mounts as `ca.crt`). Nothing is added to a terminating namespace.

use std::sync::Arc;

use serde_json::{Value, json};

use super::Error;
use super::client::{Api, is_deleting};
use super::runtime::{Action, Reconciler};
use crate::admission::serviceaccount::{DEFAULT_SERVICE_ACCOUNT, ROOT_CA_CONFIGMAP};
use crate::registry::{ObjectStore, ResourceInfo, WatchEvent, meta};

/// Upstream's description annotation of the root CA ConfigMap.
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// The namespace defaults controller.
#[derive(Debug)]
pub(crate) struct NamespaceDefaults {
    namespaces: Api,
    accounts: Api,
    configmaps: Api,
    ca_pem: String,
}

impl NamespaceDefaults {
    /// Keeps `default` and `kube-root-ca.crt` (with `ca_pem`) in every namespace.
    pub(crate) fn new(
        objects: &ObjectStore,
        kinds: [Arc<ResourceInfo>; 3],
        ca_pem: String,
    ) -> Self {
        let [namespaces, accounts, configmaps] = kinds;
        NamespaceDefaults {
            namespaces: Api::new(objects.clone(), namespaces),
            accounts: Api::new(objects.clone(), accounts),
            configmaps: Api::new(objects.clone(), configmaps),
            ca_pem,
        }
    }

    fn root_ca(&self, ns: &str) -> Value {
        json!({
            "metadata": {
                "name": ROOT_CA_CONFIGMAP,
                "namespace": ns,
                "annotations": {"kubernetes.io/description": DESCRIPTION},
            },
            "data": {"ca.crt": self.ca_pem},
        })
    }
}

impl Reconciler for NamespaceDefaults {
    type Key = String;

    const NAME: &'static str = "namespace-defaults";

    async fn keys_for(&mut self, kind: usize, event: &WatchEvent) -> Vec<String> {
        let (WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o)) = event
        else {
            return Vec::new();
        };
        match kind {
            0 if !matches!(event, WatchEvent::Deleted(_)) => vec![meta::name(o).to_string()],
            1 if meta::name(o) == DEFAULT_SERVICE_ACCOUNT => vec![meta::namespace(o).to_string()],
            2 if meta::name(o) == ROOT_CA_CONFIGMAP => vec![meta::namespace(o).to_string()],
            _ => Vec::new(),
        }
    }

    async fn reconcile(&mut self, ns: &String) -> Result<Action, Error> {
        let Some(namespace) = self.namespaces.get("", ns).await? else {
            return Ok(Action::await_change());
        };
        if is_deleting(&namespace) {
            return Ok(Action::await_change());
        }
        let gone_or_forbidden =
            |e: &Error| e.is_already_exists() || e.is_forbidden() || e.is_not_found();
        if self
            .accounts
            .get(ns, DEFAULT_SERVICE_ACCOUNT)
            .await?
            .is_none()
        {
            let sa = json!({"metadata": {"name": DEFAULT_SERVICE_ACCOUNT, "namespace": ns}});
            match self.accounts.create(ns, sa).await {
                Ok(_) => {}
                Err(e) if gone_or_forbidden(&e) => {}
                Err(e) => return Err(e),
            }
        }
        let want = self.root_ca(ns);
        match self.configmaps.get(ns, ROOT_CA_CONFIGMAP).await? {
            None => match self.configmaps.create(ns, want).await {
                Ok(_) => {}
                Err(e) if gone_or_forbidden(&e) => {}
                Err(e) => return Err(e),
            },
            Some(cm) if cm.get("data") != want.get("data") => {
                let data = want["data"].clone();
                self.configmaps
                    .edit(ns, ROOT_CA_CONFIGMAP, |cur| {
                        let mut out = cur.clone();
                        out["data"] = data.clone();
                        Some(out)
                    })
                    .await?;
            }
            Some(_) => {}
        }
        Ok(Action::await_change())
    }
}
