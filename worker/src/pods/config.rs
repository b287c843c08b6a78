//! The pod runtime's settings.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How the pod runtime runs pods on this node. Build with [`PodRuntimeConfig::new`] and the
/// `with_*` setters.
#[derive(Debug, Clone)]
pub struct PodRuntimeConfig {
    pub(crate) node_name: String,
    pub(crate) host_ips: Vec<IpAddr>,
    pub(crate) data_dir: PathBuf,
    pub(crate) cgroup_root: String,
    pub(crate) resync: Duration,
    pub(crate) relist: Duration,
    pub(crate) cluster_dns: Vec<IpAddr>,
    pub(crate) cluster_domain: String,
    pub(crate) node_cpu_milli: i64,
    pub(crate) node_memory: i64,
    pub(crate) container_log_max_size: u64,
    pub(crate) container_log_max_files: usize,
    pub(crate) log_rotation_interval: Duration,
}

impl PodRuntimeConfig {
    /// Pods of node `node_name` (host address `host_ip`), their files under `data_dir`
    /// (`pods/<uid>/` and `logs/`). Defaults: cgroup root `/kubepods`, resync every 10 s
    /// (a changed configmap shows up within that), relist every 1 s, no cluster DNS (pods get
    /// the node's resolv.conf), cluster domain `cluster.local`, the node's CPUs and memory
    /// from `/proc`, container logs rotated at 10 MiB keeping 5 files (the kubelet's
    /// `containerLogMaxSize` and `containerLogMaxFiles`), checked every 10 s.
    #[must_use]
    pub fn new(
        node_name: impl Into<String>,
        host_ip: IpAddr,
        data_dir: impl Into<PathBuf>,
    ) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Self {
            node_name: node_name.into(),
            host_ips: vec![host_ip],
            data_dir: data_dir.into(),
            cgroup_root: "/kubepods".to_owned(),
            resync: Duration::from_secs(10),
            relist: Duration::from_secs(1),
            cluster_dns: Vec::new(),
            cluster_domain: "cluster.local".to_owned(),
            node_cpu_milli: i64::try_from(cpus).unwrap_or(1) * 1000,
            node_memory: node_memory_bytes().unwrap_or(1 << 30),
            container_log_max_size: 10 << 20,
            container_log_max_files: 5,
            log_rotation_interval: Duration::from_secs(10),
        }
    }

    /// Container logs are rotated once they reach `max_size` bytes, keeping `max_files`
    /// files per container, the current one included (at least 2).
    #[must_use]
    pub fn with_container_log_rotation(mut self, max_size: u64, max_files: usize) -> Self {
        self.container_log_max_size = max_size.max(1);
        self.container_log_max_files = max_files.max(2);
        self
    }

    /// How often the container logs are checked for rotation (default 10 s).
    #[must_use]
    pub fn with_log_rotation_interval(mut self, every: Duration) -> Self {
        self.log_rotation_interval = every;
        self
    }

    /// The cgroup under which every pod's cgroup goes (default `/kubepods`).
    #[must_use]
    pub fn with_cgroup_root(mut self, root: impl Into<String>) -> Self {
        self.cgroup_root = root.into();
        self
    }

    /// How often each pod is synced without an event (default 10 s).
    #[must_use]
    pub fn with_resync(mut self, every: Duration) -> Self {
        self.resync = every;
        self
    }

    /// The cluster DNS servers and domain for `dnsPolicy: ClusterFirst`.
    #[must_use]
    pub fn with_cluster_dns(mut self, servers: Vec<IpAddr>, domain: impl Into<String>) -> Self {
        self.cluster_dns = servers;
        self.cluster_domain = domain.into();
        self
    }

    /// The node's name.
    #[must_use]
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    pub(crate) fn pod_dir(&self, uid: &str) -> PathBuf {
        self.data_dir.join("pods").join(uid)
    }

    pub(crate) fn log_dir(&self) -> PathBuf {
        self.data_dir.join("logs/pods")
    }

    pub(crate) fn host_ip_strings(&self) -> Vec<String> {
        self.host_ips.iter().map(ToString::to_string).collect()
    }
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
pub(crate) fn node_memory_bytes() -> Option<i64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}
