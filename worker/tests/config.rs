//! A container's environment against a real containerd: every source, `$(VAR)` expansion,
//! service variables, and CreateContainerConfigError until a missing key appears.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::*;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use support::*;

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..Default::default()
    }
}

fn env_from(name: &str, source: EnvVarSource) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(source),
        ..Default::default()
    }
}

fn lines(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_sources_expansion_and_service_variables() {
    let Some(h) = Harness::start().await else {
        return;
    };
    h.api
        .set_config_map(config_map("settings", &[("mode", "fast"), ("level", "3")]));
    h.api
        .set_secret(secret("creds", &[("password", "hunter2")]));
    h.api.set_service(Service {
        metadata: meta("my-db"),
        spec: Some(ServiceSpec {
            cluster_ip: Some("10.96.0.20".to_owned()),
            ports: Some(vec![ServicePort {
                name: Some("sql".to_owned()),
                port: 5432,
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    });
    let mut pod = busybox_pod("envpod", "exec sleep 3600");
    let spec = pod.spec.as_mut().unwrap();
    spec.service_account_name = Some("builder".to_owned());
    let c = &mut spec.containers[0];
    // Positional parameters, so the shell does not read `$(...)` itself.
    c.command = Some(vec![
        "sh".into(),
        "-c".into(),
        "printf '%s|' \"$@\" > /tmp/args; exec sleep 3600".into(),
        "sh".into(),
    ]);
    c.args = Some(vec![
        "$(GREETING)".into(),
        "$(UNDEFINED)".into(),
        "$$(GREETING)".into(),
    ]);
    c.resources = Some(ResourceRequirements {
        requests: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity("32Mi".to_owned()),
        )])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity("64Mi".to_owned()),
        )])),
        ..Default::default()
    });
    c.env_from = Some(vec![EnvFromSource {
        prefix: Some("CFG_".to_owned()),
        config_map_ref: Some(ConfigMapEnvSource {
            name: "settings".to_owned(),
            optional: None,
        }),
        ..Default::default()
    }]);
    c.env = Some(vec![
        env("NAME", "world"),
        env("GREETING", "hello $(NAME) $$(NAME) $(MISSING) $(CFG_mode)"),
        env_from(
            "MODE",
            EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: "settings".into(),
                    key: "mode".into(),
                    optional: None,
                }),
                ..Default::default()
            },
        ),
        env_from(
            "PASSWORD",
            EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: "creds".into(),
                    key: "password".into(),
                    optional: None,
                }),
                ..Default::default()
            },
        ),
        env_from(
            "OPTIONAL",
            EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: "settings".into(),
                    key: "absent".into(),
                    optional: Some(true),
                }),
                ..Default::default()
            },
        ),
        env_from(
            "POD_NAME",
            EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    api_version: None,
                }),
                ..Default::default()
            },
        ),
        env_from(
            "POD_IP",
            EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "status.podIP".into(),
                    api_version: None,
                }),
                ..Default::default()
            },
        ),
        env_from(
            "APP",
            EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.labels['app']".into(),
                    api_version: None,
                }),
                ..Default::default()
            },
        ),
        env_from(
            "SA",
            EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "spec.serviceAccountName".into(),
                    api_version: None,
                }),
                ..Default::default()
            },
        ),
        env_from(
            "MEM_LIMIT_MI",
            EnvVarSource {
                resource_field_ref: Some(ResourceFieldSelector {
                    resource: "limits.memory".into(),
                    divisor: Some(Quantity("1Mi".into())),
                    container_name: None,
                }),
                ..Default::default()
            },
        ),
        env_from(
            "CPU_LIMIT",
            EnvVarSource {
                resource_field_ref: Some(ResourceFieldSelector {
                    resource: "limits.cpu".into(),
                    divisor: None,
                    container_name: None,
                }),
                ..Default::default()
            },
        ),
    ]);
    h.pods().upsert(pod.clone());
    let s = h.wait(&pod, 60, "Running", |s| phase(s) == "Running").await;
    let vars = lines(&exec(&h, &s, "main", &["env"]).await);
    let get = |k: &str| {
        vars.get(k)
            .cloned()
            .unwrap_or_else(|| panic!("{k} missing from {vars:?}"))
    };
    assert_eq!(get("GREETING"), "hello world $(NAME) $(MISSING) fast");
    assert_eq!(get("CFG_mode"), "fast");
    assert_eq!(get("CFG_level"), "3");
    assert_eq!(get("MODE"), "fast");
    assert_eq!(get("PASSWORD"), "hunter2");
    assert!(!vars.contains_key("OPTIONAL"));
    assert_eq!(get("POD_NAME"), "envpod");
    assert_eq!(get("POD_IP"), s.pod_ip.clone().unwrap());
    assert_eq!(get("APP"), "envpod");
    assert_eq!(get("SA"), "builder");
    assert_eq!(get("MEM_LIMIT_MI"), "64");
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(
        get("CPU_LIMIT"),
        cpus.to_string(),
        "a missing CPU limit is the node's allocatable"
    );
    assert_eq!(get("MY_DB_SERVICE_HOST"), "10.96.0.20");
    assert_eq!(get("MY_DB_SERVICE_PORT"), "5432");
    assert_eq!(get("MY_DB_SERVICE_PORT_SQL"), "5432");
    assert_eq!(get("MY_DB_PORT"), "tcp://10.96.0.20:5432");
    assert_eq!(get("MY_DB_PORT_5432_TCP_ADDR"), "10.96.0.20");
    assert_eq!(get("MY_DB_PORT_5432_TCP_PROTO"), "tcp");
    assert_eq!(
        exec(&h, &s, "main", &["cat", "/tmp/args"]).await,
        "hello world $(NAME) $(MISSING) fast|$(UNDEFINED)|$(GREETING)|"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_key_waits_with_create_container_config_error_then_runs() {
    let Some(h) = Harness::start().await else {
        return;
    };
    h.api.set_config_map(config_map("late", &[("other", "x")]));
    let mut pod = busybox_pod("waits", "exec sleep 3600");
    pod.spec.as_mut().unwrap().containers[0].env = Some(vec![env_from(
        "VALUE",
        EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector {
                name: "late".into(),
                key: "wanted".into(),
                optional: None,
            }),
            ..Default::default()
        },
    )]);
    let mut no_secret = busybox_pod("nosecret", "exec sleep 3600");
    no_secret.spec.as_mut().unwrap().containers[0].env = Some(vec![env_from(
        "S",
        EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: "absent".into(),
                key: "k".into(),
                optional: None,
            }),
            ..Default::default()
        },
    )]);
    h.pods().upsert(pod.clone());
    h.pods().upsert(no_secret.clone());
    let s = h
        .wait(&pod, 60, "CreateContainerConfigError", |s| {
            waiting_reason(s, "main").as_deref() == Some("CreateContainerConfigError")
        })
        .await;
    assert_eq!(
        container_status(&s, "main")
            .state
            .clone()
            .unwrap()
            .waiting
            .unwrap()
            .message
            .as_deref(),
        Some("couldn't find key wanted in ConfigMap default/late")
    );
    assert_eq!(phase(&s), "Pending");
    let s = h
        .wait(&no_secret, 60, "CreateContainerConfigError", |s| {
            waiting_reason(s, "main").as_deref() == Some("CreateContainerConfigError")
        })
        .await;
    assert_eq!(
        container_status(&s, "main")
            .state
            .clone()
            .unwrap()
            .waiting
            .unwrap()
            .message
            .as_deref(),
        Some("secret \"absent\" not found")
    );
    h.api
        .set_config_map(config_map("late", &[("other", "x"), ("wanted", "here")]));
    let s = h
        .wait(&pod, 60, "Running once the key exists", |s| {
            phase(s) == "Running"
        })
        .await;
    assert_eq!(
        exec(&h, &s, "main", &["sh", "-c", "echo $VALUE"]).await,
        "here\n"
    );
    h.stop().await;
}
