//! The built-in kinds: one [`Strategy`](super::Strategy) each, and
//! [`builtin`], the resource table they are served from.

mod apps;
mod core;
mod pods;
mod services;

use serde_json::Value;

use super::{ResourceInfo, Scope, Subresource};

/// Implements `Strategy::canonicalize` through a `k8s-openapi` type.
macro_rules! typed {
    ($t:ty) => {
        fn canonicalize(
            &self,
            obj: &serde_json::Value,
        ) -> std::result::Result<$crate::registry::Canonical, String> {
            $crate::registry::typed::roundtrip::<$t>(obj)
        }
    };
}
pub(crate) use typed;

/// The string at a JSON pointer, or "".
pub(crate) fn s<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// The number of entries of the object or array at a JSON pointer.
pub(crate) fn count(obj: &Value, ptr: &str) -> usize {
    match obj.pointer(ptr) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

/// Keeps `status` from `old` (the main endpoint may not change it).
pub(crate) fn keep_status(new: &mut Value, old: &Value) {
    if let Some(o) = new.as_object_mut() {
        match old.get("status") {
            Some(st) => o.insert("status".into(), st.clone()),
            None => o.remove("status"),
        };
    }
}

/// Sets `obj[ptr]` to `v` if it is absent or null (defaulting).
pub(crate) fn default_at(obj: &mut Value, ptr: &str, v: Value) {
    if obj.pointer(ptr).is_some_and(|x| !x.is_null()) {
        return;
    }
    let mut cur = obj;
    let parts: Vec<&str> = ptr.trim_start_matches('/').split('/').collect();
    let Some((last, parents)) = parts.split_last() else {
        return;
    };
    for p in parents {
        let Some(o) = cur.as_object_mut() else {
            return;
        };
        let next = o
            .entry((*p).to_string())
            .or_insert_with(|| Value::Object(Default::default()));
        if next.is_null() {
            *next = Value::Object(Default::default());
        }
        cur = next;
    }
    if let Some(o) = cur.as_object_mut() {
        o.insert((*last).to_string(), v);
    }
}

/// Every built-in resource, in discovery order.
pub fn builtin() -> Vec<ResourceInfo> {
    let r = |group,
             version,
             kind,
             resource,
             singular,
             scope,
             short_names,
             categories,
             strategy: Box<dyn super::Strategy>| ResourceInfo {
        group,
        version,
        kind,
        resource,
        singular,
        scope,
        short_names,
        categories,
        return_deleted_object: false,
        subresources: &[],
        strategy,
    };
    const STATUS: &[Subresource] = &[Subresource::Status];
    use Scope::{Cluster, Namespaced};
    vec![
        ResourceInfo {
            subresources: STATUS,
            ..r(
                "",
                "v1",
                "Namespace",
                "namespaces",
                "namespace",
                Cluster,
                &["ns"],
                &[],
                Box::new(core::Namespaces),
            )
        },
        r(
            "",
            "v1",
            "ConfigMap",
            "configmaps",
            "configmap",
            Namespaced,
            &["cm"],
            &[],
            Box::new(core::ConfigMaps),
        ),
        r(
            "",
            "v1",
            "Secret",
            "secrets",
            "secret",
            Namespaced,
            &[],
            &[],
            Box::new(core::Secrets),
        ),
        r(
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            "serviceaccount",
            Namespaced,
            &["sa"],
            &[],
            Box::new(core::ServiceAccounts),
        ),
        ResourceInfo {
            subresources: STATUS,
            ..r(
                "",
                "v1",
                "Service",
                "services",
                "service",
                Namespaced,
                &["svc"],
                &["all"],
                Box::new(services::Services),
            )
        },
        ResourceInfo {
            return_deleted_object: true,
            subresources: STATUS,
            ..r(
                "",
                "v1",
                "Pod",
                "pods",
                "pod",
                Namespaced,
                &["po"],
                &["all"],
                Box::new(pods::Pods),
            )
        },
        ResourceInfo {
            subresources: STATUS,
            ..r(
                "",
                "v1",
                "Node",
                "nodes",
                "node",
                Cluster,
                &["no"],
                &[],
                Box::new(core::Nodes),
            )
        },
        r(
            "",
            "v1",
            "Event",
            "events",
            "event",
            Namespaced,
            &["ev"],
            &[],
            Box::new(core::Events),
        ),
        ResourceInfo {
            subresources: &[Subresource::Status, Subresource::Scale],
            ..r(
                "apps",
                "v1",
                "Deployment",
                "deployments",
                "deployment",
                Namespaced,
                &["deploy"],
                &["all"],
                Box::new(apps::Deployments),
            )
        },
        r(
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
            "lease",
            Namespaced,
            &[],
            &[],
            Box::new(core::Leases),
        ),
    ]
}
