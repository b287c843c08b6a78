//! Request-body checks shared by create, update and patch: apiVersion and
//! kind, typed decoding with `fieldValidation`, namespace placement, and
//! the validation every kind gets.

use serde_json::Value;

use super::ObjectStore;
use super::write::FieldValidation;
use crate::registry::{Canonical, Error, FieldError, ResourceInfo, Result, meta};

impl ObjectStore {
    /// Checks apiVersion and kind, decodes through the typed struct and
    /// applies `fieldValidation`. Returns the canonical object and warnings.
    pub(super) fn decode_body(
        info: &ResourceInfo,
        mut obj: Value,
        fv: FieldValidation,
    ) -> Result<(Value, Vec<String>)> {
        let Some(o) = obj.as_object_mut() else {
            return Err(Error::BadRequest(format!(
                "{} in version {:?} cannot be handled as a {}: the body is not a JSON object",
                info.kind, info.version, info.kind
            )));
        };
        let want_av = info.api_version();
        match o.get("apiVersion").and_then(Value::as_str) {
            Some(av) if av != want_av => {
                return Err(Error::BadRequest(format!(
                    "the API version in the data ({av}) does not match the expected API version ({want_av})"
                )));
            }
            _ => {}
        }
        match o.get("kind").and_then(Value::as_str) {
            Some(k) if k != info.kind => {
                return Err(Error::BadRequest(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    info.kind
                )));
            }
            _ => {}
        }
        o.insert("apiVersion".into(), Value::String(want_av));
        o.insert("kind".into(), Value::String(info.kind.to_string()));
        let Canonical {
            value,
            unknown_fields,
        } = info.strategy.canonicalize(&obj).map_err(|e| {
            Error::BadRequest(format!(
                "{} in version {:?} cannot be handled as a {}: {e}",
                info.kind, info.version, info.kind
            ))
        })?;
        let msgs: Vec<String> = unknown_fields
            .iter()
            .map(|f| format!("unknown field {f:?}"))
            .collect();
        match fv {
            FieldValidation::Strict if !msgs.is_empty() => Err(Error::BadRequest(format!(
                "strict decoding error: {}",
                msgs.join(", ")
            ))),
            FieldValidation::Warn => Ok((value, msgs)),
            _ => Ok((value, Vec::new())),
        }
    }

    /// Checks the body's namespace against the request's and sets it.
    pub(super) fn place(info: &ResourceInfo, obj: &mut Value, ns: Option<&str>) -> Result<()> {
        let Some(m) = meta::metadata_mut(obj) else {
            return Err(Error::BadRequest("metadata must be an object".into()));
        };
        if info.namespaced() {
            let path_ns = ns.unwrap_or("");
            match m.get("namespace").and_then(Value::as_str) {
                Some(body) if !body.is_empty() && body != path_ns => {
                    return Err(Error::BadRequest(
                        "the namespace of the provided object does not match the namespace sent on the request".into(),
                    ));
                }
                _ => {}
            }
            m.insert("namespace".into(), Value::String(path_ns.into()));
        } else {
            m.remove("namespace");
        }
        Ok(())
    }

    pub(super) fn invalid(info: &ResourceInfo, obj: &Value, causes: Vec<FieldError>) -> Result<()> {
        if causes.is_empty() {
            return Ok(());
        }
        Err(Error::Invalid {
            kind: info.kind.to_string(),
            group: info.group.to_string(),
            name: meta::name(obj).to_string(),
            causes,
        })
    }

    pub(super) fn validate_common(info: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
        let mut causes = Vec::new();
        let name = meta::name(obj);
        if name.is_empty() {
            causes.push(FieldError::required(
                "metadata.name",
                "name or generateName is required",
            ));
        } else if let Some(e) = meta::validate_name(name, info.strategy.name_rule()) {
            causes.push(e);
        }
        causes.extend(meta::validate_labels(obj));
        causes
    }
}
