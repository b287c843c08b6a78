//! `/etc/hosts` as the kubelet writes it (`managedHostsFileContent`), and the pod's hostname.

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::{HostAlias, Pod};

/// The pod's hostname: `spec.hostname`, else its name, cut to 63 bytes without a trailing
/// `-` or `.`, as upstream's `GeneratePodHostNameAndDomain`.
pub(crate) fn hostname(pod: &Pod) -> String {
    let spec_hostname = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty());
    let name = spec_hostname.unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    if name.len() <= 63 {
        return name;
    }
    let cut: String = name.chars().take(63).collect();
    cut.trim_end_matches(['-', '.']).to_owned()
}

/// The pod's domain (`subdomain.namespace.svc.cluster-domain`) when it has a subdomain.
pub(crate) fn host_domain(pod: &Pod, cluster_domain: &str) -> Option<String> {
    let subdomain = pod
        .spec
        .as_ref()?
        .subdomain
        .clone()
        .filter(|s| !s.is_empty())?;
    Some(format!(
        "{subdomain}.{}.svc.{cluster_domain}",
        pod.metadata.namespace.as_deref().unwrap_or("default")
    ))
}

/// The managed hosts file of a pod with its own network.
pub(crate) fn managed_hosts(
    pod_ips: &[String],
    hostname: &str,
    domain: Option<&str>,
    aliases: &[HostAlias],
) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    for ip in pod_ips {
        match domain {
            Some(domain) => {
                let _ = writeln!(out, "{ip}\t{hostname}.{domain}\t{hostname}");
            }
            None => {
                let _ = writeln!(out, "{ip}\t{hostname}");
            }
        }
    }
    out.push_str(&alias_entries(aliases));
    out
}

/// The hosts file of a host-network pod: the node's own, under the managed header.
pub(crate) fn host_network_hosts(node_hosts: &str, aliases: &[HostAlias]) -> String {
    let mut out = String::from("# Kubernetes-managed hosts file (host network).\n");
    out.push_str(node_hosts);
    out.push_str(&alias_entries(aliases));
    out
}

fn alias_entries(aliases: &[HostAlias]) -> String {
    if aliases.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for alias in aliases {
        let names = alias.hostnames.clone().unwrap_or_default().join("\t");
        let _ = writeln!(out, "{}\t{names}", alias.ip);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_kubelets_file() {
        let aliases = [HostAlias {
            ip: "1.2.3.4".into(),
            hostnames: Some(vec!["foo".into(), "bar".into()]),
        }];
        let hosts = managed_hosts(
            &["10.88.0.5".to_owned()],
            "web-0",
            Some("web.ns.svc.cluster.local"),
            &aliases,
        );
        assert_eq!(
            hosts,
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n\
             10.88.0.5\tweb-0.web.ns.svc.cluster.local\tweb-0\n\n# Entries added by HostAliases.\n1.2.3.4\tfoo\tbar\n"
        );
    }

    #[test]
    fn long_names_are_cut() {
        let mut pod = Pod::default();
        pod.metadata.name = Some(format!("{}-{}", "a".repeat(62), "b"));
        assert_eq!(hostname(&pod), "a".repeat(62));
    }
}
