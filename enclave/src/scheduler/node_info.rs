//! [`NodeData`] (what the scheduler reads of a typed Node) and
//! [`NodeInfo`] (a node with the pods on it and their sums), as
//! upstream's `framework.NodeInfo`.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint};

use super::labels::Labels;
use super::pod_info::{HostPort, PodInfo};
use super::resources::Resources;

/// The well-known hostname label.
pub(crate) const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
/// The well-known zone label.
pub(crate) const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
/// The well-known region label.
pub(crate) const LABEL_REGION: &str = "topology.kubernetes.io/region";

/// One node, decoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NodeData {
    /// `metadata.name`.
    pub(crate) name: String,
    /// `metadata.labels`.
    pub(crate) labels: Labels,
    /// `spec.taints`.
    pub(crate) taints: Vec<Taint>,
    /// `spec.unschedulable`.
    pub(crate) unschedulable: bool,
    /// `status.allocatable` (its `capacity` when allocatable is unset, as
    /// upstream's defaulting does).
    pub(crate) allocatable: Resources,
    /// `status.images`: each name with the image's size.
    pub(crate) images: Vec<(String, i64)>,
}

impl NodeData {
    /// Decodes `node`.
    pub(crate) fn new(node: &Node) -> Self {
        let spec = node.spec.as_ref();
        let status = node.status.as_ref();
        let list = status.and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()));
        let mut images = Vec::new();
        for img in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            for n in img.names.iter().flatten() {
                images.push((n.clone(), img.size_bytes.unwrap_or(0)));
            }
        }
        NodeData {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints: spec.and_then(|s| s.taints.clone()).unwrap_or_default(),
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            allocatable: list.map(Resources::from_list).unwrap_or_default(),
            images,
        }
    }

    /// A placeholder for pods bound to a node the cache has not seen.
    pub(crate) fn absent(name: &str) -> Self {
        NodeData {
            name: name.to_string(),
            labels: Labels::new(),
            taints: Vec::new(),
            unschedulable: false,
            allocatable: Resources::default(),
            images: Vec::new(),
        }
    }

    /// The zone key upstream's node tree groups nodes by.
    pub(crate) fn zone_key(&self) -> String {
        let get = |k: &str| self.labels.get(k).map(String::as_str).unwrap_or("");
        let (region, zone) = (get(LABEL_REGION), get(LABEL_ZONE));
        if region.is_empty() && zone.is_empty() {
            return String::new();
        }
        format!("{region}:\x00:{zone}")
    }
}

/// A node and the pods on it.
#[derive(Debug, Clone)]
pub(crate) struct NodeInfo {
    /// The node.
    pub(crate) node: Arc<NodeData>,
    /// Whether the node object exists (false: only pods bound to it are known).
    pub(crate) present: bool,
    /// Its index in the cache (stable while it is cached).
    pub(crate) slot: usize,
    /// Pods bound or assumed to it.
    pub(crate) pods: Vec<Arc<PodInfo>>,
    /// Those of `pods` with pod affinity or anti-affinity.
    pub(crate) pods_with_affinity: Vec<Arc<PodInfo>>,
    /// Those of `pods` with required anti-affinity.
    pub(crate) pods_with_required_anti_affinity: Vec<Arc<PodInfo>>,
    /// Host ports in use.
    pub(crate) used_ports: Vec<HostPort>,
    /// Sum of the pods' requests.
    pub(crate) requested: Resources,
    /// Sum of the pods' non-zero requests (CPU and memory, for scoring).
    pub(crate) non_zero_requested: Resources,
}

impl NodeInfo {
    /// A node without pods.
    pub(crate) fn new(node: Arc<NodeData>, present: bool) -> Self {
        NodeInfo {
            node,
            present,
            slot: 0,
            pods: Vec::new(),
            pods_with_affinity: Vec::new(),
            pods_with_required_anti_affinity: Vec::new(),
            used_ports: Vec::new(),
            requested: Resources::default(),
            non_zero_requested: Resources::default(),
        }
    }

    /// The node's name.
    pub(crate) fn name(&self) -> &str {
        &self.node.name
    }

    /// Adds a pod's requests, ports and affinity.
    pub(crate) fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_requested.milli_cpu += pod.non_zero.milli_cpu;
        self.non_zero_requested.memory += pod.non_zero.memory;
        self.used_ports.extend(pod.host_ports.iter().cloned());
        if pod.has_pod_affinity {
            self.pods_with_affinity.push(pod.clone());
        }
        if pod.has_required_anti_affinity() {
            self.pods_with_required_anti_affinity.push(pod.clone());
        }
        self.pods.push(pod);
    }

    /// Removes the pod with `uid`; returns it if it was there.
    pub(crate) fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let i = self.pods.iter().position(|p| p.uid == uid)?;
        let pod = self.pods.swap_remove(i);
        self.pods_with_affinity.retain(|p| p.uid != uid);
        self.pods_with_required_anti_affinity
            .retain(|p| p.uid != uid);
        self.requested.sub(&pod.requests);
        self.non_zero_requested.milli_cpu -= pod.non_zero.milli_cpu;
        self.non_zero_requested.memory -= pod.non_zero.memory;
        for hp in &pod.host_ports {
            if let Some(j) = self.used_ports.iter().position(|u| u == hp) {
                self.used_ports.swap_remove(j);
            }
        }
        Some(pod)
    }

    /// Whether `want` conflicts with a port in use (upstream's
    /// `HostPortInfo.CheckConflict`: `0.0.0.0` conflicts with every IP).
    pub(crate) fn port_conflicts(&self, want: &HostPort) -> bool {
        if want.port <= 0 {
            return false;
        }
        self.used_ports.iter().any(|u| {
            u.port == want.port
                && u.protocol == want.protocol
                && (want.ip == "0.0.0.0" || u.ip == "0.0.0.0" || u.ip == want.ip)
        })
    }

    /// Upstream's `Allocatable.AllowedPodNumber`.
    pub(crate) fn allowed_pods(&self) -> i64 {
        self.node.allocatable.allowed_pods
    }
}

#[cfg(test)]
pub(crate) mod test_nodes {
    //! Nodes for the plugins' unit tests.
    use super::*;
    use serde_json::{Value, json};

    /// A node from its JSON form.
    pub(crate) fn node(v: Value) -> NodeInfo {
        let typed: Node = serde_json::from_value(v).unwrap_or_default();
        NodeInfo::new(Arc::new(NodeData::new(&typed)), true)
    }

    /// A node named `name` with `cpu`, `mem` and 110 pods allocatable.
    pub(crate) fn sized(name: &str, cpu: &str, mem: &str) -> NodeInfo {
        node(
            json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"capacity": {"cpu": cpu, "memory": mem, "pods": "110"}}}),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::test_nodes::sized;
    use super::*;
    use crate::scheduler::pod_info::test_pods::pod;
    use serde_json::json;

    #[test]
    fn pods_add_up_and_come_off() {
        let mut n = sized("n1", "4", "8Gi");
        assert_eq!(
            (n.node.allocatable.milli_cpu, n.allowed_pods()),
            (4000, 110)
        );
        let p = Arc::new(pod(
            json!({"metadata": {"name": "a"}, "spec": {"containers": [
            {"name": "c", "image": "i", "resources": {"requests": {"cpu": "1"}},
             "ports": [{"containerPort": 80, "hostPort": 80, "hostIP": "10.0.0.1"}]}],
            "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {}, "topologyKey": "x"}]}}}}),
        ));
        n.add_pod(p.clone());
        assert_eq!(n.requested.milli_cpu, 1000);
        assert_eq!(n.non_zero_requested.memory, 200 * 1024 * 1024);
        assert_eq!(n.pods_with_required_anti_affinity.len(), 1);
        let port = |ip: &str, port| HostPort {
            ip: ip.into(),
            protocol: "TCP".into(),
            port,
        };
        assert!(n.port_conflicts(&port("0.0.0.0", 80)));
        assert!(n.port_conflicts(&port("10.0.0.1", 80)));
        assert!(!n.port_conflicts(&port("10.0.0.2", 80)));
        assert!(!n.port_conflicts(&port("0.0.0.0", 81)));
        assert!(n.remove_pod(&p.uid).is_some());
        assert!(n.pods.is_empty() && n.used_ports.is_empty() && n.pods_with_affinity.is_empty());
        assert_eq!(n.requested.milli_cpu, 0);
    }
}
