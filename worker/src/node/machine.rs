//! What the node reports about the machine it runs on, read from `/proc`, `/sys`, `/etc` and
//! the data directory's file system: capacity, identity, and the pressure signals behind the
//! MemoryPressure, DiskPressure and PIDPressure conditions.

use std::net::{IpAddr, UdpSocket};
use std::path::Path;

/// Memory below which MemoryPressure is reported: the kubelet's default hard eviction
/// threshold (`memory.available<100Mi`), also held back from allocatable memory.
pub const MEMORY_RESERVE_BYTES: u64 = 100 * 1024 * 1024;
/// Free share of the data directory's file system below which DiskPressure is reported: the
/// kubelet's `nodefs.available<10%`, also held back from allocatable ephemeral storage.
pub const DISK_RESERVE_PERCENT: u64 = 10;
/// Free share of inodes below which DiskPressure is reported (`nodefs.inodesFree<5%`).
pub const INODES_RESERVE_PERCENT: u64 = 5;
/// Free share of process IDs (`pid_max` less running processes) below which PIDPressure is
/// reported (the kubelet sets no default threshold; this one only flags a nearly full table).
pub const PIDS_RESERVE_PERCENT: u64 = 5;
/// Pods per node, the kubelet's default `maxPods`.
pub const MAX_PODS: u64 = 110;

/// The machine's fixed facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineFacts {
    /// Logical CPUs available to the process.
    pub cpus: u64,
    /// `MemTotal`, bytes.
    pub memory_bytes: u64,
    /// Size of the data directory's file system, bytes.
    pub storage_bytes: u64,
    /// The kernel's host name.
    pub hostname: String,
    /// `uname -r`.
    pub kernel_version: String,
    /// `PRETTY_NAME` of `/etc/os-release`.
    pub os_image: String,
    /// `/etc/machine-id`.
    pub machine_id: String,
    /// The DMI product UUID, when readable.
    pub system_uuid: String,
    /// This boot's ID.
    pub boot_id: String,
    /// Go's name of the architecture (`amd64`, `arm64`, ...).
    pub architecture: String,
}

/// Current pressure signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pressure {
    /// Available memory is under [`MEMORY_RESERVE_BYTES`].
    pub memory: bool,
    /// The data directory's file system is nearly full (space or inodes).
    pub disk: bool,
    /// The process table is nearly full.
    pub pids: bool,
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// A `kB` field of `/proc/meminfo`, in bytes.
fn meminfo_bytes(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib.saturating_mul(1024))
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_owned())
            })
        })
        .unwrap_or_else(|| "Linux".to_owned())
}

/// Go's `GOARCH` for this build's architecture.
#[must_use]
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// (total, available) bytes and (total, free) inodes of the file system holding `dir`.
// The statvfs field types differ by platform (u64 on 64-bit Linux).
#[allow(clippy::useless_conversion)]
fn file_system(dir: &Path) -> Option<(u64, u64, u64, u64)> {
    let stat = nix::sys::statvfs::statvfs(dir).ok()?;
    let unit = u64::from(stat.fragment_size());
    let blocks = u64::from(stat.blocks());
    let available = u64::from(stat.blocks_available());
    Some((
        blocks.saturating_mul(unit),
        available.saturating_mul(unit),
        u64::from(stat.files()),
        u64::from(stat.files_available()),
    ))
}

/// Reads the machine's facts; `data_dir` is where the node keeps its files (its file system
/// is the node's ephemeral storage).
#[must_use]
pub fn read(data_dir: &Path) -> MachineFacts {
    MachineFacts {
        cpus: std::thread::available_parallelism()
            .map(|n| u64::try_from(n.get()).unwrap_or(1))
            .unwrap_or(1),
        memory_bytes: meminfo_bytes("MemTotal").unwrap_or(0),
        storage_bytes: file_system(data_dir).map_or(0, |fs| fs.0),
        hostname: read_trimmed("/proc/sys/kernel/hostname"),
        kernel_version: read_trimmed("/proc/sys/kernel/osrelease"),
        os_image: os_image(),
        machine_id: read_trimmed("/etc/machine-id"),
        system_uuid: read_trimmed("/sys/class/dmi/id/product_uuid"),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
        architecture: go_arch().to_owned(),
    }
}

fn below_percent(free: u64, total: u64, percent: u64) -> bool {
    total > 0 && free.saturating_mul(100) < total.saturating_mul(percent)
}

/// The current pressure signals.
#[must_use]
pub fn pressure(data_dir: &Path) -> Pressure {
    let memory = meminfo_bytes("MemAvailable").is_some_and(|a| a < MEMORY_RESERVE_BYTES);
    let disk = file_system(data_dir).is_some_and(|(total, avail, inodes, inodes_free)| {
        below_percent(avail, total, DISK_RESERVE_PERCENT)
            || below_percent(inodes_free, inodes, INODES_RESERVE_PERCENT)
    });
    let pid_max: u64 = read_trimmed("/proc/sys/kernel/pid_max")
        .parse()
        .unwrap_or(0);
    let running = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .count()
        })
        .unwrap_or(0);
    let running = u64::try_from(running).unwrap_or(u64::MAX);
    let pids = below_percent(
        pid_max.saturating_sub(running),
        pid_max,
        PIDS_RESERVE_PERCENT,
    );
    Pressure { memory, disk, pids }
}

/// The local address this machine reaches `host:port` from (no packet is sent): the node's
/// InternalIP.
#[must_use]
pub fn route_source(host: &str, port: u16) -> Option<IpAddr> {
    let target = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .ok()?
        .next()?;
    let bind = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(target).ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_machine() {
        let dir = tempfile::tempdir().unwrap();
        let facts = read(dir.path());
        assert!(facts.cpus >= 1);
        assert!(facts.memory_bytes > MEMORY_RESERVE_BYTES);
        assert!(facts.storage_bytes > 0);
        assert!(!facts.kernel_version.is_empty());
        assert_eq!(
            route_source("127.0.0.1", 6443),
            Some("127.0.0.1".parse().unwrap())
        );
        assert!(below_percent(9, 100, 10));
        assert!(!below_percent(10, 100, 10));
        assert!(!below_percent(0, 0, 10));
    }
}
