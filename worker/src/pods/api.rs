//! The seams between the pod runtime and the API server. The runtime never talks to the API
//! itself: the agent wires these traits to its API client, tests use `fake` (feature `testing`).
//!
//! Pod specs flow the other way: the agent pushes what its watch of the node's pods sees
//! into [`super::PodRuntime`] (`sync_pods` once listed, then `upsert`/`forget`).

use std::future::Future;
use std::pin::Pin;

use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, PodStatus, Secret, Service,
};

/// The error a seam returns (the API client's, boxed).
pub type ApiError = Box<dyn std::error::Error + Send + Sync>;

/// A seam's future.
pub type ApiFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ApiError>> + Send + 'a>>;

/// Which pod an update concerns.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodRef {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its UID (writes carry it as a precondition).
    pub uid: String,
}

/// Where pod status goes: the pod's `status` subresource, and the final removal.
pub trait PodStatusSink: Send + Sync + 'static {
    /// Replaces the pod's status (`PUT`/`PATCH pods/{name}/status` with the UID as a
    /// precondition). Called only when the status changed.
    fn update_status<'a>(&'a self, pod: &'a PodRef, status: &'a PodStatus) -> ApiFuture<'a, ()>;

    /// Deletes the pod object for good once its containers are gone, as the kubelet does:
    /// `DELETE` with `gracePeriodSeconds: 0` and a UID precondition. Called only for pods
    /// that carry a `deletionTimestamp`.
    fn delete_pod<'a>(&'a self, pod: &'a PodRef) -> ApiFuture<'a, ()>;
}

/// A service-account token request for a projected volume (`TokenRequest`, bound to the pod).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The pod's namespace.
    pub namespace: String,
    /// The service account.
    pub service_account: String,
    /// The audiences (empty: the API server's).
    pub audiences: Vec<String>,
    /// The requested lifetime in seconds.
    pub expiration_seconds: i64,
    /// The pod the token is bound to.
    pub pod: PodRef,
}

/// A token the API issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The token.
    pub token: String,
    /// When it expires.
    pub expiration: jiff::Timestamp,
}

/// How the runtime reads what pods reference: configmaps, secrets, services (for the
/// service environment variables) and service-account tokens.
pub trait PodObjects: Send + Sync + 'static {
    /// A configmap, `None` when it does not exist.
    fn config_map<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> ApiFuture<'a, Option<ConfigMap>>;

    /// A secret, `None` when it does not exist.
    fn secret<'a>(&'a self, namespace: &'a str, name: &'a str) -> ApiFuture<'a, Option<Secret>>;

    /// Every service of a namespace (the runtime also asks for `default`, for `kubernetes`).
    fn services<'a>(&'a self, namespace: &'a str) -> ApiFuture<'a, Vec<Service>>;

    /// A persistent volume claim, `None` when it does not exist.
    fn persistent_volume_claim<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> ApiFuture<'a, Option<PersistentVolumeClaim>>;

    /// A persistent volume, `None` when it does not exist.
    fn persistent_volume<'a>(&'a self, name: &'a str) -> ApiFuture<'a, Option<PersistentVolume>>;

    /// Issues a bound service-account token (`POST serviceaccounts/{name}/token`).
    fn service_account_token<'a>(&'a self, request: &'a TokenRequest)
    -> ApiFuture<'a, IssuedToken>;
}
