//! The built-in kinds: one [`Strategy`] each, and
//! [`builtin`], the resource table they are served from.

mod admissionregistration;
mod apiregistration;
mod apps;
mod autoscaling;
mod batch;
mod certificates;
mod component_status;
mod core;
mod crd;
mod events;
mod flowcontrol;
mod metrics;
mod network_policies;
mod networking;
mod node;
mod pod_templates;
mod pods;
mod policy;
mod quota;
mod rbac;
mod reviews;
mod revisions;
mod service_cidrs;
mod service_ip_range;
mod services;

pub use policy::{SYSTEM_PRIORITY_CLASSES, is_system_priority_class};
pub use quota::default_limit_range_item;
pub use service_ip_range::ServiceCidr;
pub mod storage;

use serde_json::{Map, Value};

use super::{FieldError, Name, Persistence, ResourceInfo, Scope, Strategy, Subresource};

/// Implements `Strategy::canonicalize` and `Strategy::schema` through a `k8s-openapi` type.
macro_rules! typed {
    ($t:ty) => {
        fn canonicalize(
            &self,
            obj: &serde_json::Value,
        ) -> std::result::Result<$crate::Canonical, String> {
            $crate::typed::roundtrip::<$t>(obj)
        }

        fn schema(&self, generator: &mut schemars::SchemaGenerator) -> Option<schemars::Schema> {
            Some(generator.subschema_for::<$t>())
        }
    };
}
pub(crate) use typed;

/// The string at a JSON pointer, or "".
pub fn s<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// The number of entries of the object or array at a JSON pointer.
pub fn count(obj: &Value, ptr: &str) -> usize {
    match obj.pointer(ptr) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

/// Drops `status` (what a create may not set: the controllers write it).
pub fn drop_status(obj: &mut Value) {
    if let Some(o) = obj.as_object_mut() {
        o.remove("status");
    }
}

/// Keeps `status` from `old` (the main endpoint may not change it).
pub fn keep_status(new: &mut Value, old: &Value) {
    if let Some(o) = new.as_object_mut() {
        match old.get("status") {
            Some(st) => o.insert("status".into(), st.clone()),
            None => o.remove("status"),
        };
    }
}

/// Sets `obj[ptr]` to `v` if it is absent or null (defaulting). Missing or
/// null objects on the way are created; a value of another type on the way
/// is left alone (and nothing is set).
pub fn default_at(obj: &mut Value, ptr: &str, v: Value) {
    if obj.pointer(ptr).is_some_and(|x| !x.is_null()) {
        return;
    }
    put_at(obj, ptr, v, false);
}

/// Sets `obj[ptr]` to `v`, making every value on the way an object
/// (creating missing ones, replacing others).
pub fn set_at(obj: &mut Value, ptr: &str, v: Value) {
    put_at(obj, ptr, v, true);
}

/// Inserts `v` at `ptr`, creating missing or null objects on the way;
/// `replace_others` also turns other values on the way into objects, else
/// the insert stops there.
fn put_at(obj: &mut Value, ptr: &str, v: Value, replace_others: bool) {
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
        if next.is_null() || (replace_others && !next.is_object()) {
            *next = Value::Object(Default::default());
        }
        cur = next;
    }
    if let Some(o) = cur.as_object_mut() {
        o.insert((*last).to_string(), v);
    }
}

/// An integer at a JSON pointer, or 0.
pub fn int(obj: &Value, ptr: &str) -> i64 {
    obj.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// The `Containers` and `Images` cells of a pod template at `ptr`
/// (e.g. `/spec/template`), comma-joined as upstream's `layoutContainerCells`.
pub fn containers_images(obj: &Value, ptr: &str) -> (Value, Value) {
    let cs = obj
        .pointer(&format!("{ptr}/spec/containers"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let names: Vec<&str> = cs
        .iter()
        .map(|c| c.get("name").and_then(Value::as_str).unwrap_or(""))
        .collect();
    let images: Vec<&str> = cs
        .iter()
        .map(|c| c.get("image").and_then(Value::as_str).unwrap_or(""))
        .collect();
    (
        Value::String(names.join(",")),
        Value::String(images.join(",")),
    )
}

/// A label map (or `matchLabels`) as `k=v,k2=v2`; "" when absent or empty.
pub fn format_label_map(map: Option<&Value>) -> String {
    map.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// `metav1.FormatLabelSelector`: `k=v,k in (a,b),!k`, or `<none>`.
pub fn format_selector(sel: Option<&Value>) -> Value {
    let Some(sel) = sel.filter(|s| !s.is_null()) else {
        return Value::String("<none>".into());
    };
    let mut parts = Vec::new();
    let labels = format_label_map(sel.get("matchLabels"));
    if !labels.is_empty() {
        parts.push(labels);
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        match e.get("operator").and_then(Value::as_str).unwrap_or("") {
            "In" => parts.push(format!("{key} in ({})", values.join(","))),
            "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
            "Exists" => parts.push(key.to_string()),
            "DoesNotExist" => parts.push(format!("!{key}")),
            op => parts.push(format!("{key} {op} ({})", values.join(","))),
        }
    }
    if parts.is_empty() {
        return Value::String("<none>".into());
    }
    Value::String(parts.join(","))
}

/// Whether a `metav1.LabelSelector` selects `labels`.
pub fn selector_matches(sel: &Value, labels: Option<&Map<String, Value>>) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    let by_labels = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.iter().all(|(k, v)| get(k) == v.as_str()));
    let by_exprs = sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .is_none_or(|es| {
            es.iter().all(|e| {
                let key = e.get("key").and_then(Value::as_str).unwrap_or("");
                let has = |v: &str| {
                    e.get("values")
                        .and_then(Value::as_array)
                        .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(v)))
                };
                match (e.get("operator").and_then(Value::as_str), get(key)) {
                    (Some("In"), Some(v)) => has(v),
                    (Some("In"), None) => false,
                    (Some("NotIn"), Some(v)) => !has(v),
                    (Some("NotIn"), None) => true,
                    (Some("Exists"), v) => v.is_some(),
                    (Some("DoesNotExist"), v) => v.is_none(),
                    _ => false,
                }
            })
        });
    by_labels && by_exprs
}

/// Upstream's checks of a workload's `spec.selector` against its pod
/// template at `template` (e.g. `/spec/template`), with field paths under
/// `path` (e.g. `spec`): the selector is required and not empty, and must
/// select the template's labels.
pub fn validate_selector(obj: &Value, path: &str, template: &str, what: &str) -> Vec<FieldError> {
    let mut out = Vec::new();
    let ptr = format!("/{}/selector", path.replace('.', "/"));
    let sel = obj.pointer(&ptr).filter(|s| !s.is_null());
    let empty =
        sel.is_none_or(|s| count(s, "/matchLabels") == 0 && count(s, "/matchExpressions") == 0);
    if sel.is_none() {
        out.push(FieldError::required(format!("{path}.selector"), ""));
        return out;
    }
    if empty {
        out.push(FieldError::invalid(
            format!("{path}.selector"),
            "{}",
            &format!("empty selector is invalid for {what}"),
        ));
        return out;
    }
    let labels = obj
        .pointer(&format!("{template}/metadata/labels"))
        .and_then(Value::as_object);
    if let Some(sel) = sel
        && !selector_matches(sel, labels)
    {
        let field = format!(
            "{}.metadata.labels",
            template.trim_start_matches('/').replace('/', ".")
        );
        out.push(FieldError::invalid(
            field,
            &labels
                .map(|l| Value::Object(l.clone()).to_string())
                .unwrap_or_default(),
            "`selector` does not match template `labels`",
        ));
    }
    out
}

/// The integer at `ptr` (e.g. `/spec/replicas`) must not be negative.
pub fn validate_non_negative(obj: &Value, ptr: &str) -> Option<FieldError> {
    let v = obj.pointer(ptr).and_then(Value::as_i64)?;
    (v < 0).then(|| {
        FieldError::invalid_int(
            ptr.trim_start_matches('/').replace('/', "."),
            v,
            "must be greater than or equal to 0",
        )
    })
}

/// `field: Unsupported value: "v": supported values: "a", "b"`.
pub fn unsupported(field: impl Into<String>, value: &str, supported: &[&str]) -> FieldError {
    let field = field.into();
    let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    FieldError {
        reason: "FieldValueNotSupported",
        message: format!(
            "{field}: Unsupported value: {value:?}: supported values: {}",
            list.join(", ")
        ),
        field,
    }
}

/// `field: Forbidden: detail`.
pub fn forbidden(field: impl Into<String>, detail: &str) -> FieldError {
    let field = field.into();
    FieldError {
        reason: "FieldValueForbidden",
        message: format!("{field}: Forbidden: {detail}"),
        field,
    }
}

/// `field` must be unchanged between `old` and `new` (JSON pointer `ptr`).
pub fn immutable(new: &Value, old: &Value, ptr: &str) -> Option<FieldError> {
    (new.pointer(ptr) != old.pointer(ptr)).then(|| {
        FieldError::immutable(
            ptr.trim_start_matches('/').replace('/', "."),
            new.pointer(ptr).unwrap_or(&Value::Null),
        )
    })
}

/// Upstream's category of the workloads and pods `kubectl get all` lists.
/// Upstream's category of what extends the API (`kubectl get api-extensions`).
const API_EXTENSIONS: &[&str] = &["api-extensions"];
/// `/status` only.
pub const STATUS: &[Subresource] = &[Subresource::Status];
/// `/scale` only.
pub const SCALE: &[Subresource] = &[Subresource::Scale];
/// `/status` and `/scale`.
pub const STATUS_SCALE: &[Subresource] = &[Subresource::Status, Subresource::Scale];
/// `/token` (service accounts).
pub const TOKEN: &[Subresource] = &[Subresource::Token];
/// `/status` and `/approval` (certificate signing requests).
pub const STATUS_APPROVAL: &[Subresource] = &[Subresource::Status, Subresource::Approval];

pub use certificates::condition as csr_condition;
pub use reviews::user_info_json;

/// Pods' subresources: `/status`, `/eviction`, `/binding`, and the streams through the pod's
/// worker.
const POD_SUBRESOURCES: &[Subresource] = &[
    Subresource::Status,
    Subresource::Eviction,
    Subresource::Binding,
    Subresource::Log,
    Subresource::Exec,
    Subresource::Attach,
    Subresource::PortForward,
];

/// The group, version and resource of the definitions of custom resources.
pub const CRD_GROUP_VERSION_RESOURCE: (&str, &str, &str) =
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions");

/// The finalizer a CustomResourceDefinition gets on its first DELETE; the
/// CRD finalizer controller removes it once the definition's custom
/// resources are gone.
pub const CUSTOM_RESOURCE_CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

pub use crd::set_condition as set_crd_condition;
pub use pods::update_pod_condition;

/// A stored resource without short names, categories or subresources.
fn res(
    (group, version): (&'static str, &'static str),
    kind: &'static str,
    (resource, singular): (&'static str, impl Into<Name>),
    scope: Scope,
    strategy: Box<dyn Strategy>,
) -> ResourceInfo {
    let singular = singular.into();
    ResourceInfo {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        resource: resource.into(),
        singular,
        scope,
        short_names: Vec::new(),
        categories: Vec::new(),
        return_deleted_object: false,
        subresources: &[],
        persistence: Persistence::Stored,
        strategy,
    }
}

/// A stored resource from its `k8s-openapi` type: group, version, kind, plural and scope are the
/// type's constants, the singular its lowercase kind (as upstream's), so a kind's names are
/// declared once, by the type.
fn typed_res<K: k8s_openapi::Resource>(strategy: Box<dyn Strategy>) -> ResourceInfo
where
    K::Scope: 'static,
{
    let cluster = std::any::TypeId::of::<K::Scope>()
        == std::any::TypeId::of::<k8s_openapi::ClusterResourceScope>();
    res(
        (K::GROUP, K::VERSION),
        K::KIND,
        (
            K::URL_PATH_SEGMENT,
            Name::from(K::KIND.to_ascii_lowercase()),
        ),
        if cluster {
            Scope::Cluster
        } else {
            Scope::Namespaced
        },
        strategy,
    )
}

impl ResourceInfo {
    /// With short names.
    fn short(mut self, names: &'static [&'static str]) -> Self {
        self.short_names = names.iter().copied().map(Name::from).collect();
        self
    }

    /// DELETE answers with the deleted object, not a Status (upstream's
    /// `ReturnDeletedObject: true`: pods, services, service accounts,
    /// custom resources).
    fn returns_deleted_object(mut self) -> Self {
        self.return_deleted_object = true;
        self
    }

    /// In the `all` category.
    fn in_all(mut self) -> Self {
        self.categories = vec![Name::from_static("all")];
        self
    }

    /// Create-only and not stored.
    fn answered(mut self) -> Self {
        self.persistence = Persistence::Virtual;
        self
    }

    /// Read-only and not stored (answered from the workers).
    fn computed(mut self) -> Self {
        self.persistence = Persistence::Computed;
        self
    }

    /// In `categories` (`kubectl get api-extensions`).
    fn categories(mut self, categories: &'static [&'static str]) -> Self {
        self.categories = categories.iter().copied().map(Name::from).collect();
        self
    }

    /// With subresources.
    fn subs(mut self, subs: &'static [Subresource]) -> Self {
        self.subresources = subs;
        self
    }

    /// Served from another version's storage through `conversion`.
    fn converted(mut self, conversion: super::Conversion) -> Self {
        self.persistence = Persistence::Converted(conversion);
        self
    }
}

/// Every built-in resource, in discovery order.
pub fn builtin() -> Vec<ResourceInfo> {
    use Scope::{Cluster, Namespaced};
    const AUTHN_BETA: (&str, &str) = ("authentication.k8s.io", "v1beta1");
    const METRICS: (&str, &str) = ("metrics.k8s.io", "v1beta1");
    vec![
        typed_res::<k8s_openapi::api::core::v1::Namespace>(Box::new(core::Namespaces))
            .short(&["ns"])
            .subs(STATUS),
        typed_res::<k8s_openapi::api::core::v1::ConfigMap>(Box::new(core::ConfigMaps))
            .short(&["cm"]),
        typed_res::<k8s_openapi::api::core::v1::Secret>(Box::new(core::Secrets)),
        typed_res::<k8s_openapi::api::core::v1::ServiceAccount>(Box::new(core::ServiceAccounts))
            .short(&["sa"])
            .subs(TOKEN)
            .returns_deleted_object(),
        typed_res::<k8s_openapi::api::core::v1::Service>(Box::new(services::Services))
            .short(&["svc"])
            .in_all()
            .subs(STATUS)
            .returns_deleted_object(),
        typed_res::<k8s_openapi::api::core::v1::Pod>(Box::new(pods::Pods))
            .short(&["po"])
            .in_all()
            .subs(POD_SUBRESOURCES)
            .returns_deleted_object(),
        typed_res::<k8s_openapi::api::core::v1::Node>(Box::new(core::Nodes))
            .short(&["no"])
            .subs(STATUS),
        typed_res::<k8s_openapi::api::core::v1::ComponentStatus>(Box::new(
            component_status::ComponentStatuses,
        ))
        .short(&["cs"])
        .computed(),
        typed_res::<k8s_openapi::api::core::v1::Event>(Box::new(core::Events)).short(&["ev"]),
        typed_res::<k8s_openapi::api::core::v1::Endpoints>(Box::new(services::Endpoints))
            .short(&["ep"]),
        typed_res::<k8s_openapi::api::core::v1::ResourceQuota>(Box::new(quota::ResourceQuotas))
            .short(&["quota"])
            .subs(STATUS),
        typed_res::<k8s_openapi::api::core::v1::LimitRange>(Box::new(quota::LimitRanges))
            .short(&["limits"]),
        typed_res::<k8s_openapi::api::core::v1::PersistentVolumeClaim>(Box::new(
            storage::PersistentVolumeClaims,
        ))
        .short(&["pvc"])
        .subs(STATUS),
        typed_res::<k8s_openapi::api::core::v1::PersistentVolume>(Box::new(
            storage::PersistentVolumes,
        ))
        .short(&["pv"])
        .subs(STATUS),
        typed_res::<k8s_openapi::api::core::v1::Binding>(Box::new(pods::Bindings)).answered(),
        typed_res::<k8s_openapi::api::core::v1::ReplicationController>(Box::new(
            apps::ReplicationControllers,
        ))
        .short(&["rc"])
        .in_all()
        .subs(STATUS_SCALE),
        typed_res::<k8s_openapi::api::core::v1::PodTemplate>(Box::new(pod_templates::PodTemplates)),
        typed_res::<k8s_openapi::api::apps::v1::Deployment>(Box::new(apps::Deployments))
            .short(&["deploy"])
            .in_all()
            .subs(STATUS_SCALE),
        typed_res::<k8s_openapi::api::apps::v1::ReplicaSet>(Box::new(apps::ReplicaSets))
            .short(&["rs"])
            .in_all()
            .subs(STATUS_SCALE),
        typed_res::<k8s_openapi::api::apps::v1::DaemonSet>(Box::new(apps::DaemonSets))
            .short(&["ds"])
            .in_all()
            .subs(STATUS),
        typed_res::<k8s_openapi::api::apps::v1::StatefulSet>(Box::new(apps::StatefulSets))
            .short(&["sts"])
            .in_all()
            .subs(STATUS_SCALE),
        typed_res::<k8s_openapi::api::apps::v1::ControllerRevision>(Box::new(
            revisions::ControllerRevisions,
        )),
        typed_res::<k8s_openapi::api::batch::v1::Job>(Box::new(batch::Jobs))
            .in_all()
            .subs(STATUS),
        typed_res::<k8s_openapi::api::batch::v1::CronJob>(Box::new(batch::CronJobs))
            .short(&["cj"])
            .in_all()
            .subs(STATUS),
        typed_res::<k8s_openapi::api::coordination::v1::Lease>(Box::new(core::Leases)),
        typed_res::<k8s_openapi::api::discovery::v1::EndpointSlice>(Box::new(
            services::EndpointSlices,
        )),
        typed_res::<k8s_openapi::api::events::v1::Event>(Box::new(events::Events)).short(&["ev"]),
        typed_res::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>(Box::new(
            rbac::ClusterRoleBindings,
        )),
        typed_res::<k8s_openapi::api::rbac::v1::ClusterRole>(Box::new(rbac::ClusterRoles)),
        typed_res::<k8s_openapi::api::rbac::v1::RoleBinding>(Box::new(rbac::RoleBindings)),
        typed_res::<k8s_openapi::api::rbac::v1::Role>(Box::new(rbac::Roles)),
        typed_res::<k8s_openapi::api::certificates::v1::CertificateSigningRequest>(Box::new(
            certificates::CertificateSigningRequests,
        ))
        .short(&["csr"])
        .subs(STATUS_APPROVAL),
        typed_res::<k8s_openapi::api::networking::v1::Ingress>(Box::new(networking::Ingresses))
            .short(&["ing"])
            .subs(STATUS),
        typed_res::<k8s_openapi::api::networking::v1::NetworkPolicy>(Box::new(
            network_policies::NetworkPolicies,
        ))
        .short(&["netpol"]),
        typed_res::<k8s_openapi::api::policy::v1::PodDisruptionBudget>(Box::new(
            policy::PodDisruptionBudgets,
        ))
        .short(&["pdb"])
        .subs(STATUS),
        typed_res::<k8s_openapi::api::scheduling::v1::PriorityClass>(Box::new(
            policy::PriorityClasses,
        ))
        .short(&["pc"]),
        typed_res::<k8s_openapi::api::storage::v1::StorageClass>(Box::new(storage::StorageClasses))
            .short(&["sc"]),
        typed_res::<k8s_openapi::api::storage::v1::CSIDriver>(Box::new(storage::CsiDrivers)),
        typed_res::<k8s_openapi::api::storage::v1::CSINode>(Box::new(storage::CsiNodes)),
        typed_res::<k8s_openapi::api::storage::v1::VolumeAttachment>(Box::new(
            storage::VolumeAttachments,
        ))
        .subs(STATUS),
        typed_res::<k8s_openapi::api::storage::v1::CSIStorageCapacity>(Box::new(
            storage::CsiStorageCapacities,
        )),
        typed_res::<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>(Box::new(
            autoscaling::HorizontalPodAutoscalers,
        ))
        .short(&["hpa"])
        .in_all()
        .subs(STATUS),
        // After v2, so v2 stays the group's preferred version, as upstream's.
        typed_res::<k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler>(Box::new(
            autoscaling::HorizontalPodAutoscalersV1,
        ))
        .short(&["hpa"])
        .in_all()
        .subs(STATUS)
        .converted(super::Conversion::HorizontalPodAutoscalerV1),
        typed_res::<k8s_openapi::api::networking::v1::IngressClass>(Box::new(
            networking::IngressClasses,
        )),
        typed_res::<k8s_openapi::api::networking::v1::ServiceCIDR>(Box::new(
            service_cidrs::ServiceCidrs,
        ))
        .subs(STATUS),
        typed_res::<k8s_openapi::api::networking::v1::IPAddress>(Box::new(
            service_cidrs::IpAddresses,
        ))
        .short(&["ip"]),
        typed_res::<k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration>(Box::new(
            admissionregistration::ValidatingWebhookConfigurations,
        ))
        .categories(API_EXTENSIONS),
        typed_res::<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration>(Box::new(
            admissionregistration::MutatingWebhookConfigurations,
        ))
        .categories(API_EXTENSIONS),
        typed_res::<k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy>(
            Box::new(admissionregistration::ValidatingAdmissionPolicies),
        )
        .categories(API_EXTENSIONS)
        .subs(STATUS),
        typed_res::<k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding>(Box::new(
            admissionregistration::ValidatingAdmissionPolicyBindings,
        ))
        .categories(API_EXTENSIONS),
        typed_res::<k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService>(
            Box::new(apiregistration::ApiServices),
        )
        .categories(API_EXTENSIONS)
        .subs(STATUS),
        typed_res::<k8s_openapi::api::flowcontrol::v1::FlowSchema>(Box::new(
            flowcontrol::FlowSchemas,
        ))
        .subs(STATUS),
        typed_res::<k8s_openapi::api::flowcontrol::v1::PriorityLevelConfiguration>(Box::new(
            flowcontrol::PriorityLevelConfigurations,
        ))
        .subs(STATUS),
        typed_res::<k8s_openapi::api::node::v1::RuntimeClass>(Box::new(node::RuntimeClasses)),
        typed_res::<
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
        >(Box::new(crd::CustomResourceDefinitions))
        .short(&["crd", "crds"])
        .categories(API_EXTENSIONS)
        .subs(STATUS),
        typed_res::<k8s_openapi::api::authentication::v1::SelfSubjectReview>(Box::new(
            reviews::SelfSubjectReviews::V1,
        ))
        .answered(),
        res(
            AUTHN_BETA,
            "SelfSubjectReview",
            ("selfsubjectreviews", "selfsubjectreview"),
            Cluster,
            Box::new(reviews::SelfSubjectReviews::V1Beta1),
        )
        .answered(),
        typed_res::<k8s_openapi::api::authentication::v1::TokenReview>(Box::new(
            reviews::TokenReviews,
        ))
        .answered(),
        typed_res::<k8s_openapi::api::authorization::v1::LocalSubjectAccessReview>(Box::new(
            reviews::LocalSubjectAccessReviews,
        ))
        .answered(),
        typed_res::<k8s_openapi::api::authorization::v1::SubjectAccessReview>(Box::new(
            reviews::SubjectAccessReviews,
        ))
        .answered(),
        typed_res::<k8s_openapi::api::authorization::v1::SelfSubjectAccessReview>(Box::new(
            reviews::SelfSubjectAccessReviews,
        ))
        .answered(),
        typed_res::<k8s_openapi::api::authorization::v1::SelfSubjectRulesReview>(Box::new(
            reviews::SelfSubjectRulesReviews,
        ))
        .answered(),
        res(
            METRICS,
            "NodeMetrics",
            ("nodes", "node"),
            Cluster,
            Box::new(metrics::MetricsKind::NODES),
        )
        .computed(),
        res(
            METRICS,
            "PodMetrics",
            ("pods", "pod"),
            Namespaced,
            Box::new(metrics::MetricsKind::PODS),
        )
        .computed(),
    ]
}

#[cfg(test)]
mod tests {
    use k8s_openapi::Resource;
    use k8s_openapi::api::{
        admissionregistration, apps, authentication, authorization, autoscaling, batch,
        certificates, coordination, core, discovery, events, flowcontrol, networking, node, policy,
        rbac, scheduling, storage,
    };

    /// `(group, version, plural)` of `K`, from `k8s-openapi`'s constants.
    fn gvr<K: Resource>() -> (&'static str, &'static str, &'static str) {
        (K::GROUP, K::VERSION, K::URL_PATH_SEGMENT)
    }

    /// kube-apiserver 1.33 serves every resource `k8s-openapi`'s `v1_33` declares at a GA version
    /// (its alpha and beta versions are off by default); so does the built-in table. Listed
    /// from the crate's modules: every top-level kind of every `v1` (and `autoscaling/v2`)
    /// module, subresource kinds (Scale, Eviction, TokenRequest) aside.
    #[test]
    fn every_ga_resource_of_kubernetes_1_33_is_served() {
        let served: std::collections::BTreeSet<(String, String, String)> = super::builtin()
            .iter()
            .map(|r| ((&r.group).into(), (&r.version).into(), (&r.resource).into()))
            .collect();
        let ga = [
            gvr::<admissionregistration::v1::MutatingWebhookConfiguration>(),
            gvr::<admissionregistration::v1::ValidatingWebhookConfiguration>(),
            gvr::<admissionregistration::v1::ValidatingAdmissionPolicy>(),
            gvr::<admissionregistration::v1::ValidatingAdmissionPolicyBinding>(),
            gvr::<apps::v1::ControllerRevision>(),
            gvr::<apps::v1::DaemonSet>(),
            gvr::<apps::v1::Deployment>(),
            gvr::<apps::v1::ReplicaSet>(),
            gvr::<apps::v1::StatefulSet>(),
            gvr::<authentication::v1::SelfSubjectReview>(),
            gvr::<authentication::v1::TokenReview>(),
            gvr::<authorization::v1::LocalSubjectAccessReview>(),
            gvr::<authorization::v1::SelfSubjectAccessReview>(),
            gvr::<authorization::v1::SelfSubjectRulesReview>(),
            gvr::<authorization::v1::SubjectAccessReview>(),
            gvr::<autoscaling::v1::HorizontalPodAutoscaler>(),
            gvr::<autoscaling::v2::HorizontalPodAutoscaler>(),
            gvr::<batch::v1::CronJob>(),
            gvr::<batch::v1::Job>(),
            gvr::<certificates::v1::CertificateSigningRequest>(),
            gvr::<coordination::v1::Lease>(),
            gvr::<core::v1::Binding>(),
            gvr::<core::v1::ComponentStatus>(),
            gvr::<core::v1::ConfigMap>(),
            gvr::<core::v1::Endpoints>(),
            gvr::<core::v1::Event>(),
            gvr::<core::v1::LimitRange>(),
            gvr::<core::v1::Namespace>(),
            gvr::<core::v1::Node>(),
            gvr::<core::v1::PersistentVolume>(),
            gvr::<core::v1::PersistentVolumeClaim>(),
            gvr::<core::v1::Pod>(),
            gvr::<core::v1::PodTemplate>(),
            gvr::<core::v1::ReplicationController>(),
            gvr::<core::v1::ResourceQuota>(),
            gvr::<core::v1::Secret>(),
            gvr::<core::v1::Service>(),
            gvr::<core::v1::ServiceAccount>(),
            gvr::<discovery::v1::EndpointSlice>(),
            gvr::<events::v1::Event>(),
            gvr::<flowcontrol::v1::FlowSchema>(),
            gvr::<flowcontrol::v1::PriorityLevelConfiguration>(),
            gvr::<networking::v1::Ingress>(),
            gvr::<networking::v1::IngressClass>(),
            gvr::<networking::v1::IPAddress>(),
            gvr::<networking::v1::NetworkPolicy>(),
            gvr::<networking::v1::ServiceCIDR>(),
            gvr::<node::v1::RuntimeClass>(),
            gvr::<policy::v1::PodDisruptionBudget>(),
            gvr::<rbac::v1::ClusterRole>(),
            gvr::<rbac::v1::ClusterRoleBinding>(),
            gvr::<rbac::v1::Role>(),
            gvr::<rbac::v1::RoleBinding>(),
            gvr::<scheduling::v1::PriorityClass>(),
            gvr::<storage::v1::CSIDriver>(),
            gvr::<storage::v1::CSINode>(),
            gvr::<storage::v1::CSIStorageCapacity>(),
            gvr::<storage::v1::StorageClass>(),
            gvr::<storage::v1::VolumeAttachment>(),
            gvr::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>(),
            gvr::<k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService>(),
        ];
        let missing: Vec<_> = ga
            .iter()
            .filter(|(g, v, r)| !served.contains(&((*g).into(), (*v).into(), (*r).into())))
            .collect();
        assert!(missing.is_empty(), "not served: {missing:?}");
    }
}
