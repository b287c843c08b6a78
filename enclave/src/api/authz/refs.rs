//! What a pod uses: the secrets, config maps, persistent volume claims and service account its
//! spec names. The node authorizer lets a node read an object only when a pod bound to the node
//! uses it (upstream's node authorizer graph: node <- pod <- secret/configmap/pvc/sa).

use serde_json::Value;

/// A kind of object a pod can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Used {
    /// core/v1 secrets.
    Secret,
    /// core/v1 configmaps.
    ConfigMap,
    /// core/v1 persistentvolumeclaims.
    Claim,
    /// core/v1 serviceaccounts (their tokens).
    ServiceAccount,
}

fn str_at<'v>(v: &'v Value, pointer: &str) -> Option<&'v str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn each<'v>(v: &'v Value, pointer: &str) -> impl Iterator<Item = &'v Value> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// The names of objects of kind `used` that `pod` (a Pod as JSON) uses.
pub(crate) fn names(pod: &Value, used: Used) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |name: Option<&str>| {
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            out.push(n.to_owned());
        }
    };
    let pod_name = str_at(pod, "/metadata/name").unwrap_or("");
    if used == Used::ServiceAccount {
        add(Some(
            str_at(pod, "/spec/serviceAccountName").unwrap_or("default"),
        ));
        return out;
    }
    for volume in each(pod, "/spec/volumes") {
        match used {
            Used::Secret => {
                add(str_at(volume, "/secret/secretName"));
                add(str_at(volume, "/azureFile/secretName"));
                // Volume sources with a `secretRef` (cephfs, rbd, iscsi, flexVolume, ...) and
                // CSI's node publish secret.
                if let Some(source) = volume.as_object() {
                    for inner in source.values() {
                        add(str_at(inner, "/secretRef/name"));
                        add(str_at(inner, "/nodePublishSecretRef/name"));
                    }
                }
                for source in each(volume, "/projected/sources") {
                    add(str_at(source, "/secret/name"));
                }
            }
            Used::ConfigMap => {
                add(str_at(volume, "/configMap/name"));
                for source in each(volume, "/projected/sources") {
                    add(str_at(source, "/configMap/name"));
                }
            }
            Used::Claim => {
                add(str_at(volume, "/persistentVolumeClaim/claimName"));
                if volume.get("ephemeral").is_some()
                    && let Some(vol) = str_at(volume, "/name")
                {
                    let claim = format!("{pod_name}-{vol}");
                    add(Some(&claim));
                }
            }
            Used::ServiceAccount => {}
        }
    }
    if used == Used::Secret {
        for secret in each(pod, "/spec/imagePullSecrets") {
            add(str_at(secret, "/name"));
        }
    }
    for list in [
        "/spec/containers",
        "/spec/initContainers",
        "/spec/ephemeralContainers",
    ] {
        for container in each(pod, list) {
            for env in each(container, "/env") {
                match used {
                    Used::Secret => add(str_at(env, "/valueFrom/secretKeyRef/name")),
                    Used::ConfigMap => add(str_at(env, "/valueFrom/configMapKeyRef/name")),
                    _ => {}
                }
            }
            for from in each(container, "/envFrom") {
                match used {
                    Used::Secret => add(str_at(from, "/secretRef/name")),
                    Used::ConfigMap => add(str_at(from, "/configMapRef/name")),
                    _ => {}
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_every_reference() {
        let pod = json!({
            "metadata": {"name": "p"},
            "spec": {
                "serviceAccountName": "sa",
                "imagePullSecrets": [{"name": "pull"}],
                "volumes": [
                    {"name": "a", "secret": {"secretName": "vol-secret"}},
                    {"name": "b", "configMap": {"name": "vol-cm"}},
                    {"name": "c", "projected": {"sources": [
                        {"secret": {"name": "proj-secret"}}, {"configMap": {"name": "proj-cm"}}]}},
                    {"name": "d", "persistentVolumeClaim": {"claimName": "claim"}},
                    {"name": "e", "ephemeral": {"volumeClaimTemplate": {}}},
                    {"name": "f", "csi": {"driver": "x", "nodePublishSecretRef": {"name": "csi"}}},
                    {"name": "g", "cephfs": {"monitors": [], "secretRef": {"name": "ceph"}}}
                ],
                "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "init-from"}}]}],
                "containers": [{"name": "c", "env": [
                    {"name": "A", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}},
                    {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "k"}}}],
                    "envFrom": [{"configMapRef": {"name": "from-cm"}}]}]
            }
        });
        let mut secrets = names(&pod, Used::Secret);
        secrets.sort();
        assert_eq!(
            secrets,
            [
                "ceph",
                "csi",
                "env-secret",
                "init-from",
                "proj-secret",
                "pull",
                "vol-secret"
            ]
        );
        let mut maps = names(&pod, Used::ConfigMap);
        maps.sort();
        assert_eq!(maps, ["env-cm", "from-cm", "proj-cm", "vol-cm"]);
        assert_eq!(names(&pod, Used::Claim), ["claim", "p-e"]);
        assert_eq!(names(&pod, Used::ServiceAccount), ["sa"]);
        assert_eq!(
            names(&json!({"spec": {}}), Used::ServiceAccount),
            ["default"]
        );
    }
}
