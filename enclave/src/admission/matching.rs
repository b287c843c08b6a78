//! Which admission webhooks and policies a request concerns: upstream's `rules` (operations,
//! groups, versions, resources with their subresource forms, scope, and for policies
//! `resourceNames`), `namespaceSelector` and `objectSelector`
//! (`apiserver/pkg/admission/plugin/webhook/predicates`, `.../policy/matching`).

use serde_json::{Map, Value};

use super::{Operation, Request};
use crate::registry::kinds::selector_matches;
use crate::registry::meta::string_list;
use crate::registry::{ObjectStore, Result};

/// What a request is, as the rules see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attributes<'a> {
    /// `CREATE`, `UPDATE`, `DELETE`.
    pub(crate) operation: &'a str,
    pub(crate) group: &'a str,
    pub(crate) version: &'a str,
    pub(crate) resource: &'a str,
    /// The subresource written through, if any.
    pub(crate) subresource: Option<&'a str>,
    /// Whether the resource is namespaced.
    pub(crate) namespaced: bool,
    /// The object's name (empty on a create with only `generateName`).
    pub(crate) name: &'a str,
}

impl<'a> Attributes<'a> {
    /// What `req` is about.
    pub(crate) fn of(req: &'a Request<'a>) -> Self {
        Attributes {
            operation: req.operation.as_str(),
            group: &req.info.group,
            version: &req.info.version,
            resource: &req.info.resource,
            subresource: req.subresource,
            namespaced: req.info.namespaced(),
            name: req.name,
        }
    }
}

/// The request's Namespace object (for a Namespace, the object itself), if there is one.
pub(crate) async fn namespace_object(
    objects: &ObjectStore,
    req: &Request<'_>,
    obj: &Value,
) -> Result<Option<Value>> {
    if req.info.group.is_empty() && req.info.resource == "namespaces" {
        let own = if req.operation == Operation::Delete {
            req.old
        } else {
            Some(obj)
        };
        return Ok(own.cloned());
    }
    let Some(ns) = req.namespace.filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    let Some(info) = objects.table().lookup("", "v1", "namespaces") else {
        return Ok(None);
    };
    match objects.get(&info, None, ns).await {
        Ok(namespace) => Ok(Some(namespace)),
        Err(crate::registry::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every object of one `admissionregistration.k8s.io/v1` resource (webhook configurations,
/// policies, bindings), in name order; none when the resource is not served.
pub(crate) async fn configurations(objects: &ObjectStore, resource: &str) -> Result<Vec<Value>> {
    let Some(info) = objects
        .table()
        .lookup("admissionregistration.k8s.io", "v1", resource)
    else {
        return Ok(Vec::new());
    };
    Ok(objects
        .list(&info, None, &crate::registry::ListOptions::default())
        .await?
        .items)
}

/// A namespace object's labels.
pub(crate) fn labels_of(object: Option<&Value>) -> Option<&Map<String, Value>> {
    object
        .and_then(|o| o.pointer("/metadata/labels"))
        .and_then(Value::as_object)
}

fn strings(v: &Value, field: &str) -> Vec<String> {
    string_list(v.get(field))
}

/// Whether one `resources` entry names the resource and subresource: `pods`, `pods/status`,
/// `pods/*`, `*` (every resource, no subresource), `*/status`, `*/*`.
fn resource_matches(entry: &str, resource: &str, subresource: Option<&str>) -> bool {
    let (res, sub) = match entry.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (entry, None),
    };
    let resource_ok = res == "*" || res == resource;
    let sub_ok = match (sub, subresource) {
        (None, None) => true,
        (None, Some(_)) => false,
        (Some("*"), _) => true,
        (Some(s), Some(want)) => s == want,
        (Some(_), None) => false,
    };
    resource_ok && sub_ok
}

/// Whether one rule (`operations`, `apiGroups`, `apiVersions`, `resources`, `scope`) covers
/// the request.
pub(crate) fn rule_matches(rule: &Value, a: &Attributes<'_>) -> bool {
    let any = |list: Vec<String>, want: &str| list.iter().any(|x| x == "*" || x == want);
    let scope_ok = match rule.get("scope").and_then(Value::as_str).unwrap_or("*") {
        "Cluster" => !a.namespaced,
        "Namespaced" => a.namespaced,
        _ => true,
    };
    any(strings(rule, "operations"), a.operation)
        && any(strings(rule, "apiGroups"), a.group)
        && any(strings(rule, "apiVersions"), a.version)
        && strings(rule, "resources")
            .iter()
            .any(|r| resource_matches(r, a.resource, a.subresource))
        && scope_ok
}

/// Whether a policy rule's `resourceNames` (empty: every name) admits the request's object.
pub(crate) fn resource_name_matches(rule: &Value, a: &Attributes<'_>) -> bool {
    let names = strings(rule, "resourceNames");
    names.is_empty() || names.iter().any(|n| n == a.name)
}

/// Whether any of `rules` covers the request.
pub(crate) fn rules_match(rules: Option<&Value>, a: &Attributes<'_>) -> bool {
    rules
        .and_then(Value::as_array)
        .is_some_and(|rules| rules.iter().any(|r| rule_matches(r, a)))
}

/// Upstream's `namespaceSelector` rule: a cluster-scoped object other than a Namespace always
/// matches; a Namespace is matched by its own labels; anything else by its namespace's.
pub(crate) fn namespace_selected(
    selector: Option<&Value>,
    a: &Attributes<'_>,
    namespace_labels: Option<&Map<String, Value>>,
) -> bool {
    let is_namespace = a.group.is_empty() && a.resource == "namespaces" && a.subresource.is_none();
    if !a.namespaced && !is_namespace {
        return true;
    }
    selector.is_none_or(|s| s.is_null() || selector_matches(s, namespace_labels))
}

/// Upstream's `objectSelector` rule: the new object's labels or the old one's match.
pub(crate) fn object_selected(
    selector: Option<&Value>,
    new: Option<&Value>,
    old: Option<&Value>,
) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_null()) else {
        return true;
    };
    let objects: Vec<&Value> = [new, old].into_iter().flatten().collect();
    if objects.is_empty() {
        return selector_matches(selector, None);
    }
    objects.iter().any(|o| {
        let labels = o.pointer("/metadata/labels").and_then(Value::as_object);
        selector_matches(selector, labels)
    })
}

/// Upstream never sends the configurations of admission itself to webhooks, so that a broken
/// webhook cannot lock its own configuration (`IsExemptAdmissionConfigurationResource`).
pub(crate) fn exempt(a: &Attributes<'_>) -> bool {
    a.group == "admissionregistration.k8s.io"
        && matches!(
            a.resource,
            "validatingwebhookconfigurations"
                | "mutatingwebhookconfigurations"
                | "validatingadmissionpolicies"
                | "validatingadmissionpolicybindings"
                | "mutatingadmissionpolicies"
                | "mutatingadmissionpolicybindings"
        )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pods(operation: &'static str, subresource: Option<&'static str>) -> Attributes<'static> {
        Attributes {
            operation,
            group: "",
            version: "v1",
            resource: "pods",
            subresource,
            namespaced: true,
            name: "p",
        }
    }

    #[test]
    fn rules_match_as_upstream() {
        let rule = |ops: Value, res: Value, scope: &str| json!({"operations": ops, "apiGroups": [""], "apiVersions": ["v1"], "resources": res, "scope": scope});
        let create = pods("CREATE", None);
        assert!(rule_matches(
            &rule(json!(["CREATE"]), json!(["pods"]), "*"),
            &create
        ));
        assert!(rule_matches(
            &rule(json!(["*"]), json!(["*"]), "Namespaced"),
            &create
        ));
        assert!(!rule_matches(
            &rule(json!(["*"]), json!(["*"]), "Cluster"),
            &create
        ));
        assert!(!rule_matches(
            &rule(json!(["UPDATE"]), json!(["pods"]), "*"),
            &create
        ));
        assert!(!rule_matches(
            &rule(json!(["*"]), json!(["configmaps"]), "*"),
            &create
        ));
        let status = pods("UPDATE", Some("status"));
        assert!(!rule_matches(
            &rule(json!(["*"]), json!(["pods"]), "*"),
            &status
        ));
        assert!(!rule_matches(
            &rule(json!(["*"]), json!(["*"]), "*"),
            &status
        ));
        for matching in ["pods/status", "pods/*", "*/status", "*/*"] {
            assert!(
                rule_matches(&rule(json!(["*"]), json!([matching]), "*"), &status),
                "{matching}"
            );
        }
        let other_group = Attributes {
            group: "apps",
            ..create
        };
        assert!(!rule_matches(
            &rule(json!(["*"]), json!(["*"]), "*"),
            &other_group
        ));
    }

    #[test]
    fn selectors_match_namespaces_and_objects_as_upstream() {
        let sel = json!({"matchLabels": {"team": "a"}});
        let labels = json!({"team": "a"});
        let create = pods("CREATE", None);
        assert!(namespace_selected(Some(&sel), &create, labels.as_object()));
        assert!(!namespace_selected(Some(&sel), &create, None));
        assert!(namespace_selected(Some(&json!({})), &create, None));
        let node = Attributes {
            resource: "nodes",
            namespaced: false,
            ..create
        };
        assert!(
            namespace_selected(Some(&sel), &node, None),
            "cluster-scoped objects always match"
        );
        let new = json!({"metadata": {"labels": {"team": "a"}}});
        let old = json!({"metadata": {"labels": {"team": "b"}}});
        assert!(object_selected(Some(&sel), Some(&new), None));
        assert!(
            object_selected(Some(&sel), Some(&old), Some(&new)),
            "old or new"
        );
        assert!(!object_selected(Some(&sel), Some(&old), None));
        assert!(object_selected(None, Some(&old), None));
    }
}
