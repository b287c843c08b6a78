//! The authorization reviews, answered from the real authorizer chain:
//! SubjectAccessReview (any user, `kubectl auth can-i --as` uses the
//! self-review under impersonation instead), LocalSubjectAccessReview (one
//! namespace), SelfSubjectAccessReview (`kubectl auth can-i`) and
//! SelfSubjectRulesReview (`kubectl auth can-i --list`), as upstream's
//! `pkg/registry/authorization`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{Attributes, AuthorizerChain, Decision, PolicyRule};
use crate::registry::{Error, Result, UserInfo};

/// Which review a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Review {
    /// `subjectaccessreviews`: the user is in the spec.
    Subject,
    /// `localsubjectaccessreviews`: the user is in the spec; one namespace.
    LocalSubject,
    /// `selfsubjectaccessreviews`: the requesting user.
    SelfSubject,
    /// `selfsubjectrulesreviews`: the requesting user's rules in a namespace.
    SelfRules,
}

impl Review {
    /// The review served as `resource`, if it is one of these.
    pub fn of(group: &str, resource: &str) -> Option<Self> {
        if group != "authorization.k8s.io" {
            return None;
        }
        match resource {
            "subjectaccessreviews" => Some(Review::Subject),
            "localsubjectaccessreviews" => Some(Review::LocalSubject),
            "selfsubjectaccessreviews" => Some(Review::SelfSubject),
            "selfsubjectrulesreviews" => Some(Review::SelfRules),
            _ => None,
        }
    }
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// The user a SubjectAccessReview's spec names (its groups as given: no
/// `system:authenticated` is added, as upstream).
fn spec_user(spec: &Value) -> UserInfo {
    let list = |k: &str| crate::registry::meta::string_list(spec.get(k));
    let extra: BTreeMap<String, Vec<String>> = spec
        .get("extra")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let vals = v
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default();
                    (k.clone(), vals)
                })
                .collect()
        })
        .unwrap_or_default();
    UserInfo {
        name: s(spec, "/user").to_string(),
        groups: list("groups"),
        uid: s(spec, "/uid").to_string(),
        extra,
    }
}

/// Upstream's `AuthorizationAttributesFrom`.
fn attributes(user: UserInfo, spec: &Value) -> Attributes {
    if let Some(r) = spec.get("resourceAttributes").filter(|v| v.is_object()) {
        let mut a = Attributes::resource(
            user,
            s(r, "/verb"),
            s(r, "/namespace"),
            s(r, "/group"),
            s(r, "/resource"),
            s(r, "/subresource"),
            s(r, "/name"),
        );
        a.api_version = s(r, "/version").to_string();
        a.field_selector = s(r, "/fieldSelector/rawSelector").to_string();
        return a;
    }
    let n = spec.get("nonResourceAttributes").unwrap_or(&Value::Null);
    Attributes::non_resource(user, s(n, "/verb"), s(n, "/path"))
}

fn bad_spec(kind: &str, causes: Vec<crate::registry::FieldError>) -> Error {
    Error::Invalid {
        kind: kind.to_string(),
        group: "authorization.k8s.io".into(),
        name: String::new(),
        causes,
    }
}

/// Answers a SubjectAccessReview, LocalSubjectAccessReview or
/// SelfSubjectAccessReview `obj` (already validated by its strategy) for
/// `requester`, posted in `namespace` (local reviews only).
///
/// # Errors
/// 422 for a subject review without a user or group, 400 for a local
/// review whose namespaces disagree.
pub async fn access_review(
    chain: &AuthorizerChain,
    review: Review,
    obj: &Value,
    requester: &UserInfo,
    namespace: Option<&str>,
) -> Result<Value> {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let user = match review {
        Review::SelfSubject => requester.clone(),
        Review::Subject | Review::LocalSubject => {
            let u = spec_user(spec);
            if u.name.is_empty() && u.groups.is_empty() {
                let kind = if review == Review::Subject {
                    "SubjectAccessReview"
                } else {
                    "LocalSubjectAccessReview"
                };
                return Err(bad_spec(
                    kind,
                    vec![crate::registry::FieldError::invalid(
                        "spec.user",
                        "",
                        "at least one of user or group must be specified",
                    )],
                ));
            }
            u
        }
        Review::SelfRules => return Err(Error::BadRequest("not an access review".into())),
    };
    if review == Review::LocalSubject {
        let ns = namespace.unwrap_or("");
        if ns.is_empty() {
            return Err(Error::BadRequest(format!(
                "namespace is required on this type: {ns}"
            )));
        }
        let want = s(obj, "/metadata/namespace");
        if !want.is_empty() && want != ns {
            return Err(Error::BadRequest("the namespace of the provided object does not match the namespace sent on the request".to_string()));
        }
        if s(spec, "/resourceAttributes/namespace") != ns {
            return Err(bad_spec(
                "LocalSubjectAccessReview",
                vec![crate::registry::FieldError::invalid(
                    "spec.resourceAttributes.namespace",
                    s(spec, "/resourceAttributes/namespace"),
                    "must match metadata.namespace",
                )],
            ));
        }
    }
    let a = attributes(user, spec);
    let v = chain.authorize(&a).await;
    let mut status = Map::new();
    status.insert("allowed".into(), json!(v.decision == Decision::Allow));
    if v.decision == Decision::Deny {
        status.insert("denied".into(), json!(true));
    }
    if !v.reason.is_empty() {
        status.insert("reason".into(), json!(v.reason));
    }
    let mut out = obj.clone();
    if review == Review::LocalSubject
        && let Some(m) = out.get_mut("metadata").and_then(Value::as_object_mut)
    {
        m.insert("namespace".into(), json!(namespace.unwrap_or("")));
    }
    out["status"] = Value::Object(status);
    Ok(out)
}

fn resource_rule(r: &PolicyRule) -> Value {
    let mut m = Map::new();
    m.insert("verbs".into(), json!(r.verbs));
    for (k, v) in [
        ("apiGroups", &r.api_groups),
        ("resources", &r.resources),
        ("resourceNames", &r.resource_names),
    ] {
        if !v.is_empty() {
            m.insert(k.into(), json!(v));
        }
    }
    Value::Object(m)
}

/// Answers a SelfSubjectRulesReview `obj` for `requester`.
pub async fn rules_review(chain: &AuthorizerChain, obj: &Value, requester: &UserInfo) -> Value {
    let ns = s(obj, "/spec/namespace");
    let rules = chain.rules_for(requester, ns).await;
    let mut status = Map::new();
    status.insert(
        "resourceRules".into(),
        Value::Array(rules.resource_rules.iter().map(resource_rule).collect()),
    );
    status.insert(
        "nonResourceRules".into(),
        Value::Array(
            rules
                .non_resource_rules
                .iter()
                .map(|r| json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}))
                .collect(),
        ),
    );
    status.insert("incomplete".into(), json!(rules.incomplete));
    match rules.errors.as_slice() {
        [] => {}
        [one] => {
            status.insert("evaluationError".into(), json!(one));
        }
        many => {
            status.insert(
                "evaluationError".into(),
                json!(format!("[{}]", many.join(", "))),
            );
        }
    }
    let mut out = obj.clone();
    out["status"] = Value::Object(status);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn reviews_use_the_chain() {
        let chain = AuthorizerChain::new().with(Arc::new(super::super::PrivilegedGroup::new(
            "system:masters",
        )));
        let me = UserInfo::new("me", &["system:authenticated"]);
        let sar = json!({"spec": {"user": "x", "groups": ["system:masters"], "resourceAttributes": {"verb": "get", "resource": "pods"}}});
        let out = access_review(&chain, Review::Subject, &sar, &me, None)
            .await
            .unwrap();
        assert_eq!(out["status"], json!({"allowed": true}));
        let ssar = json!({"spec": {"nonResourceAttributes": {"verb": "get", "path": "/x"}}});
        let out = access_review(&chain, Review::SelfSubject, &ssar, &me, None)
            .await
            .unwrap();
        assert_eq!(out["status"], json!({"allowed": false}));
        let empty = json!({"spec": {"resourceAttributes": {"verb": "get"}}});
        assert!(
            access_review(&chain, Review::Subject, &empty, &me, None)
                .await
                .is_err()
        );
        let local =
            json!({"spec": {"user": "x", "resourceAttributes": {"namespace": "a", "verb": "get"}}});
        assert!(
            access_review(&chain, Review::LocalSubject, &local, &me, Some("b"))
                .await
                .is_err()
        );
        assert!(
            access_review(&chain, Review::LocalSubject, &local, &me, Some("a"))
                .await
                .is_ok()
        );
        let rules = rules_review(
            &chain,
            &json!({"spec": {"namespace": "a"}}),
            &UserInfo::new("a", &["system:masters"]),
        )
        .await;
        assert_eq!(rules["status"]["resourceRules"][0]["verbs"], json!(["*"]));
        assert_eq!(rules["status"]["incomplete"], false);
    }
}
