//! The pod's status as the kubelet reports it (`generateAPIPodStatus`, `getPhase`, the
//! condition generators): container statuses from what the runtime holds, the reasons of the
//! last sync's failures, and the probes' verdicts.

use std::collections::HashMap;

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
    VolumeMountStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::observed::{ObservedContainer, ObservedPod};
use super::probes::ProbeState;
use super::resources::qos_class;

/// Why a container waits, from the last sync (upstream's reason cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WaitReason {
    pub(crate) reason: String,
    pub(crate) message: String,
}

/// A terminal verdict the kubelet reaches itself (deadline, eviction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TerminalVerdict {
    pub(crate) reason: String,
    pub(crate) message: String,
}

/// Everything the status is made from.
pub(crate) struct StatusInput<'a> {
    pub(crate) pod: &'a Pod,
    pub(crate) observed: &'a ObservedPod,
    pub(crate) reasons: &'a HashMap<String, WaitReason>,
    pub(crate) probes: &'a (dyn Fn(&str) -> Option<ProbeState> + Sync),
    pub(crate) messages: &'a (dyn Fn(&ObservedContainer) -> String + Sync),
    pub(crate) host_ips: &'a [String],
    pub(crate) start_time: Option<jiff::Timestamp>,
    pub(crate) verdict: Option<&'a TerminalVerdict>,
    /// The pod is done: its containers will not run again.
    pub(crate) terminal: bool,
    pub(crate) previous: Option<&'a PodStatus>,
}

fn time(nanos: i64) -> Option<Time> {
    (nanos > 0).then(|| {
        Time(
            jiff::Timestamp::from_nanosecond(i128::from(nanos))
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
        )
    })
}

fn state_of(c: &ObservedContainer, message: String) -> ContainerState {
    match c.state {
        cri::ContainerState::ContainerRunning => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: time(c.started_at),
            }),
            ..Default::default()
        },
        cri::ContainerState::ContainerExited => ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: c.exit_code,
                reason: Some(c.reason.clone()).filter(|r| !r.is_empty()),
                message: Some(message).filter(|m| !m.is_empty()),
                started_at: time(c.started_at),
                finished_at: time(c.finished_at),
                container_id: Some(format!("containerd://{}", c.id)),
                signal: None,
            }),
            ..Default::default()
        },
        _ => ContainerState {
            waiting: Some(ContainerStateWaiting::default()),
            ..Default::default()
        },
    }
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_owned()),
            message,
        }),
        ..Default::default()
    }
}

fn container_statuses(
    input: &StatusInput<'_>,
    containers: &[Container],
    has_init: bool,
) -> Vec<ContainerStatus> {
    let default_reason = if has_init {
        "PodInitializing"
    } else {
        "ContainerCreating"
    };
    containers
        .iter()
        .map(|spec| {
            let (latest, previous) = input.observed.latest(&spec.name);
            let mut status = ContainerStatus {
                name: spec.name.clone(),
                image: spec.image.clone().unwrap_or_default(),
                image_id: String::new(),
                state: Some(waiting(default_reason, None)),
                ..Default::default()
            };
            if let Some(c) = latest {
                let probe = (input.probes)(&c.id).unwrap_or_default();
                status.container_id = Some(format!("containerd://{}", c.id));
                if !c.image.is_empty() {
                    status.image = c.image.clone();
                }
                status.image_id = c.image_ref.clone();
                status.restart_count = c.restart_count;
                status.state = Some(state_of(c, (input.messages)(c)));
                status.started = Some(c.running() && probe.started);
                status.ready = c.running() && probe.ready && !input.terminal;
                status.volume_mounts = spec.volume_mounts.as_ref().map(|mounts| {
                    mounts
                        .iter()
                        .map(|m| VolumeMountStatus {
                            name: m.name.clone(),
                            mount_path: m.mount_path.clone(),
                            read_only: m.read_only,
                            recursive_read_only: m
                                .read_only
                                .filter(|r| *r)
                                .map(|_| "Disabled".to_owned()),
                        })
                        .collect()
                });
                if let Some(p) = previous {
                    status.last_state = Some(state_of(p, (input.messages)(p)));
                }
            }
            if let Some(reason) = input.reasons.get(&spec.name) {
                if status
                    .state
                    .as_ref()
                    .is_some_and(|s| s.terminated.is_some())
                {
                    status.last_state = status.state.take();
                }
                status.state = Some(waiting(
                    &reason.reason,
                    Some(reason.message.clone()).filter(|m| !m.is_empty()),
                ));
                status.ready = false;
                status.started = Some(false);
            }
            if status.last_state.is_none() {
                status.last_state = Some(ContainerState::default());
            }
            status
        })
        .collect()
}

/// upstream's `getPhase`.
fn phase(
    pod: &Pod,
    init: &[ContainerStatus],
    regular: &[ContainerStatus],
    terminal: bool,
) -> &'static str {
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let mut pending_init = 0;
    let mut failed_init = 0;
    for s in init {
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            pending_init += 1;
        } else if let Some(t) = &state.terminated {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else if state.waiting.is_some() {
            match s.last_state.as_ref().and_then(|l| l.terminated.as_ref()) {
                Some(t) if t.exit_code != 0 => failed_init += 1,
                Some(_) => {}
                None => pending_init += 1,
            }
        } else {
            pending_init += 1;
        }
    }
    let (mut running, mut waiting_n, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in regular {
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if state.waiting.is_some() {
            if s.last_state
                .as_ref()
                .is_some_and(|l| l.terminated.is_some())
            {
                stopped += 1;
            } else {
                waiting_n += 1;
            }
        }
    }
    if failed_init > 0 && policy == "Never" {
        return "Failed";
    }
    if pending_init > 0 || waiting_n > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        if terminal {
            return if stopped == succeeded {
                "Succeeded"
            } else {
                "Failed"
            };
        }
        if policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn condition(kind: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> PodCondition {
    PodCondition {
        type_: kind.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.map(str::to_owned),
        message,
        ..Default::default()
    }
}

fn go_list(names: &[String]) -> String {
    format!("[{}]", names.join(" "))
}

/// Builds the pod's status.
pub(crate) fn generate(input: &StatusInput<'_>) -> PodStatus {
    let pod = input.pod;
    let spec = pod.spec.clone().unwrap_or_default();
    let init_specs = spec.init_containers.clone().unwrap_or_default();
    let has_init = !init_specs.is_empty();
    let init = container_statuses(input, &init_specs, has_init);
    let regular = container_statuses(input, &spec.containers, has_init);
    let previous_phase = input.previous.and_then(|p| p.phase.as_deref());
    let mut phase = phase(pod, &init, &regular, input.terminal).to_owned();
    let mut reason = None;
    let mut message = None;
    if let Some(v) = input.verdict {
        phase = "Failed".to_owned();
        reason = Some(v.reason.clone());
        message = Some(v.message.clone());
    } else if let Some(prev @ ("Failed" | "Succeeded")) = previous_phase {
        // A terminal phase never changes.
        phase = prev.to_owned();
        reason = input.previous.and_then(|p| p.reason.clone());
        message = input.previous.and_then(|p| p.message.clone());
    }
    let host_network = spec.host_network == Some(true);
    let sandbox_ready = input.observed.ready_sandbox().is_some()
        && (host_network || !input.observed.ips.is_empty());
    let pod_ips: Vec<String> = if host_network {
        input.host_ips.to_vec()
    } else {
        input.observed.ips.clone()
    };

    let mut conditions: Vec<PodCondition> = input
        .previous
        .or(pod.status.as_ref())
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| {
            !matches!(
                c.type_.as_str(),
                "PodReadyToStartContainers" | "Initialized" | "Ready" | "ContainersReady"
            )
        })
        .collect();
    conditions.push(condition(
        "PodReadyToStartContainers",
        sandbox_ready,
        None,
        None,
    ));
    // Initialized.
    let incomplete: Vec<String> = init
        .iter()
        .filter(|s| {
            s.state
                .as_ref()
                .and_then(|st| st.terminated.as_ref())
                .is_none_or(|t| t.exit_code != 0)
        })
        .map(|s| s.name.clone())
        .collect();
    let any_regular_started = regular.iter().any(|s| {
        s.started == Some(true) || s.state.as_ref().is_some_and(|st| st.running.is_some())
    });
    conditions.push(
        if !has_init || incomplete.is_empty() || any_regular_started {
            if phase == "Succeeded" && has_init {
                condition("Initialized", true, Some("PodCompleted"), None)
            } else {
                condition("Initialized", true, None, None)
            }
        } else {
            condition(
                "Initialized",
                false,
                Some("ContainersNotInitialized"),
                Some(format!(
                    "containers with incomplete status: {}",
                    go_list(&incomplete)
                )),
            )
        },
    );
    // ContainersReady and Ready.
    let unready: Vec<String> = regular
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.clone())
        .collect();
    let containers_ready = if phase == "Succeeded" {
        condition("ContainersReady", false, Some("PodCompleted"), None)
    } else if phase == "Failed" {
        condition("ContainersReady", false, Some("PodFailed"), None)
    } else if unready.is_empty() {
        condition("ContainersReady", true, None, None)
    } else {
        condition(
            "ContainersReady",
            false,
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: {}",
                go_list(&unready)
            )),
        )
    };
    let mut ready = PodCondition {
        type_: "Ready".to_owned(),
        ..containers_ready.clone()
    };
    if containers_ready.status == "True" {
        for gate in spec.readiness_gates.iter().flatten() {
            let found = conditions.iter().find(|c| c.type_ == gate.condition_type);
            let msg = match found {
                None => Some(format!(
                    "corresponding condition of pod readiness gate \"{}\" does not exist.",
                    gate.condition_type
                )),
                Some(c) if c.status != "True" => Some(format!(
                    "the status of pod readiness gate \"{}\" is not \"True\", but {}",
                    gate.condition_type, c.status
                )),
                Some(_) => None,
            };
            if let Some(msg) = msg {
                ready = condition("Ready", false, Some("ReadinessGatesNotReady"), Some(msg));
                break;
            }
        }
    }
    conditions.push(ready);
    conditions.push(containers_ready);
    // Transition times: kept while a condition's status stays the same.
    let now = Time(jiff::Timestamp::now());
    let old = input
        .previous
        .and_then(|p| p.conditions.clone())
        .unwrap_or_default();
    for c in &mut conditions {
        if c.last_transition_time.is_some() {
            continue;
        }
        c.last_transition_time = match old.iter().find(|o| o.type_ == c.type_) {
            Some(o) if o.status == c.status => o.last_transition_time.clone(),
            _ => Some(now.clone()),
        };
    }

    PodStatus {
        phase: Some(phase),
        reason,
        message,
        conditions: Some(conditions),
        host_ip: input.host_ips.first().cloned(),
        host_ips: Some(
            input
                .host_ips
                .iter()
                .map(|ip| HostIP { ip: ip.clone() })
                .collect(),
        ),
        pod_ip: pod_ips.first().cloned(),
        pod_ips: (!pod_ips.is_empty())
            .then(|| pod_ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
        start_time: input.start_time.map(Time),
        qos_class: Some(qos_class(pod).as_str().to_owned()),
        init_container_statuses: has_init.then_some(init),
        container_statuses: Some(regular),
        nominated_node_name: input.previous.and_then(|p| p.nominated_node_name.clone()),
        ..Default::default()
    }
}
