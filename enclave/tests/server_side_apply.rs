//! Server-side apply and managedFields over HTTP, against the real
//! `daas-enclave --dev` binary: option checks, create-by-apply, no-op
//! re-apply, conflicts with their causes, force, dry-run, malformed bodies,
//! and the managedFields every other write records.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;

use common::Enclave;
use serde_json::{Value, json};

const DEPLOY: &str = "/apis/apps/v1/namespaces/default/deployments/web";
const APPLY_CT: &str = "Content-Type: application/apply-patch+yaml";

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A Deployment as YAML (real YAML, not JSON: kubectl sends JSON, others may not).
fn deployment_yaml(replicas: u32, image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {{app: web}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: c
        image: {image}
"
    )
}

fn apply(e: &Enclave, query: &str, body: &str) -> (u16, Value) {
    let (code, out) = e.curl_admin(
        &format!("{DEPLOY}{query}"),
        &["-X", "PATCH", "-H", APPLY_CT, "--data-binary", body],
    );
    (code, parse(&out))
}

/// Waits until the deployment controller has reported on the current
/// generation with every replica created and the object stopped changing;
/// its resourceVersion then.
fn settled(e: &Enclave) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut last = Value::Null;
    loop {
        let (_, d) = get(e);
        let done = d["status"]["observedGeneration"] == d["metadata"]["generation"]
            && d["status"]["replicas"] == d["spec"]["replicas"]
            && d["status"]["updatedReplicas"] == d["spec"]["replicas"];
        let rv = d["metadata"]["resourceVersion"].clone();
        if done && rv == last {
            return rv;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the deployment did not settle: {d}"
        );
        last = rv;
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

fn get(e: &Enclave) -> (u16, Value) {
    let (code, out) = e.curl_admin(DEPLOY, &[]);
    (code, parse(&out))
}

/// The (manager, operation, subresource) entries, without the deployment
/// controller's own (it writes the revision annotation and status, as
/// upstream's does).
fn managers(obj: &Value) -> Vec<(String, String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|m| m["manager"] != "kube-controller-manager")
                .map(|m| {
                    (
                        m["manager"].as_str().unwrap_or("").to_string(),
                        m["operation"].as_str().unwrap_or("").to_string(),
                        m["subresource"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn triple(m: &str, op: &str, sub: &str) -> (String, String, String) {
    (m.into(), op.into(), sub.into())
}

#[test]
fn apply_checks_options_and_bodies_before_writing() {
    let e = Enclave::start();
    let body = deployment_yaml(2, "nginx:1.27");
    // fieldManager is required: upstream's 422 on PatchOptions.
    let (code, st) = apply(&e, "", &body);
    assert_eq!(code, 422, "{st}");
    assert_eq!(st["reason"], "Invalid");
    assert_eq!(
        st["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    assert_eq!(st["details"]["kind"], "PatchOptions");
    assert_eq!(st["details"]["causes"][0]["field"], "fieldManager");
    // force belongs to apply patches only.
    let (code, out) = e.curl_admin(
        &format!("{DEPLOY}?force=true"),
        &[
            "-X",
            "PATCH",
            "-H",
            "Content-Type: application/merge-patch+json",
            "-d",
            "{}",
        ],
    );
    assert_eq!(code, 422, "{out}");
    assert!(
        parse(&out)["message"]
            .as_str()
            .unwrap()
            .contains("force: Forbidden")
    );
    // Malformed YAML: 400, nothing written.
    let (code, st) = apply(&e, "?fieldManager=t", "spec: [unclosed\n  : :");
    assert_eq!(code, 400, "{st}");
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .starts_with("error decoding YAML"),
        "{st}"
    );
    // Wrong version, or managedFields in the configuration: 400.
    let (code, st) = apply(
        &e,
        "?fieldManager=t",
        &body.replace("apps/v1", "apps/v1beta1"),
    );
    assert_eq!(code, 400, "{st}");
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .contains("Incorrect version specified in apply patch")
    );
    let with_mf = body.replace(
        "  name: web\n",
        "  name: web\n  managedFields: [{manager: x}]\n",
    );
    let (code, st) = apply(&e, "?fieldManager=t", &with_mf);
    assert_eq!(code, 400, "{st}");
    assert_eq!(st["message"], "metadata.managedFields must be nil");
    // dryRun: the would-be object, nothing stored.
    let (code, obj) = apply(&e, "?fieldManager=t&dryRun=All", &body);
    assert_eq!(code, 201, "{obj}");
    assert_eq!(obj["spec"]["replicas"], 2);
    assert_eq!(managers(&obj), [triple("t", "Apply", "")]);
    // fieldManager is at most 128 bytes, on every write.
    let long = "m".repeat(129);
    let (code, st) = apply(&e, &format!("?fieldManager={long}"), &body);
    assert_eq!(code, 422, "{st}");
    assert_eq!(
        st["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Too long: may not be more than 128 bytes"
    );
    let (code, out) = e.curl_admin(
        &format!("/api/v1/namespaces/default/configmaps?fieldManager={long}"),
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"metadata":{"name":"x"}}"#,
        ],
    );
    assert_eq!(code, 422, "{out}");
    assert!(
        parse(&out)["message"]
            .as_str()
            .unwrap()
            .starts_with("CreateOptions.meta.k8s.io")
    );
    // Unknown fields under fieldValidation=Strict: 400, nothing written.
    let unknown = body.replace("  replicas: 2\n", "  replicas: 2\n  bogus: 1\n");
    let (code, st) = apply(&e, "?fieldManager=t&fieldValidation=Strict", &unknown);
    assert_eq!(code, 400, "{st}");
    assert!(
        st["message"].as_str().unwrap().contains("unknown field"),
        "{st}"
    );
    // A namespace that does not exist: 404, as create.
    let (code, out) = e.curl_admin(
        "/apis/apps/v1/namespaces/nope/deployments/web?fieldManager=t",
        &["-X", "PATCH", "-H", APPLY_CT, "--data-binary", &body],
    );
    assert_eq!(code, 404, "{out}");
    assert_eq!(get(&e).0, 404);
}

#[test]
fn apply_creates_owns_conflicts_and_forces() {
    let e = Enclave::start();
    // Create by apply: 201, the applier owns exactly what it applied.
    let (code, created) = apply(
        &e,
        "?fieldManager=deployer",
        &deployment_yaml(2, "nginx:1.27"),
    );
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(managers(&created), [triple("deployer", "Apply", "")]);
    let fields = &created["metadata"]["managedFields"][0]["fieldsV1"];
    assert_eq!(fields["f:spec"]["f:replicas"], json!({}));
    assert_eq!(
        fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"],
        json!({".": {}, "f:image": {}, "f:name": {}})
    );
    // Defaults are set but owned by no one.
    assert_eq!(created["spec"]["revisionHistoryLimit"], 10);
    assert!(fields["f:spec"].get("f:revisionHistoryLimit").is_none());
    // The deployment controller writes status (and its replica set makes
    // pods) after the create; an identical apply must write nothing once
    // it has settled.
    let rv = settled(&e);

    // The same apply again: 200 and nothing written.
    let (code, again) = apply(
        &e,
        "?fieldManager=deployer",
        &deployment_yaml(2, "nginx:1.27"),
    );
    assert_eq!(code, 200, "{again}");
    assert_eq!(again["metadata"]["resourceVersion"], rv);
    assert_eq!(get(&e).1["metadata"]["resourceVersion"], rv);

    // Another manager changes replicas through /scale.
    let (code, out) = e.curl_admin(
        &format!("{DEPLOY}/scale?fieldManager=scaler"),
        &[
            "-X",
            "PATCH",
            "-H",
            "Content-Type: application/merge-patch+json",
            "-d",
            r#"{"spec":{"replicas":5}}"#,
        ],
    );
    assert_eq!(code, 200, "{out}");
    let (_, live) = get(&e);
    assert_eq!(
        managers(&live),
        [
            triple("deployer", "Apply", ""),
            triple("scaler", "Update", "scale")
        ]
    );

    // Applying another replicas: 409 with upstream's message and causes.
    let (code, st) = apply(
        &e,
        "?fieldManager=deployer",
        &deployment_yaml(3, "nginx:1.28"),
    );
    assert_eq!(code, 409, "{st}");
    assert_eq!(st["reason"], "Conflict");
    assert_eq!(
        st["message"],
        "Apply failed with 1 conflict: conflict with \"scaler\" with subresource \"scale\" using apps/v1: .spec.replicas"
    );
    assert_eq!(
        st["details"]["causes"],
        json!([{
            "reason": "FieldManagerConflict",
            "message": "conflict with \"scaler\" with subresource \"scale\" using apps/v1",
            "field": ".spec.replicas",
        }])
    );
    let (_, unchanged) = get(&e);
    assert_eq!(unchanged["spec"]["replicas"], 5);
    assert_eq!(
        unchanged["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    // Applying the live value instead is no conflict: both own it.
    let (code, shared) = apply(
        &e,
        "?fieldManager=deployer",
        &deployment_yaml(5, "nginx:1.27"),
    );
    assert_eq!(code, 200, "{shared}");
    assert_eq!(managers(&shared).len(), 2);

    // force with dryRun: the would-be result, nothing stored.
    let (code, dry) = apply(
        &e,
        "?fieldManager=deployer&force=true&dryRun=All",
        &deployment_yaml(3, "nginx:1.28"),
    );
    assert_eq!(code, 200, "{dry}");
    assert_eq!(dry["spec"]["replicas"], 3);
    assert_eq!(get(&e).1["spec"]["replicas"], 5);

    // force: the applier takes replicas; the scaler, left with nothing, goes.
    let (code, forced) = apply(
        &e,
        "?fieldManager=deployer&force=true",
        &deployment_yaml(3, "nginx:1.28"),
    );
    assert_eq!(code, 200, "{forced}");
    assert_eq!(forced["spec"]["replicas"], 3);
    assert_eq!(forced["metadata"]["generation"], 3);
    assert_eq!(managers(&forced), [triple("deployer", "Apply", "")]);

    // A stale resourceVersion in the configuration is a precondition.
    let stale = deployment_yaml(4, "nginx:1.28").replace(
        "  name: web\n",
        &format!(
            "  name: web\n  resourceVersion: \"{}\"\n",
            rv.as_str().unwrap()
        ),
    );
    let (code, st) = apply(&e, "?fieldManager=deployer", &stale);
    assert_eq!(code, 409, "{st}");
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .contains("the object has been modified")
    );

    // Apply through /status owns status only, recorded with the subresource.
    let status_cfg = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"status":{"observedGeneration":3}}"#;
    let (code, out) = e.curl_admin(
        &format!("{DEPLOY}/status?fieldManager=ctrl"),
        &["-X", "PATCH", "-H", APPLY_CT, "--data-binary", status_cfg],
    );
    assert_eq!(code, 200, "{out}");
    let obj = parse(&out);
    assert_eq!(obj["status"]["observedGeneration"], 3);
    assert!(
        managers(&obj).contains(&triple("ctrl", "Apply", "status")),
        "{obj}"
    );
    // Dropping a label it applied removes it; a label someone else set stays.
    let (code, out) = e.curl_admin(
        &format!("{DEPLOY}?fieldManager=labeller"),
        &[
            "-X",
            "PATCH",
            "-H",
            "Content-Type: application/merge-patch+json",
            "-d",
            r#"{"metadata":{"labels":{"team":"a"}}}"#,
        ],
    );
    assert_eq!(code, 200, "{out}");
    let no_labels = deployment_yaml(3, "nginx:1.28").replace("  labels: {app: web}\n", "");
    let (code, pruned) = apply(&e, "?fieldManager=deployer", &no_labels);
    assert_eq!(code, 200, "{pruned}");
    assert_eq!(pruned["metadata"]["labels"], json!({"team": "a"}));
}

#[test]
fn every_write_records_its_manager() {
    let e = Enclave::start();
    let cm = "/api/v1/namespaces/default/configmaps";
    // No fieldManager: the User-Agent up to its first '/'.
    let (code, out) = e.curl_admin(
        cm,
        &[
            "-X",
            "POST",
            "-A",
            "my-agent/1.0 (linux)",
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"metadata":{"name":"c"},"data":{"a":"1"}}"#,
        ],
    );
    assert_eq!(code, 201, "{out}");
    let obj = parse(&out);
    let m = &obj["metadata"]["managedFields"][0];
    assert_eq!(m["manager"], "my-agent");
    assert_eq!(m["operation"], "Update");
    assert_eq!(m["apiVersion"], "v1");
    assert_eq!(m["fieldsType"], "FieldsV1");
    assert!(m["time"].is_string());
    assert_eq!(m["fieldsV1"], json!({"f:data": {".": {}, "f:a": {}}}));

    // An update by another manager takes the field it changed.
    let patch = |query: &str, body: &str| {
        e.curl_admin(
            &format!("{cm}/c{query}"),
            &[
                "-X",
                "PATCH",
                "-H",
                "Content-Type: application/merge-patch+json",
                "-d",
                body,
            ],
        )
    };
    let (code, out) = patch("?fieldManager=editor", r#"{"data":{"a":"2","b":"3"}}"#);
    assert_eq!(code, 200, "{out}");
    let obj = parse(&out);
    let mut found = managers(&obj);
    found.sort();
    assert_eq!(
        found,
        [
            triple("editor", "Update", ""),
            triple("my-agent", "Update", "")
        ]
    );
    let editor = obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["manager"] == "editor")
        .unwrap();
    assert_eq!(
        editor["fieldsV1"],
        json!({"f:data": {"f:a": {}, "f:b": {}}})
    );
    // my-agent kept only the map itself.
    let agent = obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["manager"] == "my-agent")
        .unwrap();
    assert_eq!(agent["fieldsV1"], json!({"f:data": {}}));

    // `[{}]` resets them.
    let (code, out) = patch(
        "?fieldManager=editor",
        r#"{"metadata":{"managedFields":[{}]}}"#,
    );
    assert_eq!(code, 200, "{out}");
    assert!(
        parse(&out)["metadata"].get("managedFields").is_none(),
        "{out}"
    );

    // Status writes are recorded with their subresource.
    let (code, out) = e.curl_admin(
        "/api/v1/namespaces/default/pods",
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"i"}]}}"#,
        ],
    );
    assert_eq!(code, 201, "{out}");
    let (code, out) = e.curl_admin(
        "/api/v1/namespaces/default/pods/p/status?fieldManager=kubelet",
        &[
            "-X",
            "PATCH",
            "-H",
            "Content-Type: application/merge-patch+json",
            "-d",
            r#"{"status":{"phase":"Running"}}"#,
        ],
    );
    assert_eq!(code, 200, "{out}");
    let obj = parse(&out);
    assert!(
        managers(&obj).contains(&triple("kubelet", "Update", "status")),
        "{obj}"
    );
    let kubelet = obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["manager"] == "kubelet")
        .unwrap();
    assert_eq!(kubelet["fieldsV1"], json!({"f:status": {"f:phase": {}}}));
}

/// What upstream does with client-side apply's annotation when kubectl
/// applies server-side: fields the annotation says kubectl set (and that
/// still hold those values) are taken without a conflict, other managers'
/// fields still conflict, and the annotation is rewritten to the applied
/// configuration. Other field managers get neither.
#[test]
fn kubectl_server_side_apply_keeps_the_last_applied_annotation_in_step() {
    let e = Enclave::start();
    let cm = "/api/v1/namespaces/default/configmaps/csa";
    let last = "{\"apiVersion\":\"v1\",\"data\":{\"a\":\"1\",\"b\":\"2\"},\"kind\":\"ConfigMap\",\"metadata\":{\"annotations\":{},\"name\":\"csa\"}}\n";
    let created = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "csa", "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": last}},
        "data": {"a": "1", "b": "2"}});
    let (code, out) = e.curl_admin(
        "/api/v1/namespaces/default/configmaps?fieldManager=kubectl-client-side-apply",
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &created.to_string(),
        ],
    );
    assert_eq!(code, 201, "{out}");
    let (code, out) = e.curl_admin(
        &format!("{cm}?fieldManager=editor"),
        &[
            "-X",
            "PATCH",
            "-H",
            "Content-Type: application/merge-patch+json",
            "--data-binary",
            r#"{"data":{"b":"edited"}}"#,
        ],
    );
    assert_eq!(code, 200, "{out}");
    let apply_as = |manager: &str, data: &str| {
        let body = format!(
            "{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"csa\"}},\"data\":{data}}}"
        );
        let (code, out) = e.curl_admin(
            &format!("{cm}?fieldManager={manager}"),
            &["-X", "PATCH", "-H", APPLY_CT, "--data-binary", &body],
        );
        (code, parse(&out))
    };
    let fields = |st: &Value| -> Vec<String> {
        st["details"]["causes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["field"].as_str().unwrap().to_string())
            .collect()
    };

    let (code, st) = apply_as("other", r#"{"a":"10"}"#);
    assert_eq!(code, 409, "another manager conflicts: {st}");
    assert_eq!(fields(&st), [".data.a"]);
    let (code, st) = apply_as("kubectl", r#"{"a":"10","b":"20"}"#);
    assert_eq!(code, 409, "{st}");
    assert_eq!(
        fields(&st),
        [".data.b"],
        "only the editor's field conflicts"
    );
    assert!(
        st["message"].as_str().unwrap().contains("\"editor\""),
        "{st}"
    );

    let (code, obj) = apply_as("kubectl", r#"{"a":"10"}"#);
    assert_eq!(code, 200, "{obj}");
    assert_eq!(obj["data"], json!({"a": "10", "b": "edited"}));
    assert_eq!(
        obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        "{\"apiVersion\":\"v1\",\"data\":{\"a\":\"10\"},\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"csa\"}}\n"
    );
    let kubectl = obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["manager"] == "kubectl")
        .unwrap();
    assert_eq!(kubectl["operation"], "Apply");
    assert_eq!(kubectl["fieldsV1"], json!({"f:data": {"f:a": {}}}));

    // Another manager's apply leaves the annotation as it is.
    let (code, obj) = apply_as("other", r#"{"c":"3"}"#);
    assert_eq!(code, 200, "{obj}");
    assert_eq!(
        obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        "{\"apiVersion\":\"v1\",\"data\":{\"a\":\"10\"},\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"csa\"}}\n"
    );
}
