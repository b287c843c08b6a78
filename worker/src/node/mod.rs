//! The node agent basics, as the kubelet does them: register the Node ([`registration`]),
//! renew its Lease in `kube-node-lease` every [`LEASE_RENEW_INTERVAL`] ([`lease`]), and report
//! its status ([`status`]) when it changes (checked every [`STATUS_CHECK_INTERVAL`]) and at
//! least every [`STATUS_REPORT_INTERVAL`], from facts about the machine ([`machine`]).

pub mod lease;
pub mod machine;
pub mod registration;
pub mod status;

use std::time::Duration;

/// How often the Lease is renewed (the kubelet renews every 10 s, a quarter of its 40 s).
pub const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(10);
/// The Lease's `leaseDurationSeconds` (upstream's node lease duration).
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// How often the status is recomputed (the kubelet's `nodeStatusUpdateFrequency`).
pub const STATUS_CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// Longest time between two status reports (the kubelet's `nodeStatusReportFrequency`).
pub const STATUS_REPORT_INTERVAL: Duration = Duration::from_secs(300);
/// Namespace of node Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// API path of the Node `name`.
#[must_use]
pub fn node_path(name: &str) -> String {
    format!("/api/v1/nodes/{name}")
}

/// API path of the Lease of node `name`.
#[must_use]
pub fn lease_path(name: &str) -> String {
    format!("/apis/coordination.k8s.io/v1/namespaces/{NODE_LEASE_NAMESPACE}/leases/{name}")
}
