//! The other objects the plugins read, kept from their watches:
//! namespace labels (pod affinity `namespaceSelector`), the selectors of
//! services, ReplicaSets and StatefulSets (PodTopologySpread's system
//! default constraints), PodDisruptionBudgets (preemption) and
//! PersistentVolumeClaims, PersistentVolumes and StorageClasses (VolumeBinding, when
//! they are served).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;

use super::labels::{Labels, Selector};
use super::pod_info::PodInfo;

/// A PodDisruptionBudget as preemption reads it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Budget {
    /// `spec.selector` (nothing when absent).
    pub(crate) selector: Selector,
    /// `status.disruptionsAllowed`.
    pub(crate) disruptions_allowed: i64,
    /// `status.disruptedPods` (names).
    pub(crate) disrupted_pods: HashSet<String>,
}

/// A PersistentVolumeClaim as VolumeBinding reads it (matching it to volumes reads most of
/// it).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Claim(pub(crate) Arc<PersistentVolumeClaim>);

impl Claim {
    /// `metadata.deletionTimestamp` is set.
    pub(crate) fn deleting(&self) -> bool {
        self.0.metadata.deletion_timestamp.is_some()
    }

    /// Bound to a volume (`spec.volumeName` set or phase `Bound`).
    pub(crate) fn bound(&self) -> bool {
        !crate::controllers::persistent_volume::volume_name(&self.0).is_empty()
            || self.0.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
    }
}

/// A StorageClass as VolumeBinding reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Class {
    /// `volumeBindingMode: WaitForFirstConsumer`.
    pub(crate) delayed: bool,
    /// `provisioner`.
    pub(crate) provisioner: String,
}

/// Which kind a lister object belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ListerKind {
    /// core/v1 namespaces.
    Namespaces,
    /// core/v1 services.
    Services,
    /// apps/v1 replicasets.
    ReplicaSets,
    /// apps/v1 statefulsets.
    StatefulSets,
    /// policy/v1 poddisruptionbudgets.
    Budgets,
    /// core/v1 persistentvolumeclaims.
    Claims,
    /// core/v1 persistentvolumes.
    Volumes,
    /// storage.k8s.io/v1 storageclasses.
    Classes,
}

/// One decoded object of a lister kind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ListerValue {
    /// A namespace's labels.
    Labels(Labels),
    /// A service's selector map (`None`: no selector, selects nothing).
    ServiceSelector(Option<Labels>),
    /// A controller's label selector.
    Selector(Selector),
    /// A budget.
    Budget(Budget),
    /// A claim.
    Claim(Claim),
    /// A volume.
    Volume(Arc<PersistentVolume>),
    /// A class.
    Class(Class),
}

/// (namespace, name) → value, per kind.
type Objects<T> = HashMap<String, HashMap<String, T>>;

/// The objects of every lister kind.
#[derive(Debug, Default)]
pub(crate) struct Listers {
    namespaces: HashMap<String, Labels>,
    services: Objects<Labels>,
    replica_sets: Objects<Selector>,
    stateful_sets: Objects<Selector>,
    budgets: Objects<Budget>,
    /// `None` while PersistentVolumeClaims are not served.
    claims: Option<Objects<Claim>>,
    /// Volumes by name.
    volumes: HashMap<String, Arc<PersistentVolume>>,
    /// Classes by name.
    classes: HashMap<String, Class>,
}

impl ListerKind {
    /// Decodes one object of this kind; `None` if it does not decode.
    pub(crate) fn decode(self, v: &serde_json::Value) -> Option<ListerValue> {
        use serde::Deserialize;
        Some(match self {
            ListerKind::Namespaces => {
                let ns = Namespace::deserialize(v).ok()?;
                ListerValue::Labels(ns.metadata.labels.unwrap_or_default())
            }
            ListerKind::Services => {
                let s = Service::deserialize(v).ok()?;
                ListerValue::ServiceSelector(s.spec.and_then(|s| s.selector))
            }
            ListerKind::ReplicaSets => {
                let rs = ReplicaSet::deserialize(v).ok()?;
                ListerValue::Selector(Selector::from_label_selector(
                    rs.spec.as_ref().map(|s| &s.selector),
                ))
            }
            ListerKind::StatefulSets => {
                let ss = StatefulSet::deserialize(v).ok()?;
                ListerValue::Selector(Selector::from_label_selector(
                    ss.spec.as_ref().map(|s| &s.selector),
                ))
            }
            ListerKind::Budgets => {
                let b = PodDisruptionBudget::deserialize(v).ok()?;
                let status = b.status.unwrap_or_default();
                ListerValue::Budget(Budget {
                    selector: Selector::from_label_selector(
                        b.spec.as_ref().and_then(|s| s.selector.as_ref()),
                    ),
                    disruptions_allowed: i64::from(status.disruptions_allowed),
                    disrupted_pods: status
                        .disrupted_pods
                        .unwrap_or_default()
                        .into_keys()
                        .collect(),
                })
            }
            ListerKind::Claims => {
                ListerValue::Claim(Claim(Arc::new(PersistentVolumeClaim::deserialize(v).ok()?)))
            }
            ListerKind::Volumes => {
                ListerValue::Volume(Arc::new(PersistentVolume::deserialize(v).ok()?))
            }
            ListerKind::Classes => {
                let c = StorageClass::deserialize(v).ok()?;
                ListerValue::Class(Class {
                    delayed: c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"),
                    provisioner: c.provisioner,
                })
            }
        })
    }
}

fn put<T>(map: &mut Objects<T>, ns: &str, name: &str, v: Option<T>) {
    match v {
        Some(v) => {
            map.entry(ns.to_string())
                .or_default()
                .insert(name.to_string(), v);
        }
        None => {
            if let Some(m) = map.get_mut(ns) {
                m.remove(name);
                if m.is_empty() {
                    map.remove(ns);
                }
            }
        }
    }
}

impl Listers {
    /// Starts serving claims (their resource exists).
    pub(crate) fn serve_claims(&mut self) {
        self.claims.get_or_insert_with(HashMap::new);
    }

    /// Sets (or with `None`, removes) one object.
    pub(crate) fn apply(
        &mut self,
        kind: ListerKind,
        ns: &str,
        name: &str,
        value: Option<ListerValue>,
    ) {
        match (kind, value) {
            (ListerKind::Namespaces, Some(ListerValue::Labels(l))) => {
                self.namespaces.insert(name.to_string(), l);
            }
            (ListerKind::Namespaces, _) => {
                self.namespaces.remove(name);
            }
            (ListerKind::Services, Some(ListerValue::ServiceSelector(s))) => {
                // A service without a selector selects no pods.
                put(&mut self.services, ns, name, s.filter(|s| !s.is_empty()));
            }
            (ListerKind::ReplicaSets, Some(ListerValue::Selector(s))) => {
                put(&mut self.replica_sets, ns, name, Some(s));
            }
            (ListerKind::StatefulSets, Some(ListerValue::Selector(s))) => {
                put(&mut self.stateful_sets, ns, name, Some(s));
            }
            (ListerKind::Budgets, Some(ListerValue::Budget(b))) => {
                put(&mut self.budgets, ns, name, Some(b))
            }
            (ListerKind::Claims, Some(ListerValue::Claim(c))) => {
                if let Some(claims) = &mut self.claims {
                    put(claims, ns, name, Some(c));
                }
            }
            (ListerKind::Volumes, Some(ListerValue::Volume(v))) => {
                self.volumes.insert(name.to_string(), v);
            }
            (ListerKind::Classes, Some(ListerValue::Class(c))) => {
                self.classes.insert(name.to_string(), c);
            }
            (ListerKind::Volumes, _) => {
                self.volumes.remove(name);
            }
            (ListerKind::Classes, _) => {
                self.classes.remove(name);
            }
            (ListerKind::Services, _) => put(&mut self.services, ns, name, None),
            (ListerKind::ReplicaSets, _) => put(&mut self.replica_sets, ns, name, None),
            (ListerKind::StatefulSets, _) => put(&mut self.stateful_sets, ns, name, None),
            (ListerKind::Budgets, _) => put(&mut self.budgets, ns, name, None),
            (ListerKind::Claims, _) => {
                if let Some(claims) = &mut self.claims {
                    put(claims, ns, name, None);
                }
            }
        }
    }

    /// Forgets every object of `kind` (before a fresh list replaces them).
    pub(crate) fn clear(&mut self, kind: ListerKind) {
        match kind {
            ListerKind::Namespaces => self.namespaces.clear(),
            ListerKind::Services => self.services.clear(),
            ListerKind::ReplicaSets => self.replica_sets.clear(),
            ListerKind::StatefulSets => self.stateful_sets.clear(),
            ListerKind::Budgets => self.budgets.clear(),
            ListerKind::Volumes => self.volumes.clear(),
            ListerKind::Classes => self.classes.clear(),
            ListerKind::Claims => {
                if let Some(c) = &mut self.claims {
                    c.clear();
                }
            }
        }
    }

    /// The labels of namespace `ns` (`None` when unknown).
    pub(crate) fn namespace_labels(&self, ns: &str) -> Option<&Labels> {
        self.namespaces.get(ns)
    }

    /// Names of the namespaces `selector` selects.
    pub(crate) fn namespaces_selected(&self, selector: &Selector) -> Vec<String> {
        self.namespaces
            .iter()
            .filter(|(_, l)| selector.matches(l))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The budgets of namespace `ns`.
    pub(crate) fn budgets(&self) -> impl Iterator<Item = (&str, &str, &Budget)> {
        self.budgets
            .iter()
            .flat_map(|(ns, m)| m.iter().map(move |(n, b)| (ns.as_str(), n.as_str(), b)))
    }

    /// The claim `ns/name`: `Ok(None)` when missing; `Err(())` when claims
    /// are not served at all.
    pub(crate) fn claim(&self, ns: &str, name: &str) -> Result<Option<&Claim>, ()> {
        match &self.claims {
            None => Err(()),
            Some(c) => Ok(c.get(ns).and_then(|m| m.get(name))),
        }
    }

    /// The volume `name`.
    pub(crate) fn volume(&self, name: &str) -> Option<&PersistentVolume> {
        self.volumes.get(name).map(|v| &**v)
    }

    /// Every volume.
    pub(crate) fn volumes(&self) -> impl Iterator<Item = &PersistentVolume> {
        self.volumes.values().map(|v| &**v)
    }

    /// The class `name`.
    pub(crate) fn class(&self, name: &str) -> Option<&Class> {
        self.classes.get(name)
    }

    /// upstream's `helper.DefaultSelector`: the selectors of the services
    /// selecting the pod, and of its controlling ReplicaSet or StatefulSet.
    pub(crate) fn default_selector(&self, pod: &PodInfo) -> Selector {
        let mut set = Labels::new();
        if let Some(services) = self.services.get(&pod.namespace) {
            let mut names: Vec<&String> = services.keys().collect();
            names.sort();
            for name in names {
                let sel = &services[name];
                if Selector::from_set(sel).matches(&pod.labels) {
                    set.extend(sel.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        let mut selector = Selector::from_set(&set);
        let Some(owner) = &pod.owner else {
            return selector;
        };
        let group = owner.api_version.split('/').next().unwrap_or("");
        let controllers = match (group, owner.kind.as_str()) {
            ("apps", "ReplicaSet") => &self.replica_sets,
            ("apps", "StatefulSet") => &self.stateful_sets,
            _ => return selector,
        };
        if let Some(Selector::All(reqs)) = controllers
            .get(&pod.namespace)
            .and_then(|m| m.get(&owner.name))
        {
            for r in reqs {
                selector.add(r.clone());
            }
        }
        selector
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::pod_info::test_pods::pod;
    use serde_json::json;

    #[test]
    fn default_selector_merges_services_and_the_owner() {
        let mut l = Listers::default();
        let svc = |sel: serde_json::Value| {
            ListerKind::Services
                .decode(&json!({"metadata": {"name": "s"}, "spec": {"selector": sel}}))
        };
        l.apply(
            ListerKind::Services,
            "default",
            "web",
            svc(json!({"app": "web"})),
        );
        l.apply(
            ListerKind::Services,
            "default",
            "other",
            svc(json!({"app": "db"})),
        );
        let rs = ListerKind::ReplicaSets.decode(&json!({"metadata": {"name": "rs"},
            "spec": {"selector": {"matchLabels": {"hash": "1"}}}}));
        l.apply(ListerKind::ReplicaSets, "default", "web-1", rs);
        let p = pod(
            json!({"metadata": {"name": "p", "labels": {"app": "web", "hash": "1"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u", "controller": true}]}}),
        );
        let s = l.default_selector(&p);
        let labels = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(s.matches(&labels(&[("app", "web"), ("hash", "1")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("hash", "2")])));
        let lonely = pod(json!({"metadata": {"name": "q", "labels": {"app": "none"}}}));
        assert!(l.default_selector(&lonely).is_empty());
    }

    #[test]
    fn claims_are_absent_until_served() {
        let mut l = Listers::default();
        assert!(l.claim("ns", "c").is_err());
        l.serve_claims();
        assert_eq!(l.claim("ns", "c"), Ok(None));
        let c = ListerKind::Claims
            .decode(&json!({"metadata": {"name": "c"}, "spec": {"volumeName": "pv"}}));
        l.apply(ListerKind::Claims, "ns", "c", c);
        assert_eq!(
            l.claim("ns", "c").ok().flatten().map(Claim::bound),
            Some(true)
        );
    }
}
