//! A container's environment as the kubelet makes it (`makeEnvironmentVariables`): envFrom,
//! then env in order with `$(VAR)` expansion and valueFrom sources, then the service
//! variables not already set.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ObjectFieldSelector, Pod, ResourceFieldSelector, Service,
};

use super::expand::expand;
use super::objects::{ConfigError, ObjectCache};
use super::quantity;
use super::resources::{Kind, container_amount};
use crate::runtime::Result;

/// What the downward API reads besides the pod: its addresses and the node's capacity.
#[derive(Debug, Clone, Default)]
pub(crate) struct Downward {
    /// The pod's IPs (the first is `status.podIP`).
    pub(crate) pod_ips: Vec<String>,
    /// The node's IPs.
    pub(crate) host_ips: Vec<String>,
    /// Allocatable CPU of the node, millicores (a limit's default).
    pub(crate) node_cpu_milli: i64,
    /// Allocatable memory of the node, bytes (a limit's default).
    pub(crate) node_memory: i64,
}

/// The container's environment in the order the kubelet hands it to the runtime.
pub(crate) async fn environment(
    pod: &Pod,
    container: &Container,
    downward: &Downward,
    objects: &mut ObjectCache<'_>,
) -> Result<Result<Vec<(String, String)>, ConfigError>> {
    let spec = pod.spec.as_ref();
    let enable_links = spec.and_then(|s| s.enable_service_links).unwrap_or(true);
    let namespace = objects.namespace().to_owned();
    let mut service_env = BTreeMap::new();
    let mut services: BTreeMap<String, Service> = BTreeMap::new();
    for s in objects.services("default").await? {
        if s.metadata.name.as_deref() == Some("kubernetes") {
            services.insert("kubernetes".to_owned(), s.clone());
        }
    }
    if enable_links {
        for s in objects.services(&namespace).await? {
            let name = s.metadata.name.clone().unwrap_or_default();
            if namespace == "default" && name == "kubernetes" {
                continue;
            }
            services.insert(name, s.clone());
        }
    }
    for service in services.values() {
        service_variables(service, &mut service_env);
    }

    // Ordered as the kubelet's map is not; keep declaration order, envFrom first.
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, name: String, value: String| {
        if let Some(slot) = env.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = value;
        } else {
            env.push((name, value));
        }
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match objects.config_map(&r.name).await? {
                Ok(cm) => {
                    for (k, v) in cm.data.clone().unwrap_or_default() {
                        set(&mut env, format!("{prefix}{k}"), v);
                    }
                }
                Err(_) if r.optional == Some(true) => {}
                Err(e) => return Ok(Err(e)),
            }
        } else if let Some(r) = &from.secret_ref {
            match objects.secret(&r.name).await? {
                Ok(secret) => {
                    for (k, v) in secret.data.clone().unwrap_or_default() {
                        set(
                            &mut env,
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v.0).into_owned(),
                        );
                    }
                }
                Err(_) if r.optional == Some(true) => {}
                Err(e) => return Ok(Err(e)),
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = var.value.clone().unwrap_or_default();
        let resolved = if !value.is_empty() {
            let lookup = |name: &str| {
                env.iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .or_else(|| service_env.get(name).cloned())
            };
            expand(&value, &lookup)
        } else if let Some(from) = &var.value_from {
            if let Some(field) = &from.field_ref {
                match field_value(pod, field, downward) {
                    Ok(v) => v,
                    Err(e) => return Ok(Err(e)),
                }
            } else if let Some(resource) = &from.resource_field_ref {
                match resource_value(container, resource, downward) {
                    Ok(v) => v,
                    Err(e) => return Ok(Err(e)),
                }
            } else if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional == Some(true);
                match objects.config_map(&r.name).await? {
                    Ok(cm) => match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => {
                            return Ok(Err(ConfigError(format!(
                                "couldn't find key {} in ConfigMap {namespace}/{}",
                                r.key, r.name
                            ))));
                        }
                    },
                    Err(_) if optional => continue,
                    Err(e) => return Ok(Err(e)),
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional == Some(true);
                match objects.secret(&r.name).await? {
                    Ok(secret) => match secret.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                        None if optional => continue,
                        None => {
                            return Ok(Err(ConfigError(format!(
                                "couldn't find key {} in Secret {namespace}/{}",
                                r.key, r.name
                            ))));
                        }
                    },
                    Err(_) if optional => continue,
                    Err(e) => return Ok(Err(e)),
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        set(&mut env, var.name.clone(), resolved);
    }
    for (name, value) in service_env {
        if !env.iter().any(|(n, _)| *n == name) {
            env.push((name, value));
        }
    }
    Ok(Ok(env))
}

fn env_name(name: &str) -> String {
    name.replace('-', "_").to_uppercase()
}

/// upstream's `envvars.FromServices` for one service.
fn service_variables(service: &Service, out: &mut BTreeMap<String, String>) {
    let Some(spec) = service.spec.as_ref() else {
        return;
    };
    let ip = spec.cluster_ip.clone().unwrap_or_default();
    if ip.is_empty() || ip == "None" {
        return;
    }
    let ports = spec.ports.clone().unwrap_or_default();
    let Some(first) = ports.first() else { return };
    let prefix = env_name(service.metadata.name.as_deref().unwrap_or_default());
    out.insert(format!("{prefix}_SERVICE_HOST"), ip.clone());
    out.insert(format!("{prefix}_SERVICE_PORT"), first.port.to_string());
    for p in &ports {
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            out.insert(
                format!("{prefix}_SERVICE_PORT_{}", env_name(name)),
                p.port.to_string(),
            );
        }
    }
    let host = |port: i32| {
        if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }
    };
    for (i, p) in ports.iter().enumerate() {
        let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".to_owned());
        let lower = protocol.to_lowercase();
        let url = format!("{lower}://{}", host(p.port));
        if i == 0 {
            out.insert(format!("{prefix}_PORT"), url.clone());
        }
        let port_prefix = format!("{prefix}_PORT_{}_{}", p.port, protocol.to_uppercase());
        out.insert(port_prefix.clone(), url);
        out.insert(format!("{port_prefix}_PROTO"), lower);
        out.insert(format!("{port_prefix}_PORT"), p.port.to_string());
        out.insert(format!("{port_prefix}_ADDR"), ip.clone());
    }
}

/// A `fieldRef`'s value (env and downwardAPI volumes).
pub(crate) fn field_value(
    pod: &Pod,
    field: &ObjectFieldSelector,
    downward: &Downward,
) -> Result<String, ConfigError> {
    let spec = pod.spec.as_ref();
    let meta = &pod.metadata;
    let path = field.field_path.as_str();
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => downward.host_ips.first().cloned().unwrap_or_default(),
        "status.hostIPs" => downward.host_ips.join(","),
        "status.podIP" => downward.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => downward.pod_ips.join(","),
        _ => {
            let subscript = |prefix: &str| {
                path.strip_prefix(prefix)
                    .and_then(|rest| rest.strip_prefix("['"))
                    .and_then(|rest| rest.strip_suffix("']"))
                    .map(str::to_owned)
            };
            if let Some(key) = subscript("metadata.labels") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(&key))
                    .cloned()
                    .unwrap_or_default()
            } else if let Some(key) = subscript("metadata.annotations") {
                meta.annotations
                    .as_ref()
                    .and_then(|a| a.get(&key))
                    .cloned()
                    .unwrap_or_default()
            } else {
                return Err(ConfigError(format!("unsupported fieldPath: {path}")));
            }
        }
    };
    Ok(value)
}

/// upstream's `FormatMap`: sorted `key="value"` lines.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    let mut lines: Vec<String> = map
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
        .collect();
    lines.sort();
    lines.join("\n")
}

/// A `resourceFieldRef`'s value: the container's request or limit (a missing limit is the
/// node's allocatable) over the divisor, rounded up.
pub(crate) fn resource_value(
    container: &Container,
    field: &ResourceFieldSelector,
    downward: &Downward,
) -> Result<String, ConfigError> {
    let r = container.resources.as_ref();
    let (kind, name) = match field.resource.as_str() {
        "limits.cpu" => (Kind::Limit, "cpu"),
        "limits.memory" => (Kind::Limit, "memory"),
        "limits.ephemeral-storage" => (Kind::Limit, "ephemeral-storage"),
        "requests.cpu" => (Kind::Request, "cpu"),
        "requests.memory" => (Kind::Request, "memory"),
        "requests.ephemeral-storage" => (Kind::Request, "ephemeral-storage"),
        other => {
            return Err(ConfigError(format!(
                "unsupported container resource : {other}"
            )));
        }
    };
    let divisor = field.divisor.as_ref().map_or("1", |d| d.0.as_str());
    if name == "cpu" {
        let value = match (container_amount(r, kind, "cpu"), kind) {
            (Some(v), _) => v,
            (None, Kind::Limit) => i128::from(downward.node_cpu_milli),
            (None, Kind::Request) => 0,
        };
        let div = i128::from(
            quantity::milli_cpu(divisor)
                .filter(|d| *d > 0)
                .unwrap_or(1000),
        );
        Ok(ceil_div(value, div).to_string())
    } else {
        let value = match (container_amount(r, kind, name), kind) {
            (Some(v), _) => v,
            (None, Kind::Limit) if name == "memory" => i128::from(downward.node_memory),
            _ => 0,
        };
        let div = i128::from(quantity::bytes(divisor).filter(|d| *d > 0).unwrap_or(1));
        Ok(ceil_div(value, div).to_string())
    }
}

fn ceil_div(a: i128, b: i128) -> i128 {
    if b == 0 { a } else { (a + b - 1).div_euclid(b) }
}
