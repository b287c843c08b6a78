//! The container runtime below the pod lifecycle: containerd (a child process in dev mode,
//! the machine's socket otherwise), the CRI v1 client, the local images, the CNI bridge
//! config, resource usage from CRI stats, and the node tunnel's logs, exec, attach,
//! port-forward and usage over CRI ([`CriStreams`]).
//!
//! Start at [`Containerd::start`] (dev mode) or [`Cri::connect`] (a machine's containerd).

mod cni;
mod containerd;
mod cri;
mod error;
mod images;
mod stats;
mod streams;

pub use cni::{BridgeNetwork, CONFLIST_FILE};
pub use containerd::{Containerd, ContainerdConfig, remove_all_pods};
pub use cri::Cri;
pub use error::{Error, Result};
pub use images::{BUSYBOX_IMAGE, ImageArchive, PAUSE_IMAGE, import};
pub use stats::{NodeUsage, PodUsage, ResourceUsage, usage};
pub use streams::CriStreams;
