//! The RBAC authorizer (upstream's `plugin/pkg/auth/authorizer/rbac`):
//! rules of Roles and ClusterRoles granted by RoleBindings and
//! ClusterRoleBindings, read from the store into a [`Policy`] snapshot.
//!
//! The snapshot is rebuilt when it is stale: [`PolicyCache::invalidate`] is
//! called by the API after every write of an RBAC object it served (so the
//! change counts from the very next request) and by a watch on the four
//! kinds for every other writer (the aggregation controller, bootstrap).

pub mod policy;
pub mod rules;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;

pub use policy::{Binding, Policy, RoleRef};
pub use rules::PolicyRule;

use super::{Attributes, Authorizer, UserRules, Verdict};
use crate::registry::{ListOptions, ObjectStore, ResourceInfo, UserInfo, WatchEvent, WatchOptions};

/// The RBAC API group.
pub const GROUP: &str = "rbac.authorization.k8s.io";

/// The RBAC resources, in the order [`Policy::new`] takes them.
pub const RESOURCES: [&str; 4] = [
    "clusterroles",
    "roles",
    "clusterrolebindings",
    "rolebindings",
];

/// The latest [`Policy`], rebuilt from the store when invalidated.
#[derive(Debug)]
pub struct PolicyCache {
    objects: ObjectStore,
    current: RwLock<Arc<Policy>>,
    /// Bumped by every invalidation.
    wanted: AtomicU64,
    /// The invalidation count `current` reflects.
    built: AtomicU64,
    rebuild: tokio::sync::Mutex<()>,
}

impl PolicyCache {
    /// A cache over `objects`; the first use builds the snapshot.
    pub fn new(objects: ObjectStore) -> Arc<Self> {
        Arc::new(PolicyCache {
            objects,
            current: RwLock::new(Arc::new(Policy::default())),
            wanted: AtomicU64::new(1),
            built: AtomicU64::new(0),
            rebuild: tokio::sync::Mutex::new(()),
        })
    }

    /// Marks the snapshot stale: the next [`PolicyCache::policy`] rebuilds it.
    pub fn invalidate(&self) {
        self.wanted.fetch_add(1, Ordering::AcqRel);
    }

    fn snapshot(&self) -> Arc<Policy> {
        match self.current.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The current snapshot, rebuilt first if it is stale. If the store
    /// cannot be read the previous snapshot is used (and logged).
    pub async fn policy(&self) -> Arc<Policy> {
        if self.built.load(Ordering::Acquire) == self.wanted.load(Ordering::Acquire) {
            return self.snapshot();
        }
        let _guard = self.rebuild.lock().await;
        let want = self.wanted.load(Ordering::Acquire);
        if self.built.load(Ordering::Acquire) == want {
            return self.snapshot();
        }
        match self.load().await {
            Ok(p) => {
                let p = Arc::new(p);
                tracing::debug!(bindings = p.binding_count(), "RBAC policy rebuilt");
                match self.current.write() {
                    Ok(mut c) => *c = p.clone(),
                    Err(poisoned) => *poisoned.into_inner() = p.clone(),
                }
                self.built.store(want, Ordering::Release);
                p
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the RBAC policy failed; using the previous one");
                self.snapshot()
            }
        }
    }

    async fn load(&self) -> crate::registry::Result<Policy> {
        let mut lists: Vec<Vec<serde_json::Value>> = Vec::with_capacity(4);
        for r in RESOURCES {
            let info = self.info(r)?;
            let page = self
                .objects
                .list(&info, None, &ListOptions::default())
                .await?;
            lists.push(page.items);
        }
        Ok(Policy::new(&lists[0], &lists[1], &lists[2], &lists[3]))
    }

    fn info(&self, resource: &str) -> crate::registry::Result<Arc<ResourceInfo>> {
        self.objects
            .table()
            .lookup(GROUP, "v1", resource)
            .ok_or_else(|| crate::registry::Error::BadRequest(format!("{resource} are not served")))
    }

    /// Invalidates the cache on every change of an RBAC object, whoever
    /// makes it, until `stop`.
    pub async fn follow_changes(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut tasks = tokio::task::JoinSet::new();
        for r in RESOURCES {
            let Ok(info) = self.info(r) else { continue };
            let me = self.clone();
            let stop = stop.clone();
            tasks.spawn(async move { me.follow(info, stop).await });
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn follow(&self, info: Arc<ResourceInfo>, stop: tokio_util::sync::CancellationToken) {
        loop {
            let from = self.objects.store().revision().to_string();
            let opts = WatchOptions {
                resource_version: Some(from),
                ..Default::default()
            };
            let mut stream = match self.objects.watch(info.clone(), None, opts).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(resource = %info.resource, error = %e, "watching RBAC objects failed; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                    }
                }
            };
            // Whatever happened while no watch was open is covered by this.
            self.invalidate();
            loop {
                let ev = tokio::select! {
                    () = stop.cancelled() => return,
                    ev = stream.next() => ev,
                };
                match ev {
                    None => return,
                    Some(WatchEvent::Error(_)) => break,
                    Some(WatchEvent::Bookmark(_)) => {}
                    Some(_) => self.invalidate(),
                }
            }
        }
    }
}

/// Authorizes requests by RBAC (upstream's `RBACAuthorizer`).
#[derive(Debug, Clone)]
pub struct RbacAuthorizer {
    cache: Arc<PolicyCache>,
}

impl RbacAuthorizer {
    /// An authorizer over `cache`.
    pub fn new(cache: Arc<PolicyCache>) -> Self {
        RbacAuthorizer { cache }
    }

    /// The cache (for invalidation and escalation checks).
    pub fn cache(&self) -> &Arc<PolicyCache> {
        &self.cache
    }

    /// Upstream's `RBACAuthorizer.Authorize`: allowed by the first rule that
    /// allows; otherwise no opinion, with the resolution errors as reason.
    pub async fn decide(&self, a: &Attributes) -> Verdict {
        let policy = self.cache.policy().await;
        let compiled = policy.compiled(&a.user, &a.namespace);
        if let Some(source) = compiled.first_allowing(a) {
            return Verdict::allow(format!("RBAC: allowed by {source}"));
        }
        let reason = match compiled.errors.as_slice() {
            [] => String::new(),
            [one] => format!("RBAC: {one}"),
            many => format!("RBAC: [{}]", many.join(", ")),
        };
        Verdict::no_opinion(reason)
    }

    /// Every rule `user` holds in `namespace`, with resolution errors.
    pub async fn rules(&self, user: &UserInfo, namespace: &str) -> (Vec<PolicyRule>, Vec<String>) {
        let policy = self.cache.policy().await;
        let c = policy.compiled(user, namespace);
        (c.all_rules().cloned().collect(), c.errors.clone())
    }
}

impl Authorizer for RbacAuthorizer {
    fn name(&self) -> &'static str {
        "rbac"
    }

    fn authorize<'a>(&'a self, attrs: &'a Attributes) -> BoxFuture<'a, Verdict> {
        Box::pin(self.decide(attrs))
    }

    fn rules_for<'a>(&'a self, user: &'a UserInfo, namespace: &'a str) -> BoxFuture<'a, UserRules> {
        Box::pin(async move {
            let (rules, errors) = self.rules(user, namespace).await;
            // A rule with both resources and URLs counts in both lists, as upstream's.
            let resource_rules = rules
                .iter()
                .filter(|r| !r.resources.is_empty())
                .map(|r| PolicyRule {
                    non_resource_urls: Vec::new(),
                    ..r.clone()
                })
                .collect();
            let non_resource_rules = rules
                .iter()
                .filter(|r| !r.non_resource_urls.is_empty())
                .map(|r| {
                    PolicyRule::non_resource(&[], &[]).with_urls(&r.verbs, &r.non_resource_urls)
                })
                .collect();
            UserRules {
                resource_rules,
                non_resource_rules,
                incomplete: false,
                errors,
            }
        })
    }
}
