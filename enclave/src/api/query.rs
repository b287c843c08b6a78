//! Query parameters of resource requests, parsed once with clear errors.

use crate::registry::generic::{FieldValidation, Propagation};
use crate::registry::table::IncludeObject;
use crate::registry::{Error, Result};

/// The query parameters resource handlers use.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// `labelSelector`.
    pub label_selector: String,
    /// `fieldSelector`.
    pub field_selector: String,
    /// `limit` (0 = none).
    pub limit: usize,
    /// `continue`.
    pub continue_token: Option<String>,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`.
    pub resource_version_match: Option<String>,
    /// `watch=true|1`.
    pub watch: bool,
    /// `allowWatchBookmarks`.
    pub allow_watch_bookmarks: bool,
    /// `timeoutSeconds`.
    pub timeout_seconds: Option<u64>,
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `fieldValidation`.
    pub field_validation: FieldValidation,
    /// `includeObject`.
    pub include_object: IncludeObject,
    /// `propagationPolicy` (DELETE).
    pub propagation: Option<Propagation>,
    /// `gracePeriodSeconds` (DELETE).
    pub grace_period_seconds: Option<i64>,
    /// `fieldManager` (writes).
    pub field_manager: Option<String>,
    /// `force` (apply patches only).
    pub force: Option<bool>,
}

fn boolean(k: &str, v: &str) -> Result<bool> {
    match v {
        "true" | "1" | "True" | "" => Ok(true),
        "false" | "0" | "False" => Ok(false),
        _ => Err(Error::BadRequest(format!(
            "invalid boolean value {v:?} for parameter {k}"
        ))),
    }
}

/// Parses `propagationPolicy`.
pub fn propagation(v: &str) -> Result<Propagation> {
    match v {
        "Background" => Ok(Propagation::Background),
        "Foreground" => Ok(Propagation::Foreground),
        "Orphan" => Ok(Propagation::Orphan),
        other => Err(Error::BadRequest(format!(
            "propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
        ))),
    }
}

impl Query {
    /// Parses decoded query pairs. Unknown parameters are ignored, as upstream does.
    ///
    /// # Errors
    /// 400 BadRequest for malformed values.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self> {
        let mut q = Query::default();
        for (k, v) in pairs {
            match k.as_str() {
                "labelSelector" => q.label_selector = v.clone(),
                "fieldSelector" => q.field_selector = v.clone(),
                "limit" => {
                    let n: i64 = v.parse().map_err(|_| {
                        Error::BadRequest(format!("invalid value {v:?} for parameter limit"))
                    })?;
                    q.limit = usize::try_from(n.max(0)).unwrap_or(0);
                }
                "continue" => q.continue_token = Some(v.clone()),
                "resourceVersion" => q.resource_version = Some(v.clone()),
                "resourceVersionMatch" => q.resource_version_match = Some(v.clone()),
                "watch" => q.watch = boolean(k, v)?,
                "allowWatchBookmarks" => q.allow_watch_bookmarks = boolean(k, v)?,
                "timeoutSeconds" => {
                    q.timeout_seconds = Some(v.parse().map_err(|_| {
                        Error::BadRequest(format!(
                            "invalid value {v:?} for parameter timeoutSeconds"
                        ))
                    })?)
                }
                "dryRun" => match v.as_str() {
                    "All" => q.dry_run = true,
                    "" => {}
                    other => {
                        return Err(Error::BadRequest(format!(
                            "dryRun: Unsupported value: {other:?}: supported values: \"All\""
                        )));
                    }
                },
                "fieldValidation" => {
                    q.field_validation = match v.as_str() {
                        "Strict" => FieldValidation::Strict,
                        "Warn" | "" => FieldValidation::Warn,
                        "Ignore" => FieldValidation::Ignore,
                        other => {
                            return Err(Error::BadRequest(format!(
                                "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
                            )));
                        }
                    }
                }
                "includeObject" => {
                    q.include_object = match v.as_str() {
                        "Metadata" | "" => IncludeObject::Metadata,
                        "Object" => IncludeObject::Object,
                        "None" => IncludeObject::None,
                        other => {
                            return Err(Error::BadRequest(format!(
                                "includeObject: Unsupported value: {other:?}: supported values: \"Metadata\", \"None\", \"Object\""
                            )));
                        }
                    }
                }
                "propagationPolicy" => q.propagation = Some(propagation(v)?),
                "gracePeriodSeconds" => {
                    q.grace_period_seconds = Some(v.parse().map_err(|_| {
                        Error::BadRequest(format!(
                            "invalid value {v:?} for parameter gracePeriodSeconds"
                        ))
                    })?)
                }
                "fieldManager" => q.field_manager = Some(v.clone()),
                "force" => q.force = Some(boolean(k, v)?),
                _ => {}
            }
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &[(&str, &str)]) -> Result<Query> {
        Query::parse(
            &s.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn parses_and_rejects() {
        let q = p(&[("limit", "500"), ("watch", "true"), ("dryRun", "All")]).unwrap();
        assert_eq!((q.limit, q.watch, q.dry_run), (500, true, true));
        for bad in [
            ("limit", "x"),
            ("watch", "maybe"),
            ("dryRun", "Some"),
            ("fieldValidation", "Loud"),
            ("propagationPolicy", "Now"),
        ] {
            assert_eq!(p(&[bad]).unwrap_err().code(), 400, "{bad:?}");
        }
    }
}
