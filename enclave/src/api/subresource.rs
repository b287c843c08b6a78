//! `/status` and `/scale`, for every resource whose table entry lists them.

use hyper::{Method, Response};
use serde_json::{Value, json};

use super::ApiServer;
use super::http::{self, Body};
use super::resource::{
    ResourceRequest, apply_body, check_patch_options, is_apply, json_body, object_response,
    patch_type, write_opts,
};
use crate::registry::generic::Endpoint;
use crate::registry::kinds::{format_label_map, set_at};
use crate::registry::patch;
use crate::registry::{Error, ResourceInfo, Result, ScalePaths, Subresource};

/// What a binding answers: a `Success` Status with code 201, as upstream's.
pub(crate) fn bound() -> Response<Body> {
    http::json(
        201,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

/// The `autoscaling/v1 Scale` view of an object, its replicas at `paths`.
fn scale_of(obj: &Value, paths: &ScalePaths) -> Value {
    let selector = match &paths.label_selector {
        Some(ptr) => obj
            .pointer(ptr)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        // A ReplicationController's selector is the label map itself.
        None if obj.get("kind").and_then(Value::as_str) == Some("ReplicationController") => {
            format_label_map(obj.pointer("/spec/selector"))
        }
        None => format_label_map(obj.pointer("/spec/selector/matchLabels")),
    };
    let meta = obj.get("metadata").cloned().unwrap_or(Value::Null);
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.get("name"), "namespace": meta.get("namespace"), "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"), "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer(&paths.spec_replicas).cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": obj.pointer(&paths.status_replicas).cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

fn replicas_of(scale: &Value, info: &ResourceInfo) -> Result<i64> {
    let r = scale
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if r < 0 {
        return Err(Error::Invalid {
            kind: "Scale".into(),
            group: "autoscaling".into(),
            name: scale
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .into(),
            causes: vec![crate::registry::FieldError::invalid_int(
                "spec.replicas",
                r,
                "must be greater than or equal to 0",
            )],
        });
    }
    let _ = info;
    Ok(r)
}

impl ApiServer {
    /// `POST pods/{name}/binding`: assigns the pod to the Binding's node
    /// and answers `201` with a Success Status, as upstream.
    async fn binding(&self, req: &ResourceRequest) -> Result<Response<Body>> {
        if req.method != Method::POST {
            return Err(Error::MethodNotAllowed(format!(
                "the server does not allow this method on the requested resource ({})",
                req.method
            )));
        }
        let body = json_body(req)?;
        let name = req.target.name.as_deref().unwrap_or("");
        self.objects
            .bind(
                &req.target.info,
                req.target.namespace.as_deref(),
                name,
                body,
                req.query.dry_run,
            )
            .await?;
        Ok(bound())
    }

    /// Serves `{name}/{sub}`.
    pub(crate) async fn subresource(&self, req: &ResourceRequest, sub: &str) -> Response<Body> {
        let info = &req.target.info;
        if sub == "eviction" && info.has(Subresource::Eviction) {
            return self.evict(req).await;
        }
        let which = match sub {
            "status" if info.has(Subresource::Status) => Subresource::Status,
            "scale" if info.has(Subresource::Scale) => Subresource::Scale,
            "token" if info.has(Subresource::Token) => {
                return self
                    .token_request(req)
                    .await
                    .unwrap_or_else(|e| http::error(&e));
            }
            "approval" if info.has(Subresource::Approval) => {
                return self
                    .csr_approval(req)
                    .await
                    .unwrap_or_else(|e| http::error(&e));
            }
            "binding" if info.has(Subresource::Binding) => Subresource::Binding,
            _ => return http::path_not_found(),
        };
        if which == Subresource::Binding {
            return self.binding(req).await.unwrap_or_else(|e| http::error(&e));
        }
        let ns = req.target.namespace.as_deref();
        let name = req.target.name.as_deref().unwrap_or("");
        let paths = info.strategy.scale_paths();
        let mut opts = write_opts(req);
        if which == Subresource::Scale {
            opts.subresource = Some("scale".into());
        }
        if req.method == Method::PATCH
            && let Err(e) = check_patch_options(req)
        {
            return http::error(&e);
        }
        let result = match (which, &req.method) {
            (Subresource::Status, &Method::PATCH) if is_apply(req) => {
                match (apply_body(req), check_patch_options(req)) {
                    (Ok(config), Ok(conflicts)) => self
                        .apply_at(req, Endpoint::Status, config, &opts, conflicts)
                        .await
                        .map(|w| object_response(req, 200, &w.object, &w.warnings)),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                }
            }
            (Subresource::Status, &Method::GET) => self
                .objects
                .get(info, ns, name)
                .await
                .map(|o| object_response(req, 200, &o, &[])),
            (Subresource::Status, &Method::PUT) => match json_body(req) {
                Ok(body) => self
                    .objects
                    .update_at(Endpoint::Status, info, ns, name, body, &opts)
                    .await
                    .map(|w| object_response(req, 200, &w.object, &w.warnings)),
                Err(e) => Err(e),
            },
            (Subresource::Status, &Method::PATCH) => match patch_type(req) {
                Ok(ty) => {
                    let body = req.body.clone();
                    self.objects
                        .patch_at(Endpoint::Status, info, ns, name, &opts, |cur| {
                            patch::apply(ty, cur, &body)
                        })
                        .await
                        .map(|w| object_response(req, 200, &w.object, &w.warnings))
                }
                Err(e) => Err(e),
            },
            (Subresource::Scale, &Method::GET) => self
                .objects
                .get(info, ns, name)
                .await
                .map(|o| http::json(200, &scale_of(&o, &paths))),
            (Subresource::Scale, &Method::PUT | &Method::PATCH) => {
                let put = req.method == Method::PUT;
                let parsed = if put {
                    json_body(req).map(Some)
                } else {
                    patch_type(req).map(|_| None)
                };
                match parsed {
                    Err(e) => Err(e),
                    Ok(put_body) => {
                        let body = req.body.clone();
                        let ty = if put { None } else { patch_type(req).ok() };
                        self.objects
                            .patch(info, ns, name, &opts, |cur| {
                                let current = scale_of(cur, &paths);
                                let wanted = match (&put_body, ty) {
                                    (Some(b), _) => b.clone(),
                                    (None, Some(ty)) => patch::apply(ty, &current, &body)?,
                                    (None, None) => current.clone(),
                                };
                                let mut out = cur.clone();
                                set_at(
                                    &mut out,
                                    &paths.spec_replicas,
                                    json!(replicas_of(&wanted, info)?),
                                );
                                // A resourceVersion in a PUT Scale is a precondition on the object.
                                if let Some(rv) = wanted
                                    .pointer("/metadata/resourceVersion")
                                    .filter(|v| !v.is_null())
                                {
                                    out["metadata"]["resourceVersion"] = rv.clone();
                                }
                                Ok(out)
                            })
                            .await
                            .map(|w| http::json(200, &scale_of(&w.object, &paths)))
                    }
                }
            }
            (_, m) => Err(Error::MethodNotAllowed(format!(
                "the server does not allow this method on the requested resource ({m})"
            ))),
        };
        result.unwrap_or_else(|e| http::error(&e))
    }
}
