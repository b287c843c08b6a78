//! The paths and operations of one resource in a v3 document, as upstream documents them: every verb
//! discovery lists (read, list, watch, create, replace, patch, delete, deletecollection), the list across
//! namespaces, the deprecated `/watch/` paths, and the subresources, each with its path parameters, its query
//! parameters and its responses. The verbs come from [`ResourceInfo::verbs`], the same source discovery
//! answers from, so the document cannot list an operation the server does not serve or miss one it does.

use serde_json::{Map, Value, json};

use crate::registry::{ResourceInfo, Subresource};

/// The `$ref`s (or inline schemas) of one resource's kind and list.
pub(super) struct Schemas<'a> {
    /// The kind.
    pub object: Value,
    /// Its list.
    pub list: Value,
    /// What every resource's operations share.
    pub common: &'a CommonSchemas,
}

/// The `$ref`s every resource's operations share.
pub(super) struct CommonSchemas {
    /// `meta/v1 Status`.
    pub status: Value,
    /// `meta/v1 DeleteOptions`.
    pub delete_options: Value,
    /// `meta/v1 WatchEvent`.
    pub watch_event: Value,
    /// `autoscaling/v1 Scale`.
    pub scale: Value,
    /// `authentication/v1 TokenRequest` (`serviceaccounts/token`).
    pub token_request: Value,
    /// `policy/v1 Eviction` (`pods/eviction`).
    pub eviction: Value,
    /// `v1 Binding` (`pods/binding`).
    pub binding: Value,
}

/// `Core`, `Apps`, `RbacAuthorization`: the group as upstream's operation ids spell it.
fn group_word(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    group
        .trim_end_matches(".k8s.io")
        .split(['.', '-'])
        .map(capitalized)
        .collect()
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn query(name: &str, kind: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": kind, "uniqueItems": true}})
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description,
           "schema": {"type": "string", "uniqueItems": true}})
}

fn pretty() -> Value {
    query(
        "pretty",
        "string",
        "If 'true', then the output is pretty printed.",
    )
}

fn dry_run() -> Value {
    query(
        "dryRun",
        "string",
        "When present, indicates that modifications should not be persisted. The only valid value is All.",
    )
}

fn write_params() -> Vec<Value> {
    vec![
        dry_run(),
        query(
            "fieldManager",
            "string",
            "A name associated with the actor or entity that is making these changes.",
        ),
        query(
            "fieldValidation",
            "string",
            "Ignore, Warn or Strict: what to do with unknown or duplicate fields in the body.",
        ),
    ]
}

fn list_params() -> Vec<Value> {
    vec![
        query(
            "allowWatchBookmarks",
            "boolean",
            "Requests watch events of type BOOKMARK.",
        ),
        query(
            "continue",
            "string",
            "The continue token of the previous page.",
        ),
        query(
            "fieldSelector",
            "string",
            "Restricts the list by the objects' fields.",
        ),
        query(
            "labelSelector",
            "string",
            "Restricts the list by the objects' labels.",
        ),
        query("limit", "integer", "The most items to return in one page."),
        query(
            "resourceVersion",
            "string",
            "The resource version the list is served at or after.",
        ),
        query(
            "resourceVersionMatch",
            "string",
            "How resourceVersion applies: Exact or NotOlderThan.",
        ),
        query(
            "sendInitialEvents",
            "boolean",
            "With watch: starts with the current objects as ADDED events.",
        ),
        query(
            "timeoutSeconds",
            "integer",
            "How long a list or watch call may last.",
        ),
        query("watch", "boolean", "Watch for changes instead of listing."),
    ]
}

fn delete_params() -> Vec<Value> {
    vec![
        dry_run(),
        query(
            "gracePeriodSeconds",
            "integer",
            "The seconds before the object is deleted; zero deletes it at once.",
        ),
        query(
            "propagationPolicy",
            "string",
            "Orphan, Background or Foreground: what happens to the object's dependents.",
        ),
    ]
}

fn json_content(schema: &Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

fn response(schema: &Value) -> Value {
    json!({"description": "OK", "content": json_content(schema)})
}

/// One resource's path prefixes.
struct Paths {
    /// `/api/v1` or `/apis/<group>/<version>`.
    base: String,
    /// The collection (`.../namespaces/{namespace}/pods`).
    collection: String,
    /// One object (`.../pods/{name}`).
    item: String,
}

/// Builds the operations of one resource.
struct Operations<'a> {
    r: &'a ResourceInfo,
    schemas: &'a Schemas<'a>,
    gvk: Value,
    /// `CoreV1`, `AppsV1`.
    prefix: String,
    paths: &'a mut Map<String, Value>,
}

impl Operations<'_> {
    /// `Namespaced` for namespaced kinds, as the operation ids spell it.
    fn scope(&self) -> &'static str {
        if self.r.namespaced() {
            "Namespaced"
        } else {
            ""
        }
    }

    fn operation(
        &self,
        id: String,
        action: &str,
        parameters: Vec<Value>,
        responses: Value,
    ) -> Value {
        json!({
            "operationId": id,
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": self.gvk,
            "parameters": parameters,
            "responses": responses,
            "tags": [self.prefix.clone()],
        })
    }

    /// Adds `method` to the path item `path`, creating it with its path parameters.
    fn add(&mut self, path: &str, method: &str, op: Value) {
        let mut params = vec![];
        if path.contains("{name}") {
            params.push(path_param("name", &format!("name of the {}", self.r.kind)));
        }
        if path.contains("{namespace}") {
            params.push(path_param(
                "namespace",
                "object name and auth scope, such as for teams and projects",
            ));
        }
        params.push(pretty());
        let item = self
            .paths
            .entry(path.to_string())
            .or_insert_with(|| json!({"parameters": params}));
        item[method] = op;
    }

    fn object_responses(&self, codes: &[&str]) -> Value {
        let mut responses = Map::new();
        for code in codes {
            responses.insert((*code).into(), response(&self.schemas.object));
        }
        responses.insert("401".into(), json!({"description": "Unauthorized"}));
        Value::Object(responses)
    }

    fn patch_body(&self) -> Value {
        let mut content = json!({
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
            "application/apply-patch+yaml": {"schema": {"type": "object"}},
        });
        // kubectl 1.29+ computes a strategic merge patch for `apply` only when the PATCH operation lists its
        // content type, which upstream's custom resource documents do not.
        if self.r.strategy.accepts_strategic_merge() {
            content["application/strategic-merge-patch+json"] =
                json!({"schema": {"type": "object"}});
        }
        json!({"content": content, "required": true})
    }

    fn verb(&mut self, p: &Paths, verb: &str) {
        let (kind, scope, prefix) = (self.r.kind.clone(), self.scope(), self.prefix.clone());
        let body = json!({"content": json_content(&self.schemas.object), "required": true});
        match verb {
            "get" => {
                let op = self.operation(
                    format!("read{prefix}{scope}{kind}"),
                    "get",
                    vec![],
                    self.object_responses(&["200"]),
                );
                self.add(&p.item, "get", op);
            }
            "list" => {
                let responses = json!({"200": response(&self.schemas.list), "401": {"description": "Unauthorized"}});
                let op = self.operation(
                    format!("list{prefix}{scope}{kind}"),
                    "list",
                    list_params(),
                    responses.clone(),
                );
                self.add(&p.collection, "get", op);
                if self.r.namespaced() {
                    let op = self.operation(
                        format!("list{prefix}{kind}ForAllNamespaces"),
                        "list",
                        list_params(),
                        responses,
                    );
                    let across = format!("{}/{}", p.base, self.r.resource);
                    self.add(&across, "get", op);
                }
            }
            "watch" => {
                let event = json!({"200": {"description": "OK", "content": {
                    "application/json": {"schema": self.schemas.common.watch_event},
                    "application/json;stream=watch": {"schema": self.schemas.common.watch_event},
                }}, "401": {"description": "Unauthorized"}});
                let watch = format!("{}/watch", p.base);
                let (collection, item) = if self.r.namespaced() {
                    let c = format!("{watch}/namespaces/{{namespace}}/{}", self.r.resource);
                    let i = format!("{c}/{{name}}");
                    (c, i)
                } else {
                    let c = format!("{watch}/{}", self.r.resource);
                    let i = format!("{c}/{{name}}");
                    (c, i)
                };
                let op = self.operation(
                    format!("watch{prefix}{scope}{kind}List"),
                    "watchlist",
                    list_params(),
                    event.clone(),
                );
                self.add(&collection, "get", op);
                let op = self.operation(
                    format!("watch{prefix}{scope}{kind}"),
                    "watch",
                    list_params(),
                    event.clone(),
                );
                self.add(&item, "get", op);
                if self.r.namespaced() {
                    let op = self.operation(
                        format!("watch{prefix}{kind}ListForAllNamespaces"),
                        "watchlist",
                        list_params(),
                        event,
                    );
                    self.add(&format!("{watch}/{}", self.r.resource), "get", op);
                }
            }
            "create" => {
                let mut op = self.operation(
                    format!("create{prefix}{scope}{kind}"),
                    "post",
                    write_params(),
                    self.object_responses(&["200", "201", "202"]),
                );
                op["requestBody"] = body;
                self.add(&p.collection, "post", op);
            }
            "update" => {
                let mut op = self.operation(
                    format!("replace{prefix}{scope}{kind}"),
                    "put",
                    write_params(),
                    self.object_responses(&["200", "201"]),
                );
                op["requestBody"] = body;
                self.add(&p.item, "put", op);
            }
            "patch" => {
                let mut op = self.operation(
                    format!("patch{prefix}{scope}{kind}"),
                    "patch",
                    write_params()
                        .into_iter()
                        .chain([query(
                            "force",
                            "boolean",
                            "Forces an apply request to take fields other managers own.",
                        )])
                        .collect(),
                    self.object_responses(&["200", "201"]),
                );
                op["requestBody"] = self.patch_body();
                self.add(&p.item, "patch", op);
            }
            "delete" => {
                // Upstream answers some kinds with the deleted object, the others with a Status.
                let answer = if self.r.return_deleted_object {
                    &self.schemas.object
                } else {
                    &self.schemas.common.status
                };
                let responses = json!({"200": response(answer), "202": response(answer),
                                       "401": {"description": "Unauthorized"}});
                let mut op = self.operation(
                    format!("delete{prefix}{scope}{kind}"),
                    "delete",
                    delete_params(),
                    responses,
                );
                op["requestBody"] =
                    json!({"content": json_content(&self.schemas.common.delete_options)});
                self.add(&p.item, "delete", op);
            }
            "deletecollection" => {
                let mut op = self.operation(
                    format!("delete{prefix}Collection{scope}{kind}"),
                    "deletecollection",
                    delete_params().into_iter().chain(list_params()).collect(),
                    json!({"200": response(&self.schemas.common.status), "401": {"description": "Unauthorized"}}),
                );
                op["requestBody"] =
                    json!({"content": json_content(&self.schemas.common.delete_options)});
                self.add(&p.collection, "delete", op);
            }
            _ => {}
        }
    }

    fn subresource(&mut self, p: &Paths, sub: Subresource) {
        let (kind, scope, prefix) = (self.r.kind.clone(), self.scope(), self.prefix.clone());
        let word = capitalized(sub.name());
        let path = format!("{}/{}", p.item, sub.name());
        let id = |action: &str| format!("{action}{prefix}{scope}{kind}{word}");
        let unauthorized = json!({"description": "Unauthorized"});
        match sub {
            Subresource::Status | Subresource::Scale | Subresource::Approval => {
                let schema = if sub == Subresource::Scale {
                    self.schemas.common.scale.clone()
                } else {
                    self.schemas.object.clone()
                };
                let ok = json!({"200": response(&schema), "401": unauthorized});
                let read = self.operation(id("read"), "get", vec![], ok.clone());
                self.add(&path, "get", read);
                let mut replace = self.operation(id("replace"), "put", write_params(), ok.clone());
                replace["requestBody"] =
                    json!({"content": json_content(&schema), "required": true});
                self.add(&path, "put", replace);
                let mut patch = self.operation(id("patch"), "patch", write_params(), ok);
                patch["requestBody"] = self.patch_body();
                self.add(&path, "patch", patch);
            }
            Subresource::Token | Subresource::Eviction | Subresource::Binding => {
                let schema = match sub {
                    Subresource::Token => &self.schemas.common.token_request,
                    Subresource::Eviction => &self.schemas.common.eviction,
                    _ => &self.schemas.common.binding,
                };
                let ok = json!({"200": response(schema), "201": response(schema), "202": response(schema),
                                "401": unauthorized});
                let mut create = self.operation(id("create"), "post", write_params(), ok);
                create["requestBody"] = json!({"content": json_content(schema), "required": true});
                self.add(&path, "post", create);
            }
            Subresource::Log => {
                let params = vec![
                    query("container", "string", "The container whose log to read."),
                    query("follow", "boolean", "Stream the log as it grows."),
                    query("limitBytes", "integer", "The most bytes to return."),
                    query(
                        "previous",
                        "boolean",
                        "The previous instance of the container.",
                    ),
                    query(
                        "sinceSeconds",
                        "integer",
                        "Only the last seconds of the log.",
                    ),
                    query(
                        "sinceTime",
                        "string",
                        "Only the log after this RFC 3339 time.",
                    ),
                    query("tailLines", "integer", "Only the last lines of the log."),
                    query(
                        "timestamps",
                        "boolean",
                        "Prefix every line with its RFC 3339 time.",
                    ),
                ];
                let text = json!({"200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}},
                                  "401": unauthorized});
                let op = self.operation(id("read"), "get", params, text);
                self.add(&path, "get", op);
            }
            Subresource::Exec | Subresource::Attach | Subresource::PortForward => {
                let params = if sub == Subresource::PortForward {
                    vec![query("ports", "integer", "The ports to forward.")]
                } else {
                    let mut v = vec![
                        query("container", "string", "The container to connect to."),
                        query(
                            "stderr",
                            "boolean",
                            "Stream the container's standard error.",
                        ),
                        query(
                            "stdin",
                            "boolean",
                            "Stream to the container's standard input.",
                        ),
                        query(
                            "stdout",
                            "boolean",
                            "Stream the container's standard output.",
                        ),
                        query("tty", "boolean", "Allocate a terminal."),
                    ];
                    if sub == Subresource::Exec {
                        v.insert(
                            1,
                            query(
                                "command",
                                "string",
                                "The command to run, one argument per value.",
                            ),
                        );
                    }
                    v
                };
                let text = json!({"200": {"description": "OK", "content": {"*/*": {"schema": {"type": "string"}}}},
                                  "401": unauthorized});
                for (method, word) in [("get", "Get"), ("post", "Post")] {
                    let op = self.operation(
                        format!(
                            "connect{prefix}{word}{scope}{kind}{}",
                            capitalized(sub.name())
                        ),
                        "connect",
                        params.clone(),
                        text.clone(),
                    );
                    self.add(&path, method, op);
                }
            }
        }
    }
}

/// Adds every operation of `r` to `paths`.
pub(super) fn add_resource(
    r: &ResourceInfo,
    base: &str,
    schemas: &Schemas,
    paths: &mut Map<String, Value>,
) {
    let scoped = if r.namespaced() {
        format!("{base}/namespaces/{{namespace}}")
    } else {
        base.to_string()
    };
    let p = Paths {
        base: base.to_string(),
        collection: format!("{scoped}/{}", r.resource),
        item: format!("{scoped}/{}/{{name}}", r.resource),
    };
    let mut ops = Operations {
        r,
        schemas,
        gvk: json!({"group": r.group, "version": r.version, "kind": r.kind}),
        prefix: format!("{}{}", group_word(&r.group), capitalized(&r.version)),
        paths,
    };
    for verb in r.verbs() {
        ops.verb(&p, verb);
    }
    for sub in r.subresources {
        ops.subresource(&p, *sub);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_spelled_as_upstreams_operation_ids() {
        assert_eq!(group_word(""), "Core");
        assert_eq!(group_word("apps"), "Apps");
        assert_eq!(group_word("rbac.authorization.k8s.io"), "RbacAuthorization");
        assert_eq!(
            group_word("flowcontrol.apiserver.k8s.io"),
            "FlowcontrolApiserver"
        );
        assert_eq!(capitalized("v1beta1"), "V1beta1");
    }
}
