//! Audit: upstream's audit Policy decides per request how much is recorded
//! ([`policy`]); each recorded stage becomes one `audit.k8s.io/v1 Event`,
//! serialized as upstream's log backend writes it (one JSON object per
//! line, fields in upstream's order), and kept in the sealed store
//! ([`log`]). `GET /audit/events` (a non-resource URL, so only users RBAC
//! allows it, `cluster-admin` by default) returns the lines, `?follow=true`
//! keeps streaming them (`kubectl get --raw /audit/events`), and [`webhook`] sends them on
//! to a server outside the enclave.

pub mod log;
pub mod policy;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;

pub use log::AuditLog;
pub use policy::{Level, Policy, Stage};

use super::authz::Attributes;
use crate::registry::{UserInfo, meta};

tokio::task_local! {
    static CURRENT: Option<Arc<RequestAudit>>;
}

/// Runs `f` (a request's handling) with `audit` as the current request's audit.
pub async fn scope<F: std::future::Future>(audit: Option<Arc<RequestAudit>>, f: F) -> F::Output {
    CURRENT.scope(audit, f).await
}

/// Records the request body of the request being handled (JSON, YAML or
/// protobuf, by `content_type`) if it is audited: its metadata completes the event's object
/// reference, and the body is kept if the level asks.
pub fn note_request_body(body: &[u8], content_type: &str) {
    let _ = CURRENT.try_with(|c| {
        if let Some(r) = c.as_ref().filter(|_| !body.is_empty()) {
            let media = content_type.split(';').next().unwrap_or("").trim();
            let v = if media == crate::api::protobuf::CONTENT_TYPE {
                crate::api::protobuf::decode(body).ok()
            } else {
                serde_json::from_slice::<Value>(body)
                    .ok()
                    .or_else(|| serde_norway::from_slice::<Value>(body).ok())
            };
            if let Some(v) = v {
                r.request_object(v);
            }
        }
    });
}

/// The audit policy and the log it writes to.
#[derive(Debug)]
pub struct Auditor {
    policy: Policy,
    log: Arc<AuditLog>,
    webhook: Option<Arc<webhook::WebhookBackend>>,
}

#[derive(Serialize)]
struct User<'a> {
    username: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    uid: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    groups: &'a [String],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    extra: &'a BTreeMap<String, Vec<String>>,
}

impl<'a> User<'a> {
    fn of(u: &'a UserInfo) -> Self {
        User {
            username: &u.name,
            uid: &u.uid,
            groups: &u.groups,
            extra: &u.extra,
        }
    }
}

#[derive(Serialize, Default, Debug, Clone)]
#[serde(rename_all = "camelCase")]
struct ObjectRef {
    #[serde(skip_serializing_if = "String::is_empty")]
    resource: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    uid: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    api_group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    resource_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    subresource: String,
}

impl ObjectRef {
    /// Upstream's `LogRequestObject`: what the URL did not say (a create's name, the uid and
    /// resourceVersion of the object sent) is taken from the request body's metadata.
    fn completed_from(&self, body: &Value) -> ObjectRef {
        let mut r = self.clone();
        let field = |k: &str| {
            body.pointer(&format!("/metadata/{k}"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        for (slot, key) in [
            (&mut r.namespace, "namespace"),
            (&mut r.name, "name"),
            (&mut r.uid, "uid"),
            (&mut r.resource_version, "resourceVersion"),
        ] {
            if slot.is_empty() {
                *slot = field(key);
            }
        }
        r
    }
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct ResponseStatus<'a> {
    metadata: Empty,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    code: u16,
}

/// One `audit.k8s.io/v1 Event`, fields in upstream's order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    kind: &'static str,
    api_version: &'static str,
    level: Level,
    #[serde(rename = "auditID")]
    audit_id: &'a str,
    stage: &'static str,
    #[serde(rename = "requestURI")]
    request_uri: &'a str,
    verb: &'a str,
    user: User<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    impersonated_user: Option<User<'a>>,
    #[serde(rename = "sourceIPs")]
    source_ips: &'a [String],
    #[serde(skip_serializing_if = "str::is_empty")]
    user_agent: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    object_ref: Option<&'a ObjectRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_status: Option<ResponseStatus<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_object: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_object: Option<&'a Value>,
    request_received_timestamp: &'a str,
    stage_timestamp: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
}

/// Upstream's `MicroTime` format.
fn micro_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// What is known about a request being audited.
#[derive(Debug)]
pub struct RequestAudit {
    log: Arc<AuditLog>,
    decision: policy::Decision,
    id: String,
    uri: String,
    verb: String,
    user: UserInfo,
    source_ips: Vec<String>,
    user_agent: String,
    object_ref: Option<ObjectRef>,
    received: String,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    impersonated: Option<UserInfo>,
    annotations: BTreeMap<String, String>,
    request_object: Option<Value>,
    response_object: Option<Value>,
    /// The object reference completed from the request body.
    object_ref: Option<ObjectRef>,
}

/// The parts of a request an event records.
#[derive(Debug)]
pub struct RequestFacts<'a> {
    /// Path and query.
    pub uri: &'a str,
    /// The client's address (`ip:port`, or a transport name).
    pub peer: &'a str,
    /// The User-Agent.
    pub user_agent: &'a str,
}

impl Auditor {
    /// Records what `policy` asks for into `log`.
    pub fn new(policy: Policy, log: Arc<AuditLog>) -> Self {
        Auditor {
            policy,
            log,
            webhook: None,
        }
    }

    /// Also delivers the log's events to a webhook.
    #[must_use]
    pub fn with_webhook(mut self, webhook: webhook::WebhookBackend) -> Self {
        self.webhook = Some(Arc::new(webhook));
        self
    }

    /// The log (for reading).
    pub fn log(&self) -> &Arc<AuditLog> {
        &self.log
    }

    /// The webhook backend, if one is configured.
    pub fn webhook(&self) -> Option<&Arc<webhook::WebhookBackend>> {
        self.webhook.as_ref()
    }

    /// Starts auditing a request of `attrs` (by the authenticated user);
    /// `None` when the policy records nothing. Emits `RequestReceived`.
    pub fn begin(&self, attrs: &Attributes, facts: &RequestFacts<'_>) -> Option<Arc<RequestAudit>> {
        let decision = self.policy.decide(attrs);
        if decision.level == Level::None {
            return None;
        }
        let ip = facts
            .peer
            .rsplit_once(':')
            .map_or(facts.peer, |(h, _)| h)
            .trim_matches(['[', ']']);
        let object_ref = attrs.resource_request.then(|| ObjectRef {
            resource: attrs.resource.clone(),
            namespace: attrs.namespace.clone(),
            name: attrs.name.clone(),
            api_group: attrs.api_group.clone(),
            api_version: attrs.api_version.clone(),
            subresource: attrs.subresource.clone(),
            ..Default::default()
        });
        let r = Arc::new(RequestAudit {
            log: self.log.clone(),
            decision,
            id: meta::new_uid(),
            uri: facts.uri.to_string(),
            verb: attrs.verb.clone(),
            user: attrs.user.clone(),
            source_ips: vec![ip.to_string()],
            user_agent: facts.user_agent.to_string(),
            object_ref,
            received: micro_now(),
            state: Mutex::new(State::default()),
        });
        r.emit(Stage::RequestReceived, None);
        Some(r)
    }
}

/// The HTTP status a response code stands for, with a failure's message and reason.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The code.
    pub code: u16,
    /// For failures: the Status message.
    pub message: Option<String>,
    /// For failures: the Status reason.
    pub reason: Option<String>,
}

impl RequestAudit {
    /// The level recorded.
    pub fn level(&self) -> Level {
        self.decision.level
    }

    /// Records the user the request acts as.
    pub fn impersonated(&self, user: &UserInfo) {
        if let Ok(mut s) = self.state.lock() {
            s.impersonated = Some(user.clone());
        }
    }

    /// Adds an annotation (authorization decision, admission plugins).
    pub fn annotate(&self, key: &str, value: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.annotations.insert(key.to_string(), value.to_string());
        }
    }

    fn strip(&self, mut v: Value) -> Value {
        if self.decision.omit_managed_fields
            && let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut)
        {
            m.remove("managedFields");
        }
        v
    }

    /// Records the decoded request body: at every level its metadata completes the object
    /// reference, at level Request and above the body itself is kept.
    pub fn request_object(&self, v: Value) {
        let completed = self.object_ref.as_ref().map(|r| r.completed_from(&v));
        let body = (self.decision.level >= Level::Request).then(|| self.strip(v));
        if let Ok(mut s) = self.state.lock() {
            s.object_ref = completed;
            if body.is_some() {
                s.request_object = body;
            }
        }
    }

    /// Whether the response body should be recorded.
    pub fn wants_response_body(&self) -> bool {
        self.decision.level >= Level::RequestResponse
    }

    /// Records the response body (at level RequestResponse).
    pub fn response_body(&self, body: &[u8]) {
        if !self.wants_response_body() {
            return;
        }
        if let Ok(v) = serde_json::from_slice::<Value>(body) {
            let v = self.strip(v);
            if let Ok(mut s) = self.state.lock() {
                s.response_object = Some(v);
            }
        }
    }

    /// Emits the event of `stage` (unless the policy omits it).
    pub fn emit(&self, stage: Stage, outcome: Option<&Outcome>) {
        if self.decision.omit_stages.contains(&stage) {
            return;
        }
        let Ok(state) = self.state.lock() else { return };
        let complete = stage != Stage::RequestReceived;
        let event = Event {
            kind: "Event",
            api_version: "audit.k8s.io/v1",
            level: self.decision.level,
            audit_id: &self.id,
            stage: stage.as_str(),
            request_uri: &self.uri,
            verb: &self.verb,
            user: User::of(&self.user),
            impersonated_user: state.impersonated.as_ref().map(User::of),
            source_ips: &self.source_ips,
            user_agent: &self.user_agent,
            object_ref: state.object_ref.as_ref().or(self.object_ref.as_ref()),
            response_status: outcome.map(|o| ResponseStatus {
                metadata: Empty {},
                status: o.message.as_ref().map(|_| "Failure"),
                message: o.message.as_deref(),
                reason: o.reason.as_deref(),
                code: o.code,
            }),
            request_object: state.request_object.as_ref(),
            response_object: if complete {
                state.response_object.as_ref()
            } else {
                None
            },
            request_received_timestamp: &self.received,
            stage_timestamp: micro_now(),
            annotations: &state.annotations,
        };
        if let Ok(line) = serde_json::to_vec(&event) {
            self.log.push(&line);
        }
    }
}

/// A long-running response body that records `ResponseComplete` when it
/// ends (or the client goes away).
struct Completing {
    inner: crate::api::http::Body,
    audit: Arc<RequestAudit>,
    outcome: Outcome,
}

impl hyper::body::Body for Completing {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Completing {
    fn drop(&mut self) {
        self.audit
            .emit(Stage::ResponseComplete, Some(&self.outcome));
    }
}

/// `body`, recording `ResponseComplete` for `audit` when it is done.
pub fn completing(
    body: crate::api::http::Body,
    audit: Arc<RequestAudit>,
    outcome: Outcome,
) -> crate::api::http::Body {
    use http_body_util::BodyExt;
    Completing {
        inner: body,
        audit,
        outcome,
    }
    .boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_fields_are_in_upstream_order() {
        let u = UserInfo::new("alice", &["system:authenticated"]);
        let out = serde_json::to_string(&Event {
            kind: "Event",
            api_version: "audit.k8s.io/v1",
            level: Level::Metadata,
            audit_id: "id",
            stage: "ResponseComplete",
            request_uri: "/api/v1/pods",
            verb: "list",
            user: User::of(&u),
            impersonated_user: None,
            source_ips: &["127.0.0.1".to_string()],
            user_agent: "kubectl",
            object_ref: Some(&ObjectRef {
                resource: "pods".into(),
                api_version: "v1".into(),
                ..Default::default()
            }),
            response_status: Some(ResponseStatus {
                metadata: Empty {},
                status: None,
                message: None,
                reason: None,
                code: 200,
            }),
            request_object: None,
            response_object: None,
            request_received_timestamp: "t0",
            stage_timestamp: "t1".into(),
            annotations: &BTreeMap::from([(
                "authorization.k8s.io/decision".to_string(),
                "allow".to_string(),
            )]),
        })
        .unwrap();
        assert_eq!(
            out,
            r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"id","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"list","user":{"username":"alice","groups":["system:authenticated"]},"sourceIPs":["127.0.0.1"],"userAgent":"kubectl","objectRef":{"resource":"pods","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"t0","stageTimestamp":"t1","annotations":{"authorization.k8s.io/decision":"allow"}}"#
        );
        assert!(micro_now().ends_with('Z') && micro_now().len() == 27);
    }

    #[test]
    fn a_request_body_completes_the_object_reference_as_upstream() {
        let from_url = ObjectRef {
            resource: "configmaps".into(),
            namespace: "default".into(),
            api_version: "v1".into(),
            ..Default::default()
        };
        let body = serde_json::json!({"metadata": {"name": "cm", "namespace": "other",
            "uid": "u-1", "resourceVersion": "42"}});
        let r = from_url.completed_from(&body);
        // The URL's namespace stands; the name, uid and resourceVersion come from the body.
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"resource":"configmaps","namespace":"default","name":"cm","uid":"u-1","apiVersion":"v1","resourceVersion":"42"}"#
        );
    }
}
