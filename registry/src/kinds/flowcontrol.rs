//! flowcontrol.apiserver.k8s.io/v1 `flowschemas` and `prioritylevelconfigurations`:
//! stored and shown with upstream's columns, and the mandatory objects kube-apiserver
//! installs (`controllers::flow_control_bootstrap`). Requests are not queued by them: the
//! enclave behaves as kube-apiserver with `--enable-priority-and-fairness=false`.

use k8s_openapi::api::flowcontrol::v1::{FlowSchema, PriorityLevelConfiguration};
use serde_json::{Value, json};

use super::{drop_status, int, keep_status, s, typed, unsupported};
use crate::table::{Column, age_cell, name_cell};
use crate::{FieldError, Strategy};

/// `flowschemas`.
#[derive(Debug)]
pub(crate) struct FlowSchemas;

impl Strategy for FlowSchemas {
    typed!(FlowSchema);
    fn tracks_generation(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        drop_status(obj);
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut out = Vec::new();
        if s(obj, "/spec/priorityLevelConfiguration/name").is_empty() {
            out.push(FieldError::required(
                "spec.priorityLevelConfiguration.name",
                "must reference a priority level",
            ));
        }
        let precedence = int(obj, "/spec/matchingPrecedence");
        if !(1..=10_000).contains(&precedence) && obj.pointer("/spec/matchingPrecedence").is_some()
        {
            out.push(FieldError::invalid_int(
                "spec.matchingPrecedence",
                precedence,
                "must be between 1 and 10000, inclusive",
            ));
        }
        out
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text(
                "PriorityLevel",
                "The priority level the schema's requests go to",
            ),
            Column::integer("MatchingPrecedence", "Lower values are matched first"),
            Column::text("DistinguisherMethod", "How flows are told apart"),
            Column::AGE,
            Column::text("MissingPL", "Whether the priority level is missing"),
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let method = match s(obj, "/spec/distinguisherMethod/type") {
            "" => "<none>",
            m => m,
        };
        let dangling = obj
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| s(c, "/type") == "Dangling"))
            .map_or("?", |c| s(c, "/status"));
        vec![
            name_cell(obj),
            json!(s(obj, "/spec/priorityLevelConfiguration/name")),
            json!(int(obj, "/spec/matchingPrecedence")),
            json!(method),
            age_cell(obj, now),
            json!(dangling),
        ]
    }
}

/// `prioritylevelconfigurations`.
#[derive(Debug)]
pub(crate) struct PriorityLevelConfigurations;

impl Strategy for PriorityLevelConfigurations {
    typed!(PriorityLevelConfiguration);
    fn tracks_generation(&self) -> bool {
        true
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        drop_status(obj);
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let ty = s(obj, "/spec/type");
        match ty {
            "Exempt" | "Limited" => Vec::new(),
            "" => vec![FieldError::required(
                "spec.type",
                "must be 'Exempt' if and only if name is 'exempt'",
            )],
            other => vec![unsupported("spec.type", other, &["Exempt", "Limited"])],
        }
    }
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::NAME,
            Column::text("Type", "Exempt or Limited"),
            Column::text(
                "NominalConcurrencyShares",
                "The level's share of the server's concurrency",
            ),
            Column::text("Queues", "The number of queues"),
            Column::text("HandSize", "The queues a flow is shuffled over"),
            Column::text("QueueLengthLimit", "The longest a queue may get"),
            Column::AGE,
        ]
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let none = || json!("<none>");
        let limited = obj.pointer("/spec/limited").filter(|l| !l.is_null());
        let queuing = limited
            .and_then(|l| l.pointer("/limitResponse/queuing"))
            .filter(|q| !q.is_null());
        let at =
            |v: Option<&Value>, k: &str| v.and_then(|x| x.get(k)).cloned().unwrap_or_else(none);
        vec![
            name_cell(obj),
            json!(s(obj, "/spec/type")),
            at(limited, "nominalConcurrencyShares"),
            at(queuing, "queues"),
            at(queuing, "handSize"),
            at(queuing, "queueLengthLimit"),
            age_cell(obj, now),
        ]
    }
}
