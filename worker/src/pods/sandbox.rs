//! The pod sandbox's CRI config: metadata, hostname, log directory, DNS, host ports, cgroup
//! parent and namespaces, as the kubelet's `generatePodSandboxConfig`.

use std::collections::HashMap;
use std::path::PathBuf;

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::Pod;

use super::config::PodRuntimeConfig;
use super::hosts;
use super::labels;
use super::resources::{cgroup_parent, qos_class};
use super::security::{pod_namespaces, seccomp_profile};

/// `<logs>/<namespace>_<name>_<uid>`, the pod's log directory.
pub(crate) fn log_directory(config: &PodRuntimeConfig, pod: &Pod) -> PathBuf {
    config.log_dir().join(format!(
        "{}_{}_{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    ))
}

fn dns_config(config: &PodRuntimeConfig, pod: &Pod) -> cri::DnsConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let host_network = spec.host_network == Some(true);
    let node = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut servers = Vec::new();
    let mut searches = Vec::new();
    let mut options = Vec::new();
    for line in node.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => servers.extend(words.next().map(str::to_owned)),
            Some("search") => searches = words.map(str::to_owned).collect(),
            Some("options") => options = words.map(str::to_owned).collect(),
            _ => {}
        }
    }
    let cluster_first = match policy {
        "ClusterFirst" => !host_network,
        "ClusterFirstWithHostNet" => true,
        _ => false,
    };
    if policy == "None" {
        servers.clear();
        searches.clear();
        options.clear();
    } else if cluster_first && !config.cluster_dns.is_empty() {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let domain = &config.cluster_domain;
        servers = config.cluster_dns.iter().map(ToString::to_string).collect();
        let mut cluster = vec![
            format!("{ns}.svc.{domain}"),
            format!("svc.{domain}"),
            domain.clone(),
        ];
        cluster.append(&mut searches);
        searches = cluster;
        options = vec!["ndots:5".to_owned()];
    }
    if let Some(extra) = &spec.dns_config {
        servers.extend(extra.nameservers.clone().unwrap_or_default());
        searches.extend(extra.searches.clone().unwrap_or_default());
        for o in extra.options.clone().unwrap_or_default() {
            let name = o.name.unwrap_or_default();
            options.retain(|existing| existing.split(':').next() != Some(name.as_str()));
            options.push(match o.value {
                Some(v) => format!("{name}:{v}"),
                None => name,
            });
        }
    }
    searches.dedup();
    cri::DnsConfig {
        servers,
        searches,
        options,
    }
}

/// The sandbox config of `pod` (`attempt`: how many sandboxes it had before).
pub(crate) fn sandbox_config(
    config: &PodRuntimeConfig,
    pod: &Pod,
    attempt: u32,
    start_time: jiff::Timestamp,
) -> cri::PodSandboxConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let host_network = spec.host_network == Some(true);
    let mut annotations: HashMap<String, String> = pod
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    annotations.insert(labels::POD_START_TIME.to_owned(), start_time.to_string());
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.clone().unwrap_or_default())
        .filter_map(|p| {
            let host_port = p.host_port.filter(|h| *h > 0)?;
            Some(cri::PortMapping {
                protocol: match p.protocol.as_deref() {
                    Some("UDP") => cri::Protocol::Udp as i32,
                    Some("SCTP") => cri::Protocol::Sctp as i32,
                    _ => cri::Protocol::Tcp as i32,
                },
                container_port: p.container_port,
                host_port,
                host_ip: p.host_ip.unwrap_or_default(),
            })
        })
        .collect();
    let psc = spec.security_context.clone().unwrap_or_default();
    let privileged = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| c.security_context.as_ref().and_then(|s| s.privileged) == Some(true));
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: uid.clone(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            attempt,
        }),
        hostname: if host_network {
            String::new()
        } else {
            hosts::hostname(pod)
        },
        log_directory: log_directory(config, pod).display().to_string(),
        dns_config: Some(dns_config(config, pod)),
        port_mappings,
        labels: labels::pod_labels(pod, &config.node_name),
        annotations,
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent(&config.cgroup_root, qos_class(pod), &uid),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(pod_namespaces(&spec)),
                run_as_user: psc.run_as_user.map(|value| cri::Int64Value { value }),
                // containerd refuses a group without a user for the pause container.
                run_as_group: psc
                    .run_as_group
                    .filter(|_| psc.run_as_user.is_some())
                    .map(|value| cri::Int64Value { value }),
                supplemental_groups: psc.supplemental_groups.clone().unwrap_or_default(),
                privileged,
                seccomp: Some(seccomp_profile(psc.seccomp_profile.as_ref(), None)),
                ..Default::default()
            }),
            sysctls: psc
                .sysctls
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|s| (s.name, s.value))
                .collect(),
            ..Default::default()
        }),
        windows: None,
    }
}
