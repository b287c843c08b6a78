//! The pod runtime's API seams over the node's own credentials: pod status through
//! `pods/{name}/status`, the final `DELETE` as the kubelet sends it, and the configmaps,
//! secrets, services and service-account tokens the node authorizer lets a node read for the
//! pods bound to it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use hyper::{Method, StatusCode};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, PodStatus, Secret, Service,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::patch::{merge_status, status_patch};
use crate::client::{ApiAccess, ClientError, KubeClient, status_message};
use crate::pods::api::{
    ApiError, ApiFuture, IssuedToken, PodObjects, PodRef, PodStatusSink, TokenRequest,
};

/// How many idle connections the seams keep for reuse.
const POOL: usize = 4;

/// The status each pod (by UID) has on the server, as the pod watch last delivered it.
pub(crate) type ServerStatuses = Arc<Mutex<HashMap<String, PodStatus>>>;

/// [`PodStatusSink`] and [`PodObjects`] as this node.
#[derive(Debug)]
pub(crate) struct NodeApi {
    access: ApiAccess,
    idle: Mutex<Vec<KubeClient>>,
    statuses: ServerStatuses,
}

fn segment(s: &str) -> String {
    // Names and namespaces are DNS labels/subdomains; anything else is refused by the server,
    // but never let one escape its path segment.
    s.replace(['/', '?', '#', '%'], "")
}

fn pod_path(pod: &PodRef) -> String {
    format!(
        "/api/v1/namespaces/{}/pods/{}",
        segment(&pod.namespace),
        segment(&pod.name)
    )
}

fn decode<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| format!("{what}: undecodable answer: {e}").into())
}

fn refused(what: String, code: StatusCode, body: &[u8]) -> ApiError {
    Box::new(ClientError::Status {
        what,
        code,
        message: status_message(body),
    })
}

impl NodeApi {
    /// The seams over `access`, patching status against `statuses`.
    pub(crate) fn new(access: ApiAccess, statuses: ServerStatuses) -> Self {
        Self {
            access,
            idle: Mutex::new(Vec::new()),
            statuses,
        }
    }

    /// Sends one request on a pooled connection; the status and body.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Value)>,
    ) -> Result<(StatusCode, Bytes), ApiError> {
        let taken = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut client = taken.unwrap_or_else(|| self.access.client());
        let body = match body {
            Some((content_type, value)) => {
                let bytes = serde_json::to_vec(&value).map_err(|e| -> ApiError {
                    format!("{method} {path}: encoding: {e}").into()
                })?;
                Some((content_type, Bytes::from(bytes)))
            }
            None => None,
        };
        let answer = client.send(method, path, body).await?;
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < POOL {
            idle.push(client);
        }
        Ok(answer)
    }

    /// GETs `path`: `None` on 404.
    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, ApiError> {
        let (code, body) = self.send(Method::GET, path, None).await?;
        match code {
            c if c.is_success() => decode(path, &body).map(Some),
            StatusCode::NOT_FOUND => Ok(None),
            c => Err(refused(format!("GET {path}"), c, &body)),
        }
    }
}

impl PodStatusSink for NodeApi {
    fn update_status<'a>(&'a self, pod: &'a PodRef, status: &'a PodStatus) -> ApiFuture<'a, ()> {
        Box::pin(async move {
            let server = self
                .statuses
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&pod.uid)
                .cloned();
            let merged = merge_status(server.as_ref(), status);
            let encode = |s: &PodStatus| {
                serde_json::to_value(s)
                    .map_err(|e| -> ApiError { format!("encoding a pod status: {e}").into() })
            };
            let old = match &server {
                Some(s) => encode(s)?,
                None => json!({}),
            };
            let patch = status_patch(&pod.uid, &old, &encode(&merged)?);
            let path = format!("{}/status", pod_path(pod));
            let (code, body) = self
                .send(
                    Method::PATCH,
                    &path,
                    Some(("application/merge-patch+json", patch)),
                )
                .await?;
            if code.is_success() {
                // What the server now has, until the watch says otherwise.
                if let Ok(updated) =
                    serde_json::from_slice::<k8s_openapi::api::core::v1::Pod>(&body)
                    && let Some(s) = updated.status
                {
                    self.statuses
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(pod.uid.clone(), s);
                }
                return Ok(());
            }
            if code == StatusCode::NOT_FOUND {
                // The pod is gone: nothing to report to.
                return Ok(());
            }
            Err(refused(format!("PATCH {path}"), code, &body))
        })
    }

    fn delete_pod<'a>(&'a self, pod: &'a PodRef) -> ApiFuture<'a, ()> {
        Box::pin(async move {
            let path = pod_path(pod);
            let options = json!({
                "kind": "DeleteOptions",
                "apiVersion": "v1",
                "gracePeriodSeconds": 0,
                "preconditions": { "uid": pod.uid },
            });
            let (code, body) = self
                .send(Method::DELETE, &path, Some(("application/json", options)))
                .await?;
            match code {
                c if c.is_success() => Ok(()),
                // Gone already, or the name now belongs to another pod (the UID precondition).
                StatusCode::NOT_FOUND | StatusCode::CONFLICT => Ok(()),
                c => Err(refused(format!("DELETE {path}"), c, &body)),
            }
        })
    }
}

impl PodObjects for NodeApi {
    fn persistent_volume_claim<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> ApiFuture<'a, Option<PersistentVolumeClaim>> {
        Box::pin(async move {
            self.get(&format!(
                "/api/v1/namespaces/{}/persistentvolumeclaims/{}",
                segment(namespace),
                segment(name)
            ))
            .await
        })
    }

    fn persistent_volume<'a>(&'a self, name: &'a str) -> ApiFuture<'a, Option<PersistentVolume>> {
        Box::pin(async move {
            self.get(&format!("/api/v1/persistentvolumes/{}", segment(name)))
                .await
        })
    }

    fn config_map<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> ApiFuture<'a, Option<ConfigMap>> {
        Box::pin(async move {
            self.get(&format!(
                "/api/v1/namespaces/{}/configmaps/{}",
                segment(namespace),
                segment(name)
            ))
            .await
        })
    }

    fn secret<'a>(&'a self, namespace: &'a str, name: &'a str) -> ApiFuture<'a, Option<Secret>> {
        Box::pin(async move {
            self.get(&format!(
                "/api/v1/namespaces/{}/secrets/{}",
                segment(namespace),
                segment(name)
            ))
            .await
        })
    }

    fn services<'a>(&'a self, namespace: &'a str) -> ApiFuture<'a, Vec<Service>> {
        Box::pin(async move {
            let list: Option<k8s_openapi::List<Service>> = self
                .get(&format!(
                    "/api/v1/namespaces/{}/services",
                    segment(namespace)
                ))
                .await?;
            Ok(list.map(|l| l.items).unwrap_or_default())
        })
    }

    fn service_account_token<'a>(
        &'a self,
        request: &'a TokenRequest,
    ) -> ApiFuture<'a, IssuedToken> {
        Box::pin(async move {
            let path = format!(
                "/api/v1/namespaces/{}/serviceaccounts/{}/token",
                segment(&request.namespace),
                segment(&request.service_account)
            );
            let body = json!({
                "kind": "TokenRequest",
                "apiVersion": "authentication.k8s.io/v1",
                "spec": {
                    "audiences": request.audiences,
                    "expirationSeconds": request.expiration_seconds,
                    "boundObjectRef": {
                        "kind": "Pod",
                        "apiVersion": "v1",
                        "name": request.pod.name,
                        "uid": request.pod.uid,
                    },
                },
            });
            let (code, answer) = self
                .send(Method::POST, &path, Some(("application/json", body)))
                .await?;
            if !code.is_success() {
                return Err(refused(format!("POST {path}"), code, &answer));
            }
            let issued: Value = decode(&path, &answer)?;
            let token = issued
                .pointer("/status/token")
                .and_then(Value::as_str)
                .ok_or_else(|| -> ApiError { format!("POST {path}: no status.token").into() })?;
            let expiration = issued
                .pointer("/status/expirationTimestamp")
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .ok_or_else(|| -> ApiError {
                    format!("POST {path}: no status.expirationTimestamp").into()
                })?;
            Ok(IssuedToken {
                token: token.to_owned(),
                expiration,
            })
        })
    }
}
