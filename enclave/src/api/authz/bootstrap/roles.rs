//! The default ClusterRoles, Roles and their bindings, as kube-apiserver
//! 1.33 creates them (upstream's `bootstrappolicy`): user-facing roles
//! (cluster-admin, admin, edit, view and their aggregation sources),
//! discovery and self-review roles for every authenticated user, the
//! system components' roles, and one role per kube-controller-manager loop.
//!
//! Rules are written with [`rule`]: comma-separated verbs, API groups ("" is
//! core, so `",events.k8s.io"` is core and events.k8s.io) and resources.
//! Lists are sorted as upstream's rule builder sorts them.

use super::super::PolicyRule;

fn list(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.split(',').map(|x| x.trim().to_string()).collect();
    v.sort();
    v.dedup();
    v
}

/// A resource rule: `verbs` on `resources` of `groups`, comma-separated.
pub(crate) fn rule(verbs: &str, groups: &str, resources: &str) -> PolicyRule {
    PolicyRule {
        verbs: list(verbs),
        api_groups: list(groups),
        resources: list(resources),
        ..Default::default()
    }
}

/// A non-resource rule: `verbs` on `urls`, comma-separated.
pub(crate) fn urls(verbs: &str, urls: &str) -> PolicyRule {
    PolicyRule {
        verbs: list(verbs),
        non_resource_urls: list(urls),
        ..Default::default()
    }
}

/// `rule` restricted to `names`.
pub(crate) fn named(verbs: &str, groups: &str, resources: &str, names: &str) -> PolicyRule {
    PolicyRule {
        resource_names: list(names),
        ..rule(verbs, groups, resources)
    }
}

/// Create, update and patch of events in both event APIs (upstream's `eventsRule`).
pub(crate) fn events() -> PolicyRule {
    rule("create,update,patch", ",events.k8s.io", "events")
}

pub(crate) const READ: &str = "get,list,watch";
const WRITE: &str = "create,delete,deletecollection,patch,update";

/// A default ClusterRole: name, labels beyond `kubernetes.io/bootstrapping`,
/// aggregation selector label (if aggregated), rules.
#[derive(Debug, Clone)]
pub(crate) struct RoleSpec {
    pub(crate) name: &'static str,
    /// The namespace of a Role; "" for a ClusterRole.
    pub(crate) namespace: &'static str,
    pub(crate) labels: Vec<(&'static str, &'static str)>,
    /// `aggregationRule.clusterRoleSelectors[].matchLabels` (one label each).
    pub(crate) aggregate_from: Vec<&'static str>,
    pub(crate) rules: Vec<PolicyRule>,
}

pub(crate) fn role(name: &'static str, rules: Vec<PolicyRule>) -> RoleSpec {
    RoleSpec {
        name,
        namespace: "",
        labels: Vec::new(),
        aggregate_from: Vec::new(),
        rules,
    }
}

fn ns_role(namespace: &'static str, name: &'static str, rules: Vec<PolicyRule>) -> RoleSpec {
    RoleSpec {
        namespace,
        ..role(name, rules)
    }
}

impl RoleSpec {
    fn label(mut self, k: &'static str) -> Self {
        self.labels.push((k, "true"));
        self
    }

    fn aggregated(mut self, from: &'static str) -> Self {
        self.aggregate_from.push(from);
        self
    }
}

const TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
const TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
const TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

/// Upstream's `ClusterRoles()`.
pub(crate) fn cluster_roles() -> Vec<RoleSpec> {
    vec![
        role("admin", vec![]).aggregated(TO_ADMIN),
        role("cluster-admin", vec![rule("*", "*", "*"), urls("*", "*")]),
        role("edit", vec![]).aggregated(TO_EDIT).label(TO_ADMIN),
        role(
            "system:aggregate-to-admin",
            vec![
                rule(
                    "create",
                    "authorization.k8s.io",
                    "localsubjectaccessreviews",
                ),
                rule(
                    &format!("{READ},{WRITE}"),
                    "rbac.authorization.k8s.io",
                    "rolebindings,roles",
                ),
            ],
        )
        .label(TO_ADMIN),
        role("system:aggregate-to-edit", aggregate_to_edit()).label(TO_EDIT),
        role("system:aggregate-to-view", aggregate_to_view()).label(TO_VIEW),
        role(
            "system:auth-delegator",
            vec![
                rule("create", "authentication.k8s.io", "tokenreviews"),
                rule("create", "authorization.k8s.io", "subjectaccessreviews"),
            ],
        ),
        role(
            "system:basic-user",
            vec![
                rule(
                    "create",
                    "authorization.k8s.io",
                    "selfsubjectaccessreviews,selfsubjectrulesreviews",
                ),
                rule("create", "authentication.k8s.io", "selfsubjectreviews"),
            ],
        ),
        role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![rule(
                "create",
                "certificates.k8s.io",
                "certificatesigningrequests/nodeclient",
            )],
        ),
        role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            vec![rule(
                "create",
                "certificates.k8s.io",
                "certificatesigningrequests/selfnodeclient",
            )],
        ),
        role(
            "system:certificates.k8s.io:kube-apiserver-client-approver",
            vec![named(
                "approve",
                "certificates.k8s.io",
                "signers",
                "kubernetes.io/kube-apiserver-client",
            )],
        ),
        role(
            "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver",
            vec![named(
                "approve",
                "certificates.k8s.io",
                "signers",
                "kubernetes.io/kube-apiserver-client-kubelet",
            )],
        ),
        role(
            "system:certificates.k8s.io:kubelet-serving-approver",
            vec![named(
                "approve",
                "certificates.k8s.io",
                "signers",
                "kubernetes.io/kubelet-serving",
            )],
        ),
        role(
            "system:certificates.k8s.io:legacy-unknown-approver",
            vec![named(
                "approve",
                "certificates.k8s.io",
                "signers",
                "kubernetes.io/legacy-unknown",
            )],
        ),
        role(
            "system:discovery",
            vec![urls(
                "get",
                "/api,/api/*,/apis,/apis/*,/healthz,/livez,/openapi,/openapi/*,/readyz,/version,/version/",
            )],
        ),
        role(
            "system:heapster",
            vec![
                rule(READ, "", "events,namespaces,nodes,pods"),
                rule(READ, "extensions", "deployments"),
            ],
        ),
        role(
            "system:kube-aggregator",
            vec![rule(READ, "", "endpoints,services")],
        ),
        role("system:kube-controller-manager", kube_controller_manager()),
        role(
            "system:kube-dns",
            vec![rule("list,watch", "", "endpoints,services")],
        ),
        role("system:kube-scheduler", kube_scheduler()),
        role(
            "system:kubelet-api-admin",
            vec![
                rule(READ, "", "nodes"),
                rule("proxy", "", "nodes"),
                rule("*", "", "nodes/log,nodes/metrics,nodes/proxy,nodes/stats"),
            ],
        ),
        role(
            "system:monitoring",
            vec![urls(
                "get",
                "/healthz,/healthz/*,/livez,/livez/*,/metrics,/metrics/slis,/readyz,/readyz/*",
            )],
        ),
        role("system:node", node()),
        role(
            "system:node-bootstrapper",
            vec![rule(
                "create,get,list,watch",
                "certificates.k8s.io",
                "certificatesigningrequests",
            )],
        ),
        role(
            "system:node-problem-detector",
            vec![
                rule("get", "", "nodes"),
                rule("patch", "", "nodes/status"),
                events(),
            ],
        ),
        role(
            "system:node-proxier",
            vec![
                rule("list,watch", "", "endpoints,services"),
                rule(READ, "", "nodes"),
                events(),
                rule("list,watch", "discovery.k8s.io", "endpointslices"),
            ],
        ),
        role(
            "system:persistent-volume-provisioner",
            vec![
                rule("create,delete,get,list,watch", "", "persistentvolumes"),
                rule("get,list,update,watch", "", "persistentvolumeclaims"),
                rule(READ, "storage.k8s.io", "storageclasses"),
                rule("watch", "", "events"),
                events(),
            ],
        ),
        role(
            "system:public-info-viewer",
            vec![urls("get", "/healthz,/livez,/readyz,/version,/version/")],
        ),
        role(
            "system:service-account-issuer-discovery",
            vec![urls(
                "get",
                "/.well-known/openid-configuration,/openid/v1/jwks",
            )],
        ),
        role(
            "system:volume-scheduler",
            vec![
                rule("get,list,patch,update,watch", "", "persistentvolumes"),
                rule(READ, "storage.k8s.io", "storageclasses"),
                rule("get,list,patch,update,watch", "", "persistentvolumeclaims"),
            ],
        ),
        role("view", vec![]).aggregated(TO_VIEW).label(TO_EDIT),
    ]
}

fn aggregate_to_edit() -> Vec<PolicyRule> {
    vec![
        rule(
            READ,
            "",
            "pods/attach,pods/exec,pods/portforward,pods/proxy,secrets,services/proxy",
        ),
        rule("impersonate", "", "serviceaccounts"),
        rule(
            WRITE,
            "",
            "pods,pods/attach,pods/exec,pods/portforward,pods/proxy",
        ),
        rule("create", "", "pods/eviction"),
        rule(
            WRITE,
            "",
            "configmaps,events,persistentvolumeclaims,replicationcontrollers,replicationcontrollers/scale,secrets,serviceaccounts,services,services/proxy",
        ),
        rule("create", "", "serviceaccounts/token"),
        rule(
            WRITE,
            "apps",
            "daemonsets,deployments,deployments/rollback,deployments/scale,replicasets,replicasets/scale,statefulsets,statefulsets/scale",
        ),
        rule(WRITE, "autoscaling", "horizontalpodautoscalers"),
        rule(WRITE, "batch", "cronjobs,jobs"),
        rule(
            WRITE,
            "extensions",
            "daemonsets,deployments,deployments/rollback,deployments/scale,ingresses,networkpolicies,replicasets,replicasets/scale,replicationcontrollers/scale",
        ),
        rule(WRITE, "policy", "poddisruptionbudgets"),
        rule(WRITE, "networking.k8s.io", "ingresses,networkpolicies"),
        rule(&format!("{READ},{WRITE}"), "coordination.k8s.io", "leases"),
    ]
}

fn aggregate_to_view() -> Vec<PolicyRule> {
    vec![
        rule(
            READ,
            "",
            "configmaps,endpoints,persistentvolumeclaims,persistentvolumeclaims/status,pods,replicationcontrollers,replicationcontrollers/scale,serviceaccounts,services,services/status",
        ),
        rule(
            READ,
            "",
            "bindings,events,limitranges,namespaces/status,pods/log,pods/status,replicationcontrollers/status,resourcequotas,resourcequotas/status",
        ),
        rule(READ, "", "namespaces"),
        rule(READ, "discovery.k8s.io", "endpointslices"),
        rule(
            READ,
            "apps",
            "controllerrevisions,daemonsets,daemonsets/status,deployments,deployments/scale,deployments/status,replicasets,replicasets/scale,replicasets/status,statefulsets,statefulsets/scale,statefulsets/status",
        ),
        rule(
            READ,
            "autoscaling",
            "horizontalpodautoscalers,horizontalpodautoscalers/status",
        ),
        rule(READ, "batch", "cronjobs,cronjobs/status,jobs,jobs/status"),
        rule(
            READ,
            "extensions",
            "daemonsets,daemonsets/status,deployments,deployments/scale,deployments/status,ingresses,ingresses/status,networkpolicies,replicasets,replicasets/scale,replicasets/status,replicationcontrollers/scale",
        ),
        rule(
            READ,
            "policy",
            "poddisruptionbudgets,poddisruptionbudgets/status",
        ),
        rule(
            READ,
            "networking.k8s.io",
            "ingresses,ingresses/status,networkpolicies",
        ),
    ]
}

fn kube_controller_manager() -> Vec<PolicyRule> {
    vec![
        events(),
        rule("create", "coordination.k8s.io", "leases"),
        named(
            "get,update",
            "coordination.k8s.io",
            "leases",
            "kube-controller-manager",
        ),
        rule("create", "", "secrets,serviceaccounts"),
        rule("delete", "", "secrets"),
        rule("get", "", "configmaps,namespaces,secrets,serviceaccounts"),
        rule("update", "", "secrets,serviceaccounts"),
        rule("create", "authentication.k8s.io", "tokenreviews"),
        rule("create", "authorization.k8s.io", "subjectaccessreviews"),
        rule("list,watch", "*", "*"),
        rule("create", "", "serviceaccounts/token"),
    ]
}

fn kube_scheduler() -> Vec<PolicyRule> {
    vec![
        events(),
        rule("create", "coordination.k8s.io", "leases"),
        named(
            "get,update",
            "coordination.k8s.io",
            "leases",
            "kube-scheduler",
        ),
        rule(READ, "", "nodes"),
        rule("delete,get,list,watch", "", "pods"),
        rule("create", "", "bindings,pods/binding"),
        rule("patch,update", "", "pods/status"),
        rule(READ, "", "replicationcontrollers,services"),
        rule(READ, "apps,extensions", "replicasets"),
        rule(READ, "apps", "statefulsets"),
        rule(READ, "policy", "poddisruptionbudgets"),
        rule(READ, "", "persistentvolumeclaims,persistentvolumes"),
        rule("create", "authentication.k8s.io", "tokenreviews"),
        rule("create", "authorization.k8s.io", "subjectaccessreviews"),
        rule(READ, "storage.k8s.io", "csinodes"),
        rule(READ, "", "namespaces"),
        rule(READ, "storage.k8s.io", "csidrivers"),
        rule(READ, "storage.k8s.io", "csistoragecapacities"),
    ]
}

fn node() -> Vec<PolicyRule> {
    vec![
        rule("create", "authentication.k8s.io", "tokenreviews"),
        rule(
            "create",
            "authorization.k8s.io",
            "localsubjectaccessreviews,subjectaccessreviews",
        ),
        rule(READ, "", "services"),
        rule("create,get,list,watch", "", "nodes"),
        rule("patch,update", "", "nodes/status"),
        rule("patch,update", "", "nodes"),
        rule("create,patch,update", "", "events"),
        rule(READ, "", "pods"),
        rule("create,delete", "", "pods"),
        rule("patch,update", "", "pods/status"),
        rule("create", "", "pods/eviction"),
        rule(READ, "", "configmaps,secrets"),
        rule("get", "", "persistentvolumeclaims,persistentvolumes"),
        rule("get", "", "endpoints"),
        rule(
            "create,get,list,watch",
            "certificates.k8s.io",
            "certificatesigningrequests",
        ),
        rule(
            "create,delete,get,patch,update",
            "coordination.k8s.io",
            "leases",
        ),
        rule("get", "storage.k8s.io", "volumeattachments"),
        rule("create", "", "serviceaccounts/token"),
        rule("get,patch,update", "", "persistentvolumeclaims/status"),
        rule(READ, "storage.k8s.io", "csidrivers"),
        rule(
            "create,delete,get,patch,update",
            "storage.k8s.io",
            "csinodes",
        ),
        rule(READ, "node.k8s.io", "runtimeclasses"),
    ]
}

/// Upstream's `NamespaceRoles()`.
pub(crate) fn namespace_roles() -> Vec<RoleSpec> {
    let leases = "create,get,list,update,watch";
    vec![
        ns_role(
            "kube-public",
            "system:controller:bootstrap-signer",
            vec![
                rule(READ, "", "configmaps"),
                named("update", "", "configmaps", "cluster-info"),
                events(),
            ],
        ),
        ns_role(
            "kube-system",
            "extension-apiserver-authentication-reader",
            vec![named(
                READ,
                "",
                "configmaps",
                "extension-apiserver-authentication",
            )],
        ),
        ns_role(
            "kube-system",
            "system::leader-locking-kube-controller-manager",
            vec![
                rule(leases, "coordination.k8s.io", "leases"),
                rule(leases, "coordination.k8s.io", "leasecandidates"),
            ],
        ),
        ns_role(
            "kube-system",
            "system::leader-locking-kube-scheduler",
            vec![
                rule(leases, "coordination.k8s.io", "leases"),
                rule(leases, "coordination.k8s.io", "leasecandidates"),
            ],
        ),
        ns_role(
            "kube-system",
            "system:controller:bootstrap-signer",
            vec![rule(READ, "", "secrets")],
        ),
        ns_role(
            "kube-system",
            "system:controller:cloud-provider",
            vec![rule("create,get,list,watch", "", "configmaps")],
        ),
        ns_role(
            "kube-system",
            "system:controller:token-cleaner",
            vec![rule("delete,get,list,watch", "", "secrets"), events()],
        ),
    ]
}

/// One subject of a default binding.
#[derive(Debug, Clone)]
pub(crate) enum Who {
    /// A user.
    User(&'static str),
    /// A group.
    Group(&'static str),
    /// A service account `(namespace, name)`.
    ServiceAccount(&'static str, String),
}

/// A default binding: name, namespace ("" for a ClusterRoleBinding), the
/// role's kind and name, and subjects.
#[derive(Debug, Clone)]
pub(crate) struct BindingSpec {
    pub(crate) name: String,
    pub(crate) namespace: &'static str,
    pub(crate) role_kind: &'static str,
    pub(crate) role: String,
    pub(crate) subjects: Vec<Who>,
}

fn crb(name: &'static str, subjects: Vec<Who>) -> BindingSpec {
    BindingSpec {
        name: name.into(),
        namespace: "",
        role_kind: "ClusterRole",
        role: name.into(),
        subjects,
    }
}

/// Upstream's `ClusterRoleBindings()`.
pub(crate) fn cluster_role_bindings() -> Vec<BindingSpec> {
    use Who::{Group, ServiceAccount, User};
    vec![
        crb("cluster-admin", vec![Group("system:masters")]),
        crb("system:basic-user", vec![Group("system:authenticated")]),
        crb("system:discovery", vec![Group("system:authenticated")]),
        crb(
            "system:kube-controller-manager",
            vec![User("system:kube-controller-manager")],
        ),
        crb(
            "system:kube-dns",
            vec![ServiceAccount("kube-system", "kube-dns".into())],
        ),
        crb("system:kube-scheduler", vec![User("system:kube-scheduler")]),
        crb("system:monitoring", vec![Group("system:monitoring")]),
        crb("system:node", vec![]),
        crb("system:node-proxier", vec![User("system:kube-proxy")]),
        crb(
            "system:public-info-viewer",
            vec![
                Group("system:authenticated"),
                Group("system:unauthenticated"),
            ],
        ),
        crb(
            "system:service-account-issuer-discovery",
            vec![Group("system:serviceaccounts")],
        ),
        crb(
            "system:volume-scheduler",
            vec![User("system:kube-scheduler")],
        ),
    ]
}

/// Upstream's `NamespaceRoleBindings()`.
pub(crate) fn namespace_role_bindings() -> Vec<BindingSpec> {
    use Who::{ServiceAccount, User};
    let rb = |namespace, name: &str, role: &str, subjects| BindingSpec {
        name: name.into(),
        namespace,
        role_kind: "Role",
        role: role.into(),
        subjects,
    };
    vec![
        rb(
            "kube-public",
            "system:controller:bootstrap-signer",
            "system:controller:bootstrap-signer",
            vec![ServiceAccount("kube-system", "bootstrap-signer".into())],
        ),
        rb(
            "kube-system",
            "system::extension-apiserver-authentication-reader",
            "extension-apiserver-authentication-reader",
            vec![
                User("system:kube-controller-manager"),
                User("system:kube-scheduler"),
            ],
        ),
        rb(
            "kube-system",
            "system::leader-locking-kube-controller-manager",
            "system::leader-locking-kube-controller-manager",
            vec![
                User("system:kube-controller-manager"),
                ServiceAccount("kube-system", "kube-controller-manager".into()),
                ServiceAccount("kube-system", "leader-election-controller".into()),
            ],
        ),
        rb(
            "kube-system",
            "system::leader-locking-kube-scheduler",
            "system::leader-locking-kube-scheduler",
            vec![
                User("system:kube-scheduler"),
                ServiceAccount("kube-system", "kube-scheduler".into()),
            ],
        ),
        rb(
            "kube-system",
            "system:controller:bootstrap-signer",
            "system:controller:bootstrap-signer",
            vec![ServiceAccount("kube-system", "bootstrap-signer".into())],
        ),
        rb(
            "kube-system",
            "system:controller:cloud-provider",
            "system:controller:cloud-provider",
            vec![ServiceAccount("kube-system", "cloud-provider".into())],
        ),
        rb(
            "kube-system",
            "system:controller:token-cleaner",
            "system:controller:token-cleaner",
            vec![ServiceAccount("kube-system", "token-cleaner".into())],
        ),
    ]
}
