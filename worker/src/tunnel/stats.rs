//! Usage samples from the runtime (cumulative CPU time, current memory) and the rates the
//! enclave's `metrics.k8s.io` serves, computed from two samples as the kubelet's summary API
//! does.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use protocol::tunnel::PodRef;
use protocol::tunnel::stats::{ContainerStats, NodeStats, PodStats, Usage};

use super::{ContainerStreams, StreamError};

/// The shortest window rates are computed over; with no sample at least this old and at most
/// [`MAX_WINDOW`] old, a request waits this long for a second one.
const MIN_WINDOW: Duration = Duration::from_secs(1);

/// The longest window: an older sample is too stale to average over.
const MAX_WINDOW: Duration = Duration::from_secs(120);

/// Turns the runtime's cumulative samples into rates: over the window since the previous
/// request's sample when it is [`MIN_WINDOW`]..=[`MAX_WINDOW`] old, else over a fresh
/// [`MIN_WINDOW`].
#[derive(Debug, Default)]
pub(crate) struct Sampler {
    last: Mutex<Option<UsageSample>>,
}

impl Sampler {
    fn keep(&self, sample: UsageSample) -> Option<UsageSample> {
        let mut last = match self.last.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        last.replace(sample)
    }

    /// The node's current rates.
    pub(crate) async fn stats(
        &self,
        streams: &dyn ContainerStreams,
    ) -> Result<NodeStats, StreamError> {
        let now = streams.usage().await?;
        if let Some(previous) = self.keep(now.clone())
            && let Ok(age) = now.timestamp.duration_since(previous.timestamp)
            && (MIN_WINDOW..=MAX_WINDOW).contains(&age)
            && let Some(stats) = rates(&previous, &now)
        {
            return Ok(stats);
        }
        tokio::time::sleep(MIN_WINDOW).await;
        let later = streams.usage().await?;
        self.keep(later.clone());
        rates(&now, &later)
            .ok_or_else(|| StreamError::Runtime("the usage samples did not advance".into()))
    }
}

/// CPU used so far and memory in use now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CumulativeUsage {
    /// CPU time since start, nanoseconds.
    pub cpu_usage_ns: u64,
    /// Working-set memory, bytes.
    pub memory_working_set_bytes: u64,
}

/// One pod's containers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodUsage {
    /// The pod.
    pub pod: PodRef,
    /// Per container: its name and usage.
    pub containers: Vec<(String, CumulativeUsage)>,
}

/// What the runtime reports at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageSample {
    /// When.
    pub timestamp: SystemTime,
    /// The whole node.
    pub node: CumulativeUsage,
    /// Its pods.
    pub pods: Vec<PodUsage>,
}

/// Billionths of a core used between two cumulative CPU readings `window` apart.
fn nanocores(then_ns: u64, now_ns: u64, window: Duration) -> u64 {
    let window_ns = window.as_nanos().max(1);
    let used = u128::from(now_ns.saturating_sub(then_ns));
    u64::try_from(used.saturating_mul(1_000_000_000) / window_ns).unwrap_or(u64::MAX)
}

/// The rates between `earlier` and `later` (memory: `later`'s). A container absent from
/// `earlier` (started within the window) counts its CPU time from zero.
///
/// Returns `None` when `later` is not after `earlier`.
pub(crate) fn rates(earlier: &UsageSample, later: &UsageSample) -> Option<NodeStats> {
    let window = later.timestamp.duration_since(earlier.timestamp).ok()?;
    if window.is_zero() {
        return None;
    }
    let before = |pod: &PodRef, name: &str| {
        earlier
            .pods
            .iter()
            .find(|p| p.pod.uid == pod.uid && p.pod.name == pod.name)
            .and_then(|p| p.containers.iter().find(|(n, _)| n == name))
            .map(|(_, u)| u.cpu_usage_ns)
            .unwrap_or(0)
    };
    let pods = later
        .pods
        .iter()
        .map(|p| PodStats {
            namespace: p.pod.namespace.clone(),
            name: p.pod.name.clone(),
            uid: p.pod.uid.clone(),
            containers: p
                .containers
                .iter()
                .map(|(name, u)| ContainerStats {
                    name: name.clone(),
                    usage: Usage {
                        cpu_nanocores: nanocores(before(&p.pod, name), u.cpu_usage_ns, window),
                        memory_bytes: u.memory_working_set_bytes,
                    },
                })
                .collect(),
        })
        .collect();
    let timestamp_unix_ms = later
        .timestamp
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Some(NodeStats {
        timestamp_unix_ms,
        window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
        node: Usage {
            cpu_nanocores: nanocores(earlier.node.cpu_usage_ns, later.node.cpu_usage_ns, window),
            memory_bytes: later.node.memory_working_set_bytes,
        },
        pods,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_cpu_time_over_the_window() {
        let pod = PodRef {
            namespace: "default".into(),
            name: "p".into(),
            uid: "u".into(),
        };
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let sample = |t: SystemTime, node_cpu: u64, cpu: u64| UsageSample {
            timestamp: t,
            node: CumulativeUsage {
                cpu_usage_ns: node_cpu,
                memory_working_set_bytes: 1 << 30,
            },
            pods: vec![PodUsage {
                pod: pod.clone(),
                containers: vec![(
                    "c".into(),
                    CumulativeUsage {
                        cpu_usage_ns: cpu,
                        memory_working_set_bytes: 4096,
                    },
                )],
            }],
        };
        let a = sample(t0, 0, 1_000_000_000);
        let b = sample(t0 + Duration::from_secs(2), 3_000_000_000, 1_500_000_000);
        let r = rates(&a, &b).unwrap();
        assert_eq!(r.window_ms, 2_000);
        assert_eq!(r.timestamp_unix_ms, 1_002_000);
        assert_eq!(r.node.cpu_nanocores, 1_500_000_000);
        assert_eq!(r.pods[0].containers[0].usage.cpu_nanocores, 250_000_000);
        assert_eq!(r.pods[0].containers[0].usage.memory_bytes, 4096);
        assert!(rates(&b, &a).is_none());
    }
}
