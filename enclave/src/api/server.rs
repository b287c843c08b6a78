//! The server: TLS accept loop, per-request authentication, routing and
//! content negotiation.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
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
use super::attestation::{self, Attestor};
use super::authz::{self, Authorizers};
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
    /// Nodes joining with stake tickets (`/join/v1/...`), and whether a node's credentials
    /// are still accepted; `None` (the default): the join endpoints answer 503.
    pub nodes: Option<NodeAdmission>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            bookmark_interval: Duration::from_secs(60),
            max_body_bytes: 3 * 1024 * 1024,
            server_address: "127.0.0.1:6443".into(),
            attestor: None,
            nodes: None,
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
    openapi: std::sync::Mutex<Option<Arc<openapi::V3Documents>>>,
    auth: Authenticator,
    authorizers: Authorizers,
    pub(crate) config: ApiConfig,
    /// The node tunnels workers keep open.
    pub(crate) tunnels: streams::Tunnels,
    pub(crate) tasks: TaskTracker,
    pub(crate) shutdown: CancellationToken,
}

/// The rustls configuration for `pki`: the server certificate, client
/// certificates optional but verified against the CA, ALPN h2 and http/1.1.
///
/// # Errors
/// Unparseable PEM or a rejected key.
pub fn tls_config(pki: &DevPki) -> Result<Arc<ServerConfig>, ServeError> {
    let pem = |what: &str, e: rustls_pki_types::pem::Error| {
        ServeError::Certificate(format!("{what}: {e}"))
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca =
        CertificateDer::from_pem_slice(pki.ca_cert_pem.as_bytes()).map_err(|e| pem("CA", e))?;
    roots.add(ca.clone())?;
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
        .with_single_cert(vec![cert, ca], key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Paths anonymous clients may read.
fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/version"
            | "/healthz"
            | "/livez"
            | "/readyz"
            | "/attestation"
            | "/unseal"
            | protocol::join::CHALLENGE_PATH
            | protocol::join::JOIN_PATH
    ) || ["/healthz/", "/livez/", "/readyz/"]
        .iter()
        .any(|p| path.starts_with(p))
}

impl accept::Handler for ApiServer {
    async fn handle(&self, req: Request<Incoming>, cert_user: Option<UserInfo>) -> Response<Body> {
        ApiServer::handle(self, req, cert_user).await
    }
}

impl ApiServer {
    /// A server for `objects`, accepting the identities of `auth`.
    pub fn new(objects: ObjectStore, auth: Authenticator, config: ApiConfig) -> Arc<Self> {
        Arc::new(ApiServer {
            authorizers: Authorizers::standard(objects.clone()),
            objects,
            openapi: std::sync::Mutex::new(None),
            auth,
            config,
            tunnels: streams::Tunnels::default(),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        })
    }

    /// The OpenAPI v3 documents of `table`, built on first use and again
    /// whenever the table's generation changes.
    fn openapi_v3(&self, table: &ResourceTable) -> Arc<openapi::V3Documents> {
        let mut cached = match self.openapi.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        match cached.as_ref() {
            Some(docs) if docs.generation() == table.generation() => docs.clone(),
            _ => {
                let docs = Arc::new(openapi::V3Documents::build(table));
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
    pub async fn serve(self: Arc<Self>, listener: Listener, tls: Arc<ServerConfig>) {
        let (tasks, stop) = (self.tasks.clone(), self.shutdown.clone());
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
            let user = cert_user.or_else(|| {
                req.headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| self.auth.bearer(v))
            });
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
            let response = if user.is_none() && !is_public(&path) {
                http::discard_body(req, http::UNREAD_BODY_DRAIN).await;
                http::unauthorized()
            } else if let (Some(nodes), Some(node)) = (
                &self.config.nodes,
                user.as_ref()
                    .and_then(|u| protocol::join::node_name_of_user(&u.name)),
            ) && !nodes.admits(node)
            {
                // A node whose stake stopped admitting it is refused on connections opened
                // before.
                http::discard_body(req, http::UNREAD_BODY_DRAIN).await;
                http::unauthorized()
            } else {
                self.route(req, user).await
            };
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
            Route::Metrics if get => metrics::serve(user.as_ref(), &accept),
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
            Route::OpenApiV2 if get => Response::builder()
                .status(200)
                .header(header::CONTENT_TYPE, openapi::V2_CONTENT_TYPE)
                .body(http::full(Bytes::new()))
                .unwrap_or_else(|_| http::path_not_found()),
            Route::OpenApiV3Index if get => json_bytes(self.openapi_v3(table).index()),
            Route::OpenApiV3(g, v) if get => self
                .openapi_v3(table)
                .document(&g, &v)
                .map(json_bytes)
                .unwrap_or_else(http::path_not_found),
            Route::Resource(target) => {
                let query = match Query::parse(&route::query_pairs(req.uri().query().unwrap_or("")))
                {
                    Ok(q) => q,
                    Err(e) => return http::error(&e),
                };
                let method = req.method().clone();
                let stream = streams::is_pod_stream(&target);
                if let Some(who) = &user {
                    let mut attrs = authz::Attributes::of(who, &method, &target, &query);
                    if stream {
                        // As upstream: `get pods/log`, `create` for the others (WebSocket
                        // clients send GET).
                        attrs.verb = streams::verb(&target);
                    }
                    if let Some(refused) = self.authorizers.check(&attrs).await {
                        http::discard_body(req, http::UNREAD_BODY_DRAIN).await;
                        return refused;
                    }
                }
                if stream {
                    // Streams read (or upgrade) the request themselves.
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

/// A 200 response with an already serialized JSON body.
fn json_bytes(body: Bytes) -> Response<Body> {
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .body(http::full(body))
        .unwrap_or_else(|_| http::path_not_found())
}
