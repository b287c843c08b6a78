//! Resource usage from CRI stats (per container, summed per pod) and the node's `/proc`:
//! cumulative CPU time and working-set memory, as the kubelet's summary API reports them.
//! Rates (cores) come from two samples: [`ResourceUsage::cpu_rate`].

use std::collections::BTreeMap;
use std::time::SystemTime;

use k8s_cri::v1 as cri;

use super::cri::Cri;
use super::error::Result;

/// One pod's usage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodUsage {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's UID.
    pub uid: String,
    /// Per container: (name, cumulative CPU ns, working-set bytes).
    pub containers: Vec<(String, u64, u64)>,
    /// Cumulative CPU time of its containers, nanoseconds.
    pub cpu_usage_ns: u64,
    /// Working-set memory of its containers, bytes.
    pub memory_working_set_bytes: u64,
}

/// The node's usage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeUsage {
    /// Cumulative CPU time of the whole node (all CPUs, not idle), nanoseconds.
    pub cpu_usage_ns: u64,
    /// Memory in use (`MemTotal - MemAvailable`), bytes.
    pub memory_working_set_bytes: u64,
}

/// A sample of the node's and its pods' usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceUsage {
    /// When it was taken.
    pub timestamp: SystemTime,
    /// The node.
    pub node: NodeUsage,
    /// The pods of this node, by UID order.
    pub pods: Vec<PodUsage>,
}

impl ResourceUsage {
    /// CPU cores used between `earlier` and `self` for a cumulative counter pair.
    #[must_use]
    pub fn cpu_rate(&self, earlier: &Self, now_ns: u64, then_ns: u64) -> f64 {
        let window = self
            .timestamp
            .duration_since(earlier.timestamp)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        if window <= 0.0 {
            return 0.0;
        }
        #[allow(clippy::cast_precision_loss)]
        let used = now_ns.saturating_sub(then_ns) as f64 / 1e9;
        used / window
    }
}

fn node_usage() -> NodeUsage {
    let mut usage = NodeUsage::default();
    if let Ok(stat) = std::fs::read_to_string("/proc/stat")
        && let Some(line) = stat.lines().find(|l| l.starts_with("cpu "))
    {
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
        let busy: u64 = fields
            .iter()
            .take(8)
            .enumerate()
            .filter(|(i, _)| *i != 3 && *i != 4)
            .map(|(_, v)| *v)
            .sum();
        let ticks = 100; // USER_HZ on Linux
        usage.cpu_usage_ns = busy.saturating_mul(1_000_000_000 / ticks);
    }
    if let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") {
        let field = |name: &str| -> u64 {
            meminfo
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        usage.memory_working_set_bytes = field("MemTotal:").saturating_sub(field("MemAvailable:"));
    }
    usage
}

/// The node's and its pods' usage now (containers labelled for `node`).
///
/// # Errors
/// [`super::Error::Cri`] when the container stats cannot be listed.
pub async fn usage(cri: &Cri, node: &str) -> Result<ResourceUsage> {
    let stats = cri
        .list_container_stats(cri::ListContainerStatsRequest {
            filter: Some(cri::ContainerStatsFilter {
                label_selector: [("k3s-daas.io/node".to_owned(), node.to_owned())]
                    .into_iter()
                    .collect(),
                ..Default::default()
            }),
        })
        .await?
        .stats;
    let mut pods: BTreeMap<String, PodUsage> = BTreeMap::new();
    for s in stats {
        let Some(attrs) = s.attributes else { continue };
        let label = |k: &str| attrs.labels.get(k).cloned().unwrap_or_default();
        let uid = label("io.kubernetes.pod.uid");
        let cpu = s
            .cpu
            .and_then(|c| c.usage_core_nano_seconds)
            .map_or(0, |v| v.value);
        let memory = s
            .memory
            .and_then(|m| m.working_set_bytes)
            .map_or(0, |v| v.value);
        let pod = pods.entry(uid.clone()).or_insert_with(|| PodUsage {
            namespace: label("io.kubernetes.pod.namespace"),
            name: label("io.kubernetes.pod.name"),
            uid,
            ..Default::default()
        });
        pod.containers
            .push((label("io.kubernetes.container.name"), cpu, memory));
        pod.cpu_usage_ns = pod.cpu_usage_ns.saturating_add(cpu);
        pod.memory_working_set_bytes = pod.memory_working_set_bytes.saturating_add(memory);
    }
    Ok(ResourceUsage {
        timestamp: SystemTime::now(),
        node: node_usage(),
        pods: pods.into_values().collect(),
    })
}
