//! `metrics.k8s.io/v1beta1` `NodeMetrics` and `PodMetrics`: never stored, answered from what
//! the workers report over their tunnels (`api::streams::metrics`), as metrics-server's
//! aggregated API answers them. The strategies only give `kubectl get` its columns.

use serde_json::Value;

use crate::table::{Column, name_cell};
use crate::{Canonical, NameRule, Strategy};

fn usage_cells(obj: &Value, usage: &str) -> Vec<Value> {
    let at = |r: &str| {
        obj.pointer(&format!("{usage}/{r}"))
            .cloned()
            .unwrap_or(Value::String(String::new()))
    };
    vec![
        name_cell(obj),
        at("cpu"),
        at("memory"),
        obj.get("window").cloned().unwrap_or(Value::Null),
    ]
}

fn columns() -> Vec<Column> {
    vec![
        Column::NAME,
        Column::text("CPU", "CPU usage"),
        Column::text("Memory", "Working-set memory"),
        Column::text("Window", "The window the usage was measured over"),
    ]
}

/// `nodes.metrics.k8s.io` and `pods.metrics.k8s.io`: answered from the workers' reports,
/// tabled from the usage at `usage`.
#[derive(Debug)]
pub(crate) struct MetricsKind {
    /// Where the usage the table shows is: a node's own, or (for a pod, whose total is the sum
    /// its containers report) the first container's, standing in for a table cell (`kubectl
    /// top` prints the sums itself).
    usage: &'static str,
}

impl MetricsKind {
    /// `nodes.metrics.k8s.io`.
    pub(crate) const NODES: MetricsKind = MetricsKind { usage: "/usage" };
    /// `pods.metrics.k8s.io`.
    pub(crate) const PODS: MetricsKind = MetricsKind {
        usage: "/containers/0/usage",
    };
}

impl Strategy for MetricsKind {
    fn canonicalize(&self, obj: &Value) -> Result<Canonical, String> {
        Ok(Canonical {
            value: obj.clone(),
            unknown_fields: Vec::new(),
        })
    }
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
    fn columns(&self) -> Vec<Column> {
        columns()
    }
    fn cells(&self, obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
        usage_cells(obj, self.usage)
    }
}
