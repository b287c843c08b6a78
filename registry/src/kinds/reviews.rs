//! The reviews: authentication.k8s.io `selfsubjectreviews` (v1, and
//! v1beta1 for kubectl 1.27's `auth whoami`) and `tokenreviews`, and
//! authorization.k8s.io/v1 `subjectaccessreviews`,
//! `localsubjectaccessreviews`, `selfsubjectaccessreviews` and
//! `selfsubjectrulesreviews` (`auth can-i [--list]`). They are create-only
//! and never stored. Whoami is answered here for the requesting user; the
//! others need the authenticator or the authorizer, and the API server
//! answers them (`crate::api::authz::reviews`).

use k8s_openapi::api::authentication::v1::{SelfSubjectReview, TokenReview};
use k8s_openapi::api::authorization::v1::{
    LocalSubjectAccessReview, SelfSubjectAccessReview, SelfSubjectRulesReview, SubjectAccessReview,
};
use serde_json::{Value, json};

use super::typed;
use crate::table::{Column, name_cell};
use crate::{Canonical, FieldError, NameRule, Strategy, UserInfo};

/// A user as `status.userInfo` and TokenReview's `status.user` show it.
pub fn user_info_json(user: &UserInfo) -> Value {
    let mut u = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        u["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        u["extra"] = json!(user.extra);
    }
    u
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
        let mut c = crate::typed::roundtrip::<SelfSubjectReview>(&as_v1)?;
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
        out["status"] = json!({"userInfo": user_info_json(user)});
        Some(out)
    }
}

/// Exactly one of `resourceAttributes` and `nonResourceAttributes`.
fn validate_access_review(obj: &Value) -> Vec<FieldError> {
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

/// Implements an access review kind's strategy: validation, and no answer
/// of its own (the API server answers with the authorizer).
macro_rules! access_review {
    ($name:ident, $t:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug)]
        pub(crate) struct $name;

        impl Strategy for $name {
            typed!($t);
            fn name_rule(&self) -> NameRule {
                NameRule::PathSegment
            }
            fn validate(&self, obj: &Value) -> Vec<FieldError> {
                validate_access_review(obj)
            }
            fn columns(&self) -> Vec<Column> {
                review_columns()
            }
            fn cells(&self, obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
                vec![name_cell(obj)]
            }
        }
    };
}

access_review!(
    SelfSubjectAccessReviews,
    SelfSubjectAccessReview,
    "`selfsubjectaccessreviews`: may the requesting user do this?"
);
access_review!(
    SubjectAccessReviews,
    SubjectAccessReview,
    "`subjectaccessreviews`: may this user do this?"
);
access_review!(
    LocalSubjectAccessReviews,
    LocalSubjectAccessReview,
    "`localsubjectaccessreviews`: may this user do this in this namespace?"
);

/// `tokenreviews`: who does this token stand for?
#[derive(Debug)]
pub(crate) struct TokenReviews;

impl Strategy for TokenReviews {
    typed!(TokenReview);
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
    fn columns(&self) -> Vec<Column> {
        review_columns()
    }
    fn cells(&self, obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
        vec![name_cell(obj)]
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
}
