//! OpenAPI, as far as kubectl needs it to write objects: a v3 index and
//! per-group-version documents whose PATCH operations carry
//! `x-kubernetes-group-version-kind` and the `fieldValidation`, `dryRun`
//! and `fieldManager` parameters (kubectl then validates server-side), and
//! an empty gnostic-protobuf v2 document (kubectl 1.27/1.28 insist on
//! downloading one). Full schemas for `kubectl explain` are not served yet.

use serde_json::{Map, Value, json};

use crate::registry::ResourceTable;

/// The Content-Type kubectl accepts for `/openapi/v2`.
pub const V2_CONTENT_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The v3 document of one group-version, if served.
pub fn v3_document(table: &ResourceTable, group: &str, version: &str) -> Option<Value> {
    let mut paths = Map::new();
    for r in table.in_group_version(group, version) {
        let base = format!("/{}", gv_path(group, version));
        let item = if r.namespaced() {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.resource)
        } else {
            format!("{base}/{}/{{name}}", r.resource)
        };
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let param = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
        let body = json!({"content": {
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
            "application/strategic-merge-patch+json": {"schema": {"type": "object"}},
            "application/apply-patch+yaml": {"schema": {"type": "object"}},
        }});
        let op = |action: &str| {
            json!({
                "operationId": format!("{action}{}", r.kind),
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [param("dryRun"), param("fieldManager"), param("fieldValidation")],
                "responses": {"200": {"description": "OK"}},
            })
        };
        let json_body = json!({"content": {"application/json": {"schema": {"type": "object"}}}});
        if r.is_virtual() {
            // Create-only: a POST on the collection, nothing else.
            let mut post = op("post");
            post["requestBody"] = json_body;
            paths.insert(format!("{base}/{}", r.resource), json!({"post": post}));
            continue;
        }
        let mut patch = op("patch");
        patch["requestBody"] = body;
        let mut put = op("put");
        put["requestBody"] = json_body;
        paths.insert(item, json!({"patch": patch, "put": put}));
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

/// A stable hash of a document, for `?hash=` cache keys.
pub fn hash(doc: &Value) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, doc.to_string().as_bytes());
    hex::encode(d.as_ref()).to_uppercase()
}

/// `/openapi/v3`: the index of group-version documents.
pub fn v3_index(table: &ResourceTable) -> Value {
    let mut paths = Map::new();
    for (g, vs) in table.groups() {
        for v in vs {
            if let Some(doc) = v3_document(table, g, v) {
                let p = gv_path(g, v);
                paths.insert(
                    p.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash(&doc))}),
                );
            }
        }
    }
    json!({"paths": paths})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::kinds::builtin;

    #[test]
    fn patch_operations_carry_gvk_and_field_validation() {
        let t = ResourceTable::new(builtin());
        let doc = v3_document(&t, "", "v1").unwrap();
        let op = &doc["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"];
        assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "ConfigMap");
        assert!(
            op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        let idx = v3_index(&t);
        assert!(
            idx["paths"]["apis/apps/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/apis/apps/v1?hash=")
        );
    }
}
