//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`), as
//! kubectl 1.32+ sends them for typed creates (`create namespace|configmap|
//! secret|serviceaccount|service|deployment|job|cronjob|role|rolebinding|
//! clusterrole|clusterrolebinding|quota|pdb|priorityclass|ingress`) and for
//! `auth whoami|can-i`, and pods (`debug node/X`). The wire format is decoded by the generated `k8s-pb`
//! types; each supported kind is then mapped to its JSON form field by
//! field, with a round-trip test per kind so no field is dropped
//! (`kinds` for the rbac, policy and networking kinds, `workloads` for
//! workloads and services, whose mappers refuse fields they do not map).
//! Kinds without a mapping get 415 with a message naming the kind.

mod identity;
mod kinds;
mod workloads;

use base64::Engine;
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::authentication::v1 as authn;
use k8s_pb::api::authentication::v1beta1 as authn_beta;
use k8s_pb::api::authorization::v1 as authz;
use k8s_pb::api::batch::v1 as batch;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::networking::v1 as net;
use k8s_pb::api::policy::v1 as policy;
use k8s_pb::api::rbac::v1 as rbac;
use k8s_pb::api::scheduling::v1 as sched;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost::Message;
use serde_json::{Map, Value, json};

use crate::registry::Error;

/// The protobuf media type.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8; 4] = b"k8s\0";

fn bad(e: impl std::fmt::Display) -> Error {
    Error::BadRequest(format!("the protobuf body could not be decoded: {e}"))
}

fn put(m: &mut Map<String, Value>, k: &str, v: Value) {
    let empty = match &v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    if !empty {
        m.insert(k.to_string(), v);
    }
}

fn opt<T: Into<Value> + Clone>(v: &Option<T>) -> Value {
    v.clone().map(Into::into).unwrap_or(Value::Null)
}

/// A Go value (not pointer) field with `omitempty`: Go's protobuf always
/// writes it, and its zero value (false, 0) reads back as the zero value,
/// which JSON then omits; so it is not shown, as upstream does not show it.
/// (Pointer fields keep their zero: `suspend: false` is a value set.)
fn nz<T: Into<Value> + Clone>(v: &Option<T>) -> Value {
    match opt(v) {
        Value::Bool(false) => Value::Null,
        Value::Number(n) if n.as_i64() == Some(0) => Value::Null,
        other => other,
    }
}

fn time(t: &Option<meta::Time>) -> Value {
    // Go marshals a zero metav1.Time as an empty message and reads an empty
    // message back as the zero time, which JSON shows as null (kubectl 1.32+
    // sends one as every pod template's creationTimestamp).
    let Some(t) = t
        .as_ref()
        .filter(|t| t.seconds.is_some() || t.nanos.is_some())
    else {
        return Value::Null;
    };
    jiff::Timestamp::from_second(t.seconds.unwrap_or(0))
        .map(|ts| Value::String(crate::registry::meta::format_time(ts)))
        .unwrap_or(Value::Null)
}

fn b64(b: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(b))
}

fn object_meta(m: &Option<meta::ObjectMeta>) -> Value {
    let Some(m) = m else {
        return json!({});
    };
    let mut o = Map::new();
    put(&mut o, "name", opt(&m.name));
    put(&mut o, "generateName", opt(&m.generate_name));
    put(&mut o, "namespace", opt(&m.namespace));
    put(&mut o, "uid", opt(&m.uid));
    put(&mut o, "resourceVersion", opt(&m.resource_version));
    put(&mut o, "generation", nz(&m.generation));
    put(&mut o, "creationTimestamp", time(&m.creation_timestamp));
    put(&mut o, "deletionTimestamp", time(&m.deletion_timestamp));
    put(
        &mut o,
        "deletionGracePeriodSeconds",
        opt(&m.deletion_grace_period_seconds),
    );
    put(&mut o, "labels", json!(m.labels));
    put(&mut o, "annotations", json!(m.annotations));
    put(&mut o, "finalizers", json!(m.finalizers));
    let owners: Vec<Value> = m
        .owner_references
        .iter()
        .map(|r| {
            let mut x = Map::new();
            put(&mut x, "apiVersion", opt(&r.api_version));
            put(&mut x, "kind", opt(&r.kind));
            put(&mut x, "name", opt(&r.name));
            put(&mut x, "uid", opt(&r.uid));
            put(&mut x, "controller", opt(&r.controller));
            put(&mut x, "blockOwnerDeletion", opt(&r.block_owner_deletion));
            Value::Object(x)
        })
        .collect();
    put(&mut o, "ownerReferences", Value::Array(owners));
    Value::Object(o)
}

fn top(api_version: &str, kind: &str, m: &Option<meta::ObjectMeta>) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("apiVersion".into(), json!(api_version));
    o.insert("kind".into(), json!(kind));
    o.insert("metadata".into(), object_meta(m));
    o
}

fn namespace(x: core::Namespace) -> Value {
    let mut o = top("v1", "Namespace", &x.metadata);
    if let Some(spec) = &x.spec {
        put(&mut o, "spec", json!({"finalizers": spec.finalizers}));
    }
    if let Some(st) = &x.status {
        put(&mut o, "status", json!({"phase": opt(&st.phase)}));
    }
    Value::Object(o)
}

fn config_map(x: core::ConfigMap) -> Value {
    let mut o = top("v1", "ConfigMap", &x.metadata);
    put(&mut o, "data", json!(x.data));
    let bin: Map<String, Value> = x
        .binary_data
        .iter()
        .map(|(k, v)| (k.clone(), b64(v)))
        .collect();
    put(&mut o, "binaryData", Value::Object(bin));
    put(&mut o, "immutable", opt(&x.immutable));
    Value::Object(o)
}

fn secret(x: core::Secret) -> Value {
    let mut o = top("v1", "Secret", &x.metadata);
    let data: Map<String, Value> = x.data.iter().map(|(k, v)| (k.clone(), b64(v))).collect();
    put(&mut o, "data", Value::Object(data));
    put(&mut o, "stringData", json!(x.string_data));
    put(&mut o, "type", opt(&x.r#type));
    put(&mut o, "immutable", opt(&x.immutable));
    Value::Object(o)
}

fn service_account(x: core::ServiceAccount) -> Value {
    let mut o = top("v1", "ServiceAccount", &x.metadata);
    let secrets: Vec<Value> = x
        .secrets
        .iter()
        .map(|r| {
            let mut m = Map::new();
            put(&mut m, "kind", opt(&r.kind));
            put(&mut m, "namespace", opt(&r.namespace));
            put(&mut m, "name", opt(&r.name));
            put(&mut m, "uid", opt(&r.uid));
            put(&mut m, "apiVersion", opt(&r.api_version));
            put(&mut m, "resourceVersion", opt(&r.resource_version));
            put(&mut m, "fieldPath", opt(&r.field_path));
            Value::Object(m)
        })
        .collect();
    put(&mut o, "secrets", Value::Array(secrets));
    let pulls: Vec<Value> = x
        .image_pull_secrets
        .iter()
        .map(|r| json!({"name": opt(&r.name)}))
        .collect();
    put(&mut o, "imagePullSecrets", Value::Array(pulls));
    put(
        &mut o,
        "automountServiceAccountToken",
        opt(&x.automount_service_account_token),
    );
    Value::Object(o)
}

fn self_subject_review(api_version: &str, m: &Option<meta::ObjectMeta>) -> Value {
    // The request carries no spec; a status sent by a client is ignored
    // (the server answers it), so only the metadata is mapped.
    Value::Object(top(api_version, "SelfSubjectReview", m))
}

fn selector_requirements<'a>(
    reqs: impl Iterator<Item = (&'a Option<String>, &'a Option<String>, &'a Vec<String>)>,
) -> Value {
    Value::Array(
        reqs.map(|(key, op, values)| {
            let mut r = Map::new();
            put(&mut r, "key", opt(key));
            put(&mut r, "operator", opt(op));
            put(&mut r, "values", json!(values));
            Value::Object(r)
        })
        .collect(),
    )
}

fn access_review(x: authz::SelfSubjectAccessReview) -> Value {
    let mut o = top(
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        &x.metadata,
    );
    let mut spec = Map::new();
    if let Some(sp) = &x.spec {
        if let Some(ra) = &sp.resource_attributes {
            let mut a = Map::new();
            for (k, v) in [
                ("namespace", &ra.namespace),
                ("verb", &ra.verb),
                ("group", &ra.group),
                ("version", &ra.version),
                ("resource", &ra.resource),
                ("subresource", &ra.subresource),
                ("name", &ra.name),
            ] {
                put(&mut a, k, opt(v));
            }
            if let Some(fs) = &ra.field_selector {
                let mut f = Map::new();
                put(&mut f, "rawSelector", opt(&fs.raw_selector));
                put(
                    &mut f,
                    "requirements",
                    selector_requirements(
                        fs.requirements
                            .iter()
                            .map(|r| (&r.key, &r.operator, &r.values)),
                    ),
                );
                a.insert("fieldSelector".into(), Value::Object(f));
            }
            if let Some(ls) = &ra.label_selector {
                let mut l = Map::new();
                put(&mut l, "rawSelector", opt(&ls.raw_selector));
                put(
                    &mut l,
                    "requirements",
                    selector_requirements(
                        ls.requirements
                            .iter()
                            .map(|r| (&r.key, &r.operator, &r.values)),
                    ),
                );
                a.insert("labelSelector".into(), Value::Object(l));
            }
            spec.insert("resourceAttributes".into(), Value::Object(a));
        }
        if let Some(na) = &sp.non_resource_attributes {
            let mut a = Map::new();
            put(&mut a, "path", opt(&na.path));
            put(&mut a, "verb", opt(&na.verb));
            spec.insert("nonResourceAttributes".into(), Value::Object(a));
        }
    }
    o.insert("spec".into(), Value::Object(spec));
    Value::Object(o)
}

fn rules_review(x: authz::SelfSubjectRulesReview) -> Value {
    let mut o = top(
        "authorization.k8s.io/v1",
        "SelfSubjectRulesReview",
        &x.metadata,
    );
    let mut spec = Map::new();
    if let Some(sp) = &x.spec {
        put(&mut spec, "namespace", opt(&sp.namespace));
    }
    o.insert("spec".into(), Value::Object(spec));
    Value::Object(o)
}

/// Decodes a protobuf request body into the object's JSON form.
///
/// # Errors
/// 400 BadRequest for malformed bytes; 415 UnsupportedMediaType for kinds
/// without a protobuf mapping yet.
pub fn decode(body: &[u8]) -> Result<Value, Error> {
    let rest = body
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| bad("missing the k8s\\0 prefix"))?;
    let unknown = Unknown::decode(rest).map_err(bad)?;
    let tm = unknown.type_meta.unwrap_or_default();
    let (av, kind) = (
        tm.api_version.unwrap_or_default(),
        tm.kind.unwrap_or_default(),
    );
    let raw = unknown.raw.unwrap_or_default();
    let raw = raw.as_slice();
    match (av.as_str(), kind.as_str()) {
        ("v1", "Namespace") => Ok(namespace(core::Namespace::decode(raw).map_err(bad)?)),
        ("v1", "ConfigMap") => Ok(config_map(core::ConfigMap::decode(raw).map_err(bad)?)),
        ("v1", "Secret") => Ok(secret(core::Secret::decode(raw).map_err(bad)?)),
        ("v1", "ServiceAccount") => Ok(service_account(
            core::ServiceAccount::decode(raw).map_err(bad)?,
        )),
        ("v1", "Service") => workloads::service(core::Service::decode(raw).map_err(bad)?),
        ("v1", "Pod") => workloads::pod(core::Pod::decode(raw).map_err(bad)?),
        ("apps/v1", "Deployment") => {
            workloads::deployment(apps::Deployment::decode(raw).map_err(bad)?)
        }
        ("batch/v1", "Job") => workloads::job(batch::Job::decode(raw).map_err(bad)?),
        ("batch/v1", "CronJob") => workloads::cron_job(batch::CronJob::decode(raw).map_err(bad)?),
        ("v1", "ResourceQuota") => Ok(kinds::resource_quota(
            core::ResourceQuota::decode(raw).map_err(bad)?,
        )),
        ("rbac.authorization.k8s.io/v1", "Role") => {
            Ok(kinds::role(rbac::Role::decode(raw).map_err(bad)?))
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => Ok(kinds::cluster_role(
            rbac::ClusterRole::decode(raw).map_err(bad)?,
        )),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => Ok(kinds::role_binding(
            rbac::RoleBinding::decode(raw).map_err(bad)?,
        )),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => Ok(kinds::cluster_role_binding(
            rbac::ClusterRoleBinding::decode(raw).map_err(bad)?,
        )),
        ("policy/v1", "PodDisruptionBudget") => Ok(kinds::pod_disruption_budget(
            policy::PodDisruptionBudget::decode(raw).map_err(bad)?,
        )),
        ("scheduling.k8s.io/v1", "PriorityClass") => Ok(kinds::priority_class(
            sched::PriorityClass::decode(raw).map_err(bad)?,
        )),
        ("networking.k8s.io/v1", "Ingress") => {
            Ok(kinds::ingress(net::Ingress::decode(raw).map_err(bad)?))
        }
        ("authentication.k8s.io/v1", "SelfSubjectReview") => Ok(self_subject_review(
            &av,
            &authn::SelfSubjectReview::decode(raw).map_err(bad)?.metadata,
        )),
        ("authentication.k8s.io/v1beta1", "SelfSubjectReview") => Ok(self_subject_review(
            &av,
            &authn_beta::SelfSubjectReview::decode(raw)
                .map_err(bad)?
                .metadata,
        )),
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => Ok(access_review(
            authz::SelfSubjectAccessReview::decode(raw).map_err(bad)?,
        )),
        ("authentication.k8s.io/v1", "TokenRequest") => Ok(identity::token_request(
            authn::TokenRequest::decode(raw).map_err(bad)?,
        )),
        ("authentication.k8s.io/v1", "TokenReview") => Ok(identity::token_review(
            authn::TokenReview::decode(raw).map_err(bad)?,
        )),
        ("certificates.k8s.io/v1", "CertificateSigningRequest") => {
            Ok(identity::certificate_signing_request(
                k8s_pb::api::certificates::v1::CertificateSigningRequest::decode(raw)
                    .map_err(bad)?,
            ))
        }
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => Ok(rules_review(
            authz::SelfSubjectRulesReview::decode(raw).map_err(bad)?,
        )),
        _ => Err(Error::UnsupportedMediaType(format!(
            "protobuf bodies of {av}/{kind} are not supported yet; send application/json"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_pb::apimachinery::pkg::runtime::TypeMeta;
    use std::collections::BTreeMap;

    fn envelope(av: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let u = Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some(av.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let mut out = MAGIC.to_vec();
        out.extend(u.encode_to_vec());
        out
    }

    fn full_meta() -> Option<meta::ObjectMeta> {
        Some(meta::ObjectMeta {
            name: Some("n".into()),
            generate_name: Some("g-".into()),
            namespace: Some("ns".into()),
            uid: Some("u".into()),
            resource_version: Some("7".into()),
            generation: Some(2),
            creation_timestamp: Some(meta::Time {
                seconds: Some(0),
                nanos: Some(0),
            }),
            labels: BTreeMap::from([("a".into(), "b".into())]),
            annotations: BTreeMap::from([("c".into(), "d".into())]),
            finalizers: vec!["f".into()],
            owner_references: vec![meta::OwnerReference {
                api_version: Some("apps/v1".into()),
                kind: Some("Deployment".into()),
                name: Some("d".into()),
                uid: Some("du".into()),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }],
            ..Default::default()
        })
    }

    #[test]
    fn an_empty_time_message_is_the_zero_time_which_is_null() {
        assert_eq!(super::time(&Some(meta::Time::default())), Value::Null);
        assert_eq!(super::time(&None), Value::Null);
        assert_eq!(
            super::time(&Some(meta::Time {
                seconds: Some(0),
                nanos: None
            })),
            json!("1970-01-01T00:00:00Z")
        );
    }

    fn expected_meta() -> Value {
        json!({"name": "n", "generateName": "g-", "namespace": "ns", "uid": "u", "resourceVersion": "7",
               "generation": 2, "creationTimestamp": "1970-01-01T00:00:00Z", "labels": {"a": "b"},
               "annotations": {"c": "d"}, "finalizers": ["f"],
               "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "d", "uid": "du",
                                    "controller": true, "blockOwnerDeletion": true}]})
    }

    #[test]
    fn configmap_round_trip() {
        let cm = core::ConfigMap {
            metadata: full_meta(),
            immutable: Some(true),
            data: BTreeMap::from([("k".into(), "v".into())]),
            binary_data: BTreeMap::from([("b".into(), vec![0, 1, 2])]),
        };
        let v = decode(&envelope("v1", "ConfigMap", cm.encode_to_vec())).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": expected_meta(),
            "data": {"k": "v"}, "binaryData": {"b": "AAEC"}, "immutable": true})
        );
    }

    #[test]
    fn secret_namespace_serviceaccount_round_trip() {
        let s = core::Secret {
            metadata: full_meta(),
            immutable: Some(false),
            data: BTreeMap::from([("user".into(), b"admin".to_vec())]),
            string_data: BTreeMap::from([("p".into(), "q".into())]),
            r#type: Some("Opaque".into()),
        };
        let v = decode(&envelope("v1", "Secret", s.encode_to_vec())).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": expected_meta(),
            "data": {"user": "YWRtaW4="}, "stringData": {"p": "q"}, "type": "Opaque", "immutable": false})
        );

        let ns = core::Namespace {
            metadata: full_meta(),
            spec: Some(core::NamespaceSpec {
                finalizers: vec!["kubernetes".into()],
            }),
            status: Some(core::NamespaceStatus {
                phase: Some("Active".into()),
                conditions: vec![],
            }),
        };
        let v = decode(&envelope("v1", "Namespace", ns.encode_to_vec())).unwrap();
        assert_eq!(v["spec"], json!({"finalizers": ["kubernetes"]}));
        assert_eq!(v["status"], json!({"phase": "Active"}));
        assert_eq!(v["metadata"], expected_meta());

        let sa = core::ServiceAccount {
            metadata: full_meta(),
            secrets: vec![core::ObjectReference {
                name: Some("t".into()),
                ..Default::default()
            }],
            image_pull_secrets: vec![core::LocalObjectReference {
                name: Some("r".into()),
            }],
            automount_service_account_token: Some(false),
        };
        let v = decode(&envelope("v1", "ServiceAccount", sa.encode_to_vec())).unwrap();
        assert_eq!(v["secrets"], json!([{"name": "t"}]));
        assert_eq!(v["imagePullSecrets"], json!([{"name": "r"}]));
        assert_eq!(v["automountServiceAccountToken"], false);
    }

    #[test]
    fn reviews_round_trip() {
        let ssar = authz::SelfSubjectAccessReview {
            metadata: Some(meta::ObjectMeta::default()),
            spec: Some(authz::SelfSubjectAccessReviewSpec {
                resource_attributes: Some(authz::ResourceAttributes {
                    namespace: Some("ns".into()),
                    verb: Some("create".into()),
                    group: Some("apps".into()),
                    version: Some("v1".into()),
                    resource: Some("deployments".into()),
                    subresource: Some("scale".into()),
                    name: Some("web".into()),
                    field_selector: Some(authz::FieldSelectorAttributes {
                        raw_selector: Some("a=b".into()),
                        requirements: vec![],
                    }),
                    label_selector: Some(authz::LabelSelectorAttributes {
                        raw_selector: None,
                        requirements: vec![meta::LabelSelectorRequirement {
                            key: Some("k".into()),
                            operator: Some("In".into()),
                            values: vec!["v".into()],
                        }],
                    }),
                }),
                non_resource_attributes: Some(authz::NonResourceAttributes {
                    path: Some("/healthz".into()),
                    verb: Some("get".into()),
                }),
            }),
            status: None,
        };
        let v = decode(&envelope(
            "authorization.k8s.io/v1",
            "SelfSubjectAccessReview",
            ssar.encode_to_vec(),
        ))
        .unwrap();
        assert_eq!(
            v["spec"],
            json!({"resourceAttributes": {"namespace": "ns", "verb": "create", "group": "apps",
                    "version": "v1", "resource": "deployments", "subresource": "scale", "name": "web",
                    "fieldSelector": {"rawSelector": "a=b"},
                    "labelSelector": {"requirements": [{"key": "k", "operator": "In", "values": ["v"]}]}},
                   "nonResourceAttributes": {"path": "/healthz", "verb": "get"}})
        );
        let rules = authz::SelfSubjectRulesReview {
            metadata: None,
            spec: Some(authz::SelfSubjectRulesReviewSpec {
                namespace: Some("default".into()),
            }),
            status: None,
        };
        let v = decode(&envelope(
            "authorization.k8s.io/v1",
            "SelfSubjectRulesReview",
            rules.encode_to_vec(),
        ))
        .unwrap();
        assert_eq!(v["spec"], json!({"namespace": "default"}));
        for av in ["authentication.k8s.io/v1", "authentication.k8s.io/v1beta1"] {
            let ssr = authn::SelfSubjectReview {
                metadata: full_meta(),
                status: None,
            };
            let v = decode(&envelope(av, "SelfSubjectReview", ssr.encode_to_vec())).unwrap();
            assert_eq!(v["apiVersion"], av);
            assert_eq!(v["metadata"], expected_meta());
        }
    }

    #[test]
    fn rbac_quota_pdb_priorityclass_ingress_round_trip() {
        let rule = rbac::PolicyRule {
            verbs: vec!["get".into()],
            api_groups: vec!["".into()],
            resources: vec!["pods".into()],
            resource_names: vec!["p".into()],
            non_resource_ur_ls: vec![],
        };
        let r = rbac::Role {
            metadata: full_meta(),
            rules: vec![rule.clone()],
        };
        let v = decode(&envelope(
            "rbac.authorization.k8s.io/v1",
            "Role",
            r.encode_to_vec(),
        ))
        .unwrap();
        assert_eq!(v["metadata"], expected_meta());
        assert_eq!(
            v["rules"],
            json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["p"]}])
        );
        let cr = rbac::ClusterRole {
            metadata: full_meta(),
            rules: vec![rbac::PolicyRule {
                verbs: vec!["get".into()],
                non_resource_ur_ls: vec!["/healthz".into()],
                ..Default::default()
            }],
            aggregation_rule: Some(rbac::AggregationRule {
                cluster_role_selectors: vec![meta::LabelSelector {
                    match_labels: std::collections::BTreeMap::from([("a".into(), "b".into())]),
                    match_expressions: vec![],
                }],
            }),
        };
        let v = decode(&envelope(
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            cr.encode_to_vec(),
        ))
        .unwrap();
        assert_eq!(
            v["rules"],
            json!([{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}])
        );
        assert_eq!(
            v["aggregationRule"],
            json!({"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]})
        );
        let subject = rbac::Subject {
            kind: Some("ServiceAccount".into()),
            api_group: Some("".into()),
            name: Some("sa".into()),
            namespace: Some("ns".into()),
        };
        let role_ref = Some(rbac::RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: Some("ClusterRole".into()),
            name: Some("view".into()),
        });
        for kind in ["RoleBinding", "ClusterRoleBinding"] {
            let bytes = if kind == "RoleBinding" {
                rbac::RoleBinding {
                    metadata: full_meta(),
                    subjects: vec![subject.clone()],
                    role_ref: role_ref.clone(),
                }
                .encode_to_vec()
            } else {
                rbac::ClusterRoleBinding {
                    metadata: full_meta(),
                    subjects: vec![subject.clone()],
                    role_ref: role_ref.clone(),
                }
                .encode_to_vec()
            };
            let v = decode(&envelope("rbac.authorization.k8s.io/v1", kind, bytes)).unwrap();
            assert_eq!(v["kind"], kind);
            assert_eq!(
                v["subjects"],
                json!([{"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}])
            );
            assert_eq!(
                v["roleRef"],
                json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"})
            );
        }

        let q = core::ResourceQuota {
            metadata: full_meta(),
            spec: Some(core::ResourceQuotaSpec {
                hard: std::collections::BTreeMap::from([(
                    "pods".into(),
                    k8s_pb::apimachinery::pkg::api::resource::Quantity {
                        string: Some("3".into()),
                    },
                )]),
                scopes: vec!["BestEffort".into()],
                scope_selector: Some(core::ScopeSelector {
                    match_expressions: vec![core::ScopedResourceSelectorRequirement {
                        scope_name: Some("PriorityClass".into()),
                        operator: Some("In".into()),
                        values: vec!["high".into()],
                    }],
                }),
            }),
            status: None,
        };
        let v = decode(&envelope("v1", "ResourceQuota", q.encode_to_vec())).unwrap();
        assert_eq!(
            v["spec"],
            json!({"hard": {"pods": "3"}, "scopes": ["BestEffort"],
                   "scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}})
        );

        let pdb = policy::PodDisruptionBudget {
            metadata: full_meta(),
            spec: Some(policy::PodDisruptionBudgetSpec {
                min_available: Some(k8s_pb::apimachinery::pkg::util::intstr::IntOrString {
                    r#type: Some(1),
                    int_val: None,
                    str_val: Some("50%".into()),
                }),
                selector: Some(meta::LabelSelector {
                    match_labels: std::collections::BTreeMap::from([("app".into(), "x".into())]),
                    match_expressions: vec![meta::LabelSelectorRequirement {
                        key: Some("tier".into()),
                        operator: Some("Exists".into()),
                        values: vec![],
                    }],
                }),
                max_unavailable: None,
                unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            }),
            status: None,
        };
        let v = decode(&envelope(
            "policy/v1",
            "PodDisruptionBudget",
            pdb.encode_to_vec(),
        ))
        .unwrap();
        assert_eq!(
            v["spec"],
            json!({"minAvailable": "50%", "unhealthyPodEvictionPolicy": "AlwaysAllow",
                   "selector": {"matchLabels": {"app": "x"}, "matchExpressions": [{"key": "tier", "operator": "Exists"}]}})
        );

        let pc = sched::PriorityClass {
            metadata: full_meta(),
            value: Some(100),
            global_default: Some(true),
            description: Some("d".into()),
            preemption_policy: Some("Never".into()),
        };
        let v = decode(&envelope(
            "scheduling.k8s.io/v1",
            "PriorityClass",
            pc.encode_to_vec(),
        ))
        .unwrap();
        assert_eq!(
            (
                &v["value"],
                &v["globalDefault"],
                &v["description"],
                &v["preemptionPolicy"]
            ),
            (&json!(100), &json!(true), &json!("d"), &json!("Never"))
        );

        let svc = |port: net::ServiceBackendPort| net::IngressBackend {
            service: Some(net::IngressServiceBackend {
                name: Some("web".into()),
                port: Some(port),
            }),
            resource: None,
        };
        let ing = net::Ingress {
            metadata: full_meta(),
            spec: Some(net::IngressSpec {
                ingress_class_name: Some("nginx".into()),
                default_backend: Some(net::IngressBackend {
                    service: None,
                    resource: Some(core::TypedLocalObjectReference {
                        api_group: Some("k8s.example.com".into()),
                        kind: Some("Bucket".into()),
                        name: Some("b".into()),
                    }),
                }),
                tls: vec![net::IngressTls {
                    hosts: vec!["a.example.com".into()],
                    secret_name: Some("tls".into()),
                }],
                rules: vec![net::IngressRule {
                    host: Some("a.example.com".into()),
                    ingress_rule_value: Some(net::IngressRuleValue {
                        http: Some(net::HttpIngressRuleValue {
                            paths: vec![net::HttpIngressPath {
                                path: Some("/".into()),
                                path_type: Some("Prefix".into()),
                                backend: Some(svc(net::ServiceBackendPort {
                                    name: None,
                                    number: Some(80),
                                })),
                            }],
                        }),
                    }),
                }],
            }),
            status: None,
        };
        let v = decode(&envelope(
            "networking.k8s.io/v1",
            "Ingress",
            ing.encode_to_vec(),
        ))
        .unwrap();
        assert_eq!(
            v["spec"],
            json!({"ingressClassName": "nginx",
                   "defaultBackend": {"resource": {"apiGroup": "k8s.example.com", "kind": "Bucket", "name": "b"}},
                   "tls": [{"hosts": ["a.example.com"], "secretName": "tls"}],
                   "rules": [{"host": "a.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                       "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]})
        );
    }

    fn pod_template() -> core::PodTemplateSpec {
        core::PodTemplateSpec {
            metadata: Some(meta::ObjectMeta {
                labels: BTreeMap::from([("app".into(), "web".into())]),
                ..Default::default()
            }),
            spec: Some(core::PodSpec {
                containers: vec![core::Container {
                    name: Some("c".into()),
                    image: Some("nginx:1.27".into()),
                    command: vec!["sh".into()],
                    args: vec!["-c".into(), "true".into()],
                    ports: vec![core::ContainerPort {
                        container_port: Some(80),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    }],
                    env: vec![core::EnvVar {
                        name: Some("A".into()),
                        value: Some("b".into()),
                        value_from: None,
                    }],
                    resources: Some(core::ResourceRequirements::default()),
                    ..Default::default()
                }],
                restart_policy: Some("Never".into()),
                security_context: Some(core::PodSecurityContext::default()),
                ..Default::default()
            }),
        }
    }

    /// What kubectl 1.32+ sends for every pod template: Go value fields
    /// written with their zero values, which upstream's JSON does not show.
    #[test]
    fn go_value_fields_at_zero_are_not_shown_and_pointer_fields_are() {
        let mut t = pod_template();
        if let Some(m) = t.metadata.as_mut() {
            m.generation = Some(0);
        }
        if let Some(spec) = t.spec.as_mut() {
            spec.host_network = Some(false);
            spec.host_pid = Some(false);
            spec.host_ipc = Some(true);
            if let Some(c) = spec.containers.first_mut() {
                c.stdin = Some(false);
                c.stdin_once = Some(false);
                c.tty = Some(false);
                if let Some(p) = c.ports.first_mut() {
                    p.host_port = Some(0);
                }
            }
        }
        let d = apps::Deployment {
            metadata: full_meta(),
            spec: Some(apps::DeploymentSpec {
                replicas: Some(0),
                min_ready_seconds: Some(0),
                paused: Some(false),
                template: Some(t),
                ..Default::default()
            }),
            status: None,
        };
        let v = decode(&envelope("apps/v1", "Deployment", d.encode_to_vec())).unwrap();
        let spec = &v["spec"];
        assert_eq!(spec["replicas"], 0, "a pointer: zero is a value");
        for gone in ["minReadySeconds", "paused"] {
            assert!(spec.get(gone).is_none(), "{gone}: {spec}");
        }
        let template = &spec["template"];
        assert!(
            template["metadata"].get("generation").is_none(),
            "{template}"
        );
        for gone in ["hostNetwork", "hostPID"] {
            assert!(template["spec"].get(gone).is_none(), "{gone}: {template}");
        }
        assert_eq!(template["spec"]["hostIPC"], true);
        let c = &template["spec"]["containers"][0];
        for gone in ["stdin", "stdinOnce", "tty"] {
            assert!(c.get(gone).is_none(), "{gone}: {c}");
        }
        assert_eq!(
            c["ports"],
            json!([{"containerPort": 80, "protocol": "TCP"}])
        );
    }

    #[test]
    fn workloads_round_trip_and_refuse_unmapped_fields() {
        let template_json = json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1.27", "command": ["sh"], "args": ["-c", "true"],
                                     "ports": [{"containerPort": 80, "protocol": "TCP"}],
                                     "env": [{"name": "A", "value": "b"}], "resources": {}}],
                     "restartPolicy": "Never", "securityContext": {}}});
        let job = batch::Job {
            metadata: full_meta(),
            spec: Some(batch::JobSpec {
                backoff_limit: Some(2),
                completions: Some(3),
                template: Some(pod_template()),
                ..Default::default()
            }),
            status: None,
        };
        let v = decode(&envelope("batch/v1", "Job", job.encode_to_vec())).unwrap();
        assert_eq!(v["metadata"], expected_meta());
        assert_eq!(
            v["spec"],
            json!({"backoffLimit": 2, "completions": 3, "template": template_json})
        );
        let cj = batch::CronJob {
            metadata: full_meta(),
            spec: Some(batch::CronJobSpec {
                schedule: Some("*/1 * * * *".into()),
                suspend: Some(false),
                job_template: Some(batch::JobTemplateSpec {
                    metadata: None,
                    spec: Some(batch::JobSpec {
                        template: Some(pod_template()),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            status: None,
        };
        let v = decode(&envelope("batch/v1", "CronJob", cj.encode_to_vec())).unwrap();
        assert_eq!(v["spec"]["schedule"], "*/1 * * * *");
        assert_eq!(v["spec"]["suspend"], false);
        assert_eq!(v["spec"]["jobTemplate"]["spec"]["template"], template_json);
        let d = apps::Deployment {
            metadata: full_meta(),
            spec: Some(apps::DeploymentSpec {
                replicas: Some(2),
                selector: Some(meta::LabelSelector {
                    match_labels: BTreeMap::from([("app".into(), "web".into())]),
                    match_expressions: vec![],
                }),
                template: Some(pod_template()),
                strategy: Some(apps::DeploymentStrategy::default()),
                ..Default::default()
            }),
            status: None,
        };
        let v = decode(&envelope("apps/v1", "Deployment", d.encode_to_vec())).unwrap();
        assert_eq!(
            v["spec"],
            json!({"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template_json})
        );
        let svc = core::Service {
            metadata: full_meta(),
            spec: Some(core::ServiceSpec {
                ports: vec![core::ServicePort {
                    name: Some("80-8080".into()),
                    protocol: Some("TCP".into()),
                    port: Some(80),
                    target_port: Some(k8s_pb::apimachinery::pkg::util::intstr::IntOrString {
                        r#type: Some(0),
                        int_val: Some(8080),
                        str_val: None,
                    }),
                    ..Default::default()
                }],
                selector: BTreeMap::from([("app".into(), "web".into())]),
                r#type: Some("ClusterIP".into()),
                ..Default::default()
            }),
            status: None,
        };
        let v = decode(&envelope("v1", "Service", svc.encode_to_vec())).unwrap();
        assert_eq!(
            v["spec"],
            json!({"ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                   "selector": {"app": "web"}, "type": "ClusterIP"})
        );
        // A field the mapping does not cover is refused, not dropped.
        let mut t = pod_template();
        if let Some(spec) = t.spec.as_mut() {
            spec.affinity = Some(core::Affinity::default());
        }
        let job = batch::Job {
            metadata: None,
            spec: Some(batch::JobSpec {
                template: Some(t),
                ..Default::default()
            }),
            status: None,
        };
        let e = decode(&envelope("batch/v1", "Job", job.encode_to_vec())).unwrap_err();
        assert_eq!(e.code(), 415);
        assert!(e.to_string().contains("PodSpec"), "{e}");
    }

    /// A pod as `kubectl debug node/X --profile=sysadmin` sends it, with a restricted
    /// container's security context beside.
    fn debug_pod() -> core::Pod {
        core::Pod {
            metadata: full_meta(),
            spec: Some(core::PodSpec {
                containers: vec![
                    core::Container {
                        name: Some("debugger".into()),
                        image: Some("busybox:1.35".into()),
                        command: vec!["sleep".into(), "1".into()],
                        stdin: Some(true),
                        tty: Some(true),
                        termination_message_policy: Some("File".into()),
                        volume_mounts: vec![core::VolumeMount {
                            name: Some("host-root".into()),
                            mount_path: Some("/host".into()),
                            read_only: Some(true),
                            ..Default::default()
                        }],
                        security_context: Some(core::SecurityContext {
                            privileged: Some(true),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    core::Container {
                        name: Some("restricted".into()),
                        image: Some("busybox:1.35".into()),
                        security_context: Some(core::SecurityContext {
                            capabilities: Some(core::Capabilities {
                                add: vec![],
                                drop: vec!["ALL".into()],
                            }),
                            run_as_non_root: Some(true),
                            allow_privilege_escalation: Some(false),
                            seccomp_profile: Some(core::SeccompProfile {
                                r#type: Some("RuntimeDefault".into()),
                                localhost_profile: None,
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ],
                node_name: Some("n1".into()),
                restart_policy: Some("Never".into()),
                host_pid: Some(true),
                host_network: Some(true),
                host_ipc: Some(true),
                tolerations: vec![core::Toleration {
                    operator: Some("Exists".into()),
                    ..Default::default()
                }],
                volumes: vec![
                    core::Volume {
                        name: Some("host-root".into()),
                        volume_source: Some(core::VolumeSource {
                            host_path: Some(core::HostPathVolumeSource {
                                path: Some("/".into()),
                                r#type: None,
                            }),
                            ..Default::default()
                        }),
                    },
                    core::Volume {
                        name: Some("scratch".into()),
                        volume_source: Some(core::VolumeSource {
                            empty_dir: Some(core::EmptyDirVolumeSource::default()),
                            ..Default::default()
                        }),
                    },
                ],
                security_context: Some(core::PodSecurityContext {
                    run_as_user: Some(1000),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn a_debug_pod_maps_field_by_field() {
        let v = decode(&envelope("v1", "Pod", debug_pod().encode_to_vec())).unwrap();
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["kind"], "Pod");
        assert_eq!(v["metadata"]["name"], "n");
        let spec = &v["spec"];
        assert_eq!(
            spec["volumes"],
            json!([{"name": "host-root", "hostPath": {"path": "/"}}, {"name": "scratch", "emptyDir": {}}])
        );
        assert_eq!(spec["tolerations"], json!([{"operator": "Exists"}]));
        assert_eq!(spec["securityContext"], json!({"runAsUser": 1000}));
        for (k, want) in [
            ("hostPID", json!(true)),
            ("hostNetwork", json!(true)),
            ("hostIPC", json!(true)),
            ("nodeName", json!("n1")),
            ("restartPolicy", json!("Never")),
        ] {
            assert_eq!(spec[k], want, "{k}: {spec}");
        }
        let debugger = &spec["containers"][0];
        assert_eq!(
            debugger["volumeMounts"],
            json!([{"name": "host-root", "mountPath": "/host", "readOnly": true}])
        );
        assert_eq!(debugger["securityContext"], json!({"privileged": true}));
        assert_eq!(
            (debugger["stdin"].clone(), debugger["tty"].clone()),
            (json!(true), json!(true))
        );
        assert_eq!(
            spec["containers"][1]["securityContext"],
            json!({
                "capabilities": {"drop": ["ALL"]},
                "runAsNonRoot": true,
                "allowPrivilegeEscalation": false,
                "seccompProfile": {"type": "RuntimeDefault"},
            })
        );
    }

    #[test]
    fn a_pod_field_that_is_not_mapped_is_refused_by_name() {
        let mut with_affinity = debug_pod();
        if let Some(s) = with_affinity.spec.as_mut() {
            s.affinity = Some(core::Affinity::default());
        }
        let e = decode(&envelope("v1", "Pod", with_affinity.encode_to_vec())).unwrap_err();
        assert_eq!(e.code(), 415);
        assert!(e.to_string().contains("PodSpec"), "{e}");
        let mut projected = debug_pod();
        if let Some(s) = projected.spec.as_mut() {
            s.volumes[1].volume_source = Some(core::VolumeSource {
                projected: Some(core::ProjectedVolumeSource::default()),
                ..Default::default()
            });
        }
        let e = decode(&envelope("v1", "Pod", projected.encode_to_vec())).unwrap_err();
        assert_eq!(e.code(), 415);
        assert!(e.to_string().contains("VolumeSource"), "{e}");
    }

    #[test]
    fn bad_bodies() {
        assert_eq!(decode(b"{}").unwrap_err().code(), 400);
        assert_eq!(decode(b"k8s\0\xff\xff\xff").unwrap_err().code(), 400);
        let e = decode(&envelope("apps/v1", "StatefulSet", vec![])).unwrap_err();
        assert_eq!(e.code(), 415);
        assert!(e.to_string().contains("apps/v1/StatefulSet"));
    }
}
