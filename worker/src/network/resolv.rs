//! Pods' `/etc/resolv.conf`, per `dnsPolicy` and `dnsConfig`, as the kubelet writes it
//! (`pkg/kubelet/network/dns`):
//!
//! | policy | nameservers | search | options |
//! |---|---|---|---|
//! | `ClusterFirst` (default) | the cluster DNS IP | `NS.svc.ZONE svc.ZONE ZONE` + the node's | `ndots:5` |
//! | `ClusterFirst` with `hostNetwork` | as `Default` | | |
//! | `ClusterFirstWithHostNet` | as `ClusterFirst`, host network or not | | |
//! | `Default` | the node's | the node's | the node's |
//! | `None` | only `dnsConfig` | only `dnsConfig` | only `dnsConfig` |
//!
//! `dnsConfig` is merged on top: nameservers and searches appended without duplicates, options
//! replacing same-named ones. As the kubelet, at most 3 nameservers and 32 search domains
//! (2048 characters) are kept.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Pod;

/// At most this many nameservers (glibc reads no more).
pub const MAX_NAMESERVERS: usize = 3;
/// At most this many search domains.
pub const MAX_SEARCHES: usize = 32;
/// At most this many characters in the search line.
pub const MAX_SEARCH_CHARS: usize = 2048;

/// A parsed `resolv.conf`: what the node's says, or what a pod gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` lines.
    pub nameservers: Vec<String>,
    /// The `search` (or `domain`) line.
    pub searches: Vec<String>,
    /// `options`, as `name` or `name:value`.
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Parses a `resolv.conf` text (comments with `#` or `;`; the last `search`/`domain` wins).
    pub fn parse(text: &str) -> Self {
        let mut conf = Self::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => conf.nameservers.extend(words.next().map(str::to_owned)),
                Some("search") | Some("domain") => {
                    conf.searches = words.map(str::to_owned).collect();
                }
                Some("options") => conf.options.extend(words.map(str::to_owned)),
                _ => {}
            }
        }
        conf
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.searches.is_empty() {
            out.push_str("search ");
            out.push_str(&self.searches.join(" "));
            out.push('\n');
        }
        for ns in &self.nameservers {
            out.push_str("nameserver ");
            out.push_str(ns);
            out.push('\n');
        }
        if !self.options.is_empty() {
            out.push_str("options ");
            out.push_str(&self.options.join(" "));
            out.push('\n');
        }
        out
    }
}

/// What the node knows about DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDns {
    /// The cluster DNS address (the tenth address of the service CIDR).
    pub cluster_dns: Ipv4Addr,
    /// The cluster domain (`cluster.local`).
    pub cluster_domain: String,
    /// The node's own `resolv.conf` (the kubelet's `--resolv-conf`).
    pub node: ResolvConf,
}

/// The `resolv.conf` for `pod` (its namespace, `dnsPolicy`, `hostNetwork` and `dnsConfig`).
pub fn pod_resolv_conf(pod: &Pod, dns: &NodeDns) -> ResolvConf {
    let spec = pod.spec.as_ref();
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut conf = match policy {
        "None" => ResolvConf::default(),
        "Default" => dns.node.clone(),
        "ClusterFirst" if host_network => dns.node.clone(),
        // ClusterFirst, ClusterFirstWithHostNet (and unknown values, as the kubelet treats them).
        _ => {
            let zone = &dns.cluster_domain;
            let mut searches = vec![
                format!("{namespace}.svc.{zone}"),
                format!("svc.{zone}"),
                zone.clone(),
            ];
            searches.extend(dns.node.searches.iter().cloned());
            ResolvConf {
                nameservers: vec![dns.cluster_dns.to_string()],
                searches,
                options: vec!["ndots:5".into()],
            }
        }
    };
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        for ns in extra.nameservers.iter().flatten() {
            if !conf.nameservers.contains(ns) {
                conf.nameservers.push(ns.clone());
            }
        }
        for s in extra.searches.iter().flatten() {
            if !conf.searches.contains(s) {
                conf.searches.push(s.clone());
            }
        }
        for opt in extra.options.iter().flatten() {
            let Some(name) = opt.name.as_deref() else {
                continue;
            };
            let text = match &opt.value {
                Some(v) => format!("{name}:{v}"),
                None => name.to_owned(),
            };
            let same = |o: &String| o.split(':').next() == Some(name);
            match conf.options.iter_mut().find(|o| same(o)) {
                Some(existing) => *existing = text,
                None => conf.options.push(text),
            }
        }
    }
    conf.nameservers.truncate(MAX_NAMESERVERS);
    conf.searches.dedup();
    conf.searches.truncate(MAX_SEARCHES);
    while conf.searches.join(" ").len() > MAX_SEARCH_CHARS {
        conf.searches.pop();
    }
    conf
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodDNSConfig, PodDNSConfigOption, PodSpec};

    fn node_dns() -> NodeDns {
        NodeDns {
            cluster_dns: Ipv4Addr::new(10, 43, 0, 10),
            cluster_domain: "cluster.local".into(),
            node: ResolvConf::parse(
                "# host\nnameserver 192.0.2.53\nsearch corp.example\noptions edns0\n",
            ),
        }
    }

    fn pod(policy: Option<&str>, host_network: bool, config: Option<PodDNSConfig>) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.namespace = Some("shop".into());
        pod.spec = Some(PodSpec {
            dns_policy: policy.map(str::to_owned),
            host_network: Some(host_network),
            dns_config: config,
            ..Default::default()
        });
        pod
    }

    #[test]
    fn cluster_first_searches_the_namespace_then_the_node() {
        let conf = pod_resolv_conf(&pod(None, false, None), &node_dns());
        assert_eq!(
            conf.render(),
            "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\n\
             nameserver 10.43.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn host_network_pods_get_the_node_resolver_unless_cluster_first_with_host_net() {
        let dns = node_dns();
        let plain = pod_resolv_conf(&pod(Some("ClusterFirst"), true, None), &dns);
        assert_eq!(plain, dns.node);
        let with = pod_resolv_conf(&pod(Some("ClusterFirstWithHostNet"), true, None), &dns);
        assert_eq!(with.nameservers, ["10.43.0.10"]);
        assert_eq!(
            pod_resolv_conf(&pod(Some("Default"), false, None), &dns),
            dns.node
        );
    }

    #[test]
    fn none_takes_only_dns_config_and_options_override_by_name() {
        let config = PodDNSConfig {
            nameservers: Some(vec!["1.2.3.4".into()]),
            searches: Some(vec!["ns1.svc.cluster-domain.example".into()]),
            options: Some(vec![PodDNSConfigOption {
                name: Some("ndots".into()),
                value: Some("2".into()),
            }]),
        };
        let dns = node_dns();
        let none = pod_resolv_conf(&pod(Some("None"), false, Some(config.clone())), &dns);
        assert_eq!(
            none.render(),
            "search ns1.svc.cluster-domain.example\nnameserver 1.2.3.4\noptions ndots:2\n"
        );
        let merged = pod_resolv_conf(&pod(None, false, Some(config)), &dns);
        assert_eq!(merged.nameservers, ["10.43.0.10", "1.2.3.4"]);
        assert_eq!(merged.options, ["ndots:2"]);
    }

    #[test]
    fn at_most_three_nameservers() {
        let config = PodDNSConfig {
            nameservers: Some((1..=5).map(|i| format!("10.0.0.{i}")).collect()),
            ..Default::default()
        };
        let conf = pod_resolv_conf(&pod(Some("None"), false, Some(config)), &node_dns());
        assert_eq!(conf.nameservers.len(), 3);
    }
}
