//! CustomResourceDefinitions and the custom resources they define, over
//! HTTP against the real `daas-enclave --dev` binary: definition
//! validation and status, discovery and OpenAPI, the verbs on custom
//! resources (merge and JSON patch; strategic merge is 415), schema
//! validation with nothing written on error, pruning, `fieldValidation`,
//! defaults, the status and scale subresources, printer-column Tables,
//! deleting a definition (the cleanup finalizer, `Terminating`, refused
//! creates, across a restart), and serving again after a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;

use common::{Enclave, eventually};

use serde_json::{Value, json};

const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
const WIDGETS: &str = "/apis/example.com/v1/namespaces/default/widgets";
const JSON: &str = "Content-Type: application/json";
const TABLE: &str = "Accept: application/json;as=Table;v=v1;g=meta.k8s.io";

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// The Widget definition: namespaced, status and scale subresources,
/// printer columns, a schema with every checked keyword.
fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                      "shortNames": ["wd"], "categories": ["all"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}, "scale": {
                    "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                "additionalPrinterColumns": [
                    {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
                    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                    {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
                    {"name": "Size", "type": "string", "jsonPath": ".spec.size", "priority": 1},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "A Widget is a test resource.",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "description": "What the widget should be.",
                            "required": ["color"],
                            "properties": {
                                "color": {"type": "string", "enum": ["red", "blue"]},
                                "replicas": {"type": "integer", "minimum": 0, "default": 1},
                                "size": {"type": "string", "default": "M", "pattern": "^(S|M|L)$"},
                                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                            },
                        },
                        "status": {"type": "object", "properties": {
                            "replicas": {"type": "integer"},
                            "conditions": {"type": "array", "items": {"type": "object", "properties": {
                                "type": {"type": "string"}, "status": {"type": "string"}}}},
                        }},
                    },
                }},
            }],
        },
    })
}

fn create_crd(e: &Enclave) -> Value {
    let (code, body) = e.curl_admin(
        CRDS,
        &["-X", "POST", "-H", JSON, "-d", &widget_crd().to_string()],
    );
    assert_eq!(code, 201, "{body}");
    parse(&body)
}

fn widget(name: &str, spec: Value) -> String {
    json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec})
        .to_string()
}

fn post(e: &Enclave, path: &str, body: &str) -> (u16, Value) {
    let (code, out) = e.curl_admin(path, &["-X", "POST", "-H", JSON, "-d", body]);
    (code, parse(&out))
}

fn patch(e: &Enclave, path: &str, ct: &str, body: &str) -> (u16, Value) {
    let ct = format!("Content-Type: {ct}");
    let (code, out) = e.curl_admin(path, &["-X", "PATCH", "-H", &ct, "-d", body]);
    (code, parse(&out))
}

fn get(e: &Enclave, path: &str) -> (u16, Value) {
    let (code, out) = e.curl_admin(path, &[]);
    (code, parse(&out))
}

/// Waits until `path` answers 404.
fn wait_until_gone(e: &Enclave, path: &str) {
    eventually(&format!("{path} to go"), || {
        (get(e, path).0 == 404).then_some(())
    });
}

/// The definition's condition `ty`.
fn condition(crd: &Value, ty: &str) -> Value {
    crd["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == ty))
        .cloned()
        .unwrap_or(Value::Null)
}

fn causes(status: &Value) -> Vec<String> {
    status["details"]["causes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    format!(
                        "{}: {}",
                        c["field"].as_str().unwrap_or(""),
                        c["message"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn definitions_are_validated_and_established() {
    let e = Enclave::start();
    let mut bad = widget_crd();
    bad["metadata"]["name"] = json!("gadgets.example.com");
    bad["spec"]["scope"] = json!("Everywhere");
    bad["spec"]["versions"][0]["storage"] = json!(false);
    bad["spec"]["versions"][0]["schema"] = json!({});
    let (code, status) = post(&e, CRDS, &bad.to_string());
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["reason"], "Invalid");
    let fields: Vec<&str> = status["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    for want in [
        "metadata.name",
        "spec.scope",
        "spec.versions[0].schema.openAPIV3Schema",
        "spec.versions",
    ] {
        assert!(fields.contains(&want), "{want} in {status}");
    }
    let (code, _) = get(&e, &format!("{CRDS}/gadgets.example.com"));
    assert_eq!(code, 404, "nothing is written on error");
    // Nothing is served for a rejected definition either.
    let (code, _) = get(&e, WIDGETS);
    assert_eq!(code, 404);

    let crd = create_crd(&e);
    let conditions = crd["status"]["conditions"].as_array().unwrap();
    for ty in ["NamesAccepted", "Established"] {
        assert!(
            conditions
                .iter()
                .any(|c| c["type"] == ty && c["status"] == "True"),
            "{ty}: {crd}"
        );
    }
    assert_eq!(crd["status"]["acceptedNames"]["listKind"], "WidgetList");
    assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
    assert_eq!(crd["metadata"]["generation"], 1);

    // Table: NAME and CREATED AT, as upstream.
    let (code, out) = e.curl_admin(CRDS, &["-H", TABLE]);
    assert_eq!(code, 200, "{out}");
    let t = parse(&out);
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, ["Name", "Created At"]);
    assert_eq!(t["rows"][0]["cells"][0], "widgets.example.com");

    // The CRD resource itself is discoverable with its short names.
    let (_, d) = get(&e, "/apis/apiextensions.k8s.io/v1");
    let crds = d["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "customresourcedefinitions")
        .unwrap();
    assert_eq!(crds["shortNames"], json!(["crd", "crds"]));
}

#[test]
fn custom_resources_are_served_through_discovery_openapi_and_every_verb() {
    let e = Enclave::start();
    let (_, index_before) = e.curl_admin("/openapi/v3", &[]);
    create_crd(&e);

    // Legacy discovery.
    let (_, groups) = get(&e, "/apis");
    let g = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "example.com")
        .expect("group listed");
    assert_eq!(g["preferredVersion"]["version"], "v1");
    let (code, list) = get(&e, "/apis/example.com/v1");
    assert_eq!(code, 200, "{list}");
    let names: Vec<&str> = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["widgets", "widgets/status", "widgets/scale"]);
    let w = &list["resources"][0];
    assert_eq!(w["kind"], "Widget");
    assert_eq!(w["namespaced"], true);
    assert_eq!(w["shortNames"], json!(["wd"]));
    assert_eq!(w["categories"], json!(["all"]));
    // Aggregated discovery.
    let (_, agg) = e.curl_admin(
        "/apis",
        &[
            "-H",
            "Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
        ],
    );
    let agg = parse(&agg);
    let item = agg["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["metadata"]["name"] == "example.com")
        .expect("aggregated group");
    let res = &item["versions"][0]["resources"][0];
    assert_eq!(res["resource"], "widgets");
    let subs: Vec<&str> = res["subresources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subresource"].as_str().unwrap())
        .collect();
    assert_eq!(subs, ["status", "scale"]);

    // OpenAPI v3: a new index (new hash) and a document with the schema, found by GVK.
    let (_, index) = e.curl_admin("/openapi/v3", &[]);
    assert_ne!(index, index_before, "the index changes with the table");
    let index = parse(&index);
    let url = index["paths"]["apis/example.com/v1"]["serverRelativeURL"]
        .as_str()
        .expect("document listed")
        .to_string();
    let (code, doc) = get(&e, &url);
    assert_eq!(code, 200);
    let (_, schema) = doc["components"]["schemas"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, s)| s["x-kubernetes-group-version-kind"][0]["kind"] == "Widget")
        .expect("Widget schema tagged with its GVK");
    assert_eq!(
        schema["properties"]["spec"]["description"],
        "What the widget should be."
    );
    let op = &doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]["patch"];
    assert_eq!(op["x-kubernetes-group-version-kind"]["kind"], "Widget");
    // No strategic merge patch, so kubectl 1.29+ computes a merge patch for `apply`.
    let content = op["requestBody"]["content"].as_object().unwrap();
    assert!(content.contains_key("application/merge-patch+json"));
    assert!(!content.contains_key("application/strategic-merge-patch+json"));

    // Create, get, list with selectors, limit/continue.
    for (name, color) in [("a", "red"), ("b", "blue"), ("c", "red")] {
        let mut body: Value = serde_json::from_str(&widget(name, json!({"color": color}))).unwrap();
        body["metadata"]["labels"] = json!({"color": color});
        let (code, obj) = post(&e, WIDGETS, &body.to_string());
        assert_eq!(code, 201, "{obj}");
        assert_eq!(obj["metadata"]["generation"], 1);
        assert_eq!(obj["spec"]["replicas"], 1, "defaulted");
    }
    let (code, a) = get(&e, &format!("{WIDGETS}/a"));
    assert_eq!(code, 200);
    assert_eq!(a["kind"], "Widget");
    let (_, reds) = get(&e, &format!("{WIDGETS}?labelSelector=color%3Dred"));
    assert_eq!(reds["kind"], "WidgetList");
    assert_eq!(reds["items"].as_array().unwrap().len(), 2);
    let (_, one) = get(&e, &format!("{WIDGETS}?fieldSelector=metadata.name%3Db"));
    assert_eq!(one["items"][0]["metadata"]["name"], "b");
    let (_, page) = get(&e, &format!("{WIDGETS}?limit=2"));
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let token = page["metadata"]["continue"]
        .as_str()
        .expect("continue token");
    let (_, rest) = get(&e, &format!("{WIDGETS}?limit=2&continue={token}"));
    assert_eq!(rest["items"][0]["metadata"]["name"], "c");
    let (_, all) = get(&e, "/apis/example.com/v1/widgets");
    assert_eq!(all["items"].as_array().unwrap().len(), 3, "all namespaces");

    // Watch from the list's resourceVersion sees a later change.
    let rv = all["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, _) = patch(
        &e,
        &format!("{WIDGETS}/a"),
        "application/merge-patch+json",
        r#"{"spec":{"color":"blue"}}"#,
    );
    assert_eq!(code, 200);
    let (_, events) = e.curl_admin(
        &format!("{WIDGETS}?watch=1&resourceVersion={rv}&timeoutSeconds=1"),
        &[],
    );
    let first: Value = parse(events.lines().next().expect("an event"));
    assert_eq!(first["type"], "MODIFIED", "{events}");
    assert_eq!(first["object"]["spec"]["color"], "blue");

    // Merge and JSON patch; strategic merge patch is 415 as upstream.
    let (code, obj) = patch(
        &e,
        &format!("{WIDGETS}/a"),
        "application/json-patch+json",
        r#"[{"op":"replace","path":"/spec/replicas","value":4}]"#,
    );
    assert_eq!(code, 200, "{obj}");
    assert_eq!(obj["spec"]["replicas"], 4);
    assert_eq!(obj["metadata"]["generation"], 3, "each spec change counts");
    let (code, status) = patch(
        &e,
        &format!("{WIDGETS}/a"),
        "application/strategic-merge-patch+json",
        r#"{"spec":{"replicas":5}}"#,
    );
    assert_eq!(code, 415, "{status}");
    assert!(
        status["message"].as_str().unwrap().contains(
            "accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
        ),
        "{status}"
    );
    // Labels alone do not bump the generation.
    let (_, obj) = patch(
        &e,
        &format!("{WIDGETS}/a"),
        "application/merge-patch+json",
        r#"{"metadata":{"labels":{"x":"y"}}}"#,
    );
    assert_eq!(obj["metadata"]["generation"], 3);

    // Server-side apply creates and updates.
    let apply = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: d\nspec:\n  color: red\n  replicas: 2\n";
    let (code, obj) = patch(
        &e,
        &format!("{WIDGETS}/d?fieldManager=test"),
        "application/apply-patch+yaml",
        apply,
    );
    assert_eq!(code, 201, "{obj}");
    assert_eq!(obj["spec"]["replicas"], 2);

    // Update (PUT) with the read resourceVersion.
    let (_, mut b) = get(&e, &format!("{WIDGETS}/b"));
    b["spec"]["color"] = json!("red");
    let (code, out) = e.curl_admin(
        &format!("{WIDGETS}/b"),
        &["-X", "PUT", "-H", JSON, "-d", &b.to_string()],
    );
    assert_eq!(code, 200, "{out}");

    // Delete one, then the collection by label.
    let (code, _) = e.curl_admin(&format!("{WIDGETS}/d"), &["-X", "DELETE"]);
    assert_eq!(code, 200);
    let (code, _) = e.curl_admin(
        &format!("{WIDGETS}?labelSelector=color%3Dred"),
        &["-X", "DELETE"],
    );
    assert_eq!(code, 200);
    let (_, left) = get(&e, WIDGETS);
    let names: Vec<&str> = left["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b"], "b keeps its blue label");
}

#[test]
fn schemas_validate_prune_and_default() {
    let e = Enclave::start();
    create_crd(&e);
    for (spec, want) in [
        (
            json!({"color": "red", "replicas": "three"}),
            "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
        ),
        (json!({"replicas": 1}), "spec.color: Required value"),
        (
            json!({"color": "green"}),
            "spec.color: Unsupported value: \"green\": supported values: \"red\", \"blue\"",
        ),
        (
            json!({"color": "red", "size": "XL"}),
            "spec.size: Invalid value: \"XL\": spec.size in body should match '^(S|M|L)$'",
        ),
        (
            json!({"color": "red", "replicas": -1}),
            "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0",
        ),
    ] {
        let (code, status) = post(&e, WIDGETS, &widget("bad", spec.clone()));
        assert_eq!(code, 422, "{spec}: {status}");
        assert_eq!(status["reason"], "Invalid");
        assert!(
            status["message"].as_str().unwrap().contains(want),
            "{spec}: {status}"
        );
        assert!(!causes(&status).is_empty());
        let (code, _) = get(&e, &format!("{WIDGETS}/bad"));
        assert_eq!(code, 404, "{spec}: nothing written");
    }

    // Pruning: unknown fields are dropped (with a warning), preserved ones kept; defaults applied.
    let body = widget(
        "p",
        json!({"color": "red", "bogus": 1, "extra": {"free": {"form": true}}}),
    );
    let (code, out) = e.curl_admin(WIDGETS, &["-X", "POST", "-H", JSON, "-d", &body]);
    assert_eq!(code, 201, "{out}");
    let obj = parse(&out);
    assert!(obj["spec"].get("bogus").is_none(), "{obj}");
    assert_eq!(obj["spec"]["extra"]["free"]["form"], true);
    assert_eq!(obj["spec"]["size"], "M");
    assert_eq!(obj["spec"]["replicas"], 1);
    let (_, stored) = get(&e, &format!("{WIDGETS}/p"));
    assert!(stored["spec"].get("bogus").is_none());

    // fieldValidation=Strict: 400 naming the field; nothing written.
    let body = widget("s", json!({"color": "red", "bogus": 1}));
    let (code, status) = post(&e, &format!("{WIDGETS}?fieldValidation=Strict"), &body);
    assert_eq!(code, 400, "{status}");
    assert_eq!(
        status["message"],
        "strict decoding error: unknown field \"spec.bogus\""
    );
    let (code, _) = get(&e, &format!("{WIDGETS}/s"));
    assert_eq!(code, 404);
    // Warn (the default) says so in a Warning header.
    let (_, headers) = e.curl_admin(WIDGETS, &["-X", "POST", "-H", JSON, "-d", &body, "-D", "-"]);
    let warning = headers
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("warning:"))
        .unwrap_or_else(|| panic!("a Warning header: {headers}"));
    assert!(
        warning.contains("unknown field") && warning.contains("spec.bogus"),
        "{warning}"
    );
}

#[test]
fn status_and_scale_subresources() {
    let e = Enclave::start();
    create_crd(&e);
    let mut body: Value =
        serde_json::from_str(&widget("w", json!({"color": "red", "replicas": 2}))).unwrap();
    body["status"] = json!({"replicas": 9});
    let (code, obj) = post(&e, WIDGETS, &body.to_string());
    assert_eq!(code, 201);
    assert!(
        obj.get("status").is_none(),
        "status is dropped on create: {obj}"
    );
    // The main endpoint ignores status.
    let (_, obj) = patch(
        &e,
        &format!("{WIDGETS}/w"),
        "application/merge-patch+json",
        r#"{"status":{"replicas":7}}"#,
    );
    assert!(obj.get("status").is_none(), "{obj}");
    assert_eq!(obj["metadata"]["generation"], 1);
    // /status writes status only, without bumping the generation.
    let (code, obj) = patch(
        &e,
        &format!("{WIDGETS}/w/status"),
        "application/merge-patch+json",
        r#"{"spec":{"color":"blue"},"status":{"replicas":2,"conditions":[{"type":"Ready","status":"True"}]}}"#,
    );
    assert_eq!(code, 200, "{obj}");
    assert_eq!(obj["status"]["replicas"], 2);
    assert_eq!(obj["spec"]["color"], "red");
    assert_eq!(obj["metadata"]["generation"], 1);

    // Scale reads and writes the declared paths.
    let (code, scale) = get(&e, &format!("{WIDGETS}/w/scale"));
    assert_eq!(code, 200, "{scale}");
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 2);
    assert_eq!(scale["status"]["replicas"], 2);
    let (code, scale) = patch(
        &e,
        &format!("{WIDGETS}/w/scale"),
        "application/merge-patch+json",
        r#"{"spec":{"replicas":5}}"#,
    );
    assert_eq!(code, 200, "{scale}");
    assert_eq!(scale["spec"]["replicas"], 5);
    let (_, obj) = get(&e, &format!("{WIDGETS}/w"));
    assert_eq!(obj["spec"]["replicas"], 5);
    assert_eq!(obj["metadata"]["generation"], 2);

    // Printer columns; priority 1 ones are in the definitions (kubectl hides them without -o wide).
    let (code, out) = e.curl_admin(WIDGETS, &["-H", TABLE]);
    assert_eq!(code, 200, "{out}");
    let t = parse(&out);
    let cols: Vec<(&str, u64)> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["priority"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        cols,
        [
            ("Name", 0),
            ("Color", 0),
            ("Replicas", 0),
            ("Ready", 0),
            ("Size", 1),
            ("Age", 0)
        ]
    );
    let cells = &t["rows"][0]["cells"];
    assert_eq!(cells[0], "w");
    assert_eq!(cells[1], "red");
    assert_eq!(cells[2], 5);
    assert_eq!(cells[3], "True");
    assert_eq!(cells[4], "M");
    assert!(cells[5].as_str().unwrap().ends_with('s'), "an age: {cells}");
}

#[test]
fn deleting_a_definition_removes_its_resources_and_restarts_serve_them_again() {
    let e = Enclave::start();
    create_crd(&e);
    let (code, _) = post(&e, WIDGETS, &widget("kept", json!({"color": "blue"})));
    assert_eq!(code, 201);

    // Restart on the same data directory: the definition and its objects are served again.
    let dir = e.stop();
    let e = Enclave::start_in(dir);
    let (code, obj) = get(&e, &format!("{WIDGETS}/kept"));
    assert_eq!(code, 200, "{obj}");
    assert_eq!(obj["spec"]["color"], "blue");
    let (code, _) = get(&e, "/apis/example.com/v1");
    assert_eq!(code, 200);

    // Deleting the definition removes the endpoints and the objects once
    // the CRD finalizer has run.
    let (code, out) = e.curl_admin(&format!("{CRDS}/widgets.example.com"), &["-X", "DELETE"]);
    assert_eq!(code, 200, "{out}");
    wait_until_gone(&e, &format!("{CRDS}/widgets.example.com"));
    let (code, _) = get(&e, &format!("{WIDGETS}/kept"));
    assert_eq!(code, 404);
    let (code, _) = get(&e, "/apis/example.com/v1");
    assert_eq!(code, 404);
    let (_, groups) = get(&e, "/apis");
    assert!(!groups.to_string().contains("example.com"));
    // Defining it again starts empty.
    create_crd(&e);
    let (code, list) = get(&e, WIDGETS);
    assert_eq!(code, 200);
    assert_eq!(list["items"], json!([]));
}

#[test]
fn a_deleted_definition_terminates_until_its_resources_are_gone_even_across_a_restart() {
    const FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";
    let e = Enclave::start();
    let crd = create_crd(&e);
    // As upstream, the finalizer is added by the first DELETE, not on create.
    assert_eq!(crd["metadata"]["finalizers"], Value::Null, "{crd}");
    let held = json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "held", "finalizers": ["example.com/hold"]},
        "spec": {"color": "red"}});
    let (code, out) = post(&e, WIDGETS, &held.to_string());
    assert_eq!(code, 201, "{out}");

    let (code, out) = e.curl_admin(&format!("{CRDS}/widgets.example.com"), &["-X", "DELETE"]);
    assert_eq!(code, 200, "{out}");
    let marked = parse(&out);
    assert!(
        marked["metadata"]["deletionTimestamp"].is_string(),
        "{marked}"
    );
    assert_eq!(marked["metadata"]["finalizers"], json!([FINALIZER]));
    assert_eq!(condition(&marked, "Terminating")["status"], "True");

    // The held widget keeps the definition Terminating and readable.
    let crd = eventually("InstanceDeletionInProgress", || {
        let (_, crd) = get(&e, &format!("{CRDS}/widgets.example.com"));
        (condition(&crd, "Terminating")["reason"] == "InstanceDeletionInProgress").then_some(crd)
    });
    assert_eq!(condition(&crd, "Terminating")["status"], "True");
    assert_eq!(condition(&crd, "Established")["status"], "True");
    let widget_marked = eventually("the widget to be marked", || {
        let (_, w) = get(&e, &format!("{WIDGETS}/held"));
        w["metadata"]["deletionTimestamp"].is_string().then_some(w)
    });
    assert_eq!(
        widget_marked["metadata"]["finalizers"],
        json!(["example.com/hold"])
    );
    let refused = |e: &Enclave| {
        let (code, status) = post(e, WIDGETS, &widget("new", json!({"color": "blue"})));
        assert_eq!(code, 405, "{status}");
        assert_eq!(status["reason"], "MethodNotAllowed");
        assert_eq!(
            status["message"],
            "create not allowed while custom resource definition is terminating"
        );
    };
    refused(&e);

    // A restart mid-deletion resumes it: still Terminating, still refusing.
    let dir = e.stop();
    let e = Enclave::start_in(dir);
    let (code, crd) = get(&e, &format!("{CRDS}/widgets.example.com"));
    assert_eq!(code, 200, "{crd}");
    assert_eq!(condition(&crd, "Terminating")["status"], "True");
    refused(&e);

    // Releasing the widget lets the finalizer finish: widget, definition
    // and endpoints go.
    let (code, out) = patch(
        &e,
        &format!("{WIDGETS}/held"),
        "application/merge-patch+json",
        r#"{"metadata":{"finalizers":null}}"#,
    );
    assert_eq!(code, 200, "{out}");
    wait_until_gone(&e, &format!("{CRDS}/widgets.example.com"));
    let (code, _) = get(&e, &format!("{WIDGETS}/held"));
    assert_eq!(code, 404);
    let (code, _) = get(&e, "/apis/example.com/v1");
    assert_eq!(code, 404);
}

#[test]
fn server_side_apply_merges_custom_lists_by_their_schema_list_types() {
    let e = Enclave::start();
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "gadgets", "kind": "Gadget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "ports": {"type": "array", "x-kubernetes-list-type": "map",
                                  "x-kubernetes-list-map-keys": ["name"],
                                  "items": {"type": "object", "required": ["name"], "properties": {
                                      "name": {"type": "string"}, "port": {"type": "integer"}}}},
                        "tags": {"type": "array", "x-kubernetes-list-type": "set",
                                 "items": {"type": "string"}},
                        "hosts": {"type": "array", "items": {"type": "string"}},
                    }},
                }}}}],
        },
    });
    let (code, out) = post(&e, CRDS, &crd.to_string());
    assert_eq!(code, 201, "{out}");
    const GADGETS: &str = "/apis/example.com/v1/namespaces/default/gadgets";
    let apply = |manager: &str, spec: Value, force: bool| {
        let body = json!({"apiVersion": "example.com/v1", "kind": "Gadget",
                          "metadata": {"name": "g"}, "spec": spec});
        let force = if force { "&force=true" } else { "" };
        patch(
            &e,
            &format!("{GADGETS}/g?fieldManager={manager}{force}"),
            "application/apply-patch+yaml",
            &body.to_string(),
        )
    };
    let (code, out) = apply(
        "a",
        json!({"ports": [{"name": "http", "port": 80}], "tags": ["x"], "hosts": ["h1"]}),
        false,
    );
    assert_eq!(code, 201, "{out}");
    // Another manager adds a port (keyed by name, though it has a `port`
    // field) and a tag without conflicts.
    let (code, out) = apply(
        "b",
        json!({"ports": [{"name": "dns", "port": 80}], "tags": ["y"]}),
        false,
    );
    assert_eq!(code, 200, "{out}");
    assert_eq!(
        out["spec"]["ports"],
        json!([{"name": "http", "port": 80}, {"name": "dns", "port": 80}])
    );
    assert_eq!(out["spec"]["tags"], json!(["x", "y"]));
    assert_eq!(out["spec"]["hosts"], json!(["h1"]));
    let b = out["metadata"]["managedFields"]
        .as_array()
        .and_then(|m| m.iter().find(|e| e["manager"] == "b"))
        .cloned()
        .unwrap();
    assert_eq!(
        b["fieldsV1"]["f:spec"],
        json!({"f:ports": {r#"k:{"name":"dns"}"#: {".": {}, "f:name": {}, "f:port": {}}},
               "f:tags": {r#"v:"y""#: {}}})
    );
    // An atomic list (the CRD default) is owned whole: changing it conflicts,
    // and a forced apply replaces it.
    let (code, out) = apply("b", json!({"hosts": ["h2"]}), false);
    assert_eq!(code, 409, "{out}");
    assert!(
        out["message"]
            .as_str()
            .unwrap_or("")
            .contains(".spec.hosts"),
        "{out}"
    );
    let (code, out) = apply(
        "b",
        json!({"ports": [{"name": "dns", "port": 80}], "tags": ["y"], "hosts": ["h2"]}),
        true,
    );
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["spec"]["hosts"], json!(["h2"]));
}

/// Custom resources own and are owned like any kind, for a definition created while the server runs: deleting a
/// widget collects the configmap it owns, deleting a configmap collects the widget it owns, and a widget deleted in
/// foreground goes once its blocking dependent is gone.
#[test]
fn the_garbage_collector_follows_owner_references_to_and_from_custom_resources() {
    const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";
    let e = Enclave::start();
    create_crd(&e);
    let created = |path: &str, body: Value| {
        let (code, obj) = post(&e, path, &body.to_string());
        assert_eq!(code, 201, "{obj}");
        obj
    };
    let owned_by = |owner: &Value, block: bool| {
        json!([{
            "apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "blockOwnerDeletion": block,
        }])
    };
    let widget_owned_by = |name: &str, owners: Value| {
        json!({"apiVersion": "example.com/v1", "kind": "Widget",
               "metadata": {"name": name, "ownerReferences": owners}, "spec": {"color": "red"}})
    };

    let owner = created(WIDGETS, parse(&widget("owner", json!({"color": "red"}))));
    created(
        CONFIGMAPS,
        json!({"metadata": {"name": "owned", "ownerReferences": owned_by(&owner, false)}}),
    );
    let root = created(CONFIGMAPS, json!({"metadata": {"name": "root"}}));
    created(
        WIDGETS,
        widget_owned_by("dependent", owned_by(&root, false)),
    );

    let (code, out) = e.curl_admin(&format!("{WIDGETS}/owner"), &["-X", "DELETE"]);
    assert_eq!(code, 200, "{out}");
    wait_until_gone(&e, &format!("{CONFIGMAPS}/owned"));
    let (code, out) = e.curl_admin(&format!("{CONFIGMAPS}/root"), &["-X", "DELETE"]);
    assert_eq!(code, 200, "{out}");
    wait_until_gone(&e, &format!("{WIDGETS}/dependent"));

    let fg = created(WIDGETS, parse(&widget("fg", json!({"color": "blue"}))));
    created(
        CONFIGMAPS,
        json!({"metadata": {"name": "blocker", "ownerReferences": owned_by(&fg, true)}}),
    );
    let (code, out) = e.curl_admin(
        &format!("{WIDGETS}/fg"),
        &[
            "-X",
            "DELETE",
            "-H",
            JSON,
            "-d",
            r#"{"propagationPolicy":"Foreground"}"#,
        ],
    );
    assert_eq!(code, 200, "{out}");
    wait_until_gone(&e, &format!("{CONFIGMAPS}/blocker"));
    wait_until_gone(&e, &format!("{WIDGETS}/fg"));
}

/// A second served version (`None` conversion): its objects are the storage version's with their
/// `apiVersion` rewritten, both ways, in every verb; before, an object written through v1beta1 was
/// stored and then served as v1beta1 through v1 too.
#[test]
fn a_second_version_serves_the_storage_versions_objects() {
    let e = Enclave::start();
    let mut crd = widget_crd();
    let mut beta = crd["spec"]["versions"][0].clone();
    beta["name"] = json!("v1beta1");
    beta["storage"] = json!(false);
    crd["spec"]["versions"].as_array_mut().unwrap().push(beta);
    let (code, body) = e.curl_admin(CRDS, &["-X", "POST", "-H", JSON, "-d", &crd.to_string()]);
    assert_eq!(code, 201, "{body}");
    let betas = "/apis/example.com/v1beta1/namespaces/default/widgets";
    eventually("v1beta1 widgets to be served", || {
        (get(&e, betas).0 == 200).then_some(())
    });
    let w = json!({"apiVersion": "example.com/v1beta1", "kind": "Widget", "metadata": {"name": "b"},
                   "spec": {"color": "red"}});
    let (code, created) = post(&e, betas, &w.to_string());
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["apiVersion"], "example.com/v1beta1");
    assert_eq!(
        created["spec"]["replicas"], 1,
        "the schema's default applied"
    );
    let (_, stored) = get(&e, &format!("{WIDGETS}/b"));
    assert_eq!(stored["apiVersion"], "example.com/v1", "{stored}");
    let (_, list) = get(&e, betas);
    assert_eq!(list["apiVersion"], "example.com/v1beta1");
    assert_eq!(list["items"][0]["apiVersion"], "example.com/v1beta1");
    // A merge patch and a server-side apply through v1beta1.
    let (code, patched) = patch(
        &e,
        &format!("{betas}/b"),
        "application/merge-patch+json",
        r#"{"spec":{"color":"blue"}}"#,
    );
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["apiVersion"], "example.com/v1beta1");
    let (code, applied) = patch(
        &e,
        &format!("{betas}/b?fieldManager=tester&force=true"),
        "application/apply-patch+yaml",
        r#"{"apiVersion":"example.com/v1beta1","kind":"Widget","metadata":{"name":"b"},"spec":{"color":"red","size":"L"}}"#,
    );
    assert_eq!(code, 200, "{applied}");
    assert_eq!(applied["apiVersion"], "example.com/v1beta1");
    let (_, stored) = get(&e, &format!("{WIDGETS}/b"));
    assert_eq!(
        (
            stored["spec"]["color"].clone(),
            stored["spec"]["size"].clone()
        ),
        (json!("red"), json!("L"))
    );
    // The scale subresource is the same Scale in every version.
    let (code, scale) = get(&e, &format!("{betas}/b/scale"));
    assert_eq!(code, 200, "{scale}");
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 1);
    // Watch events in v1beta1.
    let (_, out) = e.curl_admin(&format!("{betas}?watch=1&timeoutSeconds=1"), &[]);
    let first = parse(out.lines().next().unwrap_or_default());
    assert_eq!(
        first["object"]["apiVersion"], "example.com/v1beta1",
        "{out}"
    );
}
