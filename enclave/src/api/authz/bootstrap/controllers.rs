//! One ClusterRole per kube-controller-manager loop and its binding to the
//! loop's service account in kube-system (upstream's `ControllerRoles()` and
//! `ControllerRoleBindings()`). The controllers of this control plane run
//! inside the enclave and do not authenticate, but clusters are expected to
//! have these roles, and tools that run such loops elsewhere bind to them.

use super::roles::{BindingSpec, READ, RoleSpec, Who, events, named, role, rule};

/// Upstream's `ControllerRoles()`: one ClusterRole per kube-controller-manager loop.
pub(crate) fn controller_roles() -> Vec<RoleSpec> {
    let c = |name, rules| role(name, rules);
    vec![
        c(
            "system:controller:attachdetach-controller",
            vec![
                rule("list,watch", "", "persistentvolumeclaims,persistentvolumes"),
                rule(READ, "", "nodes"),
                rule("patch,update", "", "nodes/status"),
                rule("list,watch", "", "pods"),
                events(),
                rule(
                    "create,delete,get,list,watch",
                    "storage.k8s.io",
                    "volumeattachments",
                ),
                rule(READ, "storage.k8s.io", "csidrivers"),
                rule(READ, "storage.k8s.io", "csinodes"),
            ],
        ),
        c(
            "system:controller:certificate-controller",
            vec![
                rule(
                    "delete,get,list,watch",
                    "certificates.k8s.io",
                    "certificatesigningrequests",
                ),
                rule(
                    "update",
                    "certificates.k8s.io",
                    "certificatesigningrequests/approval,certificatesigningrequests/status",
                ),
                named(
                    "approve",
                    "certificates.k8s.io",
                    "signers",
                    "kubernetes.io/kube-apiserver-client-kubelet",
                ),
                named(
                    "approve",
                    "certificates.k8s.io",
                    "signers",
                    "kubernetes.io/legacy-unknown",
                ),
                named(
                    "sign",
                    "certificates.k8s.io",
                    "signers",
                    "kubernetes.io/kube-apiserver-client,kubernetes.io/kube-apiserver-client-kubelet,kubernetes.io/kubelet-serving,kubernetes.io/legacy-unknown",
                ),
                rule("create", "authorization.k8s.io", "subjectaccessreviews"),
                events(),
            ],
        ),
        c(
            "system:controller:clusterrole-aggregation-controller",
            vec![rule(
                "escalate,get,list,patch,update,watch",
                "rbac.authorization.k8s.io",
                "clusterroles",
            )],
        ),
        c(
            "system:controller:cronjob-controller",
            vec![
                rule("get,list,update,watch", "batch", "cronjobs"),
                rule("create,delete,get,list,patch,update,watch", "batch", "jobs"),
                rule("update", "batch", "cronjobs/status"),
                rule("update", "batch", "cronjobs/finalizers"),
                rule("delete,list", "", "pods"),
                events(),
            ],
        ),
        c(
            "system:controller:daemon-set-controller",
            vec![
                rule(READ, "apps,extensions", "daemonsets"),
                rule("update", "apps,extensions", "daemonsets/status"),
                rule("update", "apps,extensions", "daemonsets/finalizers"),
                rule("list,watch", "", "nodes"),
                rule("create,delete,list,patch,watch", "", "pods"),
                rule("create", "", "pods/binding"),
                rule(
                    "create,delete,list,patch,update,watch",
                    "apps",
                    "controllerrevisions",
                ),
                events(),
            ],
        ),
        c(
            "system:controller:deployment-controller",
            vec![
                rule("get,list,update,watch", "apps,extensions", "deployments"),
                rule("update", "apps,extensions", "deployments/status"),
                rule("update", "apps,extensions", "deployments/finalizers"),
                rule(
                    "create,delete,get,list,patch,update,watch",
                    "apps,extensions",
                    "replicasets",
                ),
                rule("get,list,update,watch", "", "pods"),
                events(),
            ],
        ),
        c(
            "system:controller:disruption-controller",
            vec![
                rule(READ, "apps,extensions", "deployments"),
                rule(READ, "apps,extensions", "replicasets"),
                rule(READ, "", "replicationcontrollers"),
                rule(READ, "policy", "poddisruptionbudgets"),
                rule(READ, "apps", "statefulsets"),
                rule("update", "policy", "poddisruptionbudgets/status"),
                rule("get", "*", "*/scale"),
                events(),
            ],
        ),
        c(
            "system:controller:endpoint-controller",
            vec![
                rule(READ, "", "pods,services"),
                rule("create,delete,get,list,update", "", "endpoints"),
                rule("create", "", "endpoints/restricted"),
                events(),
            ],
        ),
        c(
            "system:controller:endpointslice-controller",
            vec![
                rule(READ, "", "nodes,pods,services"),
                rule("update", "", "services/finalizers"),
                rule(
                    "create,delete,get,list,update",
                    "discovery.k8s.io",
                    "endpointslices",
                ),
                events(),
            ],
        ),
        c(
            "system:controller:endpointslicemirroring-controller",
            vec![
                rule(READ, "", "endpoints,services"),
                rule("update", "", "endpoints/finalizers"),
                rule(
                    "create,delete,get,list,update",
                    "discovery.k8s.io",
                    "endpointslices",
                ),
                events(),
            ],
        ),
        c(
            "system:controller:ephemeral-volume-controller",
            vec![
                rule("get,list,watch", "", "pods"),
                rule("update", "", "pods/finalizers"),
                rule("create,get,list,watch", "", "persistentvolumeclaims"),
                events(),
            ],
        ),
        c(
            "system:controller:expand-controller",
            vec![
                rule("get,list,patch,update,watch", "", "persistentvolumes"),
                rule("patch,update", "", "persistentvolumeclaims/status"),
                rule(READ, "", "persistentvolumeclaims"),
                rule(READ, "storage.k8s.io", "storageclasses"),
                rule("get", "", "endpoints,services"),
                rule("get", "", "secrets"),
                events(),
            ],
        ),
        c(
            "system:controller:generic-garbage-collector",
            vec![
                rule("delete,get,list,patch,update,watch", "*", "*"),
                events(),
            ],
        ),
        c(
            "system:controller:horizontal-pod-autoscaler",
            vec![
                rule(READ, "autoscaling", "horizontalpodautoscalers"),
                rule("update", "autoscaling", "horizontalpodautoscalers/status"),
                rule("get,update", "*", "*/scale"),
                rule("list", "", "pods"),
                rule("list", "metrics.k8s.io", "pods"),
                rule("get,list", "custom.metrics.k8s.io", "*"),
                rule("get,list", "external.metrics.k8s.io", "*"),
                events(),
            ],
        ),
        c(
            "system:controller:job-controller",
            vec![
                rule("get,list,update,watch", "batch", "jobs"),
                rule("update", "batch", "jobs/status"),
                rule("update", "batch", "jobs/finalizers"),
                rule("create,delete,list,patch,watch", "", "pods"),
                events(),
            ],
        ),
        c(
            "system:controller:legacy-service-account-token-cleaner",
            vec![
                rule("delete,get,list,patch,watch", "", "secrets"),
                named(
                    "get",
                    "",
                    "configmaps",
                    "kube-apiserver-legacy-service-account-token-tracking",
                ),
                rule("get,list,watch", "", "pods"),
                events(),
            ],
        ),
        c(
            "system:controller:namespace-controller",
            vec![
                rule("delete,get,list,watch", "", "namespaces"),
                rule("update", "", "namespaces/finalize,namespaces/status"),
                rule("delete,deletecollection,get,list", "*", "*"),
            ],
        ),
        c(
            "system:controller:node-controller",
            vec![
                rule("delete,get,list,patch,update", "", "nodes"),
                rule("patch,update", "", "nodes/status"),
                rule("patch,update", "", "pods/status"),
                rule("delete,list", "", "pods"),
                events(),
            ],
        ),
        c(
            "system:controller:persistent-volume-binder",
            vec![
                rule(
                    "create,delete,get,list,update,watch",
                    "",
                    "persistentvolumes",
                ),
                rule("update", "", "persistentvolumes/status"),
                rule("get,list,update,watch", "", "persistentvolumeclaims"),
                rule("update", "", "persistentvolumeclaims/status"),
                rule("create,delete,get,list,watch", "", "pods"),
                rule(READ, "storage.k8s.io", "storageclasses"),
                rule("create,delete,get", "", "endpoints,services"),
                rule("get", "", "secrets"),
                rule(READ, "", "nodes"),
                rule("watch", "", "events"),
                events(),
            ],
        ),
        c(
            "system:controller:pod-garbage-collector",
            vec![
                rule("delete,list,watch", "", "pods"),
                rule("get,list", "", "nodes"),
                rule("patch", "", "pods/status"),
            ],
        ),
        c(
            "system:controller:pv-protection-controller",
            vec![
                rule("get,list,update,watch", "", "persistentvolumes"),
                events(),
            ],
        ),
        c(
            "system:controller:pvc-protection-controller",
            vec![
                rule("get,list,update,watch", "", "persistentvolumeclaims"),
                rule("get,list,watch", "", "pods"),
                events(),
            ],
        ),
        c(
            "system:controller:replicaset-controller",
            vec![
                rule("get,list,update,watch", "apps,extensions", "replicasets"),
                rule("update", "apps,extensions", "replicasets/status"),
                rule("update", "apps,extensions", "replicasets/finalizers"),
                rule("create,delete,list,patch,watch", "", "pods"),
                events(),
            ],
        ),
        c(
            "system:controller:replication-controller",
            vec![
                rule("get,list,update,watch", "", "replicationcontrollers"),
                rule("update", "", "replicationcontrollers/status"),
                rule("update", "", "replicationcontrollers/finalizers"),
                rule("create,delete,list,patch,watch", "", "pods"),
                events(),
            ],
        ),
        c(
            "system:controller:resourcequota-controller",
            vec![
                rule("list,watch", "*", "*"),
                rule("update", "", "resourcequotas/status"),
                events(),
            ],
        ),
        c(
            "system:controller:root-ca-cert-publisher",
            vec![rule("create,update", "", "configmaps"), events()],
        ),
        c(
            "system:controller:route-controller",
            vec![
                rule("list,watch", "", "nodes"),
                rule("patch", "", "nodes/status"),
                events(),
            ],
        ),
        c(
            "system:controller:selinux-warning-controller",
            vec![
                rule(
                    "get,list,watch",
                    "",
                    "persistentvolumeclaims,persistentvolumes,pods",
                ),
                rule("get,list,watch", "storage.k8s.io", "csidrivers"),
                events(),
            ],
        ),
        c(
            "system:controller:service-account-controller",
            vec![rule("create", "", "serviceaccounts"), events()],
        ),
        c(
            "system:controller:service-cidrs-controller",
            vec![
                rule(READ, "networking.k8s.io", "servicecidrs"),
                rule(
                    "patch,update",
                    "networking.k8s.io",
                    "servicecidrs/finalizers",
                ),
                rule("patch,update", "networking.k8s.io", "servicecidrs/status"),
                rule(READ, "networking.k8s.io", "ipaddresses"),
                events(),
            ],
        ),
        c(
            "system:controller:service-controller",
            vec![
                rule(READ, "", "services"),
                rule("patch,update", "", "services/status"),
                rule("list,watch", "", "nodes"),
                events(),
            ],
        ),
        c(
            "system:controller:statefulset-controller",
            vec![
                rule("list,watch", "", "pods"),
                rule(READ, "apps", "statefulsets"),
                rule("update", "apps", "statefulsets/status"),
                rule("update", "apps", "statefulsets/finalizers"),
                rule("create,delete,get,patch,update", "", "pods"),
                rule(
                    "create,delete,get,list,patch,update,watch",
                    "apps",
                    "controllerrevisions",
                ),
                rule("create,get", "", "persistentvolumeclaims"),
                rule("update", "", "persistentvolumeclaims"),
                events(),
            ],
        ),
        c(
            "system:controller:ttl-after-finished-controller",
            vec![rule("delete,get,list,watch", "batch", "jobs"), events()],
        ),
        c(
            "system:controller:ttl-controller",
            vec![rule("list,patch,update,watch", "", "nodes"), events()],
        ),
        c(
            "system:controller:validatingadmissionpolicy-status-controller",
            vec![
                rule(
                    READ,
                    "admissionregistration.k8s.io",
                    "validatingadmissionpolicies",
                ),
                rule(
                    "get,patch,update",
                    "admissionregistration.k8s.io",
                    "validatingadmissionpolicies/status",
                ),
                events(),
            ],
        ),
    ]
}

/// Each controller role bound to its service account in kube-system.
pub(crate) fn controller_role_bindings() -> Vec<BindingSpec> {
    controller_roles()
        .iter()
        .map(|r| BindingSpec {
            name: r.name.into(),
            namespace: "",
            role_kind: "ClusterRole",
            role: r.name.into(),
            subjects: vec![Who::ServiceAccount(
                "kube-system",
                r.name.trim_start_matches("system:controller:").to_string(),
            )],
        })
        .collect()
}
