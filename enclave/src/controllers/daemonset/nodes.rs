//! Which nodes a DaemonSet's pods belong on (upstream
//! `daemon_controller.go`'s `NodeShouldRunDaemonPod`, `daemon/util` and
//! the scheduler's `nodeaffinity` and taint helpers): the template's
//! `nodeName`, `nodeSelector` and required node affinity, and its
//! tolerations plus those upstream adds to every DaemonSet pod; and how a
//! pod is pinned to its node (required node affinity on `metadata.name`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Taint, Toleration,
};

/// The field a DaemonSet pod's node affinity names its node by.
const NODE_NAME_FIELD: &str = "metadata.name";

/// upstream's `AddOrUpdateDaemonPodTolerations`: a DaemonSet's pods
/// tolerate not-ready and unreachable nodes forever, and the pressure,
/// unschedulable (and, on the host network, network-unavailable) taints.
pub(crate) fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let list = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in wanted {
        let t = Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            value: None,
            toleration_seconds: None,
        };
        // upstream's `AddOrUpdateTolerationInPodSpec`: the same key,
        // operator, value and effect is replaced.
        let same = |x: &Toleration| {
            x.key == t.key
                && x.operator.as_deref().unwrap_or("Equal") == "Exists"
                && x.value.as_deref().unwrap_or("").is_empty()
                && x.effect == t.effect
        };
        match list.iter_mut().find(|x| same(x)) {
            Some(x) => *x = t,
            None => list.push(t),
        }
    }
}

/// upstream's `Toleration.ToleratesTaint`.
fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    let op = t.operator.as_deref().unwrap_or("Equal");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match op {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// Whether some taint passing `filter` is tolerated by none of `tolerations`.
fn has_untolerated(
    taints: &[Taint],
    tolerations: &[Toleration],
    filter: impl Fn(&Taint) -> bool,
) -> bool {
    taints
        .iter()
        .filter(|t| filter(t))
        .any(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
}

/// A node selector requirement against the node's labels or fields.
fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        op @ ("Gt" | "Lt") => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if op == "Gt" { v > bound } else { v < bound }
        }
        _ => false,
    }
}

/// upstream's `NodeSelector` match: any term whose expressions (on
/// labels) and fields (`metadata.name`) all match; empty terms match nothing.
fn node_selector_matches(sel: &NodeSelector, node: &Node) -> bool {
    selector_matches_node(
        sel,
        node.metadata.name.as_deref().unwrap_or(""),
        node.metadata.labels.as_ref(),
    )
}

/// [`node_selector_matches`] for the node named `name` with `labels`.
pub(crate) fn selector_matches_node(
    sel: &NodeSelector,
    name: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    sel.node_selector_terms.iter().any(|term| {
        let exprs = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        if exprs.is_empty() && fields.is_empty() {
            return false;
        }
        exprs
            .iter()
            .all(|r| requirement_matches(r, labels.and_then(|l| l.get(&r.key)).map(String::as_str)))
            && fields.iter().all(|r| {
                let value = (r.key == NODE_NAME_FIELD).then_some(name);
                requirement_matches(r, value)
            })
    })
}

/// upstream's `GetRequiredNodeAffinity(pod).Match(node)`: the node
/// selector's labels and the required node affinity.
pub(crate) fn required_affinity_matches(spec: &PodSpec, node: &Node) -> bool {
    let labels = node.metadata.labels.as_ref();
    let by_selector = spec
        .node_selector
        .as_ref()
        .is_none_or(|want: &BTreeMap<String, String>| {
            want.iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        });
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    by_selector && required.is_none_or(|sel| node_selector_matches(sel, node))
}

/// upstream's `NodeShouldRunDaemonPod`: (should run a pod there, may keep
/// one running there). A node whose taints only a NoExecute-tolerating pod
/// survives keeps its pod but gets no new one.
pub(crate) fn should_run(node: &Node, ds: &DaemonSet) -> (bool, bool) {
    let node_name = node.metadata.name.as_deref().unwrap_or("");
    let mut spec = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .unwrap_or_default();
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != node_name)
    {
        return (false, false);
    }
    add_daemon_tolerations(&mut spec);
    if !required_affinity_matches(&spec, node) {
        return (false, false);
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let fits = !has_untolerated(taints, tolerations, |t| {
        t.effect == "NoExecute" || t.effect == "NoSchedule"
    });
    if fits {
        return (true, true);
    }
    let keep = !has_untolerated(taints, tolerations, |t| t.effect == "NoExecute");
    (false, keep)
}

/// upstream's `ReplaceDaemonSetPodNodeNameNodeAffinity`: the required
/// node affinity becomes exactly "the node named `node`".
pub(crate) fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let term = NodeSelectorTerm {
        match_expressions: None,
        match_fields: Some(vec![NodeSelectorRequirement {
            key: NODE_NAME_FIELD.into(),
            operator: "In".into(),
            values: Some(vec![node.to_string()]),
        }]),
    };
    let mut affinity = affinity.unwrap_or_default();
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    match na
        .required_during_scheduling_ignored_during_execution
        .as_mut()
    {
        Some(sel) => sel.node_selector_terms = vec![term],
        None => {
            na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
                node_selector_terms: vec![term],
            });
        }
    }
    affinity
}

/// upstream's `GetTargetNodeName`: the bound node, or the node the
/// DaemonSet pinned an unscheduled pod to.
pub(crate) fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.as_deref()?.iter().find_map(|r| {
            let values = r.values.as_deref().unwrap_or_default();
            (r.key == NODE_NAME_FIELD && r.operator == "In" && values.len() == 1)
                .then(|| values[0].clone())
        })
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints}}))
        .unwrap()
    }

    fn ds(template_spec: serde_json::Value) -> DaemonSet {
        serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": template_spec}}}))
        .unwrap()
    }

    #[test]
    fn selectors_affinity_and_taints_decide() {
        let plain = ds(json!({"containers": [{"name": "c", "image": "i"}]}));
        assert_eq!(
            should_run(&node("n", json!({}), json!([])), &plain),
            (true, true)
        );
        let picky = ds(json!({"containers": [], "nodeSelector": {"disk": "ssd"}}));
        assert_eq!(
            should_run(&node("n", json!({}), json!([])), &picky),
            (false, false)
        );
        assert_eq!(
            should_run(&node("n", json!({"disk": "ssd"}), json!([])), &picky),
            (true, true)
        );
        let tainted = node(
            "n",
            json!({}),
            json!([{"key": "gpu", "effect": "NoSchedule"}]),
        );
        assert_eq!(should_run(&tainted, &plain), (false, true));
        let evicting = node(
            "n",
            json!({}),
            json!([{"key": "gpu", "effect": "NoExecute"}]),
        );
        assert_eq!(should_run(&evicting, &plain), (false, false));
        // The tolerations upstream adds: unschedulable and not-ready nodes still run it.
        let cordoned = node(
            "n",
            json!({}),
            json!([
            {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
        );
        assert_eq!(should_run(&cordoned, &plain), (true, true));
        let tolerant =
            ds(json!({"containers": [], "tolerations": [{"key": "gpu", "operator": "Exists"}]}));
        assert_eq!(should_run(&evicting, &tolerant), (true, true));
        let affine = ds(json!({"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}}));
        assert!(!should_run(&node("n", json!({"zone": "b"}), json!([])), &affine).0);
        assert!(should_run(&node("n", json!({"zone": "a"}), json!([])), &affine).0);
    }

    #[test]
    fn pinning_replaces_the_required_terms_and_is_read_back() {
        let a = pin_to_node(None, "n1");
        let pod = Pod {
            spec: Some(PodSpec {
                affinity: Some(pin_to_node(Some(a), "n2")),
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        assert_eq!(target_node(&pod).as_deref(), Some("n2"));
        let terms = &pod
            .spec
            .as_ref()
            .unwrap()
            .affinity
            .as_ref()
            .unwrap()
            .node_affinity
            .as_ref()
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms.len(), 1);
    }
}
