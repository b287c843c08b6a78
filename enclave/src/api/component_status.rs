//! `GET /api/v1/componentstatuses[/NAME]`: kube-apiserver's deprecated endpoint, still
//! served in 1.33 (`kubectl get cs`). Upstream probes the scheduler, the controller manager
//! and etcd; here all three live in this process, so the scheduler and the controllers are
//! healthy while it serves, and `etcd-0` reports a real read of the store.

use hyper::{Method, Response};
use serde_json::{Value, json};

use super::ApiServer;
use super::http::{self, Body};
use super::resource::ResourceRequest;
use crate::registry::table;
use crate::registry::{Error, Result};

/// Upstream's deprecation warning for every request to this endpoint.
const DEPRECATED: &str = "v1 ComponentStatus is deprecated in v1.19+";

/// The components, in upstream's order of names.
const COMPONENTS: [&str; 3] = ["controller-manager", "etcd-0", "scheduler"];

fn status(name: &str, error: Option<String>) -> Value {
    let condition = match error {
        None => json!({"type": "Healthy", "status": "True", "message": "ok"}),
        Some(e) => json!({"type": "Healthy", "status": "False", "error": e}),
    };
    json!({
        "kind": "ComponentStatus",
        "apiVersion": "v1",
        "metadata": {"name": name},
        "conditions": [condition],
    })
}

impl ApiServer {
    /// Answers a request to `componentstatuses`.
    pub(crate) async fn component_statuses(&self, req: &ResourceRequest) -> Response<Body> {
        self.component_statuses_result(req)
            .await
            .unwrap_or_else(|e| http::error(&e))
    }

    async fn component_statuses_result(&self, req: &ResourceRequest) -> Result<Response<Body>> {
        if req.method != Method::GET || req.query.watch {
            return Err(Error::MethodNotAllowed(
                "the server does not allow this method on the requested resource".into(),
            ));
        }
        let wanted: Vec<&str> = match req.target.name.as_deref() {
            None => COMPONENTS.to_vec(),
            Some(n) if COMPONENTS.contains(&n) => vec![n],
            Some(n) => {
                return Err(Error::NotFound {
                    qualified: "componentstatuses".into(),
                    group: String::new(),
                    resource: "componentstatuses".into(),
                    name: n.to_string(),
                });
            }
        };
        let store = self.objects.store().clone();
        let store_error = tokio::task::spawn_blocking(move || {
            store.get(b"/registry/health").err().map(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Some(format!("store read task: {e}")));
        let items: Vec<Value> = wanted
            .iter()
            .map(|n| status(n, (*n == "etcd-0").then(|| store_error.clone()).flatten()))
            .collect();
        let warnings = [DEPRECATED.to_string()];
        let info = &req.target.info;
        let body = if req.negotiated.table {
            table::table(info, &items, json!({}), req.query.include_object, true)
        } else if req.target.name.is_some() {
            items.into_iter().next().unwrap_or_default()
        } else {
            json!({
                "kind": "ComponentStatusList",
                "apiVersion": "v1",
                "metadata": {},
                "items": items,
            })
        };
        Ok(http::json_with(200, &body, "application/json", &warnings))
    }
}
