//! The ServiceAccount admission plugin (upstream's
//! `plugin/pkg/admission/serviceaccount`): a new pod runs as its namespace's
//! `default` service account unless it names one, which must exist; unless
//! the pod or the account opts out (`automountServiceAccountToken: false`),
//! every container mounts a projected volume `kube-api-access-xxxxx` at
//! `/var/run/secrets/kubernetes.io/serviceaccount` with a bound token
//! (`expirationSeconds: 3607`), the cluster CA (`kube-root-ca.crt`) and the
//! namespace; and the account's image pull secrets are copied to a pod that
//! has none.

use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{Operation, Outcome, Plugin, Request};
use crate::registry::{Error, ObjectStore, Result, meta};

/// Where the token volume is mounted.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The token volume's name prefix.
pub const TOKEN_VOLUME_PREFIX: &str = "kube-api-access-";

/// The ConfigMap every namespace gets with the cluster's CA.
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";

/// The service account pods run as when they name none.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// Upstream's `WarnOnlyBoundTokenExpirationSeconds`.
const TOKEN_EXPIRATION_SECONDS: i64 = 3607;

/// How often the `default` account is looked up before giving up (the
/// service account controller creates it right after its namespace).
const DEFAULT_ATTEMPTS: usize = 10;

/// The ServiceAccount plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServiceAccountAdmission;

/// The projected volume source upstream's `TokenVolumeSource` builds.
pub fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    })
}

async fn find_account(objects: &ObjectStore, ns: &str, name: &str) -> Result<Value> {
    let info = objects
        .table()
        .lookup("", "v1", "serviceaccounts")
        .ok_or_else(|| Error::BadRequest("serviceaccounts are not served".into()))?;
    let attempts = if name == DEFAULT_SERVICE_ACCOUNT {
        DEFAULT_ATTEMPTS
    } else {
        1
    };
    for i in 0..attempts {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(100 + 10 * i as u64)).await;
        }
        match objects.get(&info, Some(ns), name).await {
            Ok(sa) => return Ok(sa),
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Err(Error::NotFound {
        qualified: "serviceaccount".into(),
        group: String::new(),
        resource: "serviceaccounts".into(),
        name: name.to_string(),
    })
}

/// Adds the token volume and its mounts, as upstream's `mountServiceAccountToken`.
fn mount_token(spec: &mut Value) {
    let volumes = spec
        .get("volumes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let existing = volumes.iter().find_map(|v| {
        v.get("name")
            .and_then(Value::as_str)
            .filter(|n| n.starts_with(TOKEN_VOLUME_PREFIX))
            .map(str::to_string)
    });
    let name = existing
        .clone()
        .unwrap_or_else(|| format!("{TOKEN_VOLUME_PREFIX}{}", meta::random_suffix()));
    let mount = json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in cs {
            let mounted = c
                .get("volumeMounts")
                .and_then(Value::as_array)
                .is_some_and(|ms| {
                    ms.iter().any(|m| {
                        m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH)
                    })
                });
            if mounted {
                continue;
            }
            let Some(o) = c.as_object_mut() else { continue };
            let ms = o.entry("volumeMounts").or_insert_with(|| json!([]));
            if let Some(a) = ms.as_array_mut() {
                a.push(mount.clone());
                needed = true;
            }
        }
    }
    if existing.is_none()
        && needed
        && let Some(o) = spec.as_object_mut()
    {
        let vs = o.entry("volumes").or_insert_with(|| json!([]));
        if let Some(a) = vs.as_array_mut() {
            a.push(token_volume(&name));
        }
    }
}

impl Plugin for ServiceAccountAdmission {
    fn admit<'a>(
        &'a self,
        objects: &'a ObjectStore,
        req: &'a Request<'a>,
        obj: &'a mut Value,
        _out: &'a mut Outcome,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if req.operation != Operation::Create || !req.is("", "pods") {
                return Ok(());
            }
            let ns = req.namespace.unwrap_or("");
            let forbidden = |why: String| Error::forbidden("", "pods", req.name, &why);
            let mirror = obj
                .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
                .is_some();
            let named = obj
                .pointer("/spec/serviceAccountName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .map(str::to_string);
            if mirror {
                if named
                    .as_deref()
                    .is_some_and(|n| n != DEFAULT_SERVICE_ACCOUNT)
                {
                    return Err(forbidden(
                        "a mirror pod may not reference service accounts".into(),
                    ));
                }
                return Ok(());
            }
            let name = named.unwrap_or_else(|| DEFAULT_SERVICE_ACCOUNT.to_string());
            let account = match find_account(objects, ns, &name).await {
                Ok(a) => a,
                Err(e) => {
                    return Err(forbidden(format!(
                        "error looking up service account {ns}/{name}: {}",
                        e.message()
                    )));
                }
            };
            let Some(spec) = obj.get_mut("spec") else {
                return Ok(());
            };
            spec["serviceAccountName"] = json!(name);
            let automount = spec
                .get("automountServiceAccountToken")
                .and_then(Value::as_bool)
                .or_else(|| {
                    account
                        .get("automountServiceAccountToken")
                        .and_then(Value::as_bool)
                })
                .unwrap_or(true);
            if automount {
                mount_token(spec);
            }
            let has_pull_secrets = spec
                .get("imagePullSecrets")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            if !has_pull_secrets
                && let Some(ps) = account
                    .get("imagePullSecrets")
                    .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
            {
                spec["imagePullSecrets"] = ps.clone();
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_volume_mounted_once_per_container() {
        let mut spec = json!({"containers": [
            {"name": "a"},
            {"name": "b", "volumeMounts": [{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]},
        ], "initContainers": [{"name": "i"}]});
        mount_token(&mut spec);
        let vols = spec["volumes"].as_array().unwrap();
        assert_eq!(vols.len(), 1);
        let name = vols[0]["name"].as_str().unwrap();
        assert!(
            name.starts_with(TOKEN_VOLUME_PREFIX) && name.len() == TOKEN_VOLUME_PREFIX.len() + 5
        );
        assert_eq!(spec["containers"][0]["volumeMounts"][0]["name"], name);
        assert_eq!(
            spec["containers"][1]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            spec["initContainers"][0]["volumeMounts"][0]["mountPath"],
            TOKEN_MOUNT_PATH
        );
        assert_eq!(
            vols[0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3607
        );
        mount_token(&mut spec);
        assert_eq!(spec["volumes"].as_array().unwrap().len(), 1);
    }
}
