//! A server that is not the enclave: it terminates TLS with its own key and answers
//! `/attestation` with a document chosen by the test (made with the enclave's dev root, replayed
//! from the enclave, or fetched from it with the worker's nonce); every other request is
//! recorded and answered 500, so a test can check that a worker that refused sent nothing.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response};
use hyper_util::rt::TokioIo;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use worker::client::{Connection, ServerTrust, ServerUrl};

/// Makes a document for (the worker's nonce, this server's TLS key digest).
pub type MakeDocument = Box<dyn Fn(&[u8], [u8; 32]) -> Vec<u8> + Send + Sync>;

/// How `/attestation` is answered.
pub enum Answer {
    /// A document made for the request.
    Made(MakeDocument),
    /// Always this document.
    Fixed(Vec<u8>),
    /// The real server's document for the same nonce (it binds the real server's key).
    Forward(ServerUrl),
}

/// A running fake server.
pub struct FakeServer {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// SHA-256 of its own TLS key's SubjectPublicKeyInfo.
    pub key_sha256: [u8; 32],
    /// Requests other than `GET /attestation`, as `METHOD PATH`.
    pub others: Arc<Mutex<Vec<String>>>,
}

fn nonce_of(query: Option<&str>) -> Vec<u8> {
    query
        .unwrap_or("")
        .split('&')
        .find_map(|p| p.strip_prefix("nonce="))
        .and_then(|h| hex::decode(h).ok())
        .unwrap_or_default()
}

impl FakeServer {
    /// Starts one on a background thread.
    pub fn start(answer: Answer) -> Self {
        let own = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert = own.cert.der().clone();
        let key_sha256 = attestation::spki_sha256(&cert).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(own.signing_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let others = Arc::new(Mutex::new(Vec::new()));
        let recorded = others.clone();
        let answer = Arc::new(answer);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let acceptor = acceptor.clone();
                    let answer = answer.clone();
                    let recorded = recorded.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let service = hyper::service::service_fn(move |req| {
                            let answer = answer.clone();
                            let recorded = recorded.clone();
                            async move {
                                let body = if req.method() == Method::GET
                                    && req.uri().path() == "/attestation"
                                {
                                    let nonce = nonce_of(req.uri().query());
                                    match &*answer {
                                        Answer::Made(make) => Some(make(&nonce, key_sha256)),
                                        Answer::Fixed(doc) => Some(doc.clone()),
                                        Answer::Forward(real) => forward(real, &nonce).await,
                                    }
                                } else {
                                    recorded.lock().unwrap().push(format!(
                                        "{} {}",
                                        req.method(),
                                        req.uri().path()
                                    ));
                                    None
                                };
                                let response = match body {
                                    Some(doc) => Response::builder()
                                        .status(200)
                                        .header("content-type", "application/cbor")
                                        .body(Full::new(Bytes::from(doc))),
                                    None => Response::builder()
                                        .status(500)
                                        .body(Full::new(Bytes::from_static(b"not the enclave"))),
                                };
                                Ok::<_, Infallible>(response.unwrap())
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    });
                }
            });
        });
        Self {
            url,
            key_sha256,
            others,
        }
    }

    /// The requests it got besides `/attestation`.
    pub fn others(&self) -> Vec<String> {
        self.others.lock().unwrap().clone()
    }
}

async fn forward(real: &ServerUrl, nonce: &[u8]) -> Option<Vec<u8>> {
    let mut connection = Connection::open(real, ServerTrust::AttestLater, None)
        .await
        .ok()?;
    let path = format!("/attestation?nonce={}", hex::encode(nonce));
    let (status, body) = connection.send(Method::GET, &path, None).await.ok()?;
    (status == 200).then(|| body.to_vec())
}
