//! Resource handlers: one function per verb, each a thin adapter from HTTP
//! to [`ObjectStore`](crate::registry::ObjectStore); nothing here is kind-specific.

use bytes::Bytes;
use hyper::{Method, Response};
use serde_json::{Value, json};

use super::http::{self, Body};
use super::query::{self, Query};
use super::route::ResourceTarget;
use super::watch;
use super::{ApiServer, Negotiated};
use crate::registry::generic::{
    ApplyConflicts, DeleteOptions, DeleteOutcome, EncodedObject, Endpoint, ListOptions, ListPage,
    WriteOptions, WriteTarget, Written,
};
use crate::registry::managed;
use crate::registry::patch::{self, PatchType};
use crate::registry::table::{self, IncludeObject};
use crate::registry::{
    Error, FieldError, FieldSelector, LabelSelector, ResourceInfo, Result, UserInfo, WatchOptions,
};

/// Everything a resource handler needs from the request.
#[derive(Debug)]
pub struct ResourceRequest {
    /// The authenticated user (None only for public paths).
    pub user: Option<UserInfo>,
    /// Method.
    pub method: Method,
    /// What the path names.
    pub target: ResourceTarget,
    /// Parsed query.
    pub query: Query,
    /// Content negotiation result.
    pub negotiated: Negotiated,
    /// Request Content-Type.
    pub content_type: String,
    /// Request User-Agent (the field manager when `fieldManager` is absent).
    pub user_agent: String,
    /// The whole request body (already size-checked).
    pub body: Bytes,
}

pub(super) fn write_opts(req: &ResourceRequest) -> WriteOptions {
    let q = &req.query;
    WriteOptions {
        dry_run: q.dry_run,
        field_validation: q.field_validation,
        manager: Some(managed::manager_name(
            q.field_manager.as_deref(),
            &req.user_agent,
        )),
        subresource: None,
        user: req.user.clone(),
    }
}

/// The Content-Type of server-side apply.
const APPLY_CONTENT_TYPE: &str = "application/apply-patch+yaml";

/// Whether the request is an apply patch.
pub(super) fn is_apply(req: &ResourceRequest) -> bool {
    req.content_type.split(';').next().unwrap_or("").trim() == APPLY_CONTENT_TYPE
}

/// Checks the patch options (upstream's `ValidatePatchOptions`): an apply
/// needs a field manager; only an apply may say `force`.
///
/// # Errors
/// 422 Invalid `PatchOptions`.
pub(super) fn check_patch_options(req: &ResourceRequest) -> Result<ApplyConflicts> {
    let q = &req.query;
    if !is_apply(req) {
        if q.force.is_some() {
            return Err(Error::InvalidOptions {
                kind: "PatchOptions",
                causes: vec![FieldError {
                    reason: "FieldValueForbidden",
                    field: "force".into(),
                    message: "force: Forbidden: may not be specified for non-apply patch".into(),
                }],
            });
        }
        return Ok(ApplyConflicts::Fail);
    }
    if q.field_manager.as_deref().unwrap_or("").is_empty() {
        return Err(managed::manager_required());
    }
    Ok(if q.force == Some(true) {
        ApplyConflicts::Force
    } else {
        ApplyConflicts::Fail
    })
}

/// The longest `fieldManager` upstream accepts, in bytes.
const FIELD_MANAGER_MAX_BYTES: usize = 128;

/// Checks `fieldManager` as upstream's `ValidateFieldManager` does: at most
/// 128 bytes, printable characters only.
///
/// # Errors
/// 422 Invalid `CreateOptions`, `UpdateOptions` or `PatchOptions`.
pub(super) fn check_field_manager(req: &ResourceRequest) -> Result<()> {
    let Some(m) = req.query.field_manager.as_deref() else {
        return Ok(());
    };
    let mut causes = Vec::new();
    if m.len() > FIELD_MANAGER_MAX_BYTES {
        causes.push(FieldError {
            reason: "FieldValueTooLong",
            field: "fieldManager".into(),
            message: format!(
                "fieldManager: Too long: may not be more than {FIELD_MANAGER_MAX_BYTES} bytes"
            ),
        });
    }
    for (i, c) in m.char_indices() {
        if c.is_control() {
            causes.push(FieldError::invalid(
                "fieldManager",
                m,
                &format!("invalid character U+{:04X} (at position {i})", u32::from(c)),
            ));
        }
    }
    if causes.is_empty() {
        return Ok(());
    }
    let kind = match req.method {
        Method::POST => "CreateOptions",
        Method::PUT => "UpdateOptions",
        _ => "PatchOptions",
    };
    Err(Error::InvalidOptions { kind, causes })
}

/// Decodes an apply patch: JSON (what kubectl sends) or YAML, one object.
///
/// # Errors
/// 400 BadRequest `error decoding YAML: …`.
pub(super) fn apply_body(req: &ResourceRequest) -> Result<Value> {
    let bad = |why: String| Error::BadRequest(format!("error decoding YAML: {why}"));
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("the apply patch is empty".into()));
    }
    let value: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(_) => serde_norway::from_slice(&req.body).map_err(|e| bad(e.to_string()))?,
    };
    if !value.is_object() {
        return Err(bad("the apply patch is not an object".into()));
    }
    Ok(value)
}

/// Parses a JSON or protobuf request body (YAML is not accepted yet).
pub(super) fn json_body(req: &ResourceRequest) -> Result<Value> {
    let ct = req.content_type.split(';').next().unwrap_or("").trim();
    match ct {
        "application/json" | "" | "*/*" => {}
        super::protobuf::CONTENT_TYPE => return super::protobuf::decode(&req.body),
        other => {
            return Err(Error::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json (got {other:?})"
            )));
        }
    }
    if req.body.is_empty() {
        return Err(Error::BadRequest("the request body is empty".into()));
    }
    serde_json::from_slice(&req.body).map_err(|e| {
        Error::BadRequest(format!(
            "the body of the request could not be decoded as JSON: {e}"
        ))
    })
}

/// The PATCH type of the request's Content-Type, among those the resource
/// accepts (custom resources have no strategic merge patch, as upstream).
///
/// # Errors
/// 415 UnsupportedMediaType, listing the accepted types.
pub(super) fn patch_type(req: &ResourceRequest) -> Result<PatchType> {
    let strategic = req.target.info.strategy.accepts_strategic_merge();
    match PatchType::from_content_type(&req.content_type) {
        Some(PatchType::Strategic) if !strategic => {}
        Some(ty) => return Ok(ty),
        None => {}
    }
    let accepted = if strategic {
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"
    } else {
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    };
    Err(Error::UnsupportedMediaType(format!(
        "the body of the request was in an unknown format - accepted media types include: {accepted}"
    )))
}

pub(super) fn object_response(
    req: &ResourceRequest,
    code: u16,
    obj: &Value,
    warnings: &[String],
) -> Response<Body> {
    let info = &req.target.info;
    if !req.negotiated.table {
        return http::json_with(code, obj, "application/json", warnings);
    }
    let meta = json!({"resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null)});
    let body = table::table(
        info,
        std::slice::from_ref(obj),
        meta,
        req.query.include_object,
        true,
    );
    http::json_with(code, &body, "application/json", warnings)
}

impl ApiServer {
    /// Dispatches a resource request by method.
    pub(crate) async fn resource(&self, req: ResourceRequest) -> Response<Body> {
        if matches!(req.method, Method::POST | Method::PUT | Method::PATCH)
            && let Err(e) = check_field_manager(&req)
        {
            return http::error(&e);
        }
        if req.target.info.is_virtual() {
            return self.review(&req).await.unwrap_or_else(|e| http::error(&e));
        }
        if req.target.info.persistence == crate::registry::Persistence::Computed {
            if req.target.subresource.is_some() {
                return http::path_not_found();
            }
            if req.target.info.group.is_empty() && req.target.info.resource == "componentstatuses" {
                return self.component_statuses(&req).await;
            }
            return self.metrics(&req).await;
        }
        if let Some(node) = req
            .user
            .as_ref()
            .and_then(|u| super::authz::node_identity(u))
            && let Err(refused) =
                super::authz::restriction::admit_eviction(&self.objects, node, &req).await
        {
            return refused;
        }
        let writes = req.method != Method::GET;
        let info = req.target.info.clone();
        let response = match info.conversion() {
            Some(conversion) => self.converted(req, conversion.clone()).await,
            None => self.dispatch(req).await,
        };
        if writes && response.status().is_success() {
            self.after_write(&info.group, &info.resource);
        }
        response
    }

    /// Dispatches a stored resource's request by subresource and method.
    pub(super) async fn dispatch(&self, req: ResourceRequest) -> Response<Body> {
        if let Some(sub) = req.target.subresource.clone() {
            return self.subresource(&req, &sub).await;
        }
        let result = match (
            &req.method,
            req.target.name.is_some(),
            &req.target.subresource,
        ) {
            (&Method::GET, false, None) if req.query.watch => return self.watch(req).await,
            (&Method::GET, false, None) => self.list(&req).await,
            (&Method::GET, true, None) => self.get_one(&req).await,
            (&Method::POST, false, None) => self.create(&req).await,
            (&Method::PUT, true, None) => self.update(&req).await,
            (&Method::PATCH, true, None) => self.patch(&req).await,
            (&Method::DELETE, true, None) => self.delete(&req).await,
            (&Method::DELETE, false, None) => self.delete_collection(&req).await,
            (m, _, _) => Err(Error::MethodNotAllowed(format!(
                "the server does not allow this method on the requested resource ({m})"
            ))),
        };
        result.unwrap_or_else(|e| http::error(&e))
    }

    fn ns<'a>(&self, req: &'a ResourceRequest) -> Option<&'a str> {
        req.target.namespace.as_deref()
    }

    fn name(req: &ResourceRequest) -> &str {
        req.target.name.as_deref().unwrap_or("")
    }

    /// Server-side apply of `config` to the request's object at `endpoint`.
    pub(super) async fn apply_at(
        &self,
        req: &ResourceRequest,
        endpoint: Endpoint,
        config: Value,
        opts: &WriteOptions,
        conflicts: ApplyConflicts,
    ) -> Result<Written> {
        let target = WriteTarget {
            endpoint,
            info: &req.target.info,
            ns: self.ns(req),
            name: Self::name(req),
        };
        self.objects.apply(target, config, opts, conflicts).await
    }

    async fn get_one(&self, req: &ResourceRequest) -> Result<Response<Body>> {
        let obj = self
            .objects
            .get(&req.target.info, self.ns(req), Self::name(req))
            .await?;
        Ok(object_response(req, 200, &obj, &[]))
    }

    fn list_options(req: &ResourceRequest) -> Result<ListOptions> {
        Ok(ListOptions {
            labels: LabelSelector::parse(&req.query.label_selector)?,
            fields: FieldSelector::parse(&req.query.field_selector, &*req.target.info.strategy)?,
            limit: req.query.limit,
            continue_token: req.query.continue_token.clone(),
            resource_version: req.query.resource_version.clone(),
            resource_version_match: req.query.resource_version_match.clone(),
        })
    }

    async fn list(&self, req: &ResourceRequest) -> Result<Response<Body>> {
        let info = &req.target.info;
        let opts = Self::list_options(req)?;
        if req.negotiated.table {
            let page = self.objects.list(info, self.ns(req), &opts).await?;
            let meta = page.list_meta();
            let body = table::table(info, &page.items, meta, req.query.include_object, true);
            return Ok(http::json(200, &body));
        }
        let page = self.objects.list_encoded(info, self.ns(req), &opts).await?;
        Ok(http::json_bytes(200, encoded_list(info, &page)))
    }

    /// POST to a create-only virtual resource (the reviews).
    async fn review(&self, req: &ResourceRequest) -> Result<Response<Body>> {
        let t = &req.target;
        if req.method != Method::POST || t.name.is_some() || t.subresource.is_some() {
            return Err(Error::MethodNotAllowed(format!(
                "the server does not allow this method on the requested resource ({})",
                req.method
            )));
        }
        let user = req
            .user
            .as_ref()
            .ok_or_else(|| Error::BadRequest("no authenticated user".into()))?;
        let body = json_body(req)?;
        if t.info.group.is_empty() && t.info.resource == "bindings" {
            return self.legacy_binding(req, body).await;
        }
        let w = self
            .objects
            .review_validated(&t.info, body, &write_opts(req))?;
        if let Some(answer) = self.answer_review(req, &w.object, user).await {
            return Ok(object_response(req, 201, &answer?, &w.warnings));
        }
        let w = self
            .objects
            .review(&t.info, w.object, user, &write_opts(req))?;
        Ok(object_response(req, 201, &w.object, &w.warnings))
    }

    /// `POST namespaces/NS/bindings`: binds the pod the Binding names, as its
    /// `pods/NAME/binding` does.
    async fn legacy_binding(&self, req: &ResourceRequest, body: Value) -> Result<Response<Body>> {
        let pods = self
            .objects
            .table()
            .lookup("", "v1", "pods")
            .ok_or_else(|| Error::BadRequest("pods are not served".into()))?;
        let name = body
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            return Err(Error::BadRequest(
                "name in URL does not match name in Binding object".into(),
            ));
        }
        self.objects
            .bind(
                &pods,
                req.target.namespace.as_deref(),
                &name,
                body,
                req.query.dry_run,
            )
            .await?;
        Ok(super::subresource::bound())
    }

    async fn create(&self, req: &ResourceRequest) -> Result<Response<Body>> {
        // Only POST, as upstream's custom resource handler: an apply that
        // creates is a `patch` and is not refused.
        if let Some(why) = req.target.info.strategy.refuses_create() {
            return Err(Error::MethodNotAllowed(why.to_string()));
        }
        let mut body = json_body(req)?;
        let info = &req.target.info;
        if info.group == "certificates.k8s.io"
            && info.resource == "certificatesigningrequests"
            && let Some(user) = &req.user
        {
            super::identity::set_csr_requester(&mut body, user);
        }
        let w = self
            .objects
            .create(&req.target.info, self.ns(req), body, &write_opts(req))
            .await?;
        Ok(object_response(req, 201, &w.object, &w.warnings))
    }

    async fn update(&self, req: &ResourceRequest) -> Result<Response<Body>> {
        let body = json_body(req)?;
        let w = self
            .objects
            .update(
                &req.target.info,
                self.ns(req),
                Self::name(req),
                body,
                &write_opts(req),
            )
            .await?;
        Ok(object_response(req, 200, &w.object, &w.warnings))
    }

    async fn patch(&self, req: &ResourceRequest) -> Result<Response<Body>> {
        let conflicts = check_patch_options(req)?;
        if is_apply(req) {
            let w = self
                .apply_at(
                    req,
                    Endpoint::Main,
                    apply_body(req)?,
                    &write_opts(req),
                    conflicts,
                )
                .await?;
            return Ok(object_response(req, w.code(), &w.object, &w.warnings));
        }
        let ty = patch_type(req)?;
        // Reject a malformed patch before touching the store.
        serde_json::from_slice::<Value>(&req.body)
            .map_err(|e| Error::BadRequest(format!("error decoding patch: {e}")))?;
        let body = req.body.clone();
        let w = self
            .objects
            .patch(
                &req.target.info,
                self.ns(req),
                Self::name(req),
                &write_opts(req),
                |cur| patch::apply(ty, cur, &body),
            )
            .await?;
        Ok(object_response(req, 200, &w.object, &w.warnings))
    }

    fn delete_options(req: &ResourceRequest) -> Result<DeleteOptions> {
        let mut o = DeleteOptions {
            dry_run: req.query.dry_run,
            grace_period_seconds: req.query.grace_period_seconds,
            propagation: req.query.propagation.unwrap_or_default(),
            user: req.user.clone(),
            ..Default::default()
        };
        if req.body.is_empty() {
            return Ok(o);
        }
        // Go clients with the protobuf content type send their options so.
        let v: Value = if req.content_type.starts_with(super::protobuf::CONTENT_TYPE) {
            super::protobuf::decode(&req.body)?
        } else {
            serde_json::from_slice(&req.body)
                .map_err(|e| Error::BadRequest(format!("invalid DeleteOptions: {e}")))?
        };
        if !v.is_object() {
            return Err(Error::BadRequest(
                "invalid DeleteOptions: not an object".into(),
            ));
        }
        if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
            o.propagation = query::propagation(p)?;
        }
        if let Some(g) = v.get("gracePeriodSeconds") {
            o.grace_period_seconds = Some(g.as_i64().ok_or_else(|| {
                Error::BadRequest(
                    "invalid DeleteOptions: gracePeriodSeconds must be an integer".into(),
                )
            })?);
        }
        if let Some(pre) = v.get("preconditions") {
            o.uid = pre.get("uid").and_then(Value::as_str).map(str::to_string);
            o.resource_version = pre
                .get("resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        if let Some(d) = v.get("dryRun").and_then(Value::as_array) {
            o.dry_run |= d.iter().any(|x| x == "All");
        }
        Ok(o)
    }

    async fn delete(&self, req: &ResourceRequest) -> Result<Response<Body>> {
        let opts = Self::delete_options(req)?;
        let info = &req.target.info;
        match self
            .objects
            .delete(info, self.ns(req), Self::name(req), &opts)
            .await?
        {
            DeleteOutcome::Pending(obj) => Ok(object_response(req, 200, &obj, &[])),
            DeleteOutcome::Deleted { object, status } => {
                if info.return_deleted_object {
                    Ok(object_response(req, 200, &object, &[]))
                } else {
                    Ok(http::json(200, &status))
                }
            }
        }
    }

    async fn delete_collection(&self, req: &ResourceRequest) -> Result<Response<Body>> {
        let opts = Self::delete_options(req)?;
        let info = &req.target.info;
        let list = Self::list_options(req)?;
        let deleted = self
            .objects
            .delete_collection(info, self.ns(req), &list, &opts)
            .await?;
        let meta = json!({"resourceVersion": self.objects.store().revision().to_string()});
        let body = if req.negotiated.table {
            table::table(info, &deleted, meta, req.query.include_object, true)
        } else {
            json!({
                "kind": info.list_kind(), "apiVersion": info.api_version(),
                "metadata": meta, "items": deleted,
            })
        };
        Ok(http::json(200, &body))
    }

    async fn watch(&self, req: ResourceRequest) -> Response<Body> {
        let opts = match (|| -> Result<WatchOptions> {
            Ok(WatchOptions {
                labels: LabelSelector::parse(&req.query.label_selector)?,
                fields: FieldSelector::parse(
                    &req.query.field_selector,
                    &*req.target.info.strategy,
                )?,
                resource_version: req.query.resource_version.clone(),
            })
        })() {
            Ok(o) => o,
            Err(e) => return http::error(&e),
        };
        let stream = match self
            .objects
            .watch(
                req.target.info.clone(),
                req.target.namespace.as_deref(),
                opts,
            )
            .await
        {
            Ok(s) => s,
            Err(e) => return http::error(&e),
        };
        let include = if req.negotiated.table {
            Some(req.query.include_object)
        } else {
            None::<IncludeObject>
        };
        watch::respond(self, req.target.info.clone(), stream, &req.query, include)
    }
}

/// A list's JSON, written around its items' encoded bytes: the bytes `serde_json` would make
/// of the list as a value (its keys in sorted order), without decoding an item.
fn encoded_list(info: &ResourceInfo, page: &ListPage<EncodedObject>) -> Vec<u8> {
    let items: usize = page.items.iter().map(|i| i.len_hint() + 1).sum();
    let mut out = Vec::with_capacity(items + 256);
    let string = |out: &mut Vec<u8>, s: &str| {
        // Writing a `&str` into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    };
    out.extend_from_slice(b"{\"apiVersion\":");
    string(&mut out, &info.api_version());
    out.extend_from_slice(b",\"items\":[");
    for (i, item) in page.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        item.write_to(&mut out);
    }
    out.extend_from_slice(b"],\"kind\":");
    string(&mut out, &info.list_kind());
    out.extend_from_slice(b",\"metadata\":");
    let _ = serde_json::to_writer(&mut out, &page.list_meta());
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoded_list_is_the_bytes_of_the_list_as_a_value() {
        let table = crate::registry::ResourceTable::new(crate::registry::kinds::builtin());
        let info = table.lookup("", "v1", "configmaps").unwrap();
        let objects = [
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "resourceVersion": "7"}, "data": {"k": "v\"\u{e9}"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "resourceVersion": "9"}}),
        ];
        for (items, continue_token) in [
            (&objects[..], Some("9.2f61".to_string())),
            (&objects[..0], None),
        ] {
            let page = ListPage {
                items: items
                    .iter()
                    .map(|o| EncodedObject::whole(Bytes::from(serde_json::to_vec(o).unwrap())))
                    .collect(),
                revision: 9,
                continue_token: continue_token.clone(),
            };
            let decoded = ListPage {
                items: items.to_vec(),
                revision: 9,
                continue_token,
            };
            let want = serde_json::to_vec(&json!({
                "kind": info.list_kind(),
                "apiVersion": info.api_version(),
                "metadata": decoded.list_meta(),
                "items": decoded.items,
            }))
            .unwrap();
            assert_eq!(
                String::from_utf8(encoded_list(&info, &page)).unwrap(),
                String::from_utf8(want).unwrap()
            );
        }
    }
}
