//! A worker's resource usage sample, the body of [`TunnelRequest::Stats`](super::TunnelRequest):
//! rates already computed by the worker over [`NodeStats::window_ms`], as the kubelet's summary
//! API reports `usageNanoCores` and `workingSetBytes`. UTF-8 lines, names percent-encoded:
//!
//! ```text
//! stats 1 <timestamp unix ms> <window ms>
//! node <cpu nanocores> <memory working-set bytes>
//! pod <namespace> <name> <uid>
//! container <name> <cpu nanocores> <memory bytes>
//! ```

use std::fmt;

use super::query;

/// CPU and memory in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// CPU, billionths of a core, averaged over the window.
    pub cpu_nanocores: u64,
    /// Working-set memory, bytes.
    pub memory_bytes: u64,
}

/// One container's usage.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerStats {
    /// The container's name.
    pub name: String,
    /// Its usage.
    pub usage: Usage,
}

/// One pod's usage, per container.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodStats {
    /// The namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's UID.
    pub uid: String,
    /// Its containers.
    pub containers: Vec<ContainerStats>,
}

/// A node's usage sample.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeStats {
    /// When the sample ends, milliseconds since the epoch.
    pub timestamp_unix_ms: i64,
    /// How long the rates were measured over, milliseconds.
    pub window_ms: u64,
    /// The whole node.
    pub node: Usage,
    /// Its pods.
    pub pods: Vec<PodStats>,
}

/// A body that is not a [`NodeStats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsError {
    /// The 1-based line at fault.
    pub line: usize,
}

impl fmt::Display for StatsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed stats line {}", self.line)
    }
}

impl std::error::Error for StatsError {}

fn name(s: &str) -> String {
    let mut out = String::new();
    query::encode_into(&mut out, s);
    out
}

impl NodeStats {
    /// The body.
    pub fn encode(&self) -> String {
        let mut out = format!(
            "stats 1 {} {}\nnode {} {}\n",
            self.timestamp_unix_ms, self.window_ms, self.node.cpu_nanocores, self.node.memory_bytes
        );
        for p in &self.pods {
            out.push_str(&format!(
                "pod {} {} {}\n",
                name(&p.namespace),
                name(&p.name),
                name(&p.uid)
            ));
            for c in &p.containers {
                out.push_str(&format!(
                    "container {} {} {}\n",
                    name(&c.name),
                    c.usage.cpu_nanocores,
                    c.usage.memory_bytes
                ));
            }
        }
        out
    }

    /// Parses a body.
    ///
    /// # Errors
    ///
    /// [`StatsError`] naming the first line that is not as above (a `container` before any
    /// `pod`, a missing `stats` or `node` line, a bad number or escape).
    pub fn decode(body: &str) -> Result<Self, StatsError> {
        let mut stats: Option<NodeStats> = None;
        let mut node_seen = false;
        for (i, line) in body.lines().enumerate() {
            let err = StatsError { line: i + 1 };
            let f: Vec<&str> = line.split(' ').collect();
            let num = |s: &str| s.parse::<u64>().map_err(|_| err.clone());
            let text = |s: &str| query::decode(s, false).ok_or_else(|| err.clone());
            match (f.as_slice(), stats.as_mut()) {
                (["stats", "1", ts, window], None) => {
                    stats = Some(NodeStats {
                        timestamp_unix_ms: ts.parse().map_err(|_| err.clone())?,
                        window_ms: num(window)?,
                        ..NodeStats::default()
                    });
                }
                (["node", cpu, mem], Some(s)) if !node_seen => {
                    s.node = Usage {
                        cpu_nanocores: num(cpu)?,
                        memory_bytes: num(mem)?,
                    };
                    node_seen = true;
                }
                (["pod", ns, n, uid], Some(s)) if node_seen => s.pods.push(PodStats {
                    namespace: text(ns)?,
                    name: text(n)?,
                    uid: text(uid)?,
                    containers: Vec::new(),
                }),
                (["container", n, cpu, mem], Some(s)) => {
                    let container = ContainerStats {
                        name: text(n)?,
                        usage: Usage {
                            cpu_nanocores: num(cpu)?,
                            memory_bytes: num(mem)?,
                        },
                    };
                    s.pods.last_mut().ok_or(err)?.containers.push(container);
                }
                ([""], _) => {}
                _ => return Err(err),
            }
        }
        match stats {
            Some(s) if node_seen => Ok(s),
            _ => Err(StatsError {
                line: body.lines().count() + 1,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_round_trip() {
        let s = NodeStats {
            timestamp_unix_ms: 1_700_000_000_123,
            window_ms: 10_000,
            node: Usage {
                cpu_nanocores: 250_000_000,
                memory_bytes: 1 << 30,
            },
            pods: vec![PodStats {
                namespace: "default".into(),
                name: "web 1".into(),
                uid: "u-1".into(),
                containers: vec![ContainerStats {
                    name: "app".into(),
                    usage: Usage {
                        cpu_nanocores: 5,
                        memory_bytes: 4096,
                    },
                }],
            }],
        };
        assert_eq!(NodeStats::decode(&s.encode()), Ok(s));
        assert!(NodeStats::decode("").is_err());
        assert!(NodeStats::decode("stats 1 0 0\n").is_err());
        assert!(NodeStats::decode("stats 1 0 0\nnode 1 2\ncontainer a 1 2\n").is_err());
        assert!(NodeStats::decode("stats 2 0 0\nnode 1 2\n").is_err());
    }
}
