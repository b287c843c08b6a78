//! Protobuf-to-JSON mappings of the identity kinds kubectl 1.32+ sends
//! through typed clients: `create token` (TokenRequest), `certificate
//! approve|deny` (CertificateSigningRequest, PUT to `/approval`), and
//! TokenReview from typed clients. Field by field, with a round-trip test.

use k8s_pb::api::authentication::v1 as authn;
use k8s_pb::api::certificates::v1 as certs;
use serde_json::{Map, Value, json};

use super::{b64, opt, put, time, top};

/// `authentication.k8s.io/v1 TokenRequest`.
pub(super) fn token_request(x: authn::TokenRequest) -> Value {
    let mut o = top("authentication.k8s.io/v1", "TokenRequest", &x.metadata);
    let mut spec = Map::new();
    if let Some(sp) = &x.spec {
        put(&mut spec, "audiences", json!(sp.audiences));
        put(&mut spec, "expirationSeconds", opt(&sp.expiration_seconds));
        if let Some(r) = &sp.bound_object_ref {
            let mut m = Map::new();
            put(&mut m, "kind", opt(&r.kind));
            put(&mut m, "apiVersion", opt(&r.api_version));
            put(&mut m, "name", opt(&r.name));
            put(&mut m, "uid", opt(&r.u_id));
            spec.insert("boundObjectRef".into(), Value::Object(m));
        }
    }
    o.insert("spec".into(), Value::Object(spec));
    Value::Object(o)
}

/// `authentication.k8s.io/v1 TokenReview`.
pub(super) fn token_review(x: authn::TokenReview) -> Value {
    let mut o = top("authentication.k8s.io/v1", "TokenReview", &x.metadata);
    let mut spec = Map::new();
    if let Some(sp) = &x.spec {
        put(&mut spec, "token", opt(&sp.token));
        put(&mut spec, "audiences", json!(sp.audiences));
    }
    o.insert("spec".into(), Value::Object(spec));
    Value::Object(o)
}

/// `certificates.k8s.io/v1 CertificateSigningRequest`, status included
/// (the approval subresource takes its conditions).
pub(super) fn certificate_signing_request(x: certs::CertificateSigningRequest) -> Value {
    let mut o = top(
        "certificates.k8s.io/v1",
        "CertificateSigningRequest",
        &x.metadata,
    );
    let mut spec = Map::new();
    if let Some(sp) = &x.spec {
        if let Some(r) = &sp.request {
            put(&mut spec, "request", b64(r));
        }
        put(&mut spec, "signerName", opt(&sp.signer_name));
        put(&mut spec, "expirationSeconds", opt(&sp.expiration_seconds));
        put(&mut spec, "usages", json!(sp.usages));
        put(&mut spec, "username", opt(&sp.username));
        put(&mut spec, "uid", opt(&sp.uid));
        put(&mut spec, "groups", json!(sp.groups));
        let extra: Map<String, Value> = sp
            .extra
            .iter()
            .map(|(k, v)| (k.clone(), json!(v.items)))
            .collect();
        put(&mut spec, "extra", Value::Object(extra));
    }
    o.insert("spec".into(), Value::Object(spec));
    if let Some(st) = &x.status {
        let mut status = Map::new();
        let conditions: Vec<Value> = st
            .conditions
            .iter()
            .map(|c| {
                let mut m = Map::new();
                put(&mut m, "type", opt(&c.r#type));
                put(&mut m, "status", opt(&c.status));
                put(&mut m, "reason", opt(&c.reason));
                put(&mut m, "message", opt(&c.message));
                put(&mut m, "lastUpdateTime", time(&c.last_update_time));
                put(&mut m, "lastTransitionTime", time(&c.last_transition_time));
                Value::Object(m)
            })
            .collect();
        put(&mut status, "conditions", Value::Array(conditions));
        if let Some(c) = &st.certificate {
            put(&mut status, "certificate", b64(c));
        }
        put(&mut o, "status", Value::Object(status));
    }
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    use std::collections::BTreeMap;

    #[test]
    fn identity_kinds_round_trip() {
        let md = Some(meta::ObjectMeta {
            name: Some("n".into()),
            ..Default::default()
        });
        let tr = token_request(authn::TokenRequest {
            metadata: md.clone(),
            spec: Some(authn::TokenRequestSpec {
                audiences: vec!["a".into()],
                expiration_seconds: Some(600),
                bound_object_ref: Some(authn::BoundObjectReference {
                    kind: Some("Pod".into()),
                    api_version: Some("v1".into()),
                    name: Some("p".into()),
                    u_id: Some("u".into()),
                }),
            }),
            status: None,
        });
        assert_eq!(
            tr["spec"],
            json!({"audiences": ["a"], "expirationSeconds": 600, "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "u"}})
        );
        let csr = certificate_signing_request(certs::CertificateSigningRequest {
            metadata: md,
            spec: Some(certs::CertificateSigningRequestSpec {
                request: Some(b"pem".to_vec()),
                signer_name: Some("kubernetes.io/kube-apiserver-client".into()),
                expiration_seconds: Some(3600),
                usages: vec!["client auth".into()],
                username: Some("alice".into()),
                uid: None,
                groups: vec!["g".into()],
                extra: BTreeMap::from([(
                    "k".into(),
                    certs::ExtraValue {
                        items: vec!["v".into()],
                    },
                )]),
            }),
            status: Some(certs::CertificateSigningRequestStatus {
                conditions: vec![certs::CertificateSigningRequestCondition {
                    r#type: Some("Approved".into()),
                    status: Some("True".into()),
                    reason: Some("KubectlApprove".into()),
                    message: Some("m".into()),
                    last_update_time: Some(meta::Time {
                        seconds: Some(0),
                        nanos: Some(0),
                    }),
                    last_transition_time: None,
                }],
                certificate: None,
            }),
        });
        assert_eq!(csr["spec"]["request"], "cGVt");
        assert_eq!(csr["spec"]["extra"], json!({"k": ["v"]}));
        assert_eq!(csr["status"]["conditions"][0]["type"], "Approved");
        assert_eq!(
            csr["status"]["conditions"][0]["lastUpdateTime"],
            "1970-01-01T00:00:00Z"
        );
        let rv = token_review(authn::TokenReview {
            metadata: None,
            spec: Some(authn::TokenReviewSpec {
                token: Some("t".into()),
                audiences: vec![],
            }),
            status: None,
        });
        assert_eq!(rv["spec"], json!({"token": "t"}));
    }
}
