//! OpenAPI: a v3 index and per-group-version documents. Each document describes every operation of every
//! served resource (`operations`: read, list, watch, create, replace, patch, delete, deletecollection, the list
//! across namespaces and the subresources, with path and query parameters and responses); PATCH operations carry
//! `x-kubernetes-group-version-kind` and the `fieldValidation`, `dryRun` and `fieldManager` parameters (kubectl
//! then validates server-side). `components.schemas` holds the full schema of every kind that has a
//! `k8s-openapi` type (descriptions included, generated through `schemars`) and of its list, each tagged with
//! its `x-kubernetes-group-version-kind`, which is how `kubectl explain` finds it. `/openapi/v2` is the same
//! in Swagger 2.0, as JSON or gnostic protobuf (`v2`). [`Documents`] serializes them all once.

use std::collections::HashMap;

use bytes::Bytes;
use schemars::SchemaGenerator;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::registry::ResourceTable;

mod operations;
mod v2;

/// The Content-Type kubectl accepts for `/openapi/v2`.
pub const V2_CONTENT_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The `$ref` of `T`'s schema in `generator`'s components.
fn reference<T: schemars::JsonSchema>(generator: &mut SchemaGenerator) -> Value {
    Value::from(generator.subschema_for::<T>())
}

/// The v3 document of one group-version, if served.
pub fn v3_document(table: &ResourceTable, group: &str, version: &str) -> Option<Value> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
    let mut paths = Map::new();
    let mut generator = SchemaGenerator::new(SchemaSettings::openapi3());
    // (definition name, GVK) of each kind and list whose schema is served.
    let mut kinds = Vec::new();
    let mut lists = Vec::new();
    let base = format!("/{}", gv_path(group, version));
    let common = operations::CommonSchemas {
        status: reference::<meta::Status>(&mut generator),
        delete_options: reference::<meta::DeleteOptions>(&mut generator),
        watch_event: reference::<meta::WatchEvent<serde_json::Value>>(&mut generator),
        scale: reference::<k8s_openapi::api::autoscaling::v1::Scale>(&mut generator),
        token_request: reference::<k8s_openapi::api::authentication::v1::TokenRequest>(
            &mut generator,
        ),
        eviction: reference::<k8s_openapi::api::policy::v1::Eviction>(&mut generator),
        binding: reference::<k8s_openapi::api::core::v1::Binding>(&mut generator),
    };
    let list_meta = reference::<meta::ListMeta>(&mut generator);
    for r in table.in_group_version(group, version) {
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let kind_schema = r.strategy.schema(&mut generator).map(Value::from);
        let name = kind_schema
            .as_ref()
            .and_then(|s| s.get("$ref"))
            .and_then(Value::as_str)
            .and_then(|reference| reference.rsplit('/').next())
            .map(str::to_string);
        let object = kind_schema.unwrap_or_else(|| json!({"type": "object"}));
        let list_schema = json!({
            "type": "object",
            "description": format!("A list of {}.", r.kind),
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"allOf": [list_meta]},
                "items": {"type": "array", "items": object},
            },
            "required": ["items"],
        });
        let list = match &name {
            Some(name) => {
                let list_name = format!("{name}List");
                let list_gvk =
                    json!({"group": r.group, "version": r.version, "kind": r.list_kind()});
                lists.push((list_name.clone(), list_schema, list_gvk));
                json!({"$ref": format!("#/components/schemas/{list_name}")})
            }
            None => list_schema,
        };
        if let Some(name) = name {
            kinds.push((name, gvk));
        }
        let schemas = operations::Schemas {
            object,
            list,
            common: &common,
        };
        operations::add_resource(r, &base, &schemas, &mut paths);
    }
    if paths.is_empty() {
        return None;
    }
    let mut schemas = generator.take_definitions(true);
    for (name, schema) in &mut schemas {
        annotate_patch_strategies(name, schema);
    }
    for (name, mut schema, gvk) in lists {
        schema["x-kubernetes-group-version-kind"] = json!([gvk]);
        schemas.insert(name, schema);
    }
    for (name, gvk) in kinds {
        if let Some(Value::Object(schema)) = schemas.get_mut(&name) {
            schema.insert("x-kubernetes-group-version-kind".into(), json!([gvk]));
            // `k8s-openapi` types carry `metadata` as a plain field, so it comes out required; upstream's
            // schemas do not require it (generateName, or the name from the URL, may stand in for it).
            if let Some(Value::Array(required)) = schema.get_mut("required") {
                required.retain(|field| field != "metadata");
                if required.is_empty() {
                    schema.remove("required");
                }
            }
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// Upstream's `patchMergeKey` / `patchStrategy` tags of a list property of the definition `definition`: what
/// kubectl's strategic merge patch (computed from these schemas by kubectl 1.29+) and the server's own
/// (`registry::patch`) merge list items by. `None` for atomic lists.
fn patch_strategy(
    definition: &str,
    property: &str,
) -> Option<(Option<&'static str>, &'static str)> {
    let short = definition.rsplit('.').next().unwrap_or(definition);
    Some(match property {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims" => (Some("name"), "merge"),
        "volumes" => (Some("name"), "merge,retainKeys"),
        "ports" if matches!(short, "Container" | "EphemeralContainer") => {
            (Some("containerPort"), "merge")
        }
        "ports" if short == "ServiceSpec" => (Some("port"), "merge"),
        "volumeMounts" => (Some("mountPath"), "merge"),
        "volumeDevices" => (Some("devicePath"), "merge"),
        "readinessGates" => (Some("conditionType"), "merge"),
        "conditions" => (Some("type"), "merge"),
        "hostAliases" => (Some("ip"), "merge"),
        "topologySpreadConstraints" => (Some("topologyKey"), "merge"),
        "ownerReferences" => (Some("uid"), "merge"),
        "finalizers" => (None, "merge"),
        _ => return None,
    })
}

/// Adds `x-kubernetes-patch-merge-key` / `x-kubernetes-patch-strategy` to the list properties of `schema` that
/// upstream merges by key.
fn annotate_patch_strategies(definition: &str, schema: &mut Value) {
    let Some(Value::Object(properties)) = schema.get_mut("properties") else {
        return;
    };
    for (property, prop_schema) in properties.iter_mut() {
        let Some(prop) = prop_schema.as_object_mut() else {
            continue;
        };
        if prop.get("type").and_then(Value::as_str) != Some("array") {
            continue;
        }
        if let Some((key, strategy)) = patch_strategy(definition, property) {
            if let Some(key) = key {
                prop.insert("x-kubernetes-patch-merge-key".into(), key.into());
            }
            prop.insert("x-kubernetes-patch-strategy".into(), strategy.into());
        }
    }
}

/// Every OpenAPI document of a resource table: the v3 ones serialized once per table generation (kubectl
/// fetches the index and a document for every `apply` and `explain`), the v2 one on first request.
#[derive(Debug)]
pub struct Documents {
    /// The generation of the table they were built from.
    generation: u64,
    index: Bytes,
    /// By path (`api/v1`, `apis/apps/v1`).
    documents: HashMap<String, Bytes>,
    /// `/openapi/v2` as JSON and as gnostic protobuf, derived from the v3 documents when first asked for.
    v2: std::sync::OnceLock<(Bytes, Bytes)>,
}

impl Documents {
    /// Builds and serializes every group-version's document of `table`, and the index pointing at them.
    #[must_use]
    pub fn build(table: &ResourceTable) -> Self {
        let mut index = Map::new();
        let mut documents = HashMap::new();
        for (g, vs) in table.groups() {
            for v in vs {
                if let Some(doc) = v3_document(table, &g, &v) {
                    let path = gv_path(&g, &v);
                    let serialized = Bytes::from(doc.to_string());
                    index.insert(
                        path.clone(),
                        json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", hash(&serialized))}),
                    );
                    documents.insert(path, serialized);
                }
            }
        }
        Self {
            generation: table.generation(),
            index: Bytes::from(json!({"paths": index}).to_string()),
            documents,
            v2: std::sync::OnceLock::new(),
        }
    }

    /// The generation of the resource table these documents describe.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The serialized index (`/openapi/v3`).
    #[must_use]
    pub fn index(&self) -> Bytes {
        self.index.clone()
    }

    /// The serialized document of `group`/`version`, if served.
    #[must_use]
    pub fn document(&self, group: &str, version: &str) -> Option<Bytes> {
        self.documents.get(&gv_path(group, version)).cloned()
    }

    /// The Swagger 2.0 document (`/openapi/v2`): JSON, or gnostic protobuf when `protobuf`.
    #[must_use]
    pub fn v2(&self, protobuf: bool) -> Bytes {
        let (json, pb) = self.v2.get_or_init(|| {
            // Sorted, so the document (and its hash for clients' caches) is the same on every build.
            let mut paths: Vec<&String> = self.documents.keys().collect();
            paths.sort();
            let v3: Vec<Value> = paths
                .into_iter()
                .filter_map(|p| serde_json::from_slice(&self.documents[p]).ok())
                .collect();
            let doc = v2::document(&v3);
            (
                Bytes::from(doc.to_string()),
                Bytes::from(v2::protobuf(&doc)),
            )
        });
        if protobuf { pb.clone() } else { json.clone() }
    }
}

/// A stable hash of a serialized document, for `?hash=` cache keys.
fn hash(serialized: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, serialized);
    hex::encode(d.as_ref()).to_uppercase()
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
        // Every operation, with its path parameters on the path item.
        let item = &doc["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"];
        for method in ["get", "put", "patch", "delete"] {
            assert!(item[method]["operationId"].is_string(), "{method}");
        }
        assert_eq!(item["get"]["operationId"], "readCoreV1NamespacedConfigMap");
        let names: Vec<&Value> = item["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "path")
            .map(|p| &p["name"])
            .collect();
        assert_eq!(names, ["name", "namespace"]);
        let collection = &doc["paths"]["/api/v1/namespaces/{namespace}/configmaps"];
        assert_eq!(collection["get"]["x-kubernetes-action"], "list");
        assert_eq!(collection["post"]["x-kubernetes-action"], "post");
        assert_eq!(
            collection["delete"]["x-kubernetes-action"],
            "deletecollection"
        );
        assert_eq!(
            doc["paths"]["/api/v1/configmaps"]["get"]["operationId"],
            "listCoreV1ConfigMapForAllNamespaces"
        );
        assert_eq!(
            doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"]["operationId"],
            "readCoreV1NamespacedPodLog"
        );
        assert_eq!(
            collection["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.ConfigMapList"
        );
        // Full schemas, found by GVK as kubectl explain does, with $refs into components.
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let (_, pod) = schemas
            .iter()
            .find(|(_, s)| s["x-kubernetes-group-version-kind"][0]["kind"] == "Pod")
            .expect("a schema tagged with the Pod GVK");
        assert!(pod["description"].as_str().unwrap().contains("containers"));
        // A described reference is `allOf: [$ref]`, as upstream's v3 documents have it.
        let spec_ref = pod["properties"]["spec"]["allOf"][0]["$ref"]
            .as_str()
            .unwrap();
        let spec = &schemas[spec_ref.trim_start_matches("#/components/schemas/")];
        assert!(spec["properties"]["containers"]["description"].is_string());
        assert_eq!(
            spec["properties"]["containers"]["x-kubernetes-patch-merge-key"],
            "name"
        );
        assert_eq!(
            spec["properties"]["volumes"]["x-kubernetes-patch-strategy"],
            "merge,retainKeys"
        );
        assert_eq!(
            schemas["io.k8s.api.core.v1.Container"]["properties"]["ports"]["x-kubernetes-patch-merge-key"],
            "containerPort"
        );
        assert_eq!(
            schemas["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"]["x-kubernetes-patch-merge-key"],
            "port"
        );
        let apps = v3_document(&t, "apps", "v1").unwrap();
        assert!(
            apps["components"]["schemas"]
                .as_object()
                .unwrap()
                .values()
                .any(|s| s["x-kubernetes-group-version-kind"][0]["kind"] == "Deployment")
        );
        let idx: Value = serde_json::from_slice(&Documents::build(&t).index()).unwrap();
        assert!(
            idx["paths"]["apis/apps/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/apis/apps/v1?hash=")
        );
    }
}
