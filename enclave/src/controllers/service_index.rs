//! Which Services select which pods, for the endpoints and endpointslice
//! controllers: the selectors of every Service (from its watch) and the
//! pods each Service listed at its last reconcile, so that a pod event
//! wakes the Services that select it now and those that selected it before
//! (a pod whose labels changed must leave them).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use super::runtime::ObjectKey;
use crate::registry::{WatchEvent, meta};

/// Services' selectors and members.
#[derive(Debug, Default)]
pub(crate) struct ServiceIndex {
    /// namespace → service name → selector (`None`: no selector).
    selectors: HashMap<String, HashMap<String, Option<BTreeMap<String, String>>>>,
    /// pod → the services that listed it.
    members: HashMap<ObjectKey, HashSet<String>>,
    /// service → the pods it listed.
    listed: HashMap<ObjectKey, HashSet<String>>,
}

/// A Service's `spec.selector`: `None` when absent.
fn selector_of(svc: &Value) -> Option<BTreeMap<String, String>> {
    let m = svc.pointer("/spec/selector")?.as_object()?;
    Some(
        m.iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
            .collect(),
    )
}

/// Whether `selector` (equality-based, as a Service's) selects `labels`.
pub(crate) fn selects(
    selector: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

impl ServiceIndex {
    /// Notes a Service event; returns its key.
    pub(crate) fn service_event(&mut self, event: &WatchEvent) -> Vec<ObjectKey> {
        let (obj, deleted) = match event {
            WatchEvent::Added(o) | WatchEvent::Modified(o) => (o, false),
            WatchEvent::Deleted(o) => (o, true),
            _ => return Vec::new(),
        };
        let key = ObjectKey::of(obj);
        let ns = self.selectors.entry(key.namespace.clone()).or_default();
        if deleted {
            ns.remove(&key.name);
        } else {
            ns.insert(key.name.clone(), selector_of(obj));
        }
        vec![key]
    }

    /// The Services a pod event concerns.
    pub(crate) fn pod_event(&self, event: &WatchEvent) -> Vec<ObjectKey> {
        let obj = match event {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => o,
            _ => return Vec::new(),
        };
        let pod = ObjectKey::of(obj);
        let labels: BTreeMap<String, String> = meta::labels(obj)
            .map(|l| {
                l.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let mut names: HashSet<&String> = self
            .members
            .get(&pod)
            .map(|s| s.iter().collect())
            .unwrap_or_default();
        if let Some(services) = self.selectors.get(&pod.namespace) {
            for (name, sel) in services {
                if sel.as_ref().is_some_and(|s| selects(s, Some(&labels))) {
                    names.insert(name);
                }
            }
        }
        names
            .into_iter()
            .map(|n| ObjectKey {
                namespace: pod.namespace.clone(),
                name: n.clone(),
            })
            .collect()
    }

    /// Records that `service` now lists exactly `pods` (names in its namespace).
    pub(crate) fn set_members(&mut self, service: &ObjectKey, pods: &[String]) {
        let now: HashSet<String> = pods.iter().cloned().collect();
        let before = self.listed.remove(service).unwrap_or_default();
        let pod_key = |name: &String| ObjectKey {
            namespace: service.namespace.clone(),
            name: name.clone(),
        };
        for gone in before.difference(&now) {
            let key = pod_key(gone);
            if let Some(set) = self.members.get_mut(&key) {
                set.remove(&service.name);
                if set.is_empty() {
                    self.members.remove(&key);
                }
            }
        }
        for p in &now {
            self.members
                .entry(pod_key(p))
                .or_default()
                .insert(service.name.clone());
        }
        if !now.is_empty() {
            self.listed.insert(service.clone(), now);
        }
    }
}
