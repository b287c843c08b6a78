//! The Node's status as the kubelet reports it: capacity and allocatable, addresses, nodeInfo,
//! and the Ready, MemoryPressure, DiskPressure and PIDPressure conditions with upstream's
//! reasons and messages. Sent when it changes and at least every
//! [`crate::node::STATUS_REPORT_INTERVAL`], as the kubelet's `nodeStatusReportFrequency`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeAddress, NodeCondition, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::machine::{
    DISK_RESERVE_PERCENT, MAX_PODS, MEMORY_RESERVE_BYTES, MachineFacts, Pressure,
};

/// What the status is made of, besides the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusInputs {
    /// The machine.
    pub facts: MachineFacts,
    /// Its pressure signals now.
    pub pressure: Pressure,
    /// The node's InternalIP, if known.
    pub internal_ip: Option<String>,
    /// Reported as `nodeInfo.kubeletVersion`: the API server's `gitVersion`.
    pub kubelet_version: String,
    /// `nodeInfo.containerRuntimeVersion`, e.g. `containerd://1.7.24`; empty when no runtime
    /// is known yet.
    pub container_runtime_version: String,
}

fn quantity(text: String) -> Quantity {
    Quantity(text)
}

fn kib(bytes: u64) -> Quantity {
    quantity(format!("{}Ki", bytes / 1024))
}

/// One condition: (type, status, reason, message) as upstream's kubelet words it.
fn wording(kind: &str, on: bool) -> (&'static str, &'static str, &'static str) {
    match (kind, on) {
        ("Ready", true) => ("True", "KubeletReady", "kubelet is posting ready status"),
        ("Ready", false) => ("False", "KubeletNotReady", "kubelet is not ready"),
        ("MemoryPressure", false) => (
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        ("MemoryPressure", true) => (
            "True",
            "KubeletHasInsufficientMemory",
            "kubelet has insufficient memory available",
        ),
        ("DiskPressure", false) => (
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        ("DiskPressure", true) => (
            "True",
            "KubeletHasDiskPressure",
            "kubelet has disk pressure",
        ),
        ("PIDPressure", false) => (
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        (_, _) => (
            "True",
            "KubeletHasInsufficientPID",
            "kubelet has insufficient PID available",
        ),
    }
}

/// The status for `inputs` at `now`. Conditions keep their `lastTransitionTime` from
/// `previous` while their status is unchanged; every condition's `lastHeartbeatTime` is `now`.
#[must_use]
pub fn node_status(inputs: &StatusInputs, previous: Option<&NodeStatus>, now: Time) -> NodeStatus {
    let f = &inputs.facts;
    let capacity: BTreeMap<String, Quantity> = [
        ("cpu".to_owned(), quantity(f.cpus.to_string())),
        ("memory".to_owned(), kib(f.memory_bytes)),
        ("ephemeral-storage".to_owned(), kib(f.storage_bytes)),
        ("pods".to_owned(), quantity(MAX_PODS.to_string())),
    ]
    .into_iter()
    .collect();
    let mut allocatable = capacity.clone();
    allocatable.insert(
        "memory".to_owned(),
        kib(f.memory_bytes.saturating_sub(MEMORY_RESERVE_BYTES)),
    );
    allocatable.insert(
        "ephemeral-storage".to_owned(),
        kib(f.storage_bytes / 100 * (100 - DISK_RESERVE_PERCENT)),
    );
    let mut addresses = Vec::new();
    if let Some(ip) = &inputs.internal_ip {
        addresses.push(NodeAddress {
            type_: "InternalIP".to_owned(),
            address: ip.clone(),
        });
    }
    if !f.hostname.is_empty() {
        addresses.push(NodeAddress {
            type_: "Hostname".to_owned(),
            address: f.hostname.clone(),
        });
    }
    let p = inputs.pressure;
    let conditions = [
        ("MemoryPressure", p.memory),
        ("DiskPressure", p.disk),
        ("PIDPressure", p.pids),
        ("Ready", true),
    ]
    .into_iter()
    .map(|(kind, on)| {
        let (status, reason, message) = wording(kind, on);
        let transition = previous
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == kind))
            .filter(|c| c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        NodeCondition {
            type_: kind.to_owned(),
            status: status.to_owned(),
            reason: Some(reason.to_owned()),
            message: Some(message.to_owned()),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(transition),
        }
    })
    .collect();
    NodeStatus {
        capacity: Some(capacity),
        allocatable: Some(allocatable),
        addresses: Some(addresses),
        conditions: Some(conditions),
        node_info: Some(NodeSystemInfo {
            architecture: f.architecture.clone(),
            boot_id: f.boot_id.clone(),
            container_runtime_version: inputs.container_runtime_version.clone(),
            kernel_version: f.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: inputs.kubelet_version.clone(),
            machine_id: f.machine_id.clone(),
            operating_system: "linux".to_owned(),
            os_image: f.os_image.clone(),
            system_uuid: f.system_uuid.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// True when `a` and `b` differ in more than heartbeat times: worth reporting now.
#[must_use]
pub fn changed(a: &NodeStatus, b: &NodeStatus) -> bool {
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        if let Some(cs) = s.conditions.as_mut() {
            for c in cs {
                c.last_heartbeat_time = None;
            }
        }
        s
    };
    strip(a) != strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> StatusInputs {
        StatusInputs {
            facts: MachineFacts {
                cpus: 2,
                memory_bytes: 4 << 30,
                storage_bytes: 100 << 30,
                hostname: "h".into(),
                kernel_version: "6.1.0".into(),
                os_image: "Debian".into(),
                machine_id: "m".into(),
                system_uuid: String::new(),
                boot_id: "b".into(),
                architecture: "amd64".into(),
            },
            pressure: Pressure::default(),
            internal_ip: Some("10.0.0.2".into()),
            kubelet_version: "v1.33.0".into(),
            container_runtime_version: String::new(),
        }
    }

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn capacity_conditions_and_transitions() {
        let first = node_status(&inputs(), None, at(100));
        let cap = first.capacity.as_ref().unwrap();
        assert_eq!(cap["cpu"].0, "2");
        assert_eq!(cap["memory"].0, "4194304Ki");
        assert_eq!(cap["pods"].0, "110");
        let alloc = first.allocatable.as_ref().unwrap();
        assert_eq!(alloc["memory"].0, format!("{}Ki", (4u64 << 20) - 102_400));
        let conds = first.conditions.as_ref().unwrap();
        let ready = conds.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
        let mem = conds.iter().find(|c| c.type_ == "MemoryPressure").unwrap();
        assert_eq!(
            (mem.status.as_str(), mem.reason.as_deref()),
            ("False", Some("KubeletHasSufficientMemory"))
        );

        // A heartbeat later: nothing changed but heartbeat times; transitions are kept.
        let again = node_status(&inputs(), Some(&first), at(110));
        assert!(!changed(&first, &again));
        let ready = again
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.last_transition_time, Some(at(100)));
        assert_eq!(ready.last_heartbeat_time, Some(at(110)));

        let mut pressured = inputs();
        pressured.pressure.disk = true;
        let third = node_status(&pressured, Some(&again), at(120));
        assert!(changed(&again, &third));
        let disk = third
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "DiskPressure")
            .unwrap();
        assert_eq!(disk.reason.as_deref(), Some("KubeletHasDiskPressure"));
        assert_eq!(disk.last_transition_time, Some(at(120)));
    }
}
