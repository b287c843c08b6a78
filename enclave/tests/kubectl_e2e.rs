//! End to end: the real `daas-enclave --dev` binary driven by every
//! installed kubectl 1.27 … 1.33, each in its own namespace, in parallel.
//! Asserts exit codes and output of the commands users type.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use common::{Enclave, Kubectl, kubectl_versions};

const APPLY_V1: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: applied
  labels:
    app: demo
data:
  k: v1
  keep: same
";

const APPLY_V2: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: applied
  labels:
    app: demo
data:
  k: v2
  keep: same
";

/// A representative set of the kinds beyond the core ones; `{v}` is the
/// kubectl version label, so cluster-scoped names do not collide.
fn more_kinds(v: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: web}}
spec:
  serviceName: web
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {{containers: [{{name: c, image: nginx:1.27}}]}}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {{name: front}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: front}}}}
  template:
    metadata: {{labels: {{app: front}}}}
    spec: {{containers: [{{name: c, image: nginx:1.27}}]}}
---
apiVersion: batch/v1
kind: Job
metadata: {{name: pi, labels: {{tier: batch}}}}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{{name: pi, image: perl:5.34}}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {{name: tick, labels: {{tier: batch}}}}
spec:
  schedule: '*/5 * * * *'
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{{name: c, image: busybox:1.36}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: ing1}}
spec:
  ingressClassName: nginx
  rules:
  - host: a.example.com
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {{name: pdb1}}
spec:
  minAvailable: 1
  selector: {{matchLabels: {{app: web}}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: data}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: local-{v}
  resources: {{requests: {{storage: 1Gi}}}}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {{name: local-{v}, labels: {{e2e: storage-{v}}}}}
provisioner: rancher.io/local-path
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: web}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: StatefulSet, name: web}}
  minReplicas: 1
  maxReplicas: 4
  metrics:
  - {{type: Resource, resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 60}}}}}}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {{name: nginx-{v}, labels: {{e2e: ingress-{v}}}}}
spec: {{controller: k8s.io/ingress-nginx}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: reader-{v}, labels: {{e2e: rbac-{v}}}}}
rules:
- {{apiGroups: [''], resources: [pods], verbs: [get, list]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: reader-{v}, labels: {{e2e: rbac-{v}}}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader-{v}}}
subjects:
- {{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}}
"
    )
}

/// apply/get/describe/scale/delete of the kinds beyond the core set, and
/// the auth commands, in namespace `n`.
fn scenario_more_kinds(k: &Kubectl<'_>, n: &str) {
    let v = k.version.clone();
    let yaml = more_kinds(&v);
    let out = k.ok_stdin(&["-n", n, "apply", "-f", "-"], Some(&yaml));
    for want in [
        "statefulset.apps/web created",
        "replicaset.apps/front created",
        "job.batch/pi created",
        "cronjob.batch/tick created",
        "ingress.networking.k8s.io/ing1 created",
        "poddisruptionbudget.policy/pdb1 created",
        "persistentvolumeclaim/data created",
        &format!("storageclass.storage.k8s.io/local-{v} created"),
        "horizontalpodautoscaler.autoscaling/web created",
        &format!("ingressclass.networking.k8s.io/nginx-{v} created"),
        &format!("clusterrole.rbac.authorization.k8s.io/reader-{v} created"),
        &format!("clusterrolebinding.rbac.authorization.k8s.io/reader-{v} created"),
    ] {
        has(&out, want, &format!("{v} apply"));
    }
    let out = k.ok_stdin(&["-n", n, "apply", "-f", "-"], Some(&yaml));
    has(&out, "statefulset.apps/web unchanged", &v);
    has(&out, "job.batch/pi unchanged", &v);

    let out = k.ok(&["-n", n, "get", "sts,rs,job,cj,ing,pdb"]);
    for want in [
        "statefulset.apps/web",
        "0/1",
        "DESIRED",
        "COMPLETIONS",
        "SCHEDULE",
        "*/5 * * * *",
        "CLASS",
        "a.example.com",
        "MIN AVAILABLE",
    ] {
        has(&out, want, &format!("{v} get"));
    }
    // Storage, autoscaling and ingress classes, with upstream's columns.
    let out = k.ok(&["-n", n, "get", "pvc,hpa"]);
    for want in [
        "persistentvolumeclaim/data",
        "Pending",
        &format!("local-{v}"),
        "VOLUMEATTRIBUTESCLASS",
        "horizontalpodautoscaler.autoscaling/web",
        "StatefulSet/web",
        "cpu: <unknown>/60%",
        "MINPODS",
    ] {
        has(&out, want, &format!("{v} get pvc,hpa"));
    }
    let out = k.ok(&["get", "sc", &format!("local-{v}")]);
    has(&out, "WaitForFirstConsumer", &v);
    has(&out, "ALLOWVOLUMEEXPANSION", &v);
    has(
        &k.ok(&["get", "ingressclass", &format!("nginx-{v}")]),
        "k8s.io/ingress-nginx",
        &v,
    );
    has(
        &k.ok(&["-n", n, "describe", "pvc", "data"]),
        "StorageClass:",
        &v,
    );
    has(
        &k.ok(&["-n", n, "describe", "hpa", "web"]),
        "Reference:",
        &v,
    );
    has(
        &k.ok(&["explain", "pvc.spec.accessModes"]),
        "accessModes contains the desired access modes",
        &v,
    );
    has(
        &k.ok(&["get", "clusterrole", &format!("reader-{v}")]),
        "CREATED AT",
        &v,
    );
    let out = k.ok(&[
        "get",
        "clusterrolebinding",
        &format!("reader-{v}"),
        "-o",
        "wide",
    ]);
    has(&out, &format!("ClusterRole/reader-{v}"), &v);
    has(&out, "alice", &v);
    let job: serde_json::Value =
        serde_json::from_str(&k.ok(&["-n", n, "get", "job", "pi", "-o", "json"])).unwrap();
    assert_eq!(
        job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        job["metadata"]["uid"],
        "{v}: generated job selector"
    );

    for (what, name) in [
        ("sts", "web"),
        ("job", "pi"),
        ("cronjob", "tick"),
        ("ingress", "ing1"),
        ("pdb", "pdb1"),
    ] {
        has(&k.ok(&["-n", n, "describe", what, name]), name, &v);
    }
    has(
        &k.ok(&["describe", "clusterrole", &format!("reader-{v}")]),
        "PolicyRule",
        &v,
    );

    has(
        &k.ok(&["-n", n, "scale", "sts", "web", "--replicas=3"]),
        "statefulset.apps/web scaled",
        &v,
    );
    has(
        &k.ok(&["-n", n, "scale", "rs", "front", "--replicas=0"]),
        "replicaset.apps/front scaled",
        &v,
    );
    assert_eq!(
        k.ok(&[
            "-n",
            n,
            "get",
            "sts,rs",
            "-o",
            "jsonpath={.items[*].spec.replicas}"
        ]),
        "3 0",
        "{v}"
    );

    let bad = k.run_stdin(
        &["-n", n, "apply", "-f", "-"],
        Some(
            "apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: bad}
spec:
  selector: {matchLabels: {app: one}}
  template:
    metadata: {labels: {app: two}}
    spec: {containers: [{name: c, image: nginx}]}
",
        ),
    );
    assert_eq!(bad.status.code(), Some(1), "{v}: invalid replicaset");
    has(
        &String::from_utf8_lossy(&bad.stderr),
        "spec.template.metadata.labels: Invalid value",
        &v,
    );

    let out = k.ok(&["-n", n, "delete", "job,cronjob", "-l", "tier=batch"]);
    has(&out, "job.batch \"pi\" deleted", &v);
    has(&out, "cronjob.batch \"tick\" deleted", &v);
    let out = k.ok(&[
        "delete",
        "clusterrole,clusterrolebinding",
        "-l",
        &format!("e2e=rbac-{v}"),
    ]);
    has(
        &out,
        &format!("clusterrole.rbac.authorization.k8s.io \"reader-{v}\" deleted"),
        &v,
    );
    has(
        &out,
        &format!("clusterrolebinding.rbac.authorization.k8s.io \"reader-{v}\" deleted"),
        &v,
    );
    let out = k.ok(&[
        "delete",
        "sc,ingressclass",
        "-l",
        &format!("e2e in (storage-{v},ingress-{v})"),
    ]);
    has(
        &out,
        &format!("storageclass.storage.k8s.io \"local-{v}\" deleted"),
        &v,
    );
    let out = k.ok(&["-n", n, "delete", "pvc/data", "hpa/web"]);
    has(&out, "persistentvolumeclaim \"data\" deleted", &v);
    has(
        &out,
        "horizontalpodautoscaler.autoscaling \"web\" deleted",
        &v,
    );
    let out = k.ok(&[
        "-n", n, "delete", "sts/web", "rs/front", "ing/ing1", "pdb/pdb1",
    ]);
    has(&out, "statefulset.apps \"web\" deleted", &v);
    has(&out, "poddisruptionbudget.policy \"pdb1\" deleted", &v);
    assert_eq!(
        k.ok(&["-n", n, "get", "sts,rs,job,cj,ing,pdb", "-o", "name"]),
        "",
        "{v}: everything deleted"
    );

    // Typed-client creates: protobuf bodies from kubectl 1.32 on, JSON before.
    let pc = format!("pc-{}", v.replace('.', "-"));
    for (args, want) in [
        (
            vec!["create", "role", "r1", "--verb=get", "--resource=pods"],
            "role.rbac.authorization.k8s.io/r1 created",
        ),
        (
            vec!["create", "rolebinding", "rb1", "--role=r1", "--user=bob"],
            "rolebinding.rbac.authorization.k8s.io/rb1 created",
        ),
        (
            // Enforced (ResourceQuota admission): high enough for the scenarios' pods.
            vec!["create", "quota", "q1", "--hard=pods=500"],
            "resourcequota/q1 created",
        ),
        (
            vec![
                "create",
                "pdb",
                "p2",
                "--selector=app=x",
                "--min-available=50%",
            ],
            "poddisruptionbudget.policy/p2 created",
        ),
        (
            vec!["create", "ingress", "i2", "--rule=foo.com/bar=svc:80"],
            "ingress.networking.k8s.io/i2 created",
        ),
        (
            vec!["create", "priorityclass", pc.as_str(), "--value=100"],
            "created",
        ),
        (
            vec![
                "create",
                "job",
                "j3",
                "--image=busybox:1.36",
                "--",
                "echo",
                "hi",
            ],
            "job.batch/j3 created",
        ),
        (
            vec![
                "create",
                "cronjob",
                "c3",
                "--image=busybox:1.36",
                "--schedule=*/1 * * * *",
            ],
            "cronjob.batch/c3 created",
        ),
        (
            vec![
                "create",
                "deployment",
                "d3",
                "--image=nginx:1.27",
                "--replicas=2",
            ],
            "deployment.apps/d3 created",
        ),
        (
            vec!["create", "service", "clusterip", "s3", "--tcp=80:8080"],
            "service/s3 created",
        ),
    ] {
        let mut a = vec!["-n", n];
        a.extend(args);
        has(&k.ok(&a), want, &v);
    }
    assert_eq!(
        k.ok(&[
            "-n",
            n,
            "get",
            "rolebinding",
            "rb1",
            "-o",
            "jsonpath={.roleRef.name}/{.subjects[0].name}"
        ]),
        "r1/bob",
        "{v}"
    );
    assert_eq!(
        k.ok(&[
            "-n",
            n,
            "get",
            "pdb",
            "p2",
            "-o",
            "jsonpath={.spec.minAvailable}"
        ]),
        "50%",
        "{v}"
    );
    assert_eq!(
        k.ok(&[
            "-n",
            n,
            "get",
            "job",
            "j3",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].command}"
        ]),
        r#"["echo","hi"]"#,
        "{v}"
    );
    check_generated_job(k, n, "j3");
    let cj: serde_json::Value =
        serde_json::from_str(&k.ok(&["-n", n, "get", "cronjob", "c3", "-o", "json"])).unwrap();
    assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow", "{v}");
    let template = &cj["spec"]["jobTemplate"]["spec"];
    assert!(
        template.get("backoffLimit").is_none() && template.get("manualSelector").is_none(),
        "{v}: a CronJob's job template gets the Job defaults only in its Jobs: {template}"
    );
    has(&k.ok(&["delete", "priorityclass", &pc]), "deleted", &v);

    let out = k.ok(&["auth", "whoami"]);
    has(&out, "admin", &v);
    has(&out, "system:masters", &v);
    assert_eq!(k.ok(&["auth", "can-i", "create", "pods"]), "yes\n", "{v}");
    has(&k.ok(&["-n", n, "auth", "can-i", "--list"]), "*.*", &v);
}

/// A Job made by `kubectl create job` looks as upstream's: the generated
/// selector on the uid, the four generated labels on its template and (it
/// had none of its own) on the Job, and the spec defaults; `get
/// --show-labels` and `describe` show them.
fn check_generated_job(k: &Kubectl<'_>, n: &str, name: &str) {
    let v = k.version.clone();
    let job: serde_json::Value =
        serde_json::from_str(&k.ok(&["-n", n, "get", "job", name, "-o", "json"])).unwrap();
    let uid = job["metadata"]["uid"].as_str().unwrap();
    let generated = serde_json::json!({
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    });
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"], generated,
        "{v}"
    );
    assert_eq!(job["metadata"]["labels"], generated, "{v}");
    assert_eq!(
        job["spec"]["selector"],
        serde_json::json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
        "{v}"
    );
    for (field, want) in [
        ("completions", serde_json::json!(1)),
        ("parallelism", serde_json::json!(1)),
        ("backoffLimit", serde_json::json!(6)),
        ("completionMode", serde_json::json!("NonIndexed")),
        ("suspend", serde_json::json!(false)),
        (
            "podReplacementPolicy",
            serde_json::json!("TerminatingOrFailed"),
        ),
        ("manualSelector", serde_json::json!(false)),
    ] {
        assert_eq!(job["spec"][field], want, "{v}: spec.{field}");
    }
    // Whatever the encoding kubectl used (protobuf from 1.32 on), Go value
    // fields at their zero value are not shown, as upstream shows none.
    let template = &job["spec"]["template"];
    assert!(
        template["metadata"].get("generation").is_none(),
        "{v}: {template}"
    );
    for gone in ["hostNetwork", "hostPID", "hostIPC"] {
        assert!(
            template["spec"].get(gone).is_none(),
            "{v}: {gone} in {template}"
        );
    }
    for gone in ["stdin", "stdinOnce", "tty"] {
        assert!(
            template["spec"]["containers"][0].get(gone).is_none(),
            "{v}: {gone} in {template}"
        );
    }
    let out = k.ok(&["-n", n, "get", "job", name, "--show-labels"]);
    has(
        &out,
        &format!(
            "batch.kubernetes.io/controller-uid={uid},batch.kubernetes.io/job-name={name},controller-uid={uid},job-name={name}"
        ),
        &v,
    );
    let out = k.ok(&[
        "-n",
        n,
        "get",
        "jobs",
        "-l",
        &format!("job-name={name}"),
        "-o",
        "name",
    ]);
    assert_eq!(
        out,
        format!("job.batch/{name}\n"),
        "{v}: selecting by the generated label"
    );
    let out = k.ok(&["-n", n, "describe", "job", name]);
    let field = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|rest| rest.trim().to_string())
            .unwrap_or_else(|| panic!("{v}: describe job shows no {key}\n{out}"))
    };
    for (key, want) in [
        (
            "Selector:",
            format!("batch.kubernetes.io/controller-uid={uid}"),
        ),
        (
            "Labels:",
            format!("batch.kubernetes.io/controller-uid={uid}"),
        ),
        ("Parallelism:", "1".to_string()),
        ("Completions:", "1".to_string()),
        ("Completion Mode:", "NonIndexed".to_string()),
    ] {
        assert_eq!(field(key), want, "{v}: describe job {key}\n{out}");
    }
    // kubectl shows these from 1.30 on.
    let minor: u32 = v.trim_start_matches("1.").parse().unwrap();
    if minor >= 30 {
        assert_eq!(field("Suspend:"), "false", "{v}\n{out}");
        assert_eq!(field("Backoff Limit:"), "6", "{v}\n{out}");
    }
    has(&out, &format!("job-name={name}"), &v);
}

/// The image of the first container of deployment `name`.
fn image(k: &Kubectl<'_>, n: &str, name: &str) -> String {
    k.ok(&[
        "-n",
        n,
        "get",
        "deployment",
        name,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ])
}

/// Everyday edits of a deployment: set image, diff, replace, edit, wait, events, cascading deletes.
fn scenario_workflows(k: &Kubectl<'_>, n: &str) {
    let v = k.version.clone();
    has(
        &k.ok(&["-n", n, "create", "deployment", "wf", "--image=nginx:1.25"]),
        "deployment.apps/wf created",
        &v,
    );
    has(
        &k.ok(&["-n", n, "set", "image", "deployment/wf", "nginx=nginx:1.26"]),
        "image updated",
        &v,
    );
    assert_eq!(image(k, n, "wf"), "nginx:1.26", "{v}");

    // `autoscale` posts autoscaling/v1 up to some kubectl versions and v2 after (1.27's got a 404
    // before v1 was served); either way both versions read the same object.
    has(
        &k.ok(&[
            "-n",
            n,
            "autoscale",
            "deployment",
            "wf",
            "--max=3",
            "--cpu-percent=50",
        ]),
        "autoscaled",
        &v,
    );
    let v1 = [
        "-n",
        n,
        "get",
        "horizontalpodautoscalers.v1.autoscaling",
        "wf",
        "-o",
        "jsonpath={.apiVersion} {.spec.targetCPUUtilizationPercentage}",
    ];
    assert_eq!(k.ok(&v1), "autoscaling/v1 50", "{v}");
    k.ok(&[
        "-n",
        n,
        "patch",
        "horizontalpodautoscalers.v1.autoscaling",
        "wf",
        "--type=merge",
        "-p",
        r#"{"spec":{"targetCPUUtilizationPercentage":70}}"#,
    ]);
    assert_eq!(
        k.ok(&[
            "-n",
            n,
            "get",
            "horizontalpodautoscalers.v2.autoscaling",
            "wf",
            "-o",
            "jsonpath={.spec.metrics[0].resource.target.averageUtilization}",
        ]),
        "70",
        "{v}: a merge patch of the v1 form reaches the stored v2 object"
    );
    k.ok(&["-n", n, "delete", "hpa", "wf"]);

    // diff shows the change and exits 1; nothing is written.
    // Without its resourceVersion: the deployment controller updates the
    // object (revision annotation, status) as it rolls out, which would
    // make a conditional replace conflict, as on a real cluster.
    let yaml: String = k
        .ok(&["-n", n, "get", "deployment", "wf", "-o", "yaml"])
        .replace("nginx:1.26", "nginx:1.27")
        .lines()
        .filter(|l| !l.trim_start().starts_with("resourceVersion:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let diff = k.run_stdin(&["-n", n, "diff", "-f", "-"], Some(&yaml));
    assert_eq!(diff.status.code(), Some(1), "{v}: {diff:?}");
    has(
        &String::from_utf8_lossy(&diff.stdout),
        "+      - image: nginx:1.27",
        &v,
    );
    assert_eq!(image(k, n, "wf"), "nginx:1.26", "{v}");

    // kubectl replace is not unconditional even without a resourceVersion in the file:
    // kubectl GETs the object and sends the resourceVersion it read (cli-runtime's
    // Helper.Replace with overwrite), so a write by the deployment controller between its
    // GET and PUT is a real 409, on any cluster. A user runs it again; so does the test.
    let mut replaced = k.run_stdin(&["-n", n, "replace", "-f", "-"], Some(&yaml));
    for _ in 0..5 {
        if replaced.status.success()
            || !String::from_utf8_lossy(&replaced.stderr).contains("(Conflict)")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        replaced = k.run_stdin(&["-n", n, "replace", "-f", "-"], Some(&yaml));
    }
    assert!(replaced.status.success(), "{v}: {replaced:?}");
    has(
        &String::from_utf8_lossy(&replaced.stdout),
        "deployment.apps/wf replaced",
        &v,
    );
    assert_eq!(image(k, n, "wf"), "nginx:1.27", "{v}");

    // edit, with an editor that changes the image in place.
    let dir = tempfile::tempdir().unwrap();
    let editor = dir.path().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/nginx:1.27/nginx:1.28/' \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    has(
        &k.ok_env(
            &["-n", n, "edit", "deployment", "wf"],
            &[
                ("EDITOR", editor.as_path()),
                ("KUBE_EDITOR", editor.as_path()),
            ],
        ),
        "deployment.apps/wf edited",
        &v,
    );
    assert_eq!(image(k, n, "wf"), "nginx:1.28", "{v}");

    has(
        &k.ok(&[
            "-n",
            n,
            "wait",
            "--for=jsonpath={.spec.replicas}=1",
            "deployment/wf",
            "--timeout=10s",
        ]),
        "condition met",
        &v,
    );
    k.ok(&["-n", n, "events"]);

    // wait --for=delete returns once another client deletes the object.
    k.ok(&["-n", n, "create", "configmap", "doomed"]);
    let mut waiter = k.spawn(&[
        "-n",
        n,
        "wait",
        "--for=delete",
        "configmap/doomed",
        "--timeout=30s",
        "-v=6",
    ]);
    // Delete only once kubectl has read the configmap (its -v=6 log shows each request): from then on it sees the
    // deletion, however long it took to start.
    let stderr = waiter.stderr.take().unwrap();
    let (read_it, has_read_it) = std::sync::mpsc::channel();
    let log = std::thread::spawn(move || {
        let mut log = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            if line.contains("/configmaps") && line.contains("200 OK") {
                let _ = read_it.send(());
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    let _ = has_read_it.recv_timeout(std::time::Duration::from_secs(30));
    k.ok(&["-n", n, "delete", "configmap", "doomed"]);
    let out = waiter.wait_with_output().unwrap();
    let log = log.join().unwrap();
    assert!(out.status.success(), "{v}: {out:?}\n{log}");
    has(&String::from_utf8_lossy(&out.stdout), "condition met", &v);

    has(
        &k.ok(&["-n", n, "delete", "deployment", "wf", "--cascade=orphan"]),
        "deployment.apps \"wf\" deleted",
        &v,
    );
    k.ok(&["-n", n, "create", "deployment", "fg", "--image=nginx"]);
    has(
        &k.ok(&[
            "-n",
            n,
            "delete",
            "deployment",
            "fg",
            "--cascade=foreground",
            "--wait",
        ]),
        "deployment.apps \"fg\" deleted",
        &v,
    );
    let gone = k.run(&["-n", n, "get", "deployment", "fg"]);
    assert_eq!(gone.status.code(), Some(1), "{v}");
}

/// A 4 MiB configmap (over the 3 MiB body limit) through `create` and
/// `apply`, over HTTP/2 (ALPN, kubectl's default) and HTTP/1.1
/// (`DISABLE_HTTP2`): kubectl prints the server's 413 Status, whatever its
/// Go version does with an answer that comes while it is still writing,
/// and nothing is written.
fn scenario_huge_body(k: &Kubectl<'_>, n: &str) {
    let v = k.version.clone();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("f");
    std::fs::write(&data, "0123456789abcdef\n".repeat(4 * 1024 * 1024 / 17 + 1)).unwrap();
    let manifest = dir.path().join("big.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\ndata:\n  f: {}\n",
            "x".repeat(4 * 1024 * 1024)
        ),
    )
    .unwrap();
    let from_file = format!("--from-file={}", data.display());
    let manifest = manifest.display().to_string();
    for (proto, env) in [
        ("HTTP/2", vec![]),
        ("HTTP/1.1", vec![("DISABLE_HTTP2", "1")]),
    ] {
        for (args, says) in [
            (
                vec!["-n", n, "create", "configmap", "big", from_file.as_str()],
                "error: failed to create configmap: Request entity too large: limit is 3145728",
            ),
            (
                vec!["-n", n, "apply", "-f", manifest.as_str()],
                "Error from server (RequestEntityTooLarge): error when creating",
            ),
        ] {
            let out = k.run_with_env(&args, &env);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{v} {proto} {args:?}: {stderr}");
            has(&stderr, says, &format!("{v} {proto} {args:?}"));
            has(
                &stderr,
                "Request entity too large: limit is 3145728",
                &format!("{v} {proto} {args:?}"),
            );
        }
    }
    let gone = k.run(&["-n", n, "get", "configmap", "big"]);
    assert_eq!(gone.status.code(), Some(1), "{v}: nothing was written");
}

/// Runs kubectl until `check` accepts its output (30 s at most).
fn eventually_ok(
    k: &Kubectl<'_>,
    args: &[&str],
    what: &str,
    check: impl Fn(&str) -> bool,
) -> String {
    let start = std::time::Instant::now();
    loop {
        let out = k.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() && check(&stdout) {
            return stdout;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "{} {args:?}: timed out waiting for {what}; last output:\n{stdout}\n{}",
            k.version,
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// The REVISION column of `rollout history`, with each CHANGE-CAUSE.
fn revisions(history: &str) -> Vec<(String, String)> {
    history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| {
            let (rev, cause) = l.trim().split_once(char::is_whitespace)?;
            Some((rev.to_string(), cause.trim().to_string()))
        })
        .collect()
}

/// The deployment and replicaset controllers through kubectl: replica
/// sets with the pod-template hash, rollout history and undo, change
/// causes, pods, scaling to zero and cascading deletion.
fn scenario_rollout(k: &Kubectl<'_>, n: &str) {
    let v = k.version.clone();
    has(
        &k.ok(&["-n", n, "create", "deployment", "ro", "--image=nginx:1.25"]),
        "deployment.apps/ro created",
        &v,
    );
    let rs = eventually_ok(
        k,
        &["-n", n, "get", "rs", "-l", "app=ro", "-o", "name"],
        "one replica set",
        |o| o.lines().count() == 1,
    );
    let rs = rs.trim().trim_start_matches("replicaset.apps/").to_string();
    let hash = rs
        .strip_prefix("ro-")
        .unwrap_or_else(|| panic!("{v}: replica set {rs}"));
    assert!(
        !hash.is_empty() && hash.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{v}: {rs}"
    );
    let table = eventually_ok(
        k,
        &["-n", n, "get", "rs", "-l", "app=ro"],
        "one current replica",
        |o| {
            o.lines().any(|l| {
                l.split_whitespace().take(3).collect::<Vec<_>>() == [rs.as_str(), "1", "1"]
            })
        },
    );
    has(&table, "DESIRED", &v);
    let labels = k.ok(&[
        "-n",
        n,
        "get",
        "rs",
        &rs,
        "-o",
        "jsonpath={.metadata.labels.pod-template-hash}",
    ]);
    assert_eq!(labels, hash, "{v}");

    // The controllers' events, as describe and `kubectl events` show them.
    let scaled_up = format!("Scaled up replica set {rs} from 0 to 1");
    let described = eventually_ok(
        k,
        &["-n", n, "describe", "deployment", "ro"],
        "the ScalingReplicaSet event in describe",
        |o| o.contains(&scaled_up),
    );
    let line = described
        .lines()
        .find(|l| l.contains(&scaled_up))
        .unwrap_or_default();
    for want in ["Normal", "ScalingReplicaSet", "deployment-controller"] {
        has(line, want, &format!("{v} describe deployment events"));
    }
    has(&described, "Events:", &v);
    let pod = k.ok(&["-n", n, "get", "pods", "-l", "app=ro", "-o", "name"]);
    let created = format!("Created pod: {}", pod.trim().trim_start_matches("pod/"));
    let described = eventually_ok(
        k,
        &["-n", n, "describe", "rs", &rs],
        "the SuccessfulCreate event in describe",
        |o| o.contains(&created),
    );
    has(&described, "replicaset-controller", &v);
    let events = k.ok(&["-n", n, "events"]);
    for want in [
        "Deployment/ro".to_string(),
        scaled_up.clone(),
        format!("ReplicaSet/{rs}"),
        created.clone(),
    ] {
        has(&events, &want, &format!("{v} kubectl events"));
    }

    has(
        &k.ok(&["-n", n, "set", "image", "deployment/ro", "nginx=nginx:1.26"]),
        "image updated",
        &v,
    );
    let history = ["-n", n, "rollout", "history", "deployment/ro"];
    eventually_ok(k, &history, "revisions 1 and 2", |o| {
        revisions(o)
            .iter()
            .map(|(r, _)| r.as_str())
            .collect::<Vec<_>>()
            == ["1", "2"]
    });
    let first = k.ok(&[
        "-n",
        n,
        "rollout",
        "history",
        "deployment/ro",
        "--revision=1",
    ]);
    has(&first, "nginx:1.25", &v);
    has(&first, &format!("pod-template-hash={hash}"), &v);

    has(
        &k.ok(&["-n", n, "rollout", "undo", "deployment/ro"]),
        "rolled back",
        &v,
    );
    assert_eq!(image(k, n, "ro"), "nginx:1.25", "{v}");
    eventually_ok(k, &history, "revisions 2 and 3", |o| {
        revisions(o)
            .iter()
            .map(|(r, _)| r.as_str())
            .collect::<Vec<_>>()
            == ["2", "3"]
    });
    // The rolled-back-to replica set is the first one, re-stamped.
    eventually_ok(
        k,
        &[
            "-n",
            n,
            "get",
            "rs",
            &rs,
            "-o",
            "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
        ],
        "revision 3 on the first replica set",
        |o| o == "3",
    );

    k.ok(&[
        "-n",
        n,
        "annotate",
        "deployment/ro",
        "kubernetes.io/change-cause=undo to 1.25",
    ]);
    eventually_ok(k, &history, "the change cause", |o| {
        revisions(o).contains(&("3".to_string(), "undo to 1.25".to_string()))
    });

    let pods = eventually_ok(
        k,
        &["-n", n, "get", "pods", "-l", "app=ro"],
        "pending pods",
        |o| o.lines().skip(1).count() >= 1,
    );
    for line in pods.lines().skip(1) {
        assert!(line.starts_with("ro-"), "{v}: {line}");
        assert!(line.contains("Pending"), "{v}: {line}");
    }

    has(
        &k.ok(&["-n", n, "scale", "deployment/ro", "--replicas=0"]),
        "deployment.apps/ro scaled",
        &v,
    );
    eventually_ok(
        k,
        &["-n", n, "get", "pods", "-l", "app=ro", "-o", "name"],
        "no pods",
        |o| o.trim().is_empty(),
    );
    has(
        &k.ok(&["-n", n, "delete", "deployment", "ro"]),
        "deployment.apps \"ro\" deleted",
        &v,
    );
    eventually_ok(
        k,
        &["-n", n, "get", "rs", "-l", "app=ro", "-o", "name"],
        "no replica sets",
        |o| o.trim().is_empty(),
    );
}

/// A Deployment for `apply --server-side` with `replicas` and `image`.
fn ssa_deployment(replicas: u32, image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: ssa
  labels: {{app: ssa}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: ssa}}}}
  template:
    metadata: {{labels: {{app: ssa}}}}
    spec:
      containers:
      - name: c
        image: {image}
        ports: [{{containerPort: 80}}]
"
    )
}

/// `apply --server-side`: create, a no-op re-apply, a conflict with the
/// manager of `kubectl scale`, `--force-conflicts`, and managedFields as
/// `--show-managed-fields` prints them.
fn scenario_server_side_apply(k: &Kubectl<'_>, n: &str) {
    let v = k.version.clone();
    let apply = ["-n", n, "apply", "--server-side", "-f", "-"];
    let rv = |k: &Kubectl<'_>| {
        k.ok(&[
            "-n",
            n,
            "get",
            "deploy",
            "ssa",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
    };
    has(
        &k.ok_stdin(&apply, Some(&ssa_deployment(2, "nginx:1.27"))),
        "deployment.apps/ssa serverside-applied",
        &v,
    );
    // The deployment controller writes the revision annotation and status
    // after a create, as upstream's does; wait until it has reported both
    // pods before measuring.
    eventually_ok(
        k,
        &[
            "-n",
            n,
            "get",
            "deploy",
            "ssa",
            "-o",
            "jsonpath={.status.replicas}",
        ],
        "the controller's status",
        |o| o == "2",
    );
    let created = rv(k);
    has(
        &k.ok_stdin(&apply, Some(&ssa_deployment(2, "nginx:1.27"))),
        "deployment.apps/ssa serverside-applied",
        &v,
    );
    assert_eq!(rv(k), created, "{v}: an identical apply writes nothing");
    // Managed fields are hidden unless asked for.
    let plain = k.ok(&["-n", n, "get", "deploy", "ssa", "-o", "yaml"]);
    assert!(!plain.contains("managedFields"), "{v}: {plain}");

    has(
        &k.ok(&["-n", n, "scale", "deploy", "ssa", "--replicas=5"]),
        "deployment.apps/ssa scaled",
        &v,
    );
    let shown = k.ok(&[
        "-n",
        n,
        "get",
        "deploy",
        "ssa",
        "-o",
        "yaml",
        "--show-managed-fields",
    ]);
    for want in [
        "managedFields:",
        "operation: Apply",
        "operation: Update",
        "subresource: scale",
        "fieldsType: FieldsV1",
        "f:replicas: {}",
        "k:{\"name\":\"c\"}:",
        "k:{\"containerPort\":80,\"protocol\":\"TCP\"}:",
    ] {
        has(&shown, want, &format!("{v} --show-managed-fields"));
    }

    // Another replicas: the scaler owns it, so the apply fails and writes nothing.
    let out = k.run_stdin(&apply, Some(&ssa_deployment(3, "nginx:1.28")));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "{v}: the conflicting apply succeeded"
    );
    for want in [
        "error: Apply failed with 1 conflict: conflict with \"kubectl",
        "with subresource \"scale\" using apps/v1: .spec.replicas",
        "--force-conflicts",
    ] {
        has(&stderr, want, &format!("{v} conflict"));
    }
    let replicas = |k: &Kubectl<'_>| {
        k.ok(&[
            "-n",
            n,
            "get",
            "deploy",
            "ssa",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
    };
    assert_eq!(replicas(k), "5", "{v}");

    // Forced: the applied value wins and the applier owns it.
    has(
        &k.ok_stdin(
            &[
                "-n",
                n,
                "apply",
                "--server-side",
                "--force-conflicts",
                "-f",
                "-",
            ],
            Some(&ssa_deployment(3, "nginx:1.28")),
        ),
        "deployment.apps/ssa serverside-applied",
        &v,
    );
    assert_eq!(replicas(k), "3", "{v}");
    // A label from another manager: both show up.
    k.ok(&["-n", n, "label", "deploy", "ssa", "tier=web"]);
    let shown = k.ok(&[
        "-n",
        n,
        "get",
        "deploy",
        "ssa",
        "-o",
        "yaml",
        "--show-managed-fields",
    ]);
    for want in [
        "manager: kubectl",
        "operation: Apply",
        "manager: kubectl-label",
        "f:tier: {}",
    ] {
        has(&shown, want, &format!("{v} managers after force"));
    }
    assert!(
        !shown.contains("subresource: scale"),
        "{v}: the scaler lost its only field\n{shown}"
    );
    has(
        &k.ok(&["-n", n, "delete", "deploy", "ssa"]),
        "deployment.apps \"ssa\" deleted",
        &v,
    );
}

/// A CustomResourceDefinition unique to kubectl `v` (every version runs at
/// once against one server, and definitions are cluster-scoped): kind
/// `GizmoNN`, plural `gizmosNN`, short name `gzNN`.
fn gizmo_crd(m: &str) -> String {
    format!(
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: gizmos{m}.e2e.example.com}}
spec:
  group: e2e.example.com
  scope: Namespaced
  names: {{plural: gizmos{m}, singular: gizmo{m}, kind: Gizmo{m}, shortNames: [gz{m}]}}
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {{}}
      scale: {{specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas}}
    additionalPrinterColumns:
    - {{name: Color, type: string, jsonPath: .spec.color}}
    - {{name: Replicas, type: integer, jsonPath: .spec.replicas}}
    - {{name: Size, type: string, jsonPath: .spec.size, priority: 1}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: The gizmo's desired shape, for e2e tests.
            required: [color]
            properties:
              color: {{type: string, enum: [red, blue], description: The paint.}}
              replicas: {{type: integer, minimum: 0, default: 1}}
              size: {{type: string, default: M}}
          status:
            type: object
            properties:
              replicas: {{type: integer}}
"
    )
}

fn gizmo(m: &str, color: &str, replicas: &str) -> String {
    format!(
        "apiVersion: e2e.example.com/v1
kind: Gizmo{m}
metadata: {{name: g1}}
spec: {{color: {color}, replicas: {replicas}}}
"
    )
}

/// Custom resources: apply a definition, wait until established, find it
/// in api-resources and explain, apply/get/patch/scale its objects with the
/// printer columns, an invalid object, and deleting the definition.
fn scenario_custom_resources(k: &Kubectl<'_>, n: &str) {
    let v = k.version.clone();
    let m = v.trim_start_matches("1.").to_string();
    let crd = format!("crd/gizmos{m}.e2e.example.com");
    has(
        &k.ok_stdin(&["apply", "-f", "-"], Some(&gizmo_crd(&m))),
        &format!("customresourcedefinition.apiextensions.k8s.io/gizmos{m}.e2e.example.com created"),
        &v,
    );
    has(
        &k.ok(&[
            "wait",
            "--for",
            "condition=established",
            &crd,
            "--timeout=30s",
        ]),
        "condition met",
        &v,
    );
    let out = k.ok(&["api-resources", "--api-group=e2e.example.com"]);
    has(&out, &format!("gizmos{m}"), &v);
    has(&out, &format!("gz{m}"), &v);
    has(&out, &format!("Gizmo{m}"), &v);
    has(
        &k.ok(&["explain", &format!("gizmo{m}.spec")]),
        "The gizmo's desired shape, for e2e tests.",
        &v,
    );
    let apply = ["-n", n, "apply", "-f", "-"];
    has(
        &k.ok_stdin(&apply, Some(&gizmo(&m, "red", "2"))),
        &format!("gizmo{m}.e2e.example.com/g1 created"),
        &v,
    );
    has(
        &k.ok_stdin(&apply, Some(&gizmo(&m, "blue", "2"))),
        &format!("gizmo{m}.e2e.example.com/g1 configured"),
        &v,
    );
    let out = k.ok(&["-n", n, "get", &format!("gizmos{m}")]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["NAME", "COLOR", "REPLICAS"], "{v}: {out}");
    let row: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(row, ["g1", "blue", "2"], "{v}: {out}");
    let wide = k.ok(&["-n", n, "get", &format!("gizmos{m}"), "-o", "wide"]);
    has(wide.lines().next().unwrap_or(""), "SIZE", &v);
    has(&wide, "M", &v);
    has(
        &k.ok(&[
            "-n",
            n,
            "patch",
            &format!("gz{m}"),
            "g1",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"color":"red"}}"#,
        ]),
        &format!("gizmo{m}.e2e.example.com/g1 patched"),
        &v,
    );
    has(
        &k.ok(&["-n", n, "scale", &format!("gizmo{m}"), "g1", "--replicas=4"]),
        &format!("gizmo{m}.e2e.example.com/g1 scaled"),
        &v,
    );
    let got = k.ok(&[
        "-n",
        n,
        "get",
        &format!("gz{m}"),
        "g1",
        "-o",
        "jsonpath={.spec.color} {.spec.replicas} {.metadata.generation}",
    ]);
    assert_eq!(got, "red 4 4", "{v}");
    let bad = k.run_stdin(&apply, Some(&gizmo(&m, "green", "2")));
    assert_ne!(bad.status.code(), Some(0), "{v}");
    has(
        &String::from_utf8_lossy(&bad.stderr),
        "spec.color: Unsupported value: \"green\"",
        &v,
    );
    // A gizmo held by a finalizer keeps the deleted definition Terminating
    // (and readable) until it goes; `delete --wait=false` returns at once.
    let gz = format!("gz{m}");
    let hold = r#"{"metadata":{"finalizers":["e2e.example.com/hold"]}}"#;
    k.ok(&["-n", n, "patch", &gz, "g1", "--type", "merge", "-p", hold]);
    let deleted = format!(
        "customresourcedefinition.apiextensions.k8s.io \"gizmos{m}.e2e.example.com\" deleted"
    );
    has(&k.ok(&["delete", &crd, "--wait=false"]), &deleted, &v);
    let terminating = k.ok(&[
        "get",
        &crd,
        "-o",
        r#"jsonpath={.metadata.finalizers[0]} {.status.conditions[?(@.type=="Terminating")].status}"#,
    ]);
    assert_eq!(
        terminating, "customresourcecleanup.apiextensions.k8s.io True",
        "{v}"
    );
    // A waiting delete answers at once (the definition is still there) and
    // returns once the released gizmo and then the definition are gone.
    let mut waiting = k.spawn(&["delete", &crd]);
    let mut first = String::new();
    if let Some(out) = waiting.stdout.take() {
        BufReader::new(out).read_line(&mut first).unwrap();
    }
    has(&first, &deleted, &v);
    let release = r#"{"metadata":{"finalizers":null}}"#;
    k.ok(&[
        "-n", n, "patch", &gz, "g1", "--type", "merge", "-p", release,
    ]);
    let out = common::wait_bounded(waiting, Duration::from_secs(60), "kubectl delete crd");
    assert!(
        out.status.success(),
        "{v}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gone = k.run(&["get", &crd]);
    assert_ne!(gone.status.code(), Some(0), "{v}");
    has(&String::from_utf8_lossy(&gone.stderr), "NotFound", &v);
    let gone = k.run(&["-n", n, "get", &format!("gizmos{m}")]);
    assert_ne!(gone.status.code(), Some(0), "{v}");
    // A fresh discovery says the type is unknown; a cached one gets a 404 for the list.
    let err = String::from_utf8_lossy(&gone.stderr);
    assert!(
        err.contains(&format!(
            "the server doesn't have a resource type \"gizmos{m}\""
        )) || err.contains("the server could not find the requested resource"),
        "{v}: {err}"
    );
}

fn has(out: &str, want: &str, what: &str) {
    assert!(out.contains(want), "{what}: expected {want:?} in:\n{out}");
}

fn scenario(k: &Kubectl<'_>) {
    let v = k.version.clone();
    let ns = format!("e2e-{}", v.replace('.', "-"));
    let n = ns.as_str();

    let out = k.ok(&["version", "-o", "json"]);
    has(&out, "k3s-daas", &v);
    let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(parsed["serverVersion"]["minor"], "33", "{v}");

    let out = k.ok(&["api-resources"]);
    for want in [
        "configmaps",
        "cm",
        "deployments",
        "apps/v1",
        "namespaces",
        "leases",
        "statefulsets",
        "sts",
        "cronjobs",
        "batch/v1",
        "ingresses",
        "networkpolicies",
        "netpol",
        "poddisruptionbudgets",
        "priorityclasses",
        "clusterrolebindings",
        "resourcequotas",
        "events.k8s.io/v1",
        "selfsubjectaccessreviews",
        "persistentvolumeclaims",
        "pvc",
        "persistentvolumes",
        "storageclasses",
        "storage.k8s.io/v1",
        "horizontalpodautoscalers",
        "autoscaling/v2",
        "ingressclasses",
        "runtimeclasses",
        "podtemplates",
        "replicationcontrollers",
        "flowschemas",
        "prioritylevelconfigurations",
        "apiservices",
        "componentstatuses",
        "servicecidrs",
        "ipaddresses",
        "validatingwebhookconfigurations",
        "mutatingwebhookconfigurations",
        "validatingadmissionpolicies",
        "validatingadmissionpolicybindings",
    ] {
        has(&out, want, &format!("{v} api-resources"));
    }
    // kube-apiserver's mandatory flow-control objects, with upstream's columns.
    let fs = k.ok(&["get", "flowschemas"]);
    has(&fs, "MISSINGPL", &v);
    assert!(
        fs.lines().any(|l| l.starts_with("catch-all ")
            && l.contains("10000")
            && l.contains("ByUser")
            && l.trim_end().ends_with("False")),
        "{v}: {fs}"
    );
    // Every served group version as an APIService, Local and available, as upstream lists its own.
    let apis = k.ok(&["get", "apiservices"]);
    for want in [
        "v1. ",
        "v1.apps ",
        "v2.autoscaling ",
        "v1beta1.metrics.k8s.io ",
        "v1.storage.k8s.io ",
    ] {
        assert!(
            apis.lines()
                .any(|l| l.starts_with(want) && l.contains("Local") && l.contains("True")),
            "{v}: {want} in {apis}"
        );
    }
    // The deprecated component statuses, with upstream's columns and warning.
    let cs = k.run(&["get", "componentstatuses"]);
    let (cs_out, cs_err) = (
        String::from_utf8_lossy(&cs.stdout),
        String::from_utf8_lossy(&cs.stderr),
    );
    assert!(cs.status.success(), "{v}: {cs_err}");
    let header: Vec<&str> = cs_out
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "STATUS", "MESSAGE", "ERROR"],
        "{v}: {cs_out}"
    );
    for name in ["controller-manager", "etcd-0", "scheduler"] {
        assert!(
            cs_out
                .lines()
                .any(|l| l.starts_with(name) && l.contains("Healthy") && l.contains("ok")),
            "{v}: {name} in {cs_out}"
        );
    }
    has(&cs_err, "v1 ComponentStatus is deprecated in v1.19+", &v);
    // The default ServiceCIDR and the kubernetes Service's IPAddress, kept by the apiserver.
    eventually_ok(
        k,
        &["get", "servicecidrs"],
        "the default ServiceCIDR",
        |o| {
            o.lines()
                .any(|l| l.starts_with("kubernetes ") && l.contains("10.43.0.0/16"))
        },
    );
    eventually_ok(
        k,
        &["get", "ipaddresses"],
        "the kubernetes Service's address",
        |o| {
            o.lines()
                .any(|l| l.starts_with("10.43.0.1 ") && l.contains("services/default/kubernetes"))
        },
    );
    let pl = k.ok(&["get", "prioritylevelconfigurations"]);
    assert!(
        pl.lines()
            .any(|l| l.starts_with("catch-all ") && l.contains("Limited")),
        "{v}: {pl}"
    );
    has(&k.ok(&["api-versions"]), "coordination.k8s.io/v1", &v);
    // explain reads the OpenAPI v3 schemas (found by their GVK).
    has(
        &k.ok(&["explain", "pods.spec.containers.image"]),
        "Container image name",
        &v,
    );
    let deployment = k.ok(&["explain", "deployment"]);
    has(&deployment, "apps", &v);
    has(&deployment, "Deployment enables declarative updates", &v);
    assert!(!deployment.contains("-required-"), "{v}: {deployment}");
    has(
        &k.ok(&["explain", "cronjob.spec.schedule"]),
        "Cron format",
        &v,
    );
    // ... and /openapi/v2 in gnostic protobuf, with references followed (it was an empty document).
    has(
        &k.ok(&[
            "explain",
            "deployment.spec.template.spec.containers.resources",
            "--output=plaintext-openapiv2",
        ]),
        "ResourceRequirements describes the compute resource requirements",
        &v,
    );

    let out = k.ok(&["get", "namespaces"]);
    has(&out, "STATUS", &v);
    has(&out, "default", &v);
    has(&out, "Active", &v);

    assert_eq!(
        k.ok(&["create", "namespace", n]),
        format!("namespace/{n} created\n"),
        "{v}"
    );
    assert_eq!(
        k.ok(&["get", "ns", n, "-o", "name"]),
        format!("namespace/{n}\n"),
        "{v}"
    );

    has(
        &k.ok(&["-n", n, "create", "configmap", "c1", "--from-literal=a=b"]),
        "configmap/c1 created",
        &v,
    );
    has(
        &k.ok(&[
            "-n",
            n,
            "create",
            "secret",
            "generic",
            "s1",
            "--from-literal=user=admin",
        ]),
        "secret/s1 created",
        &v,
    );
    let dup = k.run(&["-n", n, "create", "configmap", "c1", "--from-literal=a=b"]);
    assert_eq!(
        dup.status.code(),
        Some(1),
        "{v}: duplicate create must fail"
    );
    has(&String::from_utf8_lossy(&dup.stderr), "already exists", &v);

    let yaml = k.ok(&["-n", n, "get", "configmap", "c1", "-o", "yaml"]);
    has(&yaml, "a: b", &v);
    has(&yaml, "resourceVersion:", &v);
    has(&yaml, "uid:", &v);
    let list: serde_json::Value =
        serde_json::from_str(&k.ok(&["-n", n, "get", "configmaps", "-o", "json"])).unwrap();
    assert_eq!(list["items"][0]["data"]["a"], "b", "{v}");
    let secret: serde_json::Value =
        serde_json::from_str(&k.ok(&["-n", n, "get", "secret", "s1", "-o", "json"])).unwrap();
    assert_eq!(secret["data"]["user"], "YWRtaW4=", "{v}");
    assert_eq!(secret["type"], "Opaque", "{v}");
    let wide = k.ok(&["-n", n, "get", "secrets", "-o", "wide"]);
    has(&wide, "TYPE", &v);
    has(&wide, "Opaque", &v);
    has(&k.ok(&["-n", n, "get", "configmaps"]), "DATA", &v);
    assert_eq!(
        k.ok(&["-n", n, "get", "configmaps", "-o", "name"]),
        // Every namespace has the root CA (upstream's root-ca-cert-publisher).
        "configmap/c1\nconfigmap/kube-root-ca.crt\n",
        "{v}"
    );

    // apply twice with a change, then unchanged
    has(
        &k.ok_stdin(&["-n", n, "apply", "-f", "-"], Some(APPLY_V1)),
        "configmap/applied created",
        &v,
    );
    has(
        &k.ok_stdin(&["-n", n, "apply", "-f", "-"], Some(APPLY_V2)),
        "configmap/applied configured",
        &v,
    );
    has(
        &k.ok_stdin(&["-n", n, "apply", "-f", "-"], Some(APPLY_V2)),
        "configmap/applied unchanged",
        &v,
    );
    assert_eq!(
        k.ok(&["-n", n, "get", "cm", "applied", "-o", "jsonpath={.data.k}"]),
        "v2",
        "{v}"
    );

    // the three patch types
    has(
        &k.ok(&[
            "-n",
            n,
            "patch",
            "configmap",
            "c1",
            "--type=merge",
            "-p",
            r#"{"data":{"m":"1"}}"#,
        ]),
        "configmap/c1 patched",
        &v,
    );
    has(
        &k.ok(&[
            "-n",
            n,
            "patch",
            "configmap",
            "c1",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/data/j","value":"2"}]"#,
        ]),
        "configmap/c1 patched",
        &v,
    );
    has(
        &k.ok(&[
            "-n",
            n,
            "patch",
            "configmap",
            "c1",
            "-p",
            r#"{"data":{"s":"3"}}"#,
        ]),
        "configmap/c1 patched",
        &v,
    );
    assert_eq!(
        k.ok(&[
            "-n",
            n,
            "get",
            "cm",
            "c1",
            "-o",
            "jsonpath={.data.a}{.data.m}{.data.j}{.data.s}"
        ]),
        "b123",
        "{v}"
    );
    let bad = k.run(&[
        "-n",
        n,
        "patch",
        "configmap",
        "c1",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/data/a","value":"x"}]"#,
    ]);
    assert_eq!(
        bad.status.code(),
        Some(1),
        "{v}: failed json patch test must fail"
    );

    // label and annotate, then select
    has(
        &k.ok(&["-n", n, "label", "configmap", "c1", "tier=fe"]),
        "configmap/c1 labeled",
        &v,
    );
    has(
        &k.ok(&["-n", n, "annotate", "configmap", "c1", "note=hello"]),
        // 1.27 prints "annotate", later versions "annotated".
        "configmap/c1 annotate",
        &v,
    );
    assert_eq!(
        k.ok(&["-n", n, "get", "cm", "-l", "tier=fe", "-o", "name"]),
        "configmap/c1\n",
        "{v}"
    );
    assert_eq!(
        k.ok(&[
            "-n",
            n,
            "get",
            "cm",
            "--field-selector",
            "metadata.name=applied",
            "-o",
            "name"
        ]),
        "configmap/applied\n",
        "{v}"
    );
    has(
        &k.ok(&[
            "-n",
            n,
            "get",
            "cm",
            "-o",
            "jsonpath={.items[*].metadata.annotations.note}",
        ]),
        "hello",
        &v,
    );
    let badsel = k.run(&["-n", n, "get", "cm", "--field-selector", "data.a=b"]);
    assert_eq!(badsel.status.code(), Some(1), "{v}");
    has(
        &String::from_utf8_lossy(&badsel.stderr),
        "field label not supported",
        &v,
    );

    // get -w sees a change arrive
    let mut watch = k.spawn(&["-n", n, "get", "configmaps", "-w"]);
    let stdout = watch.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait_for = |want: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(want) => return,
                Ok(_) => {}
                Err(_) => panic!("{v}: kubectl get -w never printed {want:?}"),
            }
        }
    };
    wait_for("c1");
    has(
        &k.ok(&[
            "-n",
            n,
            "create",
            "configmap",
            "watched",
            "--from-literal=x=y",
        ]),
        "created",
        &v,
    );
    wait_for("watched");
    let _ = watch.kill();
    let _ = watch.wait();

    scenario_huge_body(k, n);
    scenario_more_kinds(k, n);
    scenario_workflows(k, n);
    scenario_server_side_apply(k, n);
    scenario_rollout(k, n);
    scenario_custom_resources(k, n);

    // delete, and what delete leaves behind
    has(
        &k.ok(&["-n", n, "delete", "configmap", "c1"]),
        "configmap \"c1\" deleted",
        &v,
    );
    let gone = k.run(&["-n", n, "get", "configmap", "c1"]);
    assert_eq!(gone.status.code(), Some(1), "{v}");
    has(
        &String::from_utf8_lossy(&gone.stderr),
        "configmaps \"c1\" not found",
        &v,
    );
    has(
        &k.ok(&["delete", "namespace", n]),
        &format!("namespace \"{n}\" deleted"),
        &v,
    );
    let gone = k.run(&["get", "namespace", n]);
    assert_eq!(gone.status.code(), Some(1), "{v}");
    has(&String::from_utf8_lossy(&gone.stderr), "not found", &v);
}

#[test]
fn every_kubectl_version_works() {
    let versions = kubectl_versions();
    assert!(
        !versions.is_empty(),
        "no kubectl.1.X binaries next to kubectl; the machine image provides 1.27 … 1.33"
    );
    let server = Enclave::start();
    std::thread::scope(|s| {
        let handles: Vec<_> = versions
            .iter()
            .map(|(v, bin)| {
                let server = &server;
                s.spawn(move || scenario(&Kubectl::new(v, bin, server)))
            })
            .collect();
        let mut failed = Vec::new();
        for (h, (v, _)) in handles.into_iter().zip(&versions) {
            if h.join().is_err() {
                failed.push(v.clone());
            }
        }
        assert!(failed.is_empty(), "kubectl versions failing: {failed:?}");
    });
}

/// `kubectl debug node/X` with every profile creates its pod on that node; kubectl 1.32+
/// sends the Pod as protobuf (it was refused with 415 before).
#[test]
fn debug_node_creates_its_pod_with_every_kubectl_and_profile() {
    let server = Enclave::start();
    let versions = kubectl_versions();
    let (_, newest) = versions.last().expect("kubectl.1.X binaries");
    let admin = Kubectl::new("admin", newest, &server);
    admin.ok_stdin(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Node\nmetadata:\n  name: debugged\n"),
    );
    for (v, bin) in &versions {
        let k = Kubectl::new(v, bin, &server);
        for profile in [
            "legacy",
            "general",
            "baseline",
            "restricted",
            "netadmin",
            "sysadmin",
        ] {
            let out = k.run(&[
                "debug",
                "node/debugged",
                "--image=busybox:1.35",
                &format!("--profile={profile}"),
                "--",
                "sleep",
                "1",
            ]);
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if said.contains("unknown profile") && v != &versions.last().unwrap().0 {
                // Profiles came one by one (1.27 has no sysadmin); the newest has them all.
                continue;
            }
            assert!(
                out.status.success(),
                "kubectl {v} --profile={profile}: {said}"
            );
            let name = said
                .split_whitespace()
                .skip_while(|w| *w != "pod")
                .nth(1)
                .unwrap_or_else(|| panic!("kubectl {v} --profile={profile}: {said}"))
                .to_owned();
            let pod: serde_json::Value =
                serde_json::from_str(&admin.ok(&["get", "pod", &name, "-o", "json"])).unwrap();
            let spec = &pod["spec"];
            assert_eq!(spec["nodeName"], "debugged", "{v} {profile}: {spec}");
            assert_eq!(
                spec["containers"][0]["image"], "busybox:1.35",
                "{v} {profile}"
            );
            assert_eq!(
                spec["tolerations"][0]["operator"], "Exists",
                "{v} {profile}"
            );
            let security = &spec["containers"][0]["securityContext"];
            match profile {
                "sysadmin" => assert_eq!(security["privileged"], true, "{v}: {spec}"),
                "restricted" => {
                    assert_eq!(security["capabilities"]["drop"][0], "ALL", "{v}: {spec}");
                    assert_eq!(security["runAsNonRoot"], true, "{v}: {spec}");
                }
                // NET_ADMIN everywhere; later versions add NET_RAW.
                "netadmin" => assert_eq!(
                    security["capabilities"]["add"][0], "NET_ADMIN",
                    "{v}: {spec}"
                ),
                _ => {}
            }
            if matches!(profile, "legacy" | "general" | "sysadmin") {
                assert_eq!(spec["hostPID"], true, "{v} {profile}: {spec}");
                assert_eq!(spec["volumes"][0]["hostPath"]["path"], "/", "{v} {profile}");
            }
        }
    }
}
