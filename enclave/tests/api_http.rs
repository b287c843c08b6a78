//! The HTTP surface of the real `daas-enclave` binary, driven with curl:
//! authentication, discovery negotiation, HTTP/2, status codes for bad
//! input, and state and credentials surviving a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;

use common::Enclave;
use serde_json::Value;

fn status(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[test]
fn authentication() {
    let e = Enclave::start();
    for public in ["/version", "/healthz", "/livez", "/readyz"] {
        assert_eq!(e.curl(public, &[]).0, 200, "{public}");
    }
    let (code, body) = e.curl("/api/v1/namespaces", &[]);
    assert_eq!(code, 401);
    assert_eq!(status(&body)["reason"], "Unauthorized");
    assert_eq!(
        e.curl("/api", &["-H", "Authorization: Bearer wrong"]).0,
        401
    );
    assert_eq!(e.curl_admin("/api", &[]).0, 200);
    let crt = e.pki("admin.crt");
    let key = e.pki("admin.key");
    let (code, body) = e.curl(
        "/api/v1/namespaces/default",
        &[
            "--cert",
            crt.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(status(&body)["metadata"]["name"], "default");
}

#[test]
fn discovery_negotiation_and_http2() {
    let e = Enclave::start();
    let (_, legacy) = e.curl_admin("/api", &[]);
    assert_eq!(status(&legacy)["kind"], "APIVersions");
    let accept = "Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
    let (code, out) = e.curl_admin("/apis", &["-H", accept, "-D", "-"]);
    assert_eq!(code, 200);
    assert!(
        out.to_ascii_lowercase().contains(
            "content-type: application/json;g=apidiscovery.k8s.io;v=v2;as=apigroupdiscoverylist"
        ),
        "{out}"
    );
    let accept = "Accept: application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
    let (_, out) = e.curl_admin("/api", &["-H", accept]);
    let doc = status(&out);
    assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2beta1");
    assert_eq!(doc["items"][0]["metadata"]["name"], "");
    let (code, v) = e.curl_admin("/version", &["--http2", "-D", "-"]);
    assert_eq!(code, 200);
    assert!(v.starts_with("HTTP/2 200"), "expected HTTP/2: {v}");
    let (code, v) = e.curl_admin("/version", &["--http1.1", "-D", "-"]);
    assert_eq!(code, 200);
    assert!(v.starts_with("HTTP/1.1 200"), "expected HTTP/1.1: {v}");
    let (code, body) = e.curl_admin("/apis/nope/v1", &[]);
    assert_eq!(code, 404);
    assert_eq!(
        status(&body)["message"],
        "the server could not find the requested resource"
    );
}

#[test]
fn bad_requests_get_precise_statuses_and_write_nothing() {
    let e = Enclave::start();
    let cms = "/api/v1/namespaces/default/configmaps";
    let json_ct = "Content-Type: application/json";

    let (code, body) = e.curl_admin(
        cms,
        &["-X", "POST", "-H", json_ct, "--data-binary", "{not json"],
    );
    assert_eq!(code, 400, "{body}");
    assert_eq!(status(&body)["reason"], "BadRequest");

    let big = format!(
        "{{\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"a\":\"{}\"}}}}",
        "x".repeat(3 * 1024 * 1024 + 10)
    );
    let file = e.dir.path().join("big.json");
    std::fs::write(&file, big).unwrap();
    let at = format!("@{}", file.display());
    let (code, body) = e.curl_admin(cms, &["-X", "POST", "-H", json_ct, "--data-binary", &at]);
    assert_eq!(code, 413, "{body}");
    assert_eq!(status(&body)["reason"], "RequestEntityTooLarge");

    let (code, body) = e.curl_admin(
        cms,
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/yaml",
            "--data-binary",
            "a: b",
        ],
    );
    assert_eq!(code, 415, "{body}");

    let (code, body) = e.curl_admin(
        &format!("{cms}/x"),
        &["-X", "POST", "-H", json_ct, "--data-binary", "{}"],
    );
    assert_eq!(code, 405, "{body}");

    let (code, body) = e.curl_admin(
        cms,
        &[
            "-X",
            "POST",
            "-H",
            json_ct,
            "--data-binary",
            r#"{"metadata":{"name":"UPPER"}}"#,
        ],
    );
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        status(&body)["details"]["causes"][0]["field"],
        "metadata.name"
    );

    let (code, body) = e.curl_admin(&format!("{cms}?labelSelector=a%20in%20b"), &[]);
    assert_eq!(code, 400, "{body}");
    let (code, body) = e.curl_admin(&format!("{cms}?limit=ten"), &[]);
    assert_eq!(code, 400, "{body}");

    let (code, body) = e.curl_admin(
        &format!("{cms}/missing"),
        &[
            "-X",
            "PATCH",
            "-H",
            "Content-Type: application/merge-patch+json",
            "--data-binary",
            "{}",
        ],
    );
    assert_eq!(code, 404, "{body}");
    assert_eq!(status(&body)["message"], "configmaps \"missing\" not found");

    let (_, body) = e.curl_admin(cms, &[]);
    let listed = status(&body);
    let written: Vec<&Value> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        // The root CA publisher's, in every namespace.
        .filter(|i| i["metadata"]["name"] != "kube-root-ca.crt")
        .collect();
    assert!(written.is_empty(), "nothing was written: {written:?}");
}

/// Writes the whole request, then reads the answer and sends a second
/// request on the same connection, as Python's `http.client` (and Go's
/// HTTP/1.1 client before 1.22) does; prints `[status, body, status,
/// reused]`, `reused` saying whether the second request went over the
/// same socket (http.client reconnects silently when the server closed).
const WRITE_ALL_THEN_READ: &str = r#"
import http.client, json, ssl, sys, urllib.parse
url, ca, token, path, body_file = sys.argv[1:6]
u = urllib.parse.urlparse(url)
c = http.client.HTTPSConnection(u.hostname, u.port, context=ssl.create_default_context(cafile=ca), timeout=30)
auth = {"Authorization": "Bearer " + token}
c.request("POST", path, body=open(body_file, "rb").read(), headers=dict(auth, **{"Content-Type": "application/json"}))
r = c.getresponse()
out = [r.status, r.read().decode()]
first = c.sock
c.request("GET", "/version")
out.append(c.getresponse().status)
out.append(first is not None and c.sock is first)
print(json.dumps(out))
"#;

/// Runs [`WRITE_ALL_THEN_READ`] with `token` and the body in `file`.
fn write_all_then_read(e: &Enclave, token: &str, path: &str, file: &std::path::Path) -> Value {
    let out = std::process::Command::new("python3")
        .args(["-c", WRITE_ALL_THEN_READ, &e.url])
        .arg(e.pki("server.crt"))
        .arg(token)
        .arg(path)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the write-everything-first client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A 4 MiB body (over the 3 MiB limit) gets the 413 Status over HTTP/2,
/// HTTP/1.1 with a length or chunked, and from a client that writes the
/// whole body before reading: the server reads the body to its end before
/// answering, so no client sees its connection reset mid-upload, and the
/// connection stays usable. Nothing is written.
#[test]
fn too_large_bodies_get_a_413_every_client_reads() {
    let e = Enclave::start();
    let cms = "/api/v1/namespaces/default/configmaps";
    let big = format!(
        "{{\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"a\":\"{}\"}}}}",
        "x".repeat(4 * 1024 * 1024)
    );
    let file = e.dir.path().join("big.json");
    std::fs::write(&file, big).unwrap();
    let at = format!("@{}", file.display());
    let too_large = |what: &str, code: u16, body: &str| {
        assert_eq!(code, 413, "{what}: {body}");
        let doc = status(body);
        assert_eq!(doc["reason"], "RequestEntityTooLarge", "{what}");
        assert_eq!(
            doc["message"], "Request entity too large: limit is 3145728",
            "{what}"
        );
    };
    for (what, extra) in [
        ("HTTP/2", vec!["--http2"]),
        ("HTTP/1.1", vec!["--http1.1"]),
        (
            "HTTP/1.1 chunked",
            vec!["--http1.1", "-H", "Transfer-Encoding: chunked"],
        ),
    ] {
        let mut args = extra.clone();
        args.extend([
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &at,
        ]);
        let (code, body) = e.curl_admin(cms, &args);
        too_large(what, code, &body);
    }

    let shown = write_all_then_read(&e, &e.token(), cms, &file);
    too_large(
        "write everything, then read",
        shown[0].as_u64().unwrap() as u16,
        shown[1].as_str().unwrap(),
    );
    assert_eq!(shown[2], 200);
    assert_eq!(
        shown[3], true,
        "the same connection serves the next request"
    );

    // Without credentials the answer is 401; a small body is read first
    // too, so the connection stays usable.
    let small = e.dir.path().join("small.json");
    std::fs::write(&small, "x".repeat(200 * 1024)).unwrap();
    let shown = write_all_then_read(&e, "wrong", cms, &small);
    assert_eq!(shown[0], 401, "{shown}");
    assert_eq!(status(shown[1].as_str().unwrap())["reason"], "Unauthorized");
    assert_eq!(
        shown[2], 200,
        "/version needs no credentials (it is public)"
    );
    assert_eq!(
        shown[3], true,
        "the same connection serves the next request"
    );

    let (code, body) = e.curl_admin(&format!("{cms}/big"), &[]);
    assert_eq!(code, 404, "nothing was written: {body}");
}

#[test]
fn state_and_credentials_survive_a_restart() {
    let e = Enclave::start();
    let (code, body) = e.curl_admin(
        "/api/v1/namespaces/default/configmaps",
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            r#"{"metadata":{"name":"kept"},"data":{"a":"b"}}"#,
        ],
    );
    assert_eq!(code, 201, "{body}");
    let ca = std::fs::read(e.pki("server.crt")).unwrap();
    let token = e.token();
    let dir = e.stop();
    let e = Enclave::start_in(dir);
    assert_eq!(std::fs::read(e.pki("server.crt")).unwrap(), ca);
    assert_eq!(e.token(), token);
    let (code, body) = e.curl_admin("/api/v1/namespaces/default/configmaps/kept", &[]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(status(&body)["data"]["a"], "b");
}

#[test]
fn delete_collection_over_http() {
    let e = Enclave::start();
    for (name, app) in [("a", "x"), ("b", "x"), ("c", "y")] {
        let body = format!(r#"{{"metadata":{{"name":"{name}","labels":{{"app":"{app}"}}}}}}"#);
        let (code, out) = e.curl_admin(
            "/api/v1/namespaces/default/configmaps",
            &[
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "-d",
                &body,
            ],
        );
        assert_eq!(code, 201, "{out}");
    }
    let (code, out) = e.curl_admin(
        "/api/v1/namespaces/default/configmaps?labelSelector=app%3Dx",
        &[
            "-X",
            "DELETE",
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"propagationPolicy":"Background"}"#,
        ],
    );
    assert_eq!(code, 200, "{out}");
    let list = status(&out);
    assert_eq!(list["kind"], "ConfigMapList");
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let (_, out) = e.curl_admin(
        "/api/v1/namespaces/default/configmaps?fieldSelector=metadata.name!%3Dkube-root-ca.crt",
        &[],
    );
    let remaining = status(&out);
    let names: Vec<&str> = remaining["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .filter(|n| *n != "kube-root-ca.crt")
        .collect();
    assert_eq!(names, ["c"]);
    let (code, out) = e.curl_admin(
        "/api/v1/namespaces/default/configmaps?labelSelector=app%3D%3D%3D",
        &["-X", "DELETE"],
    );
    assert_eq!(code, 400, "{out}");
    let (_, out) = e.curl_admin("/api/v1", &[]);
    let cm = status(&out)["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "configmaps")
        .cloned()
        .unwrap();
    assert!(
        cm["verbs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "deletecollection")
    );
}

/// Upstream's `ReturnDeletedObject`: deleting a pod, Service or ServiceAccount answers with
/// the object (clients such as Python's decode it as one), other kinds with a `Status`.
#[test]
fn delete_answers_with_the_object_where_upstream_does() {
    let e = Enclave::start();
    for (path, body, answers_object) in [
        (
            "/api/v1/namespaces/default/services",
            r#"{"metadata":{"name":"web"},"spec":{"ports":[{"port":80}]}}"#,
            true,
        ),
        (
            "/api/v1/namespaces/default/serviceaccounts",
            r#"{"metadata":{"name":"robot"}}"#,
            true,
        ),
        (
            "/api/v1/namespaces/default/configmaps",
            r#"{"metadata":{"name":"settings"}}"#,
            false,
        ),
    ] {
        let (code, out) = e.curl_admin(
            path,
            &[
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "-d",
                body,
            ],
        );
        assert_eq!(code, 201, "{out}");
        let name = status(&out)["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_owned();
        let (code, out) = e.curl_admin(&format!("{path}/{name}"), &["-X", "DELETE"]);
        assert_eq!(code, 200, "{out}");
        let answer = status(&out);
        if answers_object {
            assert_eq!(answer["metadata"]["name"], name.as_str(), "{path}: {out}");
            assert_ne!(answer["kind"], "Status", "{path}: {out}");
        } else {
            assert_eq!(answer["kind"], "Status", "{path}: {out}");
            assert_eq!(answer["status"], "Success", "{path}: {out}");
        }
    }
}

/// Status bodies byte for byte as kube-apiserver writes them (its field order, empty fields
/// left out), in responses and in a watch's ERROR event.
#[test]
fn status_bodies_are_upstreams_byte_for_byte() {
    let e = Enclave::start();
    let cms = "/api/v1/namespaces/default/configmaps";
    let (code, body) = e.curl_admin(&format!("{cms}/missing"), &[]);
    assert_eq!(code, 404);
    assert_eq!(
        body,
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"configmaps \"missing\" not found","reason":"NotFound","details":{"name":"missing","kind":"configmaps"},"code":404}"#
    );
    let create = [
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"metadata":{"name":"twice"}}"#,
    ];
    let (code, _) = e.curl_admin(cms, &create);
    assert_eq!(code, 201);
    let (code, body) = e.curl_admin(cms, &create);
    assert_eq!(code, 409);
    assert_eq!(
        body,
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"configmaps \"twice\" already exists","reason":"AlreadyExists","details":{"name":"twice","kind":"configmaps"},"code":409}"#
    );
    let (code, body) = e.curl_admin(&format!("{cms}/twice"), &["-X", "DELETE"]);
    assert_eq!(code, 200);
    let uid = status(&body)["details"]["uid"].as_str().unwrap().to_owned();
    assert_eq!(
        body,
        format!(
            r#"{{"kind":"Status","apiVersion":"v1","metadata":{{}},"status":"Success","details":{{"name":"twice","kind":"configmaps","uid":"{uid}"}}}}"#
        )
    );
}

/// Pods on a node are deleted as upstream's pod strategy does: the first DELETE marks them
/// with the grace period (the kubelet stops the containers, then deletes with 0), a later one
/// may only shorten it, status updates keep them; unscheduled and finished pods go at once.
#[test]
fn pods_on_a_node_are_deleted_gracefully() {
    let e = Enclave::start();
    let pods = "/api/v1/namespaces/default/pods";
    let json = ["-H", "Content-Type: application/json"];
    let create = |name: &str, node: Option<&str>| {
        let mut spec = serde_json::json!({"containers": [{"name": "c", "image": "busybox"}]});
        if let Some(node) = node {
            spec["nodeName"] = node.into();
        }
        let body = serde_json::json!({"metadata": {"name": name}, "spec": spec}).to_string();
        let (code, out) = e.curl_admin(pods, &[&json[..], &["-X", "POST", "-d", &body]].concat());
        assert_eq!(code, 201, "{out}");
    };
    let delete = |name: &str, query: &str| {
        let (code, out) = e.curl_admin(&format!("{pods}/{name}{query}"), &["-X", "DELETE"]);
        assert_eq!(code, 200, "{out}");
        status(&out)
    };
    let get = |name: &str| e.curl_admin(&format!("{pods}/{name}"), &[]);
    let at = |pod: &Value| {
        pod["metadata"]["deletionTimestamp"]
            .as_str()
            .unwrap_or_else(|| panic!("no deletionTimestamp: {pod}"))
            .parse::<jiff::Timestamp>()
            .unwrap()
    };

    create("bound", Some("node-x"));
    let before = jiff::Timestamp::now();
    let marked = delete("bound", "");
    assert_eq!(marked["kind"], "Pod", "{marked}");
    assert_eq!(
        marked["metadata"]["deletionGracePeriodSeconds"], 30,
        "{marked}"
    );
    let first = at(&marked);
    let ahead = first.duration_since(before).as_secs();
    assert!(
        (29..=31).contains(&ahead),
        "deletionTimestamp {ahead} s ahead: {marked}"
    );
    let (code, out) = get("bound");
    assert_eq!(code, 200, "still there while the grace period runs: {out}");
    assert_eq!(at(&status(&out)), first);

    // The kubelet's status updates while it stops the pod keep the object.
    let mut running = status(&out);
    running["status"]["phase"] = "Running".into();
    let (code, out) = e.curl_admin(
        &format!("{pods}/bound/status"),
        &[&json[..], &["-X", "PUT", "-d", &running.to_string()]].concat(),
    );
    assert_eq!(code, 200, "{out}");
    assert_eq!(
        get("bound").0,
        200,
        "a status update deleted a terminating pod"
    );

    // A longer period changes nothing; a shorter one counts from when the first started.
    let again = delete("bound", "?gracePeriodSeconds=60");
    assert_eq!(
        again["metadata"]["deletionGracePeriodSeconds"], 30,
        "{again}"
    );
    assert_eq!(at(&again), first);
    let shorter = delete("bound", "?gracePeriodSeconds=10");
    assert_eq!(
        shorter["metadata"]["deletionGracePeriodSeconds"], 10,
        "{shorter}"
    );
    assert_eq!(
        first.duration_since(at(&shorter)).as_secs(),
        20,
        "{shorter}"
    );

    // A dry run of the final delete leaves it; the real one (the kubelet's) removes it.
    delete("bound", "?gracePeriodSeconds=0&dryRun=All");
    assert_eq!(get("bound").0, 200);
    delete("bound", "?gracePeriodSeconds=0");
    assert_eq!(get("bound").0, 404);

    // No kubelet runs an unscheduled pod; a finished pod has nothing left to stop.
    create("pending", None);
    delete("pending", "");
    assert_eq!(get("pending").0, 404, "an unscheduled pod goes at once");
    create("finished", Some("node-x"));
    let (_, out) = get("finished");
    let mut done = status(&out);
    done["status"]["phase"] = "Succeeded".into();
    let (code, out) = e.curl_admin(
        &format!("{pods}/finished/status"),
        &[&json[..], &["-X", "PUT", "-d", &done.to_string()]].concat(),
    );
    assert_eq!(code, 200, "{out}");
    delete("finished", "");
    assert_eq!(get("finished").0, 404, "a finished pod goes at once");

    // A negative period counts as one second.
    create("hurry", Some("node-x"));
    let marked = delete("hurry", "?gracePeriodSeconds=-5");
    assert_eq!(
        marked["metadata"]["deletionGracePeriodSeconds"], 1,
        "{marked}"
    );
}

#[test]
fn self_subject_reviews_are_answered_not_stored() {
    let e = Enclave::start();
    let post = |path: &str, body: &str| {
        e.curl_admin(
            path,
            &[
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "-d",
                body,
            ],
        )
    };
    for v in ["v1", "v1beta1"] {
        let (code, out) = post(
            &format!("/apis/authentication.k8s.io/{v}/selfsubjectreviews"),
            &format!(r#"{{"apiVersion":"authentication.k8s.io/{v}","kind":"SelfSubjectReview"}}"#),
        );
        assert_eq!(code, 201, "{out}");
        let r = status(&out);
        assert_eq!(r["apiVersion"], format!("authentication.k8s.io/{v}"));
        assert_eq!(r["status"]["userInfo"]["username"], "admin");
        assert!(
            r["status"]["userInfo"]["groups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g == "system:authenticated")
        );
    }
    let (code, out) = post(
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        r#"{"spec":{"resourceAttributes":{"namespace":"default","verb":"create","resource":"pods"}}}"#,
    );
    assert_eq!(code, 201, "{out}");
    let r = status(&out);
    // The admin is in system:masters: allowed, with no RBAC reason.
    assert_eq!(r["status"], serde_json::json!({"allowed": true}));
    assert_eq!(r["spec"]["resourceAttributes"]["verb"], "create");

    let (code, out) = post(
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        r#"{"spec":{}}"#,
    );
    assert_eq!(code, 422, "{out}");
    assert_eq!(
        status(&out)["details"]["causes"][0]["field"],
        "spec.resourceAttributes"
    );

    let (code, out) = post(
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        r#"{"spec":{"namespace":"default"}}"#,
    );
    assert_eq!(code, 201, "{out}");
    assert_eq!(status(&out)["status"]["resourceRules"][0]["verbs"][0], "*");

    // Create-only: no list, get or delete, and nothing was stored.
    let (code, _) = e.curl_admin(
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        &[],
    );
    assert_eq!(code, 405);
    let (code, _) = e.curl_admin(
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews/x",
        &["-X", "DELETE"],
    );
    assert_eq!(code, 405);
    let (_, out) = e.curl_admin("/apis/authorization.k8s.io/v1", &[]);
    let doc = status(&out);
    for r in doc["resources"].as_array().unwrap() {
        assert_eq!(r["verbs"], serde_json::json!(["create"]), "{r}");
        assert_eq!(
            r["namespaced"],
            r["name"] == "localsubjectaccessreviews",
            "{r}"
        );
    }
    let (code, _) = post("/apis/authentication.k8s.io/v1/selfsubjectreviews", "{");
    assert_eq!(code, 400);
}

/// Writes `message` as a Kubernetes protobuf body (the `k8s\0` prefix and a
/// `runtime.Unknown` naming the kind), as client-go encodes it.
fn protobuf_body(dir: &std::path::Path, api_version: &str, kind: &str, raw: Vec<u8>) -> String {
    use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
    use prost::Message;
    let envelope = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(envelope.encode_to_vec());
    let path = dir.join(format!("{kind}.pb"));
    std::fs::write(&path, body).unwrap();
    format!("@{}", path.display())
}

/// Go clients with the protobuf content type send it for every built-in kind and
/// for DeleteOptions; kinds no hand mapping covered (StatefulSet) were refused with 415.
#[test]
fn protobuf_bodies_of_any_built_in_kind_and_delete_options() {
    use k8s_pb::api::apps::v1 as apps;
    use k8s_pb::api::core::v1 as core;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    use prost::Message;
    let e = Enclave::start();
    let dir = tempfile::tempdir().unwrap();
    let labels = std::collections::BTreeMap::from([("app".to_string(), "db".to_string())]);
    let set = apps::StatefulSet {
        metadata: Some(meta::ObjectMeta {
            name: Some("db".into()),
            ..Default::default()
        }),
        spec: Some(apps::StatefulSetSpec {
            replicas: Some(0),
            selector: Some(meta::LabelSelector {
                match_labels: labels.clone(),
                match_expressions: vec![],
            }),
            service_name: Some("db".into()),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels,
                    ..Default::default()
                }),
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: Some("db".into()),
                        image: Some("busybox".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let body = protobuf_body(dir.path(), "apps/v1", "StatefulSet", set.encode_to_vec());
    let protobuf = "Content-Type: application/vnd.kubernetes.protobuf";
    let (code, out) = e.curl_admin(
        "/apis/apps/v1/namespaces/default/statefulsets",
        &["-X", "POST", "-H", protobuf, "--data-binary", &body],
    );
    assert_eq!(code, 201, "{out}");
    let created = status(&out);
    assert_eq!(created["spec"]["replicas"], 0, "{out}");
    assert_eq!(created["spec"]["serviceName"], "db");
    assert_eq!(
        created["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox"
    );

    let delete = |uid: &str| {
        let opts = meta::DeleteOptions {
            preconditions: Some(meta::Preconditions {
                uid: Some(uid.into()),
                resource_version: None,
            }),
            propagation_policy: Some("Background".into()),
            ..Default::default()
        };
        let body = protobuf_body(
            dir.path(),
            "meta.k8s.io/v1",
            "DeleteOptions",
            opts.encode_to_vec(),
        );
        e.curl_admin(
            "/apis/apps/v1/namespaces/default/statefulsets/db",
            &["-X", "DELETE", "-H", protobuf, "--data-binary", &body],
        )
    };
    let (code, out) = delete("not-its-uid");
    assert_eq!(
        code, 409,
        "the precondition was read from the protobuf options: {out}"
    );
    let uid = created["metadata"]["uid"].as_str().unwrap();
    let (code, out) = delete(uid);
    assert_eq!(code, 200, "{out}");
    let (code, _) = e.curl_admin("/apis/apps/v1/namespaces/default/statefulsets/db", &[]);
    assert_eq!(code, 404);

    // Malformed protobuf is a 400 and writes nothing.
    let junk = dir.path().join("junk.pb");
    std::fs::write(&junk, b"k8s\0\x0a\x7f").unwrap();
    let (code, out) = e.curl_admin(
        "/apis/apps/v1/namespaces/default/statefulsets",
        &[
            "-X",
            "POST",
            "-H",
            protobuf,
            "--data-binary",
            &format!("@{}", junk.display()),
        ],
    );
    assert_eq!(code, 400, "{out}");
    let (_, out) = e.curl_admin("/apis/apps/v1/namespaces/default/statefulsets", &[]);
    assert_eq!(status(&out)["items"], serde_json::json!([]));
}

/// autoscaling/v1 HorizontalPodAutoscalers are the v2 objects, converted both ways: a v1 read
/// carries what v1 cannot say in upstream's annotations, so writing it back loses nothing; lists
/// and watch events come in v1; server-side apply of v1 is refused, not mis-converted.
#[test]
fn autoscaling_v1_serves_the_v2_objects() {
    let e = Enclave::start();
    let json = "Content-Type: application/json";
    let v2 = r#"{"apiVersion":"autoscaling/v2","kind":"HorizontalPodAutoscaler","metadata":{"name":"web"},
        "spec":{"scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"web"},"maxReplicas":4,
        "metrics":[{"type":"Pods","pods":{"metric":{"name":"qps"},"target":{"type":"AverageValue","averageValue":"10"}}},
                   {"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":60}}}]}}"#;
    let (code, out) = e.curl_admin(
        "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers",
        &["-X", "POST", "-H", json, "-d", v2],
    );
    assert_eq!(code, 201, "{out}");
    let v1_item = "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/web";
    let (code, out) = e.curl_admin(v1_item, &[]);
    assert_eq!(code, 200, "{out}");
    let v1 = status(&out);
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
    let carried = v1["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/metrics"]
        .as_str()
        .unwrap();
    assert!(carried.contains("qps"), "{carried}");

    // PUT the v1 form back with a new CPU target: the Pods metric survives.
    let mut changed = v1.clone();
    changed["spec"]["targetCPUUtilizationPercentage"] = serde_json::json!(75);
    let (code, out) = e.curl_admin(
        v1_item,
        &["-X", "PUT", "-H", json, "-d", &changed.to_string()],
    );
    assert_eq!(code, 200, "{out}");
    assert_eq!(status(&out)["apiVersion"], "autoscaling/v1");
    let (_, out) = e.curl_admin(
        "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/web",
        &[],
    );
    let stored = status(&out);
    assert_eq!(
        stored["spec"]["metrics"],
        serde_json::json!([
            {"type":"Pods","pods":{"metric":{"name":"qps"},"target":{"type":"AverageValue","averageValue":"10"}}},
            {"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":75}}}]),
        "{out}"
    );
    assert!(
        stored["metadata"].get("annotations").is_none(),
        "the carrying annotation is not stored: {out}"
    );

    // Lists and watch events in v1.
    let (_, out) = e.curl_admin("/apis/autoscaling/v1/horizontalpodautoscalers", &[]);
    let list = status(&out);
    assert_eq!(list["apiVersion"], "autoscaling/v1");
    assert_eq!(list["items"][0]["apiVersion"], "autoscaling/v1");
    let (_, out) = e.curl_admin(
        "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers?watch=1&timeoutSeconds=1",
        &[],
    );
    let first = out.lines().next().unwrap_or_default();
    let event = status(first);
    assert_eq!(event["type"], "ADDED");
    assert_eq!(
        event["object"]["spec"]["targetCPUUtilizationPercentage"],
        75
    );

    // Server-side apply of the v1 form is refused with a clear message, and changes nothing.
    let (code, out) = e.curl_admin(
        &format!("{v1_item}?fieldManager=me"),
        &[
            "-X",
            "PATCH",
            "-H",
            "Content-Type: application/apply-patch+yaml",
            "-d",
            r#"{"apiVersion":"autoscaling/v1","kind":"HorizontalPodAutoscaler","metadata":{"name":"web"},"spec":{"maxReplicas":9}}"#,
        ],
    );
    assert_eq!(code, 415, "{out}");
    assert!(out.contains("autoscaling/v2"), "{out}");
}
