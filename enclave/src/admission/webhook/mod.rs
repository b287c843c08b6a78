//! Dynamic admission through webhooks: upstream's `MutatingAdmissionWebhook` (in the mutating
//! phase: each matching webhook of every MutatingWebhookConfiguration, in name order, may patch
//! the object) and `ValidatingAdmissionWebhook` (in the validating phase: each matching webhook
//! may deny). The configurations are read from the store at each request (from the store's
//! resident copy, so without a RocksDB read). A webhook that cannot be called, or whose answer
//! is not usable, fails the request when its `failurePolicy` is `Fail` (the default) and is
//! skipped when it is `Ignore`, as upstream. In an enclave the calls go out through the host's
//! CONNECT proxy (`--admission-webhook-via`), which lets only allowlisted `host:port`s through.

mod call;

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::matching::{self, Attributes};
use super::{Operation, Outcome, Plugin, Request};
use crate::registry::kinds::user_info_json;
use crate::registry::{Error, ObjectStore, Result, meta};

/// Which phase a [`Webhooks`] plugin serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `MutatingAdmissionWebhook`: `mutatingwebhookconfigurations`.
    Mutating,
    /// `ValidatingAdmissionWebhook`: `validatingwebhookconfigurations`.
    Validating,
}

/// The admission webhooks of one phase.
#[derive(Debug, Clone)]
pub struct Webhooks {
    phase: Phase,
    /// The host's CONNECT proxy the calls go through; `None` dials directly (dev mode).
    via: Option<protocol::Endpoint>,
}

impl Webhooks {
    /// The webhooks of `phase`, called through the host's CONNECT proxy at `via` (the only way
    /// out of an enclave), or directly without one.
    #[must_use]
    pub fn new(phase: Phase, via: Option<protocol::Endpoint>) -> Self {
        Webhooks { phase, via }
    }
}

impl Phase {
    fn resource(self) -> &'static str {
        match self {
            Phase::Mutating => "mutatingwebhookconfigurations",
            Phase::Validating => "validatingwebhookconfigurations",
        }
    }
}

/// The webhooks of every configuration of `phase`, configurations in name order.
async fn webhooks(objects: &ObjectStore, phase: Phase) -> Result<Vec<Value>> {
    Ok(matching::configurations(objects, phase.resource())
        .await?
        .into_iter()
        .flat_map(|c| match c.get("webhooks") {
            Some(Value::Array(w)) => w.clone(),
            _ => Vec::new(),
        })
        .collect())
}

/// What an admission request is about, as an AdmissionReview's `request` and admission
/// policies' CEL `request` both say it: everything but the objects and the review's uid.
pub(super) fn request_attributes(req: &Request<'_>) -> Value {
    let info = req.info;
    let kind = json!({"group": info.group, "version": info.version, "kind": info.kind});
    let resource = json!({"group": info.group, "version": info.version, "resource": info.resource});
    let options_kind = match req.operation {
        Operation::Create => "CreateOptions",
        Operation::Update => "UpdateOptions",
        Operation::Delete => "DeleteOptions",
    };
    let mut r = json!({
        "kind": kind,
        "resource": resource,
        "requestKind": kind,
        "requestResource": resource,
        "name": req.name,
        "operation": req.operation.as_str(),
        "userInfo": req.user.map(user_info_json).unwrap_or_else(|| json!({"username": "system:apiserver", "groups": ["system:masters"]})),
        "dryRun": req.dry_run,
        "options": {"kind": options_kind, "apiVersion": "meta.k8s.io/v1"},
    });
    if let Some(ns) = req.namespace.filter(|n| !n.is_empty()) {
        r["namespace"] = json!(ns);
    }
    if let Some(sub) = req.subresource {
        r["subResource"] = json!(sub);
        r["requestSubResource"] = json!(sub);
    }
    r
}

/// The AdmissionReview request for `req` with `obj` (the object after earlier mutations).
fn review_request(req: &Request<'_>, obj: &Value, uid: &str) -> Value {
    let mut r = request_attributes(req);
    r["uid"] = json!(uid);
    r["object"] = match req.operation {
        Operation::Delete => Value::Null,
        _ => obj.clone(),
    };
    r["oldObject"] = match req.operation {
        Operation::Create => Value::Null,
        _ => req.old.cloned().unwrap_or(Value::Null),
    };
    r
}

/// Upstream's `ToStatusErr`: a denial keeps the webhook's code (at least 400) and reason.
fn denied(name: &str, status: Option<&Value>) -> Error {
    let status = status.cloned().unwrap_or(Value::Null);
    let text = |f: &str| {
        status
            .get(f)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let denied_by = format!("admission webhook {name:?} denied the request");
    let message = match (text("message"), text("reason")) {
        (m, _) if !m.is_empty() => format!("{denied_by}: {m}"),
        (_, r) if !r.is_empty() => format!("{denied_by}: {r}"),
        _ => format!("{denied_by} without explanation"),
    };
    let code = status
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| *c >= 400)
        .unwrap_or(400);
    Error::Admission {
        code,
        reason: text("reason"),
        message,
    }
}

/// A webhook that could not be called under `failurePolicy: Fail`.
fn call_failed(name: &str, e: &call::CallError) -> Error {
    Error::Admission {
        code: 500,
        reason: "InternalError".into(),
        message: format!("Internal error occurred: failed calling webhook {name:?}: {e}"),
    }
}

impl Webhooks {
    /// The webhooks of the phase that may concern `req` (none for admission's own
    /// configurations).
    async fn candidates(&self, objects: &ObjectStore, req: &Request<'_>) -> Result<Vec<Value>> {
        if matching::exempt(&Attributes::of(req)) {
            return Ok(Vec::new());
        }
        webhooks(objects, self.phase).await
    }

    /// Calls each of `hooks` that matches; mutating ones may change `obj`.
    async fn run(
        &self,
        hooks: Vec<Value>,
        objects: &ObjectStore,
        req: &Request<'_>,
        obj: &mut Value,
        out: &mut Outcome,
    ) -> Result<()> {
        let attrs = Attributes::of(req);
        let mut ns_object = None;
        for hook in hooks {
            let name = hook
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if !matching::rules_match(hook.get("rules"), &attrs) {
                continue;
            }
            let new = (req.operation != Operation::Delete).then_some(&*obj);
            if !matching::object_selected(hook.get("objectSelector"), new, req.old) {
                continue;
            }
            if ns_object.is_none() {
                ns_object = Some(matching::namespace_object(objects, req, obj).await?);
            }
            let labels = matching::labels_of(ns_object.as_ref().and_then(Option::as_ref));
            if !matching::namespace_selected(hook.get("namespaceSelector"), &attrs, labels) {
                continue;
            }
            let ignore = hook.get("failurePolicy").and_then(Value::as_str) == Some("Ignore");
            let uid = meta::new_uid();
            let answer = match call::Target::of(&hook, self.via.as_ref()) {
                Ok(target) => {
                    target
                        .call(&call::review(review_request(req, obj, &uid)), &uid)
                        .await
                }
                Err(e) => Err(e),
            };
            let answer = match answer {
                Ok(a) => a,
                Err(e) if ignore => {
                    tracing::warn!(webhook = %name, error = %e, "admission webhook failed; ignored (failurePolicy: Ignore)");
                    continue;
                }
                Err(e) => return Err(call_failed(&name, &e)),
            };
            out.warnings.extend(answer.warnings.iter().cloned());
            if !answer.allowed {
                return Err(denied(&name, answer.status.as_ref()));
            }
            if let (Phase::Mutating, Some(patch)) = (self.phase, answer.patch) {
                let patch: json_patch::Patch = match serde_json::from_value(patch) {
                    Ok(p) => p,
                    Err(e) => {
                        let e = call::CallError(format!("the patch is not a JSON patch: {e}"));
                        if ignore {
                            continue;
                        }
                        return Err(call_failed(&name, &e));
                    }
                };
                let mut patched = obj.clone();
                if let Err(e) = json_patch::patch(&mut patched, &patch) {
                    let e = call::CallError(format!("applying the patch: {e}"));
                    if ignore {
                        continue;
                    }
                    return Err(call_failed(&name, &e));
                }
                *obj = patched;
            }
        }
        Ok(())
    }
}

impl Plugin for Webhooks {
    fn admit<'a>(
        &'a self,
        objects: &'a ObjectStore,
        req: &'a Request<'a>,
        obj: &'a mut Value,
        out: &'a mut Outcome,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if self.phase != Phase::Mutating || req.operation == Operation::Delete {
                return Ok(());
            }
            let hooks = self.candidates(objects, req).await?;
            if hooks.is_empty() {
                return Ok(());
            }
            self.run(hooks, objects, req, obj, out).await
        })
    }

    fn validate<'a>(
        &'a self,
        objects: &'a ObjectStore,
        req: &'a Request<'a>,
        obj: &'a Value,
        out: &'a mut Outcome,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if self.phase != Phase::Validating {
                return Ok(());
            }
            let hooks = self.candidates(objects, req).await?;
            if hooks.is_empty() {
                return Ok(());
            }
            // Validating webhooks change nothing; `run` takes the object mutably for the
            // mutating phase, so it gets a copy, made only when some webhook exists.
            let mut copy = obj.clone();
            self.run(hooks, objects, req, &mut copy, out).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_read_as_upstream_writes_them() {
        let e = denied(
            "deny.example.com",
            Some(&json!({"message": "no blue", "code": 403, "reason": "Forbidden"})),
        );
        assert_eq!(
            (e.code(), e.reason(), e.message().as_str()),
            (
                403,
                "Forbidden",
                "admission webhook \"deny.example.com\" denied the request: no blue"
            )
        );
        let e = denied("deny.example.com", None);
        assert_eq!(
            (e.code(), e.message().as_str()),
            (
                400,
                "admission webhook \"deny.example.com\" denied the request without explanation"
            )
        );
        let e = denied(
            "deny.example.com",
            Some(&json!({"code": 200, "reason": "Nope"})),
        );
        assert_eq!(
            (e.code(), e.message().as_str()),
            (
                400,
                "admission webhook \"deny.example.com\" denied the request: Nope"
            )
        );
    }
}
