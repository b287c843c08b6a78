//! The root secret from AWS KMS, released to this enclave's attested key.
//!
//! 1. Make a fresh [`RecipientKey`] (ephemeral RSA-2048), used for this one request only.
//! 2. Ask the NSM for an attestation document whose `public_key` is the key's SPKI.
//! 3. Send the document to the host's key broker (`daas-host keybroker`), which calls KMS `Decrypt` (or
//!    `GenerateDataKey` on first boot) with it as `Recipient`. KMS checks the document against the key policy.
//! 4. Open the broker's reply, KMS's `CiphertextForRecipient`, with the key: the root secret.
//!
//! The host sees the document and the envelope, neither of which reveals the secret. CMS content encryption is
//! not authenticated, so a failure to open the envelope is reported as one fact, "could not open the KMS
//! envelope", with no detail that would make a padding oracle, and the key is dropped after one attempt.
//!
//! The protocol is `protocol::keybroker` (host side: `host/src/keybroker`): one request per connection, the
//! document in a `ROOT_SECRET` frame, the reply `OK` with the envelope or `ERROR` with a UTF-8 message.

use std::io;
use std::time::Duration;

use attestation::{AttestationRequest, Nsm, RecipientKey, RootSecret};
use protocol::frame::{self, LEN_BYTES};
use protocol::keybroker::{ERROR, MAX_FRAME_BYTES, OK};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::parent::{ParentStream, dial};

/// How long one exchange with the broker may take (the broker's KMS call times out after 30 s).
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest broker message kept for the log.
const MAX_MESSAGE_CHARS: usize = 1024;

/// Where the host's key broker listens: `unix:PATH` (dev) or `vsock:CID:PORT` (enclave mode, CID 3 is the
/// parent; connecting needs the `vsock` feature). As for the journal service, a `tcp:` endpoint is refused when
/// connecting.
pub type KeyBrokerEndpoint = protocol::Endpoint;

/// Why the root secret could not be obtained from KMS.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RootSecretError {
    /// The broker could not be reached before the connect timeout.
    #[error("cannot reach the key broker at {endpoint}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// The last cause.
        #[source]
        source: io::Error,
    },
    /// The exchange with the broker failed or timed out.
    #[error("key broker at {endpoint}: {op} failed")]
    Io {
        /// The endpoint.
        endpoint: String,
        /// What was being done.
        op: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The ephemeral recipient key could not be made.
    #[error("could not make the ephemeral KMS recipient key")]
    RecipientKey(#[source] attestation::Error),
    /// A blocking step (key generation) panicked or was cancelled.
    #[error("a blocking step of the KMS request failed")]
    Task(#[source] tokio::task::JoinError),
    /// The NSM did not produce the attestation document.
    #[error("the NSM did not produce an attestation document for KMS")]
    Attestation(#[source] attestation::Error),
    /// The broker (or KMS behind it) refused; `message` is the host's text, shown as received (sanitized).
    #[error("the key broker refused to release the root secret: {message}")]
    Refused {
        /// The broker's message.
        message: String,
    },
    /// The broker's reply is not a reply of this protocol.
    #[error("the key broker's reply is malformed: {reason}")]
    Protocol {
        /// What is wrong.
        reason: String,
    },
    /// The reply did not open with this request's key. Deliberately without detail (padding oracle).
    #[error("could not open the KMS envelope")]
    Envelope,
}

/// Obtains the root secret from KMS through the key broker at `broker`, retrying the connection for up to
/// `connect_timeout` (the broker may start after the enclave). The request itself is made once: on any failure
/// after connecting, the recipient key is dropped and the error returned.
///
/// # Errors
///
/// A [`RootSecretError`] that says which step failed; [`RootSecretError::Refused`] carries KMS's refusal as the
/// broker reported it (e.g. `AccessDeniedException` when the attestation does not match the key policy).
pub async fn root_secret_from_kms<N: Nsm>(
    nsm: &N,
    broker: &KeyBrokerEndpoint,
    connect_timeout: Duration,
) -> Result<RootSecret, RootSecretError> {
    let key = tokio::task::spawn_blocking(RecipientKey::generate)
        .await
        .map_err(RootSecretError::Task)?
        .map_err(RootSecretError::RecipientKey)?;
    let document = nsm
        .attestation(AttestationRequest::new().public_key(key.public_key_spki_der()))
        .await
        .map_err(RootSecretError::Attestation)?;
    let endpoint = broker.to_string();
    let mut conn = connect(broker, connect_timeout).await?;
    let reply = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(&mut conn, &document))
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "no reply in time")))
        .map_err(|source| RootSecretError::Io {
            endpoint,
            op: "the root secret request",
            source,
        })?;
    let envelope = match reply {
        (OK, body) => body,
        (ERROR, body) => {
            return Err(RootSecretError::Refused {
                message: sanitize(&body),
            });
        }
        (kind, _) => {
            return Err(RootSecretError::Protocol {
                reason: format!("unknown reply kind {kind:#04x}"),
            });
        }
    };
    let opened = tokio::task::spawn_blocking(move || {
        key.open_root_secret(&envelope)
            .map_err(|_| RootSecretError::Envelope)
    })
    .await
    .map_err(|_| RootSecretError::Envelope)??;
    Ok(opened)
}

async fn connect(
    endpoint: &KeyBrokerEndpoint,
    timeout: Duration,
) -> Result<Box<dyn ParentStream>, RootSecretError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = Duration::from_millis(50);
    loop {
        let error = match dial(endpoint, "key broker").await {
            Ok(conn) => return Ok(conn),
            Err(e) => e,
        };
        if error.kind() == io::ErrorKind::Unsupported
            || tokio::time::Instant::now() + delay >= deadline
        {
            return Err(RootSecretError::Connect {
                endpoint: endpoint.to_string(),
                source: error,
            });
        }
        tracing::info!(%endpoint, error = %error, "key broker not reachable yet; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

/// Sends the request and reads the one reply frame `(kind, body)`.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    document: &[u8],
) -> io::Result<(u8, Vec<u8>)> {
    let request = protocol::keybroker::request_frame(document)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    stream.write_all(&request).await?;
    stream.flush().await?;

    let mut prefix = [0u8; LEN_BYTES];
    stream.read_exact(&mut prefix).await?;
    let body_len = frame::body_len(prefix, MAX_FRAME_BYTES)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("reply {e}")))?;
    let mut body = vec![0u8; body_len];
    let kind = stream.read_u8().await?;
    stream.read_exact(&mut body).await?;
    Ok((kind, body))
}

/// The host's message, made safe for a log line: printable characters only, bounded.
fn sanitize(message: &[u8]) -> String {
    String::from_utf8_lossy(message)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tcp_endpoint_is_refused_at_once() {
        let endpoint = "tcp:127.0.0.1:1".parse().unwrap();
        match connect(&endpoint, Duration::from_secs(60)).await {
            Err(RootSecretError::Connect { source, .. }) => {
                assert_eq!(source.kind(), io::ErrorKind::Unsupported, "{source}");
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    #[tokio::test]
    async fn oversized_or_empty_replies_are_refused_unread() {
        for reply in [
            (MAX_FRAME_BYTES + 1).to_be_bytes().to_vec(),
            vec![0, 0, 0, 0],
        ] {
            let (mut ours, mut theirs) = tokio::io::duplex(1 << 20);
            theirs.write_all(&reply).await.unwrap();
            let err = exchange(&mut ours, b"doc").await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        }
    }

    #[test]
    fn broker_messages_are_sanitized() {
        assert_eq!(sanitize(b"denied\n\x1b[31mred"), "denied  [31mred");
        assert_eq!(sanitize(&[b'x'; 5000]).len(), MAX_MESSAGE_CHARS);
    }
}
