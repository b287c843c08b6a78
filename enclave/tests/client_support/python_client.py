"""The official Python client (PyPI `kubernetes`) against daas-enclave: list with
selectors and pagination, watch, the three patch types, server-side apply and
deletion, the way a controller written with it would use the API.

Usage: python_client.py KUBECONFIG NAMESPACE. Prints one line per check; exits
non-zero (with a traceback) on the first failure.
"""

import sys
import threading

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException


def main(kubeconfig, ns):
    api_client = config.new_client_from_config(config_file=kubeconfig)
    core = client.CoreV1Api(api_client)
    apps = client.AppsV1Api(api_client)

    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    print("create namespace ok")

    # list: label selector, limit/continue, resourceVersion of the list.
    for i in range(5):
        core.create_namespaced_config_map(
            ns,
            client.V1ConfigMap(
                metadata=client.V1ObjectMeta(
                    name=f"cm-{i}", labels={"app": "py", "parity": "even" if i % 2 == 0 else "odd"}
                ),
                data={"i": str(i)},
            ),
        )
    even = core.list_namespaced_config_map(ns, label_selector="app=py,parity=even")
    assert sorted(c.metadata.name for c in even.items) == ["cm-0", "cm-2", "cm-4"], even.items
    names, token = [], None
    while True:
        page = core.list_namespaced_config_map(ns, label_selector="app=py", limit=2, _continue=token)
        assert len(page.items) <= 2
        names += [c.metadata.name for c in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert names == [f"cm-{i}" for i in range(5)], names
    rv = page.metadata.resource_version
    assert rv and int(rv) > 0, rv
    print("list ok: selectors, 3 pages of 2")

    # watch from the list's resourceVersion: a change made by another client arrives.
    seen = []
    w = watch.Watch()

    def follow():
        for ev in w.stream(
            core.list_namespaced_config_map,
            ns,
            label_selector="app=py",
            resource_version=rv,
            timeout_seconds=30,
        ):
            seen.append((ev["type"], ev["object"].metadata.name, dict(ev["object"].data or {})))
            if ev["type"] == "DELETED":
                w.stop()

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()

    # patches: strategic merge (a dict), JSON patch (a list), merge patch, server-side apply.
    core.patch_namespaced_config_map("cm-1", ns, {"data": {"strategic": "yes"}})
    core.patch_namespaced_config_map(
        "cm-1", ns, [{"op": "add", "path": "/data/json", "value": "yes"}]
    )
    core.patch_namespaced_config_map(
        "cm-1", ns, {"data": {"i": None, "merge": "yes"}}, _content_type="application/merge-patch+json"
    )
    applied = core.patch_namespaced_config_map(
        "cm-1",
        ns,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm-1"}, "data": {"applied": "yes"}},
        field_manager="python-client",
        _content_type="application/apply-patch+yaml",
    )
    assert applied.data == {"strategic": "yes", "json": "yes", "merge": "yes", "applied": "yes"}, applied.data
    managers = {m.manager: m.operation for m in applied.metadata.managed_fields}
    assert managers.get("python-client") == "Apply", managers
    print("patch ok: strategic merge, JSON patch, merge patch, server-side apply")

    # a conflict is a 409 the client raises.
    stale = core.read_namespaced_config_map("cm-2", ns)
    core.patch_namespaced_config_map("cm-2", ns, {"data": {"bump": "1"}})
    stale.data["late"] = "1"
    try:
        core.replace_namespaced_config_map("cm-2", ns, stale)
        raise AssertionError("a stale update was accepted")
    except ApiException as e:
        assert e.status == 409, e
    print("update conflict ok: 409")

    core.delete_namespaced_config_map("cm-1", ns)
    follower.join(timeout=30)
    assert not follower.is_alive(), "the watch did not see the deletion"
    types = [(t, n) for t, n, _ in seen]
    assert types == [("MODIFIED", "cm-1")] * 4 + [("MODIFIED", "cm-2"), ("DELETED", "cm-1")], types
    assert seen[3][2] == {"strategic": "yes", "json": "yes", "merge": "yes", "applied": "yes"}, seen[3]
    print(f"watch ok: {len(seen)} events")

    # a deployment: strategic merge on a list with a merge key, then deletion in foreground.
    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            replicas=0,
            selector=client.V1LabelSelector(match_labels={"app": "web"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "web"}),
                spec=client.V1PodSpec(
                    containers=[
                        client.V1Container(name="app", image="nginx:1"),
                        client.V1Container(name="sidecar", image="busybox:1"),
                    ]
                ),
            ),
        ),
    )
    apps.create_namespaced_deployment(ns, dep)
    patched = apps.patch_namespaced_deployment(
        "web", ns, {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}}}}
    )
    images = [(c.name, c.image) for c in patched.spec.template.spec.containers]
    assert images == [("app", "nginx:2"), ("sidecar", "busybox:1")], images
    assert patched.metadata.generation == 2, patched.metadata.generation
    apps.delete_namespaced_deployment(
        "web", ns, body=client.V1DeleteOptions(propagation_policy="Foreground")
    )
    print("deployment ok: strategic merge by container name, foreground delete")

    core.delete_namespace(ns)
    print("delete namespace ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
