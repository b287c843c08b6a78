//! Requests to a version served from another version's storage (autoscaling/v1
//! HorizontalPodAutoscalers, stored as autoscaling/v2; a custom resource's versions other than its
//! storage version): the storage version's resource serves them, with its defaults, validation and
//! admission; the body is converted to the stored form on the way in, and every object on the way out
//! (single objects, lists, tables and watch events) to the served form, as kube-apiserver's codecs
//! convert. A merge, JSON or strategic patch applies to the served form, as upstream applies it; a
//! server-side apply is converted when the conversion is lossless (custom resources) and refused
//! otherwise (HPA v1, whose annotations would make field ownership wrong).

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Method, Response};
use serde_json::Value;

use super::ApiServer;
use super::http::{self, Body};
use super::resource::{
    ResourceRequest, apply_body, check_patch_options, is_apply, json_body, object_response,
    patch_type, write_opts,
};
use crate::registry::generic::Endpoint;
use crate::registry::patch;
use crate::registry::{Conversion, Error, Result};

impl ApiServer {
    /// Serves `req`, whose resource is `conversion`'s served version.
    pub(super) async fn converted(
        &self,
        mut req: ResourceRequest,
        conversion: Conversion,
    ) -> Response<Body> {
        let served = req.target.info.clone();
        let Some(storage) = self.objects.table().lookup(
            &served.group,
            conversion.storage_version(),
            &served.resource,
        ) else {
            return http::path_not_found();
        };
        req.target.info = storage;
        let served_version = served.api_version();
        let status_only = match req.target.subresource.as_deref() {
            None => false,
            Some("status") => true,
            // A Scale is the same in every version of the resource.
            Some("scale") => {
                return convert_whole(self.dispatch(req).await, &conversion, &served_version).await;
            }
            Some(_) => return http::path_not_found(),
        };
        if req.method == Method::PATCH {
            return self
                .patch_converted(&req, &conversion, status_only)
                .await
                .unwrap_or_else(|e| http::error(&e));
        }
        if matches!(req.method, Method::POST | Method::PUT) {
            match json_body(&req).and_then(|body| conversion.to_storage(body)) {
                Ok(stored) => {
                    req.body = Bytes::from(stored.to_string());
                    req.content_type = "application/json".into();
                }
                Err(e) => return http::error(&e),
            }
        }
        let watch = req.query.watch;
        let response = self.dispatch(req).await;
        if watch {
            convert_stream(response, conversion, served_version)
        } else {
            convert_whole(response, &conversion, &served_version).await
        }
    }

    /// A non-apply PATCH: applied to the object's served form, which is then converted back.
    async fn patch_converted(
        &self,
        req: &ResourceRequest,
        conversion: &Conversion,
        status_only: bool,
    ) -> Result<Response<Body>> {
        let conflicts = check_patch_options(req)?;
        let mut opts = write_opts(req);
        let endpoint = if status_only {
            opts.subresource = Some("status".into());
            Endpoint::Status
        } else {
            Endpoint::Main
        };
        let (ns, name) = (
            req.target.namespace.as_deref(),
            req.target.name.as_deref().unwrap_or(""),
        );
        if is_apply(req) {
            if !conversion.is_lossless() {
                return Err(Error::UnsupportedMediaType(format!(
                    "server-side apply of {} {} is not supported; apply its {} form",
                    req.target.info.group,
                    req.target.info.kind,
                    req.target.info.api_version()
                )));
            }
            let config = conversion.to_storage(apply_body(req)?)?;
            let written = self
                .apply_at(req, endpoint, config, &opts, conflicts)
                .await?;
            return Ok(object_response(
                req,
                written.code(),
                &conversion.to_served(&written.object),
                &written.warnings,
            ));
        }
        let ty = patch_type(req)?;
        serde_json::from_slice::<Value>(&req.body)
            .map_err(|e| Error::BadRequest(format!("error decoding patch: {e}")))?;
        let body = req.body.clone();
        let written = self
            .objects
            .patch_at(endpoint, &req.target.info, ns, name, &opts, |stored| {
                let patched = patch::apply(ty, &conversion.to_served(stored), &body)?;
                conversion.to_storage(patched)
            })
            .await?;
        Ok(object_response(
            req,
            200,
            &conversion.to_served(&written.object),
            &written.warnings,
        ))
    }
}

/// The served form of one response value: an object, the items of a list, or the objects of a table's rows.
fn convert_value(value: &mut Value, conversion: &Conversion, served_version: &str) {
    match value.get("kind").and_then(Value::as_str) {
        Some("Table") => {
            for row in value
                .get_mut("rows")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(object) = row.get_mut("object") {
                    *object = conversion.to_served(object);
                }
            }
        }
        Some(kind) if kind.ends_with("List") && value.get("items").is_some() => {
            value["apiVersion"] = Value::String(served_version.to_string());
            for item in value
                .get_mut("items")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                *item = conversion.to_served(item);
            }
        }
        _ => *value = conversion.to_served(value),
    }
}

/// A whole response with its objects in the served form; errors (a `Status`) pass unchanged.
async fn convert_whole(
    response: Response<Body>,
    conversion: &Conversion,
    served_version: &str,
) -> Response<Body> {
    let (parts, body) = response.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return http::status(500, "InternalError", &format!("reading a response: {e}"));
        }
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, http::full(bytes));
    };
    if parts.status.is_success() {
        convert_value(&mut value, conversion, served_version);
    }
    let mut parts = parts;
    parts.headers.remove(hyper::header::CONTENT_LENGTH);
    Response::from_parts(parts, http::full(value.to_string()))
}

/// A watch response whose events' objects are converted as they pass. The watch writes each event as
/// one whole line per frame; a line that does not parse passes unchanged.
fn convert_stream(
    response: Response<Body>,
    conversion: Conversion,
    served_version: String,
) -> Response<Body> {
    let (parts, body) = response.into_parts();
    let body = body
        .map_frame(move |frame| {
            frame.map_data(|data| {
                let mut out = Vec::with_capacity(data.len() + 64);
                for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    match serde_json::from_slice::<Value>(line) {
                        Ok(mut event) => {
                            let bookmark =
                                event.get("type").and_then(Value::as_str) == Some("BOOKMARK");
                            if let Some(object) = event.get_mut("object") {
                                if bookmark {
                                    object["apiVersion"] = Value::String(served_version.clone());
                                } else {
                                    convert_value(object, &conversion, &served_version);
                                }
                            }
                            out.extend_from_slice(event.to_string().as_bytes());
                        }
                        Err(_) => out.extend_from_slice(line),
                    }
                    out.push(b'\n');
                }
                Bytes::from(out)
            })
        })
        .boxed_unsync();
    Response::from_parts(parts, body)
}
