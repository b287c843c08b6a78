//! What the cluster runs besides the API: the controllers' options, and node admission
//! against the registry's stakes.

use std::time::Duration;

use anyhow::{Context, Result};
use attestation::PurposeKey;
use enclave::api::DevPki;
use enclave::api::nodes::{NodeAdmission, NodeCa};
use enclave::controllers::{ClusterOptions, ControllerOptions, Enabled, NodeLifecycleOptions};
use enclave::registry::ObjectStore;
use rustls_pki_types::CertificateDer;

use crate::args::Args;

/// Where `default/kubernetes` points: `--advertise-address`, else the advertised host if it
/// is an IP address, with the advertised port.
fn advertised_address(host: &str, ip: Option<std::net::IpAddr>) -> Option<std::net::SocketAddr> {
    let (h, port) = match host.rsplit_once(':') {
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => (host, 443),
        Some((h, p)) => (h, p.parse().unwrap_or(443)),
        None => (host, 443),
    };
    let ip = ip.or_else(|| h.trim_matches(['[', ']']).parse().ok());
    if ip.is_none() {
        tracing::warn!(%host, "the advertised host is not an IP address and --advertise-address is not set: default/kubernetes is not kept");
    }
    ip.map(|ip| std::net::SocketAddr::new(ip, port))
}

/// The controllers' options from the command line; `host` is the advertised `HOST:PORT`.
pub(crate) fn controller_options(args: &Args, pki: &DevPki, host: &str) -> ControllerOptions {
    ControllerOptions {
        event_ttl: args.event_ttl,
        enabled: Enabled::new(args.controllers.iter().cloned()),
        cluster: ClusterOptions {
            root_ca_pem: Some(pki.server_cert_pem.clone()),
            advertise: advertised_address(host, args.advertise_address),
            cluster_cidr: args.cluster_cidr,
            node_cidr_mask_size: args.node_cidr_mask_size,
            node_lifecycle: NodeLifecycleOptions {
                monitor_period: args.node_monitor_period,
                monitor_grace_period: args.node_monitor_grace_period,
                startup_grace_period: args.node_startup_grace_period,
                eviction_rate: args.node_eviction_rate,
                ..Default::default()
            },
            max_endpoints_per_slice: args.max_endpoints_per_slice,
            terminated_pod_gc_threshold: args.terminated_pod_gc_threshold,
            pod_gc_period: args.pod_gc_period,
        },
        // Filled in by the caller once the identity keys are open.
        identity: None,
    }
}

/// Admission of nodes against the registry at `url`, issuing from the node CA derived from
/// the root secret, for the enclave serving `serving_cert`.
pub(crate) async fn node_admission(
    url: &chain::RegistryUrl,
    objects: &ObjectStore,
    node_ca_key: &PurposeKey,
    serving_cert: &CertificateDer<'_>,
    cert_lifetime: Duration,
) -> Result<NodeAdmission> {
    let registry = chain::AnyRegistry::open(url, &chain::OpenOptions::default())
        .await
        .with_context(|| format!("opening the registry {url}"))?;
    let ca = NodeCa::from_key(node_ca_key)?;
    let digest = ::attestation::spki_sha256(serving_cert).context("the serving certificate")?;
    let admission = NodeAdmission::open(registry, ca, objects.clone(), digest, cert_lifetime)
        .await
        .context("loading the joined nodes")?;
    tracing::info!(registry = %url, "nodes join against the registry");
    Ok(admission)
}
