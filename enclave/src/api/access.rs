//! Who a request comes from and whether it may proceed: authentication
//! (client certificate, bearer token, or anonymous on the public paths),
//! impersonation, then authorization of every request (resources,
//! subresources, watches, discovery and other non-resource URLs), as
//! upstream's handler chain (`WithAuthentication`, `WithImpersonation`,
//! `WithAuthorization`).

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response, header};

use super::auth::BearerOutcome;
use super::authz::impersonation::{self, ANONYMOUS, Refusal, UNAUTHENTICATED};
use super::authz::rbac::{self, RbacAuthorizer};
use super::authz::{Attributes, AuthorizerChain, Verdict, attributes, forbidden};
use super::http::{self, Body};
use super::{ApiServer, UserInfo};
use crate::auth::serviceaccount::ServiceAccountTokens;
use crate::registry::Error;

/// How the server decides who may do what.
#[derive(Debug, Clone)]
pub struct Security {
    /// Every request is authorized by this chain.
    pub authorizer: Arc<AuthorizerChain>,
    /// The RBAC authorizer of the chain, if any: its policy cache is
    /// invalidated by every RBAC write the API serves.
    pub rbac: Option<RbacAuthorizer>,
    /// Service-account tokens: issued by TokenRequest, verified for
    /// requests and TokenReviews, published for OIDC discovery.
    pub tokens: Option<Arc<ServiceAccountTokens>>,
    /// Audit logging, if a policy is configured.
    pub audit: Option<Arc<super::audit::Auditor>>,
}

impl Security {
    /// Every authenticated request allowed, nothing else: for embedding
    /// the server where authorization is not wanted (no RBAC, no tokens).
    pub fn allow_all() -> Self {
        #[derive(Debug)]
        struct AllowAll;
        impl super::authz::Authorizer for AllowAll {
            fn name(&self) -> &'static str {
                "allow-all"
            }
            fn authorize<'a>(
                &'a self,
                _: &'a Attributes,
            ) -> futures::future::BoxFuture<'a, Verdict> {
                Box::pin(std::future::ready(Verdict::allow("")))
            }
            fn rules_for<'a>(
                &'a self,
                _: &'a UserInfo,
                _: &'a str,
            ) -> futures::future::BoxFuture<'a, super::authz::UserRules> {
                Box::pin(std::future::ready(super::authz::UserRules {
                    resource_rules: vec![super::authz::PolicyRule::resource(
                        &["*"],
                        &["*"],
                        &["*"],
                    )],
                    non_resource_rules: vec![super::authz::PolicyRule::non_resource(
                        &["*"],
                        &["*"],
                    )],
                    ..Default::default()
                }))
            }
        }
        Security {
            authorizer: Arc::new(AuthorizerChain::new().with(Arc::new(AllowAll))),
            rbac: None,
            tokens: None,
            audit: None,
        }
    }
}

/// The peer of a connection, put in each request's extensions by the accept loop.
#[derive(Debug, Clone)]
pub struct Peer(pub Arc<str>);

/// Why a request did not get past authorization.
#[derive(Debug)]
pub(crate) struct Refused {
    /// The response that ends it (400 or 403).
    pub(crate) response: Response<Body>,
    /// The authorizers' reason.
    pub(crate) reason: String,
}

/// What authorization allowed.
#[derive(Debug)]
pub(crate) struct Granted {
    /// What was allowed, for the user the request acts as (after impersonation).
    pub(crate) attrs: Attributes,
    /// Whether that is an impersonated user.
    pub(crate) impersonated: bool,
    /// The decision's reason.
    pub(crate) reason: String,
}

/// Paths anonymous clients may request (they are then authorized as
/// `system:anonymous`, as upstream's anonymous authenticator does).
pub(crate) fn is_public(path: &str) -> bool {
    matches!(path, "/version" | "/healthz" | "/livez" | "/readyz")
        || ["/healthz/", "/livez/", "/readyz/"]
            .iter()
            .any(|p| path.starts_with(p))
}

/// Paths outside Kubernetes' authentication and authorization: attested
/// first contact and the operator's unseal.
pub(crate) fn is_unchecked(path: &str) -> bool {
    matches!(path, "/attestation" | "/unseal")
}

fn anonymous() -> UserInfo {
    UserInfo::new(ANONYMOUS, &[UNAUTHENTICATED])
}

impl ApiServer {
    /// Who sent `req`: the client certificate's user, a bearer token's, or
    /// `system:anonymous` on the public paths; `None` means 401.
    pub(crate) async fn authenticate(
        &self,
        req: &Request<Incoming>,
        cert_user: Option<UserInfo>,
    ) -> Option<UserInfo> {
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        match (cert_user, bearer) {
            (Some(u), _) => Some(u),
            (None, Some(token)) => match self.auth.token(&self.objects, token).await {
                BearerOutcome::User(u, _) => Some(u),
                BearerOutcome::Invalid(why) => {
                    tracing::debug!(reason = %why, "bearer token refused");
                    None
                }
            },
            (None, None) if is_public(req.uri().path()) => Some(anonymous()),
            (None, None) => None,
        }
    }

    /// Impersonation, then authorization of `attrs` (computed for the user
    /// who authenticated; with impersonation they are checked for the
    /// impersonated user instead).
    pub(crate) async fn authorize(
        &self,
        req: &Request<Incoming>,
        mut attrs: Attributes,
    ) -> Result<Granted, Refused> {
        let impersonated = impersonation::requested(req.headers());
        if impersonated {
            match impersonation::impersonate(&self.security.authorizer, &attrs.user, req.headers())
                .await
            {
                Ok(u) => attrs.user = u,
                Err(Refusal::BadRequest(m)) => {
                    return Err(Refused {
                        response: http::error(&Error::BadRequest(m)),
                        reason: String::new(),
                    });
                }
                Err(Refusal::Forbidden(a, reason)) => {
                    return Err(Refused {
                        response: forbidden::response(&a, &reason),
                        reason,
                    });
                }
            }
        }
        let verdict = self.security.authorizer.authorize(&attrs).await;
        if !verdict.allowed() {
            tracing::debug!(user = %attrs.user.name, verb = %attrs.verb, reason = %verdict.reason, "forbidden");
            return Err(Refused {
                response: forbidden::response(&attrs, &verdict.reason),
                reason: verdict.reason,
            });
        }
        Ok(Granted {
            attrs,
            impersonated,
            reason: verdict.reason,
        })
    }

    /// The attributes of `req` by `user`.
    pub(crate) fn attributes(req: &Request<Incoming>, user: UserInfo) -> Attributes {
        let query = super::route::query_pairs(req.uri().query().unwrap_or(""));
        attributes::from_request(user, req.method().as_str(), req.uri().path(), &query)
    }

    /// After a successful write the API served: what it may have revoked or
    /// changed must count from the very next request.
    pub(crate) fn after_write(&self, group: &str, resource: &str) {
        if group == rbac::GROUP
            && let Some(r) = &self.security.rbac
        {
            r.cache().invalidate();
        }
        if group.is_empty()
            && matches!(
                resource,
                "pods" | "secrets" | "serviceaccounts" | "nodes" | "namespaces"
            )
            && let Some(t) = &self.security.tokens
        {
            t.revoke_cached();
        }
    }
}
