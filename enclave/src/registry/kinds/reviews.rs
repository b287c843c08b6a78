//! The self-subject reviews: authentication.k8s.io `selfsubjectreviews`
//! (v1, and v1beta1 for kubectl 1.27's `auth whoami`) and
//! authorization.k8s.io/v1 `selfsubjectaccessreviews` and
//! `selfsubjectrulesreviews` (`auth can-i [--list]`). They are create-only
//! and never stored: a create is answered for the requesting user.
//!
//! No authorization is enforced yet, so every authenticated user may do
//! everything; the answers say so in their `reason`.

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::authorization::v1::{SelfSubjectAccessReview, SelfSubjectRulesReview};
use serde_json::{Value, json};

use super::typed;
use crate::registry::table::{Column, name_cell};
use crate::registry::{Canonical, FieldError, NameRule, Strategy, UserInfo};

/// Every authenticated user's group, as upstream's authenticators add it.
const AUTHENTICATED: &str = "system:authenticated";

/// Why every review allows everything.
pub(crate) const ALLOW_ALL_REASON: &str =
    "no authorization is enforced yet: every authenticated user is allowed";

fn groups(user: &UserInfo) -> Vec<String> {
    let mut g = user.groups.clone();
    if !g.iter().any(|x| x == AUTHENTICATED) {
        g.push(AUTHENTICATED.into());
    }
    g
}

/// Reviews have no name; everything else about them is answered.
fn review_columns() -> Vec<Column> {
    vec![Column::NAME]
}

/// `selfsubjectreviews`, in either served version.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SelfSubjectReviews {
    /// authentication.k8s.io/v1.
    V1,
    /// authentication.k8s.io/v1beta1 (same shape as v1).
    V1Beta1,
}

impl SelfSubjectReviews {
    fn api_version(self) -> &'static str {
        match self {
            SelfSubjectReviews::V1 => "authentication.k8s.io/v1",
            SelfSubjectReviews::V1Beta1 => "authentication.k8s.io/v1beta1",
        }
    }
}

impl Strategy for SelfSubjectReviews {
    fn canonicalize(&self, obj: &Value) -> Result<Canonical, String> {
        // k8s-openapi only has the v1 type; v1beta1 has the same fields.
        let mut as_v1 = obj.clone();
        as_v1["apiVersion"] = json!("authentication.k8s.io/v1");
        let mut c = crate::registry::typed::roundtrip::<SelfSubjectReview>(&as_v1)?;
        c.value["apiVersion"] = json!(self.api_version());
        Ok(c)
    }
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
    fn columns(&self) -> Vec<Column> {
        review_columns()
    }
    fn cells(&self, obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
        vec![name_cell(obj)]
    }
    fn answer(&self, obj: &Value, user: &UserInfo) -> Option<Value> {
        let mut out = obj.clone();
        out["status"] = json!({"userInfo": {"username": user.name, "groups": groups(user)}});
        Some(out)
    }
}

/// `selfsubjectaccessreviews`: may the requesting user do this?
#[derive(Debug)]
pub(crate) struct SelfSubjectAccessReviews;

impl Strategy for SelfSubjectAccessReviews {
    typed!(SelfSubjectAccessReview);
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let set = |p: &str| obj.pointer(p).is_some_and(|v| !v.is_null());
        let resource = set("/spec/resourceAttributes");
        let non_resource = set("/spec/nonResourceAttributes");
        if resource == non_resource {
            let what = if resource {
                "cannot be specified in combination with resourceAttributes"
            } else {
                "exactly one of nonResourceAttributes or resourceAttributes must be specified"
            };
            let field = if resource {
                "spec.nonResourceAttributes"
            } else {
                "spec.resourceAttributes"
            };
            return vec![FieldError::invalid(
                field,
                &obj.get("spec").map(Value::to_string).unwrap_or_default(),
                what,
            )];
        }
        Vec::new()
    }
    fn columns(&self) -> Vec<Column> {
        review_columns()
    }
    fn cells(&self, obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
        vec![name_cell(obj)]
    }
    fn answer(&self, obj: &Value, _user: &UserInfo) -> Option<Value> {
        let mut out = obj.clone();
        out["status"] = json!({"allowed": true, "reason": ALLOW_ALL_REASON});
        Some(out)
    }
}

/// `selfsubjectrulesreviews`: everything the requesting user may do in a namespace.
#[derive(Debug)]
pub(crate) struct SelfSubjectRulesReviews;

impl Strategy for SelfSubjectRulesReviews {
    typed!(SelfSubjectRulesReview);
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let ns = obj
            .pointer("/spec/namespace")
            .and_then(Value::as_str)
            .unwrap_or("");
        if ns.is_empty() {
            return vec![FieldError::required("spec.namespace", "")];
        }
        Vec::new()
    }
    fn columns(&self) -> Vec<Column> {
        review_columns()
    }
    fn cells(&self, obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
        vec![name_cell(obj)]
    }
    fn answer(&self, obj: &Value, _user: &UserInfo) -> Option<Value> {
        let mut out = obj.clone();
        out["status"] = json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
            "evaluationError": ALLOW_ALL_REASON,
        });
        Some(out)
    }
}
