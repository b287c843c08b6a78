//! Reads through [`PodObjects`] for one sync of one pod, each object fetched once, with
//! upstream's error messages for what is missing.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, Secret, Service};

use super::api::PodObjects;
use crate::runtime::{Error, Result};

/// Why a container cannot get its configuration yet (its Waiting message under
/// `CreateContainerConfigError`, or a volume's mount failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError(pub(crate) String);

/// A per-sync cache over the objects seam.
pub(crate) struct ObjectCache<'a> {
    api: &'a dyn PodObjects,
    namespace: &'a str,
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
    services: HashMap<String, Vec<Service>>,
}

impl std::fmt::Debug for ObjectCache<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectCache")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl<'a> ObjectCache<'a> {
    pub(crate) fn new(api: &'a dyn PodObjects, namespace: &'a str) -> Self {
        Self {
            api,
            namespace,
            config_maps: HashMap::new(),
            secrets: HashMap::new(),
            services: HashMap::new(),
        }
    }

    pub(crate) fn namespace(&self) -> &str {
        self.namespace
    }

    pub(crate) fn api(&self) -> &'a dyn PodObjects {
        self.api
    }

    /// The configmap, or upstream's not-found message.
    pub(crate) async fn config_map(
        &mut self,
        name: &str,
    ) -> Result<Result<&ConfigMap, ConfigError>> {
        if !self.config_maps.contains_key(name) {
            let found = self
                .api
                .config_map(self.namespace, name)
                .await
                .map_err(Error::Api)?;
            self.config_maps.insert(name.to_owned(), found);
        }
        Ok(self
            .config_maps
            .get(name)
            .and_then(Option::as_ref)
            .ok_or_else(|| ConfigError(format!("configmap \"{name}\" not found"))))
    }

    /// The secret, or upstream's not-found message.
    pub(crate) async fn secret(&mut self, name: &str) -> Result<Result<&Secret, ConfigError>> {
        if !self.secrets.contains_key(name) {
            let found = self
                .api
                .secret(self.namespace, name)
                .await
                .map_err(Error::Api)?;
            self.secrets.insert(name.to_owned(), found);
        }
        Ok(self
            .secrets
            .get(name)
            .and_then(Option::as_ref)
            .ok_or_else(|| ConfigError(format!("secret \"{name}\" not found"))))
    }

    /// The volume bound to the claim `name`, or the kubelet's message for why there is none
    /// yet (the pod waits and its next sync looks again).
    pub(crate) async fn claimed_volume(
        &mut self,
        name: &str,
    ) -> Result<Result<PersistentVolume, ConfigError>> {
        let ns = self.namespace;
        let Some(claim) = self
            .api
            .persistent_volume_claim(ns, name)
            .await
            .map_err(Error::Api)?
        else {
            return Ok(Err(ConfigError(format!(
                "persistentvolumeclaim \"{name}\" not found"
            ))));
        };
        let volume = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .unwrap_or("");
        let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        if volume.is_empty() || !bound {
            return Ok(Err(ConfigError(format!(
                "error processing PVC {ns}/{name}: PVC is not bound"
            ))));
        }
        match self
            .api
            .persistent_volume(volume)
            .await
            .map_err(Error::Api)?
        {
            Some(pv) => Ok(Ok(pv)),
            None => Ok(Err(ConfigError(format!(
                "error processing PVC {ns}/{name}: failed to fetch PV \"{volume}\" from API server: persistentvolumes \"{volume}\" not found"
            )))),
        }
    }

    /// The services of a namespace.
    pub(crate) async fn services(&mut self, namespace: &str) -> Result<&[Service]> {
        if !self.services.contains_key(namespace) {
            let found = self.api.services(namespace).await.map_err(Error::Api)?;
            self.services.insert(namespace.to_owned(), found);
        }
        Ok(self.services.get(namespace).map_or(&[], Vec::as_slice))
    }
}
