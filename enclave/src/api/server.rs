//! The server: TLS accept loop, per-request authentication, routing and
//! content negotiation.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, header};
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::accept::{self, OnStop};
use super::access::{Peer, Security, is_unchecked};
use super::attestation::{self, Attestor};
use super::audit::{self, Outcome as AuditOutcome, RequestAudit, RequestFacts, Stage};
use super::http::{self, Body};
use super::metrics;
use super::nodes::{self, NodeAdmission};
use super::query::Query;
use super::resource::ResourceRequest;
use super::route::{self, Route};
use super::{Authenticator, DevPki, Listener, ServeError, UserInfo, discovery, openapi, streams};
use crate::registry::{Error, ObjectStore, ResourceTable};

/// Server settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Interval between watch BOOKMARKs when a client allows them. Default 60 s.
    pub bookmark_interval: Duration,
    /// Largest accepted request body. Default 3 MiB, as upstream.
    pub max_body_bytes: usize,
    /// `host:port` advertised in `/api`'s `serverAddressByClientCIDRs`.
    pub server_address: String,
    /// What answers `GET /attestation`; `None` (the default) answers 503.
    pub attestor: Option<Attestor>,
    /// The `jwks_uri` OIDC discovery advertises; default
    /// `https://<server_address>/openid/v1/jwks` (upstream's
    /// `--service-account-jwks-uri`).
    pub jwks_uri: Option<String>,
    /// Nodes joining with stake tickets (`/join/v1/...`), and whether a node's credentials
    /// are still accepted; `None` (the default): the join endpoints answer 503.
    pub nodes: Option<NodeAdmission>,
    /// How often the horizontal pod autoscaler syncs; `None` (the default) runs none. It
    /// runs beside the API server because its metrics come over the workers' tunnels.
    pub autoscaler_sync_period: Option<Duration>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            bookmark_interval: Duration::from_secs(60),
            max_body_bytes: 3 * 1024 * 1024,
            server_address: "127.0.0.1:6443".into(),
            attestor: None,
            jwks_uri: None,
            nodes: None,
            autoscaler_sync_period: None,
        }
    }
}

/// What the client's Accept header asked for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Negotiated {
    /// `as=Table;g=meta.k8s.io` was offered.
    pub table: bool,
    /// An aggregated discovery version was offered.
    pub aggregated: Option<discovery::Aggregated>,
}

impl Negotiated {
    fn from_accept(accept: &str) -> Self {
        let table = accept.split(',').any(|part| {
            let p: Vec<&str> = part.split(';').map(str::trim).collect();
            p.contains(&"as=Table") && p.contains(&"g=meta.k8s.io")
        });
        Negotiated {
            table,
            aggregated: discovery::Aggregated::negotiate(accept),
        }
    }
}

/// The API server.
#[derive(Debug)]
pub struct ApiServer {
    pub(crate) objects: ObjectStore,
    /// The OpenAPI v3 documents of the latest table seen, built on first
    /// request and rebuilt when the table changes (custom resources).
    openapi: std::sync::Mutex<Option<Arc<openapi::Documents>>>,
    pub(crate) auth: Authenticator,
    pub(crate) config: ApiConfig,
    pub(crate) security: Security,
    /// The node tunnels workers keep open.
    pub(crate) tunnels: streams::Tunnels,
    pub(crate) tasks: TaskTracker,
    pub(crate) shutdown: CancellationToken,
}

/// The rustls configuration for `pki`: the self-signed server certificate (sent alone, it is
/// the clients' trust anchor), client certificates optional but verified against the client
/// CA, ALPN h2 and http/1.1.
///
/// # Errors
/// Unparseable PEM or a rejected key.
pub fn tls_config(pki: &DevPki) -> Result<Arc<ServerConfig>, ServeError> {
    tls_config_with_client_cas(pki, &[])
}

/// [`tls_config`] that also accepts client certificates of `client_cas`
/// (PEM; the client CA that signs approved CertificateSigningRequests).
///
/// # Errors
/// Unparseable PEM or a rejected key.
pub fn tls_config_with_client_cas(
    pki: &DevPki,
    client_cas: &[&str],
) -> Result<Arc<ServerConfig>, ServeError> {
    let pem = |what: &str, e: rustls_pki_types::pem::Error| {
        ServeError::Certificate(format!("{what}: {e}"))
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca =
        CertificateDer::from_pem_slice(pki.ca_cert_pem.as_bytes()).map_err(|e| pem("CA", e))?;
    roots.add(ca)?;
    for extra in client_cas {
        roots.add(
            CertificateDer::from_pem_slice(extra.as_bytes()).map_err(|e| pem("client CA", e))?,
        )?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| ServeError::Certificate(e.to_string()))?;
    let cert = CertificateDer::from_pem_slice(pki.server_cert_pem.as_bytes())
        .map_err(|e| pem("server certificate", e))?;
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes())
        .map_err(|e| pem("server key", e))?;
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

impl accept::Handler for ApiServer {
    async fn handle(&self, req: Request<Incoming>, cert_user: Option<UserInfo>) -> Response<Body> {
        ApiServer::handle(self, req, cert_user).await
    }
}

impl ApiServer {
    /// A server for `objects`, accepting the identities of `auth` and
    /// allowing what `security` allows.
    pub fn new(
        objects: ObjectStore,
        auth: Authenticator,
        config: ApiConfig,
        security: Security,
    ) -> Arc<Self> {
        Arc::new(ApiServer {
            objects,
            openapi: std::sync::Mutex::new(None),
            auth,
            config,
            security,
            tunnels: streams::Tunnels::default(),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        })
    }

    /// The OpenAPI documents of `table`, built on first use and again
    /// whenever the table's generation changes.
    fn openapi(&self, table: &ResourceTable) -> Arc<openapi::Documents> {
        let mut cached = match self.openapi.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        match cached.as_ref() {
            Some(docs) if docs.generation() == table.generation() => docs.clone(),
            _ => {
                let docs = Arc::new(openapi::Documents::build(table));
                *cached = Some(docs.clone());
                docs
            }
        }
    }

    /// Stops accepting, ends watches, and waits for in-flight work.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Accepts TLS connections on `listener` until [`ApiServer::shutdown`].
    /// Also keeps the authorization and token caches in step with writes
    /// the API does not serve, and writes audit events.
    pub async fn serve(self: Arc<Self>, listener: Listener, tls: Arc<ServerConfig>) {
        let (tasks, stop) = (self.tasks.clone(), self.shutdown.clone());
        if let Some(rbac) = &self.security.rbac {
            tasks.spawn(rbac.cache().clone().follow_changes(stop.clone()));
        }
        if let Some(tokens) = &self.security.tokens {
            tasks.spawn(super::identity::follow_revocations(
                self.objects.clone(),
                tokens.clone(),
                stop.clone(),
            ));
        }
        if let Some(period) = self.config.autoscaler_sync_period {
            let source: Arc<dyn crate::controllers::horizontal_pod_autoscaler::UsageSource> =
                self.clone();
            tasks.spawn(crate::controllers::horizontal_pod_autoscaler::run(
                self.objects.clone(),
                source,
                period,
                stop.clone(),
            ));
        }
        if let Some(a) = &self.security.audit {
            if let Some(webhook) = a.webhook() {
                tasks.spawn(webhook.clone().run(stop.clone()));
            }
            let log = a.log().clone();
            let stop = stop.clone();
            tasks.spawn(async move { log.run(stop).await });
        }
        accept::serve_tls(&listener, tls, self, &tasks, &stop, OnStop::Cut).await;
    }

    /// Serves one request from `cert_user` (the TLS client certificate's user, if any).
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        cert_user: Option<UserInfo>,
    ) -> Response<Body> {
        let path = req.uri().path().to_string();
        let span =
            tracing::debug_span!("request", request.verb = %req.method(), request.path = %path);
        async move {
            let labels = metrics::request_labels(
                req.method(),
                &path,
                req.uri().query().unwrap_or(""),
                req.headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
                &self.objects.table(),
            );
            let start = std::time::Instant::now();
            let response = self.checked(req, cert_user, &path).await;
            crate::metrics::registry().apiserver().observe(
                labels,
                response.status().as_u16(),
                start.elapsed(),
            );
            response
        }
        .instrument(span)
        .await
    }

    /// Authenticates, audits and authorizes `req` for `path`, then serves it.
    async fn checked(
        &self,
        req: Request<Incoming>,
        cert_user: Option<UserInfo>,
        path: &str,
    ) -> Response<Body> {
        if is_unchecked(path) {
            return self.route(req, None).await;
        }
        if path.starts_with("/join/v1/") {
            // The join endpoints: a first contact has no credentials, a renewal brings the
            // node's certificate; the handlers check what they need, nothing is authorized.
            if path == protocol::join::RENEW_PATH && cert_user.is_none() {
                http::discard_body(req, http::UNREAD_BODY_DRAIN).await;
                return http::unauthorized();
            }
            return self.route(req, cert_user).await;
        }
        if path == protocol::tunnel::TUNNEL_PATH {
            // A worker's tunnel: only an admitted node's certificate opens it (the handler
            // checks the identity is a node); there is nothing for RBAC to decide.
            let Some(user) = cert_user.filter(|u| self.node_still_admitted(u)) else {
                http::discard_body(req, http::UNREAD_BODY_DRAIN).await;
                return http::unauthorized();
            };
            return self.route(req, Some(user)).await;
        }
        let uri = req
            .uri()
            .path_and_query()
            .map_or_else(|| path.to_string(), ToString::to_string);
        let peer = req
            .extensions()
            .get::<Peer>()
            .map(|p| p.0.clone())
            .unwrap_or_else(|| "".into());
        let user_agent = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let facts = RequestFacts {
            uri: &uri,
            peer: &peer,
            user_agent: &user_agent,
        };
        let user = self
            .authenticate(&req, cert_user)
            .await
            .filter(|u| self.node_still_admitted(u));
        let Some(user) = user else {
            if let Some(a) = &self.security.audit {
                let attrs = Self::attributes(&req, UserInfo::default());
                if let Some(r) = a.begin(&attrs, &facts) {
                    r.emit(
                        Stage::ResponseComplete,
                        Some(&failure(401, "Unauthorized", "Unauthorized")),
                    );
                }
            }
            http::discard_body(req, http::UNREAD_BODY_DRAIN).await;
            return http::unauthorized();
        };
        let attrs = Self::attributes(&req, user);
        let audit = self
            .security
            .audit
            .as_ref()
            .and_then(|a| a.begin(&attrs, &facts));
        let long_running = attrs.verb == "watch"
            || (attrs.subresource == "log"
                && req.uri().query().is_some_and(|q| q.contains("follow=true")));
        let granted = match self.authorize(&req, attrs).await {
            Ok(g) => g,
            Err(refused) => {
                if let Some(r) = &audit {
                    r.annotate("authorization.k8s.io/decision", "forbid");
                    r.annotate("authorization.k8s.io/reason", &refused.reason);
                }
                http::discard_body(req, http::UNREAD_BODY_DRAIN).await;
                return finish(audit, refused.response, false).await;
            }
        };
        if let Some(r) = &audit {
            if granted.impersonated {
                r.impersonated(&granted.attrs.user);
            }
            r.annotate("authorization.k8s.io/decision", "allow");
            r.annotate("authorization.k8s.io/reason", &granted.reason);
        }
        let (response, annotations) = crate::admission::with_annotations(audit::scope(
            audit.clone(),
            self.route(req, Some(granted.attrs.user)),
        ))
        .await;
        if let Some(r) = &audit {
            for (k, v) in &annotations {
                r.annotate(k, v);
            }
        }
        finish(audit, response, long_running).await
    }

    /// False for a node whose stake stopped admitting it: its credentials are refused (401) on
    /// connections opened before.
    fn node_still_admitted(&self, user: &UserInfo) -> bool {
        match (
            &self.config.nodes,
            protocol::join::node_name_of_user(&user.name),
        ) {
            (Some(nodes), Some(node)) => nodes.admits(node),
            _ => true,
        }
    }

    async fn route(&self, req: Request<Incoming>, user: Option<UserInfo>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let accept = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let negotiated = Negotiated::from_accept(&accept);
        let snapshot = self.objects.table();
        let table = &snapshot;
        let get = req.method() == Method::GET;
        match route::parse(&path, table) {
            Route::Version if get => http::json(200, &discovery::version()),
            Route::Health => http::text(200, "ok"),
            Route::Metrics if get => metrics::serve(&accept),
            Route::Unseal => http::status(409, "Conflict", "the cluster is already unsealed"),
            Route::Join => nodes::serve(self.config.nodes.as_ref(), req, user.as_ref()).await,
            Route::Tunnel => self.accept_tunnel(req, user.as_ref()),
            Route::Attestation => {
                attestation::serve(
                    self.config.attestor.as_ref(),
                    req.method(),
                    req.uri().query(),
                )
                .await
            }
            Route::CoreVersions if get => match negotiated.aggregated {
                Some(a) => http::json_with(
                    200,
                    &discovery::aggregated(table, true, a),
                    &a.content_type(),
                    &[],
                ),
                None => http::json(200, &discovery::core_versions(&self.config.server_address)),
            },
            Route::Groups if get => match negotiated.aggregated {
                Some(a) => http::json_with(
                    200,
                    &discovery::aggregated(table, false, a),
                    &a.content_type(),
                    &[],
                ),
                None => http::json(200, &discovery::groups(table)),
            },
            Route::Group(g) if get => discovery::group(table, &g)
                .map(|d| http::json(200, &d))
                .unwrap_or_else(http::path_not_found),
            Route::GroupVersion(g, v) if get => discovery::resource_list(table, &g, &v)
                .map(|d| http::json(200, &d))
                .unwrap_or_else(http::path_not_found),
            Route::OpenApiV2 if get => {
                // kubectl asks for gnostic protobuf; anything else gets JSON, as upstream answers.
                let protobuf = req
                    .headers()
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|a| a.contains("protobuf"));
                let body = self.openapi(table).v2(protobuf);
                if protobuf {
                    Response::builder()
                        .status(200)
                        .header(header::CONTENT_TYPE, openapi::V2_CONTENT_TYPE)
                        .body(http::full(body))
                        .unwrap_or_else(|_| http::path_not_found())
                } else {
                    http::json_bytes(200, body)
                }
            }
            Route::OpenApiV3Index if get => http::json_bytes(200, self.openapi(table).index()),
            Route::OpenApiV3(g, v) if get => self
                .openapi(table)
                .document(&g, &v)
                .map(|doc| http::json_bytes(200, doc))
                .unwrap_or_else(http::path_not_found),
            Route::OidcConfiguration if get => super::identity::openid_configuration(self),
            Route::Jwks if get => super::identity::jwks(self),
            Route::AuditEvents if get => {
                super::identity::audit_events(self, req.uri().query()).await
            }
            Route::Resource(target) => {
                let query = match Query::parse(&route::query_pairs(req.uri().query().unwrap_or("")))
                {
                    Ok(q) => q,
                    Err(e) => return http::error(&e),
                };
                let method = req.method().clone();
                if streams::is_pod_stream(&target) {
                    // Authorized in `checked` (`get pods/log`, `create` for the others);
                    // streams read (or upgrade) the request themselves.
                    return self.pod_stream(req, user, target).await;
                }
                let content_type = req
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let user_agent = req
                    .headers()
                    .get(header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let body = match http::read_body(req, self.config.max_body_bytes).await {
                    Ok(b) => b,
                    Err(e) => return http::error(&e),
                };
                audit::note_request_body(&body, &content_type);
                self.resource(ResourceRequest {
                    user,
                    method,
                    target,
                    query,
                    negotiated,
                    content_type,
                    user_agent,
                    body,
                })
                .await
            }
            Route::NotFound => http::path_not_found(),
            _ => http::error(&Error::MethodNotAllowed(
                "the server does not allow this method on the requested resource".into(),
            )),
        }
    }
}

fn failure(code: u16, reason: &str, message: &str) -> AuditOutcome {
    AuditOutcome {
        code,
        message: Some(message.to_string()),
        reason: Some(reason.to_string()),
    }
}

/// Records the end of an audited request: its code (and a failure's
/// Status), and the response body when the level asks for it. A
/// long-running response gets `ResponseStarted` now and `ResponseComplete`
/// when its body ends.
async fn finish(
    audit: Option<Arc<RequestAudit>>,
    response: Response<Body>,
    long_running: bool,
) -> Response<Body> {
    use http_body_util::BodyExt;
    let Some(r) = audit else {
        return response;
    };
    let code = response.status().as_u16();
    if long_running && code < 300 {
        let outcome = AuditOutcome {
            code,
            ..Default::default()
        };
        r.emit(Stage::ResponseStarted, Some(&outcome));
        let (parts, body) = response.into_parts();
        return Response::from_parts(parts, audit::completing(body, r, outcome));
    }
    let wants_body = code >= 400 || r.wants_response_body();
    let (parts, body) = response.into_parts();
    let (body, outcome) = if wants_body {
        let bytes = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        r.response_body(&bytes);
        let status: Option<serde_json::Value> = (code >= 400)
            .then(|| serde_json::from_slice(&bytes).ok())
            .flatten();
        let text = |k: &str| {
            status
                .as_ref()
                .and_then(|s| s.get(k))
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        };
        let outcome = AuditOutcome {
            code,
            message: text("message"),
            reason: text("reason"),
        };
        (http::full(bytes), outcome)
    } else {
        (
            body,
            AuditOutcome {
                code,
                ..Default::default()
            },
        )
    };
    r.emit(Stage::ResponseComplete, Some(&outcome));
    Response::from_parts(parts, body)
}
