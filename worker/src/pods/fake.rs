//! An in-memory fake of the API seams: configmaps, secrets, services, claims and volumes set
//! by the test,
//! tokens minted locally, every status write recorded.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, PodStatus, Secret, Service,
};
use tokio::sync::watch;

use super::api::{ApiFuture, IssuedToken, PodObjects, PodRef, PodStatusSink, TokenRequest};

#[derive(Debug, Default)]
struct State {
    config_maps: BTreeMap<(String, String), ConfigMap>,
    secrets: BTreeMap<(String, String), Secret>,
    services: BTreeMap<(String, String), Service>,
    claims: BTreeMap<(String, String), PersistentVolumeClaim>,
    volumes: BTreeMap<String, PersistentVolume>,
    statuses: HashMap<String, Vec<PodStatus>>,
    deleted: HashSet<String>,
    tokens_issued: u64,
}

/// The fake API: implements [`PodStatusSink`] and [`PodObjects`]. Clones share state.
#[derive(Debug, Clone)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
    changed: watch::Sender<u64>,
}

impl Default for FakeApi {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            changed: watch::Sender::new(0),
        }
    }
}

fn key(namespace: Option<&String>, name: Option<&String>) -> (String, String) {
    (
        namespace.cloned().unwrap_or_else(|| "default".to_owned()),
        name.cloned().unwrap_or_default(),
    )
}

impl FakeApi {
    /// Changes the state and wakes the waiters.
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let out = f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner));
        self.changed.send_modify(|n| *n += 1);
        out
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Creates or replaces a configmap.
    pub fn set_config_map(&self, config_map: ConfigMap) {
        let k = key(
            config_map.metadata.namespace.as_ref(),
            config_map.metadata.name.as_ref(),
        );
        self.with(|s| s.config_maps.insert(k, config_map));
    }

    /// Creates or replaces a secret.
    pub fn set_secret(&self, secret: Secret) {
        let k = key(
            secret.metadata.namespace.as_ref(),
            secret.metadata.name.as_ref(),
        );
        self.with(|s| s.secrets.insert(k, secret));
    }

    /// Creates or replaces a service.
    pub fn set_service(&self, service: Service) {
        let k = key(
            service.metadata.namespace.as_ref(),
            service.metadata.name.as_ref(),
        );
        self.with(|s| s.services.insert(k, service));
    }

    /// Creates or replaces a persistent volume claim.
    pub fn set_claim(&self, claim: PersistentVolumeClaim) {
        let k = key(
            claim.metadata.namespace.as_ref(),
            claim.metadata.name.as_ref(),
        );
        self.with(|s| s.claims.insert(k, claim));
    }

    /// Creates or replaces a persistent volume.
    pub fn set_volume(&self, volume: PersistentVolume) {
        let name = volume.metadata.name.clone().unwrap_or_default();
        self.with(|s| s.volumes.insert(name, volume));
    }

    /// Every status written for a pod UID, oldest first.
    #[must_use]
    pub fn statuses(&self, uid: &str) -> Vec<PodStatus> {
        self.read(|s| s.statuses.get(uid).cloned().unwrap_or_default())
    }

    /// The last status written for a pod UID.
    #[must_use]
    pub fn status(&self, uid: &str) -> Option<PodStatus> {
        self.read(|s| s.statuses.get(uid).and_then(|v| v.last().cloned()))
    }

    /// Whether the runtime deleted the pod object.
    #[must_use]
    pub fn deleted(&self, uid: &str) -> bool {
        self.read(|s| s.deleted.contains(uid))
    }

    /// How many tokens were issued.
    #[must_use]
    pub fn tokens_issued(&self) -> u64 {
        self.read(|s| s.tokens_issued)
    }

    /// Waits until `check` holds for the pod's last status (or `timeout` passes) and returns
    /// that status.
    ///
    /// # Errors
    /// The last status seen (or none) when the wait times out.
    pub async fn wait_status(
        &self,
        uid: &str,
        timeout: Duration,
        check: impl Fn(&PodStatus) -> bool,
    ) -> Result<PodStatus, Option<PodStatus>> {
        self.wait_for(timeout, || self.status(uid).filter(|s| check(s)))
            .await
            .map_err(|()| self.status(uid))
    }

    /// Waits until `probe` returns something (re-checked on every write), up to `timeout`.
    ///
    /// # Errors
    /// `()` on timeout.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        probe: impl Fn() -> Option<T>,
    ) -> Result<T, ()> {
        let mut changed = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(found) = probe() {
                return Ok(found);
            }
            let wait = tokio::time::timeout_at(deadline, changed.changed());
            match tokio::time::timeout(Duration::from_millis(500), wait).await {
                Ok(Ok(Ok(()))) | Err(_) => {}
                Ok(Ok(Err(_)) | Err(_)) => return probe().ok_or(()),
            }
            if tokio::time::Instant::now() >= deadline {
                return probe().ok_or(());
            }
        }
    }
}

impl PodStatusSink for FakeApi {
    fn update_status<'a>(&'a self, pod: &'a PodRef, status: &'a PodStatus) -> ApiFuture<'a, ()> {
        Box::pin(async move {
            self.with(|s| {
                s.statuses
                    .entry(pod.uid.clone())
                    .or_default()
                    .push(status.clone())
            });
            Ok(())
        })
    }

    fn delete_pod<'a>(&'a self, pod: &'a PodRef) -> ApiFuture<'a, ()> {
        Box::pin(async move {
            self.with(|s| s.deleted.insert(pod.uid.clone()));
            Ok(())
        })
    }
}

impl PodObjects for FakeApi {
    fn persistent_volume_claim<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> ApiFuture<'a, Option<PersistentVolumeClaim>> {
        Box::pin(async move {
            Ok(self.read(|s| {
                s.claims
                    .get(&(namespace.to_owned(), name.to_owned()))
                    .cloned()
            }))
        })
    }

    fn persistent_volume<'a>(&'a self, name: &'a str) -> ApiFuture<'a, Option<PersistentVolume>> {
        Box::pin(async move { Ok(self.read(|s| s.volumes.get(name).cloned())) })
    }

    fn config_map<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> ApiFuture<'a, Option<ConfigMap>> {
        Box::pin(async move {
            Ok(self.read(|s| {
                s.config_maps
                    .get(&(namespace.to_owned(), name.to_owned()))
                    .cloned()
            }))
        })
    }

    fn secret<'a>(&'a self, namespace: &'a str, name: &'a str) -> ApiFuture<'a, Option<Secret>> {
        Box::pin(async move {
            Ok(self.read(|s| {
                s.secrets
                    .get(&(namespace.to_owned(), name.to_owned()))
                    .cloned()
            }))
        })
    }

    fn services<'a>(&'a self, namespace: &'a str) -> ApiFuture<'a, Vec<Service>> {
        Box::pin(async move {
            Ok(self.read(|s| {
                s.services
                    .iter()
                    .filter(|((ns, _), _)| ns == namespace)
                    .map(|(_, v)| v.clone())
                    .collect()
            }))
        })
    }

    fn service_account_token<'a>(
        &'a self,
        request: &'a TokenRequest,
    ) -> ApiFuture<'a, IssuedToken> {
        Box::pin(async move {
            let n = self.with(|s| {
                s.tokens_issued += 1;
                s.tokens_issued
            });
            let expiration = jiff::Timestamp::now()
                .checked_add(jiff::SignedDuration::from_secs(request.expiration_seconds))
                .unwrap_or(jiff::Timestamp::MAX);
            Ok(IssuedToken {
                token: format!(
                    "fake-token-{}-{}-{n}",
                    request.namespace, request.service_account
                ),
                expiration,
            })
        })
    }
}
