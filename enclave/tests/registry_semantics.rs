//! Kubernetes object semantics of the generic registry over a real store
//! in a temporary directory: server-set metadata, conflicts, generation,
//! pagination, selectors, watch transitions, 410 after compaction,
//! finalizers, namespace deletion, strict field validation.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use enclave::registry::generic::{
    DeleteOptions, DeleteOutcome, FieldValidation, ListOptions, WriteOptions,
};
use enclave::registry::{
    FieldSelector, LabelSelector, ObjectStore, ResourceInfo, ResourceTable, WatchEvent,
    WatchOptions, WatchStream, kinds,
};
use enclave::store::{FileJournal, StaticKeys, Store, StoreOptions};
use serde_json::{Value, json};

struct Fixture {
    _dir: tempfile::TempDir,
    objects: ObjectStore,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let journal = FileJournal::open(dir.path().join("journal")).unwrap();
        let store = Store::open(
            StoreOptions::new(dir.path().join("index"), *b"registry-test-01"),
            &StaticKeys::single([9; 32]),
            Box::new(journal),
        )
        .unwrap();
        let objects = ObjectStore::new(store, ResourceTable::new(kinds::builtin()));
        let f = Fixture { _dir: dir, objects };
        f.create("namespaces", None, json!({"metadata": {"name": "default"}}))
            .await
            .unwrap();
        f
    }

    fn info(&self, resource: &str) -> Arc<ResourceInfo> {
        let group = if resource == "deployments" {
            "apps"
        } else {
            ""
        };
        self.objects.table().lookup(group, "v1", resource).unwrap()
    }

    /// Deletes `name` in `default`, which must go at once (no finalizers).
    async fn delete_now(&self, info: &ResourceInfo, name: &str) {
        let outcome = self
            .objects
            .delete(info, Some("default"), name, &DeleteOptions::default())
            .await
            .unwrap();
        assert!(
            matches!(outcome, DeleteOutcome::Deleted { .. }),
            "expected deletion"
        );
    }

    async fn create(
        &self,
        r: &str,
        ns: Option<&str>,
        body: Value,
    ) -> enclave::registry::Result<Value> {
        Ok(self
            .objects
            .create(&self.info(r), ns, body, &WriteOptions::default())
            .await?
            .object)
    }
}

fn rv(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn deployment(name: &str, image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": image}]}}},
        "status": {"replicas": 99}})
}

async fn next(w: &mut WatchStream) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("watch event did not arrive")
        .expect("watch ended")
}

#[tokio::test]
async fn create_sets_server_fields_and_rejects_bad_input() {
    let f = Fixture::new().await;
    let cm = f
        .create(
            "configmaps",
            Some("default"),
            json!({"metadata": {"generateName": "cfg-", "uid": "mine"}, "data": {"a": "b"}}),
        )
        .await
        .unwrap();
    let name = cm["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("cfg-") && name.len() == 9, "{name}");
    assert_ne!(cm["metadata"]["uid"], "mine");
    assert!(cm["metadata"]["creationTimestamp"].is_string());
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["namespace"], "default");

    let dup = f
        .create(
            "configmaps",
            Some("default"),
            json!({"metadata": {"name": name}}),
        )
        .await
        .unwrap_err();
    assert_eq!((dup.code(), dup.reason()), (409, "AlreadyExists"));
    let missing = f
        .create(
            "configmaps",
            Some("nope"),
            json!({"metadata": {"name": "x"}}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (missing.code(), missing.message()),
        (404, "namespaces \"nope\" not found".to_string())
    );
    let invalid = f
        .create(
            "configmaps",
            Some("default"),
            json!({"metadata": {"name": "Bad_Name"}}),
        )
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), 422);
    assert_eq!(
        invalid.to_status()["details"]["causes"][0]["field"],
        "metadata.name"
    );
    let noname = f
        .create("configmaps", Some("default"), json!({"metadata": {}}))
        .await
        .unwrap_err();
    assert_eq!(noname.code(), 422);
    let wrong_type = f
        .create(
            "configmaps",
            Some("default"),
            json!({"metadata": {"name": "t"}, "data": {"a": 1}}),
        )
        .await
        .unwrap_err();
    assert_eq!(wrong_type.code(), 400);
    let wrong_kind = f
        .create(
            "configmaps",
            Some("default"),
            json!({"kind": "Secret", "metadata": {"name": "t"}}),
        )
        .await
        .unwrap_err();
    assert_eq!(wrong_kind.code(), 400);
    let ns_mismatch = f
        .create(
            "configmaps",
            Some("default"),
            json!({"metadata": {"name": "t", "namespace": "other"}}),
        )
        .await
        .unwrap_err();
    assert_eq!(ns_mismatch.code(), 400);
    let bad_b64 = f
        .create(
            "secrets",
            Some("default"),
            json!({"metadata": {"name": "s"}, "data": {"k": "!!"}}),
        )
        .await
        .unwrap_err();
    assert_eq!(bad_b64.code(), 400);

    // strict field validation rejects unknown fields; warn accepts with a warning
    let strict = WriteOptions {
        field_validation: FieldValidation::Strict,
        ..Default::default()
    };
    let e = f
        .objects
        .create(
            &f.info("configmaps"),
            Some("default"),
            json!({"metadata": {"name": "u"}, "bogus": 1}),
            &strict,
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.message(),
        "strict decoding error: unknown field \"bogus\""
    );
    let w = f
        .objects
        .create(
            &f.info("configmaps"),
            Some("default"),
            json!({"metadata": {"name": "u"}, "bogus": 1}),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(w.warnings, vec!["unknown field \"bogus\"".to_string()]);
    assert!(w.object.get("bogus").is_none());
    // A patch that brings an unknown field warns too (its warnings were dropped).
    let w = f
        .objects
        .patch(
            &f.info("configmaps"),
            Some("default"),
            "u",
            &WriteOptions::default(),
            |cur| {
                let mut v = cur.clone();
                v["patched"] = json!(true);
                Ok(v)
            },
        )
        .await
        .unwrap();
    assert_eq!(w.warnings, vec!["unknown field \"patched\"".to_string()]);

    // nothing was written by any failed request
    let page = f
        .objects
        .list(
            &f.info("configmaps"),
            Some("default"),
            &ListOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
}

#[tokio::test]
async fn updates_conflict_and_track_generation() {
    let f = Fixture::new().await;
    let info = f.info("deployments");
    let d = f
        .create("deployments", Some("default"), deployment("web", "nginx:1"))
        .await
        .unwrap();
    assert_eq!(d["metadata"]["generation"], 1);
    assert!(d.get("status").is_none(), "status is cleared on create");
    assert_eq!(d["spec"]["replicas"], 1, "defaulted");

    // metadata-only change: generation stays
    let mut labelled = d.clone();
    labelled["metadata"]["labels"] = json!({"x": "y"});
    let l = f
        .objects
        .update(
            &info,
            Some("default"),
            "web",
            labelled,
            &WriteOptions::default(),
        )
        .await
        .unwrap()
        .object;
    assert_eq!(l["metadata"]["generation"], 1);
    assert!(rv(&l) > rv(&d));

    // stale resourceVersion: 409 Conflict with upstream's message
    let mut stale = d.clone();
    stale["spec"]["replicas"] = json!(3);
    let e = f
        .objects
        .update(
            &info,
            Some("default"),
            "web",
            stale,
            &WriteOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), 409);
    assert_eq!(
        e.message(),
        "Operation cannot be fulfilled on deployments.apps \"web\": the object has been modified; please apply your changes to the latest version and try again"
    );

    // spec change: generation bumps; status from the body is ignored
    let mut changed = l.clone();
    changed["spec"]["replicas"] = json!(3);
    changed["status"] = json!({"replicas": 7});
    let c = f
        .objects
        .update(
            &info,
            Some("default"),
            "web",
            changed,
            &WriteOptions::default(),
        )
        .await
        .unwrap()
        .object;
    assert_eq!(c["metadata"]["generation"], 2);
    assert!(c.get("status").is_none());

    // a no-op update writes nothing
    let same = f
        .objects
        .update(
            &info,
            Some("default"),
            "web",
            c.clone(),
            &WriteOptions::default(),
        )
        .await
        .unwrap()
        .object;
    assert_eq!(rv(&same), rv(&c));

    // immutable selector
    let mut sel = c.clone();
    sel["spec"]["selector"] = json!({"matchLabels": {"app": "other"}});
    sel["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
    assert_eq!(
        f.objects
            .update(&info, Some("default"), "web", sel, &WriteOptions::default())
            .await
            .unwrap_err()
            .code(),
        422
    );

    // dry run returns the would-be object and writes nothing
    let mut dry = c.clone();
    dry["spec"]["replicas"] = json!(9);
    let opts = WriteOptions {
        dry_run: true,
        ..Default::default()
    };
    let out = f
        .objects
        .update(&info, Some("default"), "web", dry, &opts)
        .await
        .unwrap()
        .object;
    assert_eq!(out["spec"]["replicas"], 9);
    let now = f.objects.get(&info, Some("default"), "web").await.unwrap();
    assert_eq!(now["spec"]["replicas"], 3);
}

#[tokio::test]
async fn lists_paginate_at_one_revision_and_filter() {
    let f = Fixture::new().await;
    let info = f.info("configmaps");
    for i in 0..5 {
        let labels = if i % 2 == 0 {
            json!({"even": "yes"})
        } else {
            json!({})
        };
        f.create(
            "configmaps",
            Some("default"),
            json!({"metadata": {"name": format!("c{i}"), "labels": labels}}),
        )
        .await
        .unwrap();
    }
    let mut names = Vec::new();
    let mut token = None;
    let mut revisions = Vec::new();
    loop {
        let opts = ListOptions {
            limit: 2,
            continue_token: token.clone(),
            ..Default::default()
        };
        let page = f.objects.list(&info, Some("default"), &opts).await.unwrap();
        revisions.push(page.revision);
        names.extend(
            page.items
                .iter()
                .map(|o| o["metadata"]["name"].as_str().unwrap().to_string()),
        );
        // a write between pages must not show up in later pages
        if token.is_none() {
            f.create(
                "configmaps",
                Some("default"),
                json!({"metadata": {"name": "c9"}}),
            )
            .await
            .unwrap();
        }
        match page.continue_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(names, ["c0", "c1", "c2", "c3", "c4"]);
    assert!(revisions.windows(2).all(|w| w[0] == w[1]));

    let even = ListOptions {
        labels: LabelSelector::parse("even=yes").unwrap(),
        limit: 2,
        ..Default::default()
    };
    let page = f.objects.list(&info, Some("default"), &even).await.unwrap();
    assert_eq!(
        page.items.len(),
        2,
        "a filtered page is filled up to the limit"
    );
    let by_name = ListOptions {
        fields: FieldSelector::parse("metadata.name=c3", &*info.strategy).unwrap(),
        ..Default::default()
    };
    assert_eq!(
        f.objects
            .list(&info, None, &by_name)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        FieldSelector::parse("data.a=b", &*info.strategy)
            .unwrap_err()
            .message(),
        "field label not supported: data.a"
    );
    let bad = ListOptions {
        continue_token: Some("garbage".into()),
        ..Default::default()
    };
    assert_eq!(
        f.objects.list(&info, None, &bad).await.unwrap_err().code(),
        400
    );
    let future = ListOptions {
        resource_version: Some("999999".into()),
        ..Default::default()
    };
    assert_eq!(
        f.objects
            .list(&info, None, &future)
            .await
            .unwrap_err()
            .code(),
        504
    );
}

#[tokio::test]
async fn watch_delivers_selector_transitions_and_410_after_compaction() {
    let f = Fixture::new().await;
    let info = f.info("configmaps");
    let a = f
        .create(
            "configmaps",
            Some("default"),
            json!({"metadata": {"name": "a", "labels": {"app": "x"}}}),
        )
        .await
        .unwrap();
    let opts = WatchOptions {
        labels: LabelSelector::parse("app=x").unwrap(),
        resource_version: None,
        ..Default::default()
    };
    let mut w = f
        .objects
        .watch(info.clone(), Some("default"), opts)
        .await
        .unwrap();
    assert_eq!(
        next(&mut w).await,
        WatchEvent::Added(a.clone().into()),
        "replay of current state"
    );

    // leaves the selector: DELETED; comes back: ADDED; then MODIFIED; then a real delete
    let patch = |labels: Value| {
        let info = info.clone();
        let objects = f.objects.clone();
        async move {
            objects
                .patch(
                    &info,
                    Some("default"),
                    "a",
                    &WriteOptions::default(),
                    move |cur| {
                        let mut o = cur.clone();
                        o["metadata"]["labels"] = labels.clone();
                        Ok(o)
                    },
                )
                .await
                .unwrap()
                .object
        }
    };
    patch(json!({"app": "y"})).await;
    assert!(
        matches!(next(&mut w).await, WatchEvent::Deleted(o) if o["metadata"]["labels"]["app"] == "y")
    );
    patch(json!({"app": "x"})).await;
    assert!(matches!(next(&mut w).await, WatchEvent::Added(_)));
    let m = patch(json!({"app": "x", "more": "1"})).await;
    assert_eq!(next(&mut w).await, WatchEvent::Modified(m.into()));
    f.create(
        "configmaps",
        Some("default"),
        json!({"metadata": {"name": "unrelated"}}),
    )
    .await
    .unwrap();
    f.delete_now(&info, "a").await;
    match next(&mut w).await {
        WatchEvent::Deleted(o) => assert!(rv(&o) > rv(&a)),
        other => panic!("expected DELETED, got {other:?}"),
    }

    // watch from a compacted revision: an ERROR event with 410 Expired
    let store = f.objects.store().clone();
    let head = store.revision();
    tokio::task::spawn_blocking(move || store.compact(head))
        .await
        .unwrap()
        .unwrap();
    let old = WatchOptions {
        resource_version: Some(rv(&a).to_string()),
        ..Default::default()
    };
    let mut w = f
        .objects
        .watch(info.clone(), Some("default"), old)
        .await
        .unwrap();
    match next(&mut w).await {
        WatchEvent::Error(st) => {
            assert_eq!(st["code"], 410);
            assert_eq!(st["reason"], "Expired");
        }
        other => panic!("expected ERROR, got {other:?}"),
    }
    assert!(w.next().await.is_none(), "the stream ends after ERROR");
}

/// One change reaches every watcher as one decoded object whose JSON is serialized once: the watchers' `json()` is
/// the same buffer, and it says what the object says. Watchers with a selector the change fails get nothing.
#[tokio::test]
async fn watchers_of_one_change_share_its_decoded_object() {
    let f = Fixture::new().await;
    let info = f.info("configmaps");
    let watch = |labels: &str| {
        let opts = WatchOptions {
            labels: LabelSelector::parse(labels).unwrap(),
            resource_version: Some(f.objects.store().revision().to_string()),
            ..Default::default()
        };
        f.objects.watch(info.clone(), Some("default"), opts)
    };
    let mut all = watch("").await.unwrap();
    let mut also_all = watch("").await.unwrap();
    let mut matching = watch("app=x").await.unwrap();
    let mut other = watch("app=y").await.unwrap();
    let created = f
        .create(
            "configmaps",
            Some("default"),
            json!({"metadata": {"name": "shared", "labels": {"app": "x"}}, "data": {"k": "v"}}),
        )
        .await
        .unwrap();
    let objects = [
        next(&mut all).await,
        next(&mut also_all).await,
        next(&mut matching).await,
    ]
    .map(|ev| match ev {
        WatchEvent::Added(o) => o,
        other => panic!("expected ADDED, got {other:?}"),
    });
    for o in &objects {
        assert_eq!(**o, created);
        assert_eq!(serde_json::from_slice::<Value>(o.json()).unwrap(), created);
        assert!(std::ptr::eq(o.json(), objects[0].json()), "serialized once");
    }
    f.delete_now(&info, "shared").await;
    let (WatchEvent::Deleted(a), WatchEvent::Deleted(b)) =
        (next(&mut all).await, next(&mut matching).await)
    else {
        panic!("expected DELETED twice");
    };
    assert!(std::ptr::eq(a.json(), b.json()), "serialized once");
    assert!(
        rv(&a) > rv(&created),
        "stamped with the deletion's revision"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), other.next())
            .await
            .is_err(),
        "a watcher whose selector the object never matched gets nothing"
    );
}

#[tokio::test]
async fn deletes_honour_preconditions_finalizers_and_namespaces() {
    let f = Fixture::new().await;
    let info = f.info("configmaps");
    let c = f
        .create(
            "configmaps",
            Some("default"),
            json!({"metadata": {"name": "p", "finalizers": ["example.com/hold"]}}),
        )
        .await
        .unwrap();
    let wrong = DeleteOptions {
        uid: Some("other".into()),
        ..Default::default()
    };
    let e = f
        .objects
        .delete(&info, Some("default"), "p", &wrong)
        .await
        .unwrap_err();
    assert_eq!(e.code(), 409);
    assert!(
        e.message()
            .starts_with("Precondition failed: UID in precondition: other")
    );
    let pending = f
        .objects
        .delete(&info, Some("default"), "p", &DeleteOptions::default())
        .await
        .unwrap();
    let DeleteOutcome::Pending(obj) = pending else {
        panic!("finalizers must hold the object")
    };
    assert!(obj["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(obj["metadata"]["uid"], c["metadata"]["uid"]);
    // removing the last finalizer deletes the object
    f.objects
        .patch(
            &info,
            Some("default"),
            "p",
            &WriteOptions::default(),
            |cur| {
                let mut o = cur.clone();
                o["metadata"]["finalizers"] = json!([]);
                Ok(o)
            },
        )
        .await
        .unwrap();
    assert_eq!(
        f.objects
            .get(&info, Some("default"), "p")
            .await
            .unwrap_err()
            .code(),
        404
    );

    // namespace deletion removes its contents
    f.create("namespaces", None, json!({"metadata": {"name": "doomed"}}))
        .await
        .unwrap();
    f.create(
        "configmaps",
        Some("doomed"),
        json!({"metadata": {"name": "x"}}),
    )
    .await
    .unwrap();
    f.create(
        "secrets",
        Some("doomed"),
        json!({"metadata": {"name": "y"}}),
    )
    .await
    .unwrap();
    f.objects
        .delete(
            &f.info("namespaces"),
            None,
            "doomed",
            &DeleteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        f.objects
            .get(&f.info("namespaces"), None, "doomed")
            .await
            .unwrap_err()
            .code(),
        404
    );
    assert!(
        f.objects
            .list(&info, Some("doomed"), &ListOptions::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        f.create(
            "configmaps",
            Some("doomed"),
            json!({"metadata": {"name": "z"}})
        )
        .await
        .unwrap_err()
        .code(),
        404
    );
}

#[tokio::test]
async fn services_get_unique_cluster_ips_released_on_delete() {
    let f = Fixture::new().await;
    let svc = |name: &str, ip: Option<&str>| {
        let mut s = json!({"metadata": {"name": name}, "spec": {"ports": [{"port": 80}], "selector": {"app": "x"}}});
        if let Some(ip) = ip {
            s["spec"]["clusterIP"] = json!(ip);
        }
        s
    };
    let a = f
        .create("services", Some("default"), svc("a", None))
        .await
        .unwrap();
    let b = f
        .create("services", Some("default"), svc("b", None))
        .await
        .unwrap();
    let ip_a = a["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(ip_a.starts_with("10.43."), "{ip_a}");
    assert_ne!(ip_a, b["spec"]["clusterIP"].as_str().unwrap());
    assert_eq!(a["spec"]["clusterIPs"], json!([ip_a.clone()]));
    assert_eq!(a["spec"]["ports"][0]["targetPort"], 80, "defaulted");
    assert_eq!(a["spec"]["type"], "ClusterIP");

    let taken = f
        .create("services", Some("default"), svc("c", Some(&ip_a)))
        .await
        .unwrap_err();
    assert_eq!(taken.code(), 422);
    assert!(
        taken.message().contains("provided IP is already allocated"),
        "{}",
        taken.message()
    );
    let outside = f
        .create("services", Some("default"), svc("c", Some("192.168.1.1")))
        .await
        .unwrap_err();
    assert_eq!(outside.code(), 422);

    // clusterIP is immutable
    let mut moved = a.clone();
    moved["spec"]["clusterIP"] = json!("10.43.9.9");
    let info = f.info("services");
    assert_eq!(
        f.objects
            .update(&info, Some("default"), "a", moved, &WriteOptions::default())
            .await
            .unwrap_err()
            .code(),
        422
    );

    f.objects
        .delete(&info, Some("default"), "a", &DeleteOptions::default())
        .await
        .unwrap();
    let c = f
        .create("services", Some("default"), svc("c", Some(&ip_a)))
        .await
        .unwrap();
    assert_eq!(
        c["spec"]["clusterIP"],
        ip_a.as_str(),
        "a deleted Service's address is free again"
    );
    let headless = f
        .create("services", Some("default"), svc("h", Some("None")))
        .await
        .unwrap();
    assert_eq!(headless["spec"]["clusterIP"], "None");
}

/// A Service held by a finalizer keeps its address while it terminates and gives it up when
/// the update that removes its last finalizer deletes it.
#[tokio::test]
async fn a_service_released_by_its_last_finalizer_frees_its_address() {
    let f = Fixture::new().await;
    let info = f.info("services");
    let body = |name: &str| {
        json!({"metadata": {"name": name, "finalizers": ["example.com/hold"]},
               "spec": {"clusterIP": "10.43.7.7", "type": "NodePort",
                        "ports": [{"port": 80, "nodePort": 30707}]}})
    };
    let held = f
        .create("services", Some("default"), body("held"))
        .await
        .unwrap();
    let outcome = f
        .objects
        .delete(&info, Some("default"), "held", &DeleteOptions::default())
        .await
        .unwrap();
    assert!(
        matches!(outcome, DeleteOutcome::Pending(_)),
        "held by its finalizer"
    );
    let refused = f
        .create("services", Some("default"), body("next"))
        .await
        .unwrap_err();
    assert!(
        refused.message().contains("already allocated"),
        "{}",
        refused.message()
    );
    let mut released = f.objects.get(&info, Some("default"), "held").await.unwrap();
    released["metadata"]["finalizers"] = json!([]);
    f.objects
        .update(
            &info,
            Some("default"),
            "held",
            released,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        f.objects
            .get(&info, Some("default"), "held")
            .await
            .unwrap_err()
            .code(),
        404
    );
    let next = f
        .create("services", Some("default"), body("next"))
        .await
        .unwrap();
    assert_eq!(next["spec"]["clusterIP"], held["spec"]["clusterIP"]);
    assert_eq!(next["spec"]["ports"][0]["nodePort"], 30707);
}

/// A Service whose type changes gets or gives up node ports on update, and one moved to
/// another node port frees the old one; a refused update claims nothing.
#[tokio::test]
async fn node_ports_follow_updates_of_the_service_type_and_ports() {
    let f = Fixture::new().await;
    let info = f.info("services");
    let svc = |ty: &str, node_port: Option<i64>, rv: &Value| {
        let mut s = json!({"metadata": {"name": "web", "resourceVersion": rv},
            "spec": {"type": ty, "ports": [{"port": 80}], "selector": {"app": "x"}}});
        if let Some(p) = node_port {
            s["spec"]["ports"][0]["nodePort"] = json!(p);
        }
        s
    };
    let update = |obj: Value| {
        let objects = f.objects.clone();
        let info = info.clone();
        async move {
            objects
                .update(&info, Some("default"), "web", obj, &WriteOptions::default())
                .await
        }
    };
    let node_port = |o: &Value| o["spec"]["ports"][0]["nodePort"].as_i64();
    let plain = f
        .create(
            "services",
            Some("default"),
            svc("ClusterIP", None, &Value::Null),
        )
        .await
        .unwrap();
    assert_eq!(node_port(&plain), None);

    // ClusterIP -> NodePort: a port is allocated.
    let np = update(svc("NodePort", None, &plain["metadata"]["resourceVersion"]))
        .await
        .unwrap()
        .object;
    let first = node_port(&np).unwrap_or_else(|| panic!("no nodePort: {np}"));
    assert!((30000..=32767).contains(&first), "{np}");
    let squatter = |port: i64, name: &str| {
        json!({"metadata": {"name": name}, "spec": {"type": "NodePort",
            "ports": [{"port": 80, "nodePort": port}]}})
    };
    let held = f
        .create("services", Some("default"), squatter(first, "other"))
        .await
        .unwrap_err();
    assert_eq!(held.code(), 422, "{}", held.message());

    // Moved to a port someone holds: refused, and nothing changes.
    let second = if first == 32767 { 30000 } else { first + 1 };
    f.create("services", Some("default"), squatter(second, "taker"))
        .await
        .unwrap();
    let refused = update(svc(
        "NodePort",
        Some(second),
        &np["metadata"]["resourceVersion"],
    ))
    .await
    .unwrap_err();
    assert!(
        refused
            .message()
            .contains("provided port is already allocated"),
        "{}",
        refused.message()
    );
    f.objects
        .delete(
            &f.info("services"),
            Some("default"),
            "taker",
            &DeleteOptions::default(),
        )
        .await
        .unwrap();

    // Moved to a free port: the old one is free again.
    let moved = update(svc(
        "NodePort",
        Some(second),
        &np["metadata"]["resourceVersion"],
    ))
    .await
    .unwrap()
    .object;
    assert_eq!(node_port(&moved), Some(second), "{moved}");
    let reused = f
        .create("services", Some("default"), squatter(first, "reuse"))
        .await
        .unwrap();
    assert_eq!(node_port(&reused), Some(first));

    // NodePort -> ClusterIP: the port goes, and is free for others.
    let back = update(svc(
        "ClusterIP",
        None,
        &moved["metadata"]["resourceVersion"],
    ))
    .await
    .unwrap()
    .object;
    assert_eq!(node_port(&back), None, "{back}");
    let again = f
        .create("services", Some("default"), squatter(second, "again"))
        .await
        .unwrap();
    assert_eq!(node_port(&again), Some(second));
}

#[tokio::test]
async fn node_ports_are_allocated_unique_kept_on_update_and_released_on_delete() {
    let f = Fixture::new().await;
    let svc = |name: &str, node_port: Option<i64>| {
        let mut s = json!({"metadata": {"name": name}, "spec": {"type": "NodePort",
            "ports": [{"port": 80, "name": "http"}, {"port": 53, "protocol": "UDP", "name": "dns"}],
            "selector": {"app": "x"}}});
        if let Some(p) = node_port {
            s["spec"]["ports"][0]["nodePort"] = json!(p);
        }
        s
    };
    let a = f
        .create("services", Some("default"), svc("a", None))
        .await
        .unwrap();
    let a_ports: Vec<i64> = (0..2)
        .map(|i| a["spec"]["ports"][i]["nodePort"].as_i64().unwrap())
        .collect();
    for p in &a_ports {
        assert!((30000..=32767).contains(p), "{a}");
    }
    assert_ne!(a_ports[0], a_ports[1]);

    // A port someone holds, and one out of range: 422 with upstream's words, nothing claimed.
    let taken = f
        .create("services", Some("default"), svc("b", Some(a_ports[0])))
        .await
        .unwrap_err();
    assert_eq!(taken.code(), 422);
    assert!(
        taken.message().contains(&format!(
            "spec.ports[0].nodePort: Invalid value: {}: provided port is already allocated",
            a_ports[0]
        )),
        "{}",
        taken.message()
    );
    let outside = f
        .create("services", Some("default"), svc("b", Some(8080)))
        .await
        .unwrap_err();
    assert!(
        outside
            .message()
            .contains("The range of valid ports is 30000-32767"),
        "{}",
        outside.message()
    );
    let free = (30000..=32767).find(|p| !a_ports.contains(p)).unwrap();
    let b = f
        .create("services", Some("default"), svc("b", Some(free)))
        .await
        .unwrap();
    assert_eq!(b["spec"]["ports"][0]["nodePort"], free);

    // Re-applying the manifest without nodePort keeps the allocated ones.
    let info = f.info("services");
    let mut again = svc("a", None);
    again["metadata"]["resourceVersion"] = a["metadata"]["resourceVersion"].clone();
    let updated = f
        .objects
        .update(&info, Some("default"), "a", again, &WriteOptions::default())
        .await
        .unwrap()
        .object;
    assert_eq!(updated["spec"]["ports"][0]["nodePort"], a_ports[0]);
    assert_eq!(updated["spec"]["ports"][1]["nodePort"], a_ports[1]);

    // Deleting a Service frees its node ports.
    f.objects
        .delete(&info, Some("default"), "a", &DeleteOptions::default())
        .await
        .unwrap();
    let c = f
        .create("services", Some("default"), svc("c", Some(a_ports[0])))
        .await
        .unwrap();
    assert_eq!(c["spec"]["ports"][0]["nodePort"], a_ports[0]);
    // ClusterIP Services get none.
    let plain = f
        .create(
            "services",
            Some("default"),
            json!({"metadata": {"name": "plain"}, "spec": {"ports": [{"port": 80}]}}),
        )
        .await
        .unwrap();
    assert!(
        plain["spec"]["ports"][0].get("nodePort").is_none(),
        "{plain}"
    );
}

#[tokio::test]
async fn delete_collection_follows_selectors_and_scope() {
    let f = Fixture::new().await;
    f.create("namespaces", None, json!({"metadata": {"name": "other"}}))
        .await
        .unwrap();
    for (ns, name, app) in [
        ("default", "a", "x"),
        ("default", "b", "x"),
        ("default", "c", "y"),
        ("other", "d", "x"),
    ] {
        f.create(
            "configmaps",
            Some(ns),
            json!({"metadata": {"name": name, "labels": {"app": app}}}),
        )
        .await
        .unwrap();
    }
    f.create(
        "configmaps",
        Some("default"),
        json!({"metadata": {"name": "held", "labels": {"app": "x"}, "finalizers": ["example.com/keep"]}}),
    )
    .await
    .unwrap();
    let cms = f.info("configmaps");
    let names = |items: &[Value]| -> Vec<String> {
        let mut v: Vec<String> = items
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let by_label = |sel: &str| ListOptions {
        labels: LabelSelector::parse(sel).unwrap(),
        ..Default::default()
    };

    // Dry run: reported, nothing deleted.
    let dry = DeleteOptions {
        dry_run: true,
        ..Default::default()
    };
    let out = f
        .objects
        .delete_collection(&cms, Some("default"), &by_label("app=x"), &dry)
        .await
        .unwrap();
    assert_eq!(names(&out), ["a", "b", "held"]);
    let left = |ns: Option<&'static str>| {
        let f = &f;
        let cms = cms.clone();
        async move {
            f.objects
                .list(&cms, ns, &ListOptions::default())
                .await
                .unwrap()
                .items
        }
    };
    assert_eq!(left(Some("default")).await.len(), 4);

    // In one namespace, by label; the finalizer holds one object back.
    let out = f
        .objects
        .delete_collection(
            &cms,
            Some("default"),
            &by_label("app=x"),
            &DeleteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(names(&out), ["a", "b", "held"]);
    let rest = left(Some("default")).await;
    assert_eq!(names(&rest), ["c", "held"]);
    let held = rest
        .iter()
        .find(|o| o["metadata"]["name"] == "held")
        .unwrap();
    assert!(held["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(names(&left(Some("other")).await), ["d"]);

    // Across namespaces, by field.
    let by_name = ListOptions {
        fields: FieldSelector::parse("metadata.name=d", &*cms.strategy).unwrap(),
        ..Default::default()
    };
    let out = f
        .objects
        .delete_collection(&cms, None, &by_name, &DeleteOptions::default())
        .await
        .unwrap();
    assert_eq!(names(&out), ["d"]);
    assert!(left(Some("other")).await.is_empty());

    // Cluster-scoped.
    let nodes = f.info("nodes");
    for (n, role) in [("n1", "worker"), ("n2", "edge")] {
        f.create(
            "nodes",
            None,
            json!({"metadata": {"name": n, "labels": {"role": role}}}),
        )
        .await
        .unwrap();
    }
    let out = f
        .objects
        .delete_collection(
            &nodes,
            None,
            &by_label("role=worker"),
            &DeleteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(names(&out), ["n1"]);
    let rest = f
        .objects
        .list(&nodes, None, &ListOptions::default())
        .await
        .unwrap();
    assert_eq!(names(&rest.items), ["n2"]);

    // Preconditions make no sense on a collection.
    let pre = DeleteOptions {
        resource_version: Some("1".into()),
        ..Default::default()
    };
    let e = f
        .objects
        .delete_collection(&nodes, None, &ListOptions::default(), &pre)
        .await
        .unwrap_err();
    assert_eq!(e.code(), 400);
    assert_eq!(
        names(
            &f.objects
                .list(&nodes, None, &ListOptions::default())
                .await
                .unwrap()
                .items
        ),
        ["n2"]
    );
}

/// Bodies are defaulted on update as on create: a pod manifest sent again unchanged is the
/// same pod (`kubectl replace`), and the defaults upstream applies to fields users leave out
/// are there (a fieldRef's `apiVersion`, a volume without a source, file modes).
#[tokio::test]
async fn updates_are_defaulted_as_creates_are() {
    let f = Fixture::new().await;
    let manifest = json!({"metadata": {"name": "p"}, "spec": {
    "containers": [{"name": "c", "image": "busybox:1.35",
        "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "resources": {"limits": {"cpu": "1"}}}],
    "volumes": [
        {"name": "scratch"},
        {"name": "settings", "configMap": {"name": "settings"}},
        {"name": "info", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
        {"name": "token", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token"}}]}},
    ]}});
    let created = f
        .create("pods", Some("default"), manifest.clone())
        .await
        .unwrap();
    let spec = &created["spec"];
    assert_eq!(
        spec["containers"][0]["env"][0]["valueFrom"]["fieldRef"]["apiVersion"],
        "v1"
    );
    assert_eq!(spec["volumes"][0]["emptyDir"], json!({}), "{spec}");
    assert_eq!(spec["volumes"][1]["configMap"]["defaultMode"], 420);
    assert_eq!(
        spec["volumes"][2]["downwardAPI"]["items"][0]["fieldRef"]["apiVersion"],
        "v1"
    );
    assert_eq!(
        spec["volumes"][3]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
        3600
    );

    let mut again = manifest;
    again["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"].clone();
    let replaced = f
        .objects
        .update(
            &f.info("pods"),
            Some("default"),
            "p",
            again,
            &WriteOptions::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("the unchanged manifest was refused: {}", e.message()))
        .object;
    assert_eq!(replaced["spec"], created["spec"]);
}

/// A Secret's `stringData` is written into `data` (overriding the same key), never kept.
#[tokio::test]
async fn secret_string_data_is_merged_into_data() {
    let f = Fixture::new().await;
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let created = f
        .create(
            "secrets",
            Some("default"),
            json!({"metadata": {"name": "s"}, "data": {"user": b64("old"), "keep": b64("k")},
                "stringData": {"user": "admin", "password": "pässword"}}),
        )
        .await
        .unwrap();
    assert_eq!(
        created["data"],
        json!({"user": b64("admin"), "keep": b64("k"), "password": b64("pässword")})
    );
    assert!(created.get("stringData").is_none(), "{created}");
    let info = f.info("secrets");
    let stored = f.objects.get(&info, Some("default"), "s").await.unwrap();
    assert!(stored.get("stringData").is_none(), "{stored}");

    let mut update = created.clone();
    update["stringData"] = json!({"keep": "changed"});
    let updated = f
        .objects
        .update(
            &info,
            Some("default"),
            "s",
            update,
            &WriteOptions::default(),
        )
        .await
        .unwrap()
        .object;
    assert_eq!(updated["data"]["keep"], b64("changed"));
    assert_eq!(updated["data"]["user"], b64("admin"));
    assert!(updated.get("stringData").is_none(), "{updated}");
}

/// Writers keep each object's response bytes for LISTs (so the first LIST after a write
/// encodes nothing): they must be the bytes a read of the stored value makes.
#[tokio::test]
async fn lists_after_writes_serve_the_bytes_a_read_makes() {
    let f = Fixture::new().await;
    let info = f.info("deployments");
    for name in ["a", "b", "c"] {
        f.create("deployments", Some("default"), deployment(name, "nginx:1"))
            .await
            .unwrap();
    }
    let mut b = f.objects.get(&info, Some("default"), "b").await.unwrap();
    b["metadata"]["labels"] = json!({"tier": "web", "a-first": "1"});
    b["spec"]["replicas"] = json!(4);
    f.objects
        .update(&info, Some("default"), "b", b, &WriteOptions::default())
        .await
        .unwrap();
    let page = f
        .objects
        .list_encoded(&info, Some("default"), &ListOptions::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 3);
    for (item, name) in page.items.iter().zip(["a", "b", "c"]) {
        let read = f.objects.get(&info, Some("default"), name).await.unwrap();
        let mut bytes = Vec::new();
        item.write_to(&mut bytes);
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            serde_json::to_string(&read).unwrap(),
            "{name}"
        );
    }
}
