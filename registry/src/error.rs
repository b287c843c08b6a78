//! The registry's error type. Every variant maps to one Kubernetes
//! `metav1.Status` (code, reason, message); [`Error::to_status`] renders it.

use serde_json::{Value, json};

use store::StoreError;

/// One invalid field, reported in `details.causes` of a 422 Invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Upstream cause type, e.g. `FieldValueRequired`, `FieldValueInvalid`.
    pub reason: &'static str,
    /// The field path, e.g. `metadata.name`.
    pub field: String,
    /// Human-readable message, already formatted like upstream's.
    pub message: String,
}

impl FieldError {
    /// The message without its leading `field: `, as upstream's
    /// `ErrorBody` puts it in `details.causes` (kubectl prefixes the field).
    pub fn body(&self) -> &str {
        self.message
            .strip_prefix(self.field.as_str())
            .and_then(|m| m.strip_prefix(": "))
            .unwrap_or(&self.message)
    }

    /// The same error about a field of the object at `prefix` (a PersistentVolumeClaim
    /// checked as a StatefulSet's `spec.volumeClaimTemplates[0]`, say).
    #[must_use]
    pub fn under(self, prefix: &str) -> Self {
        let field = format!("{prefix}.{}", self.field);
        FieldError {
            reason: self.reason,
            message: format!("{prefix}.{}", self.message),
            field,
        }
    }

    /// `field: Required value: detail` (just `Required value` without a detail).
    pub fn required(field: impl Into<String>, detail: &str) -> Self {
        let field = field.into();
        let message = if detail.is_empty() {
            format!("{field}: Required value")
        } else {
            format!("{field}: Required value: {detail}")
        };
        FieldError {
            reason: "FieldValueRequired",
            message,
            field,
        }
    }

    /// `field: Invalid value: "value": detail`.
    pub fn invalid(field: impl Into<String>, value: &str, detail: &str) -> Self {
        let field = field.into();
        FieldError {
            reason: "FieldValueInvalid",
            message: format!("{field}: Invalid value: {value:?}: {detail}"),
            field,
        }
    }

    /// `field: Invalid value: 5: detail`: a number, unquoted as upstream prints it.
    pub fn invalid_int(field: impl Into<String>, value: i64, detail: &str) -> Self {
        let field = field.into();
        FieldError {
            reason: "FieldValueInvalid",
            message: format!("{field}: Invalid value: {value}: {detail}"),
            field,
        }
    }

    /// `field: Duplicate value: "value"`.
    pub fn duplicate(field: impl Into<String>, value: &str) -> Self {
        let field = field.into();
        FieldError {
            reason: "FieldValueDuplicate",
            message: format!("{field}: Duplicate value: {value:?}"),
            field,
        }
    }

    /// `field: Too many: n: must have at most max items`.
    pub fn too_many(field: impl Into<String>, n: usize, max: usize) -> Self {
        let field = field.into();
        FieldError {
            reason: "FieldValueTooMany",
            message: format!("{field}: Too many: {n}: must have at most {max} items"),
            field,
        }
    }

    /// `field: Invalid value: <value>: field is immutable`.
    pub fn immutable(field: impl Into<String>, value: &Value) -> Self {
        let field = field.into();
        FieldError {
            reason: "FieldValueInvalid",
            message: format!("{field}: Invalid value: {value}: field is immutable"),
            field,
        }
    }
}

/// What went wrong with a request, in Kubernetes terms.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// 404 NotFound for an object: `configmaps "x" not found`.
    #[error("{qualified} {name:?} not found")]
    NotFound {
        /// `resource[.group]`.
        qualified: String,
        /// Group (empty for core).
        group: String,
        /// Resource name (plural).
        resource: String,
        /// Object name.
        name: String,
    },
    /// 409 AlreadyExists on create.
    #[error("{qualified} {name:?} already exists")]
    AlreadyExists {
        /// `resource[.group]`.
        qualified: String,
        /// Group (empty for core).
        group: String,
        /// Resource name (plural).
        resource: String,
        /// Object name.
        name: String,
    },
    /// 409 Conflict: optimistic concurrency or a failed precondition.
    #[error("{message}")]
    Conflict {
        /// Group (empty for core).
        group: String,
        /// Resource name (plural).
        resource: String,
        /// Object name.
        name: String,
        /// The full upstream-style message.
        message: String,
    },
    /// 422 Invalid with per-field causes.
    #[error("{kind} {name:?} is invalid")]
    Invalid {
        /// The kind, e.g. `ConfigMap`.
        kind: String,
        /// Group (empty for core).
        group: String,
        /// Object name (may be empty).
        name: String,
        /// The invalid fields.
        causes: Vec<FieldError>,
    },
    /// 409 Conflict of a server-side apply: fields other managers own.
    #[error("{message}")]
    ApplyConflict {
        /// `Apply failed with N conflict(s): …`, as upstream words it.
        message: String,
        /// One per conflicting field, for `details.causes`.
        conflicts: Vec<super::managed::Conflict>,
    },
    /// 422 Invalid request options, e.g. an apply patch without a
    /// `fieldManager`: `PatchOptions.meta.k8s.io "" is invalid: …`.
    #[error("{kind}.meta.k8s.io \"\" is invalid: {}", causes.iter().map(|c| c.message.as_str()).collect::<Vec<_>>().join(", "))]
    InvalidOptions {
        /// `PatchOptions`, `CreateOptions` or `UpdateOptions`.
        kind: &'static str,
        /// The invalid options.
        causes: Vec<FieldError>,
    },
    /// 400 BadRequest: malformed body, selector or parameter.
    #[error("{0}")]
    BadRequest(String),
    /// 403 Forbidden, e.g. creating in a terminating namespace.
    #[error("{message}")]
    Forbidden {
        /// The full message.
        message: String,
    },
    /// 403 Forbidden about one object, worded as upstream's `NewForbidden`
    /// (admission refusals): `namespaces "default" is forbidden: this
    /// namespace may not be deleted`.
    #[error("{}", forbidden_message(qualified, name, why))]
    ForbiddenObject {
        /// `resource[.group]`.
        qualified: String,
        /// Group (empty for core).
        group: String,
        /// Resource name (plural).
        resource: String,
        /// Object name (may be empty).
        name: String,
        /// Why, e.g. `this namespace may not be deleted`.
        why: String,
    },
    /// A ValidatingAdmissionPolicy's denial, worded as upstream's `NewForbidden` but with the
    /// validation's reason (`Invalid` unless it names one) and its code, and the cause
    /// repeated in `details.causes`.
    #[error("{}", forbidden_message(&qualified(group, resource), name, cause))]
    PolicyDenied {
        /// Group (empty for core).
        group: String,
        /// Resource name (plural).
        resource: String,
        /// Object name (may be empty).
        name: String,
        /// `ValidatingAdmissionPolicy 'P' with binding 'B' denied request: ...`.
        cause: String,
        /// `Invalid`, `Forbidden`, `Unauthorized` or `RequestEntityTooLarge`.
        reason: &'static str,
    },
    /// 429 TooManyRequests, e.g. an eviction a disruption budget forbids.
    #[error("{message}")]
    TooManyRequests {
        /// The message.
        message: String,
        /// `details.causes` as (reason, message) pairs.
        causes: Vec<(String, String)>,
        /// `details.retryAfterSeconds` and the `Retry-After` header (0: none).
        retry_after_seconds: u32,
    },
    /// 410 Expired: a resourceVersion or continue token that was compacted.
    #[error("{0}")]
    Expired(String),
    /// 413 RequestEntityTooLarge.
    #[error("{0}")]
    TooLarge(String),
    /// 405 MethodNotAllowed: the resource does not support the verb.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 415 UnsupportedMediaType.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 504 Timeout: e.g. a resourceVersion newer than the store's.
    #[error("{0}")]
    Timeout(String),
    /// The answer of an admission webhook: a denial with the webhook's code and reason, or a
    /// call that failed under `failurePolicy: Fail` (500 InternalError).
    #[error("{message}")]
    Admission {
        /// The HTTP code (at least 400).
        code: u16,
        /// The `metav1.StatusReason` (may be empty, as a webhook may leave it).
        reason: String,
        /// The full message.
        message: String,
    },
    /// 500 InternalError: the store failed.
    /// (The cause is part of the message, so it is not also the `source`: `{:#}` chains would repeat it.)
    #[error("store: {0}")]
    Store(StoreError),
}

/// `resource.group`, or `resource` for the core group.
fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

/// `details` naming one object as upstream's `NewForbidden` does (empty name and group left
/// out).
fn object_details(group: &str, resource: &str, name: &str) -> serde_json::Map<String, Value> {
    let mut d = serde_json::Map::new();
    if !name.is_empty() {
        d.insert("name".into(), json!(name));
    }
    if !group.is_empty() {
        d.insert("group".into(), json!(group));
    }
    d.insert("kind".into(), json!(resource));
    d
}

/// upstream's `NewForbidden` message: `resource "name" is forbidden: why`.
fn forbidden_message(qualified: &str, name: &str, why: &str) -> String {
    if name.is_empty() {
        format!("{qualified} is forbidden: {why}")
    } else {
        format!("{qualified} {name:?} is forbidden: {why}")
    }
}

/// Result alias for registry operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Compacted { .. } => {
                Error::Expired("The resourceVersion for the provided list is too old.".to_string())
            }
            StoreError::ValueTooLarge { .. } => {
                Error::TooLarge("Request entity too large: limit is 3145728".to_string())
            }
            StoreError::InvalidContinue(why) => {
                Error::BadRequest(format!("invalid continue token: {why}"))
            }
            other => Error::Store(other),
        }
    }
}

impl Error {
    /// Upstream's `NewForbidden(resource.group, name, err)`.
    pub fn forbidden(group: &str, resource: &str, name: &str, err: &str) -> Self {
        let qualified = if group.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}.{group}")
        };
        Error::ForbiddenObject {
            qualified,
            group: group.to_string(),
            resource: resource.to_string(),
            name: name.to_string(),
            why: err.to_string(),
        }
    }

    /// A ValidatingAdmissionPolicy's denial of a request about `resource` (of `group`)
    /// named `name`: `cause` is the policy's sentence, `reason` the validation's (upstream
    /// allows four; anything else, and none, is `Invalid`).
    pub fn policy_denied(
        group: &str,
        resource: &str,
        name: &str,
        cause: String,
        reason: &str,
    ) -> Self {
        let reason = match reason {
            "Forbidden" => "Forbidden",
            "Unauthorized" => "Unauthorized",
            "RequestEntityTooLarge" => "RequestEntityTooLarge",
            _ => "Invalid",
        };
        Error::PolicyDenied {
            group: group.to_string(),
            resource: resource.to_string(),
            name: name.to_string(),
            cause,
            reason,
        }
    }

    /// The HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            Error::NotFound { .. } => 404,
            Error::AlreadyExists { .. } | Error::Conflict { .. } | Error::ApplyConflict { .. } => {
                409
            }
            Error::Invalid { .. } | Error::InvalidOptions { .. } => 422,
            Error::BadRequest(_) => 400,
            Error::Forbidden { .. } | Error::ForbiddenObject { .. } => 403,
            Error::TooManyRequests { .. } => 429,
            Error::Expired(_) => 410,
            Error::TooLarge(_) => 413,
            Error::MethodNotAllowed(_) => 405,
            Error::UnsupportedMediaType(_) => 415,
            Error::Timeout(_) => 504,
            Error::Admission { code, .. } => *code,
            // upstream's reasonToCode
            Error::PolicyDenied { reason, .. } => match *reason {
                "Forbidden" => 403,
                "Unauthorized" => 401,
                "RequestEntityTooLarge" => 413,
                _ => 422,
            },
            Error::Store(_) => 500,
        }
    }

    /// The `metav1.StatusReason`.
    pub fn reason(&self) -> &str {
        match self {
            Error::NotFound { .. } => "NotFound",
            Error::AlreadyExists { .. } => "AlreadyExists",
            Error::Conflict { .. } | Error::ApplyConflict { .. } => "Conflict",
            Error::Invalid { .. } | Error::InvalidOptions { .. } => "Invalid",
            Error::BadRequest(_) => "BadRequest",
            Error::Forbidden { .. } | Error::ForbiddenObject { .. } => "Forbidden",
            Error::TooManyRequests { .. } => "TooManyRequests",
            Error::Expired(_) => "Expired",
            Error::TooLarge(_) => "RequestEntityTooLarge",
            Error::MethodNotAllowed(_) => "MethodNotAllowed",
            Error::UnsupportedMediaType(_) => "UnsupportedMediaType",
            Error::Timeout(_) => "Timeout",
            Error::Admission { reason, .. } => reason,
            Error::PolicyDenied { reason, .. } => reason,
            Error::Store(_) => "InternalError",
        }
    }

    /// The message shown to users, as upstream words it.
    pub fn message(&self) -> String {
        match self {
            Error::Invalid {
                kind, name, causes, ..
            } => {
                let list: Vec<&str> = causes.iter().map(|c| c.message.as_str()).collect();
                match list.len() {
                    0 => format!("{kind} {name:?} is invalid"),
                    1 => format!("{kind} {name:?} is invalid: {}", list.join("")),
                    _ => format!("{kind} {name:?} is invalid: [{}]", list.join(", ")),
                }
            }
            Error::Forbidden { message } => message.clone(),
            other => other.to_string(),
        }
    }

    /// The `metav1.Status` JSON body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message(),
            "reason": self.reason(),
            "code": self.code(),
        });
        let details = match self {
            Error::NotFound {
                group,
                resource,
                name,
                ..
            }
            | Error::AlreadyExists {
                group,
                resource,
                name,
                ..
            }
            | Error::Conflict {
                group,
                resource,
                name,
                ..
            } => Some(json!({"name": name, "group": group, "kind": resource})),
            Error::Invalid {
                kind,
                group,
                name,
                causes,
            } => Some(json!({
                "name": name,
                "group": group,
                "kind": kind,
                "causes": causes.iter().map(|c| json!({
                    "reason": c.reason, "message": c.body(), "field": c.field,
                })).collect::<Vec<_>>(),
            })),
            Error::ApplyConflict { conflicts, .. } => Some(json!({
                "causes": conflicts.iter().map(|c| json!({
                    // StatusCause's type is written as `reason`.
                    "reason": "FieldManagerConflict",
                    "message": format!("conflict with {}", c.manager),
                    "field": c.field,
                })).collect::<Vec<_>>(),
            })),
            Error::InvalidOptions { kind, causes } => Some(json!({
                "group": "meta.k8s.io",
                "kind": kind,
                "causes": causes.iter().map(|c| json!({
                    "reason": c.reason, "message": c.body(), "field": c.field,
                })).collect::<Vec<_>>(),
            })),
            Error::ForbiddenObject {
                group,
                resource,
                name,
                ..
            } => Some(Value::Object(object_details(group, resource, name))),
            Error::PolicyDenied {
                group,
                resource,
                name,
                cause,
                ..
            } => {
                let mut d = object_details(group, resource, name);
                d.insert("causes".into(), json!([{"message": cause}]));
                Some(Value::Object(d))
            }
            Error::TooManyRequests {
                causes,
                retry_after_seconds,
                ..
            } => {
                let mut d = serde_json::Map::new();
                if !causes.is_empty() {
                    let causes: Vec<Value> = causes
                        .iter()
                        .map(|(reason, message)| json!({"reason": reason, "message": message}))
                        .collect();
                    d.insert("causes".into(), Value::Array(causes));
                }
                if *retry_after_seconds > 0 {
                    d.insert("retryAfterSeconds".into(), json!(retry_after_seconds));
                }
                Some(Value::Object(d))
            }
            _ => None,
        };
        if let (Some(d), Some(obj)) = (details, status.as_object_mut()) {
            obj.insert("details".to_string(), d);
        }
        status
    }
}
