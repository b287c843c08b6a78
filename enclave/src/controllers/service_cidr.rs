//! The default `kubernetes` ServiceCIDR and one IPAddress per Service ClusterIP, as kube-apiserver
//! 1.33 keeps them (its `kubernetes-service-cidr-controller` and the ClusterIP allocator):
//! `kubectl get servicecidr,ipaddress` shows the range ClusterIPs come from and who holds each
//! address.
//!
//! Upstream writes an address in the same request that allocates it; here the allocation
//! stays in the store's Service create, and this reconciler follows it: an address appears
//! (and goes) moments after its Service does. It owns only the addresses it labels as the
//! allocator's (`ipaddress.kubernetes.io/managed-by: ipallocator.k8s.io`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{
    IPAddress, IPAddressSpec, ParentReference, ServiceCIDR, ServiceCIDRSpec, ServiceCIDRStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use serde_json::Value;

use super::Error;
use super::runtime::{Action, Reconciler};
use super::typed::Typed;
use crate::registry::generic::DeleteOptions;
use crate::registry::{WatchEvent, meta};

/// The default range's name.
pub(crate) const DEFAULT_NAME: &str = "kubernetes";
const READY_MESSAGE: &str = "Kubernetes default Service CIDR is ready";
const FAMILY_LABEL: &str = "ipaddress.kubernetes.io/ip-family";
const MANAGED_BY_LABEL: &str = "ipaddress.kubernetes.io/managed-by";
const MANAGED_BY: &str = "ipallocator.k8s.io";

/// What to bring in line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    /// The default range, and every address against every Service.
    All,
    /// The addresses of one Service (namespace, name).
    Service(String, String),
}

/// Keeps the default ServiceCIDR and the Services' IPAddresses.
#[derive(Debug)]
pub(crate) struct ServiceCidrController {
    services: Typed<Service>,
    addresses: Typed<IPAddress>,
    cidrs: Typed<ServiceCIDR>,
    range: String,
    /// The addresses each Service held when last reconciled.
    held: BTreeMap<(String, String), BTreeSet<String>>,
}

/// The ClusterIPs of a Service that are addresses (not `None` or empty).
fn cluster_ips(svc: &Service) -> BTreeSet<String> {
    let spec = svc.spec.as_ref();
    let ips = spec.and_then(|s| s.cluster_ips.clone()).unwrap_or_default();
    let first = spec.and_then(|s| s.cluster_ip.clone());
    ips.into_iter()
        .chain(first)
        .filter(|ip| ip.parse::<IpAddr>().is_ok())
        .collect()
}

fn parent_of(address: &IPAddress) -> Option<(String, String)> {
    let p = &address.spec.as_ref()?.parent_ref;
    (p.group.as_deref().unwrap_or("").is_empty() && p.resource == "services")
        .then(|| (p.namespace.clone().unwrap_or_default(), p.name.clone()))
}

fn managed(address: &IPAddress) -> bool {
    address
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGED_BY)
}

impl ServiceCidrController {
    /// Watches 0: services, 1: ipaddresses, 2: servicecidrs. `range` is `--service-cidr`.
    pub(crate) fn new(
        services: Typed<Service>,
        addresses: Typed<IPAddress>,
        cidrs: Typed<ServiceCIDR>,
        range: String,
    ) -> Self {
        ServiceCidrController {
            services,
            addresses,
            cidrs,
            range,
            held: BTreeMap::new(),
        }
    }

    async fn ensure_default_range(&self) -> Result<(), Error> {
        let ready = Condition {
            type_: "Ready".into(),
            status: "True".into(),
            message: READY_MESSAGE.into(),
            reason: String::new(),
            last_transition_time: Time(jiff::Timestamp::now()),
            observed_generation: None,
        };
        let current = match self.cidrs.get("", DEFAULT_NAME).await? {
            Some(c) => c,
            None => {
                let cidr = ServiceCIDR {
                    metadata: ObjectMeta {
                        name: Some(DEFAULT_NAME.into()),
                        ..Default::default()
                    },
                    spec: Some(ServiceCIDRSpec {
                        cidrs: Some(vec![self.range.clone()]),
                    }),
                    status: None,
                };
                match self.cidrs.create("", &cidr).await {
                    Ok(c) => c,
                    Err(e) if e.is_already_exists() => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        };
        let is_ready = current
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let matches =
            current.spec.as_ref().and_then(|s| s.cidrs.as_ref()) == Some(&vec![self.range.clone()]);
        if !is_ready && matches {
            self.cidrs
                .edit_status("", DEFAULT_NAME, |c| {
                    c.status = Some(ServiceCIDRStatus {
                        conditions: Some(vec![ready.clone()]),
                    });
                    true
                })
                .await?;
        } else if !matches {
            tracing::warn!(
                range = %self.range,
                "the default ServiceCIDR does not match --service-cidr; left as it is"
            );
        }
        Ok(())
    }

    fn address(ip: &str, ns: &str, name: &str) -> IPAddress {
        let family = if ip.contains(':') { "IPv6" } else { "IPv4" };
        IPAddress {
            metadata: ObjectMeta {
                name: Some(ip.to_string()),
                labels: Some(BTreeMap::from([
                    (FAMILY_LABEL.to_string(), family.to_string()),
                    (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
                ])),
                ..Default::default()
            },
            spec: Some(IPAddressSpec {
                parent_ref: ParentReference {
                    group: Some(String::new()),
                    resource: "services".into(),
                    namespace: Some(ns.to_string()),
                    name: name.to_string(),
                },
            }),
        }
    }

    /// Creates `want`'s addresses for the Service and deletes those it no longer holds.
    async fn sync_service(
        &self,
        ns: &str,
        name: &str,
        want: &BTreeSet<String>,
        had: &BTreeSet<String>,
    ) -> Result<(), Error> {
        for ip in want {
            match self.addresses.get("", ip).await? {
                None => match self
                    .addresses
                    .create("", &Self::address(ip, ns, name))
                    .await
                {
                    Err(e) if !e.is_already_exists() => return Err(e),
                    _ => {}
                },
                Some(a) if parent_of(&a) != Some((ns.to_string(), name.to_string())) => {
                    tracing::warn!(ip, service = %format!("{ns}/{name}"), "the address is held by another object");
                }
                Some(_) => {}
            }
        }
        for ip in had.difference(want) {
            if let Some(a) = self.addresses.get("", ip).await?
                && managed(&a)
                && parent_of(&a) == Some((ns.to_string(), name.to_string()))
            {
                self.addresses
                    .delete(
                        "",
                        ip,
                        &DeleteOptions {
                            uid: a.metadata.uid.clone(),
                            ..Default::default()
                        },
                    )
                    .await?;
            }
        }
        Ok(())
    }

    async fn sync_all(&mut self) -> Result<(), Error> {
        self.ensure_default_range().await?;
        let mut wanted: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for svc in self.services.list("").await? {
            let key = (
                svc.metadata.namespace.clone().unwrap_or_default(),
                svc.metadata.name.clone().unwrap_or_default(),
            );
            wanted.insert(key, cluster_ips(&svc));
        }
        let mut held: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for a in self.addresses.list("").await? {
            if let (true, Some(parent), Some(ip)) = (managed(&a), parent_of(&a), a.metadata.name) {
                held.entry(parent).or_default().insert(ip);
            }
        }
        let none = BTreeSet::new();
        let keys: BTreeSet<_> = wanted.keys().chain(held.keys()).cloned().collect();
        for (ns, name) in keys {
            let want = wanted.get(&(ns.clone(), name.clone())).unwrap_or(&none);
            let had = held.get(&(ns.clone(), name.clone())).unwrap_or(&none);
            self.sync_service(&ns, &name, want, had).await?;
        }
        self.held = wanted;
        Ok(())
    }
}

impl Reconciler for ServiceCidrController {
    type Key = Key;
    const NAME: &'static str = "service_cidr";

    async fn keys_for(&mut self, kind: usize, event: &WatchEvent) -> Vec<Key> {
        let obj = match event {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => o,
            _ => return Vec::new(),
        };
        match kind {
            0 => vec![Key::Service(
                meta::namespace(obj).to_string(),
                meta::name(obj).to_string(),
            )],
            // An address changed or deleted by someone else: its Service again.
            1 => serde_json::from_value::<IPAddress>(Value::clone(obj))
                .ok()
                .filter(managed)
                .and_then(|a| parent_of(&a))
                .map(|(ns, name)| vec![Key::Service(ns, name)])
                .unwrap_or_default(),
            _ if meta::name(obj) == DEFAULT_NAME => vec![Key::All],
            _ => Vec::new(),
        }
    }

    fn initial_keys(&mut self) -> Vec<Key> {
        vec![Key::All]
    }

    async fn reconcile(&mut self, key: &Key) -> Result<Action, Error> {
        match key {
            Key::All => self.sync_all().await?,
            Key::Service(ns, name) => {
                let want = match self.services.get(ns, name).await? {
                    Some(svc) => cluster_ips(&svc),
                    None => BTreeSet::new(),
                };
                let service = (ns.clone(), name.clone());
                let had = self.held.get(&service).cloned().unwrap_or_default();
                self.sync_service(ns, name, &want, &had).await?;
                if want.is_empty() {
                    self.held.remove(&service);
                } else {
                    self.held.insert(service, want);
                }
            }
        }
        Ok(Action::await_change())
    }
}
