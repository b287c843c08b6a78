"""The official Python client (PyPI `kubernetes`) against daas-enclave's
authorization: a service account gets a token through TokenRequest, uses it
with exactly its Role's rights (403 with upstream's message otherwise), and
SubjectAccessReview, SelfSubjectRulesReview and TokenReview answer from the
real rules and tokens.

Usage: python_authz.py KUBECONFIG NAMESPACE. Prints one line per check; exits
non-zero (with a traceback) on the first failure.
"""

import json
import sys

from kubernetes import client, config
from kubernetes.client.rest import ApiException


def main(kubeconfig, ns):
    admin = config.new_client_from_config(config_file=kubeconfig)
    core = client.CoreV1Api(admin)
    rbac = client.RbacAuthorizationV1Api(admin)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    core.create_namespaced_service_account(ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="py")))
    rbac.create_namespaced_role(
        ns,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="cm-reader"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["get", "list"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        ns,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="py-cm"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="cm-reader"),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="py", namespace=ns)],
        ),
    )
    tr = core.create_namespaced_service_account_token(
        "py", ns, client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=1200))
    )
    token = tr.status.token
    assert tr.spec.expiration_seconds == 1200, tr.spec
    print("token request ok")

    cfg = client.Configuration()
    cfg.host = admin.configuration.host
    cfg.ssl_ca_cert = admin.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": "Bearer " + token}
    as_sa = client.ApiClient(cfg)
    sa_core = client.CoreV1Api(as_sa)
    names = [c.metadata.name for c in sa_core.list_namespaced_config_map(ns).items]
    assert "kube-root-ca.crt" in names, names
    try:
        sa_core.list_namespaced_pod(ns)
        raise AssertionError("listing pods should be forbidden")
    except ApiException as e:
        assert e.status == 403, e
        body = json.loads(e.body)
        want = (
            f'pods is forbidden: User "system:serviceaccount:{ns}:py" cannot list resource "pods" '
            f'in API group "" in the namespace "{ns}"'
        )
        assert body["message"] == want, body
        assert body["reason"] == "Forbidden" and body["details"] == {"kind": "pods"}, body
    print("forbidden ok: 403 with upstream's message")

    authz = client.AuthorizationV1Api(admin)
    user = f"system:serviceaccount:{ns}:py"
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"]
    sar = authz.create_subject_access_review(
        client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user=user,
                groups=groups,
                resource_attributes=client.V1ResourceAttributes(namespace=ns, verb="list", resource="configmaps"),
            )
        )
    )
    assert sar.status.allowed, sar.status
    assert sar.status.reason == f'RBAC: allowed by RoleBinding "py-cm/{ns}" of Role "cm-reader" to ServiceAccount "py/{ns}"', sar.status
    sar = authz.create_subject_access_review(
        client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user=user,
                groups=groups,
                resource_attributes=client.V1ResourceAttributes(namespace=ns, verb="delete", resource="configmaps"),
            )
        )
    )
    assert not sar.status.allowed, sar.status
    lsar = authz.create_namespaced_local_subject_access_review(
        ns,
        client.V1LocalSubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user=user,
                groups=groups,
                resource_attributes=client.V1ResourceAttributes(namespace=ns, verb="get", resource="configmaps"),
            )
        ),
    )
    assert lsar.status.allowed, lsar.status
    print("subject access reviews ok")

    rules = client.AuthorizationV1Api(as_sa).create_self_subject_rules_review(
        client.V1SelfSubjectRulesReview(spec=client.V1SelfSubjectRulesReviewSpec(namespace=ns))
    )
    granted = [r for r in rules.status.resource_rules if r.resources == ["configmaps"]]
    assert granted and granted[0].verbs == ["get", "list"], rules.status
    assert not rules.status.incomplete
    print("self subject rules review ok")

    review = client.AuthenticationV1Api(admin).create_token_review(
        client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token))
    )
    assert review.status.authenticated, review.status
    assert review.status.user.username == user, review.status
    bad = client.AuthenticationV1Api(admin).create_token_review(
        client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token[:-4] + "AAAA"))
    )
    assert not bad.status.authenticated and bad.status.error, bad.status
    print("token review ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
