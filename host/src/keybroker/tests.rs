//! The broker protocol's handling of bad input, against a real Unix socket. KMS is never reached in these tests
//! (its endpoint is a closed port): every request is refused before, or fails at, the KMS call.

use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::kms::{Credentials, KmsClient};
use crate::transport::Endpoint;

struct Running {
    _dir: tempfile::TempDir,
    sock: std::path::PathBuf,
    state: std::path::PathBuf,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// A KMS client for a local port nothing listens on.
fn unreachable_kms(port: u16) -> KmsClient {
    KmsClient::new(
        format!("http://127.0.0.1:{port}").parse().unwrap(),
        "us-east-1".into(),
        Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "secret".into(),
            session_token: None,
        },
    )
    .unwrap()
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("kb.sock");
    let state = dir.path().join("state");
    // A port nothing listens on: bind one, then drop it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kms = unreachable_kms(port);
    let broker = Arc::new(KeyBroker::new(kms, "alias/test".into(), &state).unwrap());
    let listener = Listener::bind(&Endpoint::Unix(sock.clone())).await.unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(broker.serve(listener, shutdown.clone()));
    Running {
        _dir: dir,
        sock,
        state,
        shutdown,
        task,
    }
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

/// Sends `raw` bytes, half-closes, and reads the reply frame.
async fn exchange(sock: &Path, raw: &[u8]) -> (u8, String) {
    let mut s = UnixStream::connect(sock).await.unwrap();
    s.write_all(raw).await.unwrap();
    s.shutdown().await.unwrap();
    let mut reply = Vec::new();
    // The broker closes without reading the rest of a refused frame: on a Unix socket the reply is delivered,
    // then the read reports the reset.
    match s.read_to_end(&mut reply).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("reading the reply: {e}"),
    }
    let len = u32::from_be_bytes(reply[..4].try_into().unwrap()) as usize;
    assert_eq!(reply.len(), 4 + len, "exactly one reply frame");
    (reply[4], String::from_utf8(reply[5..].to_vec()).unwrap())
}

fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut f = u32::try_from(body.len() + 1)
        .unwrap()
        .to_be_bytes()
        .to_vec();
    f.push(kind);
    f.extend_from_slice(body);
    f
}

fn request(version: u16, document: &[u8]) -> Vec<u8> {
    let mut body = MAGIC.to_vec();
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(document);
    frame(ROOT_SECRET, &body)
}

#[tokio::test]
async fn bad_requests_get_an_error_and_nothing_is_stored() {
    let kb = start().await;
    let oversized = (MAX_FRAME_BYTES + 1).to_be_bytes();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("oversized frame", oversized.to_vec(), "over the limit"),
        ("empty frame", vec![0, 0, 0, 0], "empty frame"),
        (
            "garbage",
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            "over the limit",
        ),
        (
            "truncated frame",
            vec![0, 0, 0, 9, ROOT_SECRET, b'K'],
            "reading the request",
        ),
        ("nothing", Vec::new(), "closed before a request"),
        (
            "unknown kind",
            frame(0x42, b"KDKB\0\x01doc"),
            "unknown request kind 0x42",
        ),
        (
            "bad magic",
            frame(ROOT_SECRET, b"XXXX\0\x01doc"),
            "bad magic",
        ),
        ("short body", frame(ROOT_SECRET, b"KD"), "too short"),
        (
            "other version",
            request(7, b"doc"),
            "version 7 is not supported",
        ),
        (
            "no document",
            request(VERSION, b""),
            "no attestation document",
        ),
    ];
    for (name, raw, expected) in cases {
        let (kind, message) = exchange(&kb.sock, &raw).await;
        assert_eq!(kind, ERROR, "{name}: {message}");
        assert!(message.contains(expected), "{name}: {message:?}");
    }
    assert!(!kb.state.join(STORED_BLOB_FILE).exists());
    kb.stop().await;
}

#[tokio::test]
async fn an_unreachable_kms_is_reported_and_nothing_is_stored() {
    let kb = start().await;
    let (kind, message) = exchange(&kb.sock, &request(VERSION, b"a document")).await;
    assert_eq!(kind, ERROR);
    assert!(message.contains("cannot connect to KMS"), "{message}");
    assert!(!kb.state.join(STORED_BLOB_FILE).exists());
    kb.stop().await;
}

#[tokio::test]
async fn a_damaged_stored_blob_is_refused_before_kms() {
    let kb = start().await;
    std::fs::write(kb.state.join(STORED_BLOB_FILE), b"").unwrap();
    let (kind, message) = exchange(&kb.sock, &request(VERSION, b"a document")).await;
    assert_eq!(kind, ERROR);
    assert!(message.contains("no KMS CiphertextBlob"), "{message}");
    kb.stop().await;
}

#[test]
fn stored_blobs_replace_atomically() {
    let dir = tempfile::tempdir().unwrap();
    store_blob(dir.path(), b"first").unwrap();
    store_blob(dir.path(), b"second").unwrap();
    assert_eq!(
        read_blob(&dir.path().join(STORED_BLOB_FILE)).unwrap(),
        Some(b"second".to_vec())
    );
    assert!(!dir.path().join(format!("{STORED_BLOB_FILE}.tmp")).exists());
    assert_eq!(read_blob(&dir.path().join("missing")).unwrap(), None);
}

#[test]
fn a_second_broker_on_the_same_state_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let first = KeyBroker::new(unreachable_kms(9), "alias/test".into(), &state).unwrap();
    match KeyBroker::new(unreachable_kms(9), "alias/test".into(), &state) {
        Err(crate::Error::KeyBrokerLocked { path }) => assert_eq!(path, state),
        other => panic!("a second broker got the directory: {other:?}"),
    }
    drop(first);
    KeyBroker::new(unreachable_kms(9), "alias/test".into(), &state).unwrap();
}
