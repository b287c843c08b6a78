//! Round trips: each body is encoded by k8s-pb's generated types (an
//! encoder independent of the decoder) and must read back as upstream's JSON.

use std::collections::BTreeMap;

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::authentication::v1 as authn;
use k8s_pb::api::authorization::v1 as authz;
use k8s_pb::api::batch::v1 as batch;
use k8s_pb::api::certificates::v1 as certs;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::networking::v1 as net;
use k8s_pb::api::policy::v1 as policy;
use k8s_pb::api::rbac::v1 as rbac;
use k8s_pb::api::scheduling::v1 as sched;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use prost::Message;
use serde_json::{Value, json};

use super::{MAGIC, decode};

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
    let at = |t: Option<meta::Time>| {
        let cm = core::ConfigMap {
            metadata: Some(meta::ObjectMeta {
                creation_timestamp: t,
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = decode(&envelope("v1", "ConfigMap", cm.encode_to_vec())).unwrap();
        v["metadata"].get("creationTimestamp").cloned()
    };
    assert_eq!(at(Some(meta::Time::default())), None);
    assert_eq!(at(None), None);
    let epoch = meta::Time {
        seconds: Some(0),
        nanos: None,
    };
    assert_eq!(at(Some(epoch)), Some(json!("1970-01-01T00:00:00Z")));
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
fn workloads_round_trip() {
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
        json!({"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template_json,
               // A Go value struct is always written, and upstream shows it empty.
               "strategy": {}})
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

/// Fields no hand mapping covered before the schema: affinity, probes (whose
/// handler is inline in Go's JSON), projected volumes (inline in the volume),
/// quantities in maps, and a named port.
#[test]
fn a_pod_reads_back_whole() {
    let mut pod = debug_pod();
    let spec = pod.spec.as_mut().unwrap();
    spec.affinity = Some(core::Affinity {
        node_affinity: Some(core::NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(core::NodeSelector {
                node_selector_terms: vec![core::NodeSelectorTerm {
                    match_expressions: vec![core::NodeSelectorRequirement {
                        key: Some("zone".into()),
                        operator: Some("In".into()),
                        values: vec!["a".into()],
                    }],
                    match_fields: vec![],
                }],
            }),
            preferred_during_scheduling_ignored_during_execution: vec![],
        }),
        ..Default::default()
    });
    spec.volumes[1].volume_source = Some(core::VolumeSource {
        projected: Some(core::ProjectedVolumeSource {
            sources: vec![core::VolumeProjection {
                service_account_token: Some(core::ServiceAccountTokenProjection {
                    path: Some("token".into()),
                    expiration_seconds: Some(3607),
                    audience: None,
                }),
                ..Default::default()
            }],
            default_mode: Some(0o644),
        }),
        ..Default::default()
    });
    let c = &mut spec.containers[1];
    c.readiness_probe = Some(core::Probe {
        handler: Some(core::ProbeHandler {
            http_get: Some(core::HttpGetAction {
                path: Some("/healthz".into()),
                port: Some(k8s_pb::apimachinery::pkg::util::intstr::IntOrString {
                    r#type: Some(1),
                    int_val: Some(0),
                    str_val: Some("http".into()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        period_seconds: Some(5),
        timeout_seconds: Some(0),
        ..Default::default()
    });
    c.resources = Some(core::ResourceRequirements {
        requests: BTreeMap::from([(
            "cpu".into(),
            k8s_pb::apimachinery::pkg::api::resource::Quantity {
                string: Some("250m".into()),
            },
        )]),
        ..Default::default()
    });
    let v = decode(&envelope("v1", "Pod", pod.encode_to_vec())).unwrap();
    let spec = &v["spec"];
    assert_eq!(
        spec["affinity"],
        json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}})
    );
    assert_eq!(
        spec["volumes"][1],
        json!({"name": spec["volumes"][1]["name"], "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}], "defaultMode": 420}})
    );
    let c = &spec["containers"][1];
    assert_eq!(
        c["readinessProbe"],
        json!({"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5}),
        "the handler is inline, and a zero timeout is Go's unset value"
    );
    assert_eq!(c["resources"], json!({"requests": {"cpu": "250m"}}));
}

#[test]
fn every_served_kind_reads_back_its_metadata() {
    // An encoder independent of the schema: k8s-pb's ObjectMeta, inside each kind's envelope.
    let meta_only = meta::ObjectMeta {
        name: Some("x".into()),
        ..Default::default()
    };
    let body = {
        // ObjectMeta is field 1 of every kind's message.
        let mut b = vec![0x0a];
        let inner = meta_only.encode_to_vec();
        prost::encoding::encode_varint(inner.len() as u64, &mut b);
        b.extend(inner);
        b
    };
    for (av, kind) in [
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "DaemonSet"),
        ("v1", "ReplicationController"),
        ("v1", "PersistentVolumeClaim"),
        ("storage.k8s.io/v1", "StorageClass"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        (
            "admissionregistration.k8s.io/v1",
            "ValidatingWebhookConfiguration",
        ),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        ("coordination.k8s.io/v1", "Lease"),
        ("discovery.k8s.io/v1", "EndpointSlice"),
    ] {
        let v = decode(&envelope(av, kind, body.clone())).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": av, "kind": kind, "metadata": {"name": "x"}}),
            "{av}/{kind}"
        );
    }
}

#[test]
fn delete_options_read_back_for_any_group() {
    let opts = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        propagation_policy: Some("Foreground".into()),
        preconditions: Some(meta::Preconditions {
            uid: Some("u".into()),
            resource_version: None,
        }),
        dry_run: vec!["All".into()],
        ..Default::default()
    };
    let v = decode(&envelope(
        "meta.k8s.io/v1",
        "DeleteOptions",
        opts.encode_to_vec(),
    ))
    .unwrap();
    assert_eq!(
        v,
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
               "preconditions": {"uid": "u"}, "propagationPolicy": "Foreground", "dryRun": ["All"]})
    );
}

#[test]
fn a_custom_resource_definition_keeps_its_schema() {
    use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
    let string = ext::JsonSchemaProps {
        r#type: Some("string".into()),
        ..Default::default()
    };
    let schema = ext::JsonSchemaProps {
        r#type: Some("object".into()),
        properties: BTreeMap::from([
            ("name".to_string(), string.clone()),
            (
                "tags".to_string(),
                ext::JsonSchemaProps {
                    r#type: Some("array".into()),
                    items: Some(Box::new(ext::JsonSchemaPropsOrArray {
                        schema: Some(Box::new(string)),
                        j_son_schemas: vec![],
                    })),
                    ..Default::default()
                },
            ),
        ]),
        additional_properties: Some(Box::new(ext::JsonSchemaPropsOrBool {
            allows: Some(false),
            schema: None,
        })),
        default: Some(ext::Json {
            raw: Some(br#"{"name":"n"}"#.to_vec()),
        }),
        x_kubernetes_preserve_unknown_fields: Some(true),
        ..Default::default()
    };
    let crd = ext::CustomResourceDefinition {
        metadata: None,
        spec: Some(ext::CustomResourceDefinitionSpec {
            group: Some("example.com".into()),
            versions: vec![ext::CustomResourceDefinitionVersion {
                name: Some("v1".into()),
                served: Some(true),
                storage: Some(true),
                schema: Some(ext::CustomResourceValidation {
                    open_apiv3_schema: Some(schema),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    };
    let v = decode(&envelope(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        crd.encode_to_vec(),
    ))
    .unwrap();
    assert_eq!(
        v["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
        json!({"type": "object",
               "properties": {"name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
               "additionalProperties": false, "default": {"name": "n"},
               "x-kubernetes-preserve-unknown-fields": true})
    );
}

#[test]
fn bad_bodies() {
    assert_eq!(decode(b"{}").unwrap_err().code(), 400);
    assert_eq!(decode(b"k8s\0\xff\xff\xff").unwrap_err().code(), 400);
    // Custom resources have no protobuf form, upstream's or ours.
    let e = decode(&envelope("example.com/v1", "Widget", vec![])).unwrap_err();
    assert_eq!(e.code(), 415);
    assert!(e.to_string().contains("example.com/v1/Widget"));
    // A field whose wire type is not its declared one.
    let wrong_wire = vec![0x0a, 0x02, 0x08, 0x01]; // metadata { name: varint 1 }
    let e = decode(&envelope("v1", "ConfigMap", wrong_wire)).unwrap_err();
    assert_eq!(e.code(), 400);
    assert!(e.to_string().contains("wrong wire type"), "{e}");
    // A length past the end, and nesting deep enough to exhaust a stack.
    let e = decode(&envelope("v1", "ConfigMap", vec![0x0a, 0x7f, 0x00])).unwrap_err();
    assert_eq!(e.code(), 400);
    let mut deep = Vec::new();
    for _ in 0..200 {
        // JSONSchemaProps.not (field 28) of itself.
        let mut outer = vec![0xe2, 0x01];
        prost::encoding::encode_varint(deep.len() as u64, &mut outer);
        outer.extend(deep);
        deep = outer;
    }
    let mut crd = vec![0x12]; // spec
    let mut spec = vec![0x3a]; // versions (7)
    let mut version = vec![0x22]; // schema (4)
    let mut validation = vec![0x0a]; // openAPIV3Schema (1)
    prost::encoding::encode_varint(deep.len() as u64, &mut validation);
    validation.extend(deep);
    prost::encoding::encode_varint(validation.len() as u64, &mut version);
    version.extend(validation);
    prost::encoding::encode_varint(version.len() as u64, &mut spec);
    spec.extend(version);
    prost::encoding::encode_varint(spec.len() as u64, &mut crd);
    crd.extend(spec);
    let e = decode(&envelope(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        crd,
    ))
    .unwrap_err();
    assert_eq!(e.code(), 400);
    assert!(e.to_string().contains("nest deeper"), "{e}");
}

#[test]
fn identity_kinds_round_trip() {
    let md = Some(meta::ObjectMeta {
        name: Some("n".into()),
        ..Default::default()
    });
    let tr = authn::TokenRequest {
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
    };
    let tr = decode(&envelope(
        "authentication.k8s.io/v1",
        "TokenRequest",
        tr.encode_to_vec(),
    ))
    .unwrap();
    assert_eq!(
        tr["spec"],
        json!({"audiences": ["a"], "expirationSeconds": 600, "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "u"}})
    );
    let csr = certs::CertificateSigningRequest {
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
    };
    let csr = decode(&envelope(
        "certificates.k8s.io/v1",
        "CertificateSigningRequest",
        csr.encode_to_vec(),
    ))
    .unwrap();
    assert_eq!(csr["spec"]["request"], "cGVt");
    assert_eq!(csr["spec"]["extra"], json!({"k": ["v"]}));
    assert_eq!(csr["status"]["conditions"][0]["type"], "Approved");
    assert_eq!(
        csr["status"]["conditions"][0]["lastUpdateTime"],
        "1970-01-01T00:00:00Z"
    );
    let rv = authn::TokenReview {
        metadata: None,
        spec: Some(authn::TokenReviewSpec {
            token: Some("t".into()),
            audiences: vec![],
        }),
        status: None,
    };
    let rv = decode(&envelope(
        "authentication.k8s.io/v1",
        "TokenReview",
        rv.encode_to_vec(),
    ))
    .unwrap();
    assert_eq!(rv["spec"], json!({"token": "t"}));
}
