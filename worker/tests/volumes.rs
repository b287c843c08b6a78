//! Volumes, security context and resources against a real containerd: every volume kind
//! with a configmap update showing up, users, capabilities, seccomp, cgroup limits, usage.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::*;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_volume_kind_and_a_configmap_update_shows_up() {
    let Some(h) = Harness::start().await else {
        return;
    };
    h.api
        .set_config_map(config_map("site", &[("index.html", "v1"), ("extra", "e")]));
    h.api.set_config_map(config_map(
        "kube-root-ca.crt",
        &[("ca.crt", "-----CA-----")],
    ));
    h.api
        .set_secret(secret("tls", &[("tls.key", "secret-key")]));
    let host_dir = h.dir.path().join("hostdata");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("from-host"), "host file").unwrap();
    let mut pod = busybox_pod("vols", "exec sleep 3600");
    pod.metadata.annotations = Some(BTreeMap::from([("team".to_owned(), "blue".to_owned())]));
    let spec = pod.spec.as_mut().unwrap();
    let field = |path: &str, file: &str| DownwardAPIVolumeFile {
        path: file.to_owned(),
        field_ref: Some(ObjectFieldSelector {
            field_path: path.to_owned(),
            api_version: None,
        }),
        ..Default::default()
    };
    spec.volumes = Some(vec![
        Volume {
            name: "scratch".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
        Volume {
            name: "mem".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: Some(Quantity("8Mi".into())),
            }),
            ..Default::default()
        },
        Volume {
            name: "site".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: "site".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "tls".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some("tls".into()),
                default_mode: Some(0o400),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "info".into(),
            downward_api: Some(DownwardAPIVolumeSource {
                items: Some(vec![
                    field("metadata.labels", "labels"),
                    field("metadata.annotations", "annotations"),
                ]),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "token".into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![
                    VolumeProjection {
                        service_account_token: Some(ServiceAccountTokenProjection {
                            path: "token".into(),
                            expiration_seconds: Some(3607),
                            audience: None,
                        }),
                        ..Default::default()
                    },
                    VolumeProjection {
                        config_map: Some(ConfigMapProjection {
                            name: "kube-root-ca.crt".into(),
                            items: Some(vec![KeyToPath {
                                key: "ca.crt".into(),
                                path: "ca.crt".into(),
                                mode: None,
                            }]),
                            optional: None,
                        }),
                        ..Default::default()
                    },
                    VolumeProjection {
                        downward_api: Some(DownwardAPIProjection {
                            items: Some(vec![field("metadata.namespace", "namespace")]),
                        }),
                        ..Default::default()
                    },
                ]),
                default_mode: Some(0o644),
            }),
            ..Default::default()
        },
        Volume {
            name: "host".into(),
            host_path: Some(HostPathVolumeSource {
                path: host_dir.display().to_string(),
                type_: Some("Directory".into()),
            }),
            ..Default::default()
        },
    ]);
    spec.containers[0].volume_mounts = Some(vec![
        mount("scratch", "/scratch"),
        mount("mem", "/mem"),
        mount("site", "/site"),
        mount("tls", "/tls"),
        mount("info", "/info"),
        mount("token", "/var/run/secrets/kubernetes.io/serviceaccount"),
        mount("host", "/host"),
    ]);
    h.pods().upsert(pod.clone());
    let s = h.wait(&pod, 60, "Running", |s| phase(s) == "Running").await;
    let sh = |script: &'static str| {
        let s = s.clone();
        let h = &h;
        async move { exec(h, &s, "main", &["sh", "-c", script]).await }
    };
    assert_eq!(sh("echo hi > /scratch/f && cat /scratch/f").await, "hi\n");
    let mounts = sh("cat /proc/mounts").await;
    let mem = mounts
        .lines()
        .find(|l| l.contains(" /mem "))
        .expect("/mem mounted");
    assert!(
        mem.starts_with("tmpfs ") && mem.contains("size=8192k"),
        "{mem}"
    );
    assert_eq!(sh("cat /site/index.html").await, "v1");
    assert_eq!(
        sh("readlink /site/index.html").await.trim(),
        "..data/index.html"
    );
    assert_eq!(
        sh("cat /tls/tls.key; stat -c %a /tls/..data/tls.key").await,
        "secret-key400\n"
    );
    assert!(
        sh("grep ' /tls ' /proc/mounts").await.starts_with("tmpfs "),
        "secret volume on tmpfs"
    );
    assert_eq!(sh("cat /info/labels").await, "app=\"vols\"");
    assert_eq!(sh("cat /info/annotations").await, "team=\"blue\"");
    assert!(
        sh("cat /var/run/secrets/kubernetes.io/serviceaccount/token")
            .await
            .starts_with("fake-token-default-default-")
    );
    assert_eq!(
        sh("cat /var/run/secrets/kubernetes.io/serviceaccount/ca.crt").await,
        "-----CA-----"
    );
    assert_eq!(
        sh("cat /var/run/secrets/kubernetes.io/serviceaccount/namespace").await,
        "default"
    );
    assert_eq!(sh("cat /host/from-host").await, "host file");
    assert!(
        sh("touch /site/x 2>&1; echo $?")
            .await
            .trim()
            .ends_with('1'),
        "configMap volume is read-only"
    );
    // An update shows up (atomically, through ..data) at the next resync, and a removed key goes.
    h.api
        .set_config_map(config_map("site", &[("index.html", "v2")]));
    let h2 = &h;
    let mut seen = String::new();
    for _ in 0..60 {
        seen = exec(
            h2,
            &s,
            "main",
            &["sh", "-c", "cat /site/index.html; ls /site"],
        )
        .await;
        if seen == "v2index.html\n" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert_eq!(seen, "v2index.html\n");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_context_and_resources_reach_the_container() {
    let Some(h) = Harness::start().await else {
        return;
    };
    let mut pod = busybox_pod("secure", "exec sleep 3600");
    let spec = pod.spec.as_mut().unwrap();
    spec.security_context = Some(PodSecurityContext {
        run_as_group: Some(3000),
        supplemental_groups: Some(vec![4000]),
        ..Default::default()
    });
    let c = &mut spec.containers[0];
    c.security_context = Some(SecurityContext {
        run_as_user: Some(1000),
        run_as_non_root: Some(true),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: Some(vec!["NET_BIND_SERVICE".into()]),
        }),
        ..Default::default()
    });
    let both = BTreeMap::from([
        ("cpu".to_owned(), Quantity("500m".into())),
        ("memory".to_owned(), Quantity("64Mi".into())),
    ]);
    c.resources = Some(ResourceRequirements {
        requests: Some(both.clone()),
        limits: Some(both),
        ..Default::default()
    });
    let mut root = busybox_pod("rootimage", "exec sleep 3600");
    root.spec.as_mut().unwrap().security_context = Some(PodSecurityContext {
        run_as_non_root: Some(true),
        ..Default::default()
    });
    let mut privileged = busybox_pod("privileged", "exec sleep 3600");
    privileged.spec.as_mut().unwrap().containers[0].security_context = Some(SecurityContext {
        privileged: Some(true),
        ..Default::default()
    });
    for p in [&pod, &root, &privileged] {
        h.pods().upsert(p.clone());
    }
    let s = h.wait(&pod, 60, "Running", |s| phase(s) == "Running").await;
    assert_eq!(s.qos_class.as_deref(), Some("Guaranteed"));
    assert_eq!(
        exec(&h, &s, "main", &["id"]).await.trim(),
        "uid=1000 gid=3000 groups=3000,4000"
    );
    assert!(
        exec(
            &h,
            &s,
            "main",
            &["sh", "-c", "touch /x 2>&1 || echo refused"]
        )
        .await
        .contains("refused")
    );
    let status = exec(&h, &s, "main", &["cat", "/proc/self/status"]).await;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_owned()
    };
    assert_eq!(field("Seccomp:"), "2", "seccomp RuntimeDefault");
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(
        field("CapBnd:"),
        "0000000000000400",
        "only NET_BIND_SERVICE"
    );
    let cgroup = |file: &str| {
        let s = s.clone();
        let h = &h;
        let file = file.to_owned();
        async move { exec(h, &s, "main", &["cat", &file]).await.trim().to_owned() }
    };
    assert_eq!(
        cgroup("/sys/fs/cgroup/memory/memory.limit_in_bytes").await,
        (64 << 20).to_string()
    );
    assert_eq!(cgroup("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").await, "50000");
    assert_eq!(cgroup("/sys/fs/cgroup/cpu/cpu.shares").await, "512");
    let own = exec(&h, &s, "main", &["cat", "/proc/self/cgroup"]).await;
    let uid = pod.metadata.uid.clone().unwrap();
    assert!(own.contains(&format!("/kubepods/pod{uid}/")), "{own}");
    let s = h
        .wait(&root, 60, "CreateContainerConfigError", |s| {
            waiting_reason(s, "main").as_deref() == Some("CreateContainerConfigError")
        })
        .await;
    let ruid = root.metadata.uid.clone().unwrap();
    assert_eq!(
        container_status(&s, "main")
            .state
            .clone()
            .unwrap()
            .waiting
            .unwrap()
            .message
            .unwrap(),
        format!(
            "container has runAsNonRoot and image will run as root (pod: \"rootimage_default({ruid})\", container: main)"
        )
    );
    let s = h
        .wait(&privileged, 60, "Running", |s| phase(s) == "Running")
        .await;
    let status = exec(&h, &s, "main", &["cat", "/proc/self/status"]).await;
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Seccomp:") && l.ends_with('0')),
        "privileged is unconfined"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_usage_per_pod_and_node() {
    let Some(h) = Harness::start().await else {
        return;
    };
    let busy = busybox_pod("busy", "while true; do :; done");
    h.pods().upsert(busy.clone());
    h.wait(&busy, 60, "Running", |s| phase(s) == "Running")
        .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let first = h.pods().usage().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let second = h.pods().usage().await.unwrap();
    let pod = |u: &worker::runtime::ResourceUsage| {
        u.pods
            .iter()
            .find(|p| p.name == "busy")
            .cloned()
            .expect("busy pod in usage")
    };
    let (a, b) = (pod(&first), pod(&second));
    assert_eq!(b.namespace, "default");
    assert_eq!(b.containers.len(), 1);
    assert!(b.memory_working_set_bytes > 0);
    let cores = second.cpu_rate(&first, b.cpu_usage_ns, a.cpu_usage_ns);
    assert!(cores > 0.05, "a busy loop used {cores} cores");
    assert!(second.node.cpu_usage_ns > first.node.cpu_usage_ns);
    assert!(second.node.memory_working_set_bytes > 0);
    h.stop().await;
}

fn claim(name: &str, volume: Option<&str>) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            volume_name: volume.map(str::to_string),
            ..Default::default()
        }),
        status: Some(PersistentVolumeClaimStatus {
            phase: Some(if volume.is_some() { "Bound" } else { "Pending" }.into()),
            ..Default::default()
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_mounts_its_local_volume_once_bound() {
    let Some(h) = Harness::start().await else {
        return;
    };
    let disk = h.dir.path().join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    std::fs::write(disk.join("kept"), "from before").unwrap();
    h.api.set_claim(claim("data", None));
    let mut pod = busybox_pod("claims", "exec sleep 3600");
    let spec = pod.spec.as_mut().unwrap();
    spec.volumes = Some(vec![Volume {
        name: "data".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: "data".into(),
            read_only: None,
        }),
        ..Default::default()
    }]);
    spec.containers[0].volume_mounts = Some(vec![mount("data", "/data")]);
    h.pods().upsert(pod.clone());
    // Unbound: the pod waits (its sync looks again every 2 s).
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(
        h.api
            .status(pod.metadata.uid.as_deref().unwrap())
            .is_none_or(|s| phase(&s) == "Pending"),
        "a pod whose claim is unbound must not start"
    );
    h.api.set_volume(PersistentVolume {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("local-disk".into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            local: Some(LocalVolumeSource {
                path: disk.display().to_string(),
                fs_type: None,
            }),
            ..Default::default()
        }),
        status: None,
    });
    h.api.set_claim(claim("data", Some("local-disk")));
    let s = h
        .wait(&pod, 60, "Running once bound", |s| phase(s) == "Running")
        .await;
    assert_eq!(
        exec(
            &h,
            &s,
            "main",
            &["sh", "-c", "cat /data/kept; echo new > /data/written"]
        )
        .await,
        "from before"
    );
    assert_eq!(
        std::fs::read_to_string(disk.join("written")).unwrap(),
        "new\n"
    );
    h.stop().await;
}
