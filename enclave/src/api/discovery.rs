//! Discovery documents, all generated from the resource table: legacy
//! (`APIVersions`, `APIGroupList`, `APIGroup`, `APIResourceList`) and
//! aggregated (`APIGroupDiscoveryList`, v2 and v2beta1).

use serde_json::{Value, json};

use crate::registry::{Name, ResourceInfo, ResourceTable, Subresource};

/// (group, version, kind) a subresource responds with.
fn sub_kind(r: &ResourceInfo, sub: Subresource) -> (&str, &str, &str) {
    match sub {
        Subresource::Status | Subresource::Approval => (&r.group, &r.version, &r.kind),
        Subresource::Scale => ("autoscaling", "v1", "Scale"),
        Subresource::Token => ("authentication.k8s.io", "v1", "TokenRequest"),
        Subresource::Log => ("", "v1", "Pod"),
        Subresource::Exec => ("", "v1", "PodExecOptions"),
        Subresource::Attach => ("", "v1", "PodAttachOptions"),
        Subresource::PortForward => ("", "v1", "PodPortForwardOptions"),
        Subresource::Eviction => ("policy", "v1", "Eviction"),
        Subresource::Binding => ("", "v1", "Binding"),
    }
}

/// Which aggregated discovery version the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregated {
    /// `apidiscovery.k8s.io/v2`.
    V2,
    /// `apidiscovery.k8s.io/v2beta1`.
    V2Beta1,
}

impl Aggregated {
    /// The first aggregated version listed in `accept`, if any.
    pub fn negotiate(accept: &str) -> Option<Self> {
        for part in accept.split(',') {
            let params: Vec<String> = part
                .split(';')
                .skip(1)
                .map(|p| p.trim().replace(' ', ""))
                .collect();
            let has = |p: &str| params.iter().any(|x| x == p);
            if !(has("g=apidiscovery.k8s.io") && has("as=APIGroupDiscoveryList")) {
                continue;
            }
            if has("v=v2") {
                return Some(Aggregated::V2);
            }
            if has("v=v2beta1") {
                return Some(Aggregated::V2Beta1);
            }
        }
        None
    }

    fn version(self) -> &'static str {
        match self {
            Aggregated::V2 => "v2",
            Aggregated::V2Beta1 => "v2beta1",
        }
    }

    /// The Content-Type of the response.
    pub fn content_type(self) -> String {
        format!(
            "application/json;g=apidiscovery.k8s.io;v={};as=APIGroupDiscoveryList",
            self.version()
        )
    }
}

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": concat!("v1.33.0+k3s-daas.", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

/// The Go name of this machine's architecture, as `platform` reports it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `/api` (legacy).
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(name: &str, versions: &[Name]) -> Value {
    let gvs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({
        "name": name,
        "versions": gvs,
        "preferredVersion": gvs.first().cloned().unwrap_or(Value::Null),
    })
}

/// `/apis` (legacy).
pub fn groups(table: &ResourceTable) -> Value {
    let groups: Vec<Value> = table
        .groups()
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_entry(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`, if served.
pub fn group(table: &ResourceTable, name: &str) -> Option<Value> {
    let (g, vs) = table
        .groups()
        .into_iter()
        .find(|(g, _)| !g.is_empty() && *g == name)?;
    let mut e = group_entry(&g, &vs);
    e["kind"] = json!("APIGroup");
    e["apiVersion"] = json!("v1");
    Some(e)
}

/// `/api/v1` or `/apis/{g}/{v}`, if served.
pub fn resource_list(table: &ResourceTable, group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for r in table.in_group_version(group, version) {
        let mut e = json!({
            "name": r.resource,
            "singularName": r.singular,
            "namespaced": r.namespaced(),
            "kind": r.kind,
            "verbs": r.verbs(),
        });
        if !r.short_names.is_empty() {
            e["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            e["categories"] = json!(r.categories);
        }
        if let Some(hash) = r.storage_version_hash() {
            e["storageVersionHash"] = json!(hash);
        }
        resources.push(e);
        for sub in r.subresources {
            let (g, v, k) = sub_kind(r, *sub);
            let mut e = json!({
                "name": format!("{}/{}", r.resource, sub.name()),
                "singularName": "",
                "namespaced": r.namespaced(),
                "kind": k,
                "verbs": sub.verbs(),
            });
            if matches!(
                sub,
                Subresource::Scale | Subresource::Token | Subresource::Eviction
            ) {
                e["group"] = json!(g);
                e["version"] = json!(v);
            }
            resources.push(e);
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }))
}

fn aggregated_resource(r: &ResourceInfo) -> Value {
    let mut e = json!({
        "resource": r.resource,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced() { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs(),
    });
    if !r.short_names.is_empty() {
        e["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        e["categories"] = json!(r.categories);
    }
    if !r.subresources.is_empty() {
        let subs: Vec<Value> = r
            .subresources
            .iter()
            .map(|s| {
                let (g, v, k) = sub_kind(r, *s);
                json!({"subresource": s.name(), "responseKind": {"group": g, "version": v, "kind": k}, "verbs": s.verbs()})
            })
            .collect();
        e["subresources"] = json!(subs);
    }
    e
}

/// Aggregated discovery: the core group for `/api` (`core == true`),
/// every other group for `/apis`.
pub fn aggregated(table: &ResourceTable, core: bool, which: Aggregated) -> Value {
    let items: Vec<Value> = table
        .groups()
        .iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = table
                        .in_group_version(g, v)
                        .map(|r| aggregated_resource(r))
                        .collect();
                    json!({"version": v, "freshness": "Current", "resources": resources})
                })
                .collect();
            json!({"metadata": {"name": g}, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{}", which.version()),
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::kinds::builtin;

    #[test]
    fn negotiation_follows_accept_order() {
        let v133 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        let v127 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(Aggregated::negotiate(v133), Some(Aggregated::V2));
        assert_eq!(Aggregated::negotiate(v127), Some(Aggregated::V2Beta1));
        assert_eq!(Aggregated::negotiate("application/json, */*"), None);
    }

    #[test]
    fn documents_come_from_the_table() {
        let t = ResourceTable::new(builtin());
        let core = aggregated(&t, true, Aggregated::V2);
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        assert_eq!(core["items"][0]["metadata"]["name"], "");
        let apis = groups(&t);
        let names: Vec<&str> = apis["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"apps"));
        let v1 = resource_list(&t, "", "v1").unwrap();
        assert!(
            v1["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "configmaps" && r["shortNames"][0] == "cm")
        );
        assert!(resource_list(&t, "nope", "v1").is_none());
    }

    /// The values kube-apiserver answers (its storage versions' `group/version/kind`, hashed).
    #[test]
    fn storage_version_hashes_are_upstreams() {
        let t = ResourceTable::new(builtin());
        let hash = |group: &str, version: &str, name: &str| {
            resource_list(&t, group, version).unwrap()["resources"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == name)
                .map(|r| r.get("storageVersionHash").cloned())
                .unwrap()
        };
        assert_eq!(hash("", "v1", "pods"), Some(json!("xPOwRZ+Yhw8=")));
        assert_eq!(hash("", "v1", "configmaps"), Some(json!("qFsyl6wFWjQ=")));
        assert_eq!(
            hash("apps", "v1", "deployments"),
            Some(json!("8aSe+NMegvE="))
        );
        // Both HPA versions are stored as v2.
        assert_eq!(
            hash("autoscaling", "v1", "horizontalpodautoscalers"),
            hash("autoscaling", "v2", "horizontalpodautoscalers")
        );
        // Not stored: no hash, as upstream's reviews and subresources have none.
        assert_eq!(
            hash("authorization.k8s.io", "v1", "selfsubjectaccessreviews"),
            None
        );
        assert_eq!(hash("", "v1", "pods/log"), None);
    }
}
