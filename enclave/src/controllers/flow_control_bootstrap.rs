//! The mandatory API Priority and Fairness objects kube-apiserver keeps (upstream's
//! `apiserver/pkg/apis/flowcontrol/bootstrap`): the `exempt` and `catch-all` priority levels
//! and flow schemas. Each is created when missing, at start and every minute after, so a
//! deleted one comes back as upstream's configuration controller brings it back; existing
//! ones are left as they are.

use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::client::Api;
use crate::registry::ObjectStore;

/// How often missing objects are looked for.
const PERIOD: Duration = Duration::from_secs(60);
/// upstream's annotation: the server keeps the object's spec.
const AUTO_UPDATE: &str = "apf.kubernetes.io/autoupdate-spec";

fn meta(name: &str) -> Value {
    json!({"name": name, "annotations": {AUTO_UPDATE: "true"}})
}

fn everything() -> (Value, Value) {
    (
        json!([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "clusterScope": true, "namespaces": ["*"]}]),
        json!([{"verbs": ["*"], "nonResourceURLs": ["*"]}]),
    )
}

/// The mandatory priority levels.
fn priority_levels() -> Vec<Value> {
    vec![
        json!({"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
            "metadata": meta("exempt"),
            "spec": {"type": "Exempt", "exempt": {"nominalConcurrencyShares": 0, "lendablePercent": 0}}}),
        json!({"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
            "metadata": meta("catch-all"),
            "spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": 5, "lendablePercent": 0,
                "limitResponse": {"type": "Reject"}}}}),
    ]
}

/// The mandatory flow schemas.
fn flow_schemas() -> Vec<Value> {
    let (resources, non_resources) = everything();
    let group = |name: &str| json!({"kind": "Group", "group": {"name": name}});
    vec![
        json!({"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
            "metadata": meta("exempt"),
            "spec": {"priorityLevelConfiguration": {"name": "exempt"}, "matchingPrecedence": 1,
                "rules": [{"subjects": [group("system:masters")], "resourceRules": resources,
                    "nonResourceRules": non_resources}]}}),
        json!({"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
            "metadata": meta("catch-all"),
            "spec": {"priorityLevelConfiguration": {"name": "catch-all"}, "matchingPrecedence": 10000,
                "distinguisherMethod": {"type": "ByUser"},
                "rules": [{"subjects": [group("system:unauthenticated"), group("system:authenticated")],
                    "resourceRules": resources, "nonResourceRules": non_resources}]}}),
    ]
}

/// Creates what is missing of `objects` in `api`; a flow schema's `Dangling` condition says
/// its priority level exists, as upstream's controller reports it.
async fn ensure(api: &Api, objects: Vec<Value>, schemas: bool) {
    for obj in objects {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        match api.get("", &name).await {
            Ok(Some(_)) => continue,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e.one_line(), name, "reading a flow-control object failed");
                continue;
            }
        }
        match api.create("", obj).await {
            Ok(created) if schemas => {
                let _ = api
                    .edit_status("", &name, |cur| {
                        let mut next = cur.clone();
                        next["status"] = json!({"conditions": [{"type": "Dangling", "status": "False",
                            "reason": "Found", "message": format!("This FlowSchema references the PriorityLevelConfiguration object named {:?} and it exists",
                                created.pointer("/spec/priorityLevelConfiguration/name").and_then(Value::as_str).unwrap_or("")),
                            "lastTransitionTime": created.pointer("/metadata/creationTimestamp")}]});
                        Some(next)
                    })
                    .await;
            }
            Ok(_) => {}
            Err(e) if e.is_already_exists() => {}
            Err(e) => {
                tracing::warn!(error = %e.one_line(), name, "creating a flow-control object failed")
            }
        }
    }
}

/// Keeps the mandatory objects until `stop`.
pub(crate) async fn run(objects: ObjectStore, stop: CancellationToken) {
    let table = objects.table();
    let group = "flowcontrol.apiserver.k8s.io";
    let (Some(levels), Some(schemas)) = (
        table.lookup(group, "v1", "prioritylevelconfigurations"),
        table.lookup(group, "v1", "flowschemas"),
    ) else {
        return;
    };
    let (levels, schemas) = (
        Api::new(objects.clone(), levels),
        Api::new(objects, schemas),
    );
    let mut tick = tokio::time::interval(PERIOD);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        ensure(&levels, priority_levels(), false).await;
        ensure(&schemas, flow_schemas(), true).await;
    }
}
