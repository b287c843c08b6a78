//! The join endpoints: `POST /join/v1/challenge`, `POST /join/v1/nodes` (both anonymous) and
//! `POST /join/v1/renew` (a node's own certificate). Answers are JSON; refusals are
//! `metav1.Status` whose message names the failed check.

use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use protocol::join::{CHALLENGE_PATH, JOIN_PATH, JoinRequest, RENEW_PATH, node_name_of_user};

use super::{JoinError, NodeAdmission};
use crate::api::UserInfo;
use crate::api::http::{self, Body};

/// Largest join request body.
const MAX_BODY: usize = 16 * 1024;

fn refusal(e: &JoinError) -> Response<Body> {
    match e {
        JoinError::BadRequest(m) => http::status(400, "BadRequest", m),
        JoinError::Refused(m) => http::status(403, "Forbidden", m),
        JoinError::Unavailable(m) => http::status(503, "ServiceUnavailable", m),
        JoinError::Store(inner) => {
            tracing::error!(error = %inner, "store failure during a join");
            http::status(500, "InternalError", &e.to_string())
        }
    }
}

fn answer<T: serde::Serialize>(result: Result<T, JoinError>) -> Response<Body> {
    match result
        .and_then(|v| serde_json::to_value(v).map_err(|e| JoinError::Unavailable(e.to_string())))
    {
        Ok(value) => http::json(200, &value),
        Err(e) => {
            tracing::info!(reason = %e, "join refused");
            refusal(&e)
        }
    }
}

/// Serves a request under `/join/v1/`.
pub(crate) async fn serve(
    admission: Option<&NodeAdmission>,
    req: Request<Incoming>,
    user: Option<&UserInfo>,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    if req.method() != Method::POST {
        http::discard_body(req, http::UNREAD_BODY_DRAIN).await;
        return http::status(
            405,
            "MethodNotAllowed",
            "the join endpoints take POST requests only",
        );
    }
    let Some(admission) = admission else {
        http::discard_body(req, http::UNREAD_BODY_DRAIN).await;
        return http::status(
            503,
            "ServiceUnavailable",
            "this server admits no nodes: it was started without a registry (daas-enclave \
             --registry)",
        );
    };
    match path.as_str() {
        CHALLENGE_PATH => {
            http::discard_body(req, http::UNREAD_BODY_DRAIN).await;
            answer(admission.challenge())
        }
        JOIN_PATH => {
            let body = match http::read_body(req, MAX_BODY).await {
                Ok(b) => b,
                Err(e) => return http::error(&e),
            };
            let request: JoinRequest = match serde_json::from_slice(&body) {
                Ok(r) => r,
                Err(e) => {
                    return http::status(400, "BadRequest", &format!("not a join request: {e}"));
                }
            };
            answer(admission.join(&request).await)
        }
        RENEW_PATH => {
            http::discard_body(req, http::UNREAD_BODY_DRAIN).await;
            let Some(node) = user.and_then(|u| node_name_of_user(&u.name)) else {
                return http::status(
                    403,
                    "Forbidden",
                    "only a node's own client certificate can renew it",
                );
            };
            answer(admission.renew(node).await)
        }
        _ => {
            http::discard_body(req, http::UNREAD_BODY_DRAIN).await;
            http::path_not_found()
        }
    }
}
