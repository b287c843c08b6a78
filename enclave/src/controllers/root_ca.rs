//! The root CA publisher (upstream `pkg/controller/certificates/rootcacertpublisher`):
//! every active namespace has a ConfigMap `kube-root-ca.crt` whose `ca.crt`
//! is the CA the API server's serving certificate chains to, so pods can
//! verify `kubernetes.default.svc`. Edits and deletions are undone.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::Error;
use super::runtime::{Action, Reconciler};
use super::serviceaccounts::is_active;
use super::typed::Typed;
use crate::registry::{WatchEvent, meta};

/// The ConfigMap's name.
pub(crate) const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";

/// The annotation upstream describes the ConfigMap with.
const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";

/// upstream's description, word for word.
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// The publisher; its keys are namespace names.
#[derive(Debug)]
pub(crate) struct RootCaPublisher {
    namespaces: Typed<Namespace>,
    config_maps: Typed<ConfigMap>,
    ca_pem: String,
}

impl RootCaPublisher {
    /// Publishes `ca_pem`; watches 0: namespaces, 1: configmaps.
    pub(crate) fn new(
        namespaces: Typed<Namespace>,
        config_maps: Typed<ConfigMap>,
        ca_pem: String,
    ) -> Self {
        RootCaPublisher {
            namespaces,
            config_maps,
            ca_pem,
        }
    }

    fn data(&self) -> BTreeMap<String, String> {
        BTreeMap::from([("ca.crt".to_string(), self.ca_pem.clone())])
    }
}

impl Reconciler for RootCaPublisher {
    type Key = String;
    const NAME: &'static str = "root_ca_cert_publisher";

    async fn keys_for(&mut self, kind: usize, event: &WatchEvent) -> Vec<String> {
        match (kind, event) {
            (0, WatchEvent::Added(o) | WatchEvent::Modified(o)) => vec![meta::name(o).to_string()],
            (1, WatchEvent::Modified(o) | WatchEvent::Deleted(o))
                if meta::name(o) == ROOT_CA_CONFIG_MAP =>
            {
                vec![meta::namespace(o).to_string()]
            }
            _ => Vec::new(),
        }
    }

    async fn reconcile(&mut self, ns: &String) -> Result<Action, Error> {
        let Some(namespace) = self.namespaces.get("", ns).await? else {
            return Ok(Action::await_change());
        };
        if !is_active(&namespace) {
            return Ok(Action::await_change());
        }
        let data = self.data();
        let result = match self.config_maps.get(ns, ROOT_CA_CONFIG_MAP).await? {
            None => {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(ROOT_CA_CONFIG_MAP.into()),
                        namespace: Some(ns.clone()),
                        annotations: Some(BTreeMap::from([(
                            DESCRIPTION_ANNOTATION.to_string(),
                            DESCRIPTION.to_string(),
                        )])),
                        ..Default::default()
                    },
                    data: Some(data),
                    ..Default::default()
                };
                self.config_maps.create(ns, &cm).await.map(|_| ())
            }
            Some(cm) => {
                let described = cm
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
                    .is_some_and(|d| d == DESCRIPTION);
                if cm.data.as_ref() == Some(&data) && described {
                    return Ok(Action::await_change());
                }
                self.config_maps
                    .edit(ns, ROOT_CA_CONFIG_MAP, |cm| {
                        cm.data = Some(data.clone());
                        cm.metadata
                            .annotations
                            .get_or_insert_with(BTreeMap::new)
                            .insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
                        true
                    })
                    .await
                    .map(|_| ())
            }
        };
        match result {
            Ok(()) => Ok(Action::await_change()),
            Err(e) if e.is_already_exists() || e.is_not_found() || e.is_namespace_terminating() => {
                // Someone raced us; the watch brings it back here if needed.
                Ok(Action::await_change())
            }
            Err(e) => Err(e),
        }
    }
}
