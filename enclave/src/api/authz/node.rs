//! The node authorizer, as upstream's (`plugin/pkg/auth/authorizer/node`, with
//! `AuthorizeNodeWithSelectors`, the default since 1.32): a node (user `system:node:NAME` in
//! group `system:nodes`) may read its own Node, create and update Nodes (the NodeRestriction
//! admission limits that to its own), read and write its own Lease in `kube-node-lease`, read
//! the pods bound to it (list and watch only with a `spec.nodeName=NAME` field selector),
//! update their status and delete them, read the secrets, config maps and persistent volume
//! claims those pods use and the persistent volumes bound to those claims, create tokens of
//! their service accounts, create events, and read services (upstream's `system:node` role
//! grants that last one through RBAC). Nothing else:
//! every other request gets no opinion, and the chain refuses it.
//!
//! Deliberate deviation from upstream: a node may also read (get, list, watch) every Node,
//! every pod (cluster-wide, read-only), and the services, endpoints, endpoint slices
//! (`discovery.k8s.io`), namespaces and network policies (`networking.k8s.io`) of the cluster.
//! The worker runs the pod network, the service proxy, cluster DNS and the network-policy
//! controller itself, which need these lists; k3s grants them to its agent through separate
//! identities (`system:kube-proxy`, the network-policy controller's), which the join protocol
//! does not issue. Writes stay as upstream's: only the node's own objects.

use futures::future::BoxFuture;
use serde_json::Value;

use super::refs::{self, Used};
use super::{Attributes, Authorizer, UserRules, Verdict};
use crate::registry::{FieldSelector, ListOptions, ObjectStore, UserInfo};

/// The node name of a node identity: user `system:node:NAME` in group `system:nodes`.
pub(crate) fn node_identity(user: &UserInfo) -> Option<&str> {
    let in_group = user.groups.iter().any(|g| g == protocol::join::NODES_GROUP);
    let name = user.name.strip_prefix(protocol::join::NODE_USER_PREFIX)?;
    in_group.then_some(name)
}

/// Upstream's node authorizer.
#[derive(Debug, Clone)]
pub struct NodeAuthorizer {
    objects: ObjectStore,
}

fn allow() -> Verdict {
    Verdict::allow("")
}

fn no(reason: impl Into<String>) -> Verdict {
    Verdict::no_opinion(reason)
}

fn no_relationship(node: &str) -> Verdict {
    no(format!(
        "no relationship found between node '{node}' and this object"
    ))
}

impl NodeAuthorizer {
    /// Reads pods from `objects` to find what a node's pods use.
    pub fn new(objects: ObjectStore) -> Self {
        Self { objects }
    }

    /// The pods in `namespace` (all when empty) bound to `node`.
    async fn pods_on(&self, node: &str, namespace: &str) -> Vec<Value> {
        let Some(info) = self.objects.table().lookup("", "v1", "pods") else {
            return Vec::new();
        };
        let Ok(fields) = FieldSelector::parse(&format!("spec.nodeName={node}"), &*info.strategy)
        else {
            return Vec::new();
        };
        let ns = (!namespace.is_empty()).then_some(namespace);
        match self
            .objects
            .list(
                &info,
                ns,
                &ListOptions {
                    fields,
                    ..Default::default()
                },
            )
            .await
        {
            Ok(page) => page.items,
            Err(e) => {
                tracing::warn!(node, error = %e, "listing a node's pods for authorization");
                Vec::new()
            }
        }
    }

    /// Allowed when a pod bound to `node` uses the `used` object named in `attrs`.
    async fn used_by_pods(&self, node: &str, used: Used, attrs: &Attributes) -> Verdict {
        if attrs.name.is_empty() {
            return no("No Object name found");
        }
        let pods = self.pods_on(node, &attrs.namespace).await;
        if pods
            .iter()
            .any(|pod| refs::names(pod, used).contains(&attrs.name))
        {
            allow()
        } else {
            no_relationship(node)
        }
    }

    /// Allowed when a pod bound to `node` uses a claim bound to the volume named in `attrs`
    /// (upstream's graph edge pv -> pvc -> pod -> node).
    async fn bound_to_used_claim(&self, node: &str, attrs: &Attributes) -> Verdict {
        if attrs.name.is_empty() {
            return no("No Object name found");
        }
        let Some(claims) = self
            .objects
            .table()
            .lookup("", "v1", "persistentvolumeclaims")
        else {
            return no_relationship(node);
        };
        for pod in self.pods_on(node, "").await {
            let ns = pod
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("");
            for name in refs::names(&pod, Used::Claim) {
                let Ok(claim) = self.objects.get(&claims, Some(ns), &name).await else {
                    continue;
                };
                if claim.pointer("/spec/volumeName").and_then(Value::as_str)
                    == Some(attrs.name.as_str())
                {
                    return allow();
                }
            }
        }
        no_relationship(node)
    }

    /// Allowed when the pod named in `attrs` is bound to `node`.
    async fn pod_bound(&self, node: &str, attrs: &Attributes) -> Verdict {
        if attrs.name.is_empty() {
            return no("No Object name found");
        }
        let Some(info) = self.objects.table().lookup("", "v1", "pods") else {
            return no_relationship(node);
        };
        let ns = (!attrs.namespace.is_empty()).then_some(attrs.namespace.as_str());
        match self.objects.get(&info, ns, &attrs.name).await {
            Ok(pod) if pod.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node) => {
                allow()
            }
            _ => no_relationship(node),
        }
    }

    async fn decide(&self, node: &str, attrs: &Attributes) -> Verdict {
        let verb = attrs.verb.as_str();
        let sub = attrs.subresource.as_str();
        match (attrs.api_group.as_str(), attrs.resource.as_str()) {
            ("", "secrets") | ("", "configmaps") => {
                if !matches!(verb, "get" | "list" | "watch") {
                    return no("can only read resources of this type");
                }
                if !sub.is_empty() {
                    return no("cannot read subresource");
                }
                if attrs.namespace.is_empty() {
                    return no("can only read namespaced object of this type");
                }
                let used = if attrs.resource == "secrets" {
                    Used::Secret
                } else {
                    Used::ConfigMap
                };
                self.used_by_pods(node, used, attrs).await
            }
            ("", "persistentvolumeclaims") => {
                if verb != "get" {
                    return no("can only get individual resources of this type");
                }
                if !sub.is_empty() {
                    return no("cannot get subresource");
                }
                self.used_by_pods(node, Used::Claim, attrs).await
            }
            ("", "persistentvolumes") => {
                if verb != "get" {
                    return no("can only get individual resources of this type");
                }
                if !sub.is_empty() {
                    return no("cannot get subresource");
                }
                self.bound_to_used_claim(node, attrs).await
            }
            ("", "serviceaccounts") => {
                if verb != "create" || attrs.name.is_empty() {
                    return no("can only create tokens for individual service accounts");
                }
                if sub != "token" {
                    return no("can only create token subresource of serviceaccount");
                }
                self.used_by_pods(node, Used::ServiceAccount, attrs).await
            }
            ("coordination.k8s.io", "leases") => {
                if !matches!(verb, "get" | "create" | "update" | "patch" | "delete") {
                    return no("can only get, create, update, patch, or delete a node lease");
                }
                if attrs.namespace != "kube-node-lease" {
                    return no(
                        "can only access leases in the \"kube-node-lease\" system namespace",
                    );
                }
                // Create names come from the body: the NodeRestriction admission checks them.
                if verb != "create" && attrs.name != node {
                    return no(
                        "can only access node lease with the same name as the requesting node",
                    );
                }
                allow()
            }
            ("", "nodes") => match (sub, verb) {
                // NodeRestriction limits writes to the node's own object.
                ("", "create" | "update" | "patch" | "delete") | ("status", "update" | "patch") => {
                    allow()
                }
                // Read-only, every Node: the pod network routes to the other nodes' pod CIDRs.
                ("", "get" | "list" | "watch") => allow(),
                _ => no(""),
            },
            ("", "pods") => match (sub, verb) {
                // Cluster-wide and read-only: network policies select peers by pod labels and
                // cluster DNS answers pod names (see the module doc).
                ("", "get" | "list" | "watch") => allow(),
                // NodeRestriction limits these to pods bound to the node. Creating (mirror)
                // pods is not offered: nothing here runs static pods.
                ("", "delete") | ("status", "update" | "patch") | ("eviction", "create") => allow(),
                ("status", "get") => self.pod_bound(node, attrs).await,
                _ => no(""),
            },
            // Upstream grants this through RBAC's `system:node` role (the kubelet's service
            // lister, for the service environment variables); the stand-in for RBAC serves no
            // node, so the node authorizer does.
            // The networking objects the worker's proxy, DNS and policy controller read (see the
            // module doc); Services are also what upstream's `system:node` role grants.
            ("", "services" | "endpoints" | "namespaces")
            | ("discovery.k8s.io", "endpointslices")
            | ("networking.k8s.io", "networkpolicies") => {
                if matches!(verb, "get" | "list" | "watch") && sub.is_empty() {
                    allow()
                } else {
                    no("can only read resources of this type")
                }
            }
            ("", "events") | ("events.k8s.io", "events") => {
                if matches!(verb, "create" | "update" | "patch") {
                    allow()
                } else {
                    no("")
                }
            }
            _ => no(""),
        }
    }
}

impl Authorizer for NodeAuthorizer {
    fn name(&self) -> &'static str {
        "node"
    }

    fn authorize<'a>(&'a self, attrs: &'a Attributes) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            match node_identity(&attrs.user) {
                // Not a node: RBAC decides.
                None => no(""),
                Some("") => no(format!("unknown node for user {:?}", attrs.user.name)),
                // Non-resource URLs: RBAC (system:discovery, ...) decides.
                Some(_) if !attrs.resource_request => no(""),
                Some(node) => self.decide(node, attrs).await,
            }
        })
    }

    fn rules_for<'a>(
        &'a self,
        user: &'a UserInfo,
        _namespace: &'a str,
    ) -> BoxFuture<'a, UserRules> {
        // Upstream's node authorizer cannot list a node's rules.
        let rules = match node_identity(user) {
            Some(_) => UserRules {
                incomplete: true,
                errors: vec!["node authorizer does not support user rule resolution".into()],
                ..Default::default()
            },
            None => UserRules::default(),
        };
        Box::pin(std::future::ready(rules))
    }
}
