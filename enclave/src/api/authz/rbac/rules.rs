//! RBAC rules as upstream evaluates them, with no I/O: whether a rule
//! allows a request (`RuleAllows`), whether one set of rules covers another
//! (`Covers`, for escalation prevention), and the compact descriptions of
//! missing rules that escalation errors print (`CompactRules`,
//! `CompactString`).

use serde_json::{Map, Value};

use super::super::Attributes;
use crate::registry::meta::string_list;

/// `*`: every verb, group, resource or non-resource URL.
const ALL: &str = "*";

/// One `rbac.authorization.k8s.io/v1` PolicyRule.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct PolicyRule {
    /// Verbs (`get`, `*`, ...).
    pub verbs: Vec<String>,
    /// API groups ("" is core, `*` every group).
    pub api_groups: Vec<String>,
    /// Resources, `resource/subresource`, `*/subresource` or `*`.
    pub resources: Vec<String>,
    /// Object names; empty means every name.
    pub resource_names: Vec<String>,
    /// Non-resource URLs, exact or ending in `*`.
    pub non_resource_urls: Vec<String>,
}

fn owned(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|x| (*x).to_string()).collect()
}

impl PolicyRule {
    /// A resource rule.
    pub fn resource(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Self {
        PolicyRule {
            verbs: owned(verbs),
            api_groups: owned(groups),
            resources: owned(resources),
            ..Default::default()
        }
    }

    /// A non-resource rule.
    pub fn non_resource(verbs: &[&str], urls: &[&str]) -> Self {
        PolicyRule {
            verbs: owned(verbs),
            non_resource_urls: owned(urls),
            ..Default::default()
        }
    }

    /// With `resourceNames`.
    #[must_use]
    pub fn names(mut self, names: &[&str]) -> Self {
        self.resource_names = owned(names);
        self
    }

    /// A non-resource rule of these verbs and URLs.
    #[must_use]
    pub fn with_urls(mut self, verbs: &[String], urls: &[String]) -> Self {
        self.verbs = verbs.to_vec();
        self.non_resource_urls = urls.to_vec();
        self
    }

    /// A rule from its JSON form (missing lists are empty).
    pub fn from_json(v: &Value) -> Self {
        PolicyRule {
            verbs: string_list(v.get("verbs")),
            api_groups: string_list(v.get("apiGroups")),
            resources: string_list(v.get("resources")),
            resource_names: string_list(v.get("resourceNames")),
            non_resource_urls: string_list(v.get("nonResourceURLs")),
        }
    }

    /// Every rule of a Role's or ClusterRole's `rules`.
    pub fn all_from_json(rules: Option<&Value>) -> Vec<Self> {
        rules
            .and_then(Value::as_array)
            .map(|a| a.iter().map(Self::from_json).collect())
            .unwrap_or_default()
    }

    /// The rule's JSON form, empty lists omitted (field order as upstream's
    /// struct: verbs, apiGroups, resources, resourceNames, nonResourceURLs;
    /// the map sorts them anyway).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (k, v) in [
            ("verbs", &self.verbs),
            ("apiGroups", &self.api_groups),
            ("resources", &self.resources),
            ("resourceNames", &self.resource_names),
            ("nonResourceURLs", &self.non_resource_urls),
        ] {
            if !v.is_empty() || k == "verbs" {
                m.insert(k.into(), Value::from(v.clone()));
            }
        }
        Value::Object(m)
    }

    /// Whether this rule allows the request `a` (upstream's `RuleAllows`).
    pub fn allows(&self, a: &Attributes) -> bool {
        if !verb_matches(&self.verbs, &a.verb) {
            return false;
        }
        if !a.resource_request {
            return self
                .non_resource_urls
                .iter()
                .any(|u| non_resource_url_matches(u, &a.path));
        }
        has_or_all(&self.api_groups, &a.api_group)
            && self.resource_matches(&a.resource, &a.subresource)
            && (self.resource_names.is_empty() || self.resource_names.contains(&a.name))
    }

    /// Upstream's `ResourceMatches`: `*`, the exact `resource[/subresource]`,
    /// or `*/subresource`.
    pub fn resource_matches(&self, resource: &str, subresource: &str) -> bool {
        self.resources.iter().any(|r| {
            if r == ALL {
                return true;
            }
            if subresource.is_empty() {
                return r == resource;
            }
            let combined = r.len() == resource.len() + 1 + subresource.len()
                && r.starts_with(resource)
                && r.as_bytes().get(resource.len()) == Some(&b'/')
                && r.ends_with(subresource);
            combined || r.strip_prefix("*/") == Some(subresource)
        })
    }
}

/// `*` or an exact match.
fn verb_matches(verbs: &[String], verb: &str) -> bool {
    verbs.iter().any(|v| v == ALL || v == verb)
}

fn has_or_all(set: &[String], want: &str) -> bool {
    set.iter().any(|x| x == ALL || x == want)
}

/// Upstream's `NonResourceURLMatches` for one rule URL.
fn non_resource_url_matches(rule: &str, path: &str) -> bool {
    rule == ALL
        || rule == path
        || rule
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix.trim_end_matches('*')))
}

fn has(set: &[String], x: &str) -> bool {
    set.iter().any(|s| s == x)
}

fn has_all(set: &[String], xs: &[String]) -> bool {
    xs.iter().all(|x| has(set, x))
}

/// Upstream's `resourceCoversAll`.
fn resource_covers_all(set: &[String], covers: &[String]) -> bool {
    if has(set, ALL) || has_all(set, covers) {
        return true;
    }
    covers.iter().all(|path| {
        if has(set, path) {
            return true;
        }
        match path.split_once('/') {
            Some((_, sub)) => has(set, &format!("*/{sub}")),
            None => false,
        }
    })
}

/// Upstream's `nonResourceURLCovers`.
fn non_resource_url_covers(owner: &str, sub: &str) -> bool {
    owner == sub
        || owner
            .strip_suffix('*')
            .is_some_and(|_| sub.starts_with(owner.trim_end_matches('*')))
}

/// Upstream's `ruleCovers`: whether `owner` grants everything `sub` does.
pub fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let verbs = has(&owner.verbs, ALL) || has_all(&owner.verbs, &sub.verbs);
    let groups = has(&owner.api_groups, ALL) || has_all(&owner.api_groups, &sub.api_groups);
    let resources = resource_covers_all(&owner.resources, &sub.resources);
    let urls = sub.non_resource_urls.iter().all(|p| {
        owner
            .non_resource_urls
            .iter()
            .any(|o| non_resource_url_covers(o, p))
    });
    let names = if sub.resource_names.is_empty() {
        owner.resource_names.is_empty()
    } else {
        owner.resource_names.is_empty() || has_all(&owner.resource_names, &sub.resource_names)
    };
    verbs && groups && resources && names && urls
}

/// Upstream's `BreakdownRule`: one rule per group, resource, verb and name
/// (resource rules), and per URL and verb (non-resource rules).
pub fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let one = |x: &String| vec![x.clone()];
    let mut out = Vec::new();
    for g in &rule.api_groups {
        for r in &rule.resources {
            for v in &rule.verbs {
                let base = PolicyRule {
                    verbs: one(v),
                    api_groups: one(g),
                    resources: one(r),
                    ..Default::default()
                };
                if rule.resource_names.is_empty() {
                    out.push(base);
                } else {
                    for n in &rule.resource_names {
                        out.push(PolicyRule {
                            resource_names: one(n),
                            ..base.clone()
                        });
                    }
                }
            }
        }
    }
    for u in &rule.non_resource_urls {
        for v in &rule.verbs {
            out.push(PolicyRule {
                verbs: one(v),
                non_resource_urls: one(u),
                ..Default::default()
            });
        }
    }
    out
}

/// Upstream's `Covers`: whether `owner` covers every rule of `servant`,
/// and the broken-down rules it does not cover.
pub fn covers(owner: &[PolicyRule], servant: &[PolicyRule]) -> (bool, Vec<PolicyRule>) {
    let mut missing = Vec::new();
    for s in servant {
        for sub in breakdown(s) {
            if !owner.iter().any(|o| rule_covers(o, &sub)) {
                missing.push(sub);
            }
        }
    }
    (missing.is_empty(), missing)
}

/// Upstream's `CompactRules`: rules with one group, one resource, at most
/// one name and nothing else that differ only by verb become one rule
/// (verbs in order of appearance); the rest are kept as they are.
pub fn compact(rules: Vec<PolicyRule>) -> Vec<PolicyRule> {
    let mut out = Vec::new();
    let mut simple: Vec<PolicyRule> = Vec::new();
    for r in rules {
        let is_simple = r.resource_names.len() <= 1
            && r.non_resource_urls.is_empty()
            && r.api_groups.len() == 1
            && r.resources.len() == 1;
        if !is_simple {
            out.push(r);
            continue;
        }
        match simple.iter_mut().find(|s| {
            s.api_groups == r.api_groups
                && s.resources == r.resources
                && s.resource_names == r.resource_names
        }) {
            Some(s) => s.verbs.extend(r.verbs),
            None => simple.push(r),
        }
    }
    out.extend(simple);
    out
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
fn go_quoted_list(xs: &[String]) -> String {
    let quoted: Vec<String> = xs.iter().map(|x| format!("{x:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

/// Upstream's `CompactString`: `{APIGroups:[""], Resources:["pods"], Verbs:["get"]}`.
pub fn compact_string(r: &PolicyRule) -> String {
    let mut parts = Vec::new();
    for (label, v) in [
        ("APIGroups", &r.api_groups),
        ("Resources", &r.resources),
        ("NonResourceURLs", &r.non_resource_urls),
        ("ResourceNames", &r.resource_names),
        ("Verbs", &r.verbs),
    ] {
        if !v.is_empty() {
            parts.push(format!("{label}:{}", go_quoted_list(v)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::UserInfo;

    fn req(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes::resource(
            UserInfo::new("u", &[]),
            verb,
            "ns",
            group,
            resource,
            sub,
            name,
        )
    }

    #[test]
    fn rules_allow_as_upstream() {
        let pods = PolicyRule::resource(&["get", "list"], &[""], &["pods"]);
        assert!(pods.allows(&req("get", "", "pods", "", "p")));
        assert!(!pods.allows(&req("delete", "", "pods", "", "p")));
        assert!(!pods.allows(&req("get", "apps", "pods", "", "p")));
        assert!(!pods.allows(&req("get", "", "pods", "log", "p")));
        let logs = PolicyRule::resource(&["get"], &[""], &["pods/log"]);
        assert!(logs.allows(&req("get", "", "pods", "log", "p")));
        assert!(!logs.allows(&req("get", "", "pods", "", "p")));
        let any_status = PolicyRule::resource(&["*"], &["*"], &["*/status"]);
        assert!(any_status.allows(&req("update", "apps", "deployments", "status", "d")));
        assert!(!any_status.allows(&req("update", "apps", "deployments", "", "d")));
        let named = PolicyRule::resource(&["get"], &[""], &["configmaps"]).names(&["a"]);
        assert!(named.allows(&req("get", "", "configmaps", "", "a")));
        assert!(!named.allows(&req("get", "", "configmaps", "", "b")));
        assert!(!named.allows(&req("list", "", "configmaps", "", "")));
        let all = PolicyRule::resource(&["*"], &["*"], &["*"]);
        assert!(all.allows(&req("deletecollection", "x.io", "things", "scale", "")));
        let user = UserInfo::new("u", &[]);
        let urls = PolicyRule::non_resource(&["get"], &["/healthz", "/api/*"]);
        assert!(urls.allows(&Attributes::non_resource(user.clone(), "get", "/healthz")));
        assert!(urls.allows(&Attributes::non_resource(user.clone(), "get", "/api/v1")));
        assert!(urls.allows(&Attributes::non_resource(user.clone(), "get", "/api/")));
        assert!(!urls.allows(&Attributes::non_resource(user.clone(), "get", "/api")));
        assert!(!urls.allows(&Attributes::non_resource(user.clone(), "post", "/healthz")));
        assert!(!urls.allows(&req("get", "", "healthz", "", "")));
        assert!(!pods.allows(&Attributes::non_resource(user, "get", "/api/v1/pods")));
    }

    #[test]
    fn covers_breakdown_and_compact_as_upstream() {
        let owner = vec![
            PolicyRule::resource(&["get", "list"], &[""], &["pods", "*/status"]),
            PolicyRule::non_resource(&["get"], &["/metrics/*"]),
        ];
        let ok = vec![
            PolicyRule::resource(&["get"], &[""], &["pods", "services/status"]),
            PolicyRule::non_resource(&["get"], &["/metrics/x"]),
        ];
        assert_eq!(covers(&owner, &ok), (true, vec![]));
        let (ok, missing) = covers(
            &owner,
            &[PolicyRule::resource(
                &["get", "watch", "delete"],
                &["", "apps"],
                &["pods"],
            )],
        );
        assert!(!ok);
        let compacted = compact(missing);
        let mut text: Vec<String> = compacted.iter().map(compact_string).collect();
        text.sort();
        assert_eq!(
            text,
            vec![
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["watch" "delete"]}"#,
                r#"{APIGroups:["apps"], Resources:["pods"], Verbs:["get" "watch" "delete"]}"#,
            ]
        );
        let named = PolicyRule::resource(&["get"], &[""], &["secrets"]).names(&["a", "b"]);
        let (_, missing) = covers(&[], &[named]);
        let text: Vec<String> = compact(missing).iter().map(compact_string).collect();
        assert_eq!(
            text,
            vec![
                r#"{APIGroups:[""], Resources:["secrets"], ResourceNames:["a"], Verbs:["get"]}"#,
                r#"{APIGroups:[""], Resources:["secrets"], ResourceNames:["b"], Verbs:["get"]}"#,
            ]
        );
        assert_eq!(
            compact_string(&PolicyRule::non_resource(&["get"], &["/x"])),
            r#"{NonResourceURLs:["/x"], Verbs:["get"]}"#
        );
        // A name-restricted owner does not cover the whole resource.
        let owner = vec![PolicyRule::resource(&["get"], &[""], &["secrets"]).names(&["a"])];
        assert!(
            !covers(
                &owner,
                &[PolicyRule::resource(&["get"], &[""], &["secrets"])]
            )
            .0
        );
        assert!(
            covers(
                &[PolicyRule::resource(&["*"], &["*"], &["*"])],
                &[PolicyRule::resource(&["get"], &["x"], &["y/z"]).names(&["n"])]
            )
            .0
        );
    }

    #[test]
    fn json_round_trip() {
        let v = serde_json::json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"]});
        assert_eq!(PolicyRule::from_json(&v).to_json(), v);
    }
}
