//! ValidatingAdmissionPolicies enforced by the real `daas-enclave --dev`, driven with every
//! installed kubectl (1.27 … 1.33): a policy with parameters from a ConfigMap, bound to the
//! namespaces a label selects, denies what upstream denies with upstream's message, status
//! code, reason and cause; `Warn` bindings warn; a DELETE is checked against `oldObject`;
//! `failurePolicy` decides what an expression that cannot be evaluated and a missing
//! parameter do; a policy whose CEL does not compile, or that asks for the authorizer, is
//! refused when it is written.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;

use common::{Enclave, Kubectl, kubectl_versions};
use serde_json::Value;

/// The replica limit: deployments in namespaces labelled `env: test` may have at most
/// `maxReplicas` (from the `limits` ConfigMap in `policy-params`) replicas.
const REPLICA_LIMIT: &str = "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: replica-limit
spec:
  paramKind:
    apiVersion: v1
    kind: ConfigMap
  matchConstraints:
    resourceRules:
    - operations: [CREATE, UPDATE]
      apiGroups: [apps]
      apiVersions: [v1]
      resources: [deployments]
  variables:
  - name: limit
    expression: int(params.data.maxReplicas)
  validations:
  - expression: object.spec.replicas <= variables.limit
    messageExpression: \"'replicas must be at most ' + string(variables.limit) + ', not ' + string(object.spec.replicas)\"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: replica-limit-test
spec:
  policyName: replica-limit
  validationActions: [Deny]
  paramRef:
    name: limits
    namespace: policy-params
    parameterNotFoundAction: Deny
  matchResources:
    namespaceSelector:
      matchLabels:
        env: test
";

/// ConfigMaps with more than two keys get a warning; labelled ones may not be deleted.
const CONFIGMAP_POLICIES: &str = "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: small-configmaps
spec:
  matchConstraints:
    resourceRules:
    - operations: [CREATE]
      apiGroups: ['']
      apiVersions: [v1]
      resources: [configmaps]
  matchConditions:
  - name: not-the-params
    expression: request.namespace != 'policy-params'
  validations:
  - expression: '!has(object.data) || object.data.size() <= 2'
    message: at most two keys
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: small-configmaps-warn
spec:
  policyName: small-configmaps
  validationActions: [Warn]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: keep-protected
spec:
  matchConstraints:
    resourceRules:
    - operations: [DELETE]
      apiGroups: ['']
      apiVersions: [v1]
      resources: [configmaps]
  validations:
  - expression: \"!has(oldObject.metadata.labels) || !('protected' in oldObject.metadata.labels)\"
    reason: Forbidden
    message: protected configmaps stay
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: keep-protected
spec:
  policyName: keep-protected
  validationActions: [Deny]
";

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn deployment(name: &str, namespace: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {namespace}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: c
        image: busybox
"
    )
}

#[test]
fn policies_deny_warn_and_fail_as_upstream_with_every_kubectl() {
    let e = Enclave::start();
    let versions = kubectl_versions();
    let (_, newest) = versions.last().unwrap();
    let admin = Kubectl::new("admin", newest, &e);
    admin.ok(&["create", "namespace", "policy-params"]);
    admin.ok(&["create", "namespace", "staging"]);
    admin.ok(&["label", "namespace", "staging", "env=test"]);
    admin.ok(&["create", "namespace", "prod"]);
    admin.ok_stdin(&["apply", "-f", "-"], Some(REPLICA_LIMIT));
    admin.ok_stdin(&["apply", "-f", "-"], Some(CONFIGMAP_POLICIES));

    // The parameter is missing and the binding says Deny: a configuration error, under
    // failurePolicy Fail (the default).
    let out = admin.run_stdin(
        &["apply", "-f", "-"],
        Some(&deployment("early", "staging", 1)),
    );
    assert!(!out.status.success());
    assert!(
        // kubectl prints an Invalid Status by its causes (`field: message`; the field is empty).
        stderr(&out).contains(
            "The deployments \"early\" is invalid: : ValidatingAdmissionPolicy 'replica-limit' with binding 'replica-limit-test' denied request: failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction"
        ),
        "{}",
        stderr(&out)
    );
    admin.ok(&[
        "create",
        "configmap",
        "limits",
        "-n",
        "policy-params",
        "--from-literal=maxReplicas=5",
    ]);

    for (version, bin) in &versions {
        let k = Kubectl::new(version, bin, &e);
        let name = format!("web-{}", version.replace('.', "-"));
        // Over the limit in a selected namespace: denied with the policy's message.
        let out = k.run_stdin(
            &["apply", "-f", "-"],
            Some(&deployment(&name, "staging", 6)),
        );
        assert!(!out.status.success(), "kubectl {version}");
        let want = format!(
            "The deployments \"{name}\" is invalid: : ValidatingAdmissionPolicy 'replica-limit' with binding 'replica-limit-test' denied request: replicas must be at most 5, not 6"
        );
        assert!(
            stderr(&out).contains(&want),
            "kubectl {version}: {}",
            stderr(&out)
        );
        // Within it: created; then an update over it is denied as well.
        k.ok_stdin(
            &["apply", "-f", "-"],
            Some(&deployment(&name, "staging", 5)),
        );
        let out = k.run(&[
            "patch",
            "deployment",
            &name,
            "-n",
            "staging",
            "-p",
            "{\"spec\":{\"replicas\":7}}",
        ]);
        assert!(
            !out.status.success() && stderr(&out).contains("not 7"),
            "kubectl {version}: {}",
            stderr(&out)
        );
        // Namespaces the binding does not select are not checked.
        k.ok_stdin(&["apply", "-f", "-"], Some(&deployment(&name, "prod", 9)));

        // Warn: created, with upstream's warning.
        let cm = format!("big-{}", version.replace('.', "-"));
        let out = k.run(&[
            "create",
            "configmap",
            &cm,
            "--from-literal=a=1",
            "--from-literal=b=2",
            "--from-literal=c=3",
        ]);
        assert!(out.status.success(), "kubectl {version}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(
                "Warning: Validation failed for ValidatingAdmissionPolicy 'small-configmaps' with binding 'small-configmaps-warn': at most two keys"
            ),
            "kubectl {version}: {}",
            stderr(&out)
        );
        // DELETE sees oldObject: a protected ConfigMap stays (reason Forbidden: 403).
        k.ok(&["label", "configmap", &cm, "protected=yes"]);
        let out = k.run(&["delete", "configmap", &cm]);
        assert!(
            !out.status.success()
                && stderr(&out).contains(&format!("Error from server (Forbidden): configmaps \"{cm}\" is forbidden: ValidatingAdmissionPolicy 'keep-protected' with binding 'keep-protected' denied request: protected configmaps stay")),
            "kubectl {version}: {}",
            stderr(&out)
        );
        k.ok(&["label", "configmap", &cm, "protected-"]);
        k.ok(&["delete", "configmap", &cm]);
    }

    // The Status body as upstream writes it: 422 Invalid, the cause repeated.
    let body = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"raw"},"spec":{"replicas":8,"selector":{"matchLabels":{"app":"raw"}},"template":{"metadata":{"labels":{"app":"raw"}},"spec":{"containers":[{"name":"c","image":"busybox"}]}}}}"#;
    let (code, text) = e.curl_admin(
        "/apis/apps/v1/namespaces/staging/deployments",
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data",
            body,
        ],
    );
    assert_eq!(code, 422, "{text}");
    let status: Value = serde_json::from_str(&text).unwrap();
    let cause = "ValidatingAdmissionPolicy 'replica-limit' with binding 'replica-limit-test' denied request: replicas must be at most 5, not 8";
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["message"],
        format!("deployments.apps \"raw\" is forbidden: {cause}")
    );
    assert_eq!(
        status["details"],
        serde_json::json!({"name": "raw", "group": "apps", "kind": "deployments", "causes": [{"message": cause}]})
    );
}

#[test]
fn evaluation_errors_follow_the_failure_policy_and_broken_policies_are_refused() {
    let e = Enclave::start();
    let versions = kubectl_versions();
    let (version, newest) = versions.last().unwrap();
    let k = Kubectl::new(version, newest, &e);
    let policy = |name: &str, failure: &str, resource: &str| {
        format!(
            "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: {name}
spec:
  failurePolicy: {failure}
  matchConstraints:
    resourceRules:
    - operations: [CREATE]
      apiGroups: ['']
      apiVersions: [v1]
      resources: [{resource}]
  validations:
  - expression: object.spec.missing.field == 'x'
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: {name}
spec:
  policyName: {name}
  validationActions: [Deny]
"
        )
    };
    k.ok_stdin(
        &["apply", "-f", "-"],
        Some(&policy("fails-closed", "Fail", "configmaps")),
    );
    k.ok_stdin(
        &["apply", "-f", "-"],
        Some(&policy("fails-open", "Ignore", "secrets")),
    );
    let out = k.run(&["create", "configmap", "c", "--from-literal=a=1"]);
    assert!(
        !out.status.success()
            && stderr(&out).contains(
                "ValidatingAdmissionPolicy 'fails-closed' with binding 'fails-closed' denied request: expression 'object.spec.missing.field == 'x'' resulted in error"
            ),
        "{}",
        stderr(&out)
    );
    k.ok(&["create", "secret", "generic", "s", "--from-literal=a=1"]);

    // Refused when written, naming the expression; nothing is stored.
    let broken = "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: broken
spec:
  matchConstraints:
    resourceRules:
    - operations: [CREATE]
      apiGroups: ['']
      apiVersions: [v1]
      resources: [pods]
  validations:
  - expression: object.spec.(
  - expression: authorizer.group('').resource('pods').check('create').allowed()
";
    let out = k.run_stdin(&["apply", "-f", "-"], Some(broken));
    assert!(!out.status.success());
    for want in [
        "spec.validations[0].expression: Invalid value: \"object.spec.(\": compilation failed",
        "spec.validations[1].expression: Forbidden: the authorizer variable is not available",
    ] {
        assert!(stderr(&out).contains(want), "{want} in {}", stderr(&out));
    }
    let out = k.run(&["get", "validatingadmissionpolicy", "broken"]);
    assert!(!out.status.success(), "nothing stored");
}
