//! securityContext to CRI: namespaces, users, capabilities, privileged, read-only root,
//! no_new_privs, masked paths and seccomp (RuntimeDefault unless the pod says otherwise).

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, PodSpec, SeccompProfile};

const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The pod's namespaces.
pub(crate) fn pod_namespaces(spec: &PodSpec) -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: if spec.host_network == Some(true) {
            cri::NamespaceMode::Node
        } else {
            cri::NamespaceMode::Pod
        } as i32,
        pid: if spec.host_pid == Some(true) {
            cri::NamespaceMode::Node
        } else if spec.share_process_namespace == Some(true) {
            cri::NamespaceMode::Pod
        } else {
            cri::NamespaceMode::Container
        } as i32,
        ipc: if spec.host_ipc == Some(true) {
            cri::NamespaceMode::Node
        } else {
            cri::NamespaceMode::Pod
        } as i32,
        ..Default::default()
    }
}

/// The seccomp profile: the container's, else the pod's, else RuntimeDefault.
pub(crate) fn seccomp_profile(
    pod: Option<&SeccompProfile>,
    container: Option<&SeccompProfile>,
) -> cri::SecurityProfile {
    match container.or(pod) {
        Some(p) if p.type_ == "Unconfined" => cri::SecurityProfile {
            profile_type: cri::security_profile::ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        },
        Some(p) if p.type_ == "Localhost" => cri::SecurityProfile {
            profile_type: cri::security_profile::ProfileType::Localhost as i32,
            localhost_ref: p.localhost_profile.clone().unwrap_or_default(),
        },
        _ => cri::SecurityProfile {
            profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        },
    }
}

/// The effective user of a container: (runAsUser, runAsGroup, runAsNonRoot).
pub(crate) fn effective_user(
    spec: &PodSpec,
    container: &Container,
) -> (Option<i64>, Option<i64>, bool) {
    let psc = spec.security_context.clone().unwrap_or_default();
    let csc = container.security_context.clone().unwrap_or_default();
    (
        csc.run_as_user.or(psc.run_as_user),
        csc.run_as_group.or(psc.run_as_group),
        csc.run_as_non_root.or(psc.run_as_non_root).unwrap_or(false),
    )
}

/// A container's Linux security context.
pub(crate) fn container_security(
    spec: &PodSpec,
    container: &Container,
    image_user: &str,
) -> cri::LinuxContainerSecurityContext {
    let psc = spec.security_context.clone().unwrap_or_default();
    let csc = container.security_context.clone().unwrap_or_default();
    let privileged = csc.privileged == Some(true);
    let (run_as_user, run_as_group, _) = effective_user(spec, container);
    let caps = csc.capabilities.clone().unwrap_or_default();
    let cap_names = |v: Option<Vec<String>>| -> Vec<String> {
        v.unwrap_or_default()
            .into_iter()
            .map(|c| c.trim_start_matches("CAP_").to_uppercase())
            .collect()
    };
    let run_as_username =
        if run_as_user.is_none() && !image_user.is_empty() && image_user.parse::<i64>().is_err() {
            image_user.split(':').next().unwrap_or_default().to_owned()
        } else {
            String::new()
        };
    cri::LinuxContainerSecurityContext {
        capabilities: Some(cri::Capability {
            add_capabilities: cap_names(caps.add),
            drop_capabilities: cap_names(caps.drop),
            add_ambient_capabilities: Vec::new(),
        }),
        privileged,
        namespace_options: Some(pod_namespaces(spec)),
        run_as_user: run_as_user.map(|value| cri::Int64Value { value }),
        run_as_group: run_as_group.map(|value| cri::Int64Value { value }),
        run_as_username,
        readonly_rootfs: csc.read_only_root_filesystem == Some(true),
        supplemental_groups: psc.supplemental_groups.clone().unwrap_or_default(),
        no_new_privs: csc.allow_privilege_escalation == Some(false),
        masked_paths: if privileged {
            Vec::new()
        } else {
            DEFAULT_MASKED_PATHS
                .iter()
                .map(|s| (*s).to_owned())
                .collect()
        },
        readonly_paths: if privileged {
            Vec::new()
        } else {
            DEFAULT_READONLY_PATHS
                .iter()
                .map(|s| (*s).to_owned())
                .collect()
        },
        seccomp: Some(if privileged {
            cri::SecurityProfile {
                profile_type: cri::security_profile::ProfileType::Unconfined as i32,
                localhost_ref: String::new(),
            }
        } else {
            seccomp_profile(psc.seccomp_profile.as_ref(), csc.seccomp_profile.as_ref())
        }),
        ..Default::default()
    }
}

/// upstream's `verifyRunAsNonRoot`: the CreateContainerConfigError message, if the container
/// would run as root while it must not.
pub(crate) fn verify_non_root(
    spec: &PodSpec,
    container: &Container,
    image_uid: Option<i64>,
    image_user: &str,
    pod: &str,
) -> Option<String> {
    let (user, _, non_root) = effective_user(spec, container);
    if !non_root {
        return None;
    }
    if let Some(uid) = user {
        return (uid == 0).then(|| {
            format!(
                "container's runAsUser breaks non-root policy (pod: \"{pod}\", container: {})",
                container.name
            )
        });
    }
    match image_uid {
        Some(0) => Some(format!(
            "container has runAsNonRoot and image will run as root (pod: \"{pod}\", container: {})",
            container.name
        )),
        Some(_) => None,
        None if !image_user.is_empty() => Some(format!(
            "container has runAsNonRoot and image has non-numeric user ({image_user}), cannot verify user is non-root (pod: \"{pod}\", container: {})",
            container.name
        )),
        None => Some(format!(
            "container has runAsNonRoot and image will run as root (pod: \"{pod}\", container: {})",
            container.name
        )),
    }
}
