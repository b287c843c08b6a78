//! Service-account identity end to end, with the real `daas-enclave --dev`
//! and real kubectl 1.27 and 1.33: `kubectl create token` (audiences,
//! expiry, bound to a pod or secret), TokenReview, OIDC discovery that
//! verifies the tokens, legacy token Secrets only when asked for; forged,
//! expired, wrong-audience, revoked and other clusters' tokens get 401. The
//! ServiceAccount admission plugin gives pods the default account and the
//! projected `kube-api-access-*` volume, and a pod's token has exactly its
//! account's rights; PodSecurity enforces, warns and audits per namespace
//! label with upstream's texts.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;

use std::path::PathBuf;

use base64::Engine;
use common::{Enclave, Kubectl, eventually, kubectl_versions};
use serde_json::{Value, json};

fn two_versions() -> Vec<(String, PathBuf)> {
    let all = kubectl_versions();
    let out: Vec<_> = ["1.27", "1.33"]
        .iter()
        .filter_map(|v| all.iter().find(|(l, _)| l == v).cloned())
        .collect();
    assert_eq!(out.len(), 2, "kubectl 1.27 and 1.33 are installed: {all:?}");
    out
}

fn for_both(e: &Enclave, f: impl Fn(&Kubectl<'_>, &str, &PathBuf) + Sync) {
    let versions = two_versions();
    std::thread::scope(|s| {
        let hs: Vec<_> = versions
            .iter()
            .map(|(v, bin)| {
                let f = &f;
                s.spawn(move || f(&Kubectl::new(v, bin, e), v, bin))
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn json_of(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// GET `path` with `token`; the status code.
fn code_with(e: &Enclave, path: &str, token: &str) -> u16 {
    e.curl(path, &["-H", &format!("Authorization: Bearer {token}")])
        .0
}

fn ns_for(v: &str) -> String {
    format!("tok-{}", v.replace('.', "-"))
}

#[test]
fn service_account_tokens_are_verified_bound_and_revoked() {
    let e = Enclave::start();
    let other = Enclave::start();
    for_both(&e, |k, v, bin| {
        let ns = ns_for(v);
        let n = ns.as_str();
        k.ok(&["create", "namespace", n]);
        k.ok(&["-n", n, "create", "serviceaccount", "app"]);
        k.ok(&[
            "-n",
            n,
            "create",
            "rolebinding",
            "app-view",
            "--clusterrole=view",
            &format!("--serviceaccount={n}:app"),
        ]);
        let cms = format!("/api/v1/namespaces/{n}/configmaps");
        let t = k
            .ok(&["-n", n, "create", "token", "app", "--duration=15m"])
            .trim()
            .to_string();
        assert_eq!(code_with(&e, &cms, &t), 200);
        assert_eq!(
            code_with(&e, &format!("/api/v1/namespaces/{n}/secrets"), &t),
            403
        );
        let claims = jwt_claims(&t);
        assert_eq!(claims["sub"], format!("system:serviceaccount:{n}:app"));
        assert_eq!(
            claims["aud"],
            json!(["https://kubernetes.default.svc.cluster.local"])
        );
        let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
        assert_eq!(lifetime, 900, "{claims}");
        // kubectl as the token's user sees exactly the view role.
        let cfg = e.token_kubeconfig(&format!("app-{v}"), &t);
        let u = Kubectl::with_kubeconfig(v, bin, &e, &cfg);
        u.ok(&["-n", n, "get", "configmaps"]);
        let who = u.ok(&["auth", "whoami"]);
        assert!(
            who.contains(&format!("system:serviceaccount:{n}:app"))
                && who.contains("credential-id"),
            "{who}"
        );
        // Another audience is not for the API.
        let other_aud = k
            .ok(&["-n", n, "create", "token", "app", "--audience=vault"])
            .trim()
            .to_string();
        assert_eq!(code_with(&e, &cms, &other_aud), 401);
        // TokenReview: the API's audiences by default, or the ones asked for.
        let review = |token: &str, auds: Value| {
            let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token, "audiences": auds}});
            json_of(&k.ok_stdin(
                &["create", "-o", "json", "-f", "-"],
                Some(&body.to_string()),
            ))
        };
        let r = review(&t, json!([]));
        assert_eq!(r["status"]["authenticated"], true, "{r}");
        assert_eq!(
            r["status"]["user"]["username"],
            format!("system:serviceaccount:{n}:app")
        );
        assert!(
            r["status"]["user"]["groups"]
                .as_array()
                .unwrap()
                .contains(&json!(format!("system:serviceaccounts:{n}")))
        );
        let r = review(&other_aud, json!(["vault"]));
        assert_eq!(r["status"]["authenticated"], true, "{r}");
        assert_eq!(r["status"]["audiences"], json!(["vault"]));
        let r = review(&other_aud, json!([]));
        assert_eq!(r["status"].get("authenticated"), None, "{r}");
        assert!(
            r["status"]["error"].as_str().unwrap().contains("audiences"),
            "{r}"
        );
        // Forged: claims changed, or signed by another cluster.
        let (h, rest) = t.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let mut evil = jwt_claims(&t);
        evil["sub"] = json!("system:serviceaccount:kube-system:default");
        let forged = format!("{h}.{}.{sig}", b64url(&evil.to_string()));
        assert_eq!(code_with(&e, &cms, &forged), 401);
        let foreign = Kubectl::new(v, bin, &other);
        foreign.ok(&["create", "namespace", n]);
        foreign.ok(&["-n", n, "create", "serviceaccount", "app"]);
        let foreign_token = foreign
            .ok(&["-n", n, "create", "token", "app"])
            .trim()
            .to_string();
        assert_eq!(
            code_with(
                &other,
                &format!("/api/v1/namespaces/{n}/serviceaccounts"),
                &foreign_token
            ),
            403
        );
        assert_eq!(
            code_with(&e, &cms, &foreign_token),
            401,
            "another cluster's token"
        );
        // Bound to a pod: deleting the pod revokes it at once.
        k.ok(&[
            "-n",
            n,
            "run",
            "holder",
            "--image=nginx",
            "--overrides",
            r#"{"spec":{"serviceAccountName":"app"}}"#,
        ]);
        let bound = k
            .ok(&[
                "-n",
                n,
                "create",
                "token",
                "app",
                "--bound-object-kind=Pod",
                "--bound-object-name=holder",
            ])
            .trim()
            .to_string();
        let c = jwt_claims(&bound);
        assert_eq!(c["kubernetes.io"]["pod"]["name"], "holder");
        assert_eq!(code_with(&e, &cms, &bound), 200);
        k.ok(&[
            "-n",
            n,
            "delete",
            "pod",
            "holder",
            "--grace-period=0",
            "--force",
        ]);
        assert_eq!(code_with(&e, &cms, &bound), 401, "the pod is gone");
        // Bound to a secret likewise.
        k.ok(&[
            "-n",
            n,
            "create",
            "secret",
            "generic",
            "anchor",
            "--from-literal=a=b",
        ]);
        let bound = k
            .ok(&[
                "-n",
                n,
                "create",
                "token",
                "app",
                "--bound-object-kind=Secret",
                "--bound-object-name=anchor",
            ])
            .trim()
            .to_string();
        assert_eq!(code_with(&e, &cms, &bound), 200);
        k.ok(&["-n", n, "delete", "secret", "anchor"]);
        assert_eq!(code_with(&e, &cms, &bound), 401, "the secret is gone");
        let out = k.run(&[
            "-n",
            n,
            "create",
            "token",
            "app",
            "--bound-object-kind=Pod",
            "--bound-object-name=nope",
        ]);
        assert!(
            stderr(&out).contains(r#"pods "nope" not found"#),
            "{}",
            stderr(&out)
        );
        let out = k.run(&["-n", n, "create", "token", "app", "--duration=5m"]);
        assert!(
            stderr(&out).contains("spec.expirationSeconds: Invalid value: 300: may not specify a duration less than 10 minutes"),
            "{}",
            stderr(&out)
        );
        // A legacy token, only because a Secret asks for one.
        assert_eq!(
            k.ok(&[
                "-n",
                n,
                "get",
                "serviceaccount",
                "app",
                "-o",
                "jsonpath={.secrets}"
            ])
            .trim(),
            ""
        );
        k.ok_stdin(
            &["apply", "-f", "-"],
            Some(&format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: app-token, namespace: {n}, annotations: {{kubernetes.io/service-account.name: app}}}}\ntype: kubernetes.io/service-account-token\n")),
        );
        let legacy = eventually("the legacy token is filled in", || {
            let t = k.ok(&[
                "-n",
                n,
                "get",
                "secret",
                "app-token",
                "-o",
                "jsonpath={.data.token}",
            ]);
            (!t.trim().is_empty()).then(|| {
                String::from_utf8(
                    base64::engine::general_purpose::STANDARD
                        .decode(t.trim())
                        .unwrap(),
                )
                .unwrap()
            })
        });
        assert_eq!(jwt_claims(&legacy)["iss"], "kubernetes/serviceaccount");
        assert_eq!(code_with(&e, &cms, &legacy), 200);
        k.ok(&["-n", n, "delete", "secret", "app-token"]);
        assert_eq!(
            code_with(&e, &cms, &legacy),
            401,
            "deleting the Secret revokes it"
        );
        // Deleting the account revokes every token of it.
        assert_eq!(code_with(&e, &cms, &t), 200);
        k.ok(&["-n", n, "delete", "serviceaccount", "app"]);
        assert_eq!(code_with(&e, &cms, &t), 401);
    });
}

fn b64url(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn jwt_part(t: &str, i: usize) -> Value {
    let part = t.split('.').nth(i).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

fn jwt_claims(t: &str) -> Value {
    jwt_part(t, 1)
}

#[test]
fn expired_tokens_are_refused_and_oidc_discovery_verifies_tokens() {
    let e = Enclave::start();
    let (v, bin) = two_versions().pop().unwrap();
    let k = Kubectl::new(&v, &bin, &e);
    k.ok(&["create", "serviceaccount", "oidc"]);
    let t = k.ok(&["create", "token", "oidc"]).trim().to_string();
    // Discovery is for service accounts (system:service-account-issuer-discovery).
    assert_eq!(e.curl("/.well-known/openid-configuration", &[]).0, 401);
    let (code, doc) = e.curl(
        "/.well-known/openid-configuration",
        &["-H", &format!("Authorization: Bearer {t}")],
    );
    assert_eq!(code, 200, "{doc}");
    let doc = json_of(&doc);
    assert_eq!(
        doc["issuer"],
        "https://kubernetes.default.svc.cluster.local"
    );
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["ES256"])
    );
    assert!(
        doc["jwks_uri"]
            .as_str()
            .unwrap()
            .ends_with("/openid/v1/jwks")
    );
    let (code, jwks) = e.curl(
        "/openid/v1/jwks",
        &["-H", &format!("Authorization: Bearer {t}")],
    );
    assert_eq!(code, 200);
    let key = json_of(&jwks)["keys"][0].clone();
    assert_eq!(key["kid"], jwt_part(&t, 0)["kid"]);
    // Anyone outside can verify a token with the published key.
    let coord = |k: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(key[k].as_str().unwrap())
            .unwrap()
    };
    let mut point = vec![4u8];
    point.extend(coord("x"));
    point.extend(coord("y"));
    let (signed, sig) = t.rsplit_once('.').unwrap();
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .unwrap();
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &point)
        .verify(signed.as_bytes(), &sig)
        .expect("the token verifies with the published key");
    // A token that expired (signed with this cluster's own key, derived
    // from its root secret as the enclave does) is refused.
    let root =
        attestation::RootSecret::load_or_create_dev_file(&e.dir.path().join("root-secret.dev"))
            .unwrap();
    let keys = enclave::auth::keys::ClusterKeys::derive(&root, attestation::Mode::Dev).unwrap();
    let mut claims = jwt_claims(&t);
    let now = claims["iat"].as_i64().unwrap();
    claims["iat"] = json!(now - 7200);
    claims["nbf"] = json!(now - 7200);
    claims["exp"] = json!(now - 3600);
    let expired = enclave::auth::jwt::sign(&keys.service_accounts, &claims).unwrap();
    assert_eq!(
        code_with(&e, "/api/v1/namespaces/default/serviceaccounts", &expired),
        401
    );
    claims["exp"] = json!(now + 3600);
    let fresh = enclave::auth::jwt::sign(&keys.service_accounts, &claims).unwrap();
    assert_ne!(
        code_with(&e, "/api/v1/namespaces/default/serviceaccounts", &fresh),
        401,
        "the same claims in date pass"
    );
    // Tokens survive a restart (the key is derived, not stored).
    let dir = e.stop();
    let e = Enclave::start_in(dir);
    assert_eq!(code_with(&e, "/.well-known/openid-configuration", &t), 200);
}

#[test]
fn pods_get_their_service_account_and_a_token_with_exactly_its_rights() {
    let e = Enclave::start();
    for_both(&e, |k, v, _| {
        let ns = format!("pods-{}", v.replace('.', "-"));
        let n = ns.as_str();
        k.ok(&["create", "namespace", n]);
        k.ok(&["-n", n, "run", "plain", "--image=nginx"]);
        let pod = json_of(&k.ok(&["-n", n, "get", "pod", "plain", "-o", "json"]));
        assert_eq!(pod["spec"]["serviceAccountName"], "default");
        let vol = &pod["spec"]["volumes"][0];
        let name = vol["name"].as_str().unwrap();
        assert!(
            name.starts_with("kube-api-access-") && name.len() == 21,
            "{vol}"
        );
        assert_eq!(
            vol["projected"]["sources"][0]["serviceAccountToken"],
            json!({"expirationSeconds": 3607, "path": "token"})
        );
        assert_eq!(
            vol["projected"]["sources"][1]["configMap"]["name"],
            "kube-root-ca.crt"
        );
        assert_eq!(
            vol["projected"]["sources"][2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
        assert_eq!(
            pod["spec"]["containers"][0]["volumeMounts"][0],
            json!({"name": name, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true})
        );
        let ca = k.ok(&[
            "-n",
            n,
            "get",
            "configmap",
            "kube-root-ca.crt",
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ]);
        assert!(ca.contains("BEGIN CERTIFICATE"));
        k.ok(&[
            "-n",
            n,
            "run",
            "quiet",
            "--image=nginx",
            "--overrides",
            r#"{"spec":{"automountServiceAccountToken":false}}"#,
        ]);
        let quiet = json_of(&k.ok(&["-n", n, "get", "pod", "quiet", "-o", "json"]));
        assert!(quiet["spec"].get("volumes").is_none(), "{quiet}");
        let out = k.run(&[
            "-n",
            n,
            "run",
            "ghost",
            "--image=nginx",
            "--overrides",
            r#"{"spec":{"serviceAccountName":"nope"}}"#,
        ]);
        assert!(
            stderr(&out).contains(&format!(r#"Error from server (Forbidden): pods "ghost" is forbidden: error looking up service account {n}/nope: serviceaccount "nope" not found"#)),
            "{}",
            stderr(&out)
        );
        // The token a kubelet would project for the pod (a TokenRequest
        // bound to it) has exactly the account's rights, and dies with the pod.
        k.ok(&[
            "-n",
            n,
            "create",
            "role",
            "lister",
            "--verb=list",
            "--resource=pods",
        ]);
        k.ok(&[
            "-n",
            n,
            "create",
            "rolebinding",
            "default-lister",
            "--role=lister",
            &format!("--serviceaccount={n}:default"),
        ]);
        let pod_token = k
            .ok(&[
                "-n",
                n,
                "create",
                "token",
                "default",
                "--bound-object-kind=Pod",
                "--bound-object-name=plain",
                "--duration=3607s",
            ])
            .trim()
            .to_string();
        let claims = jwt_claims(&pod_token);
        assert_eq!(
            claims["kubernetes.io"]["pod"]["uid"],
            pod["metadata"]["uid"]
        );
        assert_eq!(
            code_with(&e, &format!("/api/v1/namespaces/{n}/pods"), &pod_token),
            200
        );
        assert_eq!(
            code_with(
                &e,
                &format!("/api/v1/namespaces/{n}/pods/plain"),
                &pod_token
            ),
            403
        );
        assert_eq!(
            code_with(&e, &format!("/api/v1/namespaces/{n}/secrets"), &pod_token),
            403
        );
        assert_eq!(
            code_with(&e, "/api/v1/namespaces/default/pods", &pod_token),
            403
        );
        k.ok(&[
            "-n",
            n,
            "delete",
            "pod",
            "plain",
            "--grace-period=0",
            "--force",
        ]);
        assert_eq!(
            code_with(&e, &format!("/api/v1/namespaces/{n}/pods"), &pod_token),
            401
        );
    });
}

const RESTRICTED_WEB: &str = r#"violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "web" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "web" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "web" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "web" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#;

#[test]
fn pod_security_enforces_warns_and_audits_by_namespace_label() {
    let e = Enclave::start();
    for_both(&e, |k, v, _| {
        let ns = format!("psa-{}", v.replace('.', "-"));
        let n = ns.as_str();
        k.ok(&["create", "namespace", n]);
        k.ok(&["-n", n, "run", "old", "--image=nginx", "--privileged"]);
        // Restricted enforcement refuses a default pod with upstream's text.
        let out = k.run(&[
            "label",
            "namespace",
            n,
            "pod-security.kubernetes.io/enforce=restricted",
        ]);
        let err = stderr(&out);
        assert!(out.status.success(), "{err}");
        assert!(err.contains(&format!(r#"Warning: existing pods in namespace "{n}" violate the new PodSecurity enforce level "restricted:latest""#)), "{err}");
        assert!(err.contains("Warning: old: privileged, allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile"), "{err}");
        let out = k.run(&["-n", n, "run", "web", "--image=nginx"]);
        assert!(
            stderr(&out).contains(&format!(
                r#"Error from server (Forbidden): pods "web" is forbidden: {RESTRICTED_WEB}"#
            )),
            "{}",
            stderr(&out)
        );
        let hardened = r#"{"spec":{"securityContext":{"runAsNonRoot":true,"seccompProfile":{"type":"RuntimeDefault"}},"containers":[{"name":"web","image":"nginx","securityContext":{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}}}]}}"#;
        k.ok(&[
            "-n",
            n,
            "run",
            "web",
            "--image=nginx",
            "--overrides",
            hardened,
        ]);
        // Baseline enforcement with restricted warnings.
        k.ok(&[
            "label",
            "--overwrite",
            "namespace",
            n,
            "pod-security.kubernetes.io/enforce=baseline",
            "pod-security.kubernetes.io/warn=restricted",
        ]);
        let out = k.run(&["-n", n, "run", "priv", "--image=nginx", "--privileged"]);
        assert!(
            stderr(&out).contains(r#"Error from server (Forbidden): pods "priv" is forbidden: violates PodSecurity "baseline:latest": privileged (container "priv" must not set securityContext.privileged=true)"#),
            "{}",
            stderr(&out)
        );
        let out = k.run(&["-n", n, "run", "web2", "--image=nginx"]);
        assert!(out.status.success());
        assert!(
            stderr(&out).contains(&format!(
                "Warning: would violate PodSecurity \"restricted:latest\": {}",
                RESTRICTED_WEB
                    .trim_start_matches("violates PodSecurity \"restricted:latest\": ")
                    .replace("\"web\"", "\"web2\"")
            )),
            "{}",
            stderr(&out)
        );
        // Workloads get the warning (never an error) for their pod template.
        let out = k.run(&["-n", n, "create", "deployment", "d", "--image=nginx"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stderr(&out).contains("Warning: would violate PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"nginx\""), "{}", stderr(&out));
        // Invalid labels are refused.
        let out = k.run(&[
            "label",
            "--overwrite",
            "namespace",
            n,
            "pod-security.kubernetes.io/enforce=strict",
        ]);
        assert!(
            stderr(&out).contains(&format!(r#"namespaces "{n}" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#)),
            "{}",
            stderr(&out)
        );
    });
}
