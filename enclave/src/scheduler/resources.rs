//! Resource amounts and a pod's requests, as upstream's
//! `framework.Resource` and `resourcehelper.PodRequests` compute them:
//! app containers summed, restartable (sidecar) init containers added to
//! them and to every later init container, the largest init container
//! step taken if it is bigger, pod overhead added.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::quantity;

/// The CPU a container without a CPU request counts as when scoring
/// (upstream's `DefaultMilliCPURequest`, 0.1 core).
pub(crate) const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;

/// The memory a container without a memory request counts as when
/// scoring (upstream's `DefaultMemoryRequest`, 200 MiB).
pub(crate) const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Amounts of each resource: CPU in millicores, the rest in units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Resources {
    /// `cpu`, in millicores.
    pub(crate) milli_cpu: i64,
    /// `memory`, in bytes.
    pub(crate) memory: i64,
    /// `ephemeral-storage`, in bytes.
    pub(crate) ephemeral_storage: i64,
    /// `pods` (only meaningful for a node's allocatable).
    pub(crate) allowed_pods: i64,
    /// Every other resource (extended resources, hugepages), sorted by name.
    pub(crate) scalar: Vec<(String, i64)>,
}

impl Resources {
    /// The amounts of a `ResourceList`.
    pub(crate) fn from_list(list: &BTreeMap<String, Quantity>) -> Self {
        let mut r = Resources::default();
        for (name, q) in list {
            match name.as_str() {
                "cpu" => r.milli_cpu = quantity::milli_value(&q.0),
                "memory" => r.memory = quantity::value(&q.0),
                "ephemeral-storage" => r.ephemeral_storage = quantity::value(&q.0),
                "pods" => r.allowed_pods = quantity::value(&q.0),
                other => r.scalar.push((other.to_string(), quantity::value(&q.0))),
            }
        }
        r
    }

    /// The amount of scalar resource `name` (0 when absent).
    pub(crate) fn scalar(&self, name: &str) -> i64 {
        self.scalar
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }

    fn scalar_mut(&mut self, name: &str) -> &mut i64 {
        let i = match self.scalar.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                self.scalar.push((name.to_string(), 0));
                self.scalar.sort_by(|a, b| a.0.cmp(&b.0));
                self.scalar.iter().position(|(n, _)| n == name).unwrap_or(0)
            }
        };
        &mut self.scalar[i].1
    }

    /// Adds `other` (resource by resource).
    pub(crate) fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.allowed_pods += other.allowed_pods;
        for (n, v) in &other.scalar {
            *self.scalar_mut(n) += v;
        }
    }

    /// Subtracts `other` (resource by resource).
    pub(crate) fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.allowed_pods -= other.allowed_pods;
        for (n, v) in &other.scalar {
            *self.scalar_mut(n) -= v;
        }
    }

    /// Takes the larger amount of each resource.
    pub(crate) fn set_max(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        self.allowed_pods = self.allowed_pods.max(other.allowed_pods);
        for (n, v) in &other.scalar {
            let s = self.scalar_mut(n);
            *s = (*s).max(*v);
        }
    }

    /// Whether nothing is requested.
    pub(crate) fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.iter().all(|(_, v)| *v == 0)
    }
}

/// A container's requests; with `defaults`, a missing CPU or memory
/// request counts as upstream's defaults (`NonMissingContainerRequests`).
fn container_requests(c: &Container, defaults: bool) -> Resources {
    let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let mut r = requests.map(Resources::from_list).unwrap_or_default();
    if defaults {
        let has = |k: &str| requests.is_some_and(|m| m.contains_key(k));
        if !has("cpu") {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !has("memory") {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    r
}

/// The pod's effective requests (`resourcehelper.PodRequests`); with
/// `defaults`, the "non-zero" requests scoring uses.
pub(crate) fn pod_requests(spec: &PodSpec, defaults: bool) -> Resources {
    let mut reqs = Resources::default();
    for c in &spec.containers {
        reqs.add(&container_requests(c, defaults));
    }
    let mut restartable = Resources::default();
    let mut init_max = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c, defaults);
        let step = if c.restart_policy.as_deref() == Some("Always") {
            reqs.add(&r);
            restartable.add(&r);
            restartable.clone()
        } else {
            let mut step = r;
            step.add(&restartable);
            step
        };
        init_max.set_max(&step);
    }
    reqs.set_max(&init_max);
    if let Some(overhead) = &spec.overhead {
        reqs.add(&Resources::from_list(overhead));
    }
    reqs
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    fn container(cpu: Option<&str>, mem: Option<&str>, restart: Option<&str>) -> Container {
        let mut requests = BTreeMap::new();
        if let Some(c) = cpu {
            requests.insert("cpu".to_string(), Quantity(c.into()));
        }
        if let Some(m) = mem {
            requests.insert("memory".to_string(), Quantity(m.into()));
        }
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: Some(requests),
                ..Default::default()
            }),
            restart_policy: restart.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn init_containers_take_the_max_and_sidecars_add_up() {
        // upstream's example: inits 2/1G and 2/3G, apps 2/1G and 1/1G -> 3 cpu, 3G.
        let spec = PodSpec {
            init_containers: Some(vec![
                container(Some("2"), Some("1G"), None),
                container(Some("2"), Some("3G"), None),
            ]),
            containers: vec![
                container(Some("2"), Some("1G"), None),
                container(Some("1"), Some("1G"), None),
            ],
            ..Default::default()
        };
        let r = pod_requests(&spec, false);
        assert_eq!((r.milli_cpu, r.memory), (3000, 3_000_000_000));

        // A sidecar (restartPolicy Always) runs beside the apps and the later inits.
        let spec = PodSpec {
            init_containers: Some(vec![
                container(Some("1"), None, Some("Always")),
                container(Some("3"), None, None),
            ]),
            containers: vec![container(Some("1"), None, None)],
            overhead: Some([("cpu".to_string(), Quantity("250m".into()))].into()),
            ..Default::default()
        };
        let r = pod_requests(&spec, false);
        // apps 1 + sidecar 1 = 2; init step 3 + sidecar 1 = 4; max 4; + overhead.
        assert_eq!(r.milli_cpu, 4250);
    }

    #[test]
    fn non_zero_requests_fill_in_missing_cpu_and_memory() {
        let spec = PodSpec {
            containers: vec![
                container(None, None, None),
                container(Some("0"), Some("1Mi"), None),
            ],
            ..Default::default()
        };
        let r = pod_requests(&spec, true);
        assert_eq!(r.milli_cpu, 100, "an explicit 0 stays 0");
        assert_eq!(r.memory, DEFAULT_MEMORY_REQUEST + (1 << 20));
        assert!(pod_requests(&spec, false).milli_cpu == 0);
    }

    #[test]
    fn arithmetic() {
        let mut a = Resources {
            milli_cpu: 1,
            scalar: vec![("gpu".into(), 1)],
            ..Default::default()
        };
        let b = Resources {
            memory: 5,
            scalar: vec![("a".into(), 2), ("gpu".into(), 3)],
            ..Default::default()
        };
        a.add(&b);
        assert_eq!(a.scalar, vec![("a".into(), 2), ("gpu".into(), 4)]);
        a.sub(&b);
        assert_eq!((a.scalar("gpu"), a.scalar("a"), a.memory), (1, 0, 0));
        assert!(!a.is_zero());
    }
}
