//! The kinds beyond the core set, through the generic registry over a real
//! store: upstream defaults, 422 Invalid with per-field causes, immutable
//! fields on update, and table columns.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::sync::Arc;

use enclave::registry::generic::WriteOptions;
use enclave::registry::{ObjectStore, ResourceInfo, ResourceTable, kinds, table};
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
            StoreOptions::new(dir.path().join("index"), *b"registry-kinds-1"),
            &StaticKeys::single([7; 32]),
            Box::new(journal),
        )
        .unwrap();
        let objects = ObjectStore::new(store, ResourceTable::new(kinds::builtin()));
        let f = Fixture { _dir: dir, objects };
        f.create("", "namespaces", json!({"metadata": {"name": "default"}}))
            .await
            .unwrap();
        f
    }

    fn info(&self, group: &str, resource: &str) -> Arc<ResourceInfo> {
        self.objects
            .table()
            .lookup(group, "v1", resource)
            .unwrap_or_else(|| panic!("{group}/{resource} is not served"))
    }

    fn ns(&self, info: &ResourceInfo) -> Option<&'static str> {
        info.namespaced().then_some("default")
    }

    async fn create(&self, group: &str, r: &str, body: Value) -> enclave::registry::Result<Value> {
        let info = self.info(group, r);
        Ok(self
            .objects
            .create(&info, self.ns(&info), body, &WriteOptions::default())
            .await?
            .object)
    }

    async fn update(
        &self,
        group: &str,
        r: &str,
        name: &str,
        body: Value,
    ) -> enclave::registry::Result<Value> {
        let info = self.info(group, r);
        Ok(self
            .objects
            .update(&info, self.ns(&info), name, body, &WriteOptions::default())
            .await?
            .object)
    }
}

/// The (field, reason, message) of every cause of a 422.
fn causes(e: &enclave::registry::Error) -> Vec<(String, String, String)> {
    assert_eq!((e.code(), e.reason()), (422, "Invalid"), "{e:?}");
    e.to_status()["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["field"].as_str().unwrap().to_string(),
                c["reason"].as_str().unwrap().to_string(),
                c["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn template(labels: Value, restart: &str) -> Value {
    json!({"metadata": {"labels": labels},
           "spec": {"restartPolicy": restart, "containers": [{"name": "c", "image": "nginx:1.27"}]}})
}

#[tokio::test]
async fn workloads_get_upstream_defaults() {
    let f = Fixture::new().await;
    let sts = f
        .create(
            "apps",
            "statefulsets",
            json!({"metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "serviceName": "web",
                     "template": template(json!({"app": "web"}), "Always")},
            "status": {"replicas": 5}}),
        )
        .await
        .unwrap();
    assert_eq!(sts["spec"]["replicas"], 1);
    assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"],
        0
    );
    assert_eq!(sts["metadata"]["generation"], 1);
    assert!(sts.get("status").is_none(), "status is cleared on create");

    let job = f
        .create(
            "batch",
            "jobs",
            json!({"metadata": {"name": "pi"},
            "spec": {"template": template(json!({}), "Never")}}),
        )
        .await
        .unwrap();
    let uid = job["metadata"]["uid"].as_str().unwrap();
    assert_eq!(
        job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        uid
    );
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"]["job-name"],
        "pi"
    );
    assert_eq!(
        (
            &job["spec"]["completions"],
            &job["spec"]["parallelism"],
            &job["spec"]["backoffLimit"]
        ),
        (&json!(1), &json!(1), &json!(6))
    );

    let cj = f
        .create(
            "batch",
            "cronjobs",
            json!({"metadata": {"name": "tick"},
            "spec": {"schedule": "*/5 * * * *",
                     "jobTemplate": {"spec": {"template": template(json!({}), "OnFailure")}}}}),
        )
        .await
        .unwrap();
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
    assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3);

    let pc = f
        .create(
            "scheduling.k8s.io",
            "priorityclasses",
            json!({"metadata": {"name": "high"}, "value": 1000}),
        )
        .await
        .unwrap();
    assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority");

    let ds = f
        .create(
            "apps",
            "daemonsets",
            json!({"metadata": {"name": "agent"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": template(json!({"app": "agent"}), "Always")}}),
        )
        .await
        .unwrap();
    assert_eq!(
        ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
        1
    );
}

#[tokio::test]
async fn invalid_objects_are_422_with_causes() {
    let f = Fixture::new().await;
    let e = f
        .create(
            "apps",
            "replicasets",
            json!({"metadata": {"name": "rs"},
            "spec": {"selector": {"matchLabels": {"app": "a"}},
                     "template": template(json!({"app": "b"}), "Always")}}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        causes(&e),
        vec![(
            "spec.template.metadata.labels".to_string(),
            "FieldValueInvalid".to_string(),
            "Invalid value: \"{\\\"app\\\":\\\"b\\\"}\": `selector` does not match template `labels`".to_string()
        )]
    );
    assert!(
        e.message().starts_with(
            "ReplicaSet \"rs\" is invalid: spec.template.metadata.labels: Invalid value"
        ),
        "{}",
        e.message()
    );

    let e = f
        .create(
            "apps",
            "replicasets",
            json!({"metadata": {"name": "rs"},
            "spec": {"replicas": -1, "template": template(json!({"app": "b"}), "Always")}}),
        )
        .await
        .unwrap_err();
    let fields: Vec<String> = causes(&e).into_iter().map(|c| c.0).collect();
    assert_eq!(fields, vec!["spec.replicas", "spec.selector"]);

    let e = f
        .create(
            "batch",
            "jobs",
            json!({"metadata": {"name": "j"},
            "spec": {"template": template(json!({}), "Always")}}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        causes(&e),
        vec![(
            "spec.template.spec.restartPolicy".to_string(),
            "FieldValueNotSupported".to_string(),
            "Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"".to_string()
        )]
    );

    let e = f
        .create(
            "batch",
            "jobs",
            json!({"metadata": {"name": "j"},
            "spec": {"selector": {"matchLabels": {"app": "j"}},
                     "template": template(json!({"app": "j"}), "Never")}}),
        )
        .await
        .unwrap_err();
    assert_eq!(causes(&e)[0].0, "spec.selector");
    assert!(causes(&e)[0].2.contains("`selector` not auto-generated"));

    let e = f
        .create(
            "batch",
            "cronjobs",
            json!({"metadata": {"name": "c"},
            "spec": {"schedule": "every minute",
                     "jobTemplate": {"spec": {"template": template(json!({}), "Never")}}}}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        causes(&e),
        vec![(
            "spec.schedule".to_string(),
            "FieldValueInvalid".to_string(),
            "Invalid value: \"every minute\": expected exactly 5 fields, found 2: [every minute]"
                .to_string()
        )]
    );

    let e = f
        .create(
            "networking.k8s.io",
            "ingresses",
            json!({"metadata": {"name": "i"},
            "spec": {"rules": [{"http": {"paths": [{"path": "/",
                "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        causes(&e),
        vec![(
            "spec.rules[0].http.paths[0].pathType".to_string(),
            "FieldValueRequired".to_string(),
            "Required value: pathType must be specified".to_string()
        )]
    );

    let e = f
        .create(
            "policy",
            "poddisruptionbudgets",
            json!({"metadata": {"name": "p"},
            "spec": {"minAvailable": 1, "maxUnavailable": "150%"}}),
        )
        .await
        .unwrap_err();
    let fields: Vec<String> = causes(&e).into_iter().map(|c| c.0).collect();
    assert_eq!(fields, vec!["spec", "spec.maxUnavailable"]);

    let e = f
        .create(
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            json!({"metadata": {"name": "b"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "sa"}]}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        causes(&e),
        vec![
            (
                "roleRef.kind".to_string(),
                "FieldValueNotSupported".to_string(),
                "Unsupported value: \"Role\": supported values: \"ClusterRole\"".to_string()
            ),
            (
                "subjects[0].namespace".to_string(),
                "FieldValueRequired".to_string(),
                "Required value".to_string()
            ),
        ]
    );

    let e = f
        .create(
            "rbac.authorization.k8s.io",
            "roles",
            json!({"metadata": {"name": "r"},
            "rules": [{"resources": ["pods"]}]}),
        )
        .await
        .unwrap_err();
    let fields: Vec<String> = causes(&e).into_iter().map(|c| c.0).collect();
    assert_eq!(fields, vec!["rules[0].verbs", "rules[0].apiGroups"]);

    let e = f
        .create(
            "scheduling.k8s.io",
            "priorityclasses",
            json!({"metadata": {"name": "system-x"}, "value": 2_000_000_000}),
        )
        .await
        .unwrap_err();
    let fields: Vec<String> = causes(&e).into_iter().map(|c| c.0).collect();
    assert_eq!(fields, vec!["metadata.name", "value"]);

    // Nothing was written by any of these.
    let info = f.info("apps", "replicasets");
    let list = f
        .objects
        .list(&info, Some("default"), &Default::default())
        .await
        .unwrap();
    assert!(list.items.is_empty());
}

#[tokio::test]
async fn immutable_fields_are_422_on_update() {
    let f = Fixture::new().await;
    let rb = json!({"metadata": {"name": "rb"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r1"},
        "subjects": [{"kind": "User", "name": "alice"}]});
    f.create("rbac.authorization.k8s.io", "rolebindings", rb.clone())
        .await
        .unwrap();
    let mut changed = rb.clone();
    changed["roleRef"]["name"] = json!("r2");
    let e = f
        .update("rbac.authorization.k8s.io", "rolebindings", "rb", changed)
        .await
        .unwrap_err();
    assert_eq!(causes(&e)[0].0, "roleRef");
    assert!(causes(&e)[0].2.ends_with("cannot change roleRef"));

    f.create(
        "scheduling.k8s.io",
        "priorityclasses",
        json!({"metadata": {"name": "low"}, "value": 10}),
    )
    .await
    .unwrap();
    let e = f
        .update(
            "scheduling.k8s.io",
            "priorityclasses",
            "low",
            json!({"metadata": {"name": "low"}, "value": 11}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        causes(&e),
        vec![(
            "value".to_string(),
            "FieldValueForbidden".to_string(),
            "Forbidden: may not be changed in an update.".to_string()
        )]
    );

    let sts = json!({"metadata": {"name": "db"},
        "spec": {"selector": {"matchLabels": {"app": "db"}}, "serviceName": "db",
                 "template": template(json!({"app": "db"}), "Always")}});
    f.create("apps", "statefulsets", sts.clone()).await.unwrap();
    let mut scaled = sts.clone();
    scaled["spec"]["replicas"] = json!(3);
    let ok = f
        .update("apps", "statefulsets", "db", scaled.clone())
        .await
        .unwrap();
    assert_eq!(
        (&ok["spec"]["replicas"], &ok["metadata"]["generation"]),
        (&json!(3), &json!(2))
    );
    scaled["spec"]["serviceName"] = json!("other");
    let e = f
        .update("apps", "statefulsets", "db", scaled)
        .await
        .unwrap_err();
    assert_eq!(causes(&e)[0].0, "spec");
    assert!(
        causes(&e)[0]
            .2
            .starts_with("Forbidden: updates to statefulset spec")
    );
}

#[tokio::test]
async fn tables_use_upstream_columns() {
    let f = Fixture::new().await;
    let names = |group: &str, r: &str| -> Vec<(String, u8)> {
        f.info(group, r)
            .strategy
            .columns()
            .iter()
            .map(|c| (c.name.to_string(), c.priority))
            .collect()
    };
    let header = |group: &str, r: &str| -> Vec<String> {
        names(group, r)
            .into_iter()
            .filter(|(_, p)| *p == 0)
            .map(|(n, _)| n)
            .collect()
    };
    assert_eq!(
        header("batch", "jobs"),
        ["Name", "Status", "Completions", "Duration", "Age"]
    );
    assert_eq!(
        header("batch", "cronjobs"),
        [
            "Name",
            "Schedule",
            "Timezone",
            "Suspend",
            "Active",
            "Last Schedule",
            "Age"
        ]
    );
    assert_eq!(header("apps", "statefulsets"), ["Name", "Ready", "Age"]);
    assert_eq!(
        header("networking.k8s.io", "ingresses"),
        ["Name", "Class", "Hosts", "Address", "Ports", "Age"]
    );
    assert_eq!(
        header("networking.k8s.io", "networkpolicies"),
        ["Name", "Pod-Selector", "Age"]
    );
    assert_eq!(
        header("rbac.authorization.k8s.io", "clusterroles"),
        ["Name", "Created At"]
    );
    assert_eq!(
        header("rbac.authorization.k8s.io", "rolebindings"),
        ["Name", "Role", "Age"]
    );
    assert_eq!(
        header("policy", "poddisruptionbudgets"),
        [
            "Name",
            "Min Available",
            "Max Unavailable",
            "Allowed Disruptions",
            "Age"
        ]
    );
    assert_eq!(
        header("", "resourcequotas"),
        ["Name", "Request", "Limit", "Age"]
    );

    let info = f.info("rbac.authorization.k8s.io", "clusterrolebindings");
    let crb = f
        .create("rbac.authorization.k8s.io", "clusterrolebindings", json!({"metadata": {"name": "view"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"},
                         {"kind": "ServiceAccount", "name": "sa", "namespace": "ns1"}]}))
        .await
        .unwrap();
    let t = table::table(&info, &[crb], json!({}), table::IncludeObject::None, true);
    let cells = &t["rows"][0]["cells"];
    assert_eq!(cells[1], "ClusterRole/view");
    assert_eq!(
        (&cells[3], &cells[4], &cells[5]),
        (&json!("alice"), &json!("devs"), &json!("ns1/sa"))
    );

    let info = f.info("", "endpoints");
    let ep = f
        .create("", "endpoints", json!({"metadata": {"name": "web"}, "subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "10.0.0.3"}, {"ip": "10.0.0.4"}],
             "ports": [{"port": 80}]}]}))
        .await
        .unwrap();
    let t = table::table(&info, &[ep], json!({}), table::IncludeObject::None, true);
    assert_eq!(
        t["rows"][0]["cells"][1],
        "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 1 more..."
    );

    let info = f.info("discovery.k8s.io", "endpointslices");
    let slice = f
        .create(
            "discovery.k8s.io",
            "endpointslices",
            json!({"metadata": {"name": "web-abc"},
            "addressType": "IPv4", "ports": [{"port": 80}, {"name": "https"}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]}),
        )
        .await
        .unwrap();
    let t = table::table(&info, &[slice], json!({}), table::IncludeObject::None, true);
    let cells = &t["rows"][0]["cells"];
    assert_eq!(
        (&cells[1], &cells[2], &cells[3]),
        (
            &json!("IPv4"),
            &json!("80,https"),
            &json!("10.0.0.1,10.0.0.2")
        )
    );
    let e = f
        .create(
            "discovery.k8s.io",
            "endpointslices",
            json!({"metadata": {"name": "bad"}}),
        )
        .await
        .unwrap_err();
    assert_eq!(causes(&e)[0].0, "addressType");
}

#[test]
fn discovery_names_match_upstream() {
    let t = ResourceTable::new(kinds::builtin());
    let check = |group: &str, r: &str, namespaced: bool, short: &[&str], all: bool| {
        let info = t.lookup(group, "v1", r).unwrap();
        assert_eq!(info.namespaced(), namespaced, "{r}");
        assert_eq!(info.short_names, short, "{r}");
        assert_eq!(info.categories.iter().any(|c| c == "all"), all, "{r}");
        assert_eq!(info.singular, info.kind.to_lowercase(), "{r}");
    };
    check("", "endpoints", true, &["ep"], false);
    check("", "resourcequotas", true, &["quota"], false);
    check("", "limitranges", true, &["limits"], false);
    check("apps", "replicasets", true, &["rs"], true);
    check("apps", "daemonsets", true, &["ds"], true);
    check("apps", "statefulsets", true, &["sts"], true);
    check("batch", "jobs", true, &[], true);
    check("batch", "cronjobs", true, &["cj"], true);
    check("events.k8s.io", "events", true, &["ev"], false);
    check("discovery.k8s.io", "endpointslices", true, &[], false);
    check("rbac.authorization.k8s.io", "roles", true, &[], false);
    check(
        "rbac.authorization.k8s.io",
        "clusterroles",
        false,
        &[],
        false,
    );
    check(
        "rbac.authorization.k8s.io",
        "rolebindings",
        true,
        &[],
        false,
    );
    check(
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        false,
        &[],
        false,
    );
    check("networking.k8s.io", "ingresses", true, &["ing"], false);
    check(
        "networking.k8s.io",
        "networkpolicies",
        true,
        &["netpol"],
        false,
    );
    check("policy", "poddisruptionbudgets", true, &["pdb"], false);
    check(
        "scheduling.k8s.io",
        "priorityclasses",
        false,
        &["pc"],
        false,
    );
    check("", "persistentvolumeclaims", true, &["pvc"], false);
    check("", "persistentvolumes", false, &["pv"], false);
    check("", "podtemplates", true, &[], false);
    check("", "replicationcontrollers", true, &["rc"], true);
    check("storage.k8s.io", "storageclasses", false, &["sc"], false);
    check("storage.k8s.io", "csistoragecapacities", true, &[], false);
    check("networking.k8s.io", "ingressclasses", false, &[], false);
    check("node.k8s.io", "runtimeclasses", false, &[], false);
}

#[tokio::test]
async fn quota_status_is_split_and_v1_events_are_their_own_resource() {
    use enclave::registry::generic::Endpoint;
    let f = Fixture::new().await;
    let q = f
        .create(
            "",
            "resourcequotas",
            json!({"metadata": {"name": "q"},
            "spec": {"hard": {"pods": "3"}}, "status": {"hard": {"pods": "99"}}}),
        )
        .await
        .unwrap();
    assert!(q.get("status").is_none(), "status is cleared on create");
    let info = f.info("", "resourcequotas");
    let status = json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "100"}},
        "status": {"hard": {"pods": "3"}, "used": {"pods": "1"}}});
    let w = f
        .objects
        .update_at(
            Endpoint::Status,
            &info,
            Some("default"),
            "q",
            status,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        w.object["spec"]["hard"]["pods"], "3",
        "spec kept by /status"
    );
    assert_eq!(w.object["status"]["used"]["pods"], "1");
    let t = table::table(
        &info,
        &[w.object],
        json!({}),
        table::IncludeObject::None,
        true,
    );
    assert_eq!(t["rows"][0]["cells"][1], "pods: 1/3");
    let q = f
        .update(
            "",
            "resourcequotas",
            "q",
            json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "4"}}}),
        )
        .await
        .unwrap();
    assert_eq!(
        q["status"]["used"]["pods"], "1",
        "status kept by the main endpoint"
    );

    let info = f
        .objects
        .table()
        .lookup("events.k8s.io", "v1", "events")
        .unwrap();
    let e = f
        .objects
        .create(
            &info,
            Some("default"),
            json!({"metadata": {"name": "e1"}, "type": "Normal"}),
            &WriteOptions::default(),
        )
        .await
        .unwrap_err();
    let fields: Vec<String> = causes(&e).into_iter().map(|c| c.0).collect();
    assert_eq!(
        fields,
        [
            "eventTime",
            "reportingController",
            "reportingInstance",
            "action",
            "reason"
        ]
    );
    let ev = json!({"metadata": {"name": "e1"}, "eventTime": "2026-11-21T10:00:00.000000Z",
        "reportingController": "ctl", "reportingInstance": "ctl-1", "action": "Test",
        "reason": "Tested", "type": "Normal", "note": "hello", "regarding": {"kind": "Pod", "name": "p1"}});
    let created = f
        .objects
        .create(&info, Some("default"), ev, &WriteOptions::default())
        .await
        .unwrap()
        .object;
    let t = table::table(
        &info,
        &[created],
        json!({}),
        table::IncludeObject::None,
        true,
    );
    let cells = &t["rows"][0]["cells"];
    assert_eq!(
        (&cells[2], &cells[3], &cells[5], &cells[6]),
        (
            &json!("Tested"),
            &json!("pod/p1"),
            &json!("ctl, ctl-1"),
            &json!("hello")
        )
    );
    let core = f.info("", "events");
    let listed = f
        .objects
        .list(&core, Some("default"), &Default::default())
        .await
        .unwrap();
    assert!(
        listed.items.is_empty(),
        "events.k8s.io events are stored apart from core events"
    );
}

/// The column headers (priority 0) of `info`.
fn header(info: &ResourceInfo) -> Vec<String> {
    info.strategy
        .columns()
        .iter()
        .filter(|c| c.priority == 0)
        .map(|c| c.name.to_string())
        .collect()
}

/// The cells of one object's table row.
fn cells(info: &ResourceInfo, obj: &Value) -> Vec<Value> {
    let t = table::table(
        info,
        std::slice::from_ref(obj),
        json!({}),
        table::IncludeObject::None,
        true,
    );
    t["rows"][0]["cells"].as_array().unwrap().clone()
}

#[tokio::test]
async fn claims_and_volumes_get_upstream_defaults_checks_and_columns() {
    let f = Fixture::new().await;
    let pvc = json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}}, "storageClassName": "fast"}});
    let created = f
        .create("", "persistentvolumeclaims", pvc.clone())
        .await
        .unwrap();
    assert_eq!(created["spec"]["volumeMode"], "Filesystem");
    assert_eq!(created["status"], json!({"phase": "Pending"}));
    let info = f.info("", "persistentvolumeclaims");
    assert_eq!(
        header(&info),
        [
            "Name",
            "Status",
            "Volume",
            "Capacity",
            "Access Modes",
            "StorageClass",
            "VolumeAttributesClass",
            "Age"
        ]
    );
    assert_eq!(
        cells(&info, &created)[..7],
        [
            json!("data"),
            json!("Pending"),
            json!(""),
            json!(""),
            json!(""),
            json!("fast"),
            json!("<unset>")
        ]
    );
    let e = f
        .create(
            "",
            "persistentvolumeclaims",
            json!({"metadata": {"name": "bad"}, "spec": {}}),
        )
        .await
        .unwrap_err();
    let fields: Vec<String> = causes(&e).into_iter().map(|c| c.0).collect();
    assert_eq!(fields, ["spec.accessModes", "spec.resources[storage]"]);
    // Expansion is allowed; another class is not.
    let mut bigger = created.clone();
    bigger["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
    let bigger = f
        .update("", "persistentvolumeclaims", "data", bigger)
        .await
        .unwrap();
    assert_eq!(bigger["spec"]["resources"]["requests"]["storage"], "2Gi");
    let mut other = bigger;
    other["spec"]["storageClassName"] = json!("slow");
    let e = f
        .update("", "persistentvolumeclaims", "data", other)
        .await
        .unwrap_err();
    let c = causes(&e);
    assert_eq!(
        (c[0].0.as_str(), c[0].1.as_str()),
        ("spec", "FieldValueForbidden")
    );
    assert!(
        c[0].2
            .contains("spec is immutable after creation except resources.requests"),
        "{c:?}"
    );

    let pv = json!({"metadata": {"name": "pv1"}, "spec": {"capacity": {"storage": "5Gi"},
        "accessModes": ["ReadWriteMany", "ReadWriteOnce"], "hostPath": {"path": "/srv"},
        "claimRef": {"namespace": "default", "name": "data"}}});
    let created = f.create("", "persistentvolumes", pv).await.unwrap();
    assert_eq!(created["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert_eq!(created["status"]["phase"], "Pending");
    let info = f.info("", "persistentvolumes");
    assert_eq!(
        cells(&info, &created)[..9],
        [
            json!("pv1"),
            json!("5Gi"),
            json!("RWO,RWX"),
            json!("Retain"),
            json!("Pending"),
            json!("default/data"),
            json!(""),
            json!("<unset>"),
            json!("")
        ]
    );
    let e = f
        .create(
            "",
            "persistentvolumes",
            json!({"metadata": {"name": "none"}, "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}}),
        )
        .await
        .unwrap_err();
    assert_eq!(
        causes(&e)[0].2,
        "Required value: must specify a volume type"
    );
}

#[tokio::test]
async fn classes_and_autoscalers_get_upstream_defaults_checks_and_columns() {
    let f = Fixture::new().await;
    let sc = json!({"metadata": {"name": "local", "annotations": {
        "storageclass.kubernetes.io/is-default-class": "true"}}, "provisioner": "rancher.io/local-path"});
    let created = f
        .create("storage.k8s.io", "storageclasses", sc)
        .await
        .unwrap();
    assert_eq!(
        (
            created["reclaimPolicy"].as_str(),
            created["volumeBindingMode"].as_str()
        ),
        (Some("Delete"), Some("Immediate"))
    );
    let info = f.info("storage.k8s.io", "storageclasses");
    assert_eq!(
        cells(&info, &created)[..5],
        [
            json!("local (default)"),
            json!("rancher.io/local-path"),
            json!("Delete"),
            json!("Immediate"),
            json!(false)
        ]
    );
    let mut moved = created.clone();
    moved["provisioner"] = json!("other.io/x");
    let e = f
        .update("storage.k8s.io", "storageclasses", "local", moved)
        .await
        .unwrap_err();
    assert_eq!(
        causes(&e)[0].2,
        "Forbidden: updates to provisioner are forbidden."
    );

    let hpas = f
        .objects
        .table()
        .lookup("autoscaling", "v2", "horizontalpodautoscalers")
        .expect("autoscaling/v2 is served");
    let hpa = json!({"metadata": {"name": "web"}, "spec": {"maxReplicas": 5,
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}});
    let created = f
        .objects
        .create(
            &hpas,
            Some("default"),
            hpa.clone(),
            &WriteOptions::default(),
        )
        .await
        .unwrap()
        .object;
    assert_eq!(created["spec"]["minReplicas"], 1);
    assert_eq!(
        created["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        80
    );
    assert_eq!(
        header(&hpas),
        [
            "Name",
            "Reference",
            "Targets",
            "MinPods",
            "MaxPods",
            "Replicas",
            "Age"
        ]
    );
    assert_eq!(
        cells(&hpas, &created)[..6],
        [
            json!("web"),
            json!("Deployment/web"),
            json!("cpu: <unknown>/80%"),
            json!("1"),
            json!(5),
            json!(0)
        ]
    );
    let mut bad = hpa;
    bad["metadata"]["name"] = json!("bad");
    bad["spec"]["minReplicas"] = json!(6);
    let e = f
        .objects
        .create(&hpas, Some("default"), bad, &WriteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        causes(&e)[0].2,
        "Invalid value: 5: must be greater than or equal to `minReplicas`"
    );

    let class = json!({"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx",
        "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "p"}}});
    let created = f
        .create("networking.k8s.io", "ingressclasses", class)
        .await
        .unwrap();
    let info = f.info("networking.k8s.io", "ingressclasses");
    assert_eq!(
        cells(&info, &created)[..3],
        [
            json!("nginx"),
            json!("k8s.io/ingress-nginx"),
            json!("IngressParameters.k8s.example.com/p")
        ]
    );
    let e = f
        .create(
            "node.k8s.io",
            "runtimeclasses",
            json!({"metadata": {"name": "gvisor"}}),
        )
        .await
        .unwrap_err();
    assert_eq!(causes(&e)[0].0, "handler");
    f.create(
        "node.k8s.io",
        "runtimeclasses",
        json!({"metadata": {"name": "gvisor"}, "handler": "runsc"}),
    )
    .await
    .unwrap();
    let driver = f
        .create(
            "storage.k8s.io",
            "csidrivers",
            json!({"metadata": {"name": "csi.example.com"}, "spec": {}}),
        )
        .await
        .unwrap();
    assert_eq!(driver["spec"]["attachRequired"], true);
    assert_eq!(
        driver["spec"]["volumeLifecycleModes"],
        json!(["Persistent"])
    );
}
