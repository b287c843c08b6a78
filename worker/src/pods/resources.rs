//! Requests and limits to cgroups: the pod's QoS class, its cgroup parent (one per class,
//! as the kubelet's cgroupfs layout), and each container's Linux resources.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::quantity;

/// A pod's QoS class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    /// The status string.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Guaranteed => "Guaranteed",
            Self::Burstable => "Burstable",
            Self::BestEffort => "BestEffort",
        }
    }
}

fn amount(resource: &str, q: &Quantity) -> i128 {
    if resource == "cpu" {
        quantity::milli_cpu(&q.0).map_or(0, i128::from)
    } else {
        quantity::bytes(&q.0).map_or(0, i128::from)
    }
}

fn all_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.init_containers.as_ref())
        .into_iter()
        .flatten()
        .chain(spec.map(|s| s.containers.iter()).into_iter().flatten())
}

/// upstream's `GetPodQOS` (cpu and memory; sums over init and regular containers).
pub(crate) fn qos_class(pod: &Pod) -> QosClass {
    if let Some(class) = pod.status.as_ref().and_then(|s| s.qos_class.as_deref()) {
        match class {
            "Guaranteed" => return QosClass::Guaranteed,
            "Burstable" => return QosClass::Burstable,
            "BestEffort" => return QosClass::BestEffort,
            _ => {}
        }
    }
    let mut requests: BTreeMap<&str, i128> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i128> = BTreeMap::new();
    let mut guaranteed = true;
    for c in all_containers(pod) {
        let r = c.resources.as_ref();
        for (name, q) in r.and_then(|r| r.requests.as_ref()).into_iter().flatten() {
            if let Some(name) = ["cpu", "memory"].into_iter().find(|n| n == name) {
                let v = amount(name, q);
                if v != 0 {
                    *requests.entry(name).or_default() += v;
                }
            }
        }
        let mut found = 0;
        for (name, q) in r.and_then(|r| r.limits.as_ref()).into_iter().flatten() {
            if let Some(name) = ["cpu", "memory"].into_iter().find(|n| n == name) {
                let v = amount(name, q);
                if v != 0 {
                    found += 1;
                    *limits.entry(name).or_default() += v;
                }
            }
        }
        if found != 2 {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return QosClass::BestEffort;
    }
    if guaranteed && requests.iter().any(|(n, v)| limits.get(n) != Some(v)) {
        guaranteed = false;
    }
    if guaranteed && requests.len() == limits.len() {
        QosClass::Guaranteed
    } else {
        QosClass::Burstable
    }
}

/// The pod's cgroup parent under `root` (`/kubepods`): `pod<uid>` directly for Guaranteed,
/// under `burstable/` or `besteffort/` otherwise.
pub(crate) fn cgroup_parent(root: &str, qos: QosClass, uid: &str) -> String {
    let root = root.trim_end_matches('/');
    match qos {
        QosClass::Guaranteed => format!("{root}/pod{uid}"),
        QosClass::Burstable => format!("{root}/burstable/pod{uid}"),
        QosClass::BestEffort => format!("{root}/besteffort/pod{uid}"),
    }
}

fn get(map: Option<&BTreeMap<String, Quantity>>, name: &str) -> Option<i128> {
    map.and_then(|m| m.get(name)).map(|q| amount(name, q))
}

/// A request or limit of a container, in millicores or bytes.
pub(crate) fn container_amount(
    resources: Option<&ResourceRequirements>,
    kind: Kind,
    name: &str,
) -> Option<i128> {
    let r = resources?;
    match kind {
        Kind::Request => get(r.requests.as_ref(), name),
        Kind::Limit => get(r.limits.as_ref(), name),
    }
}

/// Request or limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Request,
    Limit,
}

/// A container's Linux resources, as upstream's `generateLinuxContainerResources`.
/// `oom_score_adj` is never negative here (the machine has no CAP_SYS_RESOURCE and
/// containerd runs with `restrict_oom_score_adj`).
pub(crate) fn linux_resources(
    container: &Container,
    qos: QosClass,
    memory_capacity: i64,
) -> cri::LinuxContainerResources {
    let r = container.resources.as_ref();
    let cpu_request = container_amount(r, Kind::Request, "cpu");
    let cpu_limit = container_amount(r, Kind::Limit, "cpu");
    let memory_request = container_amount(r, Kind::Request, "memory").unwrap_or(0);
    let memory_limit = container_amount(r, Kind::Limit, "memory").unwrap_or(0);
    let shares_milli = cpu_request.or(cpu_limit).unwrap_or(0);
    let cpu_shares = if shares_milli == 0 {
        2
    } else {
        (shares_milli * 1024 / 1000).max(2)
    };
    let (cpu_period, cpu_quota): (i64, i128) = match cpu_limit {
        Some(limit) if limit > 0 => (100_000, (limit * 100_000 / 1000).max(1000)),
        _ => (0, 0),
    };
    let oom_score_adj = match qos {
        QosClass::Guaranteed => 0,
        QosClass::BestEffort => 1000,
        QosClass::Burstable => {
            let capacity = i128::from(memory_capacity.max(1));
            (1000 - (1000 * memory_request) / capacity).clamp(2, 999)
        }
    };
    cri::LinuxContainerResources {
        cpu_period,
        cpu_quota: i64::try_from(cpu_quota).unwrap_or(0),
        cpu_shares: i64::try_from(cpu_shares).unwrap_or(2),
        memory_limit_in_bytes: i64::try_from(memory_limit).unwrap_or(0),
        oom_score_adj: i64::try_from(oom_score_adj).unwrap_or(1000),
        ..Default::default()
    }
}

/// Removes a pod's cgroup directories (every v1 hierarchy and the unified one), deepest
/// first; missing ones are fine.
pub(crate) fn remove_pod_cgroups(parent: &str) {
    let relative = parent.trim_start_matches('/');
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path().join(relative);
        remove_tree(&dir);
    }
}

fn remove_tree(dir: &Path) {
    if let Ok(children) = std::fs::read_dir(dir) {
        for child in children.flatten() {
            if child.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&child.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn pod(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Pod {
        let map = |v: &[(&str, &str)]| {
            (!v.is_empty()).then(|| {
                v.iter()
                    .map(|(k, q)| ((*k).to_owned(), Quantity((*q).to_owned())))
                    .collect()
            })
        };
        Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements {
                        requests: map(requests),
                        limits: map(limits),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn classes() {
        assert_eq!(qos_class(&pod(&[], &[])), QosClass::BestEffort);
        assert_eq!(
            qos_class(&pod(&[("cpu", "100m")], &[])),
            QosClass::Burstable
        );
        let both = [("cpu", "100m"), ("memory", "64Mi")];
        assert_eq!(qos_class(&pod(&both, &both)), QosClass::Guaranteed);
        assert_eq!(
            qos_class(&pod(&[("cpu", "50m"), ("memory", "64Mi")], &both)),
            QosClass::Burstable
        );
    }

    #[test]
    fn cgroup_settings() {
        let p = pod(
            &[("cpu", "250m"), ("memory", "64Mi")],
            &[("cpu", "500m"), ("memory", "128Mi")],
        );
        let c = &p
            .spec
            .as_ref()
            .map(|s| s.containers[0].clone())
            .unwrap_or_default();
        let r = linux_resources(c, QosClass::Burstable, 1 << 30);
        assert_eq!(
            (r.cpu_shares, r.cpu_period, r.cpu_quota),
            (256, 100_000, 50_000)
        );
        assert_eq!(r.memory_limit_in_bytes, 128 << 20);
        assert_eq!(r.oom_score_adj, 938);
        assert_eq!(
            cgroup_parent("/kubepods", QosClass::BestEffort, "u"),
            "/kubepods/besteffort/podu"
        );
    }
}
