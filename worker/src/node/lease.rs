//! The node's Lease in `kube-node-lease`: the heartbeat the node lifecycle controller watches.
//! Renewed by updating `spec.renewTime` on the last Lease seen (one PUT per renewal); on a
//! conflict or a missing Lease it is read again or created, owned by the Node as the kubelet
//! makes it.

use hyper::StatusCode;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};

use super::{LEASE_DURATION_SECONDS, NODE_LEASE_NAMESPACE, lease_path};
use crate::client::{ClientError, KubeClient};

/// Keeps one node's Lease renewed.
#[derive(Debug)]
pub struct LeaseKeeper {
    node_name: String,
    node_uid: Option<String>,
    last: Option<Lease>,
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

impl LeaseKeeper {
    /// The Lease of `node_name`, owned by the Node with `node_uid` when known.
    #[must_use]
    pub fn new(node_name: &str, node_uid: Option<String>) -> Self {
        Self {
            node_name: node_name.to_owned(),
            node_uid,
            last: None,
        }
    }

    fn fresh(&self) -> Lease {
        let owner = self.node_uid.as_ref().map(|uid| {
            vec![OwnerReference {
                api_version: "v1".to_owned(),
                kind: "Node".to_owned(),
                name: self.node_name.clone(),
                uid: uid.clone(),
                ..Default::default()
            }]
        });
        Lease {
            metadata: ObjectMeta {
                name: Some(self.node_name.clone()),
                namespace: Some(NODE_LEASE_NAMESPACE.to_owned()),
                owner_references: owner,
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.node_name.clone()),
                lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                renew_time: Some(now()),
                ..Default::default()
            }),
        }
    }

    fn renewed(&self, mut lease: Lease) -> Lease {
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = Some(self.node_name.clone());
        spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
        spec.renew_time = Some(now());
        lease
    }

    /// Renews the Lease now; returns it as stored.
    ///
    /// # Errors
    ///
    /// The API's error.
    pub async fn renew(&mut self, client: &mut KubeClient) -> Result<Lease, ClientError> {
        let path = lease_path(&self.node_name);
        if let Some(last) = self.last.take() {
            match client.replace(&path, &self.renewed(last)).await {
                Ok(stored) => {
                    self.last = Some(stored.clone());
                    return Ok(stored);
                }
                Err(e)
                    if matches!(
                        e.status(),
                        Some(StatusCode::CONFLICT | StatusCode::NOT_FOUND)
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        let stored = match client.get::<Lease>(&path).await? {
            Some(existing) => client.replace(&path, &self.renewed(existing)).await?,
            None => {
                let collection = format!(
                    "/apis/coordination.k8s.io/v1/namespaces/{NODE_LEASE_NAMESPACE}/leases"
                );
                match client.create(&collection, &self.fresh()).await? {
                    Some(created) => created,
                    // Created meanwhile: renew that one next time.
                    None => self.fresh(),
                }
            }
        };
        self.last = Some(stored.clone());
        Ok(stored)
    }
}
