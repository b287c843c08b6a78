//! Server-side apply: PATCH with `application/apply-patch+yaml`, over the
//! update path (validation, defaults, generation, resourceVersion
//! preconditions, dry-run) with the ownership rules of
//! [`registry::managed`](crate::registry::managed).

use serde_json::Value;

use super::ObjectStore;
use super::write::{Endpoint, FieldsOp, UpdateRequest, WriteOptions, WriteTarget, Written, scope};
use crate::registry::managed::{self, Writer};
use crate::registry::{Error, ResourceInfo, Result, meta};

/// `force`: what an apply does with fields other managers own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApplyConflicts {
    /// Fail with 409 Conflict, listing them (the default).
    #[default]
    Fail,
    /// `force=true`: take them over.
    Force,
}

impl ObjectStore {
    /// Applies `config` (the decoded apply patch) to `target`, creating the
    /// object if it does not exist (on the object itself, not a subresource).
    ///
    /// # Errors
    /// 422 if `opts` has no field manager; 400 if `config` is not an
    /// object of this kind and version, names another object or carries
    /// `metadata.managedFields`; 409 with the conflicting fields unless
    /// forced; then whatever create or update return.
    pub async fn apply(
        &self,
        target: WriteTarget<'_>,
        mut config: Value,
        opts: &WriteOptions,
        conflicts: ApplyConflicts,
    ) -> Result<Written> {
        let WriteTarget {
            endpoint,
            info,
            ns,
            name,
        } = target;
        let writer = match opts.manager.as_deref() {
            Some(m) if !m.is_empty() => Writer {
                manager: m.to_string(),
                subresource: match endpoint {
                    Endpoint::Main => None,
                    Endpoint::Status => Some("status".into()),
                },
            },
            _ => return Err(managed::manager_required()),
        };
        check_config(info, &mut config, name)?;
        let scope = scope(info, endpoint);
        let av = info.api_version();
        let config_set = managed::applied_fields(&config, scope);
        let force = conflicts == ApplyConflicts::Force;
        if self.get_kv(info, ns, name).await?.is_none() {
            if endpoint != Endpoint::Main {
                return Err(Self::not_found(info, name));
            }
            let mut obj = config;
            let empty = Value::Object(serde_json::Map::new());
            let now = meta::format_time(meta::now());
            let applied = managed::Applied {
                fields: &config_set,
                force,
            };
            managed::record_apply(&empty, &mut obj, applied, &writer, &av, scope, &now)
                .map_err(managed::conflict_error)?;
            // The entry is already recorded: create must not add an Update.
            let create_opts = WriteOptions {
                manager: None,
                subresource: None,
                ..opts.clone()
            };
            return self.create(info, ns, obj, &create_opts).await;
        }
        let fields = FieldsOp::Apply {
            applied: &config,
            config: &config_set,
            force,
        };
        let request = UpdateRequest::new(target, opts, fields);
        // The unknown-field warnings of the try that was stored (`fieldValidation=Warn`).
        let decoded = std::sync::Mutex::new(Vec::new());
        let written = self
            .guaranteed_update(request, |cur| {
                let merged = managed::apply_merge(cur, &config, &writer, &av, scope);
                let (mut obj, warnings) = Self::decode_body(info, merged, opts.field_validation)?;
                Self::place(info, &mut obj, ns)?;
                if let Ok(mut d) = decoded.lock() {
                    *d = warnings;
                }
                Ok(obj)
            })
            .await?;
        Ok(written.with_warnings_first(decoded.into_inner().unwrap_or_default()))
    }
}

/// Checks an applied configuration as upstream does before merging it:
/// an object of the served version and kind, naming the object of the URL
/// (the name is filled in if missing), without managedFields.
fn check_config(info: &ResourceInfo, config: &mut Value, name: &str) -> Result<()> {
    let want = info.api_version();
    let Some(o) = config.as_object_mut() else {
        return Err(Error::BadRequest(
            "error decoding YAML: the apply patch is not an object".into(),
        ));
    };
    let av = o.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if av != want {
        return Err(Error::BadRequest(format!(
            "Incorrect version specified in apply patch. Specified patch version: {av}, expected: {want}"
        )));
    }
    let kind = o.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind != info.kind {
        return Err(Error::BadRequest(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            info.kind
        )));
    }
    let Some(m) = meta::metadata_mut(config) else {
        return Err(Error::BadRequest("metadata must be an object".into()));
    };
    if m.get("managedFields").is_some_and(|v| !v.is_null()) {
        return Err(Error::BadRequest(
            "metadata.managedFields must be nil".into(),
        ));
    }
    m.remove("managedFields");
    match m.get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() && n != name => Err(Error::BadRequest(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        ))),
        _ => {
            m.insert("name".into(), Value::String(name.to_string()));
            Ok(())
        }
    }
}
