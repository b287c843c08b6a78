//! Talking to a server whose certificate was already attested: a new
//! connection that accepts only that exact certificate (`worker::client`).

use bytes::Bytes;
use hyper::{Method, StatusCode};
use rustls_pki_types::CertificateDer;
use worker::client::{Connection, ServerTrust};

pub(crate) use worker::client::{ServerUrl, status_message};

/// POSTs `body` (JSON) to `path` on a new connection that accepts only the
/// already attested `certificate`; the answer's status and body.
///
/// # Errors
///
/// Connection or TLS failures (including another certificate), HTTP
/// errors, or no answer within 30 s.
pub(crate) async fn post_json_to_attested(
    server: &ServerUrl,
    certificate: &CertificateDer<'static>,
    path: &str,
    body: Vec<u8>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let mut connection = Connection::open(
        server,
        ServerTrust::PinnedCertificate(certificate.clone()),
        None,
    )
    .await?;
    Ok(connection
        .send(
            Method::POST,
            path,
            Some(("application/json", Bytes::from(body))),
        )
        .await?)
}
