//! The resource quota controller (upstream `pkg/controller/resourcequota`):
//! `status.hard` mirrors `spec.hard`, and `status.used` counts what the
//! namespace holds of each limited resource — pods (not finished) and
//! their compute requests and limits, services with their load balancers
//! and node ports, and object counts (`configmaps`, `count/<resource>[.<group>]`)
//! — over the objects a quota's scopes match. The admission plugin charges
//! creates as they happen; this controller recounts when a quota's spec
//! changes, when objects go (deletions, pods finishing, service type
//! changes), and every five minutes, as upstream's full resync.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ResourceQuota, ResourceQuotaStatus};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use serde_json::Value;

use super::Error;
use super::client::Api;
use super::runtime::{Action, ObjectKey, Reconciler};
use super::typed::Typed;
use crate::registry::admission::usage::{self, pod_tracks, quota_applies};
use crate::registry::quantity::{self, Quantity, ResourceList};
use crate::registry::{ObjectStore, ResourceInfo, WatchEvent, meta};

/// upstream's `--resource-quota-sync-period`.
const RESYNC: Duration = Duration::from_secs(300);

/// The resource quota controller.
#[derive(Debug)]
pub(crate) struct ResourceQuotaController {
    objects: ObjectStore,
    quotas: Typed<ResourceQuota>,
    /// namespace → quota name → its spec, from the quotas' watch.
    specs: HashMap<String, BTreeMap<String, Value>>,
}

impl ResourceQuotaController {
    /// Watches 0: resourcequotas, then any kinds whose changes release usage.
    pub(crate) fn new(objects: ObjectStore, quotas: Typed<ResourceQuota>) -> Self {
        ResourceQuotaController {
            objects,
            quotas,
            specs: HashMap::new(),
        }
    }

    fn quotas_in(&self, ns: &str) -> Vec<ObjectKey> {
        self.specs
            .get(ns)
            .map(|m| {
                m.keys()
                    .map(|n| ObjectKey {
                        namespace: ns.to_string(),
                        name: n.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The resources whose objects a quota limiting `hard` must count.
    fn kinds_for(&self, hard: &ResourceList) -> Vec<std::sync::Arc<ResourceInfo>> {
        let table = self.objects.table();
        table
            .iter()
            // A converted version (autoscaling/v1 HPAs) shares its storage version's objects.
            .filter(|info| info.namespaced() && !info.is_virtual() && info.conversion().is_none())
            .filter(|info| {
                let count = usage::count_name(info);
                hard.keys().any(|k| {
                    *k == count
                        || (info.group.is_empty() && *k == info.resource)
                        || (info.group.is_empty() && info.resource == "pods" && pod_tracks(k))
                        || (info.group.is_empty()
                            && info.resource == "services"
                            && k.starts_with("services."))
                })
            })
            .cloned()
            .collect()
    }

    /// What `ns` uses of `hard` among objects `quota` applies to.
    async fn used(
        &self,
        ns: &str,
        quota: &ResourceQuota,
        hard: &ResourceList,
    ) -> Result<ResourceList, Error> {
        let spec = quota.spec.clone().unwrap_or_default();
        let now = meta::now();
        let mut total = ResourceList::new();
        for info in self.kinds_for(hard) {
            let api = Api::new(self.objects.clone(), info.clone());
            for obj in api.list(ns).await? {
                if !quota_applies(&spec, &info, &obj) {
                    continue;
                }
                if let Some(u) = usage::usage(&info, &obj, now) {
                    total = quantity::add(&total, &u);
                }
            }
        }
        Ok(hard
            .keys()
            .map(|k| (k.clone(), total.get(k).copied().unwrap_or(Quantity::ZERO)))
            .collect())
    }
}

fn to_api(list: &ResourceList) -> BTreeMap<String, ApiQuantity> {
    list.iter()
        .map(|(k, v)| (k.clone(), v.to_openapi()))
        .collect()
}

/// Whether a change of `obj` (of watch `kind` ≥ 1) may release quota.
fn releases(kind: usize, event: &WatchEvent) -> Option<&Value> {
    match event {
        WatchEvent::Deleted(o) => Some(o),
        // A pod that finished stops counting.
        WatchEvent::Modified(o) if kind == 1 => {
            let phase = o.pointer("/status/phase").and_then(Value::as_str);
            matches!(phase, Some("Succeeded" | "Failed")).then_some(o)
        }
        // A service that changed type may hold fewer node ports or load balancers.
        WatchEvent::Modified(o) if kind == 2 => Some(o),
        _ => None,
    }
}

impl Reconciler for ResourceQuotaController {
    type Key = ObjectKey;
    const NAME: &'static str = "resource_quota_controller_resource_changes";

    async fn keys_for(&mut self, kind: usize, event: &WatchEvent) -> Vec<ObjectKey> {
        if kind == 0 {
            let (obj, deleted) = match event {
                WatchEvent::Added(o) | WatchEvent::Modified(o) => (o, false),
                WatchEvent::Deleted(o) => (o, true),
                _ => return Vec::new(),
            };
            let ns = self
                .specs
                .entry(meta::namespace(obj).to_string())
                .or_default();
            let name = meta::name(obj).to_string();
            if deleted {
                ns.remove(&name);
                return Vec::new();
            }
            let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
            // Status-only writes (the admission's charges) need no recount.
            if ns.get(&name) == Some(&spec) && matches!(event, WatchEvent::Modified(_)) {
                return Vec::new();
            }
            ns.insert(name, spec);
            return vec![ObjectKey::of(obj)];
        }
        match releases(kind, event) {
            Some(o) => self.quotas_in(meta::namespace(o)),
            None => Vec::new(),
        }
    }

    async fn reconcile(&mut self, key: &ObjectKey) -> Result<Action, Error> {
        let Some(quota) = self.quotas.get(&key.namespace, &key.name).await? else {
            return Ok(Action::await_change());
        };
        let hard = quantity::from_openapi(quota.spec.as_ref().and_then(|s| s.hard.as_ref()));
        let used = self.used(&key.namespace, &quota, &hard).await?;
        let status = ResourceQuotaStatus {
            hard: Some(to_api(&hard)),
            used: Some(to_api(&used)),
        };
        let current = quota.status.clone().unwrap_or_default();
        let same = current.hard == status.hard && current.used == status.used;
        if !same {
            let mut next = quota.clone();
            next.status = Some(status);
            match self.quotas.replace_status(&next).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => return Ok(Action::await_change()),
                Err(e) => return Err(e),
            }
        }
        Ok(Action::requeue(RESYNC))
    }
}
