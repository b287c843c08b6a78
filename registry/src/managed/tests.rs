//! Unit tests of field sets, their encoding, ownership bookkeeping, and
//! apply's merge and prune.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use super::*;

const ANCIENT: &str = entries::ANCIENT_CHANGES;

const AV: &str = "apps/v1";
const MAIN: Scope = Scope::Main {
    status_subresource: true,
    schema: None,
};

fn writer(m: &str) -> Writer {
    Writer {
        manager: m.into(),
        subresource: None,
    }
}

fn deployment(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["example.com/f"]},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "c", "image": image,
                    "ports": [{"containerPort": 80}],
                    "args": ["a", "b"],
                }]},
            },
        },
    })
}

fn entries(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn entry<'a>(entries: &'a [Value], manager: &str) -> &'a Value {
    entries
        .iter()
        .find(|e| e["manager"] == manager)
        .unwrap_or_else(|| panic!("no entry of {manager} in {entries:?}"))
}

#[test]
fn applied_fields_use_upstream_encoding() {
    let set = applied_fields(&deployment(3, "nginx"), MAIN);
    let v1 = set.to_fields_v1();
    assert_eq!(
        v1,
        json!({
            "f:metadata": {
                "f:finalizers": {"v:\"example.com/f\"": {}},
                "f:labels": {"f:app": {}},
            },
            "f:spec": {
                "f:replicas": {},
                // atomic: owned as a whole
                "f:selector": {},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {
                        "k:{\"name\":\"c\"}": {
                            ".": {},
                            "f:args": {},
                            "f:image": {},
                            "f:name": {},
                            "f:ports": {
                                "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                                    ".": {}, "f:containerPort": {},
                                },
                            },
                        },
                    }},
                },
            },
        })
    );
    // Decoding gives the same set back; apiVersion, kind and name are never owned.
    assert_eq!(FieldSet::from_fields_v1(&v1).unwrap(), set);
    let paths: Vec<String> = set.paths().iter().map(|p| path_string(p)).collect();
    assert!(paths.contains(&".spec.replicas".to_string()), "{paths:?}");
    assert!(paths.contains(&".metadata.finalizers[=\"example.com/f\"]".to_string()));
    assert!(paths.contains(&".spec.template.spec.containers[name=\"c\"].image".to_string()));
    assert!(
        !paths
            .iter()
            .any(|p| p == ".apiVersion" || p == ".metadata.name")
    );
    assert!(FieldSet::from_fields_v1(&json!({"x:nope": {}})).is_err());
    assert!(FieldSet::from_fields_v1(&json!({"f:a": 1})).is_err());
}

#[test]
fn updates_own_what_they_change_and_take_it_from_others() {
    let mut obj = deployment(3, "nginx");
    let empty = json!({});
    record_update(
        &empty,
        &mut obj,
        &writer("creator"),
        AV,
        MAIN,
        "2026-01-01T00:00:00Z",
    );
    let es = entries(&obj);
    let creator = entry(&es, "creator");
    assert_eq!(creator["operation"], "Update");
    assert_eq!(creator["apiVersion"], "apps/v1");
    assert_eq!(creator["fieldsType"], "FieldsV1");
    assert_eq!(creator["time"], "2026-01-01T00:00:00Z");
    // A map that was added is owned itself ("."), the top-level spec is not.
    assert_eq!(
        creator["fieldsV1"]["f:metadata"]["f:labels"],
        json!({".": {}, "f:app": {}})
    );
    assert!(creator["fieldsV1"]["f:spec"].get(".").is_none());
    assert!(creator["fieldsV1"]["f:spec"]["f:replicas"].is_object());

    // Another manager changes replicas: it owns it now, the creator no longer.
    let mut scaled = obj.clone();
    scaled["spec"]["replicas"] = json!(5);
    record_update(
        &obj,
        &mut scaled,
        &writer("scaler"),
        AV,
        MAIN,
        "2026-01-01T00:01:00Z",
    );
    let es = entries(&scaled);
    assert_eq!(
        entry(&es, "scaler")["fieldsV1"],
        json!({"f:spec": {"f:replicas": {}}})
    );
    assert!(
        entry(&es, "creator")["fieldsV1"]["f:spec"]
            .get("f:replicas")
            .is_none()
    );
    assert_eq!(entry(&es, "creator")["time"], "2026-01-01T00:00:00Z");

    // A write that changes nothing records nothing.
    let mut same = scaled.clone();
    record_update(
        &scaled,
        &mut same,
        &writer("noop"),
        AV,
        MAIN,
        "2026-01-01T00:02:00Z",
    );
    assert_eq!(same, scaled);

    // Removing a field takes it from its owner; an emptied entry is dropped.
    let mut unscaled = scaled.clone();
    unscaled["spec"].as_object_mut().unwrap().remove("replicas");
    record_update(&scaled, &mut unscaled, &writer("remover"), AV, MAIN, "t");
    let es = entries(&unscaled);
    assert!(
        es.iter()
            .all(|e| e["manager"] != "scaler" && e["manager"] != "remover")
    );
}

#[test]
fn client_managed_fields_are_used_reset_or_ignored() {
    let mut obj = deployment(3, "nginx");
    record_update(&json!({}), &mut obj, &writer("creator"), AV, MAIN, "t0");
    // `[{}]` resets them.
    let mut reset = obj.clone();
    reset["metadata"]["managedFields"] = json!([{}]);
    record_update(&obj, &mut reset, &writer("kubectl-edit"), AV, MAIN, "t1");
    assert!(reset["metadata"].get("managedFields").is_none(), "{reset}");
    // Undecodable entries are ignored: the stored ones stay.
    let mut bad = obj.clone();
    bad["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Bogus"}]);
    record_update(&obj, &mut bad, &writer("kubectl-edit"), AV, MAIN, "t1");
    assert_eq!(
        bad["metadata"]["managedFields"],
        obj["metadata"]["managedFields"]
    );
    // Dropping them loses nothing either.
    let mut dropped = obj.clone();
    dropped["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    record_update(&obj, &mut dropped, &writer("kubectl-edit"), AV, MAIN, "t1");
    assert_eq!(dropped, obj);
    // Status writes own only status, and say so.
    let status_writer = Writer {
        manager: "ctrl".into(),
        subresource: Some("status".into()),
    };
    let mut st = obj.clone();
    st["status"] = json!({"replicas": 3});
    record_update(
        &obj,
        &mut st,
        &status_writer,
        AV,
        Scope::Status { schema: None },
        "t2",
    );
    let es = entries(&st);
    let ctrl = entry(&es, "ctrl");
    assert_eq!(ctrl["subresource"], "status");
    assert_eq!(ctrl["fieldsV1"], json!({"f:status": {"f:replicas": {}}}));
}

#[test]
fn merge_by_key_set_and_map() {
    let live = json!({
        "metadata": {"labels": {"a": "1"}, "finalizers": ["x"]},
        "spec": {"containers": [
            {"name": "a", "image": "i1", "imagePullPolicy": "Always"},
            {"name": "b", "image": "i2"},
        ], "selector": {"matchLabels": {"old": "1"}}},
    });
    let config = json!({
        "metadata": {"labels": {"b": "2"}, "finalizers": ["y", "x"]},
        "spec": {"containers": [
            {"name": "c", "image": "i3"},
            {"name": "a", "image": "i9"},
        ], "selector": {"matchLabels": {"new": "1"}}},
    });
    let merged = merge(&live, &config, Node::root(None));
    assert_eq!(merged["metadata"]["labels"], json!({"a": "1", "b": "2"}));
    assert_eq!(merged["metadata"]["finalizers"], json!(["x", "y"]));
    assert_eq!(
        merged["spec"]["containers"],
        json!([
            {"name": "a", "image": "i9", "imagePullPolicy": "Always"},
            {"name": "b", "image": "i2"},
            {"name": "c", "image": "i3"},
        ])
    );
    // Atomic: replaced, not merged.
    assert_eq!(
        merged["spec"]["selector"],
        json!({"matchLabels": {"new": "1"}})
    );
}

#[test]
fn apply_removes_what_the_applier_dropped_unless_others_own_it() {
    let first = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cm", "labels": {"a": "1", "shared": "s"}, "finalizers": ["f1", "f2"]},
        "data": {"k1": "v", "k2": "v"},
    });
    let ar = writer("applier");
    let scope = Scope::Main {
        status_subresource: false,
        schema: None,
    };
    let av = "v1";
    // First apply creates.
    let mut obj = apply_merge(&json!({}), &first, &ar, av, scope);
    let set = applied_fields(&first, scope);
    record_apply(
        &json!({}),
        &mut obj,
        Applied {
            fields: &set,
            force: false,
        },
        &ar,
        av,
        scope,
        "t0",
    )
    .unwrap();
    // Someone else also sets label `shared` (same value: co-owned) and adds `other`.
    let mut edited = obj.clone();
    edited["metadata"]["labels"]["other"] = json!("o");
    let mut with_other = edited.clone();
    record_update(&obj, &mut with_other, &writer("editor"), av, scope, "t1");
    // An explicit co-owner of `shared`: it applies the same value.
    let co = writer("co");
    let co_cfg = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "labels": {"shared": "s"}}});
    let mut co_obj = apply_merge(&with_other, &co_cfg, &co, av, scope);
    let co_set = applied_fields(&co_cfg, scope);
    record_apply(
        &with_other,
        &mut co_obj,
        Applied {
            fields: &co_set,
            force: false,
        },
        &co,
        av,
        scope,
        "t2",
    )
    .unwrap();
    assert_eq!(co_obj["metadata"]["labels"]["shared"], "s");

    // The applier now drops label a and shared, finalizer f2 and key k2.
    let second = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cm", "finalizers": ["f1"]},
        "data": {"k1": "v"},
    });
    let mut out = apply_merge(&co_obj, &second, &ar, av, scope);
    assert_eq!(
        out["metadata"]["labels"],
        json!({"shared": "s", "other": "o"})
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["f1"]));
    assert_eq!(out["data"], json!({"k1": "v"}));
    let set2 = applied_fields(&second, scope);
    record_apply(
        &co_obj,
        &mut out,
        Applied {
            fields: &set2,
            force: false,
        },
        &ar,
        av,
        scope,
        "t3",
    )
    .unwrap();
    let es = entries(&out);
    assert_eq!(
        entry(&es, "applier")["fieldsV1"],
        json!({"f:data": {"f:k1": {}}, "f:metadata": {"f:finalizers": {"v:\"f1\"": {}}}})
    );
    assert_eq!(entry(&es, "applier")["operation"], "Apply");
    // Appliers sort first.
    assert_eq!(es[0]["operation"], "Apply");
}

#[test]
fn apply_conflicts_and_force() {
    let cfg = deployment(3, "nginx");
    let ar = writer("kubectl");
    let mut obj = apply_merge(&json!({}), &cfg, &ar, AV, MAIN);
    let set = applied_fields(&cfg, MAIN);
    record_apply(
        &json!({}),
        &mut obj,
        Applied {
            fields: &set,
            force: false,
        },
        &ar,
        AV,
        MAIN,
        "t0",
    )
    .unwrap();
    // The same apply again changes nothing, not even the entry's time.
    let mut again = apply_merge(&obj, &cfg, &ar, AV, MAIN);
    record_apply(
        &obj,
        &mut again,
        Applied {
            fields: &set,
            force: false,
        },
        &ar,
        AV,
        MAIN,
        "t9",
    )
    .unwrap();
    assert_eq!(again, obj);

    // A scaler takes .spec.replicas.
    let scaler = Writer {
        manager: "kubectl".into(),
        subresource: Some("scale".into()),
    };
    let mut scaled = obj.clone();
    scaled["spec"]["replicas"] = json!(5);
    record_update(&obj, &mut scaled, &scaler, AV, MAIN, "t1");

    // Applying the same value as live is no conflict; a different one is.
    let mut same = apply_merge(&scaled, &deployment(5, "nginx"), &ar, AV, MAIN);
    let same_set = applied_fields(&deployment(5, "nginx"), MAIN);
    record_apply(
        &scaled,
        &mut same,
        Applied {
            fields: &same_set,
            force: false,
        },
        &ar,
        AV,
        MAIN,
        "t2",
    )
    .unwrap();

    let cfg2 = deployment(2, "nginx:2");
    let set2 = applied_fields(&cfg2, MAIN);
    let mut out = apply_merge(&scaled, &cfg2, &ar, AV, MAIN);
    let conflicts = record_apply(
        &scaled,
        &mut out,
        Applied {
            fields: &set2,
            force: false,
        },
        &ar,
        AV,
        MAIN,
        "t2",
    )
    .unwrap_err();
    assert_eq!(
        conflicts,
        vec![Conflict {
            manager: "\"kubectl\" with subresource \"scale\" using apps/v1".into(),
            field: ".spec.replicas".into(),
        }]
    );
    let e = conflict_error(conflicts);
    assert_eq!(e.code(), 409);
    let st = e.to_status();
    assert_eq!(st["reason"], "Conflict");
    assert_eq!(
        st["message"],
        "Apply failed with 1 conflict: conflict with \"kubectl\" with subresource \"scale\" using apps/v1: .spec.replicas"
    );
    assert_eq!(
        st["details"]["causes"][0],
        json!({"reason": "FieldManagerConflict", "message": "conflict with \"kubectl\" with subresource \"scale\" using apps/v1", "field": ".spec.replicas"})
    );

    // Forced: the applier takes it, the scaler's entry (now empty) goes away.
    let mut forced = apply_merge(&scaled, &cfg2, &ar, AV, MAIN);
    record_apply(
        &scaled,
        &mut forced,
        Applied {
            fields: &set2,
            force: true,
        },
        &ar,
        AV,
        MAIN,
        "t3",
    )
    .unwrap();
    assert_eq!(forced["spec"]["replicas"], 2);
    let es = entries(&forced);
    assert_eq!(es.len(), 1, "{es:?}");
    assert_eq!(es[0]["time"], "t3");
}

#[test]
fn several_conflicts_are_listed_by_manager() {
    let e = conflict_error(vec![
        Conflict {
            manager: "\"a\" using v1".into(),
            field: ".x".into(),
        },
        Conflict {
            manager: "\"a\" using v1".into(),
            field: ".y".into(),
        },
        Conflict {
            manager: "\"b\"".into(),
            field: ".z".into(),
        },
    ]);
    assert_eq!(
        e.message(),
        "Apply failed with 3 conflicts: conflicts with \"a\" using v1:\n- .x\n- .y\nconflicts with \"b\":\n- .z"
    );
}

#[test]
fn first_apply_on_an_unmanaged_object_does_not_take_everything() {
    let live = deployment(3, "nginx");
    let cfg = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 4}});
    let ar = writer("kubectl");
    let set = applied_fields(&cfg, MAIN);
    let mut out = apply_merge(&live, &cfg, &ar, AV, MAIN);
    let conflicts = record_apply(
        &live,
        &mut out,
        Applied {
            fields: &set,
            force: false,
        },
        &ar,
        AV,
        MAIN,
        "t",
    )
    .unwrap_err();
    assert_eq!(conflicts[0].manager, "\"before-first-apply\" using apps/v1");
    assert_eq!(
        manager_name(None, "kubectl/v1.33.0 (linux/amd64)"),
        "kubectl"
    );
    assert_eq!(manager_name(Some("mine"), "kubectl/v1.33.0"), "mine");
}

#[test]
fn more_than_ten_updaters_merge_the_oldest_into_ancient_changes() {
    let scope = Scope::Main {
        status_subresource: false,
        schema: None,
    };
    let mut obj =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}});
    let update = |obj: &Value, i: usize| {
        let mut next = obj.clone();
        next["data"][format!("k{i:02}")] = json!("v");
        let now = format!("2026-01-01T00:00:{i:02}Z");
        record_update(
            obj,
            &mut next,
            &writer(&format!("m{i:02}")),
            "v1",
            scope,
            &now,
        );
        next
    };
    for i in 0..10 {
        obj = update(&obj, i);
    }
    assert_eq!(entries(&obj).len(), 10);
    assert!(entries(&obj).iter().all(|e| e["manager"] != ANCIENT));

    obj = update(&obj, 10);
    let list = entries(&obj);
    assert_eq!(list.len(), 10, "{list:?}");
    let bucket = entry(&list, ANCIENT);
    assert_eq!(bucket["operation"], "Update");
    assert_eq!(bucket["apiVersion"], "v1");
    assert_eq!(bucket["time"], "2026-01-01T00:00:01Z", "the newer time");
    assert_eq!(
        bucket["fieldsV1"],
        json!({"f:data": {"f:k00": {}, "f:k01": {}}})
    );
    assert!(
        list.iter()
            .all(|e| e["manager"] != "m00" && e["manager"] != "m01")
    );

    obj = update(&obj, 11);
    let list = entries(&obj);
    assert_eq!(list.len(), 10, "{list:?}");
    let bucket = entry(&list, ANCIENT);
    assert_eq!(bucket["time"], "2026-01-01T00:00:02Z");
    assert_eq!(
        bucket["fieldsV1"],
        json!({"f:data": {"f:k00": {}, "f:k01": {}, "f:k02": {}}})
    );
    assert_eq!(
        list.iter().filter(|e| e["manager"] == ANCIENT).count(),
        1,
        "one bucket per apiVersion"
    );
    assert_eq!(entry(&list, "m11")["time"], "2026-01-01T00:00:11Z");
}

#[test]
fn kubectl_may_take_fields_its_last_applied_annotation_still_describes() {
    let scope = Scope::Main {
        status_subresource: false,
        schema: None,
    };
    let last = r#"{"apiVersion":"v1","data":{"a":"1","b":"2"},"kind":"ConfigMap","metadata":{"name":"c"}}"#;
    let live = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "annotations": {LAST_APPLIED: last}},
        "data": {"a": "1", "b": "changed", "c": "3"}});
    let allowed = last_applied_fields(&live, "v1", scope);
    let a: Path = vec![
        PathElement::Field("data".into()),
        PathElement::Field("a".into()),
    ];
    let b: Path = vec![
        PathElement::Field("data".into()),
        PathElement::Field("b".into()),
    ];
    assert!(allowed.has(&a), "{:?}", allowed.to_fields_v1());
    assert!(!allowed.has(&b), "b no longer has the applied value");
    let conflict = |field: &str| Conflict {
        manager: "\"kubectl-client-side-apply\" using v1".into(),
        field: field.into(),
    };
    assert_eq!(
        conflicts_outside(vec![conflict(".data.a"), conflict(".data.b")], &allowed),
        vec![conflict(".data.b")]
    );
    assert!(
        last_applied_fields(&live, "v2", scope).is_empty(),
        "another version"
    );
    let mut other = live.clone();
    other["metadata"]["annotations"][LAST_APPLIED] = json!("not json");
    assert!(last_applied_fields(&other, "v1", scope).is_empty());
}

#[test]
fn kubectl_applies_rewrite_an_existing_last_applied_annotation() {
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "annotations": {"note": "a<b&c", LAST_APPLIED: "stale"}},
        "data": {"z": "1", "a": "2"}});
    let old = json!({"metadata": {"name": "c", "annotations": {LAST_APPLIED: "{}"}}});
    let mut new = json!({"metadata": {"name": "c", "annotations": {LAST_APPLIED: "{}"}}});
    sync_last_applied(&old, &mut new, &config);
    assert_eq!(
        new["metadata"]["annotations"][LAST_APPLIED],
        "{\"apiVersion\":\"v1\",\"data\":{\"a\":\"2\",\"z\":\"1\"},\"kind\":\"ConfigMap\",\"metadata\":{\"annotations\":{\"note\":\"a\\u003cb\\u0026c\"},\"name\":\"c\"}}\n"
    );
    let old = json!({"metadata": {"name": "c"}});
    let mut new = old.clone();
    sync_last_applied(&old, &mut new, &config);
    assert_eq!(new, old, "no annotation to keep in step");
}

#[test]
fn custom_resources_merge_lists_as_their_schema_declares() {
    let schema = json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "ports": {"type": "array", "x-kubernetes-list-type": "map",
                      "x-kubernetes-list-map-keys": ["name", "protocol"],
                      "items": {"type": "object", "properties": {
                          "name": {"type": "string"},
                          "protocol": {"type": "string", "default": "TCP"},
                          "port": {"type": "integer"}}}},
            "tags": {"type": "array", "x-kubernetes-list-type": "set",
                     "items": {"type": "string"}},
            // Keyed by `name` in built-in kinds; atomic here (no list type).
            "containers": {"type": "array", "items": {"type": "object"}},
            "selector": {"type": "object", "x-kubernetes-map-type": "atomic"},
        }},
    }});
    let root = Node::root(Some(&schema));
    let live = json!({
        "metadata": {"finalizers": ["x"]},
        "spec": {
            "ports": [{"name": "http", "port": 80}, {"name": "dns", "protocol": "UDP", "port": 53}],
            "tags": ["a"],
            "containers": [{"name": "a", "image": "i1"}],
            "selector": {"old": "1"},
        },
    });
    let config = json!({
        "metadata": {"finalizers": ["y"]},
        "spec": {
            "ports": [{"name": "http", "protocol": "TCP", "port": 8080}, {"name": "dns", "protocol": "TCP", "port": 5353}],
            "tags": ["b", "a"],
            "containers": [{"name": "a", "image": "i2"}],
            "selector": {"new": "1"},
        },
    });
    let merged = merge(&live, &config, root);
    // `http` matches by its defaulted protocol; `dns`/TCP is a new item.
    assert_eq!(
        merged["spec"]["ports"],
        json!([
            {"name": "http", "protocol": "TCP", "port": 8080},
            {"name": "dns", "protocol": "UDP", "port": 53},
            {"name": "dns", "protocol": "TCP", "port": 5353},
        ])
    );
    assert_eq!(merged["spec"]["tags"], json!(["a", "b"]));
    assert_eq!(
        merged["spec"]["containers"],
        json!([{"name": "a", "image": "i2"}])
    );
    assert_eq!(merged["spec"]["selector"], json!({"new": "1"}));
    // Metadata is ObjectMeta: finalizers stay a set.
    assert_eq!(merged["metadata"]["finalizers"], json!(["x", "y"]));

    let fields = fields_of(&config, root).to_fields_v1();
    assert_eq!(
        fields["f:spec"]["f:ports"],
        json!({
            r#"k:{"name":"dns","protocol":"TCP"}"#: {".": {}, "f:name": {}, "f:port": {}, "f:protocol": {}},
            r#"k:{"name":"http","protocol":"TCP"}"#: {".": {}, "f:name": {}, "f:port": {}, "f:protocol": {}},
        })
    );
    assert_eq!(
        fields["f:spec"]["f:tags"],
        json!({r#"v:"a""#: {}, r#"v:"b""#: {}})
    );
    assert_eq!(fields["f:spec"]["f:containers"], json!({}));
    assert_eq!(fields["f:spec"]["f:selector"], json!({}));
    // The same object as a built-in kind keys containers by name.
    let builtin = fields_of(&config, Node::root(None)).to_fields_v1();
    assert!(
        builtin["f:spec"]["f:containers"]
            .get(r#"k:{"name":"a"}"#)
            .is_some()
    );
}

#[test]
fn comparing_in_place_skips_exactly_what_ownable_strips() {
    // The in-place comparison must report what comparing the stripped copies did, for every
    // scope: server metadata, apiVersion and kind never owned, status by its scope.
    let mut old = deployment(1, "nginx:1");
    old["metadata"]["uid"] = json!("u-1");
    old["metadata"]["resourceVersion"] = json!("7");
    old["status"] = json!({"replicas": 1, "conditions": [{"type": "Available", "status": "True"}]});
    let mut new = deployment(3, "nginx:2");
    new["metadata"]["uid"] = json!("u-2");
    new["metadata"]["generation"] = json!(2);
    new["metadata"]["annotations"] = json!({"a": "b"});
    new["kind"] = json!("Changed");
    new["status"] =
        json!({"replicas": 3, "conditions": [{"type": "Progressing", "status": "True"}]});
    let empty = json!({});
    let scopes = [
        MAIN,
        Scope::Main {
            status_subresource: false,
            schema: None,
        },
        Scope::Status { schema: None },
    ];
    for scope in scopes {
        for (a, b) in [(&old, &new), (&new, &old), (&empty, &new), (&old, &empty)] {
            let copied = Comparison::of(&ownable(a, scope), &ownable(b, scope), scope.root());
            let in_place =
                Comparison::of_except(a, b, scope.root(), &|path| never_owned(path, scope));
            assert_eq!(in_place, copied, "{scope:?}");
        }
    }
    let c = compare(&empty, &new, MAIN).changed();
    let owned = path_string_all(&c);
    assert!(owned.iter().any(|p| p.contains("annotations")), "{owned:?}");
    for never in ["uid", "generation", "kind", "status"] {
        assert!(
            !owned.iter().any(|p| p.contains(never)),
            "{never}: {owned:?}"
        );
    }
}

fn path_string_all(set: &FieldSet) -> Vec<String> {
    set.paths().iter().map(|p| path_string(p)).collect()
}
