//! The APIServices of the group versions the enclave serves, as kube-apiserver's
//! autoregistration keeps them for its own (label `kube-aggregator.kubernetes.io/automanaged`):
//! one per served group version, `Local` and `Available`, with upstream's priorities. Checked
//! at start and every 30 s, so custom resources' group versions come and go with their
//! definitions. An APIService naming a Service (an aggregated server) is marked unavailable:
//! the enclave does not proxy to servers in the cluster.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::client::Api;
use crate::registry::{ObjectStore, meta};

/// How often the served group versions are compared with the APIServices.
const PERIOD: Duration = Duration::from_secs(30);
/// upstream's label on the APIServices it manages.
const AUTOMANAGED: &str = "kube-aggregator.kubernetes.io/automanaged";

/// upstream's `groupPriorityMinimum` and `versionPriority` of the built-in groups
/// (`pkg/controlplane/apiserver/aggregator.go`); other groups get what CRDs get.
fn priority(group: &str, version: &str) -> (i64, i64) {
    let group_priority = match group {
        "" => 18000,
        "apps" => 17800,
        "events.k8s.io" => 17750,
        "authentication.k8s.io" => 17700,
        "authorization.k8s.io" => 17600,
        "autoscaling" => 17500,
        "batch" => 17400,
        "certificates.k8s.io" => 17300,
        "networking.k8s.io" => 17200,
        "policy" => 17100,
        "rbac.authorization.k8s.io" => 17000,
        "storage.k8s.io" => 16800,
        "apiextensions.k8s.io" => 16700,
        "scheduling.k8s.io" => 16600,
        "coordination.k8s.io" => 16500,
        "node.k8s.io" => 16300,
        "discovery.k8s.io" => 16200,
        "flowcontrol.apiserver.k8s.io" => 16100,
        "metrics.k8s.io" => 100,
        _ => 1000,
    };
    let version_priority = match (group, version) {
        ("autoscaling", "v2") => 30,
        ("flowcontrol.apiserver.k8s.io", _) => 21,
        ("metrics.k8s.io", _) => 100,
        (_, v) if v.contains("beta") => 9,
        _ => 15,
    };
    (group_priority, version_priority)
}

fn available(status: bool, reason: &str, message: &str, since: &str) -> Value {
    json!({"conditions": [{"type": "Available", "status": if status { "True" } else { "False" },
        "lastTransitionTime": since, "reason": reason, "message": message}]})
}

/// One pass: every served group version has its APIService; automanaged ones for group
/// versions no longer served go; Service-backed ones are marked unavailable.
async fn reconcile(objects: &ObjectStore, api: &Api) {
    let served: BTreeSet<(String, String)> = objects
        .table()
        .groups()
        .into_iter()
        .flat_map(|(g, vs)| vs.into_iter().map(move |v| (g.to_string(), v.to_string())))
        .collect();
    let existing = match api.list("").await {
        Ok(all) => all,
        Err(e) => {
            tracing::warn!(error = %e.one_line(), "listing APIServices failed");
            return;
        }
    };
    let now = meta::format_time(meta::now());
    for (group, version) in &served {
        let name = format!("{version}.{group}");
        if existing.iter().any(|a| meta::name(a) == name) {
            continue;
        }
        let (gp, vp) = priority(group, version);
        let obj = json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": name, "labels": {AUTOMANAGED: "onstart"}},
            "spec": {"group": group, "version": version, "groupPriorityMinimum": gp,
                "versionPriority": vp}});
        match api.create("", obj).await {
            Ok(_) => {
                let status = available(
                    true,
                    "Local",
                    "Local APIServices are always available",
                    &now,
                );
                let _ = api
                    .edit_status("", &name, |cur| {
                        let mut next = cur.clone();
                        next["status"] = status.clone();
                        Some(next)
                    })
                    .await;
            }
            Err(e) if e.is_already_exists() => {}
            Err(e) => {
                tracing::warn!(error = %e.one_line(), name, "registering an APIService failed")
            }
        }
    }
    for a in &existing {
        let key = (
            a.pointer("/spec/group")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            a.pointer("/spec/version")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        );
        let automanaged = a
            .pointer(&format!(
                "/metadata/labels/{}",
                AUTOMANAGED.replace('/', "~1")
            ))
            .is_some();
        let proxied = a.pointer("/spec/service").is_some_and(|s| !s.is_null());
        if automanaged && !proxied && !served.contains(&key) {
            let _ = api
                .delete(
                    "",
                    meta::name(a),
                    None,
                    crate::registry::generic::Propagation::Background,
                )
                .await;
        } else if proxied {
            let status = available(
                false,
                "NotSupported",
                "this control plane does not proxy to aggregated API servers",
                &now,
            );
            let _ = api
                .edit_status("", meta::name(a), |cur| {
                    let unchanged = cur.pointer("/status/conditions/0/reason")
                        == status.pointer("/conditions/0/reason");
                    (!unchanged).then(|| {
                        let mut next = cur.clone();
                        next["status"] = status.clone();
                        next
                    })
                })
                .await;
        }
    }
}

/// Keeps the APIServices until `stop`.
pub(crate) async fn run(objects: ObjectStore, stop: CancellationToken) {
    let Some(info) = objects
        .table()
        .lookup("apiregistration.k8s.io", "v1", "apiservices")
    else {
        return;
    };
    let api = Api::new(objects.clone(), info);
    let mut tick = tokio::time::interval(PERIOD);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        reconcile(&objects, &api).await;
    }
}
