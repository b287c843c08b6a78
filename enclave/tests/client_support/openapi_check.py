"""Checks daas-enclave's OpenAPI v3 documents with an independent validator
(PyPI `openapi-spec-validator`), then checks that each one documents every
operation discovery lists for its resources, with their path parameters; and
the Swagger 2.0 document of /openapi/v2 (JSON) with the same validator.

Usage: openapi_check.py KUBECONFIG. Prints one line per group-version; exits
non-zero on the first failure.
"""

import json
import sys

from kubernetes import client, config
from openapi_spec_validator import validate

# Discovery verb -> (path kind, HTTP method) of its operation.
VERB_OPERATION = {
    "get": ("item", "get"),
    "list": ("collection", "get"),
    "create": ("collection", "post"),
    "update": ("item", "put"),
    "patch": ("item", "patch"),
    "delete": ("item", "delete"),
    "deletecollection": ("collection", "delete"),
    "watch": ("watch", "get"),
}


def get(api_client, path):
    cfg = api_client.configuration
    headers = {"Accept": "application/json"}
    for auth in cfg.auth_settings().values():
        headers[auth["key"]] = auth["value"]
    response = api_client.rest_client.request("GET", cfg.host + path, headers=headers)
    return json.loads(response.data if response.data is not None else response.read())


def main(kubeconfig):
    api_client = config.new_client_from_config(config_file=kubeconfig)
    index = get(api_client, "/openapi/v3")["paths"]
    assert "api/v1" in index and "apis/apps/v1" in index, sorted(index)
    for gv_path, entry in sorted(index.items()):
        doc = get(api_client, entry["serverRelativeURL"])
        validate(doc)
        discovery = get(api_client, "/" + gv_path)
        paths = doc["paths"]
        checked = 0
        for r in discovery["resources"]:
            name = r["name"]
            base = "/" + gv_path
            if "/" in name:
                resource, sub = name.split("/", 1)
                item = (
                    f"{base}/namespaces/{{namespace}}/{resource}/{{name}}/{sub}"
                    if r["namespaced"]
                    else f"{base}/{resource}/{{name}}/{sub}"
                )
                assert item in paths, f"{gv_path}: no path for {name}: {item}"
                checked += 1
                continue
            ns = f"{base}/namespaces/{{namespace}}" if r["namespaced"] else base
            where = {
                "collection": f"{ns}/{name}",
                "item": f"{ns}/{name}/{{name}}",
                "watch": f"{base}/watch/" + (f"namespaces/{{namespace}}/{name}" if r["namespaced"] else name),
            }
            for verb in r["verbs"]:
                kind, method = VERB_OPERATION[verb]
                path = where[kind]
                assert method in paths.get(path, {}), f"{gv_path}: {verb} {name}: no {method} on {path}"
                op = paths[path][method]
                assert op["operationId"], op
                assert op["responses"], op
                checked += 1
            if r["namespaced"] and "list" in r["verbs"]:
                assert "get" in paths.get(f"{base}/{name}", {}), f"{gv_path}: {name} across namespaces"
        print(f"{gv_path}: valid, {len(paths)} paths, {checked} operations checked")
    # The same in Swagger 2.0 (JSON here; kubectl reads its protobuf form).
    v2 = get(api_client, "/openapi/v2")
    validate(v2)
    v3_paths = sum(len(get(api_client, e["serverRelativeURL"])["paths"]) for e in index.values())
    assert len(v2["paths"]) == v3_paths, (len(v2["paths"]), v3_paths)
    assert "io.k8s.api.apps.v1.Deployment" in v2["definitions"]
    print(f"openapi/v2: valid, {len(v2['paths'])} paths, {len(v2['definitions'])} definitions")


if __name__ == "__main__":
    main(*sys.argv[1:])
