//! Authorization end to end: the real `daas-enclave --dev` and real kubectl
//! 1.27 and 1.33 (each in its own namespace, in parallel). Users get
//! exactly what their Roles and bindings grant, with upstream's 403
//! messages byte for byte; a policy change counts from the next request;
//! impersonation and escalation are checked; a user gets a client
//! certificate through a CertificateSigningRequest; the default policy is
//! reconciled on restart (honouring `autoupdate: "false"`) and aggregated;
//! audit events are sealed and readable by admins only.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;

use std::path::PathBuf;

use common::{Enclave, Kubectl, eventually, kubectl_versions};

/// kubectl 1.27 and 1.33 (the oldest and newest installed).
fn two_versions() -> Vec<(String, PathBuf)> {
    let all = kubectl_versions();
    let mut out = Vec::new();
    for v in ["1.27", "1.33"] {
        if let Some(x) = all.iter().find(|(l, _)| l == v) {
            out.push(x.clone());
        }
    }
    assert_eq!(out.len(), 2, "kubectl 1.27 and 1.33 are installed: {all:?}");
    out
}

/// Runs `f(admin, version label)` for both versions in parallel.
fn for_both(e: &Enclave, f: impl Fn(&Kubectl<'_>, &str) + Sync) {
    let versions = two_versions();
    std::thread::scope(|s| {
        let handles: Vec<_> = versions
            .iter()
            .map(|(v, bin)| {
                let f = &f;
                s.spawn(move || f(&Kubectl::new(v, bin, e), v))
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// kubectl fails with exactly this error line.
fn fails_with(k: &Kubectl<'_>, args: &[&str], stdin: Option<&str>, want: &str) {
    let out = k.run_stdin(args, stdin);
    let err = stderr(&out);
    assert!(!out.status.success(), "{} {args:?} should fail", k.version);
    assert!(
        err.lines().any(|l| l == want),
        "{} {args:?}: want the line\n{want}\ngot:\n{err}",
        k.version
    );
}

/// A token for service account `ns/name`, as `kubectl create token` makes it.
fn token(k: &Kubectl<'_>, ns: &str, name: &str, extra: &[&str]) -> String {
    let mut args = vec!["-n", ns, "create", "token", name];
    args.extend_from_slice(extra);
    k.ok(&args).trim().to_string()
}

fn version_ns(v: &str) -> String {
    format!("authz-{}", v.replace('.', "-"))
}

#[test]
fn rbac_users_get_exactly_their_rights_with_upstream_messages() {
    let e = Enclave::start();
    for_both(&e, |k, v| {
        let ns = version_ns(v);
        let n = ns.as_str();
        k.ok(&["create", "namespace", n]);
        k.ok(&["-n", n, "create", "serviceaccount", "alice"]);
        k.ok(&["-n", n, "create", "configmap", "c1", "--from-literal=a=b"]);
        k.ok(&[
            "-n",
            n,
            "create",
            "role",
            "cm-reader",
            "--verb=get,list,watch",
            "--resource=configmaps",
        ]);
        k.ok(&[
            "-n",
            n,
            "create",
            "rolebinding",
            "alice-cm",
            "--role=cm-reader",
            &format!("--serviceaccount={n}:alice"),
        ]);
        let t = token(k, n, "alice", &[]);
        let cfg = e.token_kubeconfig(&format!("alice-{v}"), &t);
        let u = Kubectl::with_kubeconfig(v, &k_bin(v), &e, &cfg);
        let user = format!("system:serviceaccount:{n}:alice");
        assert!(u.ok(&["-n", n, "get", "configmaps"]).contains("c1"), "{v}");
        assert!(
            u.ok(&["-n", n, "get", "configmap", "c1", "-o", "name"])
                .contains("configmap/c1")
        );
        fails_with(
            &u,
            &["-n", n, "get", "pods"],
            None,
            &format!(
                r#"Error from server (Forbidden): pods is forbidden: User "{user}" cannot list resource "pods" in API group "" in the namespace "{n}""#
            ),
        );
        fails_with(
            &u,
            &["-n", "default", "get", "configmaps"],
            None,
            &format!(
                r#"Error from server (Forbidden): configmaps is forbidden: User "{user}" cannot list resource "configmaps" in API group "" in the namespace "default""#
            ),
        );
        fails_with(
            &u,
            &["-n", n, "delete", "configmap", "c1"],
            None,
            &format!(
                r#"Error from server (Forbidden): configmaps "c1" is forbidden: User "{user}" cannot delete resource "configmaps" in API group "" in the namespace "{n}""#
            ),
        );
        fails_with(
            &u,
            &["get", "namespaces"],
            None,
            &format!(
                r#"Error from server (Forbidden): namespaces is forbidden: User "{user}" cannot list resource "namespaces" in API group "" at the cluster scope"#
            ),
        );
        // The body is upstream's, byte for byte.
        let (code, body) = e.curl(
            &format!("/api/v1/namespaces/{n}/pods"),
            &["-H", &format!("Authorization: Bearer {t}")],
        );
        assert_eq!(code, 403);
        assert_eq!(
            body,
            format!(
                r#"{{"kind":"Status","apiVersion":"v1","metadata":{{}},"status":"Failure","message":"pods is forbidden: User \"{user}\" cannot list resource \"pods\" in API group \"\" in the namespace \"{n}\"","reason":"Forbidden","details":{{"kind":"pods"}},"code":403}}"#
            )
        );
        let (code, body) = e.curl("/metrics", &["-H", &format!("Authorization: Bearer {t}")]);
        assert_eq!(code, 403);
        assert!(
            body.contains(&format!(
                r#""message":"forbidden: User \"{user}\" cannot get path \"/metrics\"""#
            )),
            "{body}"
        );
        // can-i from the real rules.
        assert_eq!(
            u.ok(&["-n", n, "auth", "can-i", "list", "configmaps"]),
            "yes\n"
        );
        let out = u.run(&["-n", n, "auth", "can-i", "delete", "configmaps"]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "no\n", "{v}");
        let list = u.ok(&["-n", n, "auth", "can-i", "--list"]);
        let line = list
            .lines()
            .find(|l| l.starts_with("configmaps "))
            .unwrap_or_else(|| panic!("{list}"));
        assert!(line.ends_with("[get list watch]"), "{line}");
        assert!(
            list.contains("selfsubjectaccessreviews.authorization.k8s.io"),
            "{list}"
        );
        assert!(!list.contains("pods"), "{list}");
        assert_eq!(
            k.ok(&[
                "auth",
                "can-i",
                "--as",
                &user,
                "-n",
                n,
                "watch",
                "configmaps"
            ]),
            "yes\n"
        );
        // A policy change counts from the very next request, also for a
        // client whose watch was open before: its next re-list is refused.
        let mut watch = u.spawn(&["-n", n, "get", "configmaps", "-w", "--request-timeout=0"]);
        k.ok(&["-n", n, "delete", "rolebinding", "alice-cm"]);
        fails_with(
            &u,
            &["-n", n, "get", "configmaps"],
            None,
            &format!(
                r#"Error from server (Forbidden): configmaps is forbidden: User "{user}" cannot list resource "configmaps" in API group "" in the namespace "{n}""#
            ),
        );
        let _ = watch.kill();
        let _ = watch.wait();
        k.ok(&[
            "-n",
            n,
            "create",
            "rolebinding",
            "alice-cm",
            "--role=cm-reader",
            &format!("--serviceaccount={n}:alice"),
        ]);
        assert!(u.ok(&["-n", n, "get", "configmaps"]).contains("c1"));
        // A binding to a missing role explains itself in the reason.
        k.ok(&[
            "-n",
            n,
            "create",
            "rolebinding",
            "dangling",
            "--role=missing",
            &format!("--serviceaccount={n}:alice"),
        ]);
        let (code, body) = e.curl(
            &format!("/api/v1/namespaces/{n}/secrets"),
            &["-H", &format!("Authorization: Bearer {t}")],
        );
        assert_eq!(code, 403);
        assert!(
            body.contains(r#"in the namespace \"authz-"#)
                && body
                    .contains(r#": RBAC: role.rbac.authorization.k8s.io \"missing\" not found""#),
            "{body}"
        );
    });
}

fn k_bin(v: &str) -> PathBuf {
    two_versions()
        .into_iter()
        .find(|(l, _)| l == v)
        .map(|(_, p)| p)
        .unwrap()
}

#[test]
fn impersonation_and_escalation_are_checked() {
    let e = Enclave::start();
    for_both(&e, |k, v| {
        let ns = version_ns(v);
        let n = ns.as_str();
        k.ok(&["create", "namespace", n]);
        k.ok(&["-n", n, "create", "serviceaccount", "bob"]);
        let user = format!("system:serviceaccount:{n}:bob");
        // --as, --as-group and --as-uid by the admin.
        let who = k.ok(&[
            "auth",
            "whoami",
            "--as",
            "carol",
            "--as-group",
            "devs",
            "--as-uid",
            "u-1",
        ]);
        assert!(
            who.contains("carol") && who.contains("devs") && who.contains("u-1"),
            "{who}"
        );
        assert!(who.contains("system:authenticated"), "{who}");
        fails_with(
            k,
            &["-n", n, "get", "pods", "--as", "carol"],
            None,
            &format!(
                r#"Error from server (Forbidden): pods is forbidden: User "carol" cannot list resource "pods" in API group "" in the namespace "{n}""#
            ),
        );
        // bob may manage roles and bindings but holds nothing else.
        k.ok(&[
            "-n",
            n,
            "create",
            "role",
            "rbac-editor",
            "--verb=create,get,list,update,patch,delete",
            "--resource=roles,rolebindings",
        ]);
        k.ok(&[
            "-n",
            n,
            "create",
            "rolebinding",
            "bob-rbac",
            "--role=rbac-editor",
            &format!("--serviceaccount={n}:bob"),
        ]);
        let cfg = e.token_kubeconfig(&format!("bob-{v}"), &token(k, n, "bob", &[]));
        let u = Kubectl::with_kubeconfig(v, &k_bin(v), &e, &cfg);
        // kubectl's discovery reads a 403 body as "unknown", as it does
        // against kube-apiserver; the body says why.
        fails_with(
            &u,
            &["get", "pods", "--as", "carol"],
            None,
            "Error from server (Forbidden): unknown",
        );
        let bob_token = token(k, n, "bob", &[]);
        let (code, body) = e.curl(
            "/api",
            &[
                "-H",
                &format!("Authorization: Bearer {bob_token}"),
                "-H",
                "Impersonate-User: carol",
            ],
        );
        assert_eq!(code, 403);
        assert_eq!(
            body,
            format!(
                r#"{{"kind":"Status","apiVersion":"v1","metadata":{{}},"status":"Failure","message":"users \"carol\" is forbidden: User \"{user}\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope","reason":"Forbidden","details":{{"name":"carol","kind":"users"}},"code":403}}"#
            )
        );
        let role = format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: esc, namespace: {n}}}\nrules:\n- {{apiGroups: [''], resources: [pods, secrets], verbs: [get, list]}}\n"
        );
        let held = format!(
            r#"user "{user}" (groups=["system:serviceaccounts" "system:serviceaccounts:{n}" "system:authenticated"]) is attempting to grant RBAC permissions not currently held:"#
        );
        let out = u.run_stdin(&["create", "-f", "-"], Some(&role));
        let err = stderr(&out);
        assert!(!out.status.success());
        assert!(
            err.contains(&format!(
                "Error from server (Forbidden): error when creating \"STDIN\": roles.rbac.authorization.k8s.io \"esc\" is forbidden: {held}\n{{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"get\" \"list\"]}}\n{{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"list\"]}}"
            )),
            "{v}: {err}"
        );
        let out = u.run(&[
            "-n",
            n,
            "create",
            "rolebinding",
            "take",
            "--clusterrole=cluster-admin",
            &format!("--serviceaccount={n}:bob"),
        ]);
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "rolebindings.rbac.authorization.k8s.io \"take\" is forbidden: {held}\n{{APIGroups:[\"*\"], Resources:[\"*\"], Verbs:[\"*\"]}}\n{{NonResourceURLs:[\"*\"], Verbs:[\"*\"]}}"
            )),
            "{v}: {err}"
        );
        // With escalate, and with bind, the same requests pass.
        k.ok(&[
            "-n",
            n,
            "create",
            "role",
            "escalator",
            "--verb=escalate",
            "--resource=roles",
        ]);
        k.ok(&[
            "-n",
            n,
            "create",
            "rolebinding",
            "bob-esc",
            "--role=escalator",
            &format!("--serviceaccount={n}:bob"),
        ]);
        u.ok_stdin(&["create", "-f", "-"], Some(&role));
        k.ok(&[
            "-n",
            n,
            "create",
            "role",
            "binder",
            "--verb=bind",
            "--resource=clusterroles",
            "--resource-name=view",
        ]);
        k.ok(&[
            "-n",
            n,
            "create",
            "rolebinding",
            "bob-bind",
            "--role=binder",
            &format!("--serviceaccount={n}:bob"),
        ]);
        u.ok(&[
            "-n",
            n,
            "create",
            "rolebinding",
            "viewers",
            "--clusterrole=view",
            "--group=viewers",
        ]);
        // A user allowed to impersonate one service account may act as it.
        k.ok(&[
            "-n",
            n,
            "create",
            "role",
            "imp",
            "--verb=impersonate",
            "--resource=serviceaccounts",
            "--resource-name=helper",
        ]);
        k.ok(&["-n", n, "create", "serviceaccount", "helper"]);
        k.ok(&[
            "-n",
            n,
            "create",
            "rolebinding",
            "bob-imp",
            "--role=imp",
            &format!("--serviceaccount={n}:bob"),
        ]);
        let who = u.ok(&[
            "auth",
            "whoami",
            "--as",
            &format!("system:serviceaccount:{n}:helper"),
        ]);
        assert!(
            who.contains(&format!("system:serviceaccount:{n}:helper")),
            "{who}"
        );
        assert!(
            who.contains(&format!("system:serviceaccounts:{n}")),
            "{who}"
        );
        let (code, body) = e.curl(
            "/api",
            &[
                "-H",
                &format!("Authorization: Bearer {bob_token}"),
                "-H",
                &format!("Impersonate-User: system:serviceaccount:{n}:bob"),
            ],
        );
        assert_eq!(code, 403);
        assert!(
            body.contains(&format!(
                r#""message":"serviceaccounts \"bob\" is forbidden: User \"{user}\" cannot impersonate resource \"serviceaccounts\" in API group \"\" in the namespace \"{n}\"""#
            )),
            "{body}"
        );
        let (code, body) = e.curl(
            "/api",
            &[
                "-H",
                &format!("Authorization: Bearer {bob_token}"),
                "-H",
                "Impersonate-Group: devs",
            ],
        );
        assert_eq!(code, 400, "{body}");
        assert!(body.contains("without impersonating a user"), "{body}");
    });
}

/// A PEM key and CSR for `cn` in `orgs`.
fn csr_for(cn: &str, orgs: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    for o in orgs {
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, *o);
    }
    let csr = p.serialize_request(&key).unwrap().pem().unwrap();
    (key.serialize_pem(), csr)
}

fn csr_object(name: &str, csr_pem: &str, usages: &str) -> String {
    use base64::Engine;
    format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {{name: {name}}}\nspec:\n  request: {}\n  signerName: kubernetes.io/kube-apiserver-client\n  expirationSeconds: 86400\n  usages: [{usages}]\n",
        base64::engine::general_purpose::STANDARD.encode(csr_pem)
    )
}

#[test]
fn users_get_client_certificates_through_csr_approve_and_deny() {
    let e = Enclave::start();
    for_both(&e, |k, v| {
        let name = format!("dave-{}", v.replace('.', "-"));
        let (key, csr) = csr_for(&name, &["devs"]);
        k.ok_stdin(
            &["create", "-f", "-"],
            Some(&csr_object(&name, &csr, "client auth")),
        );
        let listed = k.ok(&["get", "csr", &name]);
        assert!(
            listed.contains("kubernetes.io/kube-apiserver-client")
                && listed.contains("admin")
                && listed.contains("24h")
                && listed.contains("Pending"),
            "{listed}"
        );
        assert!(
            k.ok(&["certificate", "approve", &name])
                .contains("approved")
        );
        let cert = eventually("the certificate is issued", || {
            let c = k.ok(&["get", "csr", &name, "-o", "jsonpath={.status.certificate}"]);
            (!c.trim().is_empty()).then_some(c)
        });
        use base64::Engine;
        let cert = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(cert.trim())
                .unwrap(),
        )
        .unwrap();
        assert!(k.ok(&["get", "csr", &name]).contains("Approved,Issued"));
        let cfg = e.cert_kubeconfig(&name, &cert, &key);
        let u = Kubectl::with_kubeconfig(v, &k_bin(v), &e, &cfg);
        let who = u.ok(&["auth", "whoami"]);
        assert!(who.contains(&name) && who.contains("devs"), "{who}");
        fails_with(
            &u,
            &["get", "nodes"],
            None,
            &format!(
                r#"Error from server (Forbidden): nodes is forbidden: User "{name}" cannot list resource "nodes" in API group "" at the cluster scope"#
            ),
        );
        k.ok(&[
            "create",
            "clusterrolebinding",
            &name,
            "--clusterrole=view",
            &format!("--user={name}"),
        ]);
        u.ok(&["get", "namespaces"]);
        // Denied requests get no certificate.
        let denied = format!("{name}-denied");
        let (_, csr2) = csr_for(&denied, &[]);
        k.ok_stdin(
            &["create", "-f", "-"],
            Some(&csr_object(&denied, &csr2, "client auth")),
        );
        assert!(k.ok(&["certificate", "deny", &denied]).contains("denied"));
        assert!(k.ok(&["get", "csr", &denied]).contains("Denied"));
        // Approving needs `approve` on the signer, not only the approval subresource.
        let pending = format!("{name}-pending");
        let (_, csr5) = csr_for(&pending, &[]);
        k.ok_stdin(
            &["create", "-f", "-"],
            Some(&csr_object(&pending, &csr5, "client auth")),
        );
        k.ok(&[
            "create",
            "clusterrole",
            &format!("{name}-approver"),
            "--verb=get,list,update",
            "--resource=certificatesigningrequests,certificatesigningrequests/approval",
        ]);
        k.ok(&[
            "create",
            "clusterrolebinding",
            &format!("{name}-approver"),
            &format!("--clusterrole={name}-approver"),
            &format!("--user={name}"),
        ]);
        fails_with(
            &u,
            &["certificate", "approve", &pending],
            None,
            &format!(
                r#"Error from server (Forbidden): certificatesigningrequests.certificates.k8s.io "{pending}" is forbidden: user not permitted to approve requests with signerName "kubernetes.io/kube-apiserver-client""#
            ),
        );
        k.ok(&[
            "create",
            "clusterrolebinding",
            &format!("{name}-signer"),
            "--clusterrole=system:certificates.k8s.io:kube-apiserver-client-approver",
            &format!("--user={name}"),
        ]);
        assert!(
            u.ok(&["certificate", "approve", &pending])
                .contains("approved")
        );
        // Wrong usages fail in the signer; system:masters is refused outright.
        let bad = format!("{name}-server");
        let (_, csr3) = csr_for(&bad, &[]);
        k.ok_stdin(
            &["create", "-f", "-"],
            Some(&csr_object(&bad, &csr3, "server auth, client auth")),
        );
        k.ok(&["certificate", "approve", &bad]);
        eventually("the request fails", || {
            k.ok(&["get", "csr", &bad])
                .contains("Approved,Failed")
                .then_some(())
        });
        let masters = format!("{name}-masters");
        let (_, csr4) = csr_for(&masters, &["system:masters"]);
        let out = k.run_stdin(
            &["create", "-f", "-"],
            Some(&csr_object(&masters, &csr4, "client auth")),
        );
        assert!(
            stderr(&out).contains(&format!(r#"certificatesigningrequests.certificates.k8s.io "{masters}" is forbidden: use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"#)),
            "{}",
            stderr(&out)
        );
    });
}

#[test]
fn the_default_policy_is_reconciled_on_restart_and_aggregated() {
    let e = Enclave::start();
    let k = {
        let (v, bin) = two_versions().pop().unwrap();
        Kubectl::new(&v, &bin, &e)
    };
    let roles = k.ok(&["get", "clusterroles", "-o", "name"]);
    for want in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:basic-user",
        "system:discovery",
        "system:public-info-viewer",
        "system:node",
        "system:kube-scheduler",
        "system:controller:deployment-controller",
    ] {
        assert!(
            roles
                .lines()
                .any(|l| l == format!("clusterrole.rbac.authorization.k8s.io/{want}")),
            "{want}: {roles}"
        );
    }
    let view = k.ok(&["get", "clusterrole", "view", "-o", "json"]);
    assert!(
        view.contains("\"configmaps\"")
            && view.contains("\"rbac.authorization.k8s.io/aggregate-to-edit\": \"true\""),
        "{view}"
    );
    let edit = k.ok(&["get", "clusterrole", "edit", "-o", "json"]);
    assert!(
        edit.contains("\"pods/exec\""),
        "edit aggregates aggregate-to-edit and view: {edit}"
    );
    // A new role labelled aggregate-to-view reaches view, edit and admin.
    k.ok_stdin(
        &["apply", "-f", "-"],
        Some("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: widget-viewer, labels: {rbac.authorization.k8s.io/aggregate-to-view: 'true'}}\nrules:\n- {apiGroups: [example.com], resources: [widgets], verbs: [get]}\n"),
    );
    for role in ["view", "edit", "admin"] {
        eventually(&format!("{role} aggregates widgets"), || {
            k.ok(&["get", "clusterrole", role, "-o", "json"])
                .contains("\"widgets\"")
                .then_some(())
        });
    }
    // A user's change to a default role is kept (rules added back, not removed).
    k.ok(&["patch", "clusterrole", "system:basic-user", "--type=json", "-p", r#"[{"op":"replace","path":"/rules","value":[{"apiGroups":["example.com"],"resources":["mine"],"verbs":["get"]}]}]"#]);
    k.ok(&[
        "patch",
        "clusterrole",
        "system:public-info-viewer",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/rules","value":[]}]"#,
    ]);
    k.ok(&[
        "annotate",
        "--overwrite",
        "clusterrole",
        "system:public-info-viewer",
        "rbac.authorization.kubernetes.io/autoupdate=false",
    ]);
    k.ok(&["delete", "clusterrolebinding", "system:discovery"]);
    let dir = e.stop();
    let e = Enclave::start_in(dir);
    let k = {
        let (v, bin) = two_versions().pop().unwrap();
        Kubectl::new(&v, &bin, &e)
    };
    let basic = k.ok(&["get", "clusterrole", "system:basic-user", "-o", "json"]);
    assert!(
        basic.contains("\"mine\"") && basic.contains("selfsubjectaccessreviews"),
        "{basic}"
    );
    let public = k.ok(&[
        "get",
        "clusterrole",
        "system:public-info-viewer",
        "-o",
        "jsonpath={.rules}",
    ]);
    assert!(
        matches!(public.trim(), "" | "[]"),
        "autoupdate=false keeps the user's empty rules: {public}"
    );
    assert!(
        k.ok(&["get", "clusterrolebinding", "system:discovery"])
            .contains("system:discovery")
    );
    // Without public-info-viewer, anonymous /version is now forbidden.
    let (code, body) = e.curl("/version", &[]);
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains(r#"forbidden: User \"system:anonymous\" cannot get path \"/version\""#),
        "{body}"
    );
}

const AUDIT_POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: None
  nonResourceURLs: ["/healthz*", "/version", "/openapi*", "/api", "/api/*", "/apis", "/apis/*"]
- level: RequestResponse
  resources:
  - group: ""
    resources: ["configmaps"]
- level: Metadata
"#;

#[test]
fn audit_events_are_sealed_and_readable_by_admins_only() {
    let policy_dir = tempfile::tempdir().unwrap();
    let policy = policy_dir.path().join("audit.yaml");
    std::fs::write(&policy, AUDIT_POLICY).unwrap();
    let e = Enclave::start_with(&["--audit-policy-file", policy.to_str().unwrap()]);
    let (v, bin) = two_versions().pop().unwrap();
    let k = Kubectl::new(&v, &bin, &e);
    k.ok(&[
        "create",
        "configmap",
        "audited-secret-name",
        "--from-literal=k=visible-only-in-the-enclave",
    ]);
    k.ok(&["create", "serviceaccount", "eve"]);
    let cfg = e.token_kubeconfig("eve", &token(&k, "default", "eve", &[]));
    let u = Kubectl::with_kubeconfig(&v, &bin, &e, &cfg);
    let _ = u.run(&["get", "secrets"]);
    let lines = eventually("audit events are written", || {
        let out = k.ok(&["get", "--raw", "/audit/events"]);
        out.contains("\"forbid\"").then_some(out)
    });
    let events: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let create = events
        .iter()
        .find(|ev| ev["verb"] == "create" && ev["objectRef"]["resource"] == "configmaps")
        .unwrap_or_else(|| panic!("{lines}"));
    assert_eq!(create["level"], "RequestResponse");
    assert_eq!(create["stage"], "ResponseComplete");
    assert_eq!(create["user"]["username"], "admin");
    assert_eq!(create["responseStatus"]["code"], 201);
    assert_eq!(
        create["requestObject"]["data"]["k"],
        "visible-only-in-the-enclave"
    );
    assert_eq!(
        create["responseObject"]["metadata"]["name"],
        "audited-secret-name"
    );
    assert_eq!(
        create["annotations"]["authorization.k8s.io/decision"],
        "allow"
    );
    let denied = events
        .iter()
        .find(|ev| ev["annotations"]["authorization.k8s.io/decision"] == "forbid")
        .unwrap();
    assert_eq!(
        denied["user"]["username"],
        "system:serviceaccount:default:eve"
    );
    assert_eq!(denied["level"], "Metadata");
    assert_eq!(denied["responseStatus"]["code"], 403);
    assert_eq!(denied["objectRef"]["resource"], "secrets");
    assert!(
        events
            .iter()
            .all(|ev| ev["apiVersion"] == "audit.k8s.io/v1" && ev["kind"] == "Event")
    );
    assert!(
        !lines.contains("\"/version\""),
        "the policy's None rules hold"
    );
    // Only admins read the log.
    let out = u.run(&["get", "--raw", "/audit/events"]);
    assert!(
        stderr(&out).contains(r#"Error from server (Forbidden): forbidden: User "system:serviceaccount:default:eve" cannot get path "/audit/events""#),
        "{}",
        stderr(&out)
    );
    // Nothing the host keeps shows who did what in plaintext.
    for entry in walk(e.dir.path()) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        for secret in [
            "visible-only-in-the-enclave",
            "system:serviceaccount:default:eve",
        ] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds {secret} in plaintext",
                entry.display()
            );
        }
    }
    // The log survives a restart (it is part of the sealed state).
    let dir = e.stop();
    let e = Enclave::start_in_with(dir, &["--audit-policy-file", policy.to_str().unwrap()]);
    let k = Kubectl::new(&v, &bin, &e);
    assert!(
        k.ok(&["get", "--raw", "/audit/events"])
            .contains("audited-secret-name")
    );
}

/// Every file under `dir`, recursively, except the client kubeconfigs the
/// tests wrote (they hold tokens by design).
fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if !p.to_string_lossy().ends_with(".kubeconfig") {
            out.push(p);
        }
    }
    out
}
