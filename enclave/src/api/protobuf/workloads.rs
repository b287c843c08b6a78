//! Protobuf-to-JSON mappings of the workloads kubectl 1.32+ creates through
//! typed clients (`create deployment|job|cronjob|service`, `debug node/X`):
//! Deployment, Job and CronJob with their pod templates, Pod, and Service.
//!
//! A pod spec has far more fields than are mapped here, so every mapper
//! takes the fields it maps out of the message and then requires the rest
//! to be empty: a body that sets anything unmapped gets 415 naming the
//! message (kubectl users can fall back to `apply -f`, which sends JSON)
//! instead of silently losing the field. `status` is ignored: creates
//! clear it.

use std::mem::take;

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::batch::v1 as batch;
use k8s_pb::api::core::v1 as core;
use serde_json::{Map, Value, json};

use super::kinds::{int_or_string, label_selector};
use super::{nz, object_meta, opt, put, top};
use crate::registry::Error;

type Res<T> = Result<T, Error>;

/// Fails unless everything not taken out of `rest` is unset.
fn nothing_left<T: Default + PartialEq>(rest: &T, what: &str) -> Res<()> {
    if *rest == T::default() {
        Ok(())
    } else {
        Err(Error::UnsupportedMediaType(format!(
            "protobuf bodies that set fields of {what} other than the common ones are not supported yet; send application/json"
        )))
    }
}

fn quantities(
    m: &std::collections::BTreeMap<String, k8s_pb::apimachinery::pkg::api::resource::Quantity>,
) -> Value {
    Value::Object(m.iter().map(|(k, q)| (k.clone(), opt(&q.string))).collect())
}

fn container(mut c: core::Container) -> Res<Value> {
    let mut m = Map::new();
    put(&mut m, "name", opt(&take(&mut c.name)));
    put(&mut m, "image", opt(&take(&mut c.image)));
    put(&mut m, "command", json!(take(&mut c.command)));
    put(&mut m, "args", json!(take(&mut c.args)));
    put(&mut m, "workingDir", opt(&take(&mut c.working_dir)));
    let mut ports = Vec::new();
    for mut p in take(&mut c.ports) {
        let mut pm = Map::new();
        put(&mut pm, "name", opt(&take(&mut p.name)));
        put(&mut pm, "hostPort", nz(&take(&mut p.host_port)));
        put(&mut pm, "containerPort", opt(&take(&mut p.container_port)));
        put(&mut pm, "protocol", opt(&take(&mut p.protocol)));
        put(&mut pm, "hostIP", opt(&take(&mut p.host_ip)));
        ports.push(Value::Object(pm));
    }
    put(&mut m, "ports", Value::Array(ports));
    let mut env = Vec::new();
    for mut e in take(&mut c.env) {
        let mut em = Map::new();
        em.insert("name".into(), opt(&take(&mut e.name)));
        put(&mut em, "value", opt(&take(&mut e.value)));
        nothing_left(&e, "EnvVar")?;
        env.push(Value::Object(em));
    }
    put(&mut m, "env", Value::Array(env));
    if let Some(mut r) = take(&mut c.resources) {
        let mut rm = Map::new();
        put(&mut rm, "limits", quantities(&take(&mut r.limits)));
        put(&mut rm, "requests", quantities(&take(&mut r.requests)));
        nothing_left(&r, "ResourceRequirements")?;
        m.insert("resources".into(), Value::Object(rm));
    }
    put(
        &mut m,
        "terminationMessagePath",
        opt(&take(&mut c.termination_message_path)),
    );
    put(
        &mut m,
        "terminationMessagePolicy",
        opt(&take(&mut c.termination_message_policy)),
    );
    put(
        &mut m,
        "imagePullPolicy",
        opt(&take(&mut c.image_pull_policy)),
    );
    put(&mut m, "stdin", nz(&take(&mut c.stdin)));
    put(&mut m, "stdinOnce", nz(&take(&mut c.stdin_once)));
    put(&mut m, "tty", nz(&take(&mut c.tty)));
    let mut mounts = Vec::new();
    for mut v in take(&mut c.volume_mounts) {
        let mut vm = Map::new();
        put(&mut vm, "name", opt(&take(&mut v.name)));
        put(&mut vm, "readOnly", nz(&take(&mut v.read_only)));
        put(
            &mut vm,
            "recursiveReadOnly",
            opt(&take(&mut v.recursive_read_only)),
        );
        put(&mut vm, "mountPath", opt(&take(&mut v.mount_path)));
        put(&mut vm, "subPath", opt(&take(&mut v.sub_path)));
        put(
            &mut vm,
            "mountPropagation",
            opt(&take(&mut v.mount_propagation)),
        );
        put(&mut vm, "subPathExpr", opt(&take(&mut v.sub_path_expr)));
        nothing_left(&v, "VolumeMount")?;
        mounts.push(Value::Object(vm));
    }
    put(&mut m, "volumeMounts", Value::Array(mounts));
    if let Some(sc) = take(&mut c.security_context) {
        m.insert("securityContext".into(), security_context(sc)?);
    }
    nothing_left(&c, "Container")?;
    Ok(Value::Object(m))
}

fn seccomp(p: Option<core::SeccompProfile>) -> Value {
    let Some(p) = p else {
        return Value::Null;
    };
    let mut m = Map::new();
    put(&mut m, "type", opt(&p.r#type));
    put(&mut m, "localhostProfile", opt(&p.localhost_profile));
    Value::Object(m)
}

/// A container's `securityContext` (what `kubectl debug`'s profiles set, and more).
fn security_context(mut sc: core::SecurityContext) -> Res<Value> {
    let mut m = Map::new();
    if let Some(mut caps) = take(&mut sc.capabilities) {
        let mut cm = Map::new();
        put(&mut cm, "add", json!(take(&mut caps.add)));
        put(&mut cm, "drop", json!(take(&mut caps.drop)));
        m.insert("capabilities".into(), Value::Object(cm));
    }
    put(&mut m, "privileged", opt(&take(&mut sc.privileged)));
    put(&mut m, "runAsUser", opt(&take(&mut sc.run_as_user)));
    put(&mut m, "runAsGroup", opt(&take(&mut sc.run_as_group)));
    put(&mut m, "runAsNonRoot", opt(&take(&mut sc.run_as_non_root)));
    put(
        &mut m,
        "readOnlyRootFilesystem",
        opt(&take(&mut sc.read_only_root_filesystem)),
    );
    put(
        &mut m,
        "allowPrivilegeEscalation",
        opt(&take(&mut sc.allow_privilege_escalation)),
    );
    put(&mut m, "procMount", opt(&take(&mut sc.proc_mount)));
    put(
        &mut m,
        "seccompProfile",
        seccomp(take(&mut sc.seccomp_profile)),
    );
    nothing_left(&sc, "SecurityContext")?;
    Ok(Value::Object(m))
}

/// A pod's `securityContext`.
fn pod_security_context(mut sc: core::PodSecurityContext) -> Res<Value> {
    let mut m = Map::new();
    put(&mut m, "runAsUser", opt(&take(&mut sc.run_as_user)));
    put(&mut m, "runAsGroup", opt(&take(&mut sc.run_as_group)));
    put(&mut m, "runAsNonRoot", opt(&take(&mut sc.run_as_non_root)));
    put(
        &mut m,
        "supplementalGroups",
        json!(take(&mut sc.supplemental_groups)),
    );
    put(&mut m, "fsGroup", opt(&take(&mut sc.fs_group)));
    put(
        &mut m,
        "seccompProfile",
        seccomp(take(&mut sc.seccomp_profile)),
    );
    nothing_left(&sc, "PodSecurityContext")?;
    Ok(Value::Object(m))
}

fn key_to_paths(items: Vec<core::KeyToPath>) -> Value {
    Value::Array(
        items
            .into_iter()
            .map(|k| {
                let mut m = Map::new();
                put(&mut m, "key", opt(&k.key));
                put(&mut m, "path", opt(&k.path));
                put(&mut m, "mode", opt(&k.mode));
                Value::Object(m)
            })
            .collect(),
    )
}

/// A volume: hostPath, emptyDir, configMap or secret sources.
fn volume(mut v: core::Volume) -> Res<Value> {
    let mut m = Map::new();
    m.insert("name".into(), opt(&take(&mut v.name)));
    if let Some(mut src) = take(&mut v.volume_source) {
        if let Some(mut h) = take(&mut src.host_path) {
            let mut hm = Map::new();
            put(&mut hm, "path", opt(&take(&mut h.path)));
            put(&mut hm, "type", opt(&take(&mut h.r#type)));
            m.insert("hostPath".into(), Value::Object(hm));
        }
        if let Some(mut e) = take(&mut src.empty_dir) {
            let mut em = Map::new();
            put(&mut em, "medium", opt(&take(&mut e.medium)));
            put(
                &mut em,
                "sizeLimit",
                opt(&take(&mut e.size_limit).and_then(|q| q.string)),
            );
            m.insert("emptyDir".into(), Value::Object(em));
        }
        if let Some(mut c) = take(&mut src.config_map) {
            let mut cm = Map::new();
            put(
                &mut cm,
                "name",
                opt(&take(&mut c.local_object_reference).and_then(|r| r.name)),
            );
            put(&mut cm, "items", key_to_paths(take(&mut c.items)));
            put(&mut cm, "defaultMode", opt(&take(&mut c.default_mode)));
            put(&mut cm, "optional", opt(&take(&mut c.optional)));
            m.insert("configMap".into(), Value::Object(cm));
        }
        if let Some(mut sec) = take(&mut src.secret) {
            let mut sm = Map::new();
            put(&mut sm, "secretName", opt(&take(&mut sec.secret_name)));
            put(&mut sm, "items", key_to_paths(take(&mut sec.items)));
            put(&mut sm, "defaultMode", opt(&take(&mut sec.default_mode)));
            put(&mut sm, "optional", opt(&take(&mut sec.optional)));
            m.insert("secret".into(), Value::Object(sm));
        }
        nothing_left(&src, "VolumeSource")?;
    }
    nothing_left(&v, "Volume")?;
    Ok(Value::Object(m))
}

fn tolerations(ts: Vec<core::Toleration>) -> Value {
    Value::Array(
        ts.into_iter()
            .map(|t| {
                let mut m = Map::new();
                put(&mut m, "key", opt(&t.key));
                put(&mut m, "operator", opt(&t.operator));
                put(&mut m, "value", opt(&t.value));
                put(&mut m, "effect", opt(&t.effect));
                put(&mut m, "tolerationSeconds", opt(&t.toleration_seconds));
                Value::Object(m)
            })
            .collect(),
    )
}

fn containers(cs: Vec<core::Container>) -> Res<Value> {
    Ok(Value::Array(
        cs.into_iter().map(container).collect::<Res<Vec<_>>>()?,
    ))
}

fn pod_spec(mut s: core::PodSpec) -> Res<Value> {
    let mut m = Map::new();
    put(
        &mut m,
        "initContainers",
        containers(take(&mut s.init_containers))?,
    );
    m.insert("containers".into(), containers(take(&mut s.containers))?);
    put(&mut m, "restartPolicy", opt(&take(&mut s.restart_policy)));
    put(
        &mut m,
        "terminationGracePeriodSeconds",
        opt(&take(&mut s.termination_grace_period_seconds)),
    );
    put(
        &mut m,
        "activeDeadlineSeconds",
        opt(&take(&mut s.active_deadline_seconds)),
    );
    put(&mut m, "dnsPolicy", opt(&take(&mut s.dns_policy)));
    put(&mut m, "nodeSelector", json!(take(&mut s.node_selector)));
    put(
        &mut m,
        "serviceAccountName",
        opt(&take(&mut s.service_account_name)),
    );
    put(&mut m, "serviceAccount", opt(&take(&mut s.service_account)));
    put(
        &mut m,
        "automountServiceAccountToken",
        opt(&take(&mut s.automount_service_account_token)),
    );
    put(&mut m, "nodeName", opt(&take(&mut s.node_name)));
    put(&mut m, "hostNetwork", nz(&take(&mut s.host_network)));
    put(&mut m, "hostPID", nz(&take(&mut s.host_pid)));
    put(&mut m, "hostIPC", nz(&take(&mut s.host_ipc)));
    put(&mut m, "hostname", opt(&take(&mut s.hostname)));
    put(&mut m, "subdomain", opt(&take(&mut s.subdomain)));
    put(&mut m, "schedulerName", opt(&take(&mut s.scheduler_name)));
    put(
        &mut m,
        "priorityClassName",
        opt(&take(&mut s.priority_class_name)),
    );
    put(&mut m, "priority", opt(&take(&mut s.priority)));
    put(
        &mut m,
        "enableServiceLinks",
        opt(&take(&mut s.enable_service_links)),
    );
    put(
        &mut m,
        "preemptionPolicy",
        opt(&take(&mut s.preemption_policy)),
    );
    let pulls: Vec<Value> = take(&mut s.image_pull_secrets)
        .iter()
        .map(|r| json!({"name": opt(&r.name)}))
        .collect();
    put(&mut m, "imagePullSecrets", Value::Array(pulls));
    if let Some(sc) = take(&mut s.security_context) {
        m.insert("securityContext".into(), pod_security_context(sc)?);
    }
    put(&mut m, "tolerations", tolerations(take(&mut s.tolerations)));
    let volumes = take(&mut s.volumes)
        .into_iter()
        .map(volume)
        .collect::<Res<Vec<_>>>()?;
    put(&mut m, "volumes", Value::Array(volumes));
    nothing_left(&s, "PodSpec")?;
    Ok(Value::Object(m))
}

fn pod_template(t: Option<core::PodTemplateSpec>) -> Res<Value> {
    let Some(mut t) = t else {
        return Ok(Value::Null);
    };
    let mut m = Map::new();
    m.insert("metadata".into(), object_meta(&take(&mut t.metadata)));
    if let Some(spec) = take(&mut t.spec) {
        m.insert("spec".into(), pod_spec(spec)?);
    }
    Ok(Value::Object(m))
}

fn job_spec(mut s: batch::JobSpec) -> Res<Value> {
    let mut m = Map::new();
    put(&mut m, "parallelism", opt(&take(&mut s.parallelism)));
    put(&mut m, "completions", opt(&take(&mut s.completions)));
    put(
        &mut m,
        "activeDeadlineSeconds",
        opt(&take(&mut s.active_deadline_seconds)),
    );
    put(&mut m, "backoffLimit", opt(&take(&mut s.backoff_limit)));
    put(
        &mut m,
        "backoffLimitPerIndex",
        opt(&take(&mut s.backoff_limit_per_index)),
    );
    put(
        &mut m,
        "maxFailedIndexes",
        opt(&take(&mut s.max_failed_indexes)),
    );
    put(&mut m, "selector", label_selector(&take(&mut s.selector)));
    put(&mut m, "manualSelector", opt(&take(&mut s.manual_selector)));
    put(&mut m, "template", pod_template(take(&mut s.template))?);
    put(
        &mut m,
        "ttlSecondsAfterFinished",
        opt(&take(&mut s.ttl_seconds_after_finished)),
    );
    put(&mut m, "completionMode", opt(&take(&mut s.completion_mode)));
    put(&mut m, "suspend", opt(&take(&mut s.suspend)));
    put(
        &mut m,
        "podReplacementPolicy",
        opt(&take(&mut s.pod_replacement_policy)),
    );
    put(&mut m, "managedBy", opt(&take(&mut s.managed_by)));
    nothing_left(&s, "JobSpec")?;
    Ok(Value::Object(m))
}

/// `batch/v1 Job`.
pub(super) fn job(x: batch::Job) -> Res<Value> {
    let mut o = top("batch/v1", "Job", &x.metadata);
    if let Some(spec) = x.spec {
        o.insert("spec".into(), job_spec(spec)?);
    }
    Ok(Value::Object(o))
}

/// `batch/v1 CronJob`.
pub(super) fn cron_job(x: batch::CronJob) -> Res<Value> {
    let mut o = top("batch/v1", "CronJob", &x.metadata);
    if let Some(mut s) = x.spec {
        let mut m = Map::new();
        put(&mut m, "schedule", opt(&take(&mut s.schedule)));
        put(&mut m, "timeZone", opt(&take(&mut s.time_zone)));
        put(
            &mut m,
            "startingDeadlineSeconds",
            opt(&take(&mut s.starting_deadline_seconds)),
        );
        put(
            &mut m,
            "concurrencyPolicy",
            opt(&take(&mut s.concurrency_policy)),
        );
        put(&mut m, "suspend", opt(&take(&mut s.suspend)));
        if let Some(mut jt) = take(&mut s.job_template) {
            let mut jm = Map::new();
            jm.insert("metadata".into(), object_meta(&take(&mut jt.metadata)));
            if let Some(js) = take(&mut jt.spec) {
                jm.insert("spec".into(), job_spec(js)?);
            }
            m.insert("jobTemplate".into(), Value::Object(jm));
        }
        put(
            &mut m,
            "successfulJobsHistoryLimit",
            opt(&take(&mut s.successful_jobs_history_limit)),
        );
        put(
            &mut m,
            "failedJobsHistoryLimit",
            opt(&take(&mut s.failed_jobs_history_limit)),
        );
        nothing_left(&s, "CronJobSpec")?;
        o.insert("spec".into(), Value::Object(m));
    }
    Ok(Value::Object(o))
}

/// `apps/v1 Deployment`.
pub(super) fn deployment(x: apps::Deployment) -> Res<Value> {
    let mut o = top("apps/v1", "Deployment", &x.metadata);
    if let Some(mut s) = x.spec {
        let mut m = Map::new();
        put(&mut m, "replicas", opt(&take(&mut s.replicas)));
        put(&mut m, "selector", label_selector(&take(&mut s.selector)));
        put(&mut m, "template", pod_template(take(&mut s.template))?);
        if let Some(mut st) = take(&mut s.strategy) {
            let mut sm = Map::new();
            put(&mut sm, "type", opt(&take(&mut st.r#type)));
            if let Some(mut ru) = take(&mut st.rolling_update) {
                let mut rm = Map::new();
                put(
                    &mut rm,
                    "maxUnavailable",
                    int_or_string(&take(&mut ru.max_unavailable)),
                );
                put(&mut rm, "maxSurge", int_or_string(&take(&mut ru.max_surge)));
                sm.insert("rollingUpdate".into(), Value::Object(rm));
            }
            put(&mut m, "strategy", Value::Object(sm));
        }
        put(
            &mut m,
            "minReadySeconds",
            nz(&take(&mut s.min_ready_seconds)),
        );
        put(
            &mut m,
            "revisionHistoryLimit",
            opt(&take(&mut s.revision_history_limit)),
        );
        put(&mut m, "paused", nz(&take(&mut s.paused)));
        put(
            &mut m,
            "progressDeadlineSeconds",
            opt(&take(&mut s.progress_deadline_seconds)),
        );
        nothing_left(&s, "DeploymentSpec")?;
        o.insert("spec".into(), Value::Object(m));
    }
    Ok(Value::Object(o))
}

/// `v1 Pod` (`kubectl debug node/X` with every profile); `status` is not mapped.
pub(super) fn pod(x: core::Pod) -> Res<Value> {
    let mut o = top("v1", "Pod", &x.metadata);
    if let Some(spec) = x.spec {
        o.insert("spec".into(), pod_spec(spec)?);
    }
    Ok(Value::Object(o))
}

/// `v1 Service` (`create service clusterip|nodeport|loadbalancer|externalname`).
pub(super) fn service(x: core::Service) -> Res<Value> {
    let mut o = top("v1", "Service", &x.metadata);
    if let Some(mut s) = x.spec {
        let mut m = Map::new();
        let mut ports = Vec::new();
        for mut p in take(&mut s.ports) {
            let mut pm = Map::new();
            put(&mut pm, "name", opt(&take(&mut p.name)));
            put(&mut pm, "protocol", opt(&take(&mut p.protocol)));
            put(&mut pm, "appProtocol", opt(&take(&mut p.app_protocol)));
            put(&mut pm, "port", opt(&take(&mut p.port)));
            put(
                &mut pm,
                "targetPort",
                int_or_string(&take(&mut p.target_port)),
            );
            put(&mut pm, "nodePort", nz(&take(&mut p.node_port)));
            ports.push(Value::Object(pm));
        }
        put(&mut m, "ports", Value::Array(ports));
        put(&mut m, "selector", json!(take(&mut s.selector)));
        put(&mut m, "clusterIP", opt(&take(&mut s.cluster_ip)));
        put(&mut m, "clusterIPs", json!(take(&mut s.cluster_ips)));
        put(&mut m, "type", opt(&take(&mut s.r#type)));
        put(&mut m, "externalIPs", json!(take(&mut s.external_ips)));
        put(
            &mut m,
            "sessionAffinity",
            opt(&take(&mut s.session_affinity)),
        );
        put(
            &mut m,
            "loadBalancerIP",
            opt(&take(&mut s.load_balancer_ip)),
        );
        put(
            &mut m,
            "loadBalancerSourceRanges",
            json!(take(&mut s.load_balancer_source_ranges)),
        );
        put(&mut m, "externalName", opt(&take(&mut s.external_name)));
        put(
            &mut m,
            "externalTrafficPolicy",
            opt(&take(&mut s.external_traffic_policy)),
        );
        put(
            &mut m,
            "healthCheckNodePort",
            nz(&take(&mut s.health_check_node_port)),
        );
        put(
            &mut m,
            "publishNotReadyAddresses",
            nz(&take(&mut s.publish_not_ready_addresses)),
        );
        put(&mut m, "ipFamilies", json!(take(&mut s.ip_families)));
        put(
            &mut m,
            "ipFamilyPolicy",
            opt(&take(&mut s.ip_family_policy)),
        );
        put(
            &mut m,
            "allocateLoadBalancerNodePorts",
            opt(&take(&mut s.allocate_load_balancer_node_ports)),
        );
        put(
            &mut m,
            "loadBalancerClass",
            opt(&take(&mut s.load_balancer_class)),
        );
        put(
            &mut m,
            "internalTrafficPolicy",
            opt(&take(&mut s.internal_traffic_policy)),
        );
        put(
            &mut m,
            "trafficDistribution",
            opt(&take(&mut s.traffic_distribution)),
        );
        nothing_left(&s, "ServiceSpec")?;
        o.insert("spec".into(), Value::Object(m));
    }
    Ok(Value::Object(o))
}
