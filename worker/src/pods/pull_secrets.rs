//! `imagePullSecrets`: the registry credentials of a pod's `kubernetes.io/dockerconfigjson`
//! (or legacy `.dockercfg`) secrets for the registry of an image.

use base64::Engine as _;
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::Pod;

use super::Ctx;
use crate::runtime::{Error, Result};

/// The image's registry host (`docker.io` when the reference names none).
fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_owned()
        }
        _ => "docker.io".to_owned(),
    }
}

fn matches(key: &str, registry: &str) -> bool {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host);
    host == registry
        || (registry == "docker.io"
            && (host == "index.docker.io" || host == "registry-1.docker.io"))
}

/// The first credential of the pod's pull secrets that matches the image's registry.
pub(crate) async fn auth_for(ctx: &Ctx, pod: &Pod, image: &str) -> Result<Option<cri::AuthConfig>> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let registry = registry_of(image);
    for reference in pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.clone())
        .unwrap_or_default()
    {
        let Some(secret) = ctx
            .objects
            .secret(&namespace, &reference.name)
            .await
            .map_err(Error::Api)?
        else {
            continue;
        };
        let data = secret.data.unwrap_or_default();
        let parsed: Option<serde_json::Value> = data
            .get(".dockerconfigjson")
            .and_then(|v| serde_json::from_slice::<serde_json::Value>(&v.0).ok())
            .and_then(|v| v.get("auths").cloned())
            .or_else(|| {
                data.get(".dockercfg")
                    .and_then(|v| serde_json::from_slice(&v.0).ok())
            });
        let Some(serde_json::Value::Object(auths)) = parsed else {
            continue;
        };
        for (key, entry) in auths {
            if !matches(&key, &registry) {
                continue;
            }
            let text = |k: &str| {
                entry
                    .get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            let (mut username, mut password) = (text("username"), text("password"));
            if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(text("auth"))
                && let Some((u, p)) = String::from_utf8_lossy(&decoded).split_once(':')
            {
                username = u.to_owned();
                password = p.to_owned();
            }
            return Ok(Some(cri::AuthConfig {
                username,
                password,
                server_address: key.clone(),
                identity_token: text("identitytoken"),
                registry_token: text("registrytoken"),
                ..Default::default()
            }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries() {
        assert_eq!(registry_of("busybox:1.35"), "docker.io");
        assert_eq!(registry_of("library/busybox"), "docker.io");
        assert_eq!(registry_of("ghcr.io/a/b:1"), "ghcr.io");
        assert_eq!(registry_of("localhost:5000/a"), "localhost:5000");
        assert!(matches("https://index.docker.io/v1/", "docker.io"));
        assert!(matches("ghcr.io", "ghcr.io"));
    }
}
