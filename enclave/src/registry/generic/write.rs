//! Create, update and patch: upstream's `BeforeCreate`, `BeforeUpdate` and
//! `GuaranteedUpdate`, over compare-and-swap writes. Nothing is written
//! unless every check passed.

use serde_json::Value;

use super::{CasRetries, Claims, ObjectStore};
use crate::admission::{Operation, Outcome, Request as AdmissionRequest};
use crate::registry::admission;
use crate::registry::managed::{self, FieldSet, Scope, Writer};
use crate::registry::{Error, ResourceInfo, Result, Subresource, meta};
use crate::store::{KeyValue, TxnOutcome};

/// `fieldValidation`: what to do with fields the kind does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Reject with 400.
    Strict,
    /// Accept, dropping them, with a `Warning` header each (the default).
    #[default]
    Warn,
    /// Drop them silently.
    Ignore,
}

/// Which endpoint a write came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The object itself: `status` is kept from the stored object.
    Main,
    /// `/status`: only `status` changes; everything else is kept.
    Status,
}

/// Options shared by create, update and patch.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: run every step but the write.
    pub dry_run: bool,
    /// `fieldValidation`.
    pub field_validation: FieldValidation,
    /// The field manager the write is recorded under in
    /// `metadata.managedFields` (`?fieldManager=` or the User-Agent's
    /// prefix). `None` (the default, for the server's own writers) keeps
    /// the stored managedFields as they are.
    pub manager: Option<String>,
    /// The subresource written through when it is not the endpoint's own
    /// (`scale`); recorded with the manager.
    pub subresource: Option<String>,
    /// Who writes, for admission; `None` (the default) for the control
    /// plane's own writers.
    pub user: Option<crate::registry::UserInfo>,
}

impl WriteOptions {
    /// The writer to record, if any.
    fn writer(&self, endpoint: Endpoint) -> Option<Writer> {
        let manager = self.manager.clone()?;
        let subresource = self.subresource.clone().or(match endpoint {
            Endpoint::Main => None,
            Endpoint::Status => Some("status".to_string()),
        });
        Some(Writer {
            manager,
            subresource,
        })
    }
}

/// The object a write goes to, and through which endpoint.
#[derive(Debug, Clone, Copy)]
pub struct WriteTarget<'a> {
    /// The object itself or its `/status`.
    pub endpoint: Endpoint,
    /// Its resource.
    pub info: &'a ResourceInfo,
    /// Its namespace (`None` for cluster-scoped resources).
    pub ns: Option<&'a str>,
    /// Its name.
    pub name: &'a str,
}

/// An update as [`ObjectStore::guaranteed_update`] carries it through its tries.
pub(super) struct UpdateRequest<'a> {
    pub(super) target: WriteTarget<'a>,
    /// The resourceVersion the client named: a lost race then fails for good.
    pub(super) precondition: Option<u64>,
    pub(super) opts: &'a WriteOptions,
    pub(super) fields: FieldsOp<'a>,
    /// Warnings from decoding the body, returned with the result.
    pub(super) warnings: Vec<String>,
}

impl<'a> UpdateRequest<'a> {
    /// An update of `target` without a precondition or warnings yet.
    pub(super) fn new(
        target: WriteTarget<'a>,
        opts: &'a WriteOptions,
        fields: FieldsOp<'a>,
    ) -> Self {
        UpdateRequest {
            target,
            precondition: None,
            opts,
            fields,
            warnings: Vec::new(),
        }
    }
}

/// How a write changes field ownership.
#[derive(Debug, Clone, Copy)]
pub(super) enum FieldsOp<'a> {
    /// Create, update or a non-apply patch: the writer owns what it changed.
    Update,
    /// Server-side apply of a configuration setting `config`.
    Apply {
        /// The applied configuration.
        applied: &'a Value,
        /// The fields the applied configuration sets.
        config: &'a FieldSet,
        /// `force=true`: take conflicting fields instead of failing.
        force: bool,
    },
}

/// What `endpoint` of `info` may own.
pub(super) fn scope(info: &ResourceInfo, endpoint: Endpoint) -> Scope<'_> {
    let schema = info.strategy.apply_schema();
    match endpoint {
        Endpoint::Main => Scope::Main {
            status_subresource: info.has(Subresource::Status),
            schema,
        },
        Endpoint::Status => Scope::Status { schema },
    }
}

/// The result of a write.
#[derive(Debug, Clone)]
pub struct Written {
    /// The object as stored (with its new resourceVersion).
    pub object: Value,
    /// Warnings for the `Warning` response header.
    pub warnings: Vec<String>,
    /// Whether the object was created (201) rather than updated (200).
    pub created: bool,
}

impl Written {
    /// The HTTP status of the write's answer: 201 Created or 200 OK.
    pub fn code(&self) -> u16 {
        if self.created { 201 } else { 200 }
    }

    /// Puts `warnings` (the body's, found before admission's) ahead of the others.
    pub(super) fn with_warnings_first(mut self, mut warnings: Vec<String>) -> Self {
        warnings.append(&mut self.warnings);
        self.warnings = warnings;
        self
    }
}

/// Metadata fields only the server sets.
const SERVER_FIELDS: &[&str] = &[
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "resourceVersion",
    "selfLink",
];

impl ObjectStore {
    /// POST: creates an object in namespace `ns` (None for cluster scope).
    ///
    /// # Errors
    /// 400 for a malformed body, 422 Invalid, 404 if the namespace is
    /// missing, 403 if it is terminating, 409 AlreadyExists.
    pub async fn create(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Written> {
        let (mut obj, warnings) = Self::decode_body(info, body, opts.field_validation)?;
        Self::place(info, &mut obj, ns)?;
        let now = meta::format_time(meta::now());
        // What admission messages call the object: its name, or the
        // generateName prefix before a name is generated (as upstream).
        let request_name = match meta::name(&obj) {
            "" => meta::meta_str(&obj, "generateName")
                .unwrap_or("")
                .to_string(),
            n => n.to_string(),
        };
        if let Some(m) = meta::metadata_mut(&mut obj) {
            for f in SERVER_FIELDS {
                m.remove(*f);
            }
            let now = now.clone();
            let name = m.get("name").and_then(Value::as_str).unwrap_or("");
            let generate = m.get("generateName").and_then(Value::as_str).unwrap_or("");
            if name.is_empty() && !generate.is_empty() {
                let n = format!("{generate}{}", meta::random_suffix());
                m.insert("name".into(), Value::String(n));
            }
            m.insert("uid".into(), Value::String(meta::new_uid()));
            m.insert("creationTimestamp".into(), Value::String(now));
            if info.strategy.tracks_generation() {
                m.insert("generation".into(), Value::from(1));
            }
        }
        info.strategy.prepare_for_create(&mut obj);
        // Upstream's NamespaceLifecycle, the first admission step.
        if let (true, Some(ns)) = (info.namespaced(), ns) {
            self.check_namespace(ns).await?;
        }
        let mut warnings = warnings;
        let mut admitted = Outcome::default();
        let name = meta::name(&obj).to_string();
        let request = AdmissionRequest {
            operation: Operation::Create,
            info,
            subresource: opts.subresource.as_deref(),
            namespace: ns,
            name: &name,
            request_name: &request_name,
            user: opts.user.as_ref(),
            dry_run: opts.dry_run,
            old: None,
        };
        self.admission()
            .admit(self, &request, &mut obj, &mut admitted)
            .await?;
        admission::set_qos_class(&request, &mut obj)?;
        if let Some(writer) = opts.writer(Endpoint::Main) {
            let empty = Value::Object(serde_json::Map::new());
            let scope = scope(info, Endpoint::Main);
            let av = info.api_version();
            managed::record_update(&empty, &mut obj, &writer, &av, scope, &now);
        }
        let mut causes = Self::validate_common(info, &obj);
        causes.extend(info.strategy.validate(&obj));
        Self::invalid(info, &obj, causes)?;
        self.admission()
            .validate(self, &request, &obj, &mut admitted)
            .await?;
        warnings.extend(admitted.warnings);
        if opts.dry_run {
            return Ok(Written {
                object: obj,
                warnings,
                created: true,
            });
        }
        let hooks = super::hooks::hooks_of(info);
        let claims = match hooks {
            Some(h) => h.before_create(self, &mut obj).await?,
            None => Claims::default(),
        };
        let outcome = match Self::encode_stored(&obj) {
            Ok(stored) => self
                .store
                .create(&info.key(ns, &name), &stored.bytes)
                .await
                .map(|outcome| (outcome, stored))
                .map_err(Error::from),
            Err(e) => Err(e),
        };
        let committed = matches!(outcome, Ok((TxnOutcome::Committed { .. }, _)));
        self.settle(claims, committed).await;
        match outcome? {
            (TxnOutcome::Committed { revision, .. }, stored) => {
                meta::set_resource_version(&mut obj, revision);
                self.keep_served_splice(&info.key(ns, &name), revision, &stored);
                if let Some(h) = hooks {
                    h.after_write(self).await;
                }
                Ok(Written {
                    object: obj,
                    warnings,
                    created: true,
                })
            }
            (TxnOutcome::Failed { .. }, _) => Err(Error::AlreadyExists {
                qualified: info.qualified(),
                group: info.group.to_string(),
                resource: info.resource.to_string(),
                name,
            }),
        }
    }

    /// PUT: replaces an object. A `metadata.resourceVersion` in the body
    /// must equal the current one (else 409 Conflict); without one the
    /// update is unconditional.
    ///
    /// # Errors
    /// 400, 404, 409 Conflict, 422 Invalid.
    pub async fn update(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Written> {
        self.update_at(Endpoint::Main, info, ns, name, body, opts)
            .await
    }

    /// PUT through `endpoint` (the object or its `/status`).
    ///
    /// # Errors
    /// As [`ObjectStore::update`].
    pub async fn update_at(
        &self,
        endpoint: Endpoint,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Written> {
        let (mut obj, warnings) = Self::decode_body(info, body, opts.field_validation)?;
        Self::place(info, &mut obj, ns)?;
        let body_name = meta::name(&obj);
        if !body_name.is_empty() && body_name != name {
            return Err(Error::BadRequest(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let precondition = parse_rv(meta::meta_str(&obj, "resourceVersion"))?;
        let target = WriteTarget {
            endpoint,
            info,
            ns,
            name,
        };
        let request = UpdateRequest {
            precondition,
            warnings,
            ..UpdateRequest::new(target, opts, FieldsOp::Update)
        };
        self.guaranteed_update(request, |_| Ok(obj.clone())).await
    }

    /// PATCH: applies `patch_fn` to the current object and stores the
    /// result, retrying on concurrent writes unless the patched object
    /// names a resourceVersion (a precondition).
    ///
    /// # Errors
    /// As [`ObjectStore::update`], plus whatever `patch_fn` returns.
    pub async fn patch(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        opts: &WriteOptions,
        patch_fn: impl Fn(&Value) -> Result<Value>,
    ) -> Result<Written> {
        self.patch_at(Endpoint::Main, info, ns, name, opts, patch_fn)
            .await
    }

    /// PATCH through `endpoint` (the object or its `/status`).
    ///
    /// # Errors
    /// As [`ObjectStore::patch`].
    pub async fn patch_at(
        &self,
        endpoint: Endpoint,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        opts: &WriteOptions,
        patch_fn: impl Fn(&Value) -> Result<Value>,
    ) -> Result<Written> {
        let target = WriteTarget {
            endpoint,
            info,
            ns,
            name,
        };
        let request = UpdateRequest::new(target, opts, FieldsOp::Update);
        // The unknown-field warnings of the try that was stored (`fieldValidation=Warn`).
        let decoded = std::sync::Mutex::new(Vec::new());
        let written = self
            .guaranteed_update(request, |cur| {
                let patched = patch_fn(cur)?;
                let (mut obj, warnings) = Self::decode_body(info, patched, opts.field_validation)?;
                Self::place(info, &mut obj, ns)?;
                if meta::name(&obj) != name {
                    return Err(Error::BadRequest(format!(
                        "the name of the object ({}) does not match the name on the URL ({name})",
                        meta::name(&obj)
                    )));
                }
                if let Ok(mut d) = decoded.lock() {
                    *d = warnings;
                }
                Ok(obj)
            })
            .await?;
        Ok(written.with_warnings_first(decoded.into_inner().unwrap_or_default()))
    }

    /// Upstream's `GuaranteedUpdate`: reads the object, makes `next` of it, and writes that
    /// if nothing wrote the object meanwhile; otherwise tries again with what is there now
    /// (unless the request named a resourceVersion).
    pub(super) async fn guaranteed_update(
        &self,
        request: UpdateRequest<'_>,
        next: impl Fn(&Value) -> Result<Value>,
    ) -> Result<Written> {
        let WriteTarget { info, ns, name, .. } = request.target;
        let precondition = request.precondition;
        let mut retries = CasRetries::new();
        loop {
            let Some(kv) = self.get_kv(info, ns, name).await? else {
                return Err(Self::not_found(info, name));
            };
            if precondition.is_some_and(|rv| rv != kv.mod_revision) {
                return Err(Self::conflict(info, name));
            }
            let old = Self::decode(&kv)?;
            let new = next(&old)?;
            // A resourceVersion the patch itself put in is a precondition.
            let own_rv = parse_rv(meta::meta_str(&new, "resourceVersion"))?;
            if precondition.is_none() && own_rv.is_some_and(|rv| rv != kv.mod_revision) {
                return Err(Self::conflict(info, name));
            }
            let mut admitted = Outcome::default();
            match self
                .commit_update(&request, &kv, old, new, &mut admitted)
                .await?
            {
                CasWrite::Stored(object) => {
                    let mut warnings = request.warnings;
                    warnings.extend(admitted.warnings);
                    return Ok(Written {
                        object,
                        warnings,
                        created: false,
                    });
                }
                // An explicit precondition fails for good; otherwise re-read and
                // re-apply (a resourceVersion the patch set itself then no longer
                // matches and fails above).
                CasWrite::Lost { .. } if precondition.is_some() => {
                    return Err(Self::conflict(info, name));
                }
                CasWrite::Lost { won } => {
                    if !retries.lost(info, name, kv.mod_revision, won).await {
                        return Err(Self::conflict(info, name));
                    }
                }
            }
        }
    }

    /// `BeforeUpdate` and the CAS write.
    async fn commit_update(
        &self,
        update: &UpdateRequest<'_>,
        kv: &KeyValue,
        old: Value,
        mut new: Value,
        admitted: &mut Outcome,
    ) -> Result<CasWrite> {
        let WriteTarget {
            endpoint, info, ns, ..
        } = update.target;
        let (opts, fields) = (update.opts, update.fields);
        let name = meta::name(&old).to_string();
        let old_uid = meta::meta_str(&old, "uid").unwrap_or("").to_string();
        if let Some(m) = meta::metadata_mut(&mut new) {
            if let Some(uid) = m.get("uid").and_then(Value::as_str)
                && !uid.is_empty()
                && uid != old_uid
            {
                return Err(Error::Conflict {
                    group: info.group.to_string(),
                    resource: info.resource.to_string(),
                    name: name.clone(),
                    message: format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {old_uid}"
                    ),
                });
            }
            m.insert("name".into(), Value::String(name.clone()));
            let old_meta = old.get("metadata").and_then(Value::as_object);
            for f in SERVER_FIELDS {
                match old_meta.and_then(|om| om.get(*f)) {
                    Some(v) => m.insert((*f).to_string(), v.clone()),
                    None => m.remove(*f),
                };
            }
        }
        match endpoint {
            Endpoint::Main => info.strategy.prepare_for_update(&mut new, &old),
            Endpoint::Status => {
                // ResetObjectMetaForStatus: everything but status comes from old.
                let status = new.get("status").cloned();
                new = old.clone();
                if let Some(o) = new.as_object_mut() {
                    match status {
                        Some(st) => o.insert("status".into(), st),
                        None => o.remove("status"),
                    };
                }
            }
        }
        if info.strategy.tracks_generation() && info.strategy.generation_changed(&new, &old) {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if let Some(m) = meta::metadata_mut(&mut new) {
                m.insert("generation".into(), Value::from(g + 1));
            }
        }
        let scope = scope(info, endpoint);
        let av = info.api_version();
        let now = meta::format_time(meta::now());
        match (opts.writer(endpoint), fields) {
            (None, _) => managed::carry_over(&old, &mut new),
            (Some(w), FieldsOp::Update) => {
                managed::record_update(&old, &mut new, &w, &av, scope, &now);
            }
            (
                Some(w),
                FieldsOp::Apply {
                    applied,
                    config,
                    force,
                },
            ) => {
                let kubectl = w.manager == managed::KUBECTL;
                // Kept for a second, forced attempt (record_apply edits `new`).
                let unrecorded = (kubectl && !force).then(|| new.clone());
                let apply_set = managed::Applied {
                    fields: config,
                    force,
                };
                if let Err(conflicts) =
                    managed::record_apply(&old, &mut new, apply_set, &w, &av, scope, &now)
                {
                    // upstream's lastAppliedManager: kubectl may take what
                    // its client-side apply annotation says it set.
                    let left = match unrecorded {
                        Some(_) => managed::conflicts_outside(
                            conflicts,
                            &managed::last_applied_fields(&old, &av, scope),
                        ),
                        None => conflicts,
                    };
                    let Some(unrecorded) = unrecorded.filter(|_| left.is_empty()) else {
                        return Err(managed::conflict_error(left));
                    };
                    new = unrecorded;
                    let forced = managed::Applied {
                        force: true,
                        ..apply_set
                    };
                    managed::record_apply(&old, &mut new, forced, &w, &av, scope, &now)
                        .map_err(managed::conflict_error)?;
                }
                if kubectl {
                    managed::sync_last_applied(&old, &mut new, applied);
                }
            }
        }
        let subresource = opts.subresource.as_deref().or(match endpoint {
            Endpoint::Main => None,
            Endpoint::Status => Some("status"),
        });
        let request = AdmissionRequest {
            operation: Operation::Update,
            info,
            subresource,
            namespace: ns,
            name: &name,
            request_name: &name,
            user: opts.user.as_ref(),
            dry_run: opts.dry_run,
            old: Some(&old),
        };
        self.admission()
            .admit(self, &request, &mut new, admitted)
            .await?;
        let mut causes = Self::validate_common(info, &new);
        causes.extend(info.strategy.validate_update(&new, &old));
        Self::invalid(info, &new, causes)?;
        self.admission()
            .validate(self, &request, &new, admitted)
            .await?;
        meta::set_resource_version(&mut new, kv.mod_revision);
        let hooks = super::hooks::hooks_of(info);
        let claims = match (hooks, endpoint) {
            (Some(h), Endpoint::Main) => h.before_update(self, &old, &mut new).await?,
            _ => Claims::default(),
        };
        let target = WriteTarget {
            name: &name,
            ..update.target
        };
        let stored = self.store_update(target, kv, &old, new, opts.dry_run).await;
        let kept = matches!(stored, Ok(CasWrite::Stored(_))) && !opts.dry_run;
        self.settle(claims, kept).await;
        if let (Some(h), true) = (hooks, kept) {
            h.after_write(self).await;
        }
        stored
    }

    /// Stores an admitted and validated update, unless it changes nothing or is a dry run;
    /// deletes the object instead when its last finalizer went. [`CasWrite::Lost`]: the
    /// object changed since `kv` (the caller retries).
    async fn store_update(
        &self,
        target: WriteTarget<'_>,
        kv: &KeyValue,
        old: &Value,
        mut new: Value,
        dry_run: bool,
    ) -> Result<CasWrite> {
        if new == *old || dry_run {
            return Ok(CasWrite::Stored(new));
        }
        let key = target.info.key(target.ns, target.name);
        let finalizers_empty = new
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        let grace_running = new
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .is_some_and(|g| g > 0);
        if meta::meta_str(&new, "deletionTimestamp").is_some() && finalizers_empty && !grace_running
        {
            // Upstream's ShouldDeleteDuringUpdate: the last finalizer is gone (and no grace
            // period runs: a terminating pod's status updates keep it).
            return match self.store.delete(&key, Some(kv.mod_revision)).await? {
                TxnOutcome::Committed { revision, .. } => {
                    if let Some(hooks) = super::hooks::hooks_of(target.info) {
                        self.release_claims(hooks.held(&new)).await;
                    }
                    meta::set_resource_version(&mut new, revision);
                    Ok(CasWrite::Stored(new))
                }
                TxnOutcome::Failed { current } => Ok(CasWrite::lost(current.as_ref())),
            };
        }
        let stored = Self::encode_stored(&new)?;
        match self
            .store
            .update(&key, &stored.bytes, kv.mod_revision)
            .await?
        {
            TxnOutcome::Committed { revision, .. } => {
                meta::set_resource_version(&mut new, revision);
                self.keep_served_splice(&key, revision, &stored);
                Ok(CasWrite::Stored(new))
            }
            TxnOutcome::Failed { current } => Ok(CasWrite::lost(current.as_ref())),
        }
    }
}

/// What a compare-and-swap write of an update came to.
enum CasWrite {
    /// Stored (or, for a dry run or a no-op, what would be).
    Stored(Value),
    /// Another write changed the key first; `won` is its mod revision (`None`: deleted).
    Lost { won: Option<u64> },
}

impl CasWrite {
    fn lost(current: Option<&KeyValue>) -> Self {
        CasWrite::Lost {
            won: current.map(|kv| kv.mod_revision),
        }
    }
}

/// Parses a resourceVersion precondition ("" or absent: none).
pub(crate) fn parse_rv(rv: Option<&str>) -> Result<Option<u64>> {
    match rv {
        None | Some("") => Ok(None),
        Some(s) => s.parse::<u64>().map(Some).map_err(|_| {
            Error::BadRequest(format!("invalid resourceVersion {s:?}: must be a number"))
        }),
    }
}
