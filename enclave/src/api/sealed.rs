//! The sealed server: what the enclave serves while it waits for an operator
//! to re-supply the cluster's root secret (`--root-secret-source operator`).
//!
//! The operator first verifies the enclave exactly as `daas verify` does
//! (`GET /attestation` binds the TLS key), then sends the secret over a TLS
//! connection to that attested key: `POST /unseal` with
//! `{"rootSecret": "<64 hex digits>"}` (`daas unseal`). The enclave tries to
//! open its sealed state with it; a secret that does not open the journal is
//! refused (422) and nothing is written, so the right one still works after a
//! wrong one. Success answers with the anchor key derived from the secret
//! (which the operator can recompute from their copy), then this server stops
//! and the API server takes over the same listener and TLS identity.
//!
//! Until then: `/livez` is 200, `/readyz` and `/healthz` are 503,
//! `/attestation` and `/version` work, and every other path is 503
//! ServiceUnavailable saying the cluster is sealed, which kubectl prints.
//! A cluster with no sealed state yet accepts the first secret it is given;
//! the operator confirms it was theirs by the anchor key in the answer and,
//! afterwards, in every attestation document's `user_data`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ::attestation::RootSecret;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use rustls::ServerConfig;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::accept::{self, OnStop};
use super::attestation::{self, Attestor};
use super::http::{self, Body};
use super::{Listener, UserInfo, discovery};

/// Largest `POST /unseal` body: the JSON holds 64 hex digits.
const MAX_UNSEAL_BODY: usize = 4096;
/// How long connections open at unseal time may finish their responses.
const DRAIN: Duration = Duration::from_secs(5);

/// Why a supplied root secret did not unseal the cluster.
#[derive(Debug, Clone)]
pub struct UnsealRefused {
    /// 422 when the secret does not open the sealed state, 503 when opening
    /// failed for another reason (e.g. the journal service is unreachable).
    pub code: u16,
    /// What to tell the operator.
    pub message: String,
}

/// What a root secret opened, and the anchor public key it derives (the
/// operator's proof that the enclave took their secret).
#[derive(Debug)]
pub struct Unsealed<T> {
    /// What was opened (the store).
    pub opened: T,
    /// The raw Ed25519 anchor public key derived from the secret.
    pub anchor_key: [u8; 32],
}

/// One operator's attempt, handed from a connection to the opening loop.
struct Attempt {
    secret: RootSecret,
    reply: oneshot::Sender<Result<[u8; 32], UnsealRefused>>,
}

/// The request handler of the sealed phase.
struct SealedServer {
    attestor: Option<Attestor>,
    attempts: mpsc::Sender<Attempt>,
    /// What every 503 says.
    message: String,
}

/// Serves the sealed phase on `listener` until a secret given to
/// `POST /unseal` opens the cluster: `try_open` gets each secret in turn and
/// returns what it opened, or why it refused. Returns what the successful
/// attempt opened, after the answer to it has been sent. `why`, when given,
/// is added to the "sealed" answers (e.g. KMS refused the root secret).
pub async fn serve_until_unsealed<T, F, Fut>(
    listener: &Listener,
    tls: Arc<ServerConfig>,
    attestor: Option<Attestor>,
    why: Option<String>,
    mut try_open: F,
) -> Unsealed<T>
where
    F: FnMut(RootSecret) -> Fut,
    Fut: Future<Output = Result<Unsealed<T>, UnsealRefused>>,
{
    let (attempts, mut queue) = mpsc::channel::<Attempt>(1);
    let message = match why {
        Some(why) => format!("{SEALED} ({why})"),
        None => SEALED.to_owned(),
    };
    let server = Arc::new(SealedServer {
        attestor,
        attempts,
        message,
    });
    let tasks = TaskTracker::new();
    let stop = CancellationToken::new();
    let opening = async {
        loop {
            // The server holds a sender for as long as this loop runs.
            let attempt = queue.recv().await?;
            match try_open(attempt.secret).await {
                Ok(unsealed) => {
                    let _ = attempt.reply.send(Ok(unsealed.anchor_key));
                    return Some(unsealed);
                }
                Err(refused) => {
                    tracing::warn!(code = refused.code, reason = %refused.message, "root secret refused");
                    let _ = attempt.reply.send(Err(refused));
                }
            }
        }
    };
    let serving = accept::serve_tls(listener, tls, server, &tasks, &stop, OnStop::Drain(DRAIN));
    let opened = tokio::select! {
        o = opening => o,
        () = serving => None,
    };
    // Connections still open finish their answers (the operator's included)
    // and close; queued attempts are told the cluster is already unsealed.
    stop.cancel();
    tasks.close();
    tasks.wait().await;
    match opened {
        Some(o) => o,
        // Neither branch ends otherwise: the loop keeps a sender alive and
        // the accept loop runs until `stop`.
        None => std::future::pending().await,
    }
}

impl accept::Handler for SealedServer {
    async fn handle(&self, req: Request<Incoming>, _cert_user: Option<UserInfo>) -> Response<Body> {
        let path = req.uri().path().to_string();
        match path.as_str() {
            "/attestation" => {
                attestation::serve(self.attestor.as_ref(), req.method(), req.uri().query()).await
            }
            "/unseal" if req.method() == Method::POST => self.unseal(req).await,
            "/unseal" => http::status(
                405,
                "MethodNotAllowed",
                "/unseal accepts only POST with {\"rootSecret\": \"<64 hex digits>\"}",
            ),
            "/version" if req.method() == Method::GET => http::json(200, &discovery::version()),
            "/livez" => http::text(200, "ok"),
            p if p.starts_with("/livez/") => http::text(200, "ok"),
            "/readyz" | "/healthz" => http::text(503, self.message.clone()),
            p if p.starts_with("/readyz/") || p.starts_with("/healthz/") => {
                http::text(503, self.message.clone())
            }
            _ => http::status(503, "ServiceUnavailable", &self.message),
        }
    }
}

const SEALED: &str =
    "the cluster is sealed: it is waiting for its operator to supply the root secret (daas unseal)";

impl SealedServer {
    async fn unseal(&self, req: Request<Incoming>) -> Response<Body> {
        let body = match http::read_body(req, MAX_UNSEAL_BODY).await {
            Ok(b) => b,
            Err(e) => return http::error(&e),
        };
        let secret = match parse_unseal_body(&body) {
            Ok(s) => s,
            Err(why) => return http::status(400, "BadRequest", &why),
        };
        let (reply, answer) = oneshot::channel();
        let already = || http::status(409, "Conflict", "the cluster is already unsealed");
        if self.attempts.send(Attempt { secret, reply }).await.is_err() {
            return already();
        }
        match answer.await {
            Ok(Ok(anchor_key)) => {
                tracing::info!(anchor_key = %hex::encode(anchor_key), "unsealed by the operator");
                http::json(
                    200,
                    &json!({
                        "status": "Success",
                        "message": "the cluster is unsealed",
                        "anchorKey": hex::encode(anchor_key),
                    }),
                )
            }
            Ok(Err(refused)) => http::status(
                refused.code,
                if refused.code == 422 {
                    "Invalid"
                } else {
                    "ServiceUnavailable"
                },
                &refused.message,
            ),
            // Another attempt unsealed it first and this one was not tried.
            Err(_) => already(),
        }
    }
}

/// The secret in `{"rootSecret": "<64 hex digits>"}`; never echoes it.
fn parse_unseal_body(body: &[u8]) -> Result<RootSecret, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        format!("the body is not JSON ({e}); send {{\"rootSecret\": \"<64 hex digits>\"}}")
    })?;
    let text = v
        .get("rootSecret")
        .and_then(Value::as_str)
        .ok_or("the body has no string field \"rootSecret\"")?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes)
        .map_err(|_| "rootSecret must be 64 hex digits (32 bytes)".to_string())?;
    Ok(RootSecret::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::parse_unseal_body;

    #[test]
    fn the_body_must_carry_exactly_32_bytes_of_hex() {
        let ok = format!("{{\"rootSecret\": \"{}\"}}", "ab".repeat(32));
        assert!(parse_unseal_body(ok.as_bytes()).is_ok());
        for (body, says) in [
            ("not json", "not JSON"),
            ("{}", "no string field"),
            ("{\"rootSecret\": 7}", "no string field"),
            ("{\"rootSecret\": \"abcd\"}", "64 hex digits"),
            (
                &format!("{{\"rootSecret\": \"{}\"}}", "zz".repeat(32)),
                "64 hex digits",
            ),
            (
                &format!("{{\"rootSecret\": \"{}\"}}", "ab".repeat(33)),
                "64 hex digits",
            ),
        ] {
            match parse_unseal_body(body.as_bytes()) {
                Ok(_) => panic!("{body} was accepted"),
                Err(e) => assert!(e.contains(says), "{body}: {e}"),
            }
        }
    }
}
