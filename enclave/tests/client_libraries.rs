//! Real client libraries other than kubectl drive the real `daas-enclave --dev` binary through the
//! kubeconfig it wrote, which trusts the server certificate alone (as the attested kubeconfig pins it):
//! - the official Python client (PyPI `kubernetes`, OpenSSL): list with selectors and pagination, watch
//!   from a list's resourceVersion, the three patch types and server-side apply, a 409 on a stale update,
//!   deletion (`tests/client_support/python_client.py`), and authorization (`python_authz.py`);
//! - the official JavaScript client (npm `@kubernetes/client-node`, Node's OpenSSL): list, create,
//!   replace and a stale 409, a 404 Status, a watch, deletes returning the object
//!   (`tests/client_support/node/node_client.mjs`);
//! - the JDK's own TLS with the kubeconfig's certificate as its only trust anchor, as the official Java
//!   client sets it up (`tests/client_support/java`), where a JDK is installed;
//! - kube-rs (`kube` with rustls, the Rust ecosystem's client): typed create, list with a selector,
//!   a watch from the list's resourceVersion, merge patch and server-side apply, a stale replace's
//!   409, a 404 Status, the scale subresource, delete answers;
//! - PyPI's `openapi-spec-validator` on every `/openapi/v3` document, which must also describe every
//!   operation discovery lists (`tests/client_support/openapi_check.py`).
//!
//! `scripts/setup` installs the Python and JavaScript clients and the validator.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;

use std::path::Path;
use std::process::Command;

use common::Enclave;

/// `tests/client_support/<path>` of this crate.
fn support(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/client_support")
        .join(path)
}

/// Runs `program args…`, which must succeed and print every line of `checks`; returns its
/// standard output.
fn run_client(program: &str, args: &[&std::ffi::OsStr], checks: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for check in checks {
        assert!(stdout.contains(check), "{check:?} missing from:\n{stdout}");
    }
    stdout
}

#[test]
fn the_official_python_client_lists_watches_and_patches() {
    let e = Enclave::start();
    let script = support("python_client.py");
    run_client(
        "python3",
        &[
            script.as_os_str(),
            e.kubeconfig().as_os_str(),
            "python-client".as_ref(),
        ],
        &[
            "list ok",
            "watch ok: 6 events",
            "patch ok",
            "update conflict ok: 409",
            "deployment ok",
            "delete namespace ok",
        ],
    );
}

/// The same client against authorization: TokenRequest, a service account's
/// rights and 403s, SubjectAccessReview, SelfSubjectRulesReview, TokenReview
/// (`tests/client_support/python_authz.py` holds the checks).
#[test]
fn the_official_python_client_sees_rbac_and_tokens() {
    let e = Enclave::start();
    let script = support("python_authz.py");
    run_client(
        "python3",
        &[
            script.as_os_str(),
            e.kubeconfig().as_os_str(),
            "python-authz".as_ref(),
        ],
        &[
            "token request ok",
            "forbidden ok",
            "subject access reviews ok",
            "self subject rules review ok",
            "token review ok",
        ],
    );
}

/// The JavaScript client (`tests/client_support/node`, installed by `scripts/setup`).
#[test]
fn the_official_javascript_client_lists_watches_and_deletes() {
    let e = Enclave::start();
    let dir = support("node");
    if !dir.join("node_modules/@kubernetes/client-node").is_dir() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} has no node_modules: scripts/setup installs them",
            dir.display()
        );
        eprintln!("SKIPPED: npm install in {} first", dir.display());
        return;
    }
    let script = dir.join("node_client.mjs");
    run_client(
        "node",
        &[
            script.as_os_str(),
            e.kubeconfig().as_os_str(),
            "node-client".as_ref(),
        ],
        &[
            "list ok",
            "create ok",
            "update conflict ok: 409",
            "not found ok: 404",
            "watch ok: 2 events",
            "delete ok",
            "all ok",
        ],
    );
}

/// The JDK's TLS with the kubeconfig's certificate as its only trust anchor, loaded as the
/// official Java client loads it (`tests/client_support/java/PinnedKubeconfig.java`). Runs
/// where a JDK is installed (`scripts/setup` does not install one; the Java client itself
/// comes from Maven Central, which these machines cannot reach).
#[test]
fn the_jdk_trusts_the_kubeconfigs_certificate_alone() {
    let Ok(version) = Command::new("java").arg("-version").output() else {
        eprintln!("SKIPPED: no java on PATH");
        return;
    };
    assert!(version.status.success());
    let e = Enclave::start();
    let kubeconfig = e.token_kubeconfig("java", &e.token());
    let program = support("java/PinnedKubeconfig.java");
    run_client(
        "java",
        &[program.as_os_str(), kubeconfig.as_os_str()],
        &["/api ok", "/api/v1/namespaces ok"],
    );
}

/// kube-rs, configured from the kubeconfig file exactly as `daas-enclave --dev` wrote it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_lists_watches_patches_and_applies() {
    use futures::{StreamExt as _, TryStreamExt as _};
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{ConfigMap, Service};
    use kube::api::{
        Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
    };
    use kube::config::{KubeConfigOptions, Kubeconfig};

    let e = Enclave::start();
    let kubeconfig = Kubeconfig::read_from(e.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "kube-rs", "labels": {"client": "kube-rs"}},
        "data": {"a": "1"},
    }))
    .unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    assert!(created.metadata.uid.is_some());
    let list = cms
        .list(&ListParams::default().labels("client=kube-rs"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    let from = list.metadata.resource_version.clone().unwrap();

    // A watch from the list's revision sees the merge patch that follows.
    let mut events = cms
        .watch(&WatchParams::default().labels("client=kube-rs"), &from)
        .await
        .unwrap()
        .boxed();
    let patched = cms
        .patch(
            "kube-rs",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {"b": "2"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data.as_ref().unwrap()["b"], "2");
    let first = tokio::time::timeout(std::time::Duration::from_secs(20), events.try_next())
        .await
        .expect("a watch event")
        .unwrap()
        .unwrap();
    match first {
        WatchEvent::Modified(m) => assert_eq!(m.data.unwrap()["b"], "2"),
        other => panic!("expected Modified, got {other:?}"),
    }

    // Server-side apply takes ownership of a field.
    let applied = cms
        .patch(
            "kube-rs",
            &PatchParams::apply("kube-rs-test").force(),
            &Patch::Apply(serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "kube-rs"}, "data": {"c": "3"},
            })),
        )
        .await
        .unwrap();
    assert_eq!(applied.data.as_ref().unwrap()["c"], "3");
    assert!(
        applied
            .metadata
            .managed_fields
            .unwrap()
            .iter()
            .any(|m| m.manager.as_deref() == Some("kube-rs-test"))
    );

    // A replace with a stale resourceVersion: 409 Conflict, as a Status kube decodes.
    let kube::Error::Api(status) = cms
        .replace("kube-rs", &PostParams::default(), &created)
        .await
        .unwrap_err()
    else {
        panic!("not an API error")
    };
    assert!(status.is_conflict(), "{status:?}");
    let kube::Error::Api(status) = cms.get("missing").await.unwrap_err() else {
        panic!("not an API error")
    };
    assert!(status.is_not_found(), "{status:?}");
    assert_eq!(status.code, 404);

    // A Deployment and its scale subresource.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "kube-rs"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "kube-rs"}},
            "template": {"metadata": {"labels": {"app": "kube-rs"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let scale = deployments.get_scale("kube-rs").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(2));

    // Deletes answer as upstream's: a Status for ConfigMaps and Deployments, the deleted
    // object for Services.
    for gone in [
        cms.delete("kube-rs", &DeleteParams::default())
            .await
            .unwrap()
            .map_left(|_| ()),
        deployments
            .delete("kube-rs", &DeleteParams::default())
            .await
            .unwrap()
            .map_left(|_| ()),
    ] {
        assert!(gone.is_right(), "{gone:?}");
    }
    let services: Api<Service> = Api::namespaced(client, "default");
    let svc: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "kube-rs"},
        "spec": {"selector": {"app": "kube-rs"}, "ports": [{"port": 80}]},
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    let gone = services
        .delete("kube-rs", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        gone.left()
            .is_some_and(|s| s.metadata.name.as_deref() == Some("kube-rs")),
        "the deleted Service"
    );
}

/// The OpenAPI v3 documents pass an independent validator (PyPI `openapi-spec-validator`) and
/// document every operation discovery lists, with path parameters
/// (`tests/client_support/openapi_check.py`).
#[test]
fn openapi_documents_pass_an_independent_validator() {
    let e = Enclave::start();
    let script = support("openapi_check.py");
    let out = run_client(
        "python3",
        &[script.as_os_str(), e.kubeconfig().as_os_str()],
        &["api/v1: valid", "apis/apps/v1: valid", "openapi/v2: valid"],
    );
    println!("{out}");
}
