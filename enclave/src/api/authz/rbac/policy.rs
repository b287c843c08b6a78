//! One immutable snapshot of the cluster's RBAC objects and upstream's rule
//! resolution over it (`DefaultRuleResolver.VisitRulesFor`): cluster role
//! bindings first, then the role bindings of the request's namespace; each
//! binding whose subjects include the user contributes its role's rules, in
//! that order, and a binding whose role is missing contributes an error.
//!
//! Checking a request against every binding would cost time proportional to
//! the number of bindings; instead the rules a user holds in a namespace are
//! compiled once per snapshot into [`Compiled`], indexed by API group and
//! resource, and kept until the policy changes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;

use super::rules::PolicyRule;
use crate::api::authz::Attributes;
use crate::registry::UserInfo;

/// A service account's user name prefix (`system:serviceaccount:NS:NAME`).
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// `roleRef` of a binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRef {
    /// `Role` or `ClusterRole`.
    pub kind: String,
    /// The role's name.
    pub name: String,
}

/// One subject of a binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// `User`, `Group` or `ServiceAccount`.
    pub kind: String,
    /// The name.
    pub name: String,
    /// A service account's namespace ("" defaults to the binding's).
    pub namespace: String,
}

impl Subject {
    /// Upstream's `appliesToUser` in a binding of `namespace`.
    pub fn applies_to(&self, user: &UserInfo, namespace: &str) -> bool {
        match self.kind.as_str() {
            "User" => user.name == self.name,
            "Group" => user.in_group(&self.name),
            "ServiceAccount" => {
                let ns = if self.namespace.is_empty() {
                    namespace
                } else {
                    &self.namespace
                };
                !ns.is_empty() && is_service_account(&user.name, ns, &self.name)
            }
            _ => false,
        }
    }

    /// Upstream's `describeSubject`: `User "alice"`, `ServiceAccount "sa/ns"`.
    fn describe(&self, binding_namespace: &str) -> String {
        if self.kind == "ServiceAccount" {
            let ns = if self.namespace.is_empty() {
                binding_namespace
            } else {
                &self.namespace
            };
            return format!("{} {:?}", self.kind, format!("{}/{ns}", self.name));
        }
        format!("{} {:?}", self.kind, self.name)
    }
}

/// Whether `user` is `system:serviceaccount:NS:NAME`.
fn is_service_account(user: &str, ns: &str, name: &str) -> bool {
    user.strip_prefix(SERVICE_ACCOUNT_PREFIX)
        .and_then(|rest| rest.strip_prefix(ns))
        .and_then(|rest| rest.strip_prefix(':'))
        == Some(name)
}

/// A RoleBinding or ClusterRoleBinding.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The binding's name.
    pub name: String,
    /// Its namespace ("" for a ClusterRoleBinding).
    pub namespace: String,
    /// The role it grants.
    pub role_ref: RoleRef,
    /// Who it grants it to.
    pub subjects: Vec<Subject>,
}

impl Binding {
    /// A binding from its JSON form.
    pub fn from_json(v: &Value) -> Self {
        let s = |p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let subjects = v
            .get("subjects")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|x| Subject {
                        kind: x.get("kind").and_then(Value::as_str).unwrap_or("").into(),
                        name: x.get("name").and_then(Value::as_str).unwrap_or("").into(),
                        namespace: x
                            .get("namespace")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .into(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Binding {
            name: s("/metadata/name"),
            namespace: s("/metadata/namespace"),
            role_ref: RoleRef {
                kind: s("/roleRef/kind"),
                name: s("/roleRef/name"),
            },
            subjects,
        }
    }

    /// The first subject that applies to `user`.
    fn subject_for(&self, user: &UserInfo) -> Option<&Subject> {
        self.subjects
            .iter()
            .find(|s| s.applies_to(user, &self.namespace))
    }

    /// Upstream's binding describers: where an allow came from.
    fn describe(&self, subject: &Subject) -> String {
        if self.namespace.is_empty() {
            format!(
                "ClusterRoleBinding {:?} of {} {:?} to {}",
                self.name,
                self.role_ref.kind,
                self.role_ref.name,
                subject.describe("")
            )
        } else {
            format!(
                "RoleBinding {:?} of {} {:?} to {}",
                format!("{}/{}", self.name, self.namespace),
                self.role_ref.kind,
                self.role_ref.name,
                subject.describe(&self.namespace)
            )
        }
    }
}

/// The rules a user holds in one namespace, in upstream's visiting order,
/// indexed for lookup.
#[derive(Debug, Default)]
pub struct Compiled {
    /// Every rule with where it came from (a binding's description).
    rules: Vec<(Arc<[PolicyRule]>, Arc<str>)>,
    /// (rule set, rule) positions by apiGroup, then resource, of each rule's
    /// explicit entries (two levels, so a lookup borrows the request's strings).
    by_resource: HashMap<String, HashMap<String, Vec<(usize, usize)>>>,
    /// Positions of rules with a `*` group or a `*`/`*/sub` resource.
    wildcard: Vec<(usize, usize)>,
    /// Positions of rules with non-resource URLs.
    non_resource: Vec<(usize, usize)>,
    /// Resolution errors (missing roles), as upstream words them.
    pub errors: Vec<String>,
}

impl Compiled {
    fn add(&mut self, rules: Arc<[PolicyRule]>, source: Arc<str>) {
        let set = self.rules.len();
        for (i, r) in rules.iter().enumerate() {
            if !r.non_resource_urls.is_empty() {
                self.non_resource.push((set, i));
            }
            let wild = r.api_groups.iter().any(|g| g == "*")
                || r.resources.iter().any(|x| x == "*" || x.starts_with("*/"));
            if wild {
                self.wildcard.push((set, i));
                continue;
            }
            for g in &r.api_groups {
                for res in &r.resources {
                    let base = res.split_once('/').map_or(res.as_str(), |(b, _)| b);
                    let slot = self
                        .by_resource
                        .entry(g.clone())
                        .or_default()
                        .entry(base.to_string())
                        .or_default();
                    if slot.last() != Some(&(set, i)) {
                        slot.push((set, i));
                    }
                }
            }
        }
        self.rules.push((rules, source));
    }

    /// The description of the first rule (in visiting order) that allows `a`.
    pub fn first_allowing(&self, a: &Attributes) -> Option<&str> {
        let candidates: Box<dyn Iterator<Item = &(usize, usize)>> = if a.resource_request {
            let exact = self
                .by_resource
                .get(a.api_group.as_str())
                .and_then(|m| m.get(a.resource.as_str()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            Box::new(exact.iter().chain(self.wildcard.iter()))
        } else {
            Box::new(self.non_resource.iter())
        };
        candidates
            .filter(|(set, i)| {
                self.rules
                    .get(*set)
                    .and_then(|(rules, _)| rules.get(*i))
                    .is_some_and(|r| r.allows(a))
            })
            .min()
            .and_then(|(set, _)| self.rules.get(*set))
            .map(|(_, source)| &**source)
    }

    /// Every rule, in visiting order.
    pub fn all_rules(&self) -> impl Iterator<Item = &PolicyRule> {
        self.rules.iter().flat_map(|(rules, _)| rules.iter())
    }
}

/// Which compiled rules a cache entry holds: a user's name and groups in a namespace.
type CompiledKey = (String, Vec<String>, String);

/// Compiled rule sets by the hash of their key (colliding keys share a slot).
type CompiledCache = HashMap<u64, Vec<(CompiledKey, Arc<Compiled>)>>;

/// The cache's hash of a [`CompiledKey`], computed from borrowed parts.
fn key_hash(user: &UserInfo, namespace: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    user.name.hash(&mut h);
    user.groups.hash(&mut h);
    namespace.hash(&mut h);
    h.finish()
}

/// The most compiled rule sets one snapshot keeps before it starts over.
const MAX_COMPILED: usize = 4096;

/// An immutable snapshot of the RBAC objects.
#[derive(Debug, Default)]
pub struct Policy {
    cluster_roles: HashMap<String, Arc<[PolicyRule]>>,
    roles: HashMap<(String, String), Arc<[PolicyRule]>>,
    cluster_bindings: Vec<Binding>,
    bindings: HashMap<String, Vec<Binding>>,
    compiled: RwLock<CompiledCache>,
}

fn rules_of(obj: &Value) -> Arc<[PolicyRule]> {
    PolicyRule::all_from_json(obj.get("rules")).into()
}

fn name_of(obj: &Value) -> (String, String) {
    let s = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    (s("/metadata/namespace"), s("/metadata/name"))
}

impl Policy {
    /// A snapshot of these objects.
    pub fn new(
        cluster_roles: &[Value],
        roles: &[Value],
        cluster_bindings: &[Value],
        bindings: &[Value],
    ) -> Self {
        let mut p = Policy {
            cluster_roles: cluster_roles
                .iter()
                .map(|r| (name_of(r).1, rules_of(r)))
                .collect(),
            roles: roles.iter().map(|r| (name_of(r), rules_of(r))).collect(),
            cluster_bindings: cluster_bindings.iter().map(Binding::from_json).collect(),
            ..Default::default()
        };
        for b in bindings {
            let b = Binding::from_json(b);
            p.bindings.entry(b.namespace.clone()).or_default().push(b);
        }
        // Listers return objects in no particular order; name order makes
        // the reported source stable.
        p.cluster_bindings.sort_by(|a, b| a.name.cmp(&b.name));
        for v in p.bindings.values_mut() {
            v.sort_by(|a, b| a.name.cmp(&b.name));
        }
        p
    }

    /// Upstream's `GetRoleReferenceRules`.
    ///
    /// # Errors
    /// The lister's not-found message, or an unsupported kind.
    pub fn role_ref_rules(
        &self,
        r: &RoleRef,
        namespace: &str,
    ) -> Result<Arc<[PolicyRule]>, String> {
        match r.kind.as_str() {
            "Role" => self
                .roles
                .get(&(namespace.to_string(), r.name.clone()))
                .cloned()
                .ok_or_else(|| format!("role.rbac.authorization.k8s.io {:?} not found", r.name)),
            "ClusterRole" => self.cluster_roles.get(&r.name).cloned().ok_or_else(|| {
                format!(
                    "clusterrole.rbac.authorization.k8s.io {:?} not found",
                    r.name
                )
            }),
            other => Err(format!("unsupported role reference kind: {other:?}")),
        }
    }

    /// The rules `user` holds in `namespace` ("": cluster bindings only),
    /// compiled once per snapshot.
    pub fn compiled(&self, user: &UserInfo, namespace: &str) -> Arc<Compiled> {
        let hash = key_hash(user, namespace);
        let same = |(k, _): &&(CompiledKey, Arc<Compiled>)| {
            k.0 == user.name && k.1 == user.groups && k.2 == namespace
        };
        if let Some(c) = self.compiled.read().ok().and_then(|m| {
            m.get(&hash)
                .and_then(|v| v.iter().find(same))
                .map(|(_, c)| c.clone())
        }) {
            return c;
        }
        let c = Arc::new(self.compile(user, namespace));
        if let Ok(mut m) = self.compiled.write() {
            if m.len() >= MAX_COMPILED {
                m.clear();
            }
            let key = (
                user.name.clone(),
                user.groups.clone(),
                namespace.to_string(),
            );
            m.entry(hash).or_default().push((key, c.clone()));
        }
        c
    }

    fn compile(&self, user: &UserInfo, namespace: &str) -> Compiled {
        let mut c = Compiled::default();
        let namespaced = if namespace.is_empty() {
            &[][..]
        } else {
            self.bindings
                .get(namespace)
                .map(Vec::as_slice)
                .unwrap_or_default()
        };
        for (b, ns) in self
            .cluster_bindings
            .iter()
            .map(|b| (b, ""))
            .chain(namespaced.iter().map(|b| (b, namespace)))
        {
            let Some(subject) = b.subject_for(user) else {
                continue;
            };
            match self.role_ref_rules(&b.role_ref, ns) {
                Ok(rules) => c.add(rules, b.describe(subject).into()),
                Err(e) => c.errors.push(e),
            }
        }
        c
    }

    /// How many bindings the snapshot holds (for logs).
    pub fn binding_count(&self) -> usize {
        self.cluster_bindings.len() + self.bindings.values().map(Vec::len).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> Policy {
        Policy::new(
            &[
                json!({"metadata": {"name": "reader"}, "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]}),
            ],
            &[
                json!({"metadata": {"name": "cm", "namespace": "a"}, "rules": [{"verbs": ["*"], "apiGroups": [""], "resources": ["configmaps"]}]}),
            ],
            &[
                json!({"metadata": {"name": "r"}, "roleRef": {"kind": "ClusterRole", "name": "reader"}, "subjects": [{"kind": "Group", "name": "readers"}]}),
            ],
            &[
                json!({"metadata": {"name": "b", "namespace": "a"}, "roleRef": {"kind": "Role", "name": "cm"}, "subjects": [{"kind": "ServiceAccount", "name": "sa"}]}),
                json!({"metadata": {"name": "c", "namespace": "a"}, "roleRef": {"kind": "Role", "name": "gone"}, "subjects": [{"kind": "User", "name": "system:serviceaccount:a:sa"}]}),
                json!({"metadata": {"name": "d", "namespace": "b"}, "roleRef": {"kind": "ClusterRole", "name": "reader"}, "subjects": [{"kind": "User", "name": "alice"}]}),
            ],
        )
    }

    fn get(user: &UserInfo, ns: &str, resource: &str) -> Attributes {
        Attributes::resource(user.clone(), "get", ns, "", resource, "", "x")
    }

    #[test]
    fn resolution_follows_bindings_as_upstream() {
        let p = policy();
        let sa = UserInfo::new("system:serviceaccount:a:sa", &["readers"]);
        let c = p.compiled(&sa, "a");
        assert_eq!(
            c.first_allowing(&get(&sa, "a", "pods")),
            Some(r#"ClusterRoleBinding "r" of ClusterRole "reader" to Group "readers""#)
        );
        assert_eq!(
            c.first_allowing(&get(&sa, "a", "configmaps")),
            Some(r#"RoleBinding "b/a" of Role "cm" to ServiceAccount "sa/a""#)
        );
        assert_eq!(
            c.errors,
            vec![r#"role.rbac.authorization.k8s.io "gone" not found"#]
        );
        assert!(
            p.compiled(&sa, "b")
                .first_allowing(&get(&sa, "b", "configmaps"))
                .is_none()
        );
        let alice = UserInfo::new("alice", &[]);
        assert!(
            p.compiled(&alice, "")
                .first_allowing(&get(&alice, "", "pods"))
                .is_none()
        );
        assert_eq!(
            p.compiled(&alice, "b")
                .first_allowing(&get(&alice, "b", "pods")),
            Some(r#"RoleBinding "d/b" of ClusterRole "reader" to User "alice""#)
        );
        assert!(!is_service_account(
            "system:serviceaccount:ab:c",
            "a",
            "b:c"
        ));
        assert!(is_service_account("system:serviceaccount:a:b", "a", "b"));
    }
}
