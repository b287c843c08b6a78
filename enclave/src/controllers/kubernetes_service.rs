//! The `default/kubernetes` Service, as kube-apiserver's own endpoint
//! reconciler keeps it: ClusterIP the first address of the service range,
//! port 443 (`https`) to the advertised API address and port, and its
//! Endpoints (labelled `endpointslice.kubernetes.io/skip-mirror`, so the
//! mirroring controller leaves them) and EndpointSlice `kubernetes`
//! pointing there. Reconciled at start and whenever any of the three
//! changes or goes.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort as CorePort, EndpointSubset, Endpoints, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Error;
use super::runtime::{Action, Reconciler};
use super::typed::Typed;
use crate::registry::generic::DeleteOptions;
use crate::registry::{WatchEvent, meta};

/// The namespace and name of the Service and its endpoints.
const NS: &str = "default";
const NAME: &str = "kubernetes";

/// The label that keeps the mirroring controller off the Endpoints.
pub(crate) const SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
/// The label naming a slice's Service.
pub(crate) const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Keeps `default/kubernetes` and its endpoints.
#[derive(Debug)]
pub(crate) struct KubernetesService {
    services: Typed<Service>,
    endpoints: Typed<Endpoints>,
    slices: Typed<EndpointSlice>,
    cluster_ip: IpAddr,
    advertised: SocketAddr,
}

impl KubernetesService {
    /// Watches 0: services, 1: endpoints, 2: endpointslices.
    pub(crate) fn new(
        services: Typed<Service>,
        endpoints: Typed<Endpoints>,
        slices: Typed<EndpointSlice>,
        cluster_ip: IpAddr,
        advertised: SocketAddr,
    ) -> Self {
        KubernetesService {
            services,
            endpoints,
            slices,
            cluster_ip,
            advertised,
        }
    }

    fn port(&self) -> i32 {
        i32::from(self.advertised.port())
    }

    fn service_ports(&self) -> Vec<ServicePort> {
        vec![ServicePort {
            name: Some("https".into()),
            port: 443,
            protocol: Some("TCP".into()),
            target_port: Some(IntOrString::Int(self.port())),
            ..Default::default()
        }]
    }

    fn meta(labels: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            name: Some(NAME.into()),
            namespace: Some(NS.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    async fn ensure_service(&self) -> Result<(), Error> {
        let ports = self.service_ports();
        match self.services.get(NS, NAME).await? {
            None => {
                let svc = Service {
                    metadata: Self::meta(&[("component", "apiserver"), ("provider", "kubernetes")]),
                    spec: Some(ServiceSpec {
                        type_: Some("ClusterIP".into()),
                        cluster_ip: Some(self.cluster_ip.to_string()),
                        ports: Some(ports),
                        session_affinity: Some("None".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                match self.services.create(NS, &svc).await {
                    Err(e) if !e.is_already_exists() => return Err(e),
                    _ => {}
                }
            }
            Some(svc) => {
                let spec = svc.spec.unwrap_or_default();
                if spec.ports.as_ref() != Some(&ports) || spec.type_.as_deref() != Some("ClusterIP")
                {
                    self.services
                        .edit(NS, NAME, |s| {
                            let spec = s.spec.get_or_insert_with(Default::default);
                            spec.ports = Some(ports.clone());
                            spec.type_ = Some("ClusterIP".into());
                            true
                        })
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn ensure_endpoints(&self) -> Result<(), Error> {
        let subsets = vec![EndpointSubset {
            addresses: Some(vec![EndpointAddress {
                ip: self.advertised.ip().to_string(),
                ..Default::default()
            }]),
            ports: Some(vec![CorePort {
                name: Some("https".into()),
                port: self.port(),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }];
        let labels = BTreeMap::from([(SKIP_MIRROR.to_string(), "true".to_string())]);
        match self.endpoints.get(NS, NAME).await? {
            None => {
                let ep = Endpoints {
                    metadata: Self::meta(&[(SKIP_MIRROR, "true")]),
                    subsets: Some(subsets),
                };
                match self.endpoints.create(NS, &ep).await {
                    Err(e) if !e.is_already_exists() => return Err(e),
                    _ => {}
                }
            }
            Some(ep)
                if ep.subsets.as_ref() != Some(&subsets)
                    || ep.metadata.labels.as_ref() != Some(&labels) =>
            {
                self.endpoints
                    .edit(NS, NAME, |e| {
                        e.subsets = Some(subsets.clone());
                        e.metadata.labels = Some(labels.clone());
                        true
                    })
                    .await?;
            }
            Some(_) => {}
        }
        Ok(())
    }

    async fn ensure_slice(&self) -> Result<(), Error> {
        let address_type = if self.advertised.is_ipv4() {
            "IPv4"
        } else {
            "IPv6"
        };
        let want = EndpointSlice {
            metadata: Self::meta(&[(SERVICE_NAME_LABEL, NAME)]),
            address_type: address_type.into(),
            endpoints: vec![Endpoint {
                addresses: vec![self.advertised.ip().to_string()],
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ports: Some(vec![EndpointPort {
                name: Some("https".into()),
                port: Some(self.port()),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
        };
        match self.slices.get(NS, NAME).await? {
            Some(s) if s.address_type != want.address_type => {
                // addressType is immutable: replace the slice.
                self.slices
                    .delete(NS, NAME, &DeleteOptions::default())
                    .await?;
                self.slices.create(NS, &want).await?;
            }
            Some(s)
                if s.endpoints != want.endpoints
                    || s.ports != want.ports
                    || s.metadata.labels != want.metadata.labels =>
            {
                self.slices
                    .edit(NS, NAME, |s| {
                        s.endpoints = want.endpoints.clone();
                        s.ports = want.ports.clone();
                        s.metadata.labels = want.metadata.labels.clone();
                        true
                    })
                    .await?;
            }
            Some(_) => {}
            None => match self.slices.create(NS, &want).await {
                Err(e) if !e.is_already_exists() => return Err(e),
                _ => {}
            },
        }
        Ok(())
    }
}

impl Reconciler for KubernetesService {
    type Key = ();
    const NAME: &'static str = "kubernetes_service";

    async fn keys_for(&mut self, _kind: usize, event: &WatchEvent) -> Vec<()> {
        match event {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o)
                if meta::namespace(o) == NS && meta::name(o) == NAME =>
            {
                vec![()]
            }
            _ => Vec::new(),
        }
    }

    fn initial_keys(&mut self) -> Vec<()> {
        vec![()]
    }

    async fn reconcile(&mut self, _key: &()) -> Result<Action, Error> {
        self.ensure_service().await?;
        self.ensure_endpoints().await?;
        self.ensure_slice().await?;
        Ok(Action::await_change())
    }
}
