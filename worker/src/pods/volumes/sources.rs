//! The files of configMap, secret, downwardAPI and projected volumes, with upstream's modes
//! (`defaultMode` 0644 unless set, per-item `mode`) and error messages.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, Pod, Volume};

use super::atomic::{FileProjection, Payload, valid_path};
use crate::pods::api::{IssuedToken, PodRef, TokenRequest};
use crate::pods::env::{Downward, field_value, resource_value};
use crate::pods::objects::{ConfigError, ObjectCache};
use crate::runtime::{Error, Result};

const DEFAULT_MODE: i32 = 0o644;

/// Bound service-account tokens of one pod, refreshed as the kubelet's token manager does:
/// when 80 % of the lifetime has passed, or after 24 h.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    tokens: HashMap<(String, i64), (IssuedToken, Instant, Duration)>,
}

impl TokenCache {
    async fn get(&mut self, objects: &ObjectCache<'_>, request: TokenRequest) -> Result<String> {
        let key = (request.audiences.join(","), request.expiration_seconds);
        if let Some((token, issued, ttl)) = self.tokens.get(&key) {
            let age = issued.elapsed();
            if age < ttl.mul_f64(0.8) && age < Duration::from_secs(24 * 3600) {
                return Ok(token.token.clone());
            }
        }
        let issued = objects
            .api()
            .service_account_token(&request)
            .await
            .map_err(Error::Api)?;
        let ttl = Duration::from_secs(u64::try_from(request.expiration_seconds).unwrap_or(3600));
        let token = issued.token.clone();
        self.tokens.insert(key, (issued, Instant::now(), ttl));
        Ok(token)
    }
}

fn mode(item: Option<i32>, default: Option<i32>) -> u32 {
    u32::try_from(item.or(default).unwrap_or(DEFAULT_MODE)).unwrap_or(0o644) & 0o777
}

fn insert(out: &mut Payload, path: &str, data: Vec<u8>, mode: u32) -> Result<(), ConfigError> {
    if !valid_path(path) {
        return Err(ConfigError(format!("invalid path {path:?}")));
    }
    out.insert(path.to_owned(), FileProjection { data, mode });
    Ok(())
}

/// Projects `data` (key -> bytes) through `items` (all keys when none).
fn project(
    out: &mut Payload,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: Option<i32>,
    optional: bool,
    missing_key: impl Fn(&str) -> String,
) -> Result<(), ConfigError> {
    match items {
        None => {
            for (k, v) in data {
                insert(out, k, v.clone(), mode(None, default_mode))?;
            }
        }
        Some(items) => {
            for item in items {
                match data.get(&item.key) {
                    Some(v) => insert(out, &item.path, v.clone(), mode(item.mode, default_mode))?,
                    None if optional => {}
                    None => return Err(ConfigError(missing_key(&item.key))),
                }
            }
        }
    }
    Ok(())
}

async fn config_map_data(
    objects: &mut ObjectCache<'_>,
    name: &str,
    optional: bool,
) -> Result<Result<BTreeMap<String, Vec<u8>>, ConfigError>> {
    match objects.config_map(name).await? {
        Ok(cm) => {
            let mut data: BTreeMap<String, Vec<u8>> = cm
                .data
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            for (k, v) in cm.binary_data.clone().unwrap_or_default() {
                data.insert(k, v.0);
            }
            Ok(Ok(data))
        }
        Err(_) if optional => Ok(Ok(BTreeMap::new())),
        Err(e) => Ok(Err(e)),
    }
}

async fn secret_data(
    objects: &mut ObjectCache<'_>,
    name: &str,
    optional: bool,
) -> Result<Result<BTreeMap<String, Vec<u8>>, ConfigError>> {
    match objects.secret(name).await? {
        Ok(s) => Ok(Ok(s
            .data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect())),
        Err(_) if optional => Ok(Ok(BTreeMap::new())),
        Err(e) => Ok(Err(e)),
    }
}

fn downward_files(
    out: &mut Payload,
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: Option<i32>,
    downward: &Downward,
) -> Result<(), ConfigError> {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    for item in items {
        let value = if let Some(field) = &item.field_ref {
            field_value(pod, field, downward)?
        } else if let Some(resource) = &item.resource_field_ref {
            let wanted = resource.container_name.clone().unwrap_or_default();
            let container = containers
                .iter()
                .find(|c| c.name == wanted)
                .ok_or_else(|| ConfigError(format!("container {wanted:?} not found")))?;
            resource_value(container, resource, downward)?
        } else {
            String::new()
        };
        insert(
            out,
            &item.path,
            value.into_bytes(),
            mode(item.mode, default_mode),
        )?;
    }
    Ok(())
}

/// The files of a content volume.
pub(super) async fn payload(
    pod: &Pod,
    volume: &Volume,
    objects: &mut ObjectCache<'_>,
    downward: &Downward,
    tokens: &mut TokenCache,
) -> Result<Result<Payload, ConfigError>> {
    let mut out = Payload::new();
    let namespace = objects.namespace().to_owned();
    if let Some(cm) = &volume.config_map {
        let optional = cm.optional == Some(true);
        let data = match config_map_data(objects, &cm.name, optional).await? {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        let missing = |k: &str| format!("configmap references non-existent config key: {k}");
        if let Err(e) = project(
            &mut out,
            &data,
            cm.items.as_ref(),
            cm.default_mode,
            optional,
            missing,
        ) {
            return Ok(Err(e));
        }
    } else if let Some(secret) = &volume.secret {
        let optional = secret.optional == Some(true);
        let name = secret.secret_name.clone().unwrap_or_default();
        let data = match secret_data(objects, &name, optional).await? {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        let missing = |k: &str| format!("references non-existent secret key: {k}");
        if let Err(e) = project(
            &mut out,
            &data,
            secret.items.as_ref(),
            secret.default_mode,
            optional,
            missing,
        ) {
            return Ok(Err(e));
        }
    } else if let Some(d) = &volume.downward_api {
        if let Err(e) = downward_files(
            &mut out,
            pod,
            d.items.as_deref().unwrap_or_default(),
            d.default_mode,
            downward,
        ) {
            return Ok(Err(e));
        }
    } else if let Some(projected) = &volume.projected {
        let default_mode = projected.default_mode;
        for source in projected.sources.iter().flatten() {
            let result = if let Some(cm) = &source.config_map {
                let optional = cm.optional == Some(true);
                match config_map_data(objects, &cm.name, optional).await? {
                    Ok(data) => project(
                        &mut out,
                        &data,
                        cm.items.as_ref(),
                        default_mode,
                        optional,
                        |k| format!("configmap references non-existent config key: {k}"),
                    ),
                    Err(e) => Err(e),
                }
            } else if let Some(secret) = &source.secret {
                let optional = secret.optional == Some(true);
                match secret_data(objects, &secret.name, optional).await? {
                    Ok(data) => project(
                        &mut out,
                        &data,
                        secret.items.as_ref(),
                        default_mode,
                        optional,
                        |k| format!("references non-existent secret key: {k}"),
                    ),
                    Err(e) => Err(e),
                }
            } else if let Some(d) = &source.downward_api {
                downward_files(
                    &mut out,
                    pod,
                    d.items.as_deref().unwrap_or_default(),
                    default_mode,
                    downward,
                )
            } else if let Some(sat) = &source.service_account_token {
                let request = TokenRequest {
                    namespace: namespace.clone(),
                    service_account: pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.service_account_name.clone())
                        .unwrap_or_else(|| "default".to_owned()),
                    audiences: sat
                        .audience
                        .clone()
                        .into_iter()
                        .filter(|a| !a.is_empty())
                        .collect(),
                    expiration_seconds: sat.expiration_seconds.unwrap_or(3600),
                    pod: PodRef {
                        namespace: namespace.clone(),
                        name: pod.metadata.name.clone().unwrap_or_default(),
                        uid: pod.metadata.uid.clone().unwrap_or_default(),
                    },
                };
                let token = tokens.get(objects, request).await?;
                insert(
                    &mut out,
                    &sat.path,
                    token.into_bytes(),
                    mode(None, default_mode),
                )
            } else {
                Ok(())
            };
            if let Err(e) = result {
                return Ok(Err(e));
            }
        }
    }
    Ok(Ok(out))
}
