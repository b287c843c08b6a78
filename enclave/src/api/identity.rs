//! The identity endpoints: TokenRequest (`serviceaccounts/NAME/token`),
//! TokenReview, the authorization reviews, OIDC discovery of the token
//! issuer (`/.well-known/openid-configuration`, `/openid/v1/jwks`),
//! CertificateSigningRequest approval, and the audit log reader. Also keeps
//! the token cache in step with deletions the API did not serve.

use std::sync::Arc;

use hyper::{Response, header};
use serde_json::{Value, json};

use super::ApiServer;
use super::authz::reviews::{self, Review};
use super::http::{self, Body};
use super::resource::{ResourceRequest, json_body, object_response, write_opts};
use crate::auth::serviceaccount::{self, Binding, ServiceAccountTokens};
use crate::registry::generic::Endpoint;
use crate::registry::kinds::user_info_json;
use crate::registry::{
    Error, FieldError, ObjectStore, Result, UserInfo, WatchEvent, WatchOptions, meta,
};

/// The shortest token lifetime TokenRequest accepts (upstream's `MinTokenAgeSec`).
const MIN_TOKEN_SECONDS: i64 = 600;
/// The longest (upstream's `MaxTokenAgeSec`, 2^32 s).
const MAX_TOKEN_SECONDS: i64 = 1 << 32;
/// The default lifetime.
const DEFAULT_TOKEN_SECONDS: i64 = 3600;

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn json_response(code: u16, body: &Value, content_type: &str) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "public, max-age=3600")
        .body(http::full(body.to_string()))
        .unwrap_or_else(|_| http::path_not_found())
}

/// `GET /.well-known/openid-configuration`.
pub(crate) fn openid_configuration(server: &ApiServer) -> Response<Body> {
    let Some(t) = &server.security.tokens else {
        return http::path_not_found();
    };
    let jwks_uri = server
        .config
        .jwks_uri
        .clone()
        .unwrap_or_else(|| format!("https://{}/openid/v1/jwks", server.config.server_address));
    json_response(
        200,
        &json!({
            "issuer": t.issuer(),
            "jwks_uri": jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        }),
        "application/json",
    )
}

/// `GET /openid/v1/jwks`.
pub(crate) fn jwks(server: &ApiServer) -> Response<Body> {
    let Some(t) = &server.security.tokens else {
        return http::path_not_found();
    };
    json_response(
        200,
        &json!({"keys": [t.key().jwk()]}),
        "application/jwk-set+json",
    )
}

fn invalid(kind: &str, name: &str, causes: Vec<FieldError>) -> Error {
    Error::Invalid {
        kind: kind.into(),
        group: "authentication.k8s.io".into(),
        name: name.into(),
        causes,
    }
}

async fn get(objects: &ObjectStore, resource: &str, ns: Option<&str>, name: &str) -> Result<Value> {
    let info = objects
        .table()
        .lookup("", "v1", resource)
        .ok_or_else(|| Error::BadRequest(format!("{resource} are not served")))?;
    objects.get(&info, ns, name).await
}

impl ApiServer {
    /// `POST .../serviceaccounts/NAME/token` (upstream's `TokenREST.Create`).
    pub(crate) async fn token_request(&self, req: &ResourceRequest) -> Result<Response<Body>> {
        let tokens = self.security.tokens.clone().ok_or_else(|| {
            Error::MethodNotAllowed("service account tokens are not configured".into())
        })?;
        if req.method != hyper::Method::POST {
            return Err(Error::MethodNotAllowed(format!(
                "the server does not allow this method on the requested resource ({})",
                req.method
            )));
        }
        let ns = req.target.namespace.as_deref().unwrap_or("");
        let name = req.target.name.as_deref().unwrap_or("");
        let mut body = json_body(req)?;
        let exp = body
            .pointer("/spec/expirationSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(DEFAULT_TOKEN_SECONDS);
        if exp < MIN_TOKEN_SECONDS {
            return Err(invalid(
                "TokenRequest",
                name,
                vec![FieldError {
                    reason: "FieldValueInvalid",
                    field: "spec.expirationSeconds".into(),
                    message: format!(
                        "spec.expirationSeconds: Invalid value: {exp}: may not specify a duration less than 10 minutes"
                    ),
                }],
            ));
        }
        if exp > MAX_TOKEN_SECONDS {
            return Err(invalid(
                "TokenRequest",
                name,
                vec![FieldError {
                    reason: "FieldValueTooLong",
                    field: "spec.expirationSeconds".into(),
                    message: "spec.expirationSeconds: Too long: may not specify a duration larger than 2^32 seconds".into(),
                }],
            ));
        }
        let account = get(&self.objects, "serviceaccounts", Some(ns), name).await?;
        let sa_uid = meta::meta_str(&account, "uid").unwrap_or("").to_string();
        let mut audiences: Vec<String> = body
            .pointer("/spec/audiences")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if audiences.is_empty() {
            audiences = tokens.api_audiences().to_vec();
        }
        let mut binding = Binding::default();
        if let Some(r) = body
            .pointer("/spec/boundObjectRef")
            .filter(|v| v.is_object())
        {
            let (kind, api_version, bname, buid) = (
                s(r, "/kind"),
                s(r, "/apiVersion"),
                s(r, "/name"),
                s(r, "/uid"),
            );
            let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
            let (resource, scope_ns) = match (group, kind) {
                ("", "Pod") => ("pods", Some(ns)),
                ("", "Secret") => ("secrets", Some(ns)),
                ("", "Node") => ("nodes", None),
                _ => {
                    let gvk = if group.is_empty() {
                        format!(
                            "/{}, Kind={kind}",
                            api_version.rsplit('/').next().unwrap_or("")
                        )
                    } else {
                        format!("{api_version}, Kind={kind}")
                    };
                    return Err(Error::BadRequest(format!(
                        "cannot bind token to object of type {gvk}"
                    )));
                }
            };
            let obj = get(&self.objects, resource, scope_ns, bname).await?;
            let uid = meta::meta_str(&obj, "uid").unwrap_or("").to_string();
            if !buid.is_empty() && buid != uid {
                return Err(Error::Conflict {
                    group: String::new(),
                    resource: kind.to_string(),
                    name: bname.to_string(),
                    message: format!(
                        "Operation cannot be fulfilled on {kind} {bname:?}: the UID in the bound object reference ({buid}) does not match the UID in record. The object might have been deleted and then recreated"
                    ),
                });
            }
            match resource {
                "pods" => {
                    if s(&obj, "/spec/serviceAccountName") != name {
                        return Err(Error::BadRequest(format!(
                            "cannot bind token for serviceaccount {name:?} to pod running with different serviceaccount name."
                        )));
                    }
                    binding.pod = Some((bname.to_string(), uid.clone()));
                    let node = s(&obj, "/spec/nodeName");
                    if !node.is_empty()
                        && let Ok(n) = get(&self.objects, "nodes", None, node).await
                    {
                        binding.node = Some((
                            node.to_string(),
                            meta::meta_str(&n, "uid").unwrap_or("").to_string(),
                        ));
                    }
                }
                "secrets" => binding.secret = Some((bname.to_string(), uid.clone())),
                _ => binding.node = Some((bname.to_string(), uid.clone())),
            }
            body["spec"]["boundObjectRef"]["uid"] = json!(uid);
        }
        let (token, expiry) = tokens
            .issue(ns, name, &sa_uid, &audiences, exp, &binding)
            .map_err(|e| Error::BadRequest(format!("signing the token failed: {e}")))?;
        let expiry = jiff::Timestamp::from_second(expiry)
            .map(meta::format_time)
            .unwrap_or_default();
        let mut out = json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": meta::format_time(meta::now())},
            "spec": {"audiences": audiences, "expirationSeconds": exp},
            "status": {"token": token, "expirationTimestamp": expiry},
        });
        if let Some(r) = body
            .pointer("/spec/boundObjectRef")
            .filter(|v| v.is_object())
        {
            out["spec"]["boundObjectRef"] = r.clone();
        }
        Ok(http::json(201, &out))
    }

    /// Answers a TokenReview `obj`.
    async fn token_review(&self, obj: &Value) -> Result<Value> {
        let token = s(obj, "/spec/token");
        if token.is_empty() {
            return Err(Error::BadRequest(
                "token is required for TokenReview in authentication.k8s.io".into(),
            ));
        }
        let wanted: Vec<String> = obj
            .pointer("/spec/audiences")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let sa = self.auth.service_accounts();
        let api_auds: Vec<String> = sa.map(|t| t.api_audiences().to_vec()).unwrap_or_default();
        let result: std::result::Result<(UserInfo, Vec<String>), String> = match self
            .auth
            .bearer(&format!("Bearer {token}"))
        {
            Some(u) => {
                let auds = if wanted.is_empty() {
                    api_auds.clone()
                } else {
                    wanted.clone()
                };
                if !wanted.is_empty() && !wanted.iter().any(|a| api_auds.contains(a)) {
                    Err("token audiences are not accepted".into())
                } else {
                    Ok((super::auth::with_authenticated(u), auds))
                }
            }
            None => match sa {
                Some(t) => t
                    .review(&self.objects, token, &wanted)
                    .await
                    .map(|a| (super::auth::with_authenticated(a.user), a.audiences))
                    .map_err(|e| match e {
                        serviceaccount::TokenError::NotOurs => "invalid bearer token".to_string(),
                        other => format!("[invalid bearer token, {other}]"),
                    }),
                None => Err("invalid bearer token".into()),
            },
        };
        let mut out = obj.clone();
        out["status"] = match result {
            Ok((user, auds)) => {
                json!({"authenticated": true, "user": user_info_json(&user), "audiences": auds})
            }
            Err(e) => json!({"user": {}, "error": e}),
        };
        Ok(out)
    }

    /// Answers a review the registry cannot: TokenReview and the
    /// authorization reviews. `None` for other kinds.
    pub(crate) async fn answer_review(
        &self,
        req: &ResourceRequest,
        obj: &Value,
        user: &UserInfo,
    ) -> Option<Result<Value>> {
        let info = &req.target.info;
        if info.group == "authentication.k8s.io" && info.resource == "tokenreviews" {
            return Some(self.token_review(obj).await);
        }
        let review = Review::of(&info.group, &info.resource)?;
        let chain = &self.security.authorizer;
        Some(match review {
            Review::SelfRules => Ok(reviews::rules_review(chain, obj, user).await),
            other => {
                reviews::access_review(chain, other, obj, user, req.target.namespace.as_deref())
                    .await
            }
        })
    }

    /// `PUT/PATCH .../certificatesigningrequests/NAME/approval`: only the
    /// request's Approved and Denied conditions change.
    pub(crate) async fn csr_approval(&self, req: &ResourceRequest) -> Result<Response<Body>> {
        let info = &req.target.info;
        let name = req.target.name.as_deref().unwrap_or("");
        let mut opts = write_opts(req);
        opts.subresource = Some("approval".into());
        let w = match req.method {
            hyper::Method::GET => {
                let o = self.objects.get(info, None, name).await?;
                return Ok(object_response(req, 200, &o, &[]));
            }
            hyper::Method::PUT => {
                let body = json_body(req)?;
                let conditions = body
                    .pointer("/status/conditions")
                    .cloned()
                    .unwrap_or(json!([]));
                let rv = body.pointer("/metadata/resourceVersion").cloned();
                self.objects
                    .patch_at(Endpoint::Status, info, None, name, &opts, move |cur| {
                        let mut new = cur.clone();
                        new["status"]["conditions"] = conditions.clone();
                        if let Some(rv) = rv.clone().filter(|v| !v.is_null()) {
                            new["metadata"]["resourceVersion"] = rv;
                        }
                        Ok(new)
                    })
                    .await?
            }
            _ => {
                return Err(Error::MethodNotAllowed(format!(
                    "the server does not allow this method on the requested resource ({})",
                    req.method
                )));
            }
        };
        Ok(object_response(req, 200, &w.object, &w.warnings))
    }
}

/// Fills a new CertificateSigningRequest's requester fields from `user`
/// (upstream's `PrepareForCreate`: users cannot claim another identity).
pub(crate) fn set_csr_requester(body: &mut Value, user: &UserInfo) {
    let Some(spec) = body.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.insert("username".into(), json!(user.name));
    for (k, v) in [
        ("uid", json!(user.uid)),
        ("groups", json!(user.groups)),
        ("extra", json!(user.extra)),
    ] {
        let empty = match &v {
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        };
        if empty {
            spec.remove(k);
        } else {
            spec.insert(k.into(), v);
        }
    }
}

/// `GET /audit/events[?since=RFC3339][&follow=true]`: the audit log as
/// JSON lines; with `follow`, new events as they are written.
pub(crate) async fn audit_events(server: &ApiServer, query: Option<&str>) -> Response<Body> {
    let Some(auditor) = server.security.audit.clone() else {
        return http::status(
            404,
            "NotFound",
            "audit logging is not configured (--audit-policy-file)",
        );
    };
    let pairs = super::route::query_pairs(query.unwrap_or(""));
    let param = |k: &str| pairs.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
    let since = match param("since").filter(|v| !v.is_empty()) {
        None => 0,
        Some(v) => match v.parse::<jiff::Timestamp>() {
            Ok(t) => u64::try_from(t.as_nanosecond()).unwrap_or(0),
            Err(e) => return http::error(&Error::BadRequest(format!("since: {e}"))),
        },
    };
    let follow = matches!(param("follow"), Some("true" | "1"));
    let log = auditor.log().clone();
    let first = match log.read(since, None) {
        Ok(r) => r,
        Err(e) => return http::error(&Error::Store(e)),
    };
    let body = if follow {
        let stop = server.shutdown.clone();
        let stream = futures::stream::unfold(
            (Some(first.0), first.1, log.subscribe(), log, stop),
            move |(pending, last, mut notify, log, stop)| async move {
                if let Some(bytes) = pending {
                    return Some((
                        Ok(hyper::body::Frame::data(bytes::Bytes::from(bytes))),
                        (None, last, notify, log, stop),
                    ));
                }
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return None,
                        r = notify.changed() => r.ok()?,
                    }
                    let (bytes, next) = log.read(since, last.as_deref()).ok()?;
                    if !bytes.is_empty() {
                        return Some((
                            Ok(hyper::body::Frame::data(bytes::Bytes::from(bytes))),
                            (None, next, notify, log, stop),
                        ));
                    }
                }
            },
        );
        use http_body_util::BodyExt;
        http_body_util::StreamBody::new(stream).boxed_unsync()
    } else {
        http::full(first.0)
    };
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/jsonl")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(body)
        .unwrap_or_else(|_| http::path_not_found())
}

/// Revokes cached token checks whenever a pod, secret, service account or
/// node is deleted (or marked for deletion) by anyone, until `stop`.
pub(crate) async fn follow_revocations(
    objects: ObjectStore,
    tokens: Arc<ServiceAccountTokens>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for resource in ["pods", "secrets", "serviceaccounts", "nodes"] {
        let Some(info) = objects.table().lookup("", "v1", resource) else {
            continue;
        };
        let (objects, tokens, stop) = (objects.clone(), tokens.clone(), stop.clone());
        tasks.spawn(async move {
            loop {
                let opts = WatchOptions {
                    resource_version: Some(objects.store().revision().to_string()),
                    ..Default::default()
                };
                let Ok(mut stream) = objects.watch(info.clone(), None, opts).await else {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                    }
                };
                tokens.revoke_cached();
                loop {
                    let ev = tokio::select! {
                        () = stop.cancelled() => return,
                        ev = stream.next() => ev,
                    };
                    match ev {
                        None => return,
                        Some(WatchEvent::Error(_)) => break,
                        Some(WatchEvent::Deleted(_)) => tokens.revoke_cached(),
                        Some(WatchEvent::Modified(o))
                            if meta::meta_str(&o, "deletionTimestamp").is_some()
                                || resource == "secrets" =>
                        {
                            tokens.revoke_cached();
                        }
                        Some(_) => {}
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}
