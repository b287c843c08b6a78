//! `POST /api/v1/namespaces/{ns}/pods/{name}/eviction`: decodes the
//! `policy/v1` (or `v1beta1`) Eviction and hands it to
//! [`ObjectStore::evict`](crate::registry::ObjectStore::evict).

use hyper::{Method, Response};
use serde_json::Value;

use super::ApiServer;
use super::http::{self, Body};
use super::query;
use super::resource::{ResourceRequest, json_body};
use crate::registry::generic::DeleteOptions;
use crate::registry::{Error, Result};

/// The Eviction's `deleteOptions`, with the request's `dryRun` merged in
/// (upstream's `propagateDryRun`).
fn delete_options(eviction: &Value, query_dry_run: bool) -> Result<DeleteOptions> {
    let mut o = DeleteOptions::default();
    let Some(d) = eviction.get("deleteOptions").filter(|d| !d.is_null()) else {
        o.dry_run = query_dry_run;
        return Ok(o);
    };
    if let Some(p) = d.get("propagationPolicy").and_then(Value::as_str) {
        o.propagation = query::propagation(p)?;
    }
    o.grace_period_seconds = d.get("gracePeriodSeconds").and_then(Value::as_i64);
    if let Some(pre) = d.get("preconditions") {
        o.uid = pre.get("uid").and_then(Value::as_str).map(str::to_string);
        o.resource_version = pre
            .get("resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    let body_dry_run: Vec<&str> = d
        .get("dryRun")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let query_list: &[&str] = if query_dry_run { &["All"] } else { &[] };
    if !body_dry_run.is_empty() && query_dry_run && body_dry_run != query_list {
        return Err(Error::BadRequest(format!(
            "Non-matching dry-run options in request and content: {query_list:?} and {body_dry_run:?}"
        )));
    }
    o.dry_run = query_dry_run || body_dry_run.contains(&"All");
    Ok(o)
}

impl ApiServer {
    /// Serves `pods/{name}/eviction`.
    pub(super) async fn evict(&self, req: &ResourceRequest) -> Response<Body> {
        if req.method != Method::POST {
            return http::error(&Error::MethodNotAllowed(format!(
                "the server does not allow this method on the requested resource ({})",
                req.method
            )));
        }
        let ns = req.target.namespace.as_deref().unwrap_or("");
        let name = req.target.name.as_deref().unwrap_or("");
        let result = async {
            let body = json_body(req)?;
            let api_version = body.get("apiVersion").and_then(Value::as_str).unwrap_or("");
            if !matches!(api_version, "" | "policy/v1" | "policy/v1beta1") {
                return Err(Error::BadRequest(format!(
                    "unsupported Eviction version {api_version:?}: policy/v1 and policy/v1beta1 are accepted"
                )));
            }
            if body.pointer("/metadata/name").and_then(Value::as_str) != Some(name) {
                return Err(Error::BadRequest(
                    "name in URL does not match name in Eviction object".into(),
                ));
            }
            let opts = delete_options(&body, req.query.dry_run)?;
            self.objects.evict(ns, name, &opts).await
        }
        .await;
        match result {
            Ok((code, status)) => http::json(code, &status),
            Err(e) => http::error(&e),
        }
    }
}
