//! The endpoints controller (upstream `pkg/controller/endpoint`): the
//! Endpoints of every Service with a selector list the selected pods that
//! have an IP, ready ones under `addresses` and the others under
//! `notReadyAddresses` (all under `addresses` with
//! `publishNotReadyAddresses`), one subset per set of resolved ports (a
//! named `targetPort` is looked up in each pod's containers). Services
//! without a selector and ExternalName Services are left alone; the
//! Endpoints of a deleted Service go with it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Error;
use super::runtime::{Action, ObjectKey, Reconciler};
use super::service_index::{ServiceIndex, selects};
use super::typed::Typed;
use crate::registry::WatchEvent;
use crate::registry::eviction::is_pod_ready;
use crate::registry::generic::DeleteOptions;

/// The label marking the endpoints of a headless Service.
pub(crate) const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// Addresses an Endpoints object keeps (upstream's `maxCapacity`).
const MAX_CAPACITY: usize = 1000;

/// The annotation upstream sets on Endpoints it had to truncate.
const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";

/// The pod's IP, if it has one.
pub(crate) fn pod_ip(pod: &Pod) -> Option<&str> {
    let status = pod.status.as_ref()?;
    status
        .pod_ip
        .as_deref()
        .filter(|ip| !ip.is_empty())
        .or_else(|| status.pod_ips.as_ref()?.first().map(|p| p.ip.as_str()))
}

/// upstream's `ShouldPodBeInEndpoints`: not finished, has an IP, and not
/// being deleted unless terminating pods are wanted.
pub(crate) fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) || pod_ip(pod).is_none() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// upstream's `FindPort`: the container port a Service port targets in
/// `pod` (a number as it is, a name looked up with the same protocol).
pub(crate) fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            pod.spec.as_ref()?.containers.iter().find_map(|c| {
                c.ports.iter().flatten().find_map(|p| {
                    (p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol)
                        .then_some(p.container_port)
                })
            })
        }
    }
}

/// Whether the pod's hostname goes into its endpoint (it names the Service as its subdomain).
pub(crate) fn hostname_for(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace)
        .then(|| hostname.to_string())
}

/// A reference to `pod`, as endpoints carry it.
pub(crate) fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The pods of `ns` a Service's selector selects.
pub(crate) fn selected<'a>(svc: &Service, pods: &'a [Pod]) -> Vec<&'a Pod> {
    let Some(sel) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return Vec::new();
    };
    pods.iter()
        .filter(|p| selects(sel, p.metadata.labels.as_ref()))
        .collect()
}

/// The Service's labels plus (or minus) the headless label.
pub(crate) fn service_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    let headless = svc
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_none_or(|ip| ip.is_empty() || ip == "None");
    if headless {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    labels
}

/// Sorts and merges subsets with the same ports (upstream's `RepackSubsets`).
fn repack(subsets: Vec<EndpointSubset>) -> Vec<EndpointSubset> {
    type Key = Vec<(String, i32, String)>;
    let port_key = |ports: &[EndpointPort]| -> Key {
        let mut k: Key = ports
            .iter()
            .map(|p| {
                (
                    p.name.clone().unwrap_or_default(),
                    p.port,
                    p.protocol.clone().unwrap_or_default(),
                )
            })
            .collect();
        k.sort();
        k
    };
    /// The ports, and the ready and not-ready addresses, of one port set.
    type Group = (
        Vec<EndpointPort>,
        Vec<EndpointAddress>,
        Vec<EndpointAddress>,
    );
    let mut groups: BTreeMap<Key, Group> = BTreeMap::new();
    for s in subsets {
        let ports = s.ports.unwrap_or_default();
        let g = groups
            .entry(port_key(&ports))
            .or_insert_with(|| (ports, Vec::new(), Vec::new()));
        g.1.extend(s.addresses.unwrap_or_default());
        g.2.extend(s.not_ready_addresses.unwrap_or_default());
    }
    let sort_key = |a: &EndpointAddress| {
        (
            a.ip.clone(),
            a.target_ref.as_ref().and_then(|r| r.uid.clone()),
        )
    };
    groups
        .into_values()
        .map(|(mut ports, mut ready, mut not_ready)| {
            ports.sort_by_key(|p| (p.name.clone(), p.port, p.protocol.clone()));
            ready.sort_by_key(sort_key);
            ready.dedup_by_key(|a| sort_key(a));
            not_ready.retain(|a| !ready.iter().any(|r| sort_key(r) == sort_key(a)));
            not_ready.sort_by_key(sort_key);
            not_ready.dedup_by_key(|a| sort_key(a));
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

/// The subsets upstream computes for `svc` over its selected `pods`.
fn subsets_for(svc: &Service, pods: &[&Pod]) -> Vec<EndpointSubset> {
    let spec = svc.spec.clone().unwrap_or_default();
    let tolerate = spec.publish_not_ready_addresses.unwrap_or(false);
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let mut subsets = Vec::new();
    for pod in pods {
        if !should_be_in_endpoints(pod, tolerate) {
            continue;
        }
        let Some(ip) = pod_ip(pod) else { continue };
        let address = EndpointAddress {
            ip: ip.to_string(),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            hostname: hostname_for(pod, svc),
            target_ref: Some(pod_ref(pod)),
        };
        let ready = tolerate || is_pod_ready(pod);
        let mut add = |ports: Option<Vec<EndpointPort>>| {
            let (addresses, not_ready_addresses) = if ready {
                (Some(vec![address.clone()]), None)
            } else {
                (None, Some(vec![address.clone()]))
            };
            subsets.push(EndpointSubset {
                addresses,
                not_ready_addresses,
                ports,
            });
        };
        let ports = spec.ports.clone().unwrap_or_default();
        if ports.is_empty() {
            if headless {
                add(None);
            }
            continue;
        }
        for sp in &ports {
            let Some(n) = find_port(pod, sp) else {
                continue;
            };
            add(Some(vec![EndpointPort {
                name: sp.name.clone(),
                port: n,
                protocol: sp.protocol.clone(),
                app_protocol: sp.app_protocol.clone(),
            }]));
        }
    }
    repack(subsets)
}

/// Keeps at most `MAX_CAPACITY` addresses, ready ones first; whether it cut any.
fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let total: usize = subsets
        .iter()
        .map(|s| {
            s.addresses.as_ref().map_or(0, Vec::len)
                + s.not_ready_addresses.as_ref().map_or(0, Vec::len)
        })
        .sum();
    if total <= MAX_CAPACITY {
        return false;
    }
    let mut left = MAX_CAPACITY;
    for s in subsets.iter_mut() {
        if let Some(a) = s.addresses.as_mut() {
            a.truncate(left);
            left -= a.len();
        }
    }
    for s in subsets.iter_mut() {
        if let Some(a) = s.not_ready_addresses.as_mut() {
            a.truncate(left);
            left -= a.len();
        }
    }
    true
}

/// The endpoints controller.
#[derive(Debug)]
pub(crate) struct EndpointsController {
    services: Typed<Service>,
    pods: Typed<Pod>,
    endpoints: Typed<Endpoints>,
    index: ServiceIndex,
}

impl EndpointsController {
    /// Watches 0: services, 1: pods.
    pub(crate) fn new(
        services: Typed<Service>,
        pods: Typed<Pod>,
        endpoints: Typed<Endpoints>,
    ) -> Self {
        EndpointsController {
            services,
            pods,
            endpoints,
            index: ServiceIndex::default(),
        }
    }
}

impl Reconciler for EndpointsController {
    type Key = ObjectKey;
    const NAME: &'static str = "endpoint";

    async fn keys_for(&mut self, kind: usize, event: &WatchEvent) -> Vec<ObjectKey> {
        match kind {
            0 => self.index.service_event(event),
            _ => self.index.pod_event(event),
        }
    }

    async fn reconcile(&mut self, key: &ObjectKey) -> Result<Action, Error> {
        let (ns, name) = (key.namespace.as_str(), key.name.as_str());
        let Some(svc) = self.services.get(ns, name).await? else {
            self.index.set_members(key, &[]);
            self.endpoints
                .delete(ns, name, &DeleteOptions::default())
                .await?;
            return Ok(Action::await_change());
        };
        let spec = svc.spec.clone().unwrap_or_default();
        if spec.selector.is_none() || spec.type_.as_deref() == Some("ExternalName") {
            self.index.set_members(key, &[]);
            return Ok(Action::await_change());
        }
        let all = self.pods.list(ns).await?;
        let pods = selected(&svc, &all);
        let members: Vec<String> = pods
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        self.index.set_members(key, &members);
        let mut subsets = subsets_for(&svc, &pods);
        let truncated = truncate(&mut subsets);
        let subsets = (!subsets.is_empty()).then_some(subsets);
        let labels = service_labels(&svc);
        let current = self.endpoints.get(ns, name).await?;
        let write = match &current {
            None => true,
            Some(ep) => {
                let over = ep
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(OVER_CAPACITY))
                    .is_some();
                ep.subsets != subsets
                    || ep.metadata.labels.clone().unwrap_or_default() != labels
                    || over != truncated
            }
        };
        if !write {
            return Ok(Action::await_change());
        }
        let result = match current {
            None => {
                let mut annotations = BTreeMap::new();
                if truncated {
                    annotations.insert(OVER_CAPACITY.to_string(), "truncated".to_string());
                }
                let ep = Endpoints {
                    metadata: ObjectMeta {
                        name: Some(name.into()),
                        namespace: Some(ns.into()),
                        labels: Some(labels),
                        annotations: (!annotations.is_empty()).then_some(annotations),
                        ..Default::default()
                    },
                    subsets,
                };
                self.endpoints.create(ns, &ep).await.map(|_| ())
            }
            Some(_) => self
                .endpoints
                .edit(ns, name, |ep| {
                    ep.subsets = subsets.clone();
                    ep.metadata.labels = Some(labels.clone());
                    let annotations = ep.metadata.annotations.get_or_insert_with(BTreeMap::new);
                    if truncated {
                        annotations.insert(OVER_CAPACITY.into(), "truncated".into());
                    } else {
                        annotations.remove(OVER_CAPACITY);
                    }
                    if annotations.is_empty() {
                        ep.metadata.annotations = None;
                    }
                    true
                })
                .await
                .map(|_| ()),
        };
        match result {
            Ok(()) => Ok(Action::await_change()),
            Err(e) if e.is_namespace_terminating() => Ok(Action::await_change()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ip: &str, ready: bool, labels: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "d", "uid": format!("u-{name}"), "labels": labels},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i", "ports": [{"name": "web", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        }))
        .unwrap()
    }

    #[test]
    fn ready_and_not_ready_pods_with_a_named_port() {
        let svc: Service = serde_json::from_value(json!({"metadata": {"name": "s", "namespace": "d"},
            "spec": {"clusterIP": "10.43.0.9", "selector": {"app": "a"}, "ports": [{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}]}})).unwrap();
        let pods = [
            pod("b", "10.42.0.3", true, json!({"app": "a"})),
            pod("a", "10.42.0.2", false, json!({"app": "a"})),
            pod("x", "10.42.0.4", true, json!({"app": "other"})),
        ];
        let sel = selected(&svc, &pods);
        assert_eq!(sel.len(), 2);
        let subsets = subsets_for(&svc, &sel);
        assert_eq!(subsets.len(), 1);
        let s = &subsets[0];
        assert_eq!(s.addresses.as_ref().unwrap()[0].ip, "10.42.0.3");
        assert_eq!(s.not_ready_addresses.as_ref().unwrap()[0].ip, "10.42.0.2");
        assert_eq!(s.ports.as_ref().unwrap()[0].port, 8080);
    }
}
