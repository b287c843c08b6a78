//! [`PodInfo`]: what the scheduler needs of a pod, decoded once from the
//! typed `k8s-openapi` Pod when its watch event arrives (upstream's
//! `framework.PodInfo`, with the requests of `NodeInfo.AddPod` precomputed).

use std::hash::{Hash, Hasher};

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, Toleration};

use super::labels::{Labels, NodeSelector, NodeTerm, Requirement, Selector};
use super::resources::{Resources, pod_requests};

/// One `PodAffinityTerm`, compiled (upstream's `framework.AffinityTerm`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AffinityTerm {
    /// Namespaces named by the term (the pod's own when it names none and
    /// has no namespace selector).
    pub(crate) namespaces: Vec<String>,
    /// The namespace selector (nothing when absent).
    pub(crate) namespace_selector: Selector,
    /// The pod label selector, with `matchLabelKeys`/`mismatchLabelKeys` merged in.
    pub(crate) selector: Selector,
    /// The topology key.
    pub(crate) topology_key: String,
}

impl AffinityTerm {
    fn new(pod_ns: &str, pod_labels: &Labels, term: &PodAffinityTerm) -> Self {
        let mut selector = Selector::from_label_selector(term.label_selector.as_ref());
        if term.label_selector.is_some() {
            for k in term.match_label_keys.iter().flatten() {
                if let Some(v) = pod_labels.get(k) {
                    selector.add(Requirement::equals(k, v));
                }
            }
            for k in term.mismatch_label_keys.iter().flatten() {
                if let Some(v) = pod_labels.get(k) {
                    selector.add(Requirement::not_equals(k, v));
                }
            }
        }
        let namespaces = match (&term.namespaces, &term.namespace_selector) {
            (None, None) => vec![pod_ns.to_string()],
            (Some(ns), None) if ns.is_empty() => vec![pod_ns.to_string()],
            (ns, _) => ns.clone().unwrap_or_default(),
        };
        AffinityTerm {
            namespaces,
            namespace_selector: Selector::from_label_selector(term.namespace_selector.as_ref()),
            selector,
            topology_key: term.topology_key.clone(),
        }
    }

    /// Whether `pod` (whose namespace has labels `ns_labels`; `None`
    /// when unknown) matches the term (upstream's `AffinityTerm.Matches`).
    pub(crate) fn matches(&self, pod: &PodInfo, ns_labels: Option<&Labels>) -> bool {
        let empty = Labels::new();
        let in_ns = self.namespaces.contains(&pod.namespace)
            || self.namespace_selector.matches(ns_labels.unwrap_or(&empty));
        in_ns && self.selector.matches(&pod.labels)
    }
}

/// A weighted (preferred) affinity term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WeightedTerm {
    /// The weight, 1..=100.
    pub(crate) weight: i64,
    /// The term.
    pub(crate) term: AffinityTerm,
}

/// Whether a spread constraint filters (`DoNotSchedule`) or scores (`ScheduleAnyway`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WhenUnsatisfiable {
    /// A hard constraint.
    DoNotSchedule,
    /// A soft constraint.
    ScheduleAnyway,
}

/// A topology spread constraint, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SpreadConstraint {
    /// `maxSkew`.
    pub(crate) max_skew: i64,
    /// `topologyKey`.
    pub(crate) topology_key: String,
    /// `whenUnsatisfiable`.
    pub(crate) when: WhenUnsatisfiable,
    /// `labelSelector` with `matchLabelKeys` merged in.
    pub(crate) selector: Selector,
    /// `minDomains` (1 when unset).
    pub(crate) min_domains: i64,
    /// `nodeAffinityPolicy: Honor` (the default).
    pub(crate) honor_node_affinity: bool,
    /// `nodeTaintsPolicy: Honor` (default Ignore).
    pub(crate) honor_node_taints: bool,
}

/// A host port a container asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct HostPort {
    /// `hostIP`, `0.0.0.0` when unset.
    pub(crate) ip: String,
    /// `TCP`, `UDP` or `SCTP`.
    pub(crate) protocol: String,
    /// The port.
    pub(crate) port: i32,
}

/// The controller owning a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    /// `apiVersion`.
    pub(crate) api_version: String,
    /// `kind`.
    pub(crate) kind: String,
    /// `name`.
    pub(crate) name: String,
}

/// Everything the scheduler reads of one pod.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PodInfo {
    /// `metadata.uid`.
    pub(crate) uid: String,
    /// `metadata.namespace`.
    pub(crate) namespace: String,
    /// `metadata.name`.
    pub(crate) name: String,
    /// `metadata.resourceVersion`.
    pub(crate) resource_version: String,
    /// `metadata.labels`.
    pub(crate) labels: Labels,
    /// `spec.nodeName` ("" while unscheduled).
    pub(crate) node_name: String,
    /// `spec.schedulerName`.
    pub(crate) scheduler_name: String,
    /// `spec.priority` (0 when unset).
    pub(crate) priority: i32,
    /// `spec.preemptionPolicy: Never`.
    pub(crate) never_preempts: bool,
    /// `metadata.deletionTimestamp` is set.
    pub(crate) deleting: bool,
    /// `status.startTime`.
    pub(crate) start_time: Option<jiff::Timestamp>,
    /// `status.nominatedNodeName`.
    pub(crate) nominated_node: String,
    /// `spec.schedulingGates` is not empty.
    pub(crate) gated: bool,
    /// Effective requests (filtering).
    pub(crate) requests: Resources,
    /// Requests with upstream's defaults for missing CPU and memory (scoring).
    pub(crate) non_zero: Resources,
    /// Host ports of the containers and sidecars.
    pub(crate) host_ports: Vec<HostPort>,
    /// Container images (init and app), normalized with `:latest`.
    pub(crate) images: Vec<String>,
    /// `spec.tolerations`.
    pub(crate) tolerations: Vec<Toleration>,
    /// `spec.nodeSelector`.
    pub(crate) node_selector: Labels,
    /// Required node affinity.
    pub(crate) required_node_affinity: Option<NodeSelector>,
    /// Preferred node affinity terms with their weights.
    pub(crate) preferred_node_affinity: Vec<(i64, NodeTerm)>,
    /// `spec.topologySpreadConstraints`.
    pub(crate) spread_constraints: Vec<SpreadConstraint>,
    /// Required pod affinity terms.
    pub(crate) required_affinity: Vec<AffinityTerm>,
    /// Required pod anti-affinity terms.
    pub(crate) required_anti_affinity: Vec<AffinityTerm>,
    /// Preferred pod affinity terms.
    pub(crate) preferred_affinity: Vec<WeightedTerm>,
    /// Preferred pod anti-affinity terms.
    pub(crate) preferred_anti_affinity: Vec<WeightedTerm>,
    /// `spec.affinity` has pod affinity or anti-affinity.
    pub(crate) has_pod_affinity: bool,
    /// The controller owner reference.
    pub(crate) owner: Option<Owner>,
    /// PersistentVolumeClaims the pod uses (incl. generic ephemeral volumes).
    pub(crate) claims: Vec<String>,
    /// A `DisruptionTarget` condition says the scheduler preempted it.
    pub(crate) preempted: bool,
    /// `terminationGracePeriodSeconds`.
    pub(crate) grace_period: Option<i64>,
    /// The `PodScheduled` condition: status, reason, message.
    pub(crate) scheduled_condition: Option<(String, String, String)>,
    /// A hash of what upstream's `isPodUpdated` compares (metadata but
    /// resourceVersion, managedFields and finalizers; spec).
    pub(crate) spec_hash: u64,
}

/// `image` with `:latest` appended when it has no tag (upstream's `normalizedImageName`).
pub(crate) fn normalized_image(image: &str) -> String {
    let pos = |c: char| image.rfind(c).map_or(-1, |i| i as i64);
    if pos(':') <= pos('/') {
        format!("{image}:latest")
    } else {
        image.to_string()
    }
}

/// Hashes a JSON value without serializing it.
fn hash_json(v: &serde_json::Value, h: &mut impl Hasher) {
    use serde_json::Value;
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => (1u8, b).hash(h),
        Value::Number(n) => (2u8, n.as_f64().map(f64::to_bits), n.as_i64()).hash(h),
        Value::String(s) => (3u8, s).hash(h),
        Value::Array(a) => {
            (4u8, a.len()).hash(h);
            a.iter().for_each(|x| hash_json(x, h));
        }
        Value::Object(o) => {
            (5u8, o.len()).hash(h);
            for (k, x) in o {
                k.hash(h);
                hash_json(x, h);
            }
        }
    }
}

fn spec_hash(pod: &Pod, raw: &serde_json::Value) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    if let Some(spec) = raw.get("spec") {
        hash_json(spec, &mut h);
    }
    pod.metadata.labels.hash(&mut h);
    pod.metadata.annotations.hash(&mut h);
    pod.metadata
        .owner_references
        .as_ref()
        .map(|o| o.len())
        .hash(&mut h);
    pod.metadata.deletion_timestamp.is_some().hash(&mut h);
    h.finish()
}

impl PodInfo {
    /// Decodes `pod` (and its JSON form `raw`, hashed for change detection).
    pub(crate) fn new(pod: &Pod, raw: &serde_json::Value) -> Self {
        let meta = &pod.metadata;
        let namespace = meta.namespace.clone().unwrap_or_default();
        let labels: Labels = meta.labels.clone().unwrap_or_default();
        let default_spec = k8s_openapi::api::core::v1::PodSpec::default();
        let spec = pod.spec.as_ref().unwrap_or(&default_spec);
        let status = pod.status.as_ref();
        let mut host_ports = Vec::new();
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        for c in spec.containers.iter().chain(sidecars) {
            for p in c.ports.iter().flatten() {
                if let Some(port) = p.host_port.filter(|p| *p > 0) {
                    host_ports.push(HostPort {
                        ip: p
                            .host_ip
                            .clone()
                            .filter(|s| !s.is_empty())
                            .unwrap_or_else(|| "0.0.0.0".into()),
                        protocol: p
                            .protocol
                            .clone()
                            .filter(|s| !s.is_empty())
                            .unwrap_or_else(|| "TCP".into()),
                        port,
                    });
                }
            }
        }
        let images = spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
            .map(|c| normalized_image(c.image.as_deref().unwrap_or("")))
            .collect();
        let affinity = spec.affinity.as_ref();
        let node_aff = affinity.and_then(|a| a.node_affinity.as_ref());
        let pod_aff = affinity.and_then(|a| a.pod_affinity.as_ref());
        let anti = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let term = |t: &PodAffinityTerm| AffinityTerm::new(&namespace, &labels, t);
        let required =
            |v: Option<&Vec<PodAffinityTerm>>| v.into_iter().flatten().map(term).collect();
        let weighted = |v: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
            v.into_iter()
                .flatten()
                .map(|w| WeightedTerm {
                    weight: i64::from(w.weight),
                    term: term(&w.pod_affinity_term),
                })
                .collect()
        };
        let spread_constraints = spec
            .topology_spread_constraints
            .iter()
            .flatten()
            .map(|c| {
                let mut selector = Selector::from_label_selector(c.label_selector.as_ref());
                if c.label_selector.is_some() {
                    for k in c.match_label_keys.iter().flatten() {
                        if let Some(v) = labels.get(k) {
                            selector.add(Requirement::equals(k, v));
                        }
                    }
                }
                SpreadConstraint {
                    max_skew: i64::from(c.max_skew),
                    topology_key: c.topology_key.clone(),
                    when: if c.when_unsatisfiable == "ScheduleAnyway" {
                        WhenUnsatisfiable::ScheduleAnyway
                    } else {
                        WhenUnsatisfiable::DoNotSchedule
                    },
                    selector,
                    min_domains: i64::from(c.min_domains.unwrap_or(1)),
                    honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                    honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
                }
            })
            .collect();
        let mut claims = Vec::new();
        for v in spec.volumes.iter().flatten() {
            if let Some(c) = &v.persistent_volume_claim {
                claims.push(c.claim_name.clone());
            } else if v.ephemeral.is_some() {
                claims.push(format!("{}-{}", meta.name.as_deref().unwrap_or(""), v.name));
            }
        }
        let conditions = status.and_then(|s| s.conditions.as_ref());
        let condition = |ty: &str| conditions.into_iter().flatten().find(|c| c.type_ == ty);
        PodInfo {
            uid: meta.uid.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            node_name: spec.node_name.clone().unwrap_or_default(),
            scheduler_name: spec
                .scheduler_name
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| super::DEFAULT_SCHEDULER_NAME.to_string()),
            priority: spec.priority.unwrap_or(0),
            never_preempts: spec.preemption_policy.as_deref() == Some("Never"),
            deleting: meta.deletion_timestamp.is_some(),
            start_time: status.and_then(|s| s.start_time.as_ref()).map(|t| t.0),
            nominated_node: status
                .and_then(|s| s.nominated_node_name.clone())
                .unwrap_or_default(),
            gated: spec
                .scheduling_gates
                .as_ref()
                .is_some_and(|g| !g.is_empty()),
            requests: pod_requests(spec, false),
            non_zero: pod_requests(spec, true),
            host_ports,
            images,
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            required_node_affinity: node_aff
                .and_then(|n| {
                    n.required_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .map(|s| NodeSelector::new(&s.node_selector_terms)),
            preferred_node_affinity: node_aff
                .and_then(|n| {
                    n.preferred_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .into_iter()
                .flatten()
                .map(|p| (i64::from(p.weight), NodeTerm::new(&p.preference)))
                .collect(),
            spread_constraints,
            required_affinity: required(pod_aff.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            required_anti_affinity: required(anti.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_affinity: weighted(pod_aff.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_anti_affinity: weighted(anti.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            has_pod_affinity: pod_aff.is_some() || anti.is_some(),
            owner: meta
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true))
                .map(|o| Owner {
                    api_version: o.api_version.clone(),
                    kind: o.kind.clone(),
                    name: o.name.clone(),
                }),
            claims,
            preempted: condition("DisruptionTarget").is_some_and(|c| {
                c.status == "True" && c.reason.as_deref() == Some("PreemptionByScheduler")
            }),
            grace_period: spec.termination_grace_period_seconds,
            scheduled_condition: condition("PodScheduled").map(|c| {
                (
                    c.status.clone(),
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default(),
                )
            }),
            spec_hash: spec_hash(pod, raw),
            namespace,
            labels,
        }
    }

    /// `namespace/name`, for logs and messages.
    pub(crate) fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether the pod is bound (or assumed) to a node.
    pub(crate) fn is_assigned(&self) -> bool {
        !self.node_name.is_empty()
    }

    /// Whether it has required anti-affinity terms.
    pub(crate) fn has_required_anti_affinity(&self) -> bool {
        !self.required_anti_affinity.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod test_pods {
    //! Pods for the plugins' unit tests.
    use super::*;
    use serde_json::{Value, json};

    /// A pod from its JSON form.
    pub(crate) fn pod(v: Value) -> PodInfo {
        let mut v = v;
        if v.pointer("/metadata/namespace").is_none() {
            v["metadata"]["namespace"] = json!("default");
        }
        if v.pointer("/metadata/uid").is_none() {
            let uid = format!("uid-{}", v["metadata"]["name"].as_str().unwrap_or("p"));
            v["metadata"]["uid"] = json!(uid);
        }
        if v.pointer("/spec/containers").is_none() {
            v["spec"]["containers"] = json!([{"name": "c", "image": "pause"}]);
        }
        let typed: Pod = serde_json::from_value(v.clone()).unwrap_or_default();
        PodInfo::new(&typed, &v)
    }

    /// A pod named `name` requesting `cpu` and `mem`.
    pub(crate) fn sized(name: &str, cpu: &str, mem: &str) -> PodInfo {
        pod(json!({"metadata": {"name": name}, "spec": {"containers": [
            {"name": "c", "image": "pause", "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}}))
    }
}

#[cfg(test)]
mod tests {
    use super::test_pods::pod;
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_what_the_plugins_need() {
        let p = pod(json!({
            "metadata": {"name": "web", "namespace": "ns", "labels": {"app": "web", "ver": "1"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u", "controller": true}]},
            "spec": {
                "priority": 7, "preemptionPolicy": "Never", "schedulingGates": [{"name": "g"}],
                "containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}]}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "pvc-1"}}, {"name": "scratch", "ephemeral": {}}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname", "matchLabelKeys": ["ver"]}]}},
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": {"app": "web"}}}],
            },
            "status": {"nominatedNodeName": "n1", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "m"}]},
        }));
        assert_eq!((p.priority, p.never_preempts, p.gated), (7, true, true));
        assert_eq!(
            p.host_ports,
            vec![HostPort {
                ip: "0.0.0.0".into(),
                protocol: "TCP".into(),
                port: 8080
            }]
        );
        assert_eq!(p.images, vec!["nginx:latest"]);
        assert_eq!(p.claims, vec!["pvc-1", "web-scratch"]);
        assert_eq!(p.required_anti_affinity[0].namespaces, vec!["ns"]);
        let other = pod(
            json!({"metadata": {"name": "o", "namespace": "ns", "labels": {"app": "web", "ver": "2"}}}),
        );
        assert!(
            !p.required_anti_affinity[0].matches(&other, None),
            "matchLabelKeys narrow the selector"
        );
        assert!(p.required_anti_affinity[0].matches(&p, None));
        assert_eq!(
            p.spread_constraints[0].when,
            WhenUnsatisfiable::ScheduleAnyway
        );
        assert_eq!(
            p.owner.as_ref().map(|o| o.kind.as_str()),
            Some("ReplicaSet")
        );
        assert_eq!(p.nominated_node, "n1");
        assert_eq!(
            p.scheduled_condition.as_ref().map(|c| c.1.as_str()),
            Some("Unschedulable")
        );
        assert_eq!(p.scheduler_name, "default-scheduler");
        assert_eq!(p.non_zero.milli_cpu, 100);
    }

    #[test]
    fn image_names_get_latest_only_without_a_tag() {
        assert_eq!(normalized_image("nginx"), "nginx:latest");
        assert_eq!(normalized_image("nginx:1.2"), "nginx:1.2");
        assert_eq!(
            normalized_image("host:5000/nginx"),
            "host:5000/nginx:latest"
        );
        assert_eq!(normalized_image("host:5000/nginx:1"), "host:5000/nginx:1");
    }
}
