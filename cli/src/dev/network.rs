//! `daas dev`'s network for its workers ([`worker::network::devnet`]): a bridge and one
//! namespace per worker (slot 0: `daas-dev0`, `10.199.0.1/24`, namespaces `daas-dev-wI` at
//! `10.199.0.(10+I)`), so that pod traffic between workers really crosses from one node to
//! another. The workers reach the API through a second relay listening on the bridge address
//! (the first one listens on `--listen`, usually `127.0.0.1`, which inside a namespace is the
//! namespace's own loopback).
//!
//! Each `daas dev` reserves a slot ([`DevTopology::slot`]) with a lock under [`LOCK_DIR`], so
//! clusters on one machine never take down each other's network; a data directory gets the
//! slot it had before when that one is free, so its workers keep their addresses.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use host::dir_lock::{LockError, lock_exclusive};
use nix::fcntl::Flock;
use worker::network::devnet::{DevNode, DevTopology};

/// Where the slots' lock files live.
pub(super) const LOCK_DIR: &str = "/run/daas-dev";

/// The file under the data directory that remembers its slot.
const SLOT_FILE: &str = "dev-network-slot";

/// A dev network slot this process holds (released when dropped or when the process dies).
#[derive(Debug)]
pub(super) struct DevNetwork {
    topology: DevTopology,
    _lock: Option<Flock<std::fs::File>>,
}

impl DevNetwork {
    /// Reserves a slot for the cluster in `data_dir`: the one it used last if free, else the
    /// first free one. Without a writable [`LOCK_DIR`] (not root: the namespaces cannot be made
    /// either) it takes slot 0 unlocked, and [`DevNetwork::setup`] says why the network is off.
    pub(super) fn reserve(data_dir: &Path) -> anyhow::Result<Self> {
        let remembered = std::fs::read_to_string(data_dir.join(SLOT_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<u8>().ok());
        let lock_dir = Path::new(LOCK_DIR);
        if std::fs::create_dir_all(lock_dir).is_err() {
            return Ok(Self::at(0, None));
        }
        for slot in remembered.into_iter().chain(0..=u8::MAX) {
            match lock_exclusive(lock_dir, &format!("slot-{slot}.lock")) {
                Ok(lock) => {
                    if let Err(e) = std::fs::write(data_dir.join(SLOT_FILE), format!("{slot}\n")) {
                        eprintln!("daas dev: cannot remember the dev network slot: {e}");
                    }
                    if remembered.is_some_and(|r| r != slot) {
                        eprintln!(
                            "daas dev: dev network slot {} is taken by another cluster; this one \
                             uses slot {slot} ({})",
                            remembered.unwrap_or_default(),
                            DevTopology::slot(slot).subnet
                        );
                    }
                    return Ok(Self::at(slot, Some(lock)));
                }
                Err(LockError::Busy) => {}
                Err(LockError::Io(e)) => {
                    anyhow::bail!("locking a dev network slot under {LOCK_DIR}: {e}")
                }
            }
        }
        anyhow::bail!("all 256 dev network slots are in use by other `daas dev` clusters")
    }

    fn at(slot: u8, lock: Option<Flock<std::fs::File>>) -> Self {
        Self {
            topology: DevTopology::slot(slot),
            _lock: lock,
        }
    }

    /// This machine's address on the bridge, where the workers reach the API (the serving
    /// certificate names it).
    pub(super) fn bridge_ip(&self) -> IpAddr {
        IpAddr::V4(self.topology.host_ip())
    }

    /// Where the workers' relay listens: the bridge address, on the port of `listen`.
    pub(super) fn relay_listen(&self, listen: SocketAddr) -> SocketAddr {
        SocketAddr::new(self.bridge_ip(), listen.port())
    }

    /// Sets the network up for `count` workers; `None` (said loudly) when namespaces cannot be
    /// made here (not root, no `ip`), and the workers then share the host's namespace.
    pub(super) async fn setup(&self, count: usize) -> Option<Vec<DevNode>> {
        match self.topology.setup(count).await {
            Ok(nodes) => Some(nodes),
            Err(e) => {
                eprintln!(
                    "daas dev: cannot make the workers' network namespaces ({e}): the workers \
                     share this machine's network, and pods reach only pods on their own node"
                );
                self.topology.cleanup_blocking();
                None
            }
        }
    }

    /// Removes the namespaces and the bridge (after the workers stopped).
    pub(super) async fn cleanup(&self) {
        if let Err(e) = self.topology.cleanup().await {
            eprintln!("daas dev: removing the workers' network namespaces: {e}");
        }
    }
}
